package smdp

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

const (
	eid1 = "89049032123451234512345678901235"
	eid2 = "89049032123451234512345678901999"
)

// openFilled opens a fresh SQLite store holding profiles ICCID(0…4) of type
// "t1" and ICCID(10) of type "t2", all Available.
func openFilled(t *testing.T, opts ...store.Option) *store.DB {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "perso.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	ps := append(storetest.Profiles("t1", 0, 5, 8), storetest.Profiles("t2", 10, 1, 8)...)
	if _, err := s.PutBatch(ctx, "b1", ps); err != nil {
		t.Fatal(err)
	}
	return s
}

// order moves ICCID(i) to Released, bound to eid1 (released: ReleaseFlag).
func order(ctx context.Context, s *store.DB, i int, release bool) error {
	if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: storetest.ICCID(i), EID: eid1}); err != nil {
		return err
	}
	_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: storetest.ICCID(i), EID: eid1, ReleaseFlag: release})
	return err
}

// TestStoreStatus provokes each condition of the status-code tables of
// ../spec/es2-es10-codes.md §3 on a real store and checks the code the
// function answers. want is copied from the spec's table ("any": the table
// accepts any Failed status); the name cites the table and row.
func TestStoreStatus(t *testing.T) {
	unknown := "89880000000000000999"
	iccid := storetest.ICCID
	clock := storetest.NewClock()
	for _, tc := range []struct {
		name    string
		fn      Function
		opts    []store.Option
		provoke func(ctx context.Context, s *store.DB) error
		want    string
	}{
		// §3.1 ES2+.
		{"3.1 ICCID unknown (DownloadOrder)", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: unknown})
			return err
		}, "8.2.1/3.9"},
		{"3.1 ICCID unknown (ConfirmOrder)", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: unknown})
			return err
		}, "8.2.1/3.9"},
		{"3.1 ICCID unknown (CancelOrder)", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: unknown, Final: store.StateAvailable})
			return err
		}, "8.2.1/3.9"},
		{"3.1 ICCID already reserved by a different order", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(0), EID: eid1}); err != nil {
				return err
			}
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(0), EID: eid2})
			return err
		}, "8.2.1/3.3"},
		{"3.1 ICCID not available (already released)", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, true); err != nil {
				return err
			}
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(0)})
			return err
		}, "8.2.1/3.3"},
		{"3.1 profile cannot be released", ES2ReleaseProfile, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.ReleaseProfile(ctx, iccid(0)) // Available
			return err
		}, "8.2.1/3.5"},
		{"3.1 profile type unknown", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "nope"})
			return err
		}, "8.2.5/3.9"},
		{"3.1 no profile of the type left", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "t2"}); err != nil {
				return err
			}
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "t2"})
			return err
		}, "8.2.5/3.7"},
		{"3.1 ICCID not of that type", ES2DownloadOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(10), ProfileType: "t1"})
			return err
		}, "8.2.5/3.8"},
		{"3.1 EID missing while matchingId empty", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(0)}); err != nil {
				return err
			}
			empty := ""
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid(0), MatchingID: &empty})
			return err
		}, "8.1.1/2.2"},
		{"3.1 EID differs from the order's EID (ConfirmOrder)", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(0), EID: eid1}); err != nil {
				return err
			}
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid(0), EID: eid2})
			return err
		}, "8.1.1/3.10"},
		{"3.1 EID differs from the order's EID (CancelOrder)", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, false); err != nil {
				return err
			}
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid(0), EID: eid2, Final: store.StateAvailable})
			return err
		}, "8.1.1/3.10"},
		{"3.1 matchingId already used", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			token := "TOKEN-1"
			for i := range 2 {
				if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid(i)}); err != nil {
					return err
				}
				if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid(i), MatchingID: &token}); err != nil {
					return err
				}
			}
			return nil
		}, "8.2.6/3.3"},
		{"3.1 matchingId does not match the order", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, false); err != nil {
				return err
			}
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid(0), EID: eid1, MatchingID: "OTHER", Final: store.StateAvailable})
			return err
		}, "8.2.6/3.10"},
		{"3.1 ConfirmOrder on a never-ordered ICCID", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid(0)})
			return err
		}, "any"},
		{"3.1 CancelOrder on a never-ordered ICCID", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid(0), Final: store.StateAvailable})
			return err
		}, "any"},
		{"3.1 CancelOrder without the bound EID", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, false); err != nil {
				return err
			}
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid(0), Final: store.StateAvailable})
			return err
		}, "any"},
		// §3 reasons: 2.2 mandatory element missing, 2.1 invalid format.
		{"§3 reason 2.2: iccid missing", ES2ConfirmOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{})
			return err
		}, "8.2.1/2.2"},
		{"§3 reason 2.1: finalProfileStatusIndicator invalid", ES2CancelOrder, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid(0), Final: store.StateReleased})
			return err
		}, "8.2/2.1"},

		// §3.3 ES9+ AuthenticateClient.
		{"3.3 row 1 transactionId unknown", ES9AuthenticateClient, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.GetSession(ctx, "0102")
			return err
		}, "8.10.1/3.9"},
		{"3.3 row 13 unknown matchingId", ES9AuthenticateClient, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.ProfileByMatchingID(ctx, "NOPE")
			return err
		}, "8.2.6/3.8"},
		{"3.3 row 14 EID without a pending order", ES9AuthenticateClient, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.PendingOrderByEID(ctx, eid2)
			return err
		}, "8.1.1/3.8"},
		{"3.3 row 16 order bound to another EID", ES9AuthenticateClient, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, true); err != nil {
				return err
			}
			_, err := s.AuthenticateClient(ctx, iccid(0), eid2)
			return err
		}, "8.1.1/3.8"},
		{"3.3 row 17 profile not released", ES9AuthenticateClient, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, false); err != nil {
				return err
			}
			_, err := s.AuthenticateClient(ctx, iccid(0), eid1)
			return err
		}, "8.2/1.2"},
		{"3.3 row 18 download order expired", ES9AuthenticateClient,
			[]store.Option{store.WithClock(clock.Now), store.WithOrderTTL(time.Hour)}, func(ctx context.Context, s *store.DB) error {
				if err := order(ctx, s, 0, true); err != nil {
					return err
				}
				clock.Advance(2 * time.Hour)
				_, err := s.AuthenticateClient(ctx, iccid(0), eid1)
				return err
			}, "8.8.5/4.10"},
		{"3.3 row 19 too many download attempts", ES9AuthenticateClient,
			[]store.Option{store.WithMaxDownloadAttempts(1)}, func(ctx context.Context, s *store.DB) error {
				if err := order(ctx, s, 0, true); err != nil {
					return err
				}
				// Two sessions started, the first abandoned without CancelSession.
				for range 2 {
					if _, err := s.AuthenticateClient(ctx, iccid(0), eid1); err != nil {
						return err
					}
				}
				return nil
			}, "8.8.5/6.4"},

		// §3.4 ES9+ GetBoundProfilePackage.
		{"3.4 transactionId unknown", ES9GetBoundProfilePackage, nil, func(ctx context.Context, s *store.DB) error {
			_, err := s.GetSession(ctx, "0102")
			return err
		}, "8.10.1/3.9"},
		{"3.4 CC retries exhausted", ES9GetBoundProfilePackage, nil, func(ctx context.Context, s *store.DB) error {
			if err := order(ctx, s, 0, true); err != nil {
				return err
			}
			for range 3 { // the default limit
				if _, err := s.ConfirmationCodeFailed(ctx, iccid(0)); err != nil {
					return err
				}
			}
			return nil
		}, "8.2.7/6.4"},

		// §3.6 ES9+ CancelSession, §4.3: a cancelled session is gone.
		{"3.6 transactionId of a cancelled session", ES9CancelSession, nil, func(ctx context.Context, s *store.DB) error {
			if _, err := s.PutSession(ctx, store.Session{TransactionID: "0A0B"}); err != nil {
				return err
			}
			if err := s.DeleteSession(ctx, "0A0B"); err != nil {
				return err
			}
			_, err := s.GetSession(ctx, "0A0B")
			return err
		}, "8.10.1/3.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := openFilled(t, tc.opts...)
			err := tc.provoke(ctx, s)
			if err == nil {
				t.Fatal("the store accepted the request")
			}
			st, ok := StoreStatus(tc.fn, err)
			if !ok {
				t.Fatalf("%s: no status for %v", tc.fn, err)
			}
			if tc.want != "any" && st.Code() != tc.want {
				t.Fatalf("%s: status %s for %v, want %s", tc.fn, st.Code(), err, tc.want)
			}
			if st.Message == "" {
				t.Fatalf("%s: status %s without a message", tc.fn, st.Code())
			}
		})
	}
}

