package jobs

import (
	"context"
	"fmt"
)

// pendingStates are the states of a job not yet finished (River's
// non-final states).
const pendingStates = `('available', 'pending', 'retryable', 'running', 'scheduled')`

// EarlierPending reports whether a job of queue whose first tag is tag,
// with an ID below id, is still to run (not completed, cancelled or
// discarded): ES2+ progress reports of one order carry the same single tag
// and are delivered in ID order.
//
// It asks the database directly through pendingTagIndex rather than
// through River's JobList, which on SQLite walked the job table by ID
// (finished jobs included: they are kept) and re-parsed its query on each
// call: half of the delivery's CPU, growing with every report ever sent.
func (c *Client) EarlierPending(ctx context.Context, queue, tag string, id int64) (bool, error) {
	var found bool
	var err error
	if c.liteDB != nil {
		err = c.liteDB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM river_job
			WHERE state IN `+pendingStates+` AND queue = ? AND json_extract(tags, '$[0]') = ? AND id < ?)`, queue, tag, id).Scan(&found)
	} else {
		err = c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job
			WHERE state IN `+pendingStates+` AND queue = $1 AND tags[1] = $2 AND id < $3)`, queue, tag, id).Scan(&found)
	}
	if err != nil {
		return false, fmt.Errorf("jobs: looking for earlier jobs tagged %s: %w", tag, err)
	}
	return found, nil
}

// pendingTagIndex indexes the unfinished jobs by queue, first tag and ID,
// for EarlierPending: one index probe per report, whatever the backlog
// (River's own fetch index holds every pending job of a queue, and tags
// are not indexed). Created after River's migrations (under their lock on
// PostgreSQL).
const (
	pendingTagIndexSQLite = `CREATE INDEX IF NOT EXISTS perso_river_job_pending_tag
		ON river_job (queue, json_extract(tags, '$[0]'), id) WHERE state IN ` + pendingStates
	pendingTagIndexPG = `CREATE INDEX IF NOT EXISTS perso_river_job_pending_tag
		ON river_job (queue, (tags[1]), id) WHERE state IN ` + pendingStates
)
