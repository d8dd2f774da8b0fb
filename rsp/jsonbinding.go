package rsp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// The JSON binding (SGP.22 §6.5; es2-es10-codes.md §1): POST a JSON object
// to Function.Path(). Binary values are standard base64 of the DER
// elements, transactionId is hex. Requests may carry
// header {functionRequesterIdentifier, functionCallIdentifier} (lpac and
// pySim send none); answers carry header.functionExecutionStatus, and on
// failure nothing else.
//
// Key policy. Objects are matched key by key, case-sensitively (not with
// encoding/json's case-insensitive struct matching):
//   - Request decoders accept and ignore keys they do not know: a v3 LPA
//     may add members a v2 SM-DP+ does not use, and refusing the download
//     for that helps nobody. Missing mandatory keys are ErrMissingField.
//   - Response decoders are strict, as the conformance suite's client is:
//     an unknown key, a missing mandatory key, statusCodeData on success or
//     any status other than Executed-Success on success is an error. The
//     virtual eUICC decodes with them, so an extra key the server emits
//     fails the end-to-end tests rather than a customer's device.
//   - Encoders emit exactly the keys SGP.22 defines for the function.

// JSON binding constants.
const (
	// JSONContentType is what the SM-DP+ answers with; requests need only
	// start with application/json.
	JSONContentType = "application/json;charset=UTF-8"

	StatusExecutedSuccess     = "Executed-Success"
	StatusExecutedWithWarning = "Executed-WithWarning"
	StatusFailed              = "Failed"
	StatusExpired             = "Expired"
)

// ErrMissingField is wrapped (with ErrMalformed) when a mandatory JSON
// member is absent, so that a handler can answer "mandatory element
// missing" (x/2.2) rather than "invalid format" (x/2.1).
var ErrMissingField = errors.New("rsp: mandatory member missing")

// RequestHeader is the optional request header.
type RequestHeader struct {
	FunctionRequesterIdentifier string `json:"functionRequesterIdentifier"`
	FunctionCallIdentifier      string `json:"functionCallIdentifier"`
}

// jsonObject is one decoded JSON object, keyed exactly.
type jsonObject struct {
	m    map[string]json.RawMessage
	what string
}

func parseObject(b []byte, what string) (*jsonObject, error) {
	if m, ok := scanPlainObject(b); ok {
		return &jsonObject{m: m, what: what}, nil
	}
	var m map[string]json.RawMessage
	// json.Unmarshal, not a Decoder: it scans b in place (a Decoder copies
	// the body into its buffer first, 18 KB for a bound package) and
	// refuses anything but white space after the object ("invalid
	// character … after top-level value").
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: not a JSON object: %v", ErrMalformed, what, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: %s: null instead of an object", ErrMalformed, what)
	}
	return &jsonObject{m: m, what: what}, nil
}

// scanPlainObject parses b when it is a JSON object whose keys and string
// values are plain (ASCII, no escape) and whose other values are such
// objects: every ES9+ request and every successful answer. The values
// alias b. It finds each string's end with one IndexByte instead of
// encoding/json's two byte-by-byte passes and copy (a bound package is an
// 18 KB string), and gives up (ok false) on anything else, valid or not,
// for encoding/json to decide: escapes, non-ASCII, numbers, arrays,
// literals, malformed input.
func scanPlainObject(b []byte) (m map[string]json.RawMessage, ok bool) {
	i := skipSpace(b, 0)
	m, end, ok := scanObjectAt(b, i, 0)
	if !ok || skipSpace(b, end) != len(b) {
		return nil, false
	}
	return m, true
}

// maxPlainDepth bounds the nesting scanPlainObject follows (the header is
// two objects deep); deeper input goes to encoding/json.
const maxPlainDepth = 4

