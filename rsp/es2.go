package rsp

import (
	"encoding/json"
	"fmt"
)

// ES2+ (operator ↔ SM-DP+, es2-es10-codes.md §2): JSON only, POSTed to
// ES2Function.Path(). The request header is mandatory on ES2+ (unlike ES9+):
// the SM-DP+ authorises the functionRequesterIdentifier against the
// operator's TLS client certificate. Key policy as for ES9+ (see
// jsonbinding.go): requests are read leniently, answers strictly, and
// encoders emit exactly the members SGP.22 defines.

// ES2Function names an ES2+ function.
type ES2Function string

// ES2+ functions; the value is the last element of the path.
const (
	ES2DownloadOrder              ES2Function = "downloadOrder"
	ES2ConfirmOrder               ES2Function = "confirmOrder"
	ES2CancelOrder                ES2Function = "cancelOrder"
	ES2ReleaseProfile             ES2Function = "releaseProfile"
	ES2HandleDownloadProgressInfo ES2Function = "handleDownloadProgressInfo" // SM-DP+ → operator
)

// ES2PathPrefix is the path every ES2+ function lives under.
const ES2PathPrefix = "/gsma/rsp2/es2plus/"

// Path is the HTTP path of the function.
func (f ES2Function) Path() string { return ES2PathPrefix + string(f) }

// ES2Request is one of the ES2+ request types.
type ES2Request interface {
	ES2Function() ES2Function
	// ES2Header is the request's header, to read or set.
	ES2Header() *RequestHeader
}

// DownloadOrderRequest is ES2+ DownloadOrder: reserve the given ICCID or a
// free profile of ProfileType, optionally bound to an EID.
type DownloadOrderRequest struct {
	Header      RequestHeader
	EID         string
	ICCID       string
	ProfileType string
}

// DownloadOrderResponse is the success answer of DownloadOrder.
type DownloadOrderResponse struct {
	ICCID string
}

// ConfirmOrderRequest is ES2+ ConfirmOrder. MatchingID nil: absent (the
// SM-DP+ generates one); pointing to "": present and empty (no
// activation-code token, the download is found by EID).
type ConfirmOrderRequest struct {
	Header           RequestHeader
	ICCID            string
	EID              string
	MatchingID       *string
	ConfirmationCode string
	SMDSAddress      string
	ReleaseFlag      bool
}

// ConfirmOrderResponse is the success answer of ConfirmOrder. MatchingID
// is always sent (possibly empty); EID and SMDPAddress when known.
type ConfirmOrderResponse struct {
	EID         string
	MatchingID  string
	SMDPAddress string
}

// CancelOrderRequest is ES2+ CancelOrder; FinalProfileStatusIndicator is
// "Available" or "Unavailable".
type CancelOrderRequest struct {
	Header                      RequestHeader
	ICCID                       string
	EID                         string
	MatchingID                  string
	FinalProfileStatusIndicator string
}

// ReleaseProfileRequest is ES2+ ReleaseProfile.
type ReleaseProfileRequest struct {
	Header RequestHeader
	ICCID  string
}

// HandleDownloadProgressInfoRequest is the SM-DP+'s report to the operator
// (§2.3). A zero NotificationPointStatus means Executed-Success; ResultData
// is the DER of the PendingNotification when there is one.
type HandleDownloadProgressInfoRequest struct {
	Header                  RequestHeader
	EID                     string
	ICCID                   string
	ProfileType             string
	Timestamp               string // W3C, UTC with Z
	NotificationPointID     int
	NotificationPointStatus Status
	ResultData              []byte
}

func (*DownloadOrderRequest) ES2Function() ES2Function  { return ES2DownloadOrder }
func (*ConfirmOrderRequest) ES2Function() ES2Function   { return ES2ConfirmOrder }
func (*CancelOrderRequest) ES2Function() ES2Function    { return ES2CancelOrder }
func (*ReleaseProfileRequest) ES2Function() ES2Function { return ES2ReleaseProfile }
func (*HandleDownloadProgressInfoRequest) ES2Function() ES2Function {
	return ES2HandleDownloadProgressInfo
}

