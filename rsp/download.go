package rsp

import "fmt"

// SmdpSigned2 tags.
const tagSmdpSigned2TID = 0x80 // transactionId [0]

// SmdpSigned2 is the part of AuthenticateClient's answer that
// smdpSignature2 covers (together with euiccSignature1, see SmdpSignature2Data):
//
//	SmdpSigned2 ::= SEQUENCE {                              -- 30
//	  transactionId [0] TransactionId,                      -- 80
//	  ccRequiredFlag BOOLEAN,                               -- 01 (the SEQUENCE has tagged components)
//	  bppEuiccOtpk [APPLICATION 73] OCTET STRING OPTIONAL   -- 5F49
//	}
type SmdpSigned2 struct {
	TransactionID TransactionID
	CCRequired    bool
	BPPEUICCOtpk  []byte // the eUICC one-time key an already bound BPP was bound to; nil when absent
	Raw           []byte // the 30 element as received
}

// ParseSmdpSigned2 decodes a DER SmdpSigned2.
func ParseSmdpSigned2(der []byte) (*SmdpSigned2, error) {
	top, err := parseTop(der, tagSequence, "SmdpSigned2")
	if err != nil {
		return nil, err
	}
	return parseSmdpSigned2(top)
}

func parseSmdpSigned2(top element) (*SmdpSigned2, error) {
	r := newReader(top.value, "SmdpSigned2")
	m := &SmdpSigned2{Raw: top.raw}
	var err error
	if m.TransactionID, err = r.transactionID(tagSmdpSigned2TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagBoolean, "ccRequiredFlag")
	if err != nil {
		return nil, err
	}
	if m.CCRequired, err = boolValue(e.value, "SmdpSigned2.ccRequiredFlag"); err != nil {
		return nil, err
	}
	if e, ok, err := r.optional(tagOtpk); err != nil {
		return nil, err
	} else if ok {
		if len(e.value) == 0 {
			return nil, fmt.Errorf("%w: SmdpSigned2.bppEuiccOtpk is empty", ErrMalformed)
		}
		m.BPPEUICCOtpk = e.value
	}
	return m, r.end()
}

// Marshal returns the DER SmdpSigned2 (Raw if set).
func (m *SmdpSigned2) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("SmdpSigned2.transactionId"); err != nil {
		return nil, err
	}
	flag := byte(0)
	if m.CCRequired {
		flag = 0xFF
	}
	return tlv(tagSequence,
		tlv(tagSmdpSigned2TID, m.TransactionID),
		tlv(tagBoolean, []byte{flag}),
		opt(m.BPPEUICCOtpk != nil, tagOtpk, m.BPPEUICCOtpk),
	), nil
}

// SmdpSignature2Data returns the bytes smdpSignature2 covers: the
// smdpSigned2 element followed by the eUICC's euiccSignature1 element
// (5F37 40 …) as received in AuthenticateClient.
func SmdpSignature2Data(smdpSigned2 []byte, euiccSignature1 Signature) []byte {
	return append(append(make([]byte, 0, len(smdpSigned2)+len(euiccSignature1)), smdpSigned2...), euiccSignature1...)
}

// PrepareDownload tags.
const (
	tagPrepareDownload = 0xBF21 // PrepareDownloadRequest/Response ::= [33]
	tagDownloadOk      = 0xA0   // downloadResponseOk: CHOICE alternative [0]
	tagDownloadError   = 0xA1   // downloadResponseError: CHOICE alternative [1]
	tagES2TID          = 0x80   // EUICCSigned2.transactionId [0]
	tagDownloadErrTID  = 0x80   // PrepareDownloadResponseError.transactionId [0]
)

// PrepareDownloadRequest is ES10b PrepareDownload's command, built by the
// LPA from AuthenticateClient's answer:
//
//	PrepareDownloadRequest ::= [33] SEQUENCE {             -- BF21
//	  smdpSigned2 SmdpSigned2,                             -- 30
//	  smdpSignature2 [APPLICATION 55] OCTET STRING,        -- 5F37
//	  hashCc Octet32 OPTIONAL,                             -- 04
//	  smdpCertificate Certificate                          -- 30
//	}
type PrepareDownloadRequest struct {
	SmdpSigned2     SmdpSigned2
	SmdpSignature2  Signature
	HashCc          []byte // 32 bytes, nil when absent
	SmdpCertificate []byte // DER CERT.DPpb.ECDSA
	Raw             []byte
}