// scanObjectAt scans the object at b[i] ('{'): its members and the index
// after its '}'.
func scanObjectAt(b []byte, i, depth int) (map[string]json.RawMessage, int, bool) {
	if depth > maxPlainDepth || i >= len(b) || b[i] != '{' {
		return nil, 0, false
	}
	m := make(map[string]json.RawMessage, 6)
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, i + 1, true
	}
	for {
		k0, k1, ok := scanPlainString(b, i)
		if !ok {
			return nil, 0, false
		}
		i = skipSpace(b, k1)
		if i >= len(b) || b[i] != ':' {
			return nil, 0, false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return nil, 0, false
		}
		var v0, v1 int
		switch b[i] {
		case '"':
			if v0, v1, ok = scanPlainString(b, i); !ok {
				return nil, 0, false
			}
		case '{':
			v0 = i
			if _, v1, ok = scanObjectAt(b, i, depth+1); !ok {
				return nil, 0, false
			}
		default:
			return nil, 0, false
		}
		m[string(b[k0+1:k1-1])] = json.RawMessage(b[v0:v1:v1])
		i = skipSpace(b, v1)
		if i >= len(b) {
			return nil, 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, i + 1, true
		default:
			return nil, 0, false
		}
	}
}

// scanPlainString returns the extent [start, end) of the string at b[i],
// quotes included, when it is plain: printable ASCII without '\\'.
func scanPlainString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	n := bytes.IndexByte(b[i+1:], '"')
	if n < 0 {
		return 0, 0, false
	}
	for _, c := range b[i+1 : i+1+n] {
		if c < 0x20 || c >= 0x7F || c == '\\' {
			return 0, 0, false
		}
	}
	return i, i + n + 2, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// only fails if the object has a key outside allowed.
func (o *jsonObject) only(allowed ...string) error {
	var extra []string
	for k := range o.m {
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%w: %s: unknown member %q", ErrMalformed, o.what, extra[0])
	}
	return nil
}

func (o *jsonObject) has(key string) bool { _, ok := o.m[key]; return ok }

func (o *jsonObject) str(key string) (string, error) {
	raw, ok := o.m[key]
	if !ok {
		return "", fmt.Errorf("%w: %w: %s.%s", ErrMalformed, ErrMissingField, o.what, key)
	}
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return "", fmt.Errorf("%w: %s.%s is not a JSON string", ErrMalformed, o.what, key)
	}
	return *s, nil
}

// plainString returns the value of a JSON string (raw, as parseObject
// kept it: valid JSON) that has no escape and only ASCII, which is every
// base64 and hex member: its bytes are its value, without a second JSON
// scan and copy of a member that can be 18 KB. Others: ok is false.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c == '\\' || c >= 0x80 {
			return "", false
		}
	}
	return string(body), true
}

// binary decodes a base64 member. Standard base64 with padding is what
// SGP.22 specifies; unpadded input is accepted too, as the bytes are
// unambiguous.
func (o *jsonObject) binary(key string) ([]byte, error) {
	s, err := o.str(key)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("%w: %s.%s is not base64", ErrMalformed, o.what, key)
		}
	}
	return b, nil
}

func (o *jsonObject) transactionID(key string) (TransactionID, error) {
	s, err := o.str(key)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < 1 || len(b) > MaxTransactionIDSize {
		return nil, fmt.Errorf("%w: %s.%s is not 1..%d bytes of hex", ErrMalformed, o.what, key, MaxTransactionIDSize)
	}
	return TransactionID(b), nil
}

func (o *jsonObject) object(key string) (*jsonObject, error) {
	raw, ok := o.m[key]
	if !ok {
		return nil, fmt.Errorf("%w: %w: %s.%s", ErrMalformed, ErrMissingField, o.what, key)
	}
	return parseObject(raw, o.what+"."+key)
}

// DecodeJSONRequest decodes the JSON body of a request to f. The header is
// nil when the client sent none.
func DecodeJSONRequest(f Function, body []byte) (Request, *RequestHeader, error) {
	o, err := parseObject(body, f.String()+" request")
	if err != nil {
		return nil, nil, err
	}
	var hdr *RequestHeader
	if o.has("header") {
		h, err := o.object("header")
		if err != nil {
			return nil, nil, err
		}
		hdr = new(RequestHeader)
		// Both members are mandatory in a header, but ES9+ does not act on
		// them: an incomplete header is accepted, as lpac-style clients
		// omit the whole header anyway.
		if h.has("functionRequesterIdentifier") {
			if hdr.FunctionRequesterIdentifier, err = h.str("functionRequesterIdentifier"); err != nil {
				return nil, nil, err
			}
		}
		if h.has("functionCallIdentifier") {
			if hdr.FunctionCallIdentifier, err = h.str("functionCallIdentifier"); err != nil {
				return nil, nil, err
			}
		}
	}
	req, err := decodeJSONRequestBody(f, o)
	if err != nil {
		return nil, nil, err
	}
	return req, hdr, nil
}

