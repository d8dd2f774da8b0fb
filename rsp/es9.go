package rsp

import "fmt"

// Function names an ES9+ function.
type Function int

const (
	InitiateAuthentication Function = iota + 1
	AuthenticateClient
	GetBoundProfilePackage
	HandleNotificationFunction
	CancelSession
)

var functionNames = [...]string{
	InitiateAuthentication:     "initiateAuthentication",
	AuthenticateClient:         "authenticateClient",
	GetBoundProfilePackage:     "getBoundProfilePackage",
	HandleNotificationFunction: "handleNotification",
	CancelSession:              "cancelSession",
}

// String is the function's name as in its HTTP path.
func (f Function) String() string {
	if f <= 0 || int(f) >= len(functionNames) {
		return fmt.Sprintf("Function(%d)", int(f))
	}
	return functionNames[f]
}

// Path is the function's JSON-binding path, /gsma/rsp2/es9plus/<name>.
func (f Function) Path() string { return "/gsma/rsp2/es9plus/" + f.String() }

// Request is an ES9+ request: *InitiateAuthenticationRequest,
// *AuthenticateClientRequest, *GetBoundProfilePackageRequest,
// *HandleNotification or *CancelSessionRequestEs9.
type Request interface {
	Function() Function
	// Marshal returns the request's DER element (BF39, BF3B, BF3A, BF3D, BF41).
	Marshal() ([]byte, error)
}

// Response is the successful answer of an ES9+ function:
// *InitiateAuthenticationResponse, *AuthenticateClientResponse,
// *GetBoundProfilePackageResponse or *CancelSessionResponseEs9.
// HandleNotification has none. A failure is a Status instead.
type Response interface {
	Function() Function
	// Marshal returns the ASN.1-binding element carrying the ok alternative
	// (BF39 { A0 … } and so on).
	Marshal() ([]byte, error)
}

// ES9+ message tags (RemoteProfileProvisioningRequest/Response alternatives).
const (
	tagInitiateAuthentication = 0xBF39 // [57]
	tagAuthenticateClient     = 0xBF3B // [59]
	tagGetBPP                 = 0xBF3A // [58]
	tagHandleNotification     = 0xBF3D // [61]
	// CancelSession is BF41 ([65]), shared with ES10b.
	tagES9Ok    = 0xA0 // the ok alternative of every ES9+ response CHOICE
	tagES9Error = 0x81 // the INTEGER error alternative
	tagES9TID   = 0x80 // transactionId [0] in ES9+ requests and ok answers

	tagIAChallenge  = 0x81   // InitiateAuthenticationRequest.euiccChallenge [1]
	tagIAAddress    = 0x83   // InitiateAuthenticationRequest.smdpAddress [3]
	tagMetadata     = 0xBF25 // StoreMetadataRequest ::= [37]
	tagBPP          = 0xBF36 // BoundProfilePackage ::= [54]
	tagHNPending    = 0xA0   // HandleNotification.pendingNotification: a CHOICE, automatically tagged [0]
	tagCSEs9Payload = 0xA1   // CancelSessionRequestEs9.cancelSessionResponse, automatically re-tagged [1]
)

// InitiateAuthenticationRequest:
//
//	InitiateAuthenticationRequest ::= [57] SEQUENCE {   -- BF39
//	  euiccChallenge [1] Octet16,                       -- 81
//	  smdpAddress [3] UTF8String,                       -- 83
//	  euiccInfo1 EUICCInfo1                             -- BF20
//	}
type InitiateAuthenticationRequest struct {
	EUICCChallenge [ChallengeSize]byte
	SMDPAddress    string
	EUICCInfo1     EUICCInfo1
	Raw            []byte
}

func (*InitiateAuthenticationRequest) Function() Function { return InitiateAuthentication }

