package smdp

import (
	"bytes"
	"context"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// download runs a whole ES9+ download and fails the test on any status.
func download(t *testing.T, e *env, eu *testEUICC, matchingID *string, cc string) (upp []byte, tid rsp.TransactionID) {
	t.Helper()
	ia, st := call[*rsp.InitiateAuthenticationResponse](t, e, eu.initiate())
	if !st.IsZero() {
		t.Fatalf("initiateAuthentication: %v", st)
	}
	ac, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, matchingID), eu.cert, eu.eum))
	if !st.IsZero() {
		t.Fatalf("authenticateClient: %v", st)
	}
	gb, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, cc))
	if !st.IsZero() {
		t.Fatalf("getBoundProfilePackage: %v", st)
	}
	upp, pir := eu.install(t, gb, true)
	if err := e.srv.HandleNotification(context.Background(), wire(t, pir)); err != nil {
		t.Fatalf("handleNotification: %v", err)
	}
	return upp, ia.TransactionID
}

func TestDownload(t *testing.T) {
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		for _, tc := range []struct {
			name string
			eid  string // order bound to this EID
			mid  *string
			cc   string
		}{
			{name: "matchingId"},
			{name: "matchingId+EID", eid: testEID},
			{name: "confirmationCode", cc: "12345678"},
			{name: "EID only (default SM-DP+)", eid: testEID, mid: new(string)},
		} {
			t.Run(c.String()+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				iccid := e.addProfile(t)
				p := e.order(t, iccid, tc.eid, tc.mid, tc.cc)
				eu := newTestEUICC(t, c)
				mid := &p.MatchingID
				if tc.mid != nil {
					mid = nil // the LPA sends no matching ID
				}
				upp, tid := download(t, e, eu, mid, tc.cc)
				if !bytes.Equal(upp, e.upp) {
					t.Fatal("the UPP the eUICC opened differs from the stored one")
				}
				got, err := e.db.GetProfile(context.Background(), iccid)
				if err != nil {
					t.Fatal(err)
				}
				if got.State != store.StateInstalled || got.EID != testEID {
					t.Fatalf("store: state %s, EID %q; want Installed, %s", got.State, got.EID, testEID)
				}
				if _, err := e.db.GetSession(context.Background(), tidKey(tid)); err == nil {
					t.Fatal("the session outlived the installation result")
				}
			})
		}
	}
}