func decodeJSONRequestBody(f Function, o *jsonObject) (Request, error) {
	switch f {
	case InitiateAuthentication:
		m := new(InitiateAuthenticationRequest)
		ch, err := o.binary("euiccChallenge")
		if err != nil {
			return nil, err
		}
		if len(ch) != ChallengeSize {
			return nil, sizeError("euiccChallenge", len(ch), ChallengeSize, ChallengeSize)
		}
		m.EUICCChallenge = [ChallengeSize]byte(ch)
		info, err := o.binary("euiccInfo1")
		if err != nil {
			return nil, err
		}
		i1, err := ParseEUICCInfo1(info)
		if err != nil {
			return nil, err
		}
		m.EUICCInfo1 = *i1
		if m.SMDPAddress, err = o.str("smdpAddress"); err != nil {
			return nil, err
		}
		return m, nil
	case AuthenticateClient:
		m := new(AuthenticateClientRequest)
		var err error
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, err
		}
		b, err := o.binary("authenticateServerResponse")
		if err != nil {
			return nil, err
		}
		asr, err := ParseAuthenticateServerResponse(b)
		if err != nil {
			return nil, err
		}
		m.AuthenticateServerResponse = *asr
		return m, nil
	case GetBoundProfilePackage:
		m := new(GetBoundProfilePackageRequest)
		var err error
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, err
		}
		b, err := o.binary("prepareDownloadResponse")
		if err != nil {
			return nil, err
		}
		pdr, err := ParsePrepareDownloadResponse(b)
		if err != nil {
			return nil, err
		}
		m.PrepareDownloadResponse = *pdr
		return m, nil
	case HandleNotificationFunction:
		b, err := o.binary("pendingNotification")
		if err != nil {
			return nil, err
		}
		pn, err := ParsePendingNotification(b)
		if err != nil {
			return nil, err
		}
		return &HandleNotification{PendingNotification: *pn}, nil
	case CancelSession:
		m := new(CancelSessionRequestEs9)
		var err error
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, err
		}
		b, err := o.binary("cancelSessionResponse")
		if err != nil {
			return nil, err
		}
		csr, err := ParseCancelSessionResponse(b)
		if err != nil {
			return nil, err
		}
		m.CancelSessionResponse = *csr
		return m, nil
	}
	return nil, fmt.Errorf("%w: no ES9+ function %v", ErrInvalid, f)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// EncodeJSONRequest returns the JSON body of req; hdr may be nil (no header
// member, as lpac and pySim send).
func EncodeJSONRequest(req Request, hdr *RequestHeader) ([]byte, error) {
	type header struct {
		Header *RequestHeader `json:"header,omitempty"`
	}
	var v any
	switch m := req.(type) {
	case *InitiateAuthenticationRequest:
		info, err := m.EUICCInfo1.Marshal()
		if err != nil {
			return nil, err
		}
		v = struct {
			header
			EUICCChallenge string `json:"euiccChallenge"`
			EUICCInfo1     string `json:"euiccInfo1"`
			SMDPAddress    string `json:"smdpAddress"`
		}{header{hdr}, b64(m.EUICCChallenge[:]), b64(info), m.SMDPAddress}
	case *AuthenticateClientRequest:
		if err := m.TransactionID.check("transactionId"); err != nil {
			return nil, err
		}
		asr, err := m.AuthenticateServerResponse.Marshal()
		if err != nil {
			return nil, err
		}
		v = struct {
			header
			TransactionID              string `json:"transactionId"`
			AuthenticateServerResponse string `json:"authenticateServerResponse"`
		}{header{hdr}, m.TransactionID.String(), b64(asr)}
	case *GetBoundProfilePackageRequest:
		if err := m.TransactionID.check("transactionId"); err != nil {
			return nil, err
		}
		pdr, err := m.PrepareDownloadResponse.Marshal()
		if err != nil {
			return nil, err
		}
		v = struct {
			header
			TransactionID           string `json:"transactionId"`
			PrepareDownloadResponse string `json:"prepareDownloadResponse"`
		}{header{hdr}, m.TransactionID.String(), b64(pdr)}
	case *HandleNotification:
		pn, err := m.PendingNotification.Marshal()
		if err != nil {
			return nil, err
		}
		v = struct {
			header
			PendingNotification string `json:"pendingNotification"`
		}{header{hdr}, b64(pn)}
	case *CancelSessionRequestEs9:
		if err := m.TransactionID.check("transactionId"); err != nil {
			return nil, err
		}
		csr, err := m.CancelSessionResponse.Marshal()
		if err != nil {
			return nil, err
		}
		v = struct {
			header
			TransactionID         string `json:"transactionId"`
			CancelSessionResponse string `json:"cancelSessionResponse"`
		}{header{hdr}, m.TransactionID.String(), b64(csr)}
	default:
		return nil, fmt.Errorf("%w: %T is not an ES9+ request", ErrInvalid, req)
	}
	return json.Marshal(v)
}

