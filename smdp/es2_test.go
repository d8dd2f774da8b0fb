package smdp

import (
	"context"
	"errors"
	"testing"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

const smdpAddr = "testsmdpplus1.example.com"

type fakeSMDS struct {
	err    error
	events []string
}

func (f *fakeSMDS) RegisterEvent(_ context.Context, addr, eid, eventID string) error {
	f.events = append(f.events, addr+"|"+eid+"|"+eventID)
	return f.err
}

func newES2(t *testing.T, s *store.DB, smds SMDSRegistrar) *ES2 {
	t.Helper()
	e, err := NewES2(ES2Config{Address: smdpAddr, Desk: s, SMDS: smds, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func sp(s string) *string { return &s }

// TestES2Status runs each ES2+ function into each condition of the
// addendum's §3.1 table (and the format and authorisation checks before
// them) on a real store, and checks the status code; want "" is success,
// "any" a Failed status of any code (the table's "any Failed" rows).
func TestES2Status(t *testing.T) {
	iccid := storetest.ICCID
	unknown20 := "89880000000000000999" // not in the inventory, wrong Luhn digit
	unknown19 := "8988000000000000099"  // 19 digits
	padded19 := "8988000000000000099F"  // pySim's padding of a 19-digit ICCID
	const opA, opB = "op-a", "op-b"
	type call func(ctx context.Context, e *ES2) (any, rsp.Status)
	down := func(op string, r rsp.DownloadOrderRequest) call {
		return func(ctx context.Context, e *ES2) (any, rsp.Status) { return e.DownloadOrder(ctx, op, &r) }
	}
	confirm := func(op string, r rsp.ConfirmOrderRequest) call {
		return func(ctx context.Context, e *ES2) (any, rsp.Status) { return e.ConfirmOrder(ctx, op, &r) }
	}
	cancel := func(op string, r rsp.CancelOrderRequest) call {
		return func(ctx context.Context, e *ES2) (any, rsp.Status) { return e.CancelOrder(ctx, op, &r) }
	}
	release := func(op string, i string) call {
		return func(ctx context.Context, e *ES2) (any, rsp.Status) {
			return e.ReleaseProfile(ctx, op, &rsp.ReleaseProfileRequest{ICCID: i})
		}
	}
	// setup steps, run as opA unless said otherwise.
	ordered := func(i int, eid string) call { return down(opA, rsp.DownloadOrderRequest{ICCID: iccid(i), EID: eid}) }
	confirmed := func(i int, eid string, m *string, rel bool) call {
		return confirm(opA, rsp.ConfirmOrderRequest{ICCID: iccid(i), EID: eid, MatchingID: m, ReleaseFlag: rel})
	}
	for _, tc := range []struct {
		name  string
		smds  *fakeSMDS
		setup []call
		call  call
		want  string
	}{
		// DownloadOrder
		{name: "DownloadOrder/by ICCID", call: ordered(0, eid1)},
		{name: "DownloadOrder/by profile type", call: down(opA, rsp.DownloadOrderRequest{ProfileType: "t1"})},
		{name: "DownloadOrder/resent identical call", setup: []call{ordered(0, eid1)}, call: ordered(0, eid1)},
		{name: "DownloadOrder/ICCID unknown", call: down(opA, rsp.DownloadOrderRequest{ICCID: unknown20}), want: "8.2.1/3.9"},
		{name: "DownloadOrder/19-digit ICCID unknown", call: down(opA, rsp.DownloadOrderRequest{ICCID: unknown19}), want: "8.2.1/3.9"},
		{name: "DownloadOrder/F-padded ICCID unknown", call: down(opA, rsp.DownloadOrderRequest{ICCID: padded19}), want: "8.2.1/3.9"},
		{name: "DownloadOrder/ICCID already reserved (other EID)", setup: []call{ordered(0, eid1)}, call: ordered(0, eid2), want: "8.2.1/3.3"},
		{name: "DownloadOrder/ICCID reserved by another operator", setup: []call{ordered(0, eid1)},
			call: down(opB, rsp.DownloadOrderRequest{ICCID: iccid(0), EID: eid1}), want: "8.2.1/3.3"},
		{name: "DownloadOrder/profile type unknown", call: down(opA, rsp.DownloadOrderRequest{ProfileType: "nope"}), want: "8.2.5/3.9"},
		{name: "DownloadOrder/none left of the type", setup: []call{down(opA, rsp.DownloadOrderRequest{ProfileType: "t2"})},
			call: down(opA, rsp.DownloadOrderRequest{ProfileType: "t2"}), want: "8.2.5/3.7"},
		{name: "DownloadOrder/ICCID not of the type", call: down(opA, rsp.DownloadOrderRequest{ICCID: iccid(0), ProfileType: "t2"}), want: "8.2.5/3.8"},
		{name: "DownloadOrder/neither ICCID nor type", call: down(opA, rsp.DownloadOrderRequest{}), want: "8.2.5/2.2"},
		{name: "DownloadOrder/EID malformed", call: down(opA, rsp.DownloadOrderRequest{ICCID: iccid(0), EID: "8904"}), want: "8.1.1/2.1"},
		{name: "DownloadOrder/ICCID malformed", call: down(opA, rsp.DownloadOrderRequest{ICCID: "89ABC00000000000000"}), want: "8.2.1/2.1"},

		// ConfirmOrder
		{name: "ConfirmOrder/generated matchingId", setup: []call{ordered(0, eid1)}, call: confirmed(0, eid1, nil, true)},
		{name: "ConfirmOrder/resent identical call", setup: []call{ordered(0, eid1), confirmed(0, eid1, sp("M-0"), true)}, call: confirmed(0, eid1, sp("M-0"), true)},
		{name: "ConfirmOrder/conflicting repeat", setup: []call{ordered(0, eid1), confirmed(0, eid1, sp("M-0"), true)}, call: confirmed(0, eid1, sp("M-1"), true), want: "8.2.1/3.3"},
		{name: "ConfirmOrder/ICCID unknown", call: confirm(opA, rsp.ConfirmOrderRequest{ICCID: unknown20}), want: "8.2.1/3.9"},
		{name: "ConfirmOrder/never ordered", call: confirmed(0, "", nil, false), want: "any"},
		{name: "ConfirmOrder/EID differs from the order's", setup: []call{ordered(0, eid1)}, call: confirmed(0, eid2, nil, false), want: "8.1.1/3.10"},
		{name: "ConfirmOrder/matchingId already used", setup: []call{ordered(0, eid1), confirmed(0, eid1, sp("M-0"), false), ordered(1, "")},
			call: confirmed(1, "", sp("M-0"), false), want: "8.2.6/3.3"},
		{name: "ConfirmOrder/empty matchingId without EID", setup: []call{ordered(0, "")}, call: confirmed(0, "", sp(""), false), want: "8.1.1/2.2"},
		{name: "ConfirmOrder/smdsAddress without EID", setup: []call{ordered(0, "")},
			call: confirm(opA, rsp.ConfirmOrderRequest{ICCID: iccid(0), SMDSAddress: "smds.example"}), want: "8.1.1/2.2"},
		{name: "ConfirmOrder/smdsAddress, no SM-DS configured", setup: []call{ordered(0, eid1)},
			call: confirm(opA, rsp.ConfirmOrderRequest{ICCID: iccid(0), SMDSAddress: "smds.example"}), want: "8.9/5.1"},
		{name: "ConfirmOrder/SM-DS registration fails", smds: &fakeSMDS{err: errors.New("unreachable")}, setup: []call{ordered(0, eid1)},
			call: confirm(opA, rsp.ConfirmOrderRequest{ICCID: iccid(0), SMDSAddress: "smds.example"}), want: "8.9/5.1"},
		{name: "ConfirmOrder/SM-DS registration", smds: &fakeSMDS{}, setup: []call{ordered(0, eid1)},
			call: confirm(opA, rsp.ConfirmOrderRequest{ICCID: iccid(0), SMDSAddress: "smds.example"})},
		{name: "ConfirmOrder/order of another operator", setup: []call{ordered(0, eid1)},
			call: confirm(opB, rsp.ConfirmOrderRequest{ICCID: iccid(0)}), want: "8.2.1/1.2"},
		{name: "ConfirmOrder/matchingId with '$'", setup: []call{ordered(0, eid1)}, call: confirmed(0, eid1, sp("a$b"), false), want: "8.2.6/2.1"},
		{name: "ConfirmOrder/ICCID missing", call: confirm(opA, rsp.ConfirmOrderRequest{}), want: "8.2.1/2.2"},

		// CancelOrder
		{name: "CancelOrder/to Available", setup: []call{ordered(0, eid1)},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Available"})},
		{name: "CancelOrder/resent identical call", setup: []call{ordered(0, eid1), confirmed(0, eid1, sp("M-0"), true),
			cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, MatchingID: "M-0", FinalProfileStatusIndicator: "Unavailable"})},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, MatchingID: "M-0", FinalProfileStatusIndicator: "Unavailable"})},
		{name: "CancelOrder/conflicting repeat (other final status)", setup: []call{ordered(0, eid1),
			cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Unavailable"})},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Available"}), want: "8.2.1/3.3"},
		{name: "CancelOrder/repeat by another operator", setup: []call{ordered(0, eid1),
			cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Available"})},
			call: cancel(opB, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Available"}), want: "8.2.1/3.3"},
		{name: "CancelOrder/ICCID unknown", call: cancel(opA, rsp.CancelOrderRequest{ICCID: unknown20, FinalProfileStatusIndicator: "Available"}), want: "8.2.1/3.9"},
		{name: "CancelOrder/never ordered", call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), FinalProfileStatusIndicator: "Available"}), want: "any"},
		{name: "CancelOrder/without the bound EID", setup: []call{ordered(0, eid1)},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), FinalProfileStatusIndicator: "Available"}), want: "any"},
		{name: "CancelOrder/EID differs", setup: []call{ordered(0, eid1)},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid2, FinalProfileStatusIndicator: "Available"}), want: "8.1.1/3.10"},
		{name: "CancelOrder/matchingId does not match", setup: []call{ordered(0, eid1), confirmed(0, eid1, sp("M-0"), false)},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, MatchingID: "M-9", FinalProfileStatusIndicator: "Available"}), want: "8.2.6/3.10"},
		{name: "CancelOrder/final status invalid", setup: []call{ordered(0, eid1)},
			call: cancel(opA, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Gone"}), want: "8.2/2.1"},
		{name: "CancelOrder/order of another operator", setup: []call{ordered(0, eid1)},
			call: cancel(opB, rsp.CancelOrderRequest{ICCID: iccid(0), EID: eid1, FinalProfileStatusIndicator: "Available"}), want: "8.2.1/1.2"},

		// ReleaseProfile
		{name: "ReleaseProfile/confirmed order", setup: []call{ordered(0, eid1), confirmed(0, eid1, nil, false)}, call: release(opA, iccid(0))},
		{name: "ReleaseProfile/resent", setup: []call{ordered(0, eid1), confirmed(0, eid1, nil, false), release(opA, iccid(0))}, call: release(opA, iccid(0))},
		{name: "ReleaseProfile/ICCID unknown", call: release(opA, unknown19), want: "8.2.1/3.9"},
		{name: "ReleaseProfile/not confirmed", setup: []call{ordered(0, eid1)}, call: release(opA, iccid(0)), want: "8.2.1/3.5"},
		{name: "ReleaseProfile/order of another operator", setup: []call{ordered(0, eid1), confirmed(0, eid1, nil, false)}, call: release(opB, iccid(0)), want: "8.2.1/1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var smds SMDSRegistrar
			if tc.smds != nil {
				smds = tc.smds
			}
			e := newES2(t, openFilled(t), smds)
			for i, step := range tc.setup {
				if _, st := step(ctx, e); !st.IsZero() {
					t.Fatalf("setup step %d: %v", i, st)
				}
			}
			resp, st := tc.call(ctx, e)
			switch {
			case tc.want == "" && !st.IsZero():
				t.Fatalf("failed with %v, want success", st)
			case tc.want == "":
				if resp == nil {
					t.Fatal("success without an answer")
				}
			case st.IsZero():
				t.Fatalf("succeeded (%+v), want %s", resp, tc.want)
			case tc.want != "any" && st.Code() != tc.want:
				t.Fatalf("status %v, want %s", st, tc.want)
			}
		})
	}
}

