package euiccsim

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/rsp"
)

// TestDownload is the loopback proof: the LPA downloads over HTTPS (the
// SGP.26 DPtls certificate, testsmdpplus1.example.com resolved to the
// listener) from the in-test SM-DP+, on both curves and both bindings, and
// recovers exactly the UPP the SM-DP+ bound; the SM-DP+ receives a PIR whose
// signature verifies, and no notification stays pending.
func TestDownload(t *testing.T) {
	for _, curve := range curves {
		for _, b := range []Binding{BindingJSON, BindingASN1} {
			t.Run(curve.SGP26Name()+"/"+b.String(), func(t *testing.T) {
				e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
				cfg := dp.serveTLS(t)
				cfg.Binding = b
				upp, err := NewLPA(e, cfg).Download(t.Context(), "LPA:1$"+testAddress+"$"+dp.matchingID)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(upp, dp.upp) {
					t.Fatal("recovered UPP differs from the bound one")
				}
				if len(dp.pirs) != 1 || dp.pirs[0].Data.Success == nil {
					t.Fatalf("SM-DP+ got %d PIRs, want one success", len(dp.pirs))
				}
				if n := len(e.ListNotification()); n != 0 {
					t.Errorf("%d notifications still pending after delivery", n)
				}
			})
		}
	}
}

// TestDownloadFailures: each failure comes back as a *DownloadError naming
// the step, with the SM-DP+'s SGP.22 status when it sent one.
func TestDownloadFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*testDP, *LPAConfig) string // returns the activation code
		step    string
		status  string // "" when the SM-DP+ sent none
		wantErr error
		cancels int
	}{
		{name: "wrong matching ID", step: "authenticateClient", status: "8.2.6/3.8",
			setup: func(dp *testDP, c *LPAConfig) string { return "LPA:1$" + testAddress + "$NOPE" }},
		{name: "address the SM-DP+ does not serve", step: "initiateAuthentication", status: "8.8.1/3.8",
			setup: func(dp *testDP, c *LPAConfig) string {
				dp.address = "other.example.com" // TLS still names testsmdpplus1
				return "LPA:1$" + testAddress + "$" + dp.matchingID
			}},
		{name: "confirmation code missing", step: "confirmation code", wantErr: ErrConfirmationCodeRequired, cancels: 1,
			setup: func(dp *testDP, c *LPAConfig) string {
				dp.cc = "87654321"
				return "LPA:1$" + testAddress + "$" + dp.matchingID + "$$1"
			}},
		{name: "confirmation code wrong", step: "getBoundProfilePackage", status: "8.2.7/3.8",
			setup: func(dp *testDP, c *LPAConfig) string {
				dp.cc, c.ConfirmationCode = "87654321", "12345678"
				return "LPA:1$" + testAddress + "$" + dp.matchingID
			}},
		{name: "confirmation code right", step: "",
			setup: func(dp *testDP, c *LPAConfig) string {
				dp.cc, c.ConfirmationCode = "87654321", "87654321"
				return "LPA:1$" + testAddress + "$" + dp.matchingID
			}},
		{name: "TLS root not trusted", step: "initiateAuthentication",
			setup: func(dp *testDP, c *LPAConfig) string {
				c.RootCAs = nil
				return "LPA:1$" + testAddress + "$" + dp.matchingID
			}},
		{name: "bad activation code", step: "activation code", wantErr: activation.ErrSyntax,
			setup: func(dp *testDP, c *LPAConfig) string { return "LPA:1$" + testAddress }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, dp := newTestEUICC(t, curves[0]), newTestDP(t, curves[0])
			cfg := dp.serveTLS(t)
			code := tc.setup(dp, &cfg)
			_, err := NewLPA(e, cfg).Download(t.Context(), code)
			if tc.step == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var de *DownloadError
			if !errors.As(err, &de) || de.Step != tc.step {
				t.Fatalf("got %v, want a DownloadError at %s", err, tc.step)
			}
			if got := ""; !de.Status.IsZero() || tc.status != "" {
				got = de.Status.Code()
				if got != tc.status {
					t.Errorf("status %q, want %q", got, tc.status)
				}
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
			if len(dp.cancels) != tc.cancels {
				t.Errorf("SM-DP+ saw %d cancelSession, want %d", len(dp.cancels), tc.cancels)
			}
			if strings.Contains(err.Error(), "87654321") || strings.Contains(err.Error(), dp.matchingID) {
				t.Errorf("error %q leaks the confirmation code or the matching ID", err)
			}
		})
	}
}

