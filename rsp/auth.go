package rsp

import (
	"fmt"
	"unicode/utf8"
)

// ServerSigned1 tags.
const (
	tagSS1TransactionID   = 0x80 // transactionId [0]
	tagSS1EUICCChallenge  = 0x81 // euiccChallenge [1] Octet16
	tagSS1ServerAddress   = 0x83 // serverAddress [3] UTF8String
	tagSS1ServerChallenge = 0x84 // serverChallenge [4] Octet16
)

// ServerSigned1 is the part of InitiateAuthentication's answer that
// serverSignature1 covers (SK.DPauth over the whole 30 element):
//
//	ServerSigned1 ::= SEQUENCE {         -- 30
//	  transactionId [0] TransactionId,   -- 80
//	  euiccChallenge [1] Octet16,        -- 81
//	  serverAddress [3] UTF8String,      -- 83
//	  serverChallenge [4] Octet16        -- 84
//	}
type ServerSigned1 struct {
	TransactionID   TransactionID
	EUICCChallenge  [ChallengeSize]byte
	ServerAddress   string
	ServerChallenge [ChallengeSize]byte
	Raw             []byte // the 30 element as received: what serverSignature1 covers
}

// ParseServerSigned1 decodes a DER ServerSigned1.
func ParseServerSigned1(der []byte) (*ServerSigned1, error) {
	top, err := parseTop(der, tagSequence, "ServerSigned1")
	if err != nil {
		return nil, err
	}
	return parseServerSigned1(top)
}

func parseServerSigned1(top element) (*ServerSigned1, error) {
	r := newReader(top.value, "ServerSigned1")
	m := &ServerSigned1{Raw: top.raw}
	var err error
	if m.TransactionID, err = r.transactionID(tagSS1TransactionID); err != nil {
		return nil, err
	}
	v, err := r.octets(tagSS1EUICCChallenge, "euiccChallenge", ChallengeSize, ChallengeSize)
	if err != nil {
		return nil, err
	}
	m.EUICCChallenge = [ChallengeSize]byte(v)
	if m.ServerAddress, err = r.utf8(tagSS1ServerAddress, "serverAddress"); err != nil {
		return nil, err
	}
	if v, err = r.octets(tagSS1ServerChallenge, "serverChallenge", ChallengeSize, ChallengeSize); err != nil {
		return nil, err
	}
	m.ServerChallenge = [ChallengeSize]byte(v)
	return m, r.end()
}

// Marshal returns the DER ServerSigned1 (Raw if set).
func (m *ServerSigned1) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("ServerSigned1.transactionId"); err != nil {
		return nil, err
	}
	if err := checkAddress(m.ServerAddress, "ServerSigned1.serverAddress"); err != nil {
		return nil, err
	}
	return tlv(tagSequence,
		tlv(tagSS1TransactionID, m.TransactionID),
		tlv(tagSS1EUICCChallenge, m.EUICCChallenge[:]),
		tlv(tagSS1ServerAddress, []byte(m.ServerAddress)),
		tlv(tagSS1ServerChallenge, m.ServerChallenge[:]),
	), nil
}

func checkAddress(a, what string) error {
	if a == "" || !utf8.ValidString(a) {
		return fmt.Errorf("%w: %s is empty or not UTF-8", ErrInvalid, what)
	}
	return nil
}

// CtxParams1 tags.
const (
	tagCtxCommonAuth   = 0xA0 // ctxParamsForCommonAuthentication: CHOICE alternative [0]
	tagCtxMatchingID   = 0x80 // matchingId UTF8String OPTIONAL → [0]
	tagCtxDeviceInfo   = 0xA1 // deviceInfo DeviceInfo → [1]
	tagDevTAC          = 0x80 // tac Octet4 → [0]
	tagDevCapabilities = 0xA1 // deviceCapabilities DeviceCapabilities → [1]
	tagDevIMEI         = 0x82 // imei Octet8 OPTIONAL → [2]
	tacSize            = 4
	imeiSize           = 8
)