// ParseInitiateAuthenticationRequest decodes a DER InitiateAuthenticationRequest (BF39).
func ParseInitiateAuthenticationRequest(der []byte) (*InitiateAuthenticationRequest, error) {
	top, err := parseTop(der, tagInitiateAuthentication, "InitiateAuthenticationRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "InitiateAuthenticationRequest")
	m := &InitiateAuthenticationRequest{Raw: top.raw}
	ch, err := r.octets(tagIAChallenge, "euiccChallenge", ChallengeSize, ChallengeSize)
	if err != nil {
		return nil, err
	}
	m.EUICCChallenge = [ChallengeSize]byte(ch)
	if m.SMDPAddress, err = r.utf8(tagIAAddress, "smdpAddress"); err != nil {
		return nil, err
	}
	e, err := r.expect(tagEUICCInfo1, "euiccInfo1")
	if err != nil {
		return nil, err
	}
	info, err := parseEUICCInfo1(e)
	if err != nil {
		return nil, err
	}
	m.EUICCInfo1 = *info
	return m, r.end()
}

// Marshal returns the DER InitiateAuthenticationRequest (Raw if set).
func (m *InitiateAuthenticationRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	info, err := m.EUICCInfo1.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagInitiateAuthentication,
		tlv(tagIAChallenge, m.EUICCChallenge[:]),
		tlv(tagIAAddress, []byte(m.SMDPAddress)),
		info), nil
}

// InitiateAuthenticationResponse is the ok answer:
//
//	InitiateAuthenticationOkEs9 ::= SEQUENCE {          -- A0 inside BF39
//	  transactionId [0] TransactionId,                  -- 80
//	  serverSigned1 ServerSigned1,                      -- 30
//	  serverSignature1 [APPLICATION 55] OCTET STRING,   -- 5F37
//	  euiccCiPKIdToBeUsed SubjectKeyIdentifier,         -- 04
//	  serverCertificate Certificate                     -- 30
//	}
type InitiateAuthenticationResponse struct {
	TransactionID       TransactionID
	ServerSigned1       ServerSigned1
	ServerSignature1    Signature // over ServerSigned1.Raw
	EUICCCIPKIDToBeUsed []byte    // the chosen CI's SubjectKeyIdentifier
	ServerCertificate   []byte    // DER CERT.DPauth.ECDSA
}

func (*InitiateAuthenticationResponse) Function() Function { return InitiateAuthentication }

func parseInitiateAuthenticationOk(v []byte) (*InitiateAuthenticationResponse, error) {
	r := newReader(v, "InitiateAuthenticationOkEs9")
	m := new(InitiateAuthenticationResponse)
	var err error
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagSequence, "serverSigned1")
	if err != nil {
		return nil, err
	}
	s1, err := parseServerSigned1(e)
	if err != nil {
		return nil, err
	}
	m.ServerSigned1 = *s1
	if m.ServerSignature1, err = r.signature("serverSignature1"); err != nil {
		return nil, err
	}
	if e, err = r.expect(tagOctetString, "euiccCiPKIdToBeUsed"); err != nil {
		return nil, err
	}
	m.EUICCCIPKIDToBeUsed = e.value
	if m.ServerCertificate, err = r.certificate("serverCertificate"); err != nil {
		return nil, err
	}
	return m, r.end()
}

