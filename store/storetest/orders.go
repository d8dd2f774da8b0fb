package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

// bring moves profile iccid (Available) into state, the way real traffic
// does. Orders from Linked on are bound to eid1.
func bring(t *testing.T, s *store.DB, iccid string, state store.State) {
	t.Helper()
	ctx := context.Background()
	step := func(_ store.Profile, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("bringing %s to %s: %v", iccid, state, err)
		}
	}
	switch state {
	case store.StateAvailable:
		return
	case store.StateAllocated:
		step(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid}))
		return
	case store.StateUnavailable:
		bring(t, s, iccid, store.StateLinked)
		step(s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid, EID: eid1, Final: store.StateUnavailable}))
		return
	case store.StateError:
		bring(t, s, iccid, store.StateReleased)
		for i := 0; i < 3; i++ { // the default confirmation code limit
			s.ConfirmationCodeFailed(ctx, iccid)
		}
		return
	}
	step(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid, EID: eid1}))
	if state == store.StateLinked {
		return
	}
	step(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: eid1}))
	if state == store.StateConfirmed {
		return
	}
	step(s.ReleaseProfile(ctx, iccid))
	if state == store.StateReleased {
		return
	}
	step(s.AuthenticateClient(ctx, iccid, eid1))
	step(s.BPPDelivered(ctx, iccid))
	if state == store.StateDownloaded {
		return
	}
	step(s.InstallResult(ctx, iccid, true))
	if state != store.StateInstalled {
		t.Fatalf("bring: unknown state %s", state)
	}
}

// eidFor is the EID an order in that state is bound to.
func eidFor(state store.State) string {
	switch state {
	case store.StateAvailable, store.StateAllocated, store.StateUnavailable:
		return ""
	}
	return eid1
}

type event struct {
	name  string
	ev    store.Event
	apply func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error)
}

var events = []event{
	{"DownloadOrder", store.EventDownloadOrder, func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error) {
		return s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid, EID: eid, ProfileType: ptype})
	}},
	{"ConfirmOrder", store.EventConfirmOrder, func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error) {
		return s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: eid})
	}},
	{"ConfirmOrder+release", store.EventConfirmOrder, func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error) {
		return s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: eid, ReleaseFlag: true})
	}},
	{"CancelOrder→Available", store.EventCancelOrder, func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error) {
		return s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid, EID: eid, Final: store.StateAvailable})
	}},
	{"CancelOrder→Unavailable", store.EventCancelOrder, func(ctx context.Context, s *store.DB, iccid, eid string) (store.Profile, error) {
		return s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid, EID: eid, Final: store.StateUnavailable})
	}},
	{"ReleaseProfile", store.EventReleaseProfile, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.ReleaseProfile(ctx, iccid)
	}},
	{"AuthenticateClient", store.EventAuthenticateClient, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.AuthenticateClient(ctx, iccid, eid1)
	}},
	{"ConfirmationCodeFailed", store.EventCCFailure, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.ConfirmationCodeFailed(ctx, iccid)
	}},
	{"BPPDelivered", store.EventBPPDelivered, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.BPPDelivered(ctx, iccid)
	}},
	{"InstallResult(ok)", store.EventInstallResult, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.InstallResult(ctx, iccid, true)
	}},
	{"InstallResult(failed)", store.EventInstallResult, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.InstallResult(ctx, iccid, false)
	}},
	{"SessionCancelled", store.EventSessionCancelled, func(ctx context.Context, s *store.DB, iccid, _ string) (store.Profile, error) {
		return s.SessionCancelled(ctx, iccid)
	}},
}

