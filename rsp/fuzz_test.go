package rsp

import (
	"bytes"
	"errors"
	"testing"
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
