package rsp

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
)

func keysOf(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// TestJSONResponseMembers checks that each answer carries exactly the
// members SGP.22 defines (strict clients reject any other) and a success
// header without statusCodeData.
func TestJSONResponseMembers(t *testing.T) {
	want := map[Function][]string{
		InitiateAuthentication: {"euiccCiPKIdToBeUsed", "header", "serverCertificate", "serverSignature1", "serverSigned1", "transactionId"},
		AuthenticateClient:     {"header", "profileMetadata", "smdpCertificate", "smdpSignature2", "smdpSigned2", "transactionId"},
		GetBoundProfilePackage: {"boundProfilePackage", "header", "transactionId"},
		CancelSession:          {"header"},
	}
	for _, resp := range fullResponses() {
		f := resp.Function()
		t.Run(f.String(), func(t *testing.T) {
			body, err := EncodeJSONResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(t, body); !slices.Equal(got, want[f]) {
				t.Errorf("members %v, want %v", got, want[f])
			}
			var h struct{ Header json.RawMessage }
			if err := json.Unmarshal(body, &h); err != nil {
				t.Fatal(err)
			}
			if string(h.Header) != `{"functionExecutionStatus":{"status":"Executed-Success"}}` {
				t.Errorf("header %s", h.Header)
			}
			got, st, err := DecodeJSONResponse(f, body)
			if err != nil || !st.IsZero() || got.Function() != f {
				t.Fatalf("decode: %v, %v, %v", got, st, err)
			}
		})
	}
	// The TLV forms lpac requires of the base64 members.
	body, _ := EncodeJSONResponse(fullResponses()[0])
	var raw map[string]json.RawMessage
	json.Unmarshal(body, &raw)
	for key, prefix := range map[string]string{"serverSigned1": "30", "serverSignature1": "5f3740", "euiccCiPKIdToBeUsed": "0414", "serverCertificate": "30"} {
		var s string
		json.Unmarshal(raw[key], &s)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || !strings.HasPrefix(hex.EncodeToString(b), prefix) {
			t.Errorf("%s = %x, want a %s… element (%v)", key, b, prefix, err)
		}
	}
	var tid string
	json.Unmarshal(raw["transactionId"], &tid)
	if tid != "0123456789ABCDEF0123456789ABCDEF" {
		t.Errorf("transactionId %q, want upper-case hex", tid)
	}
}

func TestJSONStatus(t *testing.T) {
	st := Status{Subject: SubjectEID, Reason: ReasonRefused, Message: "EID mismatch"}
	body, err := EncodeJSONStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"header":{"functionExecutionStatus":{"status":"Failed","statusCodeData":{"subjectCode":"8.1.1","reasonCode":"3.8","message":"EID mismatch"}}}}`
	if string(body) != want {
		t.Errorf("body\n %s\nwant %s", body, want)
	}
	for _, f := range []Function{InitiateAuthentication, AuthenticateClient, GetBoundProfilePackage, CancelSession} {
		resp, got, err := DecodeJSONResponse(f, body)
		if err != nil || resp != nil || got != st {
			t.Errorf("%v: decode = %v, %+v, %v", f, resp, got, err)
		}
	}
	if _, err := EncodeJSONStatus(Status{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero status: err = %v, want ErrInvalid", err)
	}
}

// TestJSONResponseStrict: the client-side decoder refuses what a strict
// client refuses.
func TestJSONResponseStrict(t *testing.T) {
	ok := `"header":{"functionExecutionStatus":{"status":"Executed-Success"}}`
	for _, c := range []struct {
		name string
		f    Function
		body string
	}{
		{"unknown member", CancelSession, `{` + ok + `,"transactionId":"01"}`},
		{"unknown member, other case", GetBoundProfilePackage, `{` + ok + `,"transactionID":"01","transactionId":"01","boundProfilePackage":"vzYCoAA="}`},
		{"missing member", GetBoundProfilePackage, `{` + ok + `,"transactionId":"01"}`},
		{"statusCodeData on success", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Executed-Success","statusCodeData":{"subjectCode":"8.1","reasonCode":"6.1"}}}}`},
		{"with warning", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Executed-WithWarning"}}}`},
		{"unknown status", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Done"}}}`},
		{"failure with extra member", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Failed","statusCodeData":{"subjectCode":"8.1","reasonCode":"6.1"}}},"transactionId":"01"}`},
		{"failure without codes", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Failed"}}}`},
		{"extra header member", CancelSession, `{"header":{"functionExecutionStatus":{"status":"Executed-Success"},"x":1}}`},
		{"no header", CancelSession, `{}`},
		{"not JSON", CancelSession, `{"header":`},
		{"trailing data", CancelSession, `{` + ok + `} {}`},
		{"wrong element", GetBoundProfilePackage, `{` + ok + `,"transactionId":"01","boundProfilePackage":"MAA="}`},
		{"bad base64", GetBoundProfilePackage, `{` + ok + `,"transactionId":"01","boundProfilePackage":"!!"}`},
		{"odd hex", GetBoundProfilePackage, `{` + ok + `,"transactionId":"012","boundProfilePackage":"vzYCoAA="}`},
		{"number for a string", GetBoundProfilePackage, `{` + ok + `,"transactionId":1,"boundProfilePackage":"vzYCoAA="}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r, st, err := DecodeJSONResponse(c.f, []byte(c.body)); !errors.Is(err, ErrMalformed) {
				t.Errorf("= %v, %v, %v; want ErrMalformed", r, st, err)
			}
		})
	}
	r, st, err := DecodeJSONResponse(GetBoundProfilePackage, []byte(`{`+ok+`,"transactionId":"0a","boundProfilePackage":"vzYCoAA="}`))
	if err != nil || !st.IsZero() || !r.(*GetBoundProfilePackageResponse).TransactionID.Equal(TransactionID{0x0A}) {
		t.Errorf("valid body: %v %v %v", r, st, err)
	}
}

// TestJSONRequestDecoding: requests tolerate unknown members and a missing
// header, but not missing or malformed mandatory members.
func TestJSONRequestDecoding(t *testing.T) {
	b64 := func(m interface{ Marshal() ([]byte, error) }) string {
		return base64.StdEncoding.EncodeToString(mustMarshal(t, m))
	}
	info1 := b64(fullEUICCInfo1())
	chal := base64.StdEncoding.EncodeToString(testChallenge[:])
	for _, c := range []struct {
		name string
		f    Function
		body string
		err  error // nil: accepted
	}{
		{"no header", InitiateAuthentication, `{"euiccChallenge":"` + chal + `","euiccInfo1":"` + info1 + `","smdpAddress":"a.example"}`, nil},
		{"header and unknown member", InitiateAuthentication, `{"header":{"functionRequesterIdentifier":"x","functionCallIdentifier":"y"},"lpaeVersion":"3","euiccChallenge":"` + chal + `","euiccInfo1":"` + info1 + `","smdpAddress":"a.example"}`, nil},
		{"unpadded base64", InitiateAuthentication, `{"euiccChallenge":"` + strings.TrimRight(chal, "=") + `","euiccInfo1":"` + info1 + `","smdpAddress":"a.example"}`, nil},
		{"missing smdpAddress", InitiateAuthentication, `{"euiccChallenge":"` + chal + `","euiccInfo1":"` + info1 + `"}`, ErrMissingField},
		{"challenge of 15 bytes", InitiateAuthentication, `{"euiccChallenge":"AAAAAAAAAAAAAAAAAAAA","euiccInfo1":"` + info1 + `","smdpAddress":"a"}`, ErrMalformed},
		{"euiccInfo1 not BF20", InitiateAuthentication, `{"euiccChallenge":"` + chal + `","euiccInfo1":"MAA=","smdpAddress":"a"}`, ErrMalformed},
		{"header not an object", InitiateAuthentication, `{"header":"x","euiccChallenge":"` + chal + `","euiccInfo1":"` + info1 + `","smdpAddress":"a"}`, ErrMalformed},
		{"transactionId of 17 bytes", GetBoundProfilePackage, `{"transactionId":"` + strings.Repeat("00", 17) + `","prepareDownloadResponse":"` + b64(fullPrepareDownloadResponse()) + `"}`, ErrMalformed},
		{"missing transactionId", GetBoundProfilePackage, `{"prepareDownloadResponse":"` + b64(fullPrepareDownloadResponse()) + `"}`, ErrMissingField},
		{"download error from the eUICC", GetBoundProfilePackage, `{"transactionId":"01","prepareDownloadResponse":"` + b64(&PrepareDownloadResponse{Error: &PrepareDownloadResponseError{TransactionID: testTID, Code: DownloadErrUndefined}}) + `"}`, nil},
		{"authenticate error from the eUICC", AuthenticateClient, `{"transactionId":"01","authenticateServerResponse":"` + b64(&AuthenticateServerResponse{Error: &AuthenticateResponseError{TransactionID: testTID, Code: AuthErrUndefined}}) + `"}`, nil},
		{"other notification", HandleNotificationFunction, `{"pendingNotification":"` + b64(&PendingNotification{Other: fullOtherNotification()}) + `"}`, nil},
		{"notification not a PendingNotification", HandleNotificationFunction, `{"pendingNotification":"vzYCoAA="}`, ErrMalformed},
		{"cancel with an eUICC error", CancelSession, `{"transactionId":"01","cancelSessionResponse":"v0EDgQF/"}`, nil},
		{"array body", CancelSession, `[]`, ErrMalformed},
		{"null body", CancelSession, `null`, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _, err := DecodeJSONRequest(c.f, []byte(c.body))
			if c.err == nil {
				if err != nil || req.Function() != c.f {
					t.Fatalf("= %v, %v; want a %v request", req, err, c.f)
				}
				return
			}
			if !errors.Is(err, c.err) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
		})
	}
	_, hdr, err := DecodeJSONRequest(InitiateAuthentication, []byte(`{"header":{"functionRequesterIdentifier":"x","functionCallIdentifier":"y"},"euiccChallenge":"`+chal+`","euiccInfo1":"`+info1+`","smdpAddress":"a.example"}`))
	if err != nil || hdr == nil || *hdr != (RequestHeader{"x", "y"}) {
		t.Errorf("header = %+v, %v", hdr, err)
	}
	// Each request encodes and decodes back to the same DER.
	for _, req := range fullRequests() {
		body, err := EncodeJSONRequest(req, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, hdr, err := DecodeJSONRequest(req.Function(), body)
		if err != nil || hdr != nil {
			t.Fatalf("%v: %v %v", req.Function(), hdr, err)
		}
		if a, b := mustMarshal(t, req), mustMarshal(t, clearRaw(got)); string(a) != string(b) {
			t.Errorf("%v: JSON round trip changed the message\n %x\n %x", req.Function(), b, a)
		}
	}
}

// clearRaw drops the outer Raw of a decoded request so that Marshal
// re-encodes it from its (inner, received) parts.
func clearRaw(r Request) Request {
	switch m := r.(type) {
	case *InitiateAuthenticationRequest:
		m.Raw = nil
	case *AuthenticateClientRequest:
		m.Raw = nil
	case *GetBoundProfilePackageRequest:
		m.Raw = nil
	case *HandleNotification:
		m.Raw = nil
	case *CancelSessionRequestEs9:
		m.Raw = nil
	}
	return r
}

func TestASN1Binding(t *testing.T) {
	// es2-es10-codes.md §4.5: the cancelSession success answer.
	b, err := EncodeASN1Response(CancelSession, &CancelSessionResponseEs9{}, Status{})
	if err != nil || hex.EncodeToString(b) != "a205bf4102a000" {
		t.Errorf("cancelSession ok = %x, %v; want a205bf4102a000", b, err)
	}
	for _, resp := range fullResponses() {
		f := resp.Function()
		b, err := EncodeASN1Response(f, resp, Status{})
		if err != nil {
			t.Fatal(err)
		}
		got, st, err := DecodeASN1Response(f, b)
		if err != nil || !st.IsZero() || got.Function() != f {
			t.Fatalf("%v: %v %v %v", f, got, st, err)
		}
		if _, _, err := DecodeASN1Response(f%4+1, b); !errors.Is(err, ErrMalformed) && f%4+1 != HandleNotificationFunction {
			t.Errorf("%v answer decoded as %v: err = %v", f, f%4+1, err)
		}
	}
	// Errors: the INTEGER of each function's enumeration, and back.
	for _, c := range []struct {
		f    Function
		st   Status
		want string
	}{
		{InitiateAuthentication, Status{Subject: SubjectSMDPAddress, Reason: ReasonRefused}, "a206bf3903810101"},
		{AuthenticateClient, Status{Subject: SubjectTransactionID, Reason: ReasonUnknown}, "a206bf3b0381010a"},
		{AuthenticateClient, Status{Subject: SubjectMatchingID, Reason: ReasonRefused}, "a206bf3b03810106"},
		{GetBoundProfilePackage, Status{Subject: SubjectConfirmationCode, Reason: ReasonRefused}, "a206bf3a03810103"},
		{GetBoundProfilePackage, Status{Subject: SubjectTransactionID, Reason: ReasonUnknown}, "a206bf3a0381015f"},
		{CancelSession, Status{Subject: SubjectEUICC, Reason: ReasonVerificationFailed}, "a206bf4103810102"},
		{CancelSession, Status{Subject: SubjectSMDP, Reason: ReasonInvalidAssociation}, "a206bf410381017f"}, // not in the enumeration: undefinedError
	} {
		b, err := EncodeASN1Response(c.f, nil, c.st)
		if err != nil || hex.EncodeToString(b) != c.want {
			t.Errorf("%v %s = %x, %v; want %s", c.f, c.st.Code(), b, err, c.want)
			continue
		}
		resp, st, err := DecodeASN1Response(c.f, b)
		if err != nil || resp != nil || st.IsZero() {
			t.Errorf("%v %s: decode = %v %v %v", c.f, c.st.Code(), resp, st, err)
		}
		if ASN1ErrorCode(c.f, c.st) != 127 && st != c.st {
			t.Errorf("%v: status %s decoded as %s", c.f, c.st.Code(), st.Code())
		}
	}
	for _, c := range []struct{ name, body string }{
		{"unknown alternative", "a203bf3e00"},
		{"two alternatives", "a206bf3d00bf3d00"},
		{"trailing bytes", "a205bf4102a00000"},
		{"not A2", "a305bf4102a000"},
		{"indefinite length", "a280bf4102a0000000"},
		{"handleNotification without pendingNotification", "a203bf3d00"},
	} {
		if r, err := DecodeASN1Request(mustHex(c.body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: = %v, %v; want ErrMalformed", c.name, r, err)
		}
	}
	for _, req := range fullRequests() {
		b, err := EncodeASN1Request(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeASN1Request(b)
		if err != nil || got.Function() != req.Function() {
			t.Fatalf("%v: %v %v", req.Function(), got, err)
		}
	}
}