// CtxParams1 is the CHOICE the LPA passes to AuthenticateServer and the
// eUICC copies into EUICCSigned1. AUTOMATIC TAGS number the alternatives:
//
//	CtxParams1 ::= CHOICE {
//	  ctxParamsForCommonAuthentication CtxParamsForCommonAuthentication -- A0
//	  -- later versions add alternatives (A1 …)
//	}
//
// Another alternative is not malformed: it decodes with Common == nil, and
// the server answers it with 1.3.1/2.2 (es2-es10-codes.md §3.3 row 21).
type CtxParams1 struct {
	Common *CtxParamsForCommonAuthentication
	Raw    []byte // the alternative's element as received
}

// CtxParamsForCommonAuthentication:
//
//	CtxParamsForCommonAuthentication ::= SEQUENCE {
//	  matchingId UTF8String OPTIONAL,   -- 80
//	  deviceInfo DeviceInfo             -- A1
//	}
type CtxParamsForCommonAuthentication struct {
	// MatchingID is the activation-code token or SM-DS event id; nil when
	// absent. Present-but-empty and absent mean the same to the server
	// (§3.3 rows 14/15), but are distinct encodings and kept apart here.
	MatchingID *string
	DeviceInfo DeviceInfo
}

// DeviceInfo:
//
//	DeviceInfo ::= SEQUENCE {
//	  tac Octet4,                             -- 80
//	  deviceCapabilities DeviceCapabilities,  -- A1 { 80 … 8D, AE }
//	  imei Octet8 OPTIONAL                    -- 82
//	}
type DeviceInfo struct {
	TAC [tacSize]byte
	// DeviceCapabilities holds the contents of the A1 element as received
	// (its members are release versions the SM-DP+ does not act on).
	DeviceCapabilities []byte
	IMEI               []byte // 8 bytes, nil when absent
}

func parseCtxParams1(e element) (*CtxParams1, error) {
	m := &CtxParams1{Raw: e.raw}
	if e.tag != tagCtxCommonAuth {
		if e.tag&0xE0 != 0xA0 {
			return nil, fmt.Errorf("%w: ctxParams1: tag %X is not a context-specific CHOICE alternative", ErrMalformed, e.tag)
		}
		return m, nil
	}
	r := newReader(e.value, "CtxParamsForCommonAuthentication")
	c := new(CtxParamsForCommonAuthentication)
	if mid, ok, err := r.optional(tagCtxMatchingID); err != nil {
		return nil, err
	} else if ok {
		s, err := utf8Value(mid.value, "CtxParamsForCommonAuthentication.matchingId")
		if err != nil {
			return nil, err
		}
		c.MatchingID = &s
	}
	di, err := r.expect(tagCtxDeviceInfo, "deviceInfo")
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	dr := newReader(di.value, "DeviceInfo")
	tac, err := dr.octets(tagDevTAC, "tac", tacSize, tacSize)
	if err != nil {
		return nil, err
	}
	c.DeviceInfo.TAC = [tacSize]byte(tac)
	caps, err := dr.expect(tagDevCapabilities, "deviceCapabilities")
	if err != nil {
		return nil, err
	}
	if err := newReader(caps.value, "DeviceCapabilities").end(); err != nil {
		return nil, err
	}
	c.DeviceInfo.DeviceCapabilities = caps.value
	if imei, ok, err := dr.optional(tagDevIMEI); err != nil {
		return nil, err
	} else if ok {
		if len(imei.value) != imeiSize {
			return nil, sizeError("DeviceInfo.imei", len(imei.value), imeiSize, imeiSize)
		}
		c.DeviceInfo.IMEI = imei.value
	}
	if err := dr.end(); err != nil {
		return nil, err
	}
	m.Common = c
	return m, nil
}