// Response header wire types.
type jsonStatusCodeData struct {
	SubjectCode string `json:"subjectCode"`
	ReasonCode  string `json:"reasonCode"`
	Message     string `json:"message,omitempty"`
}

type jsonExecutionStatus struct {
	Status         string              `json:"status"`
	StatusCodeData *jsonStatusCodeData `json:"statusCodeData,omitempty"`
}

type jsonResponseHeader struct {
	FunctionExecutionStatus jsonExecutionStatus `json:"functionExecutionStatus"`
}

var successHeader = jsonResponseHeader{jsonExecutionStatus{Status: StatusExecutedSuccess}}

// EncodeJSONResponse returns the JSON body of a successful answer: the
// header with status Executed-Success and no statusCodeData, then exactly
// the members SGP.22 defines for the function.
func EncodeJSONResponse(resp Response) ([]byte, error) {
	switch m := resp.(type) {
	case *InitiateAuthenticationResponse:
		if err := m.TransactionID.check("transactionId"); err != nil {
			return nil, err
		}
		s1, err := m.ServerSigned1.Marshal()
		if err != nil {
			return nil, err
		}
		if err := m.ServerSignature1.check("serverSignature1"); err != nil {
			return nil, err
		}
		if err := checkElement(m.ServerCertificate, tagSequence, "serverCertificate"); err != nil {
			return nil, err
		}
		return successObject(
			jsonStr("transactionId", m.TransactionID.String()),
			jsonBin("serverSigned1", s1),
			jsonBin("serverSignature1", m.ServerSignature1),
			jsonBin("euiccCiPKIdToBeUsed", tlv(tagOctetString, m.EUICCCIPKIDToBeUsed)),
			jsonBin("serverCertificate", m.ServerCertificate)), nil
	case *AuthenticateClientResponse:
		if _, err := m.okContents(); err != nil {
			return nil, err
		}
		s2, err := m.SmdpSigned2.Marshal()
		if err != nil {
			return nil, err
		}
		return successObject(
			jsonStr("transactionId", m.TransactionID.String()),
			jsonBin("profileMetadata", m.ProfileMetadata),
			jsonBin("smdpSigned2", s2),
			jsonBin("smdpSignature2", m.SmdpSignature2),
			jsonBin("smdpCertificate", m.SmdpCertificate)), nil
	case *GetBoundProfilePackageResponse:
		if _, err := m.okContents(); err != nil {
			return nil, err
		}
		return successObject(
			jsonStr("transactionId", m.TransactionID.String()),
			jsonBin("boundProfilePackage", m.BoundProfilePackage)), nil
	case *CancelSessionResponseEs9:
		// Header only: pySim's extra transactionId breaks strict clients.
		return successObject(), nil
	}
	return nil, fmt.Errorf("%w: %T is not an ES9+ response", ErrInvalid, resp)
}

// A member of an answer's JSON object: a string, or bytes as base64.
type jsonMember struct {
	key string
	str string
	bin []byte
	b64 bool
}