func (m *InitiateAuthenticationResponse) okContents() ([]byte, error) {
	if err := m.TransactionID.check("InitiateAuthenticationResponse.transactionId"); err != nil {
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
	return concat(
		tlv(tagES9TID, m.TransactionID),
		s1, m.ServerSignature1,
		tlv(tagOctetString, m.EUICCCIPKIDToBeUsed),
		m.ServerCertificate), nil
}

// Marshal returns BF39 { A0 InitiateAuthenticationOkEs9 }.
func (m *InitiateAuthenticationResponse) Marshal() ([]byte, error) {
	return okElement(tagInitiateAuthentication, m.okContents)
}

// AuthenticateClientRequest:
//
//	AuthenticateClientRequest ::= [59] SEQUENCE {                      -- BF3B
//	  transactionId [0] TransactionId,                                 -- 80
//	  authenticateServerResponse [56] AuthenticateServerResponse       -- BF38
//	}
type AuthenticateClientRequest struct {
	TransactionID              TransactionID
	AuthenticateServerResponse AuthenticateServerResponse
	Raw                        []byte
}

func (*AuthenticateClientRequest) Function() Function { return AuthenticateClient }

// ParseAuthenticateClientRequest decodes a DER AuthenticateClientRequest (BF3B).
func ParseAuthenticateClientRequest(der []byte) (*AuthenticateClientRequest, error) {
	top, err := parseTop(der, tagAuthenticateClient, "AuthenticateClientRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "AuthenticateClientRequest")
	m := &AuthenticateClientRequest{Raw: top.raw}
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagAuthenticateServer, "authenticateServerResponse")
	if err != nil {
		return nil, err
	}
	asr, err := parseAuthenticateServerResponse(e)
	if err != nil {
		return nil, err
	}
	m.AuthenticateServerResponse = *asr
	return m, r.end()
}

// Marshal returns the DER AuthenticateClientRequest (Raw if set).
func (m *AuthenticateClientRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("AuthenticateClientRequest.transactionId"); err != nil {
		return nil, err
	}
	asr, err := m.AuthenticateServerResponse.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagAuthenticateClient, tlv(tagES9TID, m.TransactionID), asr), nil
}

// AuthenticateClientResponse is the ok answer (SGP.22 v2.1+ layout):
//
//	AuthenticateClientOk ::= SEQUENCE {                 -- A0 inside BF3B
//	  transactionId [0] TransactionId,                  -- 80
//	  profileMetaData [37] StoreMetadataRequest,        -- BF25
//	  smdpSigned2 SmdpSigned2,                          -- 30
//	  smdpSignature2 [APPLICATION 55] OCTET STRING,     -- 5F37
//	  smdpCertificate Certificate                       -- 30
//	}
type AuthenticateClientResponse struct {
	TransactionID TransactionID
	// ProfileMetadata is the StoreMetadataRequest element (BF25); decode it
	// with bpp.ParseStoreMetadata. The same bytes go into the BPP.
	ProfileMetadata []byte
	SmdpSigned2     SmdpSigned2
	SmdpSignature2  Signature // over SmdpSignature2Data(SmdpSigned2.Raw, euiccSignature1)
	SmdpCertificate []byte    // DER CERT.DPpb.ECDSA
}

func (*AuthenticateClientResponse) Function() Function { return AuthenticateClient }

func parseAuthenticateClientOk(v []byte) (*AuthenticateClientResponse, error) {
	r := newReader(v, "AuthenticateClientOk")
	m := new(AuthenticateClientResponse)
	var err error
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagMetadata, "profileMetaData")
	if err != nil {
		return nil, err
	}
	m.ProfileMetadata = e.raw
	if e, err = r.expect(tagSequence, "smdpSigned2"); err != nil {
		return nil, err
	}
	s2, err := parseSmdpSigned2(e)
	if err != nil {
		return nil, err
	}
	m.SmdpSigned2 = *s2
	if m.SmdpSignature2, err = r.signature("smdpSignature2"); err != nil {
		return nil, err
	}
	if m.SmdpCertificate, err = r.certificate("smdpCertificate"); err != nil {
		return nil, err
	}
	return m, r.end()
}

func (m *AuthenticateClientResponse) okContents() ([]byte, error) {
	if err := m.TransactionID.check("AuthenticateClientResponse.transactionId"); err != nil {
		return nil, err
	}
	if err := checkElement(m.ProfileMetadata, tagMetadata, "profileMetadata"); err != nil {
		return nil, err
	}
	s2, err := m.SmdpSigned2.Marshal()
	if err != nil {
		return nil, err
	}
	if err := m.SmdpSignature2.check("smdpSignature2"); err != nil {
		return nil, err
	}
	if err := checkElement(m.SmdpCertificate, tagSequence, "smdpCertificate"); err != nil {
		return nil, err
	}
	return concat(tlv(tagES9TID, m.TransactionID), m.ProfileMetadata, s2, m.SmdpSignature2, m.SmdpCertificate), nil
}