// ParsePrepareDownloadRequest decodes a DER PrepareDownloadRequest (BF21).
func ParsePrepareDownloadRequest(der []byte) (*PrepareDownloadRequest, error) {
	top, err := parseTop(der, tagPrepareDownload, "PrepareDownloadRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "PrepareDownloadRequest")
	m := &PrepareDownloadRequest{Raw: top.raw}
	e, err := r.expect(tagSequence, "smdpSigned2")
	if err != nil {
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
	if e, ok, err := r.optional(tagOctetString); err != nil {
		return nil, err
	} else if ok {
		if len(e.value) != HashCcSize {
			return nil, sizeError("PrepareDownloadRequest.hashCc", len(e.value), HashCcSize, HashCcSize)
		}
		m.HashCc = e.value
	}
	if m.SmdpCertificate, err = r.certificate("smdpCertificate"); err != nil {
		return nil, err
	}
	return m, r.end()
}

// Marshal returns the DER PrepareDownloadRequest (Raw if set).
func (m *PrepareDownloadRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	s2, err := m.SmdpSigned2.Marshal()
	if err != nil {
		return nil, err
	}
	if err := m.SmdpSignature2.check("smdpSignature2"); err != nil {
		return nil, err
	}
	if m.HashCc != nil {
		if err := checkSize("PrepareDownloadRequest.hashCc", len(m.HashCc), HashCcSize, HashCcSize); err != nil {
			return nil, err
		}
	}
	if err := checkElement(m.SmdpCertificate, tagSequence, "smdpCertificate"); err != nil {
		return nil, err
	}
	return tlv(tagPrepareDownload, s2, m.SmdpSignature2,
		opt(m.HashCc != nil, tagOctetString, m.HashCc), m.SmdpCertificate), nil
}

// EUICCSigned2 is the part of PrepareDownload's answer that euiccSignature2
// covers (together with smdpSignature2, see EUICCSignature2Data):
//
//	EUICCSigned2 ::= SEQUENCE {                     -- 30
//	  transactionId [0] TransactionId,              -- 80
//	  euiccOtpk [APPLICATION 73] OCTET STRING,      -- 5F49
//	  hashCc Octet32 OPTIONAL                       -- 04 (the SEQUENCE has tagged components)
//	}
type EUICCSigned2 struct {
	TransactionID TransactionID
	EUICCOtpk     []byte // otPK.EUICC.ECKA, uncompressed point
	HashCc        []byte // 32 bytes, nil when absent
	Raw           []byte // the 30 element as received: what euiccSignature2 covers
}

func parseEUICCSigned2(top element) (*EUICCSigned2, error) {
	r := newReader(top.value, "EUICCSigned2")
	m := &EUICCSigned2{Raw: top.raw}
	var err error
	if m.TransactionID, err = r.transactionID(tagES2TID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagOtpk, "euiccOtpk")
	if err != nil {
		return nil, err
	}
	if len(e.value) != PointSize || e.value[0] != 0x04 {
		return nil, fmt.Errorf("%w: EUICCSigned2.euiccOtpk is not a %d-byte uncompressed point", ErrMalformed, PointSize)
	}
	m.EUICCOtpk = e.value
	if e, ok, err := r.optional(tagOctetString); err != nil {
		return nil, err
	} else if ok {
		if len(e.value) != HashCcSize {
			return nil, sizeError("EUICCSigned2.hashCc", len(e.value), HashCcSize, HashCcSize)
		}
		m.HashCc = e.value
	}
	return m, r.end()
}

// Marshal returns the DER EUICCSigned2 (Raw if set).
func (m *EUICCSigned2) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("EUICCSigned2.transactionId"); err != nil {
		return nil, err
	}
	if len(m.EUICCOtpk) != PointSize || m.EUICCOtpk[0] != 0x04 {
		return nil, fmt.Errorf("%w: EUICCSigned2.euiccOtpk is not a %d-byte uncompressed point", ErrInvalid, PointSize)
	}
	if m.HashCc != nil {
		if err := checkSize("EUICCSigned2.hashCc", len(m.HashCc), HashCcSize, HashCcSize); err != nil {
			return nil, err
		}
	}
	return tlv(tagSequence,
		tlv(tagES2TID, m.TransactionID),
		tlv(tagOtpk, m.EUICCOtpk),
		opt(m.HashCc != nil, tagOctetString, m.HashCc),
	), nil
}

// EUICCSignature2Data returns the bytes euiccSignature2 covers: the
// euiccSigned2 element as received followed by the smdpSignature2 element
// the SM-DP+ sent in AuthenticateClient.
func EUICCSignature2Data(euiccSigned2 []byte, smdpSignature2 Signature) []byte {
	return append(append(make([]byte, 0, len(euiccSigned2)+len(smdpSignature2)), euiccSigned2...), smdpSignature2...)
}

// DownloadErrorCode is the eUICC's DownloadErrorCode.
type DownloadErrorCode int64

const (
	DownloadErrInvalidCertificate   DownloadErrorCode = 1
	DownloadErrInvalidSignature     DownloadErrorCode = 2
	DownloadErrUnsupportedCurve     DownloadErrorCode = 3
	DownloadErrNoSessionContext     DownloadErrorCode = 4
	DownloadErrInvalidTransactionID DownloadErrorCode = 5
	DownloadErrUndefined            DownloadErrorCode = 127
)

// PrepareDownloadResponse is ES10b PrepareDownload's answer, which the LPA
// forwards in GetBoundProfilePackage:
//
//	PrepareDownloadResponse ::= [33] CHOICE {                -- BF21
//	  downloadResponseOk PrepareDownloadResponseOk,          -- A0 { 30 euiccSigned2, 5F37 euiccSignature2 }
//	  downloadResponseError PrepareDownloadResponseError     -- A1 { 80 transactionId, 02 downloadErrorCode }
//	}
//
// Exactly one of Ok and Error is set.
type PrepareDownloadResponse struct {
	Ok    *PrepareDownloadResponseOk
	Error *PrepareDownloadResponseError
	Raw   []byte // the BF21 element as received
}

// PrepareDownloadResponseOk is the eUICC's signed answer.
type PrepareDownloadResponseOk struct {
	EUICCSigned2    EUICCSigned2
	EUICCSignature2 Signature // over EUICCSignature2Data(EUICCSigned2.Raw, smdpSignature2)
}

// PrepareDownloadResponseError is the eUICC's refusal.
type PrepareDownloadResponseError struct {
	TransactionID TransactionID
	Code          DownloadErrorCode
}

// ParsePrepareDownloadResponse decodes a DER PrepareDownloadResponse (BF21).
func ParsePrepareDownloadResponse(der []byte) (*PrepareDownloadResponse, error) {
	top, err := parseTop(der, tagPrepareDownload, "PrepareDownloadResponse")
	if err != nil {
		return nil, err
	}
	return parsePrepareDownloadResponse(top)
}

func parsePrepareDownloadResponse(top element) (*PrepareDownloadResponse, error) {
	m := &PrepareDownloadResponse{Raw: top.raw}
	r := newReader(top.value, "PrepareDownloadResponse")
	alt, err := r.next()
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, fmt.Errorf("%w: PrepareDownloadResponse: more than one CHOICE alternative", ErrMalformed)
	}
	switch alt.tag {
	case tagDownloadOk:
		r := newReader(alt.value, "PrepareDownloadResponseOk")
		e, err := r.expect(tagSequence, "euiccSigned2")
		if err != nil {
			return nil, err
		}
		s2, err := parseEUICCSigned2(e)
		if err != nil {
			return nil, err
		}
		ok := &PrepareDownloadResponseOk{EUICCSigned2: *s2}
		if ok.EUICCSignature2, err = r.signature("euiccSignature2"); err != nil {
			return nil, err
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		m.Ok = ok
	case tagDownloadError:
		r := newReader(alt.value, "PrepareDownloadResponseError")
		e := new(PrepareDownloadResponseError)
		if e.TransactionID, err = r.transactionID(tagDownloadErrTID); err != nil {
			return nil, err
		}
		code, err := r.integer(tagInteger, "downloadErrorCode")
		if err != nil {
			return nil, err
		}
		e.Code = DownloadErrorCode(code)
		if err := r.end(); err != nil {
			return nil, err
		}
		m.Error = e
	default:
		return nil, fmt.Errorf("%w: PrepareDownloadResponse: unknown CHOICE alternative %X", ErrMalformed, alt.tag)
	}
	return m, nil
}

// Marshal returns the DER PrepareDownloadResponse (Raw if set).
func (m *PrepareDownloadResponse) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	switch {
	case m.Ok != nil && m.Error == nil:
		s2, err := m.Ok.EUICCSigned2.Marshal()
		if err != nil {
			return nil, err
		}
		if err := m.Ok.EUICCSignature2.check("euiccSignature2"); err != nil {
			return nil, err
		}
		return tlv(tagPrepareDownload, tlv(tagDownloadOk, s2, m.Ok.EUICCSignature2)), nil
	case m.Error != nil && m.Ok == nil:
		if err := m.Error.TransactionID.check("PrepareDownloadResponseError.transactionId"); err != nil {
			return nil, err
		}
		return tlv(tagPrepareDownload, tlv(tagDownloadError,
			tlv(tagDownloadErrTID, m.Error.TransactionID),
			tlv(tagInteger, intContents(int64(m.Error.Code))))), nil
	}
	return nil, fmt.Errorf("%w: PrepareDownloadResponse needs exactly one of Ok and Error", ErrInvalid)
}
