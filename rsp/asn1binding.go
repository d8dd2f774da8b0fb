package rsp

import "fmt"

// The ASN.1 binding (es2-es10-codes.md §4.5): POST /gsma/rsp2/asn1 with
// Content-Type application/x-gsma-rsp-asn1, the body one DER
// RemoteProfileProvisioningRequest, the answer one DER
// RemoteProfileProvisioningResponse:
//
//	RemoteProfileProvisioningRequest ::= [2] CHOICE {        -- A2
//	  initiateAuthenticationRequest [57] …,                  -- BF39
//	  authenticateClientRequest [59] …,                      -- BF3B
//	  getBoundProfilePackageRequest [58] …,                  -- BF3A
//	  cancelSessionRequestEs9 [65] …,                        -- BF41
//	  handleNotification [61] …                              -- BF3D
//	}
//	RemoteProfileProvisioningResponse ::= [2] CHOICE {       -- A2
//	  initiateAuthenticationResponse [57] CHOICE { ok A0, error 81 INTEGER },
//	  authenticateClientResponseEs9 [59] …, getBoundProfilePackageResponse [58] …,
//	  cancelSessionResponseEs9 [65] …, authenticateClientResponseEs11 [64] …
//	}
//
// HandleNotification has no response alternative: the HTTP answer is 204.
// A failure travels as the function's INTEGER error alternative, which is
// coarser than a Status: ASN1ErrorCode and StatusFromASN1Error translate.

const (
	// ASN1Path is the ASN.1 binding's single endpoint.
	ASN1Path = "/gsma/rsp2/asn1"
	// ASN1ContentType is the media type of both directions.
	ASN1ContentType = "application/x-gsma-rsp-asn1"

	tagRPP = 0xA2 // RemoteProfileProvisioningRequest/Response ::= [2] CHOICE
)

// DecodeASN1Request decodes a RemoteProfileProvisioningRequest body.
func DecodeASN1Request(body []byte) (Request, error) {
	top, err := parseTop(body, tagRPP, "RemoteProfileProvisioningRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "RemoteProfileProvisioningRequest")
	alt, err := r.next()
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, fmt.Errorf("%w: RemoteProfileProvisioningRequest: more than one CHOICE alternative", ErrMalformed)
	}
	switch alt.tag {
	case tagInitiateAuthentication:
		return ParseInitiateAuthenticationRequest(alt.raw)
	case tagAuthenticateClient:
		return ParseAuthenticateClientRequest(alt.raw)
	case tagGetBPP:
		return ParseGetBoundProfilePackageRequest(alt.raw)
	case tagCancelSession:
		return ParseCancelSessionRequestEs9(alt.raw)
	case tagHandleNotification:
		return ParseHandleNotification(alt.raw)
	}
	return nil, fmt.Errorf("%w: RemoteProfileProvisioningRequest: unknown alternative %X", ErrMalformed, alt.tag)
}

// EncodeASN1Request returns the RemoteProfileProvisioningRequest body for req.
func EncodeASN1Request(req Request) ([]byte, error) {
	b, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagRPP, b), nil
}

var functionTags = [...]uint32{
	InitiateAuthentication: tagInitiateAuthentication,
	AuthenticateClient:     tagAuthenticateClient,
	GetBoundProfilePackage: tagGetBPP,
	CancelSession:          tagCancelSession,
}

func responseTag(f Function) (uint32, error) {
	if f <= 0 || int(f) >= len(functionTags) || functionTags[f] == 0 {
		return 0, fmt.Errorf("%w: %v has no ASN.1 response", ErrInvalid, f)
	}
	return functionTags[f], nil
}

// EncodeASN1Response returns the RemoteProfileProvisioningResponse body:
// resp's ok alternative when st is zero, else f's error alternative with
// the code ASN1ErrorCode maps st to.
func EncodeASN1Response(f Function, resp Response, st Status) ([]byte, error) {
	tag, err := responseTag(f)
	if err != nil {
		return nil, err
	}
	if !st.IsZero() {
		return tlv(tagRPP, tlv(tag, tlv(tagES9Error, intContents(ASN1ErrorCode(f, st))))), nil
	}
	if resp == nil || resp.Function() != f {
		return nil, fmt.Errorf("%w: no %v response to encode", ErrInvalid, f)
	}
	b, err := resp.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagRPP, b), nil
}

// DecodeASN1Response decodes a RemoteProfileProvisioningResponse for f: the
// ok answer, or a non-zero Status translated from the error alternative.
func DecodeASN1Response(f Function, body []byte) (Response, Status, error) {
	tag, err := responseTag(f)
	if err != nil {
		return nil, Status{}, err
	}
	top, err := parseTop(body, tagRPP, "RemoteProfileProvisioningResponse")
	if err != nil {
		return nil, Status{}, err
	}
	what := "RemoteProfileProvisioningResponse"
	r := newReader(top.value, what)
	e, err := r.expect(tag, f.String())
	if err != nil {
		return nil, Status{}, err
	}
	if err := r.end(); err != nil {
		return nil, Status{}, err
	}
	r = newReader(e.value, f.String()+"Response")
	alt, err := r.next()
	if err != nil {
		return nil, Status{}, err
	}
	if !r.empty() {
		return nil, Status{}, fmt.Errorf("%w: %v response: more than one CHOICE alternative", ErrMalformed, f)
	}
	switch alt.tag {
	case tagES9Error:
		code, err := intValue(alt.value, f.String()+" error")
		if err != nil {
			return nil, Status{}, err
		}
		return nil, StatusFromASN1Error(f, code), nil
	case tagES9Ok:
	default:
		return nil, Status{}, fmt.Errorf("%w: %v response: unknown alternative %X", ErrMalformed, f, alt.tag)
	}
	var resp Response
	switch f {
	case InitiateAuthentication:
		resp, err = parseInitiateAuthenticationOk(alt.value)
	case AuthenticateClient:
		resp, err = parseAuthenticateClientOk(alt.value)
	case GetBoundProfilePackage:
		resp, err = parseGetBPPOk(alt.value)
	case CancelSession:
		resp, err = &CancelSessionResponseEs9{}, newReader(alt.value, "CancelSessionOk").end()
	}
	if err != nil {
		return nil, Status{}, err
	}
	return resp, Status{}, nil
}