// Marshal returns BF3B { A0 AuthenticateClientOk }.
func (m *AuthenticateClientResponse) Marshal() ([]byte, error) {
	return okElement(tagAuthenticateClient, m.okContents)
}

// GetBoundProfilePackageRequest:
//
//	GetBoundProfilePackageRequest ::= [58] SEQUENCE {             -- BF3A
//	  transactionId [0] TransactionId,                            -- 80
//	  prepareDownloadResponse [33] PrepareDownloadResponse        -- BF21
//	}
type GetBoundProfilePackageRequest struct {
	TransactionID           TransactionID
	PrepareDownloadResponse PrepareDownloadResponse
	Raw                     []byte
}

func (*GetBoundProfilePackageRequest) Function() Function { return GetBoundProfilePackage }

// ParseGetBoundProfilePackageRequest decodes a DER GetBoundProfilePackageRequest (BF3A).
func ParseGetBoundProfilePackageRequest(der []byte) (*GetBoundProfilePackageRequest, error) {
	top, err := parseTop(der, tagGetBPP, "GetBoundProfilePackageRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "GetBoundProfilePackageRequest")
	m := &GetBoundProfilePackageRequest{Raw: top.raw}
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagPrepareDownload, "prepareDownloadResponse")
	if err != nil {
		return nil, err
	}
	pdr, err := parsePrepareDownloadResponse(e)
	if err != nil {
		return nil, err
	}
	m.PrepareDownloadResponse = *pdr
	return m, r.end()
}

// Marshal returns the DER GetBoundProfilePackageRequest (Raw if set).
func (m *GetBoundProfilePackageRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("GetBoundProfilePackageRequest.transactionId"); err != nil {
		return nil, err
	}
	pdr, err := m.PrepareDownloadResponse.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagGetBPP, tlv(tagES9TID, m.TransactionID), pdr), nil
}

// GetBoundProfilePackageResponse is the ok answer:
//
//	GetBoundProfilePackageOk ::= SEQUENCE {          -- A0 inside BF3A
//	  transactionId [0] TransactionId,               -- 80
//	  boundProfilePackage [54] BoundProfilePackage   -- BF36
//	}
type GetBoundProfilePackageResponse struct {
	TransactionID       TransactionID
	BoundProfilePackage []byte // the BF36 element, as bpp.Bind built it
}

func (*GetBoundProfilePackageResponse) Function() Function { return GetBoundProfilePackage }

func parseGetBPPOk(v []byte) (*GetBoundProfilePackageResponse, error) {
	r := newReader(v, "GetBoundProfilePackageOk")
	m := new(GetBoundProfilePackageResponse)
	var err error
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagBPP, "boundProfilePackage")
	if err != nil {
		return nil, err
	}
	m.BoundProfilePackage = e.raw
	return m, r.end()
}

func (m *GetBoundProfilePackageResponse) okContents() ([]byte, error) {
	if err := m.TransactionID.check("GetBoundProfilePackageResponse.transactionId"); err != nil {
		return nil, err
	}
	if err := checkElement(m.BoundProfilePackage, tagBPP, "boundProfilePackage"); err != nil {
		return nil, err
	}
	return concat(tlv(tagES9TID, m.TransactionID), m.BoundProfilePackage), nil
}

// Marshal returns BF3A { A0 GetBoundProfilePackageOk }.
func (m *GetBoundProfilePackageResponse) Marshal() ([]byte, error) {
	return okElement(tagGetBPP, m.okContents)
}

// HandleNotification:
//
//	HandleNotification ::= [61] SEQUENCE {            -- BF3D
//	  pendingNotification PendingNotification         -- A0 { BF37 … | 30 … }
//	}
//
// pendingNotification is an untagged CHOICE in a SEQUENCE without tagged
// components, so AUTOMATIC TAGS give it [0], explicit as for every CHOICE.
// (The JSON binding carries the bare PendingNotification.)
type HandleNotification struct {
	PendingNotification PendingNotification
	Raw                 []byte
}

