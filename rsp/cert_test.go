package rsp_test

import (
	"encoding/asn1"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
)

func sgp26File(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.Path(t, "sgp26", dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sgp26Cert(t *testing.T, dir, name string) *rsp.Certificate {
	t.Helper()
	c, err := rsp.ParseCertificate(sgp26File(t, dir, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// The eUICC chain check answers each SGP.26 certificate with the code of
// the first row of ES9+.AuthenticateClient it breaks (both curves for the
// good chain; the invalid/ set is NIST).
func TestVerifyEUICCChain(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"NIST", "BRP"} {
		ci := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_"+n+".der")
		eum, euicc, err := rsp.VerifyEUICCChain(ci, sgp26File(t, "EUM", "CERT_EUM_ECDSA_"+n+".der"), sgp26File(t, "eUICC", "CERT_EUICC_ECDSA_"+n+".der"), now)
		if err != nil {
			t.Fatalf("%s chain: %v", n, err)
		}
		if !eum.EIDPermitted(euicc.SubjectSerialNumber) || len(eum.PermittedEIDPrefixes) == 0 {
			t.Errorf("%s: EID %s not in the EUM's range %v", n, euicc.SubjectSerialNumber, eum.PermittedEIDPrefixes)
		}
	}
	ci := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_NIST.der")
	eum, euicc := sgp26File(t, "EUM", "CERT_EUM_ECDSA_NIST.der"), sgp26File(t, "eUICC", "CERT_EUICC_ECDSA_NIST.der")
	inv := func(f string) []byte { return sgp26File(t, "invalid", f) }
	for _, tc := range []struct {
		name       string
		eum, euicc []byte
		want       string
	}{
		{"malformed EUM", []byte{0x30, 0x00}, euicc, "8.1.2/6.1"},
		{"malformed eUICC", eum, eum[:20], "8.1.3/6.1"},
		{"EUM without AKI", inv("CERT_EUM_ECDSA_NIST_INVALID.der"), euicc, "8.1.2/6.1"},
		{"EUM of an unknown CI", inv("CERT_EUM_ECDSA_NIST_UNKNOWN_CI.der"), euicc, "8.11.1/3.9"},
		{"EUM expired", inv("CERT_EUM_ECDSA_NIST_EXPIRED.der"), euicc, "8.1.2/6.3"},
		{"eUICC expired", eum, inv("CERT_EUICC_ECDSA_NIST_EXPIRED.der"), "8.1.3/6.3"},
		{"eUICC self-signed", eum, inv("CERT_EUICC_ECDSA_NIST_INVALID.der"), "8.1.3/6.1"},
		{"eUICC of the brainpool EUM", eum, sgp26File(t, "eUICC", "CERT_EUICC_ECDSA_BRP.der"), "8.1.3/6.1"},
		{"EUM given as eUICC", eum, eum, "8.1.3/6.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := rsp.VerifyEUICCChain(ci, tc.eum, tc.euicc, now)
			var st rsp.Status
			if !errors.As(err, &st) || st.Code() != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
	// The EID range (row 10) is the caller's check.
	for _, f := range []string{"CERT_EUICC_ECDSA_NIST_INVALID_EID.der"} {
		e, c, err := rsp.VerifyEUICCChain(ci, eum, inv(f), now)
		if err == nil && e.EIDPermitted(c.SubjectSerialNumber) {
			t.Errorf("%s: EID %s accepted in the EUM's range", f, c.SubjectSerialNumber)
		}
	}
}

// The eUICC's checks of CERT.DPauth and CERT.DPpb: issuer, role, validity.
func TestVerifyServerCertificate(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"NIST", "BRP"} {
		ci := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_"+n+".der")
		other := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_"+map[string]string{"NIST": "BRP", "BRP": "NIST"}[n]+".der")
		auth := sgp26File(t, "DPauth", "CERT_S_SM_DPauth_ECDSA_"+n+".der")
		pb := sgp26File(t, "DPpb", "CERT_S_SM_DPpb_ECDSA_"+n+".der")
		for _, tc := range []struct {
			name string
			der  []byte
			ci   *rsp.Certificate
			role asn1.ObjectIdentifier
			now  time.Time
			ok   bool
		}{
			{"DPauth", auth, ci, rsp.PolicyDPauth, now, true},
			{"DPpb", pb, ci, rsp.PolicyDPpb, now, true},
			{"DPpb as DPauth", pb, ci, rsp.PolicyDPauth, now, false},
			{"DPauth as DPpb", auth, ci, rsp.PolicyDPpb, now, false},
			{"DPauth under the other CI", auth, other, rsp.PolicyDPauth, now, false},
			{"DPauth in 1990", auth, ci, rsp.PolicyDPauth, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), false},
		} {
			c, err := rsp.VerifyServerCertificate(tc.der, tc.ci, tc.role, tc.now)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, rsp.ErrCertificate)) {
				t.Errorf("%s %s: err = %v, want ok=%v", n, tc.name, err, tc.ok)
			}
			if err == nil && c.SMDPOID() == nil {
				t.Errorf("%s %s: no SM-DP+ OID", n, tc.name)
			}
		}
	}
}