// asn1Error is one row of a function's error-code table: the status codes of
// es2-es10-codes.md §3 that the ASN.1 enumeration (§3.7) names.
type asn1Error struct {
	code int64
	st   Status
}

const asn1UndefinedError = 127

// asn1Errors lists, per function, the error INTEGER and the status it
// stands for; the first row with a given code is its canonical status.
var asn1Errors = map[Function][]asn1Error{
	InitiateAuthentication: {
		{1, Status{Subject: SubjectSMDPAddress, Reason: ReasonRefused}},                      // invalidDpAddress
		{2, Status{Subject: SubjectSpecVersion, Reason: ReasonUnknownUnsupported}},           // euiccVersionNotSupportedByDp
		{3, Status{Subject: SubjectSecurityConfiguration, Reason: ReasonUnknownUnsupported}}, // ciPKNotSupported
		{3, Status{Subject: SubjectSMDPCertificate, Reason: ReasonUnavailable}},
	},
	AuthenticateClient: {
		{1, Status{Subject: SubjectEUMCertificate, Reason: ReasonVerificationFailed}},   // eumCertificateInvalid
		{2, Status{Subject: SubjectEUMCertificate, Reason: ReasonExpired}},              // eumCertificateExpired
		{3, Status{Subject: SubjectEUICCCertificate, Reason: ReasonVerificationFailed}}, // euiccCertificateInvalid
		{4, Status{Subject: SubjectEUICCCertificate, Reason: ReasonExpired}},            // euiccCertificateExpired
		{5, Status{Subject: SubjectEUICC, Reason: ReasonVerificationFailed}},            // euiccSignatureInvalid
		{6, Status{Subject: SubjectMatchingID, Reason: ReasonRefused}},                  // matchingIdRefused
		{7, Status{Subject: SubjectEID, Reason: ReasonRefused}},                         // eidMismatch
		{8, Status{Subject: SubjectProfileType, Reason: ReasonStoppedOnWarning}},        // noEligibleProfile
		{9, Status{Subject: SubjectCIPublicKey, Reason: ReasonUnknown}},                 // ciPKUnknown
		{10, Status{Subject: SubjectTransactionID, Reason: ReasonUnknown}},              // invalidTransactionId
		{11, Status{Subject: SubjectEUICC, Reason: ReasonInsufficientMemory}},           // insufficientMemory
	},
	GetBoundProfilePackage: {
		{1, Status{Subject: SubjectEUICC, Reason: ReasonVerificationFailed}},         // euiccSignatureInvalid
		{2, Status{Subject: SubjectConfirmationCode, Reason: ReasonMissing}},         // confirmationCodeMissing
		{3, Status{Subject: SubjectConfirmationCode, Reason: ReasonRefused}},         // confirmationCodeRefused
		{4, Status{Subject: SubjectConfirmationCode, Reason: ReasonRetriesExceeded}}, // confirmationCodeRetriesExceeded
		{5, Status{Subject: SubjectProfile, Reason: ReasonUnavailable}},              // bppRebindingRefused
		{6, Status{Subject: SubjectDownloadOrder, Reason: ReasonTTLExpired}},         // downloadOrderExpired
		{95, Status{Subject: SubjectTransactionID, Reason: ReasonUnknown}},           // invalidTransactionId
	},
	CancelSession: {
		{1, Status{Subject: SubjectTransactionID, Reason: ReasonUnknown}},    // invalidTransactionId
		{2, Status{Subject: SubjectEUICC, Reason: ReasonVerificationFailed}}, // euiccSignatureInvalid
	},
}

// ASN1ErrorCode returns the error INTEGER of f's ASN.1 response that stands
// for st, or undefinedError (127) when the enumeration has no such member.
func ASN1ErrorCode(f Function, st Status) int64 {
	for _, e := range asn1Errors[f] {
		if e.st.Subject == st.Subject && e.st.Reason == st.Reason {
			return e.code
		}
	}
	return asn1UndefinedError
}

// StatusFromASN1Error returns the status an ASN.1 error INTEGER of f stands
// for. An unknown or undefined code becomes a status with no subject code
// and a message naming the number, so that it is never mistaken for success.
func StatusFromASN1Error(f Function, code int64) Status {
	for _, e := range asn1Errors[f] {
		if e.code == code {
			return e.st
		}
	}
	return Status{Subject: SubjectSMDP, Reason: ReasonExecutionError, Message: fmt.Sprintf("%v failed with ASN.1 error code %d", f, code)}
}