func jsonStr(key, v string) jsonMember        { return jsonMember{key: key, str: v} }
func jsonBin(key string, v []byte) jsonMember { return jsonMember{key: key, bin: v, b64: true} }

// successHeaderJSON is the header of every successful answer.
var successHeaderJSON, _ = json.Marshal(successHeader)

// successObject writes {"header":…,members…} in one buffer of the final
// size, base64 encoded in place: the same bytes json.Marshal of a struct
// with these fields gives (base64 and the keys need no escaping), without
// a base64 string and its escaped copy for an 18 KB bound package.
func successObject(members ...jsonMember) []byte {
	n := len(`{"header":}`) + len(successHeaderJSON)
	for _, m := range members {
		n += len(m.key) + 6 + len(m.str) + base64.StdEncoding.EncodedLen(len(m.bin))
	}
	b := make([]byte, 0, n+16)
	b = append(b, `{"header":`...)
	b = append(b, successHeaderJSON...)
	for _, m := range members {
		b = append(b, ',', '"')
		b = append(b, m.key...)
		b = append(b, '"', ':')
		if m.b64 {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, m.bin)
			b = append(b, '"')
			continue
		}
		b = appendJSONString(b, m.str)
	}
	return append(b, '}')
}

// appendJSONString appends s as json.Marshal writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // escapes as the struct encoder did
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// EncodeJSONStatus returns the JSON body of a failed function: the header
// alone, status Failed with st's codes.
func EncodeJSONStatus(st Status) ([]byte, error) {
	if st.IsZero() || st.Subject == "" || st.Reason == "" {
		return nil, fmt.Errorf("%w: a failure needs a subject and a reason code, got %q", ErrInvalid, st.Code())
	}
	return json.Marshal(struct {
		Header jsonResponseHeader `json:"header"`
	}{jsonResponseHeader{jsonExecutionStatus{
		Status:         StatusFailed,
		StatusCodeData: &jsonStatusCodeData{SubjectCode: string(st.Subject), ReasonCode: string(st.Reason), Message: st.Message},
	}}})
}

// decodeResponseHeader reads header.functionExecutionStatus strictly and
// returns the failure status, zero on Executed-Success.
func decodeResponseHeader(o *jsonObject) (Status, error) {
	h, err := o.object("header")
	if err != nil {
		return Status{}, err
	}
	if err := h.only("functionExecutionStatus"); err != nil {
		return Status{}, err
	}
	es, err := h.object("functionExecutionStatus")
	if err != nil {
		return Status{}, err
	}
	if err := es.only("status", "statusCodeData"); err != nil {
		return Status{}, err
	}
	status, err := es.str("status")
	if err != nil {
		return Status{}, err
	}
	switch status {
	case StatusExecutedSuccess:
		if es.has("statusCodeData") {
			return Status{}, fmt.Errorf("%w: statusCodeData on %s", ErrMalformed, status)
		}
		return Status{}, nil
	case StatusFailed, StatusExpired:
	case StatusExecutedWithWarning:
		return Status{}, fmt.Errorf("%w: %s where a strict client expects Executed-Success", ErrMalformed, status)
	default:
		return Status{}, fmt.Errorf("%w: unknown functionExecutionStatus.status %q", ErrMalformed, status)
	}
	sc, err := es.object("statusCodeData")
	if err != nil {
		return Status{}, err
	}
	if err := sc.only("subjectCode", "reasonCode", "subjectIdentifier", "message"); err != nil {
		return Status{}, err
	}
	var st Status
	subj, err := sc.str("subjectCode")
	if err != nil {
		return Status{}, err
	}
	reason, err := sc.str("reasonCode")
	if err != nil {
		return Status{}, err
	}
	st.Subject, st.Reason = SubjectCode(subj), ReasonCode(reason)
	if sc.has("message") {
		if st.Message, err = sc.str("message"); err != nil {
			return Status{}, err
		}
	}
	if sc.has("subjectIdentifier") {
		if _, err := sc.str("subjectIdentifier"); err != nil {
			return Status{}, err
		}
	}
	if st.Subject == "" || st.Reason == "" {
		return Status{}, fmt.Errorf("%w: %s with an empty subject or reason code", ErrMalformed, status)
	}
	return st, nil
}

