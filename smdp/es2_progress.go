package smdp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// ES2+ HandleDownloadProgressInfo (es2-es10-codes.md §2.3): the SM-DP+
// tells the operator that placed an order how its download goes. Each
// report is a River job inserted by the store's transition hook in the
// transaction of the change it reports (ProgressHook), so that a change is
// reported if and only if it commits, and a report survives restarts; a
// worker (ProgressWorker) delivers it, retrying with backoff, off the ES9+
// path: a dead operator endpoint delays only its own reports.

// ProgressQueue is the River queue of the reports.
const ProgressQueue = "es2_progress"

// Notification points (§2.3).
const (
	PointEligibility = 1 // after AuthenticateClient: eligibility and retry-limit check
	PointConfirmCode = 2 // confirmation code retries exhausted
	PointDownload    = 3 // BPP download (GetBoundProfilePackage) or its cancellation
	PointInstall     = 4 // ProfileInstallationResult
	// PointDeleted: the eUICC reported the profile deleted (an
	// OtherSignedNotification with notificationDelete). SGP.22's points end
	// at 4; the addendum leaves higher ones implementation-defined (§2.3),
	// and 5 is what one vendor uses for "deleted".
	PointDeleted = 5
)

// ProgressArgs is one report to deliver. EventID is fixed at insertion and
// sent as header.functionCallIdentifier on every attempt, so that the
// operator can discard a report it already processed.
type ProgressArgs struct {
	EventID     string `json:"event_id"`
	Operator    string `json:"operator"`
	ICCID       string `json:"iccid"`
	EID         string `json:"eid,omitempty"`
	ProfileType string `json:"profile_type"`
	Point       int    `json:"point"`
	Subject     string `json:"subject,omitempty"` // empty: Executed-Success
	Reason      string `json:"reason,omitempty"`
	Message     string `json:"message,omitempty"`
	Timestamp   string `json:"timestamp"` // W3C, UTC: when the change committed
}

// Kind is River's job kind.
func (ProgressArgs) Kind() string { return "es2_progress" }

// InsertOpts puts reports on their queue; River's own attempt limit
// bounds a report to an endpoint that never recovers (then kept as
// discarded, for inspection).
func (ProgressArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: ProgressQueue, MaxAttempts: 25}
}

// JobInserter inserts jobs in a store transaction; *jobs.Client
// implements it.
type JobInserter interface {
	InsertManyTx(ctx context.Context, tx store.Tx, params []river.InsertManyParams) error
}

// ProgressHook returns the store transition hook that enqueues a report
// for each change an operator is told about: install it with
// (*store.DB).SetTransitionHook. now stamps reports (nil: time.Now).
func ProgressHook(q JobInserter, now func() time.Time) store.TransitionHook {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, tx store.Tx, tr store.Transition) error {
		point, st, report := progressPoint(tr)
		if !report || tr.Operator == "" {
			return nil
		}
		args := ProgressArgs{EventID: "evt-" + rand.Text(), Operator: tr.Operator, ICCID: tr.Profile.ICCID, EID: tr.Profile.EID,
			ProfileType: tr.Profile.ProfileType, Point: point, Subject: string(st.Subject), Reason: string(st.Reason),
			Message: st.Message, Timestamp: now().UTC().Format(time.RFC3339)}
		opts := args.InsertOpts()
		opts.Tags = []string{orderTag(args.Operator, args.ICCID)}
		return q.InsertManyTx(ctx, tx, []river.InsertManyParams{{Args: args, InsertOpts: &opts}})
	}
}

// progressPoint maps an order change to the notification point that
// reports it, and its status (zero: success). ES2+ changes (the operator's
// own calls) and intermediate steps are not reported.
func progressPoint(tr store.Transition) (int, rsp.Status, bool) {
	switch tr.Event {
	case store.EventAuthenticateClient:
		if tr.To == store.StateError {
			return PointEligibility, rsp.Status{Subject: rsp.SubjectDownloadOrder, Reason: rsp.ReasonRetriesExceeded, Message: "download retry limit reached"}, true
		}
		return PointEligibility, rsp.Status{}, true
	case store.EventCCFailure:
		if tr.To == store.StateError {
			return PointConfirmCode, rsp.Status{Subject: rsp.SubjectConfirmationCode, Reason: rsp.ReasonRetriesExceeded, Message: "confirmation code retries exhausted"}, true
		}
	case store.EventBPPDelivered:
		return PointDownload, rsp.Status{}, true
	case store.EventSessionCancelled:
		return PointDownload, rsp.Status{Subject: rsp.SubjectEUICC, Reason: rsp.ReasonRefused, Message: "download session cancelled"}, true
	case store.EventInstallResult:
		if tr.To == store.StateInstalled {
			return PointInstall, rsp.Status{}, true
		}
		return PointInstall, rsp.Status{Subject: rsp.SubjectEUICC, Reason: rsp.ReasonExecutionError, Message: "profile installation failed"}, true
	}
	return 0, rsp.Status{}, false
}

