package rsp

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// Fuzz targets for every request and response decoder: none may panic, every
// failure wraps ErrMalformed, and whatever decodes re-encodes (Raw forwarded)
// to exactly the input. Seeds are valid encodings of every message.

func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error does not wrap ErrMalformed: %v", err)
	}
}

func seedDER(f *testing.F) {
	for _, r := range fullRequests() {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		b, err = EncodeASN1Request(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, r := range fullResponses() {
		b, err := EncodeASN1Response(r.Function(), r, Status{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, m := range []interface{ Marshal() ([]byte, error) }{
		fullEUICCInfo1(), fullEUICCInfo2(), fullAuthenticateServerResponse(), fullPrepareDownloadResponse(),
		fullPIR(true), fullPIR(false), fullOtherNotification(), fullCancelSessionResponse(), fullServerSigned1(), fullSmdpSigned2(),
		&AuthenticateServerResponse{Error: &AuthenticateResponseError{TransactionID: testTID, Code: 127}},
		&PrepareDownloadResponse{Error: &PrepareDownloadResponseError{TransactionID: testTID, Code: 127}},
		&CancelSessionResponse{Error: new(CancelSessionErrorCode)},
	} {
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecodeASN1Request is the server's ASN.1-binding entry point.
func FuzzDecodeASN1Request(f *testing.F) {
	seedDER(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeASN1Request(b)
		checkDecodeError(t, err)
		if err != nil {
			return
		}
		out, err := EncodeASN1Request(req)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding = %x, %v; want the input %x", out, err, b)
		}
	})
}

// FuzzDecodeASN1Response is the client's ASN.1-binding entry point.
func FuzzDecodeASN1Response(f *testing.F) {
	seedDER(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fn := range []Function{InitiateAuthentication, AuthenticateClient, GetBoundProfilePackage, CancelSession} {
			resp, st, err := DecodeASN1Response(fn, b)
			checkDecodeError(t, err)
			if err == nil && (resp == nil) == st.IsZero() {
				t.Fatalf("%v: response %v with status %v", fn, resp, st)
			}
		}
	})
}

// FuzzParseDER runs the parsers of the ES10b/ES8+ structures the ES9+
// requests carry, which the JSON binding reaches directly from base64.
func FuzzParseDER(f *testing.F) {
	seedDER(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		type msg interface{ Marshal() ([]byte, error) }
		for _, parse := range []func([]byte) (msg, error){
			func(b []byte) (msg, error) { return ParseEUICCInfo1(b) },
			func(b []byte) (msg, error) { return ParseEUICCInfo2(b) },
			func(b []byte) (msg, error) { return ParseServerSigned1(b) },
			func(b []byte) (msg, error) { return ParseSmdpSigned2(b) },
			func(b []byte) (msg, error) { return ParseAuthenticateServerResponse(b) },
			func(b []byte) (msg, error) { return ParseAuthenticateServerRequest(b) },
			func(b []byte) (msg, error) { return ParsePrepareDownloadRequest(b) },
			func(b []byte) (msg, error) { return ParsePrepareDownloadResponse(b) },
			func(b []byte) (msg, error) { return ParsePendingNotification(b) },
			func(b []byte) (msg, error) { return ParseProfileInstallationResult(b) },
			func(b []byte) (msg, error) { return ParseCancelSessionRequest(b) },
			func(b []byte) (msg, error) { return ParseCancelSessionResponse(b) },
		} {
			m, err := parse(b)
			checkDecodeError(t, err)
			if err != nil {
				continue
			}
			out, err := m.Marshal()
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("%T: re-encoding = %x, %v; want the input %x", m, out, err, b)
			}
		}
	})
}

func seedJSON(f *testing.F) {
	for _, r := range fullRequests() {
		b, err := EncodeJSONRequest(r, &RequestHeader{"id", "call"})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(int(r.Function()), b)
	}
	for _, r := range fullResponses() {
		b, err := EncodeJSONResponse(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(int(r.Function()), b)
	}
	b, _ := EncodeJSONStatus(Status{Subject: SubjectEUICC, Reason: ReasonVerificationFailed, Message: "m"})
	f.Add(int(CancelSession), b)
}

// FuzzDecodeJSONRequest is the server's JSON-binding entry point.
func FuzzDecodeJSONRequest(f *testing.F) {
	seedJSON(f)
	f.Fuzz(func(t *testing.T, fn int, b []byte) {
		f := Function(uint(fn)%5 + 1)
		req, _, err := DecodeJSONRequest(f, b)
		checkDecodeError(t, err)
		if err == nil {
			if req.Function() != f {
				t.Fatalf("%v request decoded as %v", f, req.Function())
			}
			if _, err := EncodeJSONRequest(req, nil); err != nil {
				t.Fatalf("a decoded request does not encode: %v", err)
			}
		}
	})
}

// FuzzDecodeJSONResponse is the client's JSON-binding entry point.
func FuzzDecodeJSONResponse(f *testing.F) {
	seedJSON(f)
	f.Fuzz(func(t *testing.T, fn int, b []byte) {
		f := Function([]Function{InitiateAuthentication, AuthenticateClient, GetBoundProfilePackage, CancelSession}[uint(fn)%4])
		resp, st, err := DecodeJSONResponse(f, b)
		checkDecodeError(t, err)
		if err != nil {
			return
		}
		if (resp == nil) == st.IsZero() {
			t.Fatalf("response %v with status %v", resp, st)
		}
		if resp != nil {
			if _, err := EncodeJSONResponse(resp); err != nil {
				t.Fatalf("a decoded response does not encode: %v", err)
			}
		}
	})
}

// seedCertificates adds every certificate of testdata/sgp26 (DER files and
// the CERTIFICATE blocks of PEM files, the invalid/ set included).
func seedCertificates(f *testing.F) {
	root := testenv.Path(f, "sgp26")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".der":
			f.Add(b)
			n++
		case ".pem":
			for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
				if blk.Type == "CERTIFICATE" {
					f.Add(blk.Bytes)
					n++
				}
			}
		}
		return nil
	})
	if err != nil || n == 0 {
		f.Fatalf("seeding from %s: %d certificates, %v", root, n, err)
	}
}