// Marshal returns the DER CtxParams1 (Raw if set).
func (m *CtxParams1) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	c := m.Common
	if c == nil {
		return nil, fmt.Errorf("%w: CtxParams1 has neither an alternative nor Raw", ErrInvalid)
	}
	if c.DeviceInfo.IMEI != nil && len(c.DeviceInfo.IMEI) != imeiSize {
		return nil, fmt.Errorf("%w: DeviceInfo.imei is %d bytes, want %d", ErrInvalid, len(c.DeviceInfo.IMEI), imeiSize)
	}
	var mid []byte
	if c.MatchingID != nil {
		mid = tlv(tagCtxMatchingID, []byte(*c.MatchingID))
	}
	return tlv(tagCtxCommonAuth,
		mid,
		tlv(tagCtxDeviceInfo,
			tlv(tagDevTAC, c.DeviceInfo.TAC[:]),
			tlv(tagDevCapabilities, c.DeviceInfo.DeviceCapabilities),
			opt(c.DeviceInfo.IMEI != nil, tagDevIMEI, c.DeviceInfo.IMEI),
		),
	), nil
}

// EUICCSigned1 tags.
const (
	tagES1TransactionID   = 0x80 // transactionId [0]
	tagES1ServerAddress   = 0x83 // serverAddress [3]
	tagES1ServerChallenge = 0x84 // serverChallenge [4]
)

// EUICCSigned1 is the part of AuthenticateServer's answer that
// euiccSignature1 covers (SK.EUICC over the 30 element as sent):
//
//	EuiccSigned1 ::= SEQUENCE {          -- 30
//	  transactionId [0] TransactionId,   -- 80
//	  serverAddress [3] UTF8String,      -- 83
//	  serverChallenge [4] Octet16,       -- 84
//	  euiccInfo2 [34] EUICCInfo2,        -- BF22
//	  ctxParams1 CtxParams1              -- CHOICE: A0 …
//	}
type EUICCSigned1 struct {
	TransactionID   TransactionID
	ServerAddress   string
	ServerChallenge [ChallengeSize]byte
	EUICCInfo2      EUICCInfo2
	CtxParams1      CtxParams1
	Raw             []byte // the 30 element as received: what euiccSignature1 covers
}

func parseEUICCSigned1(top element) (*EUICCSigned1, error) {
	r := newReader(top.value, "EuiccSigned1")
	m := &EUICCSigned1{Raw: top.raw}
	var err error
	if m.TransactionID, err = r.transactionID(tagES1TransactionID); err != nil {
		return nil, err
	}
	if m.ServerAddress, err = r.utf8(tagES1ServerAddress, "serverAddress"); err != nil {
		return nil, err
	}
	v, err := r.octets(tagES1ServerChallenge, "serverChallenge", ChallengeSize, ChallengeSize)
	if err != nil {
		return nil, err
	}
	m.ServerChallenge = [ChallengeSize]byte(v)
	e, err := r.expect(tagEUICCInfo2, "euiccInfo2")
	if err != nil {
		return nil, err
	}
	info, err := parseEUICCInfo2(e)
	if err != nil {
		return nil, err
	}
	m.EUICCInfo2 = *info
	if r.empty() {
		return nil, fmt.Errorf("%w: EuiccSigned1.ctxParams1 missing", ErrMalformed)
	}
	if e, err = r.next(); err != nil {
		return nil, err
	}
	ctx, err := parseCtxParams1(e)
	if err != nil {
		return nil, err
	}
	m.CtxParams1 = *ctx
	return m, r.end()
}

// Marshal returns the DER EuiccSigned1 (Raw if set).
func (m *EUICCSigned1) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("EuiccSigned1.transactionId"); err != nil {
		return nil, err
	}
	if err := checkAddress(m.ServerAddress, "EuiccSigned1.serverAddress"); err != nil {
		return nil, err
	}
	info, err := m.EUICCInfo2.Marshal()
	if err != nil {
		return nil, err
	}
	ctx, err := m.CtxParams1.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagSequence,
		tlv(tagES1TransactionID, m.TransactionID),
		tlv(tagES1ServerAddress, []byte(m.ServerAddress)),
		tlv(tagES1ServerChallenge, m.ServerChallenge[:]),
		info, ctx,
	), nil
}

// AuthenticateServer tags.
const (
	tagAuthenticateServer = 0xBF38 // AuthenticateServerRequest/Response ::= [56]
	tagAuthOk             = 0xA0   // authenticateResponseOk: CHOICE alternative [0]
	tagAuthError          = 0xA1   // authenticateResponseError: CHOICE alternative [1]
	tagAuthErrTID         = 0x80   // AuthenticateResponseError.transactionId [0]
)