// legal is the complete transition table: (state, event) → next state.
// Every pair not listed must fail with ErrIllegalTransition.
var legal = map[store.State]map[string]store.State{
	store.StateAvailable: {
		"DownloadOrder": store.StateAllocated,
	},
	store.StateAllocated: {
		"DownloadOrder":           store.StateAllocated, // a resent call
		"ConfirmOrder":            store.StateConfirmed,
		"ConfirmOrder+release":    store.StateReleased,
		"CancelOrder→Available":   store.StateAvailable,
		"CancelOrder→Unavailable": store.StateUnavailable,
	},
	store.StateLinked: {
		"DownloadOrder":           store.StateLinked, // a resent call
		"ConfirmOrder":            store.StateConfirmed,
		"ConfirmOrder+release":    store.StateReleased,
		"CancelOrder→Available":   store.StateAvailable,
		"CancelOrder→Unavailable": store.StateUnavailable,
	},
	store.StateConfirmed: {
		"ConfirmOrder":            store.StateConfirmed, // a resent call (same EID, no matchingId asked, no release)
		"ReleaseProfile":          store.StateReleased,
		"CancelOrder→Available":   store.StateAvailable,
		"CancelOrder→Unavailable": store.StateUnavailable,
	},
	store.StateReleased: {
		"ConfirmOrder+release":    store.StateReleased, // a resent call: the outcome of the order's confirmation
		"ReleaseProfile":          store.StateReleased, // a resent call
		"AuthenticateClient":      store.StateReleased,
		"ConfirmationCodeFailed":  store.StateReleased,
		"BPPDelivered":            store.StateDownloaded,
		"SessionCancelled":        store.StateReleased,
		"CancelOrder→Available":   store.StateAvailable,
		"CancelOrder→Unavailable": store.StateUnavailable,
	},
	store.StateDownloaded: {
		"BPPDelivered":          store.StateDownloaded, // the same BPP served again
		"InstallResult(ok)":     store.StateInstalled,
		"InstallResult(failed)": store.StateReleased, // re-download allowed
		"SessionCancelled":      store.StateReleased,
	},
	store.StateInstalled: {
		"InstallResult(ok)": store.StateInstalled, // a repeated notification
	},
	store.StateError: {
		"CancelOrder→Available":   store.StateAvailable,
		"CancelOrder→Unavailable": store.StateUnavailable,
	},
	store.StateUnavailable: {},
}

func testTransitions(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	fill(t, s, len(store.States)*len(events))
	n := 0
	for _, from := range store.States {
		for _, e := range events {
			iccid := ICCID(n)
			n++
			to, ok := legal[from][e.name]
			name := fmt.Sprintf("%s/%s", from, e.name)
			t.Run(name, func(t *testing.T) {
				bring(t, s, iccid, from)
				got, err := e.apply(ctx, s, iccid, eidFor(from))
				stored := must(s.GetProfile(ctx, iccid))(t)
				if ok {
					if err != nil {
						t.Fatalf("legal transition %s → %s failed: %v", from, to, err)
					}
					if got.State != to || stored.State != to {
						t.Fatalf("state = %s (stored %s), want %s", got.State, stored.State, to)
					}
					if got.ICCID != iccid {
						t.Fatalf("returned profile %+v", got)
					}
					return
				}
				wantErr(t, err, store.ErrIllegalTransition, store.KeyICCID)
				var se *store.Error
				errors.As(err, &se)
				if se.From != from || se.Event != e.ev || se.Value != iccid {
					t.Fatalf("error %+v, want From %s Event %s", se, from, e.ev)
				}
				if stored.State != from {
					t.Fatalf("a refused %s moved the profile from %s to %s", e.name, from, stored.State)
				}
			})
		}
	}
	// Unknown ICCIDs: ErrNotFound on the ICCID for every event.
	for _, e := range events {
		t.Run("unknown ICCID/"+e.name, func(t *testing.T) {
			_, err := e.apply(ctx, s, "8988000000000000999F", eid1)
			wantErr(t, err, store.ErrNotFound, store.KeyICCID)
		})
	}
}

func testDownloadOrder(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	fill(t, s, 3)
	must(s.CreateBatch(ctx, store.Batch{ID: "b2"}))(t)
	must(s.PutBatch(ctx, "b2", Profiles("other-type", 10, 1, 8)))(t)

	p := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype, EID: eid1}))(t)
	if p.State != store.StateLinked || p.EID != eid1 || p.ProfileType != ptype {
		t.Fatalf("allocation from the pool: %+v", p)
	}
	q := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype}))(t)
	if q.State != store.StateAllocated || q.EID != "" || q.ICCID == p.ICCID {
		t.Fatalf("second allocation: %+v (first %s)", q, p.ICCID)
	}
	// A resent call with the same parameters answers the same.
	again := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: p.ICCID, EID: eid1, ProfileType: ptype}))(t)
	if again.ICCID != p.ICCID || again.State != store.StateLinked {
		t.Fatalf("resent DownloadOrder: %+v", again)
	}

	for _, tc := range []struct {
		name string
		r    store.DownloadOrderRequest
		want error
		key  store.Key
	}{
		{"ICCID reserved by a different order", store.DownloadOrderRequest{ICCID: p.ICCID, EID: eid2}, store.ErrConflict, store.KeyICCID},
		{"ICCID reserved, now without EID", store.DownloadOrderRequest{ICCID: p.ICCID}, store.ErrConflict, store.KeyICCID},
		{"unknown ICCID", store.DownloadOrderRequest{ICCID: "89880000000000000999"}, store.ErrNotFound, store.KeyICCID},
		{"ICCID not of the profile type", store.DownloadOrderRequest{ICCID: ICCID(10), ProfileType: ptype}, store.ErrProfileTypeMismatch, store.KeyICCID},
		{"unknown profile type", store.DownloadOrderRequest{ProfileType: "nope"}, store.ErrUnknownProfileType, store.KeyProfileType},
		{"neither ICCID nor profile type", store.DownloadOrderRequest{EID: eid1}, store.ErrInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.DownloadOrder(ctx, tc.r)
			wantErr(t, err, tc.want, tc.key)
		})
	}
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype}))(t)
	_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype})
	wantErr(t, err, store.ErrNoProfileAvailable, store.KeyProfileType)
}

