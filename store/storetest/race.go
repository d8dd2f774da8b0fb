package storetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/perso-esim/perso/store"
)

// testConcurrentAllocation: 64 goroutines ordering from one pool of 1,000
// profiles allocate every profile exactly once.
func testConcurrentAllocation(t *testing.T, open Opener) {
	const pool, workers = 1000, 64
	ctx := context.Background()
	s := open(t)
	fill(t, s, pool)
	var (
		mu   sync.Mutex
		got  []string
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype, EID: eid1})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				got = append(got, p.ICCID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	CheckAllocation(t, got, pool)
	for _, err := range errs {
		wantErr(t, err, store.ErrNoProfileAvailable, store.KeyProfileType)
	}
	if c := must(s.CountByState(ctx, "b1"))(t); c[store.StateLinked] != pool || c[store.StateAvailable] != 0 {
		t.Fatalf("states after the race: %v", c)
	}
}

// testConcurrentOrdersOnOneProfile: concurrent DownloadOrders naming the
// same ICCID for different eUICCs reserve it for exactly one; concurrent
// ConfirmOrders giving the same matching ID to different orders accept
// exactly one.
func testConcurrentOrdersOnOneProfile(t *testing.T, open Opener) {
	const n = 16
	ctx := context.Background()
	s := open(t)
	fill(t, s, n+1)
	race := func(f func(i int) error) (wins int, losses []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := f(i)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins++
				} else {
					losses = append(losses, err)
				}
			}()
		}
		wg.Wait()
		return wins, losses
	}
	wins, losses := race(func(i int) error {
		_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(n), EID: fmt.Sprintf("8904903200000000000000000000%04d", i)})
		return err
	})
	if wins != 1 {
		t.Fatalf("%d DownloadOrders for one ICCID succeeded, want 1", wins)
	}
	for _, err := range losses {
		wantErr(t, err, store.ErrConflict, store.KeyICCID)
	}

	for i := 0; i < n; i++ {
		must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(i)}))(t)
	}
	wins, losses = race(func(i int) error {
		_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(i), MatchingID: ptr("SAME-TOKEN")})
		return err
	})
	if wins != 1 {
		t.Fatalf("%d ConfirmOrders with one matching ID succeeded, want 1", wins)
	}
	for _, err := range losses {
		wantErr(t, err, store.ErrMatchingIDInUse, store.KeyMatchingID)
	}
}

// CheckAllocation fails unless iccids are exactly ICCID(0) … ICCID(n-1),
// each once.
func CheckAllocation(t *testing.T, iccids []string, n int) {
	t.Helper()
	sort.Strings(iccids)
	for i := 1; i < len(iccids); i++ {
		if iccids[i] == iccids[i-1] {
			t.Fatalf("profile %s allocated twice", iccids[i])
		}
	}
	if len(iccids) != n {
		t.Fatalf("%d profiles allocated, want %d", len(iccids), n)
	}
	for i, id := range iccids {
		if id != ICCID(i) {
			t.Fatalf("allocated %s, want %s", id, ICCID(i))
		}
	}
}