// FuzzParseCertificate is the certificate reader every client reaches
// (AuthenticateClient's EUM and eUICC certificates, notifications', and
// the virtual eUICC's DPauth and DPpb): no panic, every failure wraps
// ErrCertificate, and what parses covers exactly the input. The input then
// goes through the chain checks in each place a client can put it (EUM,
// eUICC, DPauth, DPpb; both CIs), whether it parsed or not: each refusal
// is an SGP.22 status (ErrCertificate for the server certificates), the
// EUM cache answers as no cache, and an accepted eUICC certificate is the
// input.
func FuzzParseCertificate(f *testing.F) {
	seedCertificates(f)
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(testenv.Path(f, "sgp26", dir, name))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	type chain struct {
		ci         *Certificate
		eum, euicc []byte
		cache      *EUMCache
	}
	var chains []chain
	for _, n := range []string{"NIST", "BRP"} {
		ci, err := ParseCertificate(read("CertificateIssuer", "CERT_CI_ECDSA_"+n+".der"))
		if err != nil {
			f.Fatal(err)
		}
		c := chain{ci: ci, eum: read("EUM", "CERT_EUM_ECDSA_"+n+".der"), euicc: read("eUICC", "CERT_EUICC_ECDSA_"+n+".der"), cache: NewEUMCache(4)}
		if _, _, err := VerifyEUICCChainCached(ci, c.eum, c.euicc, fuzzNow, c.cache); err != nil { // warms the cache
			f.Fatalf("%s chain: %v", n, err)
		}
		chains = append(chains, c)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCertificate(b)
		switch {
		case err != nil && !errors.Is(err, ErrCertificate):
			t.Fatalf("error does not wrap ErrCertificate: %v", err)
		case err == nil && (!bytes.Equal(c.Raw, b) || !bytes.Contains(b, c.TBS) || c.PublicKey == nil):
			t.Fatalf("parsed certificate does not cover the input: Raw %x, TBS %x, key %v", c.Raw, c.TBS, c.PublicKey)
		case err == nil:
			c.EIDPermitted("89049032123451234512345678901235")
			c.SMDPOID()
			c.CheckValidAt(fuzzNow)
		}
		for _, ch := range chains {
			_, _, eumErr := VerifyEUICCChain(ch.ci, b, ch.euicc, fuzzNow)
			_, _, cachedErr := VerifyEUICCChainCached(ch.ci, b, ch.euicc, fuzzNow, ch.cache)
			if code(t, eumErr) != code(t, cachedErr) {
				t.Fatalf("as EUM: %v without the cache, %v with it", eumErr, cachedErr)
			}
			_, euicc, euiccErr := VerifyEUICCChainCached(ch.ci, ch.eum, b, fuzzNow, ch.cache)
			if code(t, euiccErr) == "" && !bytes.Equal(euicc.Raw, b) {
				t.Fatal("an accepted eUICC certificate is not the input")
			}
			for _, role := range []asn1.ObjectIdentifier{PolicyDPauth, PolicyDPpb} {
				if _, err := VerifyServerCertificate(b, ch.ci, role, fuzzNow); err != nil && !errors.Is(err, ErrCertificate) {
					t.Fatalf("server certificate check: error does not wrap ErrCertificate: %v", err)
				}
			}
		}
	})
}

// fuzzNow is inside the validity of every valid SGP.26 certificate.
var fuzzNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// code is a chain check's answer: "" or its SGP.22 status code; any other
// error fails.
func code(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var st Status
	if !errors.As(err, &st) || st.IsZero() {
		t.Fatalf("chain check error without an SGP.22 status: %v", err)
	}
	return st.Code()
}