// AuthenticateErrorCode is the eUICC's AuthenticateErrorCode.
type AuthenticateErrorCode int64

const (
	AuthErrInvalidCertificate     AuthenticateErrorCode = 1
	AuthErrInvalidSignature       AuthenticateErrorCode = 2
	AuthErrUnsupportedCurve       AuthenticateErrorCode = 3
	AuthErrNoSessionContext       AuthenticateErrorCode = 4
	AuthErrInvalidOID             AuthenticateErrorCode = 5
	AuthErrEUICCChallengeMismatch AuthenticateErrorCode = 6
	AuthErrCIPKUnknown            AuthenticateErrorCode = 7
	AuthErrUndefined              AuthenticateErrorCode = 127
)

// AuthenticateServerResponse is ES10b AuthenticateServer's answer, which
// the LPA forwards in AuthenticateClient:
//
//	AuthenticateServerResponse ::= [56] CHOICE {        -- BF38
//	  authenticateResponseOk AuthenticateResponseOk,    -- A0
//	  authenticateResponseError AuthenticateResponseError -- A1
//	}
//
// Exactly one of Ok and Error is set.
type AuthenticateServerResponse struct {
	Ok    *AuthenticateResponseOk
	Error *AuthenticateResponseError
	Raw   []byte // the BF38 element as received
}

// AuthenticateResponseOk:
//
//	AuthenticateResponseOk ::= SEQUENCE {
//	  euiccSigned1 EuiccSigned1,                        -- 30
//	  euiccSignature1 [APPLICATION 55] OCTET STRING,    -- 5F37
//	  euiccCertificate Certificate,                     -- 30
//	  eumCertificate Certificate                        -- 30
//	}
type AuthenticateResponseOk struct {
	EUICCSigned1     EUICCSigned1
	EUICCSignature1  Signature // over EUICCSigned1.Raw
	EUICCCertificate []byte    // DER CERT.EUICC.ECDSA
	EUMCertificate   []byte    // DER CERT.EUM.ECDSA
}

// AuthenticateResponseError:
//
//	AuthenticateResponseError ::= SEQUENCE {
//	  transactionId [0] TransactionId,                  -- 80
//	  authenticateErrorCode AuthenticateErrorCode       -- 02 (the SEQUENCE has a tagged component)
//	}
type AuthenticateResponseError struct {
	TransactionID TransactionID
	Code          AuthenticateErrorCode
}

// ParseAuthenticateServerResponse decodes a DER AuthenticateServerResponse (BF38).
func ParseAuthenticateServerResponse(der []byte) (*AuthenticateServerResponse, error) {
	top, err := parseTop(der, tagAuthenticateServer, "AuthenticateServerResponse")
	if err != nil {
		return nil, err
	}
	return parseAuthenticateServerResponse(top)
}

func parseAuthenticateServerResponse(top element) (*AuthenticateServerResponse, error) {
	m := &AuthenticateServerResponse{Raw: top.raw}
	r := newReader(top.value, "AuthenticateServerResponse")
	alt, err := r.next()
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, fmt.Errorf("%w: AuthenticateServerResponse: more than one CHOICE alternative", ErrMalformed)
	}
	switch alt.tag {
	case tagAuthOk:
		ok := new(AuthenticateResponseOk)
		r := newReader(alt.value, "AuthenticateResponseOk")
		e, err := r.expect(tagSequence, "euiccSigned1")
		if err != nil {
			return nil, err
		}
		s1, err := parseEUICCSigned1(e)
		if err != nil {
			return nil, err
		}
		ok.EUICCSigned1 = *s1
		if ok.EUICCSignature1, err = r.signature("euiccSignature1"); err != nil {
			return nil, err
		}
		if ok.EUICCCertificate, err = r.certificate("euiccCertificate"); err != nil {
			return nil, err
		}
		if ok.EUMCertificate, err = r.certificate("eumCertificate"); err != nil {
			return nil, err
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		m.Ok = ok
	case tagAuthError:
		r := newReader(alt.value, "AuthenticateResponseError")
		e := new(AuthenticateResponseError)
		if e.TransactionID, err = r.transactionID(tagAuthErrTID); err != nil {
			return nil, err
		}
		code, err := r.integer(tagInteger, "authenticateErrorCode")
		if err != nil {
			return nil, err
		}
		e.Code = AuthenticateErrorCode(code)
		if err := r.end(); err != nil {
			return nil, err
		}
		m.Error = e
	default:
		return nil, fmt.Errorf("%w: AuthenticateServerResponse: unknown CHOICE alternative %X", ErrMalformed, alt.tag)
	}
	return m, nil
}

