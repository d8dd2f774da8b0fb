package rsp

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"testing"
)

func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// TestES2ResponseMembers: answers carry exactly the SGP.22 members
// (es2-es10-codes.md §1) and decode back strictly.
func TestES2ResponseMembers(t *testing.T) {
	for _, tc := range []struct {
		f    ES2Function
		resp any
		want []string
	}{
		{ES2DownloadOrder, &DownloadOrderResponse{ICCID: "89880000000000000001"}, []string{"header", "iccid"}},
		{ES2ConfirmOrder, &ConfirmOrderResponse{MatchingID: "M"}, []string{"header", "matchingId"}},
		{ES2ConfirmOrder, &ConfirmOrderResponse{EID: "89049032123451234512345678901235", MatchingID: "", SMDPAddress: "a.example"}, []string{"eid", "header", "matchingId", "smdpAddress"}},
		{ES2CancelOrder, nil, []string{"header"}},
		{ES2ReleaseProfile, nil, []string{"header"}},
	} {
		b, err := EncodeES2Response(tc.f, tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(t, b); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: members %v, want %v", tc.f, got, tc.want)
		}
		back, st, err := DecodeES2Response(tc.f, b)
		if err != nil || !st.IsZero() || !reflect.DeepEqual(back, tc.resp) && tc.resp != nil {
			t.Errorf("%s: decoded %+v, %v, %v", tc.f, back, st, err)
		}
	}
	// Strict decoding: an extra member or a missing matchingId fails.
	for _, body := range []string{
		`{"header":{"functionExecutionStatus":{"status":"Executed-Success"}},"matchingId":"M","transactionId":"01"}`,
		`{"header":{"functionExecutionStatus":{"status":"Executed-Success"}},"eid":"1"}`,
	} {
		if _, _, err := DecodeES2Response(ES2ConfirmOrder, []byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", body, err)
		}
	}
	b, _ := EncodeJSONStatus(Status{Subject: SubjectICCID, Reason: ReasonUnknown, Message: "unknown ICCID"})
	if _, st, err := DecodeES2Response(ES2DownloadOrder, b); err != nil || st.Code() != "8.2.1/3.9" {
		t.Errorf("failure answer: %v %v", st, err)
	}
}

func TestES2RequestRoundTrip(t *testing.T) {
	hdr := RequestHeader{FunctionRequesterIdentifier: "op-a", FunctionCallIdentifier: "c1"}
	empty := ""
	for _, req := range []ES2Request{
		&DownloadOrderRequest{Header: hdr, EID: "89049032123451234512345678901235", ProfileType: "t1"},
		&ConfirmOrderRequest{Header: hdr, ICCID: "8988000000000000001", MatchingID: &empty, ConfirmationCode: "1234", ReleaseFlag: true},
		&ConfirmOrderRequest{Header: hdr, ICCID: "8988000000000000001"},
		&CancelOrderRequest{Header: hdr, ICCID: "8988000000000000001", EID: "1", MatchingID: "M", FinalProfileStatusIndicator: "Available"},
		&ReleaseProfileRequest{Header: hdr, ICCID: "8988000000000000001"},
		&HandleDownloadProgressInfoRequest{Header: hdr, ICCID: "8988000000000000001", ProfileType: "t1", Timestamp: "2026-12-04T10:00:00Z",
			NotificationPointID: 4, NotificationPointStatus: Status{Subject: SubjectEUICC, Reason: ReasonExecutionError, Message: "x"}, ResultData: []byte{0xbf, 0x37, 0}},
		&HandleDownloadProgressInfoRequest{Header: hdr, ICCID: "8988000000000000001", ProfileType: "t1", Timestamp: "2026-12-04T10:00:00Z", NotificationPointID: 3},
	} {
		b, err := EncodeES2Request(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeES2Request(req.ES2Function(), b)
		if err != nil {
			t.Fatalf("%s: %v (%s)", req.ES2Function(), err, b)
		}
		if !reflect.DeepEqual(back, req) {
			t.Errorf("%s: round trip %+v, want %+v", req.ES2Function(), back, req)
		}
	}
}

func TestES2RequestMalformed(t *testing.T) {
	for _, tc := range []struct {
		f       ES2Function
		body    string
		missing bool
	}{
		{ES2DownloadOrder, `{"iccid":"1"}`, true},                                                                          // no header
		{ES2DownloadOrder, `{"header":{"functionCallIdentifier":"c"},"iccid":"1"}`, true},                                  // no requester
		{ES2ConfirmOrder, `{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1"}`, true}, // no releaseFlag
		{ES2ConfirmOrder, `{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1","releaseFlag":"true"}`, false},
		{ES2CancelOrder, `{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1"}`, true},
		{ES2ReleaseProfile, `{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":1}`, false},
		{ES2ReleaseProfile, `[]`, false},
		{ES2ReleaseProfile, `{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1"} {}`, false},
	} {
		_, err := DecodeES2Request(tc.f, []byte(tc.body))
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrMissingField) != tc.missing {
			t.Errorf("%s %s: %v (want missing=%v)", tc.f, tc.body, err, tc.missing)
		}
	}
}

func FuzzDecodeES2Request(f *testing.F) {
	f.Add(`{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1","releaseFlag":true,"matchingId":""}`)
	f.Add(`{"header":{"functionRequesterIdentifier":"a","functionCallIdentifier":"c"},"iccid":"1","profileType":"t","timestamp":"x","notificationPointId":"3","notificationPointStatus":{"status":"Failed","statusCodeData":{"subjectCode":"8.1","reasonCode":"4.2"}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, fn := range []ES2Function{ES2DownloadOrder, ES2ConfirmOrder, ES2CancelOrder, ES2ReleaseProfile, ES2HandleDownloadProgressInfo} {
			req, err := DecodeES2Request(fn, []byte(body))
			if err != nil {
				continue
			}
			b, err := EncodeES2Request(req)
			if err != nil {
				t.Fatalf("%s: re-encoding a decoded request: %v", fn, err)
			}
			if _, err := DecodeES2Request(fn, b); err != nil {
				t.Fatalf("%s: re-decoding %s: %v", fn, b, err)
			}
		}
	})
}