var matchingIDFormat = regexp.MustCompile(`^[A-Z2-7]{5}(-[A-Z2-7]{5}){3}$`)

func testConfirmOrder(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now), store.WithOrderTTL(time.Hour))
	fill(t, s, 10)
	for i := 0; i < 10; i++ {
		eid := ""
		if i%2 == 1 {
			eid = eid1
		}
		must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(i), EID: eid}))(t)
	}

	generated := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), ReleaseFlag: true}))(t)
	if !matchingIDFormat.MatchString(generated.MatchingID) || generated.State != store.StateReleased ||
		generated.CCRequired() || !generated.OrderExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("ConfirmOrder without matchingId: %+v", generated)
	}
	other := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(2)}))(t)
	if other.MatchingID == generated.MatchingID || other.State != store.StateConfirmed {
		t.Fatalf("second generated matching ID %q (first %q), state %s", other.MatchingID, generated.MatchingID, other.State)
	}
	cc := store.HashConfirmationCode("12345678")
	explicit := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(1), EID: eid1, MatchingID: ptr("MY-TOKEN-1"), CCHash: cc}))(t)
	if explicit.MatchingID != "MY-TOKEN-1" || explicit.EID != eid1 || !bytes.Equal(explicit.CCHash, cc) || !explicit.CCRequired() {
		t.Fatalf("ConfirmOrder with matchingId and CC: %+v", explicit)
	}
	if stored := must(s.GetProfile(ctx, ICCID(1)))(t); !bytes.Equal(stored.CCHash, cc) || stored.MatchingID != "MY-TOKEN-1" {
		t.Fatalf("stored order: %+v", stored)
	}
	bound := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(4), EID: eid2}))(t)
	if bound.EID != eid2 {
		t.Fatalf("ConfirmOrder binding an EID to an order without one: %+v", bound)
	}
	noToken := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(3), MatchingID: ptr(""), ReleaseFlag: true}))(t)
	if noToken.MatchingID != "" || noToken.EID != eid1 {
		t.Fatalf("ConfirmOrder with an empty matchingId: %+v", noToken)
	}

	for _, tc := range []struct {
		name string
		r    store.ConfirmOrderRequest
		want error
		key  store.Key
	}{
		{"matchingId already used", store.ConfirmOrderRequest{ICCID: ICCID(5), MatchingID: ptr("MY-TOKEN-1")}, store.ErrMatchingIDInUse, store.KeyMatchingID},
		{"generated matchingId reused", store.ConfirmOrderRequest{ICCID: ICCID(5), MatchingID: ptr(generated.MatchingID)}, store.ErrMatchingIDInUse, store.KeyMatchingID},
		{"EID differs from the order's", store.ConfirmOrderRequest{ICCID: ICCID(5), EID: eid2}, store.ErrEIDMismatch, store.KeyEID},
		{"empty matchingId without any EID", store.ConfirmOrderRequest{ICCID: ICCID(6), MatchingID: ptr("")}, store.ErrEIDRequired, store.KeyEID},
		{"already confirmed", store.ConfirmOrderRequest{ICCID: ICCID(0)}, store.ErrIllegalTransition, store.KeyICCID},
		{"no ICCID", store.ConfirmOrderRequest{}, store.ErrInvalid, store.KeyICCID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ConfirmOrder(ctx, tc.r)
			wantErr(t, err, tc.want, tc.key)
		})
	}
	if p := must(s.GetProfile(ctx, ICCID(5)))(t); p.State != store.StateLinked || p.MatchingID != "" {
		t.Fatalf("refused ConfirmOrders changed the order: %+v", p)
	}
}