func (*HandleNotification) Function() Function { return HandleNotificationFunction }

// ParseHandleNotification decodes a DER HandleNotification (BF3D).
func ParseHandleNotification(der []byte) (*HandleNotification, error) {
	top, err := parseTop(der, tagHandleNotification, "HandleNotification")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "HandleNotification")
	e, err := r.expect(tagHNPending, "pendingNotification")
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	inner, err := parseTop(e.value, peekTop(e.value), "HandleNotification.pendingNotification")
	if err != nil {
		return nil, err
	}
	pn, err := parsePendingNotification(inner)
	if err != nil {
		return nil, err
	}
	return &HandleNotification{PendingNotification: *pn, Raw: top.raw}, nil
}

// Marshal returns the DER HandleNotification (Raw if set).
func (m *HandleNotification) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	pn, err := m.PendingNotification.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagHandleNotification, tlv(tagHNPending, pn)), nil
}

// CancelSessionRequestEs9:
//
//	CancelSessionRequestEs9 ::= [65] SEQUENCE {                  -- BF41
//	  transactionId TransactionId,                               -- 80
//	  cancelSessionResponse CancelSessionResponse                -- A1 (automatic [1] replaces BF41)
//	}
//
// Neither component is tagged in the SEQUENCE, so automatic tagging
// applies and re-tags the embedded BF41 CHOICE as A1. In JSON the same value
// is the base64 of the eUICC's BF41 element.
type CancelSessionRequestEs9 struct {
	TransactionID         TransactionID
	CancelSessionResponse CancelSessionResponse
	Raw                   []byte
}

func (*CancelSessionRequestEs9) Function() Function { return CancelSession }

// ParseCancelSessionRequestEs9 decodes a DER CancelSessionRequestEs9 (BF41).
func ParseCancelSessionRequestEs9(der []byte) (*CancelSessionRequestEs9, error) {
	top, err := parseTop(der, tagCancelSession, "CancelSessionRequestEs9")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "CancelSessionRequestEs9")
	m := &CancelSessionRequestEs9{Raw: top.raw}
	if m.TransactionID, err = r.transactionID(tagES9TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagCSEs9Payload, "cancelSessionResponse")
	if err != nil {
		return nil, err
	}
	csr, err := parseCancelSessionResponse(e)
	if err != nil {
		return nil, err
	}
	m.CancelSessionResponse = *csr
	return m, r.end()
}

// Marshal returns the DER CancelSessionRequestEs9 (Raw if set).
func (m *CancelSessionRequestEs9) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("CancelSessionRequestEs9.transactionId"); err != nil {
		return nil, err
	}
	var inner []byte
	if raw := m.CancelSessionResponse.Raw; raw != nil {
		// Keep the eUICC's bytes; only the outer tag changes.
		e, err := parseTop(raw, peekTop(raw), "cancelSessionResponse")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		inner = e.value
	} else {
		c, err := m.CancelSessionResponse.content()
		if err != nil {
			return nil, err
		}
		inner = c
	}
	return tlv(tagCancelSession, tlv(tagES9TID, m.TransactionID), tlv(tagCSEs9Payload, inner)), nil
}

// CancelSessionResponseEs9 is the ok answer, which carries nothing:
// CancelSessionOk ::= SEQUENCE {} (BF41 { A0 00 }).
type CancelSessionResponseEs9 struct{}

func (*CancelSessionResponseEs9) Function() Function { return CancelSession }

// Marshal returns BF41 { A0 00 }.
func (m *CancelSessionResponseEs9) Marshal() ([]byte, error) {
	return okElement(tagCancelSession, func() ([]byte, error) { return nil, nil })
}

func okElement(tag uint32, contents func() ([]byte, error)) ([]byte, error) {
	c, err := contents()
	if err != nil {
		return nil, err
	}
	return tlv(tag, tlv(tagES9Ok, c)), nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