// Marshal returns the DER AuthenticateServerResponse (Raw if set).
func (m *AuthenticateServerResponse) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	switch {
	case m.Ok != nil && m.Error == nil:
		ok := m.Ok
		s1, err := ok.EUICCSigned1.Marshal()
		if err != nil {
			return nil, err
		}
		if err := ok.EUICCSignature1.check("euiccSignature1"); err != nil {
			return nil, err
		}
		if err := checkElement(ok.EUICCCertificate, tagSequence, "euiccCertificate"); err != nil {
			return nil, err
		}
		if err := checkElement(ok.EUMCertificate, tagSequence, "eumCertificate"); err != nil {
			return nil, err
		}
		return tlv(tagAuthenticateServer,
			tlv(tagAuthOk, s1, ok.EUICCSignature1, ok.EUICCCertificate, ok.EUMCertificate)), nil
	case m.Error != nil && m.Ok == nil:
		if err := m.Error.TransactionID.check("AuthenticateResponseError.transactionId"); err != nil {
			return nil, err
		}
		return tlv(tagAuthenticateServer,
			tlv(tagAuthError,
				tlv(tagAuthErrTID, m.Error.TransactionID),
				tlv(tagInteger, intContents(int64(m.Error.Code))))), nil
	}
	return nil, fmt.Errorf("%w: AuthenticateServerResponse needs exactly one of Ok and Error", ErrInvalid)
}

// AuthenticateServerRequest is ES10b AuthenticateServer's command, built by
// the LPA from InitiateAuthentication's answer:
//
//	AuthenticateServerRequest ::= [56] SEQUENCE {        -- BF38
//	  serverSigned1 ServerSigned1,                       -- 30
//	  serverSignature1 [APPLICATION 55] OCTET STRING,    -- 5F37
//	  euiccCiPKIdToBeUsed SubjectKeyIdentifier,          -- 04
//	  serverCertificate Certificate,                     -- 30
//	  ctxParams1 CtxParams1                              -- A0 …
//	}
type AuthenticateServerRequest struct {
	ServerSigned1       ServerSigned1
	ServerSignature1    Signature
	EUICCCIPKIDToBeUsed []byte // the CI SubjectKeyIdentifier
	ServerCertificate   []byte // DER CERT.DPauth.ECDSA
	CtxParams1          CtxParams1
	Raw                 []byte
}

// ParseAuthenticateServerRequest decodes a DER AuthenticateServerRequest (BF38).
func ParseAuthenticateServerRequest(der []byte) (*AuthenticateServerRequest, error) {
	top, err := parseTop(der, tagAuthenticateServer, "AuthenticateServerRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "AuthenticateServerRequest")
	m := &AuthenticateServerRequest{Raw: top.raw}
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
	if r.empty() {
		return nil, fmt.Errorf("%w: AuthenticateServerRequest.ctxParams1 missing", ErrMalformed)
	}
	if e, err = r.next(); err != nil {
		return nil, err
	}
	ctx, err := parseCtxParams1(e)
	if err != nil {
		return nil, err
	}
	m.CtxParams1 = *ctx
	return m, r.end()
}

// Marshal returns the DER AuthenticateServerRequest (Raw if set).
func (m *AuthenticateServerRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
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
	ctx, err := m.CtxParams1.Marshal()
	if err != nil {
		return nil, err
	}
	return tlv(tagAuthenticateServer,
		s1, m.ServerSignature1,
		tlv(tagOctetString, m.EUICCCIPKIDToBeUsed),
		m.ServerCertificate, ctx), nil
}