func testCancelOrder(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	fill(t, s, 4)
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(0), EID: eid1}))(t)
	must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), MatchingID: ptr("TOKEN-0"), CCHash: []byte{1}}))(t)

	for _, tc := range []struct {
		name string
		r    store.CancelOrderRequest
		want error
		key  store.Key
	}{
		{"order bound to an EID, none given", store.CancelOrderRequest{ICCID: ICCID(0), Final: store.StateAvailable}, store.ErrEIDRequired, store.KeyEID},
		{"another EID", store.CancelOrderRequest{ICCID: ICCID(0), EID: eid2, Final: store.StateAvailable}, store.ErrEIDMismatch, store.KeyEID},
		{"matchingId does not match", store.CancelOrderRequest{ICCID: ICCID(0), EID: eid1, MatchingID: "TOKEN-X", Final: store.StateAvailable}, store.ErrMatchingIDMismatch, store.KeyMatchingID},
		{"invalid final status", store.CancelOrderRequest{ICCID: ICCID(0), EID: eid1, Final: store.StateReleased}, store.ErrInvalid, store.KeyFinalState},
		{"never ordered", store.CancelOrderRequest{ICCID: ICCID(1), Final: store.StateAvailable}, store.ErrIllegalTransition, store.KeyICCID},
		{"unknown ICCID", store.CancelOrderRequest{ICCID: "89880000000000000999", Final: store.StateAvailable}, store.ErrNotFound, store.KeyICCID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CancelOrder(ctx, tc.r)
			wantErr(t, err, tc.want, tc.key)
		})
	}

	p := must(s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: ICCID(0), EID: eid1, MatchingID: "TOKEN-0", Final: store.StateAvailable}))(t)
	if p.State != store.StateAvailable || p.EID != "" || p.MatchingID != "" || p.CCHash != nil {
		t.Fatalf("cancelled order kept its binding: %+v", p)
	}
	// The profile and its matching ID can be used again.
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(0), EID: eid2}))(t)
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(2)}))(t)
	if p := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(2), MatchingID: ptr("TOKEN-0")}))(t); p.MatchingID != "TOKEN-0" {
		t.Fatalf("matching ID of a cancelled order not reusable: %+v", p)
	}
	// Unavailable profiles are never allocated.
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(3)}))(t)
	must(s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: ICCID(3), Final: store.StateUnavailable}))(t)
	got := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype}))(t)
	if got.ICCID != ICCID(1) {
		t.Fatalf("allocated %s, want the only Available profile %s", got.ICCID, ICCID(1))
	}
	_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype})
	wantErr(t, err, store.ErrNoProfileAvailable, store.KeyProfileType)
}

func testDownloadAttempts(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, store.WithMaxDownloadAttempts(2), store.WithMaxCCAttempts(2))
	fill(t, s, 3)
	for i := 0; i < 3; i++ {
		bring(t, s, ICCID(i), store.StateReleased)
	}

	// Profile 0: two attempts allowed, the third refused for good.
	for i := 1; i <= 2; i++ {
		p := must(s.AuthenticateClient(ctx, ICCID(0), eid1))(t)
		if p.DownloadAttempts != i {
			t.Fatalf("attempt %d counted as %d", i, p.DownloadAttempts)
		}
		must(s.BPPDelivered(ctx, ICCID(0)))(t)
		p = must(s.InstallResult(ctx, ICCID(0), false))(t)
		want := store.StateReleased
		if i == 2 {
			want = store.StateError
		}
		if p.State != want {
			t.Fatalf("after failed installation %d: %s, want %s", i, p.State, want)
		}
	}
	_, err := s.AuthenticateClient(ctx, ICCID(0), eid1)
	wantErr(t, err, store.ErrIllegalTransition, store.KeyICCID)

	// Profile 1: attempts used up by cancelled sessions; the next one is the
	// retry limit and moves the profile to Error.
	for i := 0; i < 2; i++ {
		must(s.AuthenticateClient(ctx, ICCID(1), eid1))(t)
		if p := must(s.SessionCancelled(ctx, ICCID(1)))(t); i == 0 && p.State != store.StateReleased {
			t.Fatalf("cancelled session: %s", p.State)
		}
	}
	if p := must(s.GetProfile(ctx, ICCID(1)))(t); p.State != store.StateError {
		t.Fatalf("after the last attempt was cancelled: %s, want Error", p.State)
	}
	must(s.CancelOrder(ctx, store.CancelOrderRequest{ICCID: ICCID(1), EID: eid1, Final: store.StateAvailable}))(t)
	bring(t, s, ICCID(1), store.StateReleased)
	must(s.AuthenticateClient(ctx, ICCID(1), eid1))(t)
	must(s.AuthenticateClient(ctx, ICCID(1), eid1))(t)
	_, err = s.AuthenticateClient(ctx, ICCID(1), eid1)
	wantErr(t, err, store.ErrRetryLimit, store.KeyICCID)
	if p := must(s.GetProfile(ctx, ICCID(1)))(t); p.State != store.StateError {
		t.Fatalf("after the retry limit: %s, want Error", p.State)
	}

	// Profile 2: confirmation code failures.
	p := must(s.ConfirmationCodeFailed(ctx, ICCID(2)))(t)
	if p.CCAttempts != 1 || p.State != store.StateReleased {
		t.Fatalf("first wrong code: %+v", p)
	}
	_, err = s.ConfirmationCodeFailed(ctx, ICCID(2))
	wantErr(t, err, store.ErrCCRetryLimit, store.KeyICCID)
	if p := must(s.GetProfile(ctx, ICCID(2)))(t); p.State != store.StateError || p.CCAttempts != 2 {
		t.Fatalf("after the CC retry limit: %+v", p)
	}
}

