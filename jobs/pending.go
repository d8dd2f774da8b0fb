package jobs

import (
	"context"
	"fmt"
)

// pendingStates are the states of a job not yet finished (River's
// non-final states).
const pendingStates = `('available', 'pending', 'retryable', 'running', 'scheduled')`

// EarlierPending reports whether a job of queue tagged tag with an ID below
// id is still to run (not completed, cancelled or discarded): ES2+ progress
// reports of one order are tagged alike and delivered in ID order.
//
// It asks the database directly rather than through River's JobList, which
// on SQLite walked the job table by ID (finished jobs included: they are
// kept) and re-parsed its query on each call: half of the delivery's CPU,
// growing with every report ever sent. Here the state and queue select
// River's fetch index, which holds only the jobs of each state.
func (c *Client) EarlierPending(ctx context.Context, queue, tag string, id int64) (bool, error) {
	var found bool
	var err error
	if c.liteDB != nil {
		err = c.liteDB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM river_job INDEXED BY river_job_prioritized_fetching_index
			WHERE state IN `+pendingStates+` AND queue = ? AND id < ?
			AND EXISTS (SELECT 1 FROM json_each(river_job.tags) WHERE value = ?))`, queue, id, tag).Scan(&found)
	} else {
		err = c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job
			WHERE state IN `+pendingStates+` AND queue = $1 AND id < $2 AND tags @> ARRAY[$3]::varchar(255)[])`, queue, id, tag).Scan(&found)
	}
	if err != nil {
		return false, fmt.Errorf("jobs: looking for earlier jobs tagged %s: %w", tag, err)
	}
	return found, nil
}