// ProgressWorker delivers reports to the operators' callback URLs.
type ProgressWorker struct {
	river.WorkerDefaults[ProgressArgs]
	Operators OperatorBook
	// HTTP presents the SM-DP+'s TLS certificate as client certificate
	// (mutual TLS with the operator) and trusts the operators' servers.
	HTTP *http.Client
	// RequesterID is the SM-DP+'s functionRequesterIdentifier (its
	// address).
	RequesterID string
	// Backoff is the wait before attempt n+1 after n failed ones;
	// default DefaultProgressBackoff.
	Backoff func(attempt int) time.Duration
	Log     *slog.Logger
	// Pending, when set, answers whether an earlier report of the same
	// order is undelivered (*jobs.Client: one indexed query); nil: River's
	// JobList, which scans the kept jobs.
	Pending interface {
		EarlierPending(ctx context.Context, queue, tag string, id int64) (bool, error)
	}
}

// DefaultProgressBackoff doubles from 2 s up to 30 min.
func DefaultProgressBackoff(attempt int) time.Duration {
	return ProgressBackoff(2*time.Second, 30*time.Minute)(attempt)
}

// ProgressBackoff waits first after the first failed attempt and doubles
// the wait after each further one, up to limit (serve.callback_backoff
// sets first; tests make it small).
func ProgressBackoff(first, limit time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		return time.Duration(math.Min(float64(first)*math.Pow(2, float64(max(attempt, 1)-1)), float64(limit)))
	}
}

// NextRetry applies Backoff.
func (w *ProgressWorker) NextRetry(job *river.Job[ProgressArgs]) time.Time {
	return time.Now().Add(w.backoff()(job.Attempt))
}

func (w *ProgressWorker) backoff() func(int) time.Duration {
	if w.Backoff == nil {
		return DefaultProgressBackoff
	}
	return w.Backoff
}

// Timeout bounds one delivery attempt.
func (w *ProgressWorker) Timeout(*river.Job[ProgressArgs]) time.Duration { return 30 * time.Second }

// orderTag marks the reports of one order, so that they are delivered in
// the order they were enqueued (River tags: word characters and '-').
func orderTag(operator, iccid string) string {
	h := sha256.Sum256([]byte(operator))
	return fmt.Sprintf("o-%x-%s", h[:8], iccid)
}

// earlierPending reports whether an earlier report of the same order is
// still to be delivered: a retried report must not overtake it.
func earlierPending(ctx context.Context, job *river.Job[ProgressArgs]) (bool, error) {
	// The queue (with the states) lets the database use River's fetch
	// index instead of scanning every job it keeps, delivered ones included.
	p := river.NewJobListParams().Queues(ProgressQueue).Kinds(ProgressArgs{}.Kind()).TagsAll(job.Tags...).
		States(rivertype.JobStateAvailable, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
			rivertype.JobStateRunning, rivertype.JobStatePending).
		OrderBy(river.JobListOrderByID, river.SortOrderAsc).First(1)
	var (
		res *river.JobListResult
		err error
	)
	if c, cerr := river.ClientFromContextSafely[*sql.Tx](ctx); cerr == nil {
		res, err = c.JobList(ctx, p)
	} else if c, cerr := river.ClientFromContextSafely[pgx.Tx](ctx); cerr == nil {
		res, err = c.JobList(ctx, p)
	} else {
		return false, nil // not run by a River client (a direct call): nothing to wait for
	}
	if err != nil {
		return false, err
	}
	return len(res.Jobs) > 0 && res.Jobs[0].ID < job.ID, nil
}