func testAuthenticateClient(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now), store.WithOrderTTL(time.Hour))
	fill(t, s, 3)
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(0)}))(t)
	must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), ReleaseFlag: true}))(t)
	bring(t, s, ICCID(1), store.StateReleased)
	bring(t, s, ICCID(2), store.StateReleased)

	p := must(s.AuthenticateClient(ctx, ICCID(0), eid2))(t)
	if p.EID != eid2 || p.DownloadAttempts != 1 {
		t.Fatalf("an activation-code order binds the EID of the first eUICC: %+v", p)
	}
	for _, tc := range []struct {
		name, iccid, eid string
		want             error
		key              store.Key
	}{
		{"now bound to another eUICC", ICCID(0), eid1, store.ErrEIDMismatch, store.KeyEID},
		{"order bound to another EID", ICCID(1), eid2, store.ErrEIDMismatch, store.KeyEID},
		{"no EID", ICCID(1), "", store.ErrInvalid, store.KeyEID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AuthenticateClient(ctx, tc.iccid, tc.eid)
			wantErr(t, err, tc.want, tc.key)
		})
	}
	clock.Advance(time.Hour)
	_, err := s.AuthenticateClient(ctx, ICCID(2), eid1)
	wantErr(t, err, store.ErrOrderExpired, store.KeyICCID)
}

func testLookups(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	fill(t, s, 3)
	bring(t, s, ICCID(0), store.StateLinked)
	must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), MatchingID: ptr("AC-TOKEN")}))(t)
	bring(t, s, ICCID(1), store.StateLinked)
	must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(1), MatchingID: ptr(""), ReleaseFlag: true}))(t)

	if p := must(s.ProfileByMatchingID(ctx, "AC-TOKEN"))(t); p.ICCID != ICCID(0) || p.Segments != nil {
		t.Fatalf("ProfileByMatchingID = %+v", p)
	}
	if p := must(s.PendingOrderByEID(ctx, eid1))(t); p.ICCID != ICCID(1) {
		t.Fatalf("PendingOrderByEID = %s, want the order without token %s", p.ICCID, ICCID(1))
	}
	for _, tc := range []struct {
		name string
		fn   func() error
		want error
		key  store.Key
	}{
		{"unknown matchingId", func() error { _, err := s.ProfileByMatchingID(ctx, "NOPE"); return err }, store.ErrNotFound, store.KeyMatchingID},
		{"empty matchingId", func() error { _, err := s.ProfileByMatchingID(ctx, ""); return err }, store.ErrNotFound, store.KeyMatchingID},
		{"EID without pending order", func() error { _, err := s.PendingOrderByEID(ctx, eid2); return err }, store.ErrNotFound, store.KeyEID},
		{"unknown ICCID", func() error { _, err := s.GetProfile(ctx, "89880000000000000999"); return err }, store.ErrNotFound, store.KeyICCID},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.fn(), tc.want, tc.key) })
	}
}
