package rsp

import (
	"encoding/asn1"
	"fmt"
)

// CancelSession tags. EuiccCancelSessionSigned and the ES10b request have no
// tagged component, so AUTOMATIC TAGS number all of theirs.
const (
	tagCancelSession   = 0xBF41 // CancelSessionRequest/Response ::= [65]
	tagCSReqTID        = 0x80   // CancelSessionRequest.transactionId → [0]
	tagCSReqReason     = 0x81   // CancelSessionRequest.reason → [1]
	tagCancelOk        = 0xA0   // cancelSessionResponseOk: CHOICE alternative [0]
	tagCancelError     = 0x81   // cancelSessionResponseError INTEGER: alternative [1], primitive
	tagCSSignedTID     = 0x80   // EuiccCancelSessionSigned.transactionId → [0]
	tagCSSignedSMDPOID = 0x81   // smdpOid → [1]
	tagCSSignedReason  = 0x82   // reason → [2]
)

// CancelSessionReason is the LPA's CancelSessionReason.
type CancelSessionReason int64

const (
	CancelEndUserRejection      CancelSessionReason = 0
	CancelPostponed             CancelSessionReason = 1
	CancelTimeout               CancelSessionReason = 2
	CancelPPRNotAllowed         CancelSessionReason = 3
	CancelMetadataMismatch      CancelSessionReason = 4
	CancelLoadBPPExecutionError CancelSessionReason = 5
	CancelUndefined             CancelSessionReason = 127
)

// CancelSessionRequest is ES10b CancelSession's command (LPA → eUICC):
//
//	CancelSessionRequest ::= [65] SEQUENCE {   -- BF41
//	  transactionId TransactionId,             -- 80
//	  reason CancelSessionReason               -- 81
//	}
type CancelSessionRequest struct {
	TransactionID TransactionID
	Reason        CancelSessionReason
	Raw           []byte
}

// ParseCancelSessionRequest decodes a DER CancelSessionRequest (BF41).
func ParseCancelSessionRequest(der []byte) (*CancelSessionRequest, error) {
	top, err := parseTop(der, tagCancelSession, "CancelSessionRequest")
	if err != nil {
		return nil, err
	}
	r := newReader(top.value, "CancelSessionRequest")
	m := &CancelSessionRequest{Raw: top.raw}
	if m.TransactionID, err = r.transactionID(tagCSReqTID); err != nil {
		return nil, err
	}
	reason, err := r.integer(tagCSReqReason, "reason")
	if err != nil {
		return nil, err
	}
	m.Reason = CancelSessionReason(reason)
	return m, r.end()
}

// Marshal returns the DER CancelSessionRequest (Raw if set).
func (m *CancelSessionRequest) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("CancelSessionRequest.transactionId"); err != nil {
		return nil, err
	}
	return tlv(tagCancelSession,
		tlv(tagCSReqTID, m.TransactionID),
		tlv(tagCSReqReason, intContents(int64(m.Reason)))), nil
}

// EUICCCancelSessionSigned is what euiccCancelSessionSignature covers:
//
//	EuiccCancelSessionSigned ::= SEQUENCE {   -- 30
//	  transactionId TransactionId,            -- 80
//	  smdpOid OBJECT IDENTIFIER,              -- 81: SM-DP+ OID from CERT.DPauth
//	  reason CancelSessionReason              -- 82
//	}
type EUICCCancelSessionSigned struct {
	TransactionID TransactionID
	SMDPOID       asn1.ObjectIdentifier
	Reason        CancelSessionReason
	Raw           []byte // the 30 element as received
}

func parseEUICCCancelSessionSigned(top element) (*EUICCCancelSessionSigned, error) {
	r := newReader(top.value, "EuiccCancelSessionSigned")
	m := &EUICCCancelSessionSigned{Raw: top.raw}
	var err error
	if m.TransactionID, err = r.transactionID(tagCSSignedTID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagCSSignedSMDPOID, "smdpOid")
	if err != nil {
		return nil, err
	}
	if m.SMDPOID, err = oidValue(e.value, "EuiccCancelSessionSigned.smdpOid"); err != nil {
		return nil, err
	}
	reason, err := r.integer(tagCSSignedReason, "reason")
	if err != nil {
		return nil, err
	}
	m.Reason = CancelSessionReason(reason)
	return m, r.end()
}

// Marshal returns the DER EuiccCancelSessionSigned (Raw if set).
func (m *EUICCCancelSessionSigned) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if err := m.TransactionID.check("EuiccCancelSessionSigned.transactionId"); err != nil {
		return nil, err
	}
	oid, err := oidContents(m.SMDPOID, "EuiccCancelSessionSigned.smdpOid")
	if err != nil {
		return nil, err
	}
	return tlv(tagSequence,
		tlv(tagCSSignedTID, m.TransactionID),
		tlv(tagCSSignedSMDPOID, oid),
		tlv(tagCSSignedReason, intContents(int64(m.Reason)))), nil
}