// TestStoreStatusNoCode: errors that are no SGP.22 condition get no status,
// so that the handler logs them and answers its own Failed status.
func TestStoreStatusNoCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"database failure", fmt.Errorf("store: reading profile: %w", errors.New("disk I/O error"))},
		{"stale session version", &store.Error{Kind: store.ErrStale, Key: store.KeyTransactionID, Value: "0A"}},
		{"unknown batch", &store.Error{Kind: store.ErrNotFound, Key: store.KeyBatch, Value: "b1"}},
		{"unknown one-time key", &store.Error{Kind: store.ErrNotFound, Key: store.KeyEUICCOtPK}},
		{"duplicate transactionId", &store.Error{Kind: store.ErrConflict, Key: store.KeyTransactionID, Value: "0A"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, ok := StoreStatus(ES9AuthenticateClient, tc.err); ok || !st.IsZero() {
				t.Fatalf("status %v for %v, want none", st, tc.err)
			}
		})
	}
}

// TestStoreStatusKeepsTokensOut: the message never carries the identifier's
// value (a matchingId is a bearer token).
func TestStoreStatusKeepsTokensOut(t *testing.T) {
	for _, k := range []store.Kind{store.ErrNotFound, store.ErrMatchingIDInUse, store.ErrMatchingIDMismatch, store.ErrInvalid} {
		err := &store.Error{Kind: k, Key: store.KeyMatchingID, Value: "SECRET-TOKEN"}
		for _, fn := range []Function{ES2ConfirmOrder, ES9AuthenticateClient} {
			st, ok := StoreStatus(fn, err)
			if !ok || strings.Contains(st.Error(), "SECRET-TOKEN") {
				t.Fatalf("%s %v: status %q (ok %v)", fn, k, st.Error(), ok)
			}
		}
	}
}