// DecodeJSONResponse decodes the JSON answer of f strictly (see the key
// policy above): the ok answer, or a non-zero Status for Failed or Expired.
func DecodeJSONResponse(f Function, body []byte) (Response, Status, error) {
	o, err := parseObject(body, f.String()+" response")
	if err != nil {
		return nil, Status{}, err
	}
	st, err := decodeResponseHeader(o)
	if err != nil {
		return nil, Status{}, err
	}
	if !st.IsZero() {
		if err := o.only("header"); err != nil {
			return nil, Status{}, err
		}
		return nil, st, nil
	}
	switch f {
	case InitiateAuthentication:
		if err := o.only("header", "transactionId", "serverSigned1", "serverSignature1", "euiccCiPKIdToBeUsed", "serverCertificate"); err != nil {
			return nil, Status{}, err
		}
		m := new(InitiateAuthenticationResponse)
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, Status{}, err
		}
		b, err := o.binary("serverSigned1")
		if err != nil {
			return nil, Status{}, err
		}
		s1, err := ParseServerSigned1(b)
		if err != nil {
			return nil, Status{}, err
		}
		m.ServerSigned1 = *s1
		if b, err = o.binary("serverSignature1"); err != nil {
			return nil, Status{}, err
		}
		if m.ServerSignature1, err = ParseSignature(b); err != nil {
			return nil, Status{}, err
		}
		if b, err = o.binary("euiccCiPKIdToBeUsed"); err != nil {
			return nil, Status{}, err
		}
		e, err := parseTop(b, tagOctetString, "euiccCiPKIdToBeUsed")
		if err != nil {
			return nil, Status{}, err
		}
		m.EUICCCIPKIDToBeUsed = e.value
		if m.ServerCertificate, err = o.element("serverCertificate", tagSequence); err != nil {
			return nil, Status{}, err
		}
		return m, Status{}, nil
	case AuthenticateClient:
		if err := o.only("header", "transactionId", "profileMetadata", "smdpSigned2", "smdpSignature2", "smdpCertificate"); err != nil {
			return nil, Status{}, err
		}
		m := new(AuthenticateClientResponse)
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, Status{}, err
		}
		if m.ProfileMetadata, err = o.element("profileMetadata", tagMetadata); err != nil {
			return nil, Status{}, err
		}
		b, err := o.binary("smdpSigned2")
		if err != nil {
			return nil, Status{}, err
		}
		s2, err := ParseSmdpSigned2(b)
		if err != nil {
			return nil, Status{}, err
		}
		m.SmdpSigned2 = *s2
		if b, err = o.binary("smdpSignature2"); err != nil {
			return nil, Status{}, err
		}
		if m.SmdpSignature2, err = ParseSignature(b); err != nil {
			return nil, Status{}, err
		}
		if m.SmdpCertificate, err = o.element("smdpCertificate", tagSequence); err != nil {
			return nil, Status{}, err
		}
		return m, Status{}, nil
	case GetBoundProfilePackage:
		if err := o.only("header", "transactionId", "boundProfilePackage"); err != nil {
			return nil, Status{}, err
		}
		m := new(GetBoundProfilePackageResponse)
		if m.TransactionID, err = o.transactionID("transactionId"); err != nil {
			return nil, Status{}, err
		}
		if m.BoundProfilePackage, err = o.element("boundProfilePackage", tagBPP); err != nil {
			return nil, Status{}, err
		}
		return m, Status{}, nil
	case CancelSession:
		if err := o.only("header"); err != nil {
			return nil, Status{}, err
		}
		return &CancelSessionResponseEs9{}, Status{}, nil
	}
	return nil, Status{}, fmt.Errorf("%w: %v has no JSON response body", ErrInvalid, f)
}

// element decodes a base64 member holding exactly one DER element with tag.
func (o *jsonObject) element(key string, tag uint32) ([]byte, error) {
	b, err := o.binary(key)
	if err != nil {
		return nil, err
	}
	if _, err := parseTop(b, tag, o.what+"."+key); err != nil {
		return nil, err
	}
	return b, nil
}