// CancelSessionErrorCode is the eUICC's cancelSessionResponseError.
type CancelSessionErrorCode int64

const (
	CancelSessionErrInvalidTransactionID CancelSessionErrorCode = 5
	CancelSessionErrUndefined            CancelSessionErrorCode = 127
)

// CancelSessionResponse is ES10b CancelSession's answer, which the LPA
// forwards to the SM-DP+ in ES9+ CancelSession:
//
//	CancelSessionResponse ::= [65] CHOICE {                       -- BF41
//	  cancelSessionResponseOk CancelSessionResponseOk,            -- A0 { 30 euiccCancelSessionSigned, 5F37 sig }
//	  cancelSessionResponseError INTEGER                          -- 81
//	}
//
// Exactly one of Ok and Error is set.
type CancelSessionResponse struct {
	Ok    *CancelSessionResponseOk
	Error *CancelSessionErrorCode
	Raw   []byte // the BF41 element as received
}

// CancelSessionResponseOk is the eUICC's signed cancellation.
type CancelSessionResponseOk struct {
	EUICCCancelSessionSigned    EUICCCancelSessionSigned
	EUICCCancelSessionSignature Signature // over EUICCCancelSessionSigned.Raw
}

// ParseCancelSessionResponse decodes a DER CancelSessionResponse (BF41).
func ParseCancelSessionResponse(der []byte) (*CancelSessionResponse, error) {
	top, err := parseTop(der, tagCancelSession, "CancelSessionResponse")
	if err != nil {
		return nil, err
	}
	return parseCancelSessionResponse(top)
}

// parseCancelSessionResponse decodes the CHOICE inside e, whatever e's own
// tag: BF41 as ES10b sends it, A1 where the ASN.1 binding's automatic
// tagging re-tags it inside CancelSessionRequestEs9.
func parseCancelSessionResponse(e element) (*CancelSessionResponse, error) {
	m := &CancelSessionResponse{Raw: e.raw}
	r := newReader(e.value, "CancelSessionResponse")
	alt, err := r.next()
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, fmt.Errorf("%w: CancelSessionResponse: more than one CHOICE alternative", ErrMalformed)
	}
	switch alt.tag {
	case tagCancelOk:
		r := newReader(alt.value, "CancelSessionResponseOk")
		s, err := r.expect(tagSequence, "euiccCancelSessionSigned")
		if err != nil {
			return nil, err
		}
		signed, err := parseEUICCCancelSessionSigned(s)
		if err != nil {
			return nil, err
		}
		ok := &CancelSessionResponseOk{EUICCCancelSessionSigned: *signed}
		if ok.EUICCCancelSessionSignature, err = r.signature("euiccCancelSessionSignature"); err != nil {
			return nil, err
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		m.Ok = ok
	case tagCancelError:
		code, err := intValue(alt.value, "CancelSessionResponse.cancelSessionResponseError")
		if err != nil {
			return nil, err
		}
		c := CancelSessionErrorCode(code)
		m.Error = &c
	default:
		return nil, fmt.Errorf("%w: CancelSessionResponse: unknown CHOICE alternative %X", ErrMalformed, alt.tag)
	}
	return m, nil
}

// content returns the encoded CHOICE alternative (the contents of BF41).
func (m *CancelSessionResponse) content() ([]byte, error) {
	switch {
	case m.Ok != nil && m.Error == nil:
		signed, err := m.Ok.EUICCCancelSessionSigned.Marshal()
		if err != nil {
			return nil, err
		}
		if err := m.Ok.EUICCCancelSessionSignature.check("euiccCancelSessionSignature"); err != nil {
			return nil, err
		}
		return tlv(tagCancelOk, signed, m.Ok.EUICCCancelSessionSignature), nil
	case m.Error != nil && m.Ok == nil:
		return tlv(tagCancelError, intContents(int64(*m.Error))), nil
	}
	return nil, fmt.Errorf("%w: CancelSessionResponse needs exactly one of Ok and Error", ErrInvalid)
}

// Marshal returns the DER CancelSessionResponse (Raw if set).
func (m *CancelSessionResponse) Marshal() ([]byte, error) {
	if m.Raw != nil {
		if peekTop(m.Raw) == tagCancelSession {
			return m.Raw, nil
		}
		// Parsed from the ASN.1 binding, where it travels as A1: the
		// eUICC's contents under the ES10b tag.
		e, err := parseTop(m.Raw, peekTop(m.Raw), "CancelSessionResponse")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return tlv(tagCancelSession, e.value), nil
	}
	c, err := m.content()
	if err != nil {
		return nil, err
	}
	return tlv(tagCancelSession, c), nil
}