// TestDownloadEUICCRefusal: when the eUICC refuses the SM-DP+ (here: it
// trusts no CI the SM-DP+ can use), the LPA forwards the refusal and
// reports the eUICC's code.
func TestDownloadEUICCRefusal(t *testing.T) {
	e, dp := newTestEUICC(t, curves[0]), newTestDP(t, curves[0])
	cfg := dp.serveTLS(t)
	dp.authCert = dp.pbCert // wrong role: invalidCertificate
	_, err := NewLPA(e, cfg).Download(t.Context(), "LPA:1$"+testAddress+"$"+dp.matchingID)
	var de *DownloadError
	var es10 *ES10Error
	if !errors.As(err, &de) || de.Step != "AuthenticateServer" || !errors.As(err, &es10) || es10.Code != int64(rsp.AuthErrInvalidCertificate) {
		t.Fatalf("got %v, want the eUICC's invalidCertificate", err)
	}
}

// TestSendNotifications: after a download, enabling the profile queues a
// signed notification that SendNotifications delivers to the address the
// metadata names, and only there.
func TestSendNotifications(t *testing.T) {
	e, dp := newTestEUICC(t, curves[1]), newTestDP(t, curves[1])
	lpa := NewLPA(e, dp.serveTLS(t))
	if _, err := lpa.Download(t.Context(), "LPA:1$"+testAddress+"$"+dp.matchingID); err != nil {
		t.Fatal(err)
	}
	if err := e.EnableProfile(dp.iccid); err != nil {
		t.Fatal(err)
	}
	if n, err := lpa.SendNotifications(t.Context(), "elsewhere.example.com"); n != 0 || err != nil {
		t.Fatalf("sent %d to another address (%v)", n, err)
	}
	n, err := lpa.SendNotifications(t.Context(), testAddress)
	if n != 1 || err != nil || len(dp.others) != 1 || dp.others[0].TBSOtherNotification.Operation != rsp.NotificationEnable {
		t.Fatalf("sent %d (%v); SM-DP+ has %d", n, err, len(dp.others))
	}
	if len(e.ListNotification()) != 0 {
		t.Error("delivered notification still pending")
	}
}

// BenchmarkDownload measures one complete download (TLS loopback, both
// sides: the in-test SM-DP+ signs and binds in software) per iteration.
func BenchmarkDownload(b *testing.B) {
	for _, curve := range curves {
		for _, bind := range []Binding{BindingJSON, BindingASN1} {
			b.Run(curve.SGP26Name()+"/"+bind.String(), func(b *testing.B) {
				dp := newTestDP(b, curve)
				cfg := dp.serveTLS(b)
				cfg.Binding = bind
				for b.Loop() {
					e := newTestEUICC(b, curve)
					if _, err := NewLPA(e, cfg).Download(b.Context(), "LPA:1$"+testAddress+"$"+dp.matchingID); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The LPA's HTTP clients: HTTP/2 by default, HTTP/1.1 with NewHTTP1Client,
// every call of a download on the version asked for.
func TestHTTPVersions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto string
		http1 bool
	}{{"HTTP/2", "HTTP/2.0", false}, {"HTTP/1.1", "HTTP/1.1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e, dp := newTestEUICC(t, curves[0]), newTestDP(t, curves[0])
			cfg := dp.serveTLS(t)
			cfg.HTTPClient = NewHTTPClient(cfg.RootCAs, cfg.Resolve)
			if tc.http1 {
				cfg.HTTPClient = NewHTTP1Client(cfg.RootCAs, cfg.Resolve)
			}
			if _, err := NewLPA(e, cfg).Download(t.Context(), "LPA:1$"+testAddress+"$"+dp.matchingID); err != nil {
				t.Fatal(err)
			}
			dp.mu.Lock()
			defer dp.mu.Unlock()
			if len(dp.protos) != 1 || dp.protos[tc.proto] != 4 {
				t.Fatalf("calls by HTTP version: %v, want 4 on %s", dp.protos, tc.proto)
			}
		})
	}
}