// Work POSTs the report; any answer but 2xx is retried. It waits while an
// earlier report of the same order is undelivered.
func (w *ProgressWorker) Work(ctx context.Context, job *river.Job[ProgressArgs]) error {
	a := job.Args
	if len(job.Tags) > 0 {
		var (
			wait bool
			err  error
		)
		if w.Pending != nil {
			wait, err = w.Pending.EarlierPending(ctx, ProgressQueue, job.Tags[0], job.ID)
		} else {
			wait, err = earlierPending(ctx, job)
		}
		if err != nil {
			return err
		}
		if wait {
			return river.JobSnooze(w.backoff()(1))
		}
	}
	op, err := w.Operators.GetOperator(ctx, a.Operator)
	if errors.Is(err, store.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("operator %q was removed: report %s dropped", a.Operator, a.EventID))
	}
	if err != nil {
		return err
	}
	if op.CallbackURL == "" {
		return nil // the operator takes no reports
	}
	body, err := rsp.EncodeES2Request(&rsp.HandleDownloadProgressInfoRequest{
		Header: rsp.RequestHeader{FunctionRequesterIdentifier: w.RequesterID, FunctionCallIdentifier: a.EventID},
		EID:    a.EID, ICCID: a.ICCID, ProfileType: a.ProfileType, Timestamp: a.Timestamp, NotificationPointID: a.Point,
		NotificationPointStatus: rsp.Status{Subject: rsp.SubjectCode(a.Subject), Reason: rsp.ReasonCode(a.Reason), Message: a.Message},
	})
	if err != nil {
		return river.JobCancel(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, op.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return river.JobCancel(fmt.Errorf("operator %q callback URL: %w", a.Operator, err))
	}
	req.Header.Set("Content-Type", rsp.JSONContentType)
	req.Header.Set("X-Admin-Protocol", AdminProtocol)
	hc := w.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("report %s to operator %q: %w", a.EventID, a.Operator, err)
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("report %s to operator %q: HTTP %d", a.EventID, a.Operator, res.StatusCode)
	}
	return nil
}

// DeletionReporter is told of a verified delete notification: the ICCID
// the eUICC names, the EID of the eUICC certificate that signed it, and
// its sequence number.
type DeletionReporter func(ctx context.Context, iccid, eid string, seq int64) error

// SetDeletionReporter makes HandleNotification pass verified delete
// notifications to f (nil: only logged). Set it before serving.
func (s *Server) SetDeletionReporter(f DeletionReporter) {
	if f == nil {
		s.deleted.Store(nil)
		return
	}
	s.deleted.Store(&f)
}

// reportDeleted passes a verified delete notification naming an ICCID to
// the DeletionReporter.
func (s *Server) reportDeleted(ctx context.Context, md *rsp.NotificationMetadata, eid string) error {
	f := s.deleted.Load()
	if f == nil || md.ICCID == nil {
		return nil
	}
	iccid, err := esim.ICCIDFromSwappedBCD(md.ICCID)
	if err != nil {
		return status(rsp.SubjectICCID, rsp.ReasonInvalidFormat, "delete notification: "+err.Error())
	}
	return (*f)(ctx, iccid.String(), eid, md.SeqNumber)
}

// OrderBook is what deletion reports read of an order; *store.DB
// implements it.
type OrderBook interface {
	Order(ctx context.Context, iccid string) (store.Profile, error)
	OrderOwner(ctx context.Context, iccid string) (string, error)
}

// JobQueue inserts jobs in their own transaction; *jobs.Client implements
// it.
type JobQueue interface {
	InsertMany(ctx context.Context, params []river.InsertManyParams) error
}

// DeletionReports returns the DeletionReporter that enqueues a
// PointDeleted report to the operator whose order put the profile on that
// eUICC: only for a profile Installed (or Downloaded) on the notifying
// eUICC, so that an eUICC cannot report another's profile. The store keeps
// no state for deletion, so the report is enqueued in its own transaction
// (not in one with a state change); its eventId is derived from the
// ICCID, EID and sequence number, so that a notification the LPA sends
// again is discarded by the operator as a repeat. It goes after the
// order's earlier reports (same order tag).
func DeletionReports(q JobQueue, orders OrderBook, now func() time.Time) DeletionReporter {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, iccid, eid string, seq int64) error {
		p, err := orders.Order(ctx, iccid)
		if errors.Is(err, store.ErrNotFound) {
			return nil // not this SM-DP+'s profile
		}
		if err != nil {
			return err
		}
		if p.EID != eid || (p.State != store.StateInstalled && p.State != store.StateDownloaded) {
			return nil
		}
		owner, err := orders.OrderOwner(ctx, iccid)
		if err != nil || owner == "" {
			return err
		}
		h := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s|%d", owner, iccid, eid, seq)))
		args := ProgressArgs{EventID: fmt.Sprintf("evt-del-%x", h[:12]), Operator: owner, ICCID: iccid, EID: eid,
			ProfileType: p.ProfileType, Point: PointDeleted, Timestamp: now().UTC().Format(time.RFC3339)}
		opts := args.InsertOpts()
		opts.Tags = []string{orderTag(owner, iccid)}
		return q.InsertMany(ctx, []river.InsertManyParams{{Args: args, InsertOpts: &opts}})
	}
}
