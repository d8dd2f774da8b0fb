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

// With an EUM cache every case answers as without one, whether the cache
// is cold or warm (a warm cache holds the good EUM, verified once): only
// the EUM's CI signature is remembered, for its exact bytes and CI.
func TestVerifyEUICCChainCached(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ci := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_NIST.der")
	ciBRP := sgp26Cert(t, "CertificateIssuer", "CERT_CI_ECDSA_BRP.der")
	eum, euicc := sgp26File(t, "EUM", "CERT_EUM_ECDSA_NIST.der"), sgp26File(t, "eUICC", "CERT_EUICC_ECDSA_NIST.der")
	inv := func(f string) []byte { return sgp26File(t, "invalid", f) }
	forgedEUM := append([]byte(nil), eum...)
	forgedEUM[len(forgedEUM)-1] ^= 1 // last byte of the CI's signature
	cache := rsp.NewEUMCache(2)
	for _, tc := range []struct {
		name       string
		ci         *rsp.Certificate
		eum, euicc []byte
		want       string
	}{
		{"good chain (fills the cache)", ci, eum, euicc, ""},
		{"good chain again", ci, eum, euicc, ""},
		{"forged EUM signature", ci, forgedEUM, euicc, "8.1.2/6.1"},
		{"cached EUM, eUICC expired", ci, eum, inv("CERT_EUICC_ECDSA_NIST_EXPIRED.der"), "8.1.3/6.3"},
		{"cached EUM, self-signed eUICC", ci, eum, inv("CERT_EUICC_ECDSA_NIST_INVALID.der"), "8.1.3/6.1"},
		{"cached EUM under another CI", ciBRP, eum, euicc, "8.11.1/3.9"},
		{"EUM expired", ci, inv("CERT_EUM_ECDSA_NIST_EXPIRED.der"), euicc, "8.1.2/6.3"},
		{"EUM expired again", ci, inv("CERT_EUM_ECDSA_NIST_EXPIRED.der"), euicc, "8.1.2/6.3"},
		{"good chain after the others", ci, eum, euicc, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := rsp.VerifyEUICCChainCached(tc.ci, tc.eum, tc.euicc, now, cache)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var st rsp.Status
			if !errors.As(err, &st) || st.Code() != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
	if n := cache.Len(); n != 1 {
		t.Errorf("cache holds %d EUM certificates, want 1 (only the one that verified)", n)
	}
	// The same EUM after its validity: expired, though cached.
	_, _, err := rsp.VerifyEUICCChainCached(ci, eum, euicc, now.AddDate(60, 0, 0), cache)
	if st := (rsp.Status{}); !errors.As(err, &st) || st.Code() != "8.1.2/6.3" {
		t.Errorf("a cached EUM after its notAfter: err = %v, want 8.1.2/6.3", err)
	}
}