// TestES2Answers checks what the successful answers carry: the ICCID, a
// resent call's identical answer, the matching ID in the activation code.
func TestES2Answers(t *testing.T) {
	ctx := context.Background()
	s := openFilled(t)
	e := newES2(t, s, nil)
	d, st := e.DownloadOrder(ctx, "op-a", &rsp.DownloadOrderRequest{ProfileType: "t2", EID: eid1})
	if !st.IsZero() || d.ICCID != storetest.ICCID(10) {
		t.Fatalf("DownloadOrder = %+v, %v", d, st)
	}
	req := &rsp.ConfirmOrderRequest{ICCID: d.ICCID, ConfirmationCode: "1234", ReleaseFlag: true}
	c1, st := e.ConfirmOrder(ctx, "op-a", req)
	if !st.IsZero() || c1.MatchingID == "" || c1.EID != eid1 || c1.SMDPAddress != smdpAddr {
		t.Fatalf("ConfirmOrder = %+v, %v", c1, st)
	}
	c2, st := e.ConfirmOrder(ctx, "op-a", &rsp.ConfirmOrderRequest{ICCID: d.ICCID, MatchingID: &c1.MatchingID, ConfirmationCode: "1234", ReleaseFlag: true})
	if !st.IsZero() || *c2 != *c1 {
		t.Fatalf("resent ConfirmOrder = %+v, %v; first %+v", c2, st, c1)
	}
	code := e.ActivationCode(c1, true)
	back, err := activation.Parse(code.String())
	if err != nil || back.MatchingID != c1.MatchingID || back.SMDPAddress != smdpAddr || !back.CCRequired {
		t.Fatalf("activation code %q → %+v, %v", code, back, err)
	}
	p, err := s.ProfileByMatchingID(ctx, c1.MatchingID)
	if err != nil || p.ICCID != d.ICCID || p.State != store.StateReleased || !p.CCRequired() {
		t.Fatalf("the order behind the activation code: %+v, %v", p, err)
	}
}