func (r *DownloadOrderRequest) ES2Header() *RequestHeader              { return &r.Header }
func (r *ConfirmOrderRequest) ES2Header() *RequestHeader               { return &r.Header }
func (r *CancelOrderRequest) ES2Header() *RequestHeader                { return &r.Header }
func (r *ReleaseProfileRequest) ES2Header() *RequestHeader             { return &r.Header }
func (r *HandleDownloadProgressInfoRequest) ES2Header() *RequestHeader { return &r.Header }

// optStr reads an optional string member into *dst.
func (o *jsonObject) optStr(key string, dst *string) error {
	if !o.has(key) {
		return nil
	}
	s, err := o.str(key)
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func (o *jsonObject) boolean(key string) (bool, error) {
	raw, ok := o.m[key]
	if !ok {
		return false, fmt.Errorf("%w: %w: %s.%s", ErrMalformed, ErrMissingField, o.what, key)
	}
	var b *bool
	if err := json.Unmarshal(raw, &b); err != nil || b == nil {
		return false, fmt.Errorf("%w: %s.%s is not a JSON boolean", ErrMalformed, o.what, key)
	}
	return *b, nil
}

// DecodeES2Request decodes the JSON body of an ES2+ request to f. The
// header and its two members are mandatory (ErrMissingField when absent).
func DecodeES2Request(f ES2Function, body []byte) (ES2Request, error) {
	o, err := parseObject(body, string(f)+" request")
	if err != nil {
		return nil, err
	}
	var req ES2Request
	switch f {
	case ES2DownloadOrder:
		r := new(DownloadOrderRequest)
		err = firstErr(o.optStr("eid", &r.EID), o.optStr("iccid", &r.ICCID), o.optStr("profileType", &r.ProfileType))
		req = r
	case ES2ConfirmOrder:
		r := new(ConfirmOrderRequest)
		r.ICCID, err = o.str("iccid")
		if err == nil {
			err = firstErr(o.optStr("eid", &r.EID), o.optStr("confirmationCode", &r.ConfirmationCode),
				o.optStr("smdsAddress", &r.SMDSAddress))
		}
		if err == nil && o.has("matchingId") {
			var m string
			m, err = o.str("matchingId")
			r.MatchingID = &m
		}
		if err == nil {
			r.ReleaseFlag, err = o.boolean("releaseFlag")
		}
		req = r
	case ES2CancelOrder:
		r := new(CancelOrderRequest)
		r.ICCID, err = o.str("iccid")
		if err == nil {
			r.FinalProfileStatusIndicator, err = o.str("finalProfileStatusIndicator")
		}
		if err == nil {
			err = firstErr(o.optStr("eid", &r.EID), o.optStr("matchingId", &r.MatchingID))
		}
		req = r
	case ES2ReleaseProfile:
		r := new(ReleaseProfileRequest)
		r.ICCID, err = o.str("iccid")
		req = r
	case ES2HandleDownloadProgressInfo:
		r := new(HandleDownloadProgressInfoRequest)
		err = decodeProgressInfo(o, r)
		req = r
	default:
		return nil, fmt.Errorf("%w: %q is not an ES2+ function", ErrInvalid, f)
	}
	if err != nil {
		return nil, err
	}
	if err := decodeES2Header(o, req.ES2Header()); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeES2Header(o *jsonObject, hdr *RequestHeader) error {
	h, err := o.object("header")
	if err != nil {
		return err
	}
	if hdr.FunctionRequesterIdentifier, err = h.str("functionRequesterIdentifier"); err != nil {
		return err
	}
	hdr.FunctionCallIdentifier, err = h.str("functionCallIdentifier")
	return err
}

func decodeProgressInfo(o *jsonObject, r *HandleDownloadProgressInfoRequest) error {
	var err error
	if r.ICCID, err = o.str("iccid"); err != nil {
		return err
	}
	if r.ProfileType, err = o.str("profileType"); err != nil {
		return err
	}
	if r.Timestamp, err = o.str("timestamp"); err != nil {
		return err
	}
	if err := o.optStr("eid", &r.EID); err != nil {
		return err
	}
	raw, ok := o.m["notificationPointId"]
	if !ok {
		return fmt.Errorf("%w: %w: %s.notificationPointId", ErrMalformed, ErrMissingField, o.what)
	}
	// A number (as emitted here and by Ostelco) or a string of digits (pySim).
	if err := json.Unmarshal(raw, &r.NotificationPointID); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal([]byte(s), &r.NotificationPointID) != nil {
			return fmt.Errorf("%w: %s.notificationPointId is not an integer", ErrMalformed, o.what)
		}
	}
	// notificationPointStatus has the shape of a functionExecutionStatus.
	ps, ok := o.m["notificationPointStatus"]
	if !ok {
		return fmt.Errorf("%w: %w: %s.notificationPointStatus", ErrMalformed, ErrMissingField, o.what)
	}
	wrapped := &jsonObject{m: map[string]json.RawMessage{
		"header": json.RawMessage(`{"functionExecutionStatus":` + string(ps) + `}`)}, what: o.what}
	if r.NotificationPointStatus, err = decodeResponseHeader(wrapped); err != nil {
		return err
	}
	if o.has("resultData") {
		if r.ResultData, err = o.binary("resultData"); err != nil {
			return err
		}
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

type jsonRequestHeader struct {
	FunctionRequesterIdentifier string `json:"functionRequesterIdentifier"`
	FunctionCallIdentifier      string `json:"functionCallIdentifier"`
}

// EncodeES2Request returns the JSON body of an ES2+ request (the
// operator's side, and the SM-DP+'s for HandleDownloadProgressInfo).
func EncodeES2Request(req ES2Request) ([]byte, error) {
	h := req.ES2Header()
	hdr := jsonRequestHeader{h.FunctionRequesterIdentifier, h.FunctionCallIdentifier}
	var v any
	switch r := req.(type) {
	case *DownloadOrderRequest:
		v = struct {
			Header      jsonRequestHeader `json:"header"`
			EID         string            `json:"eid,omitempty"`
			ICCID       string            `json:"iccid,omitempty"`
			ProfileType string            `json:"profileType,omitempty"`
		}{hdr, r.EID, r.ICCID, r.ProfileType}
	case *ConfirmOrderRequest:
		v = struct {
			Header           jsonRequestHeader `json:"header"`
			ICCID            string            `json:"iccid"`
			EID              string            `json:"eid,omitempty"`
			MatchingID       *string           `json:"matchingId,omitempty"`
			ConfirmationCode string            `json:"confirmationCode,omitempty"`
			SMDSAddress      string            `json:"smdsAddress,omitempty"`
			ReleaseFlag      bool              `json:"releaseFlag"`
		}{hdr, r.ICCID, r.EID, r.MatchingID, r.ConfirmationCode, r.SMDSAddress, r.ReleaseFlag}
	case *CancelOrderRequest:
		v = struct {
			Header     jsonRequestHeader `json:"header"`
			ICCID      string            `json:"iccid"`
			EID        string            `json:"eid,omitempty"`
			MatchingID string            `json:"matchingId,omitempty"`
			Final      string            `json:"finalProfileStatusIndicator"`
		}{hdr, r.ICCID, r.EID, r.MatchingID, r.FinalProfileStatusIndicator}
	case *ReleaseProfileRequest:
		v = struct {
			Header jsonRequestHeader `json:"header"`
			ICCID  string            `json:"iccid"`
		}{hdr, r.ICCID}
	case *HandleDownloadProgressInfoRequest:
		status := jsonExecutionStatus{Status: StatusExecutedSuccess}
		if st := r.NotificationPointStatus; !st.IsZero() {
			status = jsonExecutionStatus{Status: StatusFailed, StatusCodeData: &jsonStatusCodeData{
				SubjectCode: string(st.Subject), ReasonCode: string(st.Reason), Message: st.Message}}
		}
		var result string
		if len(r.ResultData) > 0 {
			result = b64(r.ResultData)
		}
		v = struct {
			Header      jsonRequestHeader   `json:"header"`
			EID         string              `json:"eid,omitempty"`
			ICCID       string              `json:"iccid"`
			ProfileType string              `json:"profileType"`
			Timestamp   string              `json:"timestamp"`
			PointID     int                 `json:"notificationPointId"`
			PointStatus jsonExecutionStatus `json:"notificationPointStatus"`
			ResultData  string              `json:"resultData,omitempty"`
		}{hdr, r.EID, r.ICCID, r.ProfileType, r.Timestamp, r.NotificationPointID, status, result}
	default:
		return nil, fmt.Errorf("%w: %T is not an ES2+ request", ErrInvalid, req)
	}
	return json.Marshal(v)
}

// EncodeES2Response returns the JSON body of a successful ES2+ answer to f:
// header Executed-Success and exactly the members SGP.22 defines. resp is
// *DownloadOrderResponse or *ConfirmOrderResponse; CancelOrder and
// ReleaseProfile answer the header alone (resp nil).
func EncodeES2Response(f ES2Function, resp any) ([]byte, error) {
	var v any
	switch f {
	case ES2DownloadOrder:
		r, ok := resp.(*DownloadOrderResponse)
		if !ok || r.ICCID == "" {
			return nil, fmt.Errorf("%w: downloadOrder success needs an iccid", ErrInvalid)
		}
		v = struct {
			Header jsonResponseHeader `json:"header"`
			ICCID  string             `json:"iccid"`
		}{successHeader, r.ICCID}
	case ES2ConfirmOrder:
		r, ok := resp.(*ConfirmOrderResponse)
		if !ok {
			return nil, fmt.Errorf("%w: confirmOrder success needs a *ConfirmOrderResponse", ErrInvalid)
		}
		v = struct {
			Header      jsonResponseHeader `json:"header"`
			EID         string             `json:"eid,omitempty"`
			MatchingID  string             `json:"matchingId"`
			SMDPAddress string             `json:"smdpAddress,omitempty"`
		}{successHeader, r.EID, r.MatchingID, r.SMDPAddress}
	case ES2CancelOrder, ES2ReleaseProfile:
		v = struct {
			Header jsonResponseHeader `json:"header"`
		}{successHeader}
	default:
		return nil, fmt.Errorf("%w: %q has no JSON answer", ErrInvalid, f)
	}
	return json.Marshal(v)
}

// DecodeES2Response decodes the answer to f strictly: on success
// *DownloadOrderResponse, *ConfirmOrderResponse or nil (CancelOrder,
// ReleaseProfile) and a zero Status; on Failed or Expired the Status.
func DecodeES2Response(f ES2Function, body []byte) (any, Status, error) {
	o, err := parseObject(body, string(f)+" response")
	if err != nil {
		return nil, Status{}, err
	}
	st, err := decodeResponseHeader(o)
	if err != nil {
		return nil, Status{}, err
	}
	if !st.IsZero() {
		return nil, st, o.only("header")
	}
	switch f {
	case ES2DownloadOrder:
		if err := o.only("header", "iccid"); err != nil {
			return nil, Status{}, err
		}
		r := new(DownloadOrderResponse)
		if r.ICCID, err = o.str("iccid"); err != nil {
			return nil, Status{}, err
		}
		return r, Status{}, nil
	case ES2ConfirmOrder:
		if err := o.only("header", "eid", "matchingId", "smdpAddress"); err != nil {
			return nil, Status{}, err
		}
		r := new(ConfirmOrderResponse)
		if r.MatchingID, err = o.str("matchingId"); err != nil {
			return nil, Status{}, err
		}
		if err := firstErr(o.optStr("eid", &r.EID), o.optStr("smdpAddress", &r.SMDPAddress)); err != nil {
			return nil, Status{}, err
		}
		return r, Status{}, nil
	case ES2CancelOrder, ES2ReleaseProfile:
		return nil, Status{}, o.only("header")
	}
	return nil, Status{}, fmt.Errorf("%w: %q has no JSON answer", ErrInvalid, f)
}
