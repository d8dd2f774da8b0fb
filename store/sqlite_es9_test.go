package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// TestSQLiteMigrationSessionsExpires: migration 4 drops sessions_expires
// from an inventory of migration 3 (and 5 adds profiles.chunk), keeps its sessions, and expired
// sessions are still swept (by a table scan) while live ones stay.
func TestSQLiteMigrationSessionsExpires(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inv.db")
	s, err := store.Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for tid, exp := range map[string]time.Time{"live": now.Add(time.Hour), "old": now.Add(-time.Minute)} {
		if _, err := s.PutSession(ctx, store.Session{TransactionID: tid, Phase: "x", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	// Back to migration 3's schema, as an older binary left it.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE INDEX sessions_expires ON sessions(expires_at); ALTER TABLE profiles DROP COLUMN chunk;
		DELETE FROM schema_migrations WHERE version >= 4`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n := indexCount(t, path, "sessions_expires"); n != 1 {
		t.Fatalf("setup: %d sessions_expires indexes", n)
	}

	s, err = store.Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := indexCount(t, path, "sessions_expires"); n != 0 {
		t.Fatalf("after migration 4: %d sessions_expires indexes, want 0", n)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatalf("live session after the migration: %v", err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1 (the expired session)", n, err)
	}
	if _, err := s.GetSession(ctx, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session after the sweep: %v, want not found", err)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatalf("live session after the sweep: %v", err)
	}
}

func indexCount(t *testing.T, path, name string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSQLiteHookOwnerReadWithOrder: the transition hook of each ES9+ event
// sees the owner of the order written (read with the order, not a
// statement of its own): two operators' orders and one without an owner,
// interleaved, each event reporting its own order's owner.
func TestSQLiteHookOwnerReadWithOrder(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "inv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1", ProfileType: "t", KeyBlob: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t", 0, 3, 64)); err != nil {
		t.Fatal(err)
	}
	owners := []string{"op-a", "op-b", ""}
	for i, op := range owners {
		if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: storetest.ICCID(i), Operator: op}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: storetest.ICCID(i), ReleaseFlag: true}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string][]string{}
	s.SetTransitionHook(func(_ context.Context, _ store.Tx, tr store.Transition) error {
		seen[tr.Profile.ICCID] = append(seen[tr.Profile.ICCID], tr.Operator)
		return nil
	})
	const eid = "89049032123451234512345678901235"
	for _, step := range []func(iccid string) error{
		func(iccid string) error { _, err := s.AuthenticateClientWith(ctx, iccid, eid, nil, nil); return err },
		func(iccid string) error { _, err := s.BPPDeliveredWith(ctx, iccid, nil); return err },
		func(iccid string) error { _, err := s.InstallResultWith(ctx, iccid, true, nil); return err },
	} {
		for _, i := range []int{1, 0, 2} {
			if err := step(storetest.ICCID(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, op := range owners {
		got := seen[storetest.ICCID(i)]
		if len(got) != 3 || got[0] != op || got[1] != op || got[2] != op {
			t.Errorf("order %d (owner %q): the hook saw owners %q", i, op, got)
		}
	}
}

// TestSQLiteGroupCommit: order and session writes that queue while
// another holds the write lock commit in one transaction after it, each
// in its own savepoint: a call refused by the hook, a session insert that
// conflicts and a call whose context ended before it ran leave nothing
// behind and get their own errors; a call past the download-attempt limit
// stores the order's Error state and gets ErrRetryLimit; the others of
// the group are stored.
func TestSQLiteGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "inv.db"), store.WithMaxDownloadAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1", ProfileType: "t", KeyBlob: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	const n = 7
	if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t", 0, n, 64)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: storetest.ICCID(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: storetest.ICCID(i), ReleaseFlag: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutSession(ctx, store.Session{TransactionID: "taken", Phase: "x"}); err != nil {
		t.Fatal(err)
	}

	const (
		blocker = 0 // holds the write lock in its hook until the others queued
		refused = 3 // the hook refuses its change
		gone    = 5 // its context ends while it waits
		limit   = 6 // its one download attempt was used before
	)
	errRefused := errors.New("refused by the hook")
	entered, release := make(chan struct{}), make(chan struct{})
	s.SetTransitionHook(func(_ context.Context, _ store.Tx, tr store.Transition) error {
		switch tr.Profile.ICCID {
		case storetest.ICCID(blocker):
			close(entered)
			<-release
		case storetest.ICCID(refused):
			return errRefused
		}
		return nil
	})
	const eid = "89049032123451234512345678901235"
	auth := func(ctx context.Context, i int) error {
		_, err := s.AuthenticateClientWith(ctx, storetest.ICCID(i), eid, nil, nil)
		return err
	}
	if err := auth(ctx, limit); err != nil {
		t.Fatal(err)
	}
	_, runs0, _ := store.SQLiteGroupState(s)
	errs := make([]chan error, n+2) // n orders, then the two session inserts
	for i := range errs {
		errs[i] = make(chan error, 1)
	}
	go func() { errs[blocker] <- auth(ctx, blocker) }()
	<-entered
	goneCtx, cancel := context.WithCancel(ctx)
	for i := 1; i < n; i++ {
		c := ctx
		if i == gone {
			c = goneCtx
		}
		go func() { errs[i] <- auth(c, i) }()
	}
	go func() { _, err := s.PutSession(ctx, store.Session{TransactionID: "new", Phase: "x"}); errs[n] <- err }()
	go func() {
		_, err := s.PutSession(ctx, store.Session{TransactionID: "taken", Phase: "y"})
		errs[n+1] <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if p, _, _ := store.SQLiteGroupState(s); p == n+1 {
			break
		}
		if time.Now().After(deadline) {
			p, _, _ := store.SQLiteGroupState(s)
			t.Fatalf("%d calls queued behind the blocker, want %d", p, n+1)
		}
	}
	cancel()
	close(release)

	for i, ch := range errs {
		err := <-ch
		switch {
		case i == refused && !errors.Is(err, errRefused):
			t.Errorf("refused order: %v, want the hook's error", err)
		case i == gone && !errors.Is(err, context.Canceled):
			t.Errorf("order whose context ended: %v, want context.Canceled", err)
		case i == limit && !errors.Is(err, store.ErrRetryLimit):
			t.Errorf("order past the attempt limit: %v, want ErrRetryLimit", err)
		case i == n+1 && !errors.Is(err, store.ErrConflict):
			t.Errorf("second session %q: %v, want ErrConflict", "taken", err)
		case i != refused && i != gone && i != limit && i != n+1 && err != nil:
			t.Errorf("call %d: %v", i, err)
		}
	}
	for i := range n {
		p, err := s.GetProfile(ctx, storetest.ICCID(i))
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if i == refused || i == gone {
			want = 0
		}
		if p.DownloadAttempts != want || (want == 1) != (p.EID == eid) {
			t.Errorf("order %d: %d download attempts, EID %q; want %d attempt(s)", i, p.DownloadAttempts, p.EID, want)
		}
		if (i == limit) != (p.State == store.StateError) {
			t.Errorf("order %d: state %s", i, p.State)
		}
	}
	if got, err := s.GetSession(ctx, "taken"); err != nil || got.Phase != "x" {
		t.Errorf("session taken: %+v, %v; want the first insert's", got, err)
	}
	if _, err := s.GetSession(ctx, "new"); err != nil {
		t.Errorf("session new: %v", err)
	}
	if _, runs, _ := store.SQLiteGroupState(s); runs-runs0 != 2 {
		t.Errorf("%d group transactions, want 2: the blocker's, then one for the %d calls queued behind it", runs-runs0, n+1)
	}
}
