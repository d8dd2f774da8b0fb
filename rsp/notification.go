package rsp

import (
	"encoding/asn1"
	"fmt"
)

// NotificationMetadata tags.
const (
	tagNotificationMetadata = 0xBF2F // NotificationMetadata ::= [47] SEQUENCE
	tagNMSeqNumber          = 0x80   // seqNumber [0] INTEGER
	tagNMOperation          = 0x81   // profileManagementOperation [1] NotificationEvent
	// notificationAddress UTF8String (0C) and iccid Iccid (5A) keep their
	// tags: the SEQUENCE has tagged components.
)

// NotificationEvent bits (NotificationEvent BIT STRING).
const (
	NotificationInstall NamedBits = 1 << 0
	NotificationEnable  NamedBits = 1 << 1
	NotificationDisable NamedBits = 1 << 2
	NotificationDelete  NamedBits = 1 << 3
)

// NotificationMetadata:
//
//	NotificationMetadata ::= [47] SEQUENCE {               -- BF2F
//	  seqNumber [0] INTEGER,                               -- 80
//	  profileManagementOperation [1] NotificationEvent,    -- 81, one bit set
//	  notificationAddress UTF8String,                      -- 0C
//	  iccid Iccid OPTIONAL                                 -- 5A
//	}
type NotificationMetadata struct {
	SeqNumber           int64
	Operation           NamedBits // NotificationInstall, NotificationEnable …
	NotificationAddress string
	ICCID               []byte // 10 bytes in EF.ICCID coding, nil when absent
	Raw                 []byte // the BF2F element as received: what euiccNotificationSignature covers
}

func parseNotificationMetadata(top element) (*NotificationMetadata, error) {
	r := newReader(top.value, "NotificationMetadata")
	m := &NotificationMetadata{Raw: top.raw}
	var err error
	if m.SeqNumber, err = r.integer(tagNMSeqNumber, "seqNumber"); err != nil {
		return nil, err
	}
	if m.Operation, err = r.namedBits(tagNMOperation, "profileManagementOperation"); err != nil {
		return nil, err
	}
	if m.NotificationAddress, err = r.utf8(tagUTF8String, "notificationAddress"); err != nil {
		return nil, err
	}
	if e, ok, err := r.optional(tagICCID); err != nil {
		return nil, err
	} else if ok {
		if len(e.value) != ICCIDSize {
			return nil, sizeError("NotificationMetadata.iccid", len(e.value), ICCIDSize, ICCIDSize)
		}
		m.ICCID = e.value
	}
	return m, r.end()
}

// Marshal returns the DER NotificationMetadata (Raw if set).
func (m *NotificationMetadata) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if m.ICCID != nil {
		if err := checkSize("NotificationMetadata.iccid", len(m.ICCID), ICCIDSize, ICCIDSize); err != nil {
			return nil, err
		}
	}
	return tlv(tagNotificationMetadata,
		tlv(tagNMSeqNumber, intContents(m.SeqNumber)),
		tlv(tagNMOperation, m.Operation.contents()),
		tlv(tagUTF8String, []byte(m.NotificationAddress)),
		opt(m.ICCID != nil, tagICCID, m.ICCID),
	), nil
}

// ProfileInstallationResult tags.
const (
	tagPIR            = 0xBF37 // ProfileInstallationResult ::= [55] SEQUENCE
	tagPIRData        = 0xBF27 // ProfileInstallationResultData ::= [39] SEQUENCE
	tagPIRTID         = 0x80   // transactionId [0]
	tagPIRFinalResult = 0xA2   // finalResult [2] CHOICE (explicit: a CHOICE is never implicitly tagged)
	tagSuccessResult  = 0xA0   // successResult: CHOICE alternative [0]
	tagErrorResult    = 0xA1   // errorResult: CHOICE alternative [1]
	tagErrBPPCommand  = 0x80   // ErrorResult.bppCommandId → [0]
	tagErrReason      = 0x81   // ErrorResult.errorReason → [1]
	tagErrSIMA        = 0x82   // ErrorResult.simaResponse OPTIONAL → [2]
)

// ProfileInstallationResult is the eUICC's signed install notification
// (ES8+ LoadBoundProfilePackage's final answer, sent on ES9+ in
// HandleNotification):
//
//	ProfileInstallationResult ::= [55] SEQUENCE {                  -- BF37
//	  profileInstallationResultData [39] ProfileInstallationResultData, -- BF27
//	  euiccSignPIR EuiccSignPIR                                    -- 5F37
//	}
type ProfileInstallationResult struct {
	Data         ProfileInstallationResultData
	EUICCSignPIR Signature // over Data.Raw
	Raw          []byte
}

// ProfileInstallationResultData:
//
//	ProfileInstallationResultData ::= [39] SEQUENCE {   -- BF27
//	  transactionId [0] TransactionId,                  -- 80
//	  notificationMetadata [47] NotificationMetadata,   -- BF2F
//	  smdpOid OBJECT IDENTIFIER OPTIONAL,               -- 06 (the SEQUENCE has tagged components)
//	  finalResult [2] CHOICE {                          -- A2
//	    successResult SuccessResult,                    -- A0 { 4F aid, 04 simaResponse }
//	    errorResult ErrorResult                         -- A1 { 80 bppCommandId, 81 errorReason, 82 simaResponse OPTIONAL }
//	  }
//	}
//
// Exactly one of Success and Error is set.
type ProfileInstallationResultData struct {
	TransactionID        TransactionID
	NotificationMetadata NotificationMetadata
	SMDPOID              asn1.ObjectIdentifier // nil when absent
	Success              *SuccessResult
	Error                *ErrorResult
	Raw                  []byte // the BF27 element as received: what euiccSignPIR covers
}

// SuccessResult:
//
//	SuccessResult ::= SEQUENCE {
//	  aid [APPLICATION 15] OCTET STRING (SIZE (5..16)),  -- 4F: the ISD-P
//	  simaResponse OCTET STRING                          -- 04 (SAIP EUICCResponse records)
//	}
//
// simaResponse is kept opaque: some clients send a bare 9000 and a server
// must not require the SAIP structure (es2-es10-codes.md §5.5).
type SuccessResult struct {
	AID          []byte
	SIMAResponse []byte
}

// ErrorResult:
//
//	ErrorResult ::= SEQUENCE {
//	  bppCommandId BppCommandId,               -- 80
//	  errorReason ErrorReason,                 -- 81
//	  simaResponse OCTET STRING OPTIONAL       -- 82
//	}
type ErrorResult struct {
	BPPCommandID int64 // initialiseSecureChannel(0) … loadProfileElements(5)
	ErrorReason  int64 // incorrectInputValues(1) … installFailedDueToUnknownError(127)
	SIMAResponse []byte
}

// ParseProfileInstallationResult decodes a DER ProfileInstallationResult (BF37).
func ParseProfileInstallationResult(der []byte) (*ProfileInstallationResult, error) {
	top, err := parseTop(der, tagPIR, "ProfileInstallationResult")
	if err != nil {
		return nil, err
	}
	return parsePIR(top)
}

func parsePIR(top element) (*ProfileInstallationResult, error) {
	r := newReader(top.value, "ProfileInstallationResult")
	m := &ProfileInstallationResult{Raw: top.raw}
	e, err := r.expect(tagPIRData, "profileInstallationResultData")
	if err != nil {
		return nil, err
	}
	d, err := parsePIRData(e)
	if err != nil {
		return nil, err
	}
	m.Data = *d
	if m.EUICCSignPIR, err = r.signature("euiccSignPIR"); err != nil {
		return nil, err
	}
	return m, r.end()
}

func parsePIRData(top element) (*ProfileInstallationResultData, error) {
	r := newReader(top.value, "ProfileInstallationResultData")
	d := &ProfileInstallationResultData{Raw: top.raw}
	var err error
	if d.TransactionID, err = r.transactionID(tagPIRTID); err != nil {
		return nil, err
	}
	e, err := r.expect(tagNotificationMetadata, "notificationMetadata")
	if err != nil {
		return nil, err
	}
	nm, err := parseNotificationMetadata(e)
	if err != nil {
		return nil, err
	}
	d.NotificationMetadata = *nm
	if e, ok, err := r.optional(tagOID); err != nil {
		return nil, err
	} else if ok {
		if d.SMDPOID, err = oidValue(e.value, "ProfileInstallationResultData.smdpOid"); err != nil {
			return nil, err
		}
	}
	fr, err := r.expect(tagPIRFinalResult, "finalResult")
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	fr2 := newReader(fr.value, "finalResult")
	alt, err := fr2.next()
	if err != nil {
		return nil, err
	}
	if !fr2.empty() {
		return nil, fmt.Errorf("%w: finalResult: more than one CHOICE alternative", ErrMalformed)
	}
	switch alt.tag {
	case tagSuccessResult:
		r := newReader(alt.value, "SuccessResult")
		aid, err := r.octets(tagAID, "aid", 5, 16)
		if err != nil {
			return nil, err
		}
		sima, err := r.expect(tagOctetString, "simaResponse")
		if err != nil {
			return nil, err
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		d.Success = &SuccessResult{AID: aid, SIMAResponse: sima.value}
	case tagErrorResult:
		r := newReader(alt.value, "ErrorResult")
		er := new(ErrorResult)
		if er.BPPCommandID, err = r.integer(tagErrBPPCommand, "bppCommandId"); err != nil {
			return nil, err
		}
		if er.ErrorReason, err = r.integer(tagErrReason, "errorReason"); err != nil {
			return nil, err
		}
		if e, ok, err := r.optional(tagErrSIMA); err != nil {
			return nil, err
		} else if ok {
			er.SIMAResponse = e.value
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		d.Error = er
	default:
		return nil, fmt.Errorf("%w: finalResult: unknown CHOICE alternative %X", ErrMalformed, alt.tag)
	}
	return d, nil
}

// Marshal returns the DER ProfileInstallationResultData (Raw if set).
func (d *ProfileInstallationResultData) Marshal() ([]byte, error) {
	if d.Raw != nil {
		return d.Raw, nil
	}
	if err := d.TransactionID.check("ProfileInstallationResultData.transactionId"); err != nil {
		return nil, err
	}
	nm, err := d.NotificationMetadata.Marshal()
	if err != nil {
		return nil, err
	}
	var oid []byte
	if d.SMDPOID != nil {
		c, err := oidContents(d.SMDPOID, "ProfileInstallationResultData.smdpOid")
		if err != nil {
			return nil, err
		}
		oid = tlv(tagOID, c)
	}
	var result []byte
	switch {
	case d.Success != nil && d.Error == nil:
		if err := checkSize("SuccessResult.aid", len(d.Success.AID), 5, 16); err != nil {
			return nil, err
		}
		result = tlv(tagSuccessResult, tlv(tagAID, d.Success.AID), tlv(tagOctetString, d.Success.SIMAResponse))
	case d.Error != nil && d.Success == nil:
		result = tlv(tagErrorResult,
			tlv(tagErrBPPCommand, intContents(d.Error.BPPCommandID)),
			tlv(tagErrReason, intContents(d.Error.ErrorReason)),
			opt(d.Error.SIMAResponse != nil, tagErrSIMA, d.Error.SIMAResponse))
	default:
		return nil, fmt.Errorf("%w: ProfileInstallationResultData needs exactly one of Success and Error", ErrInvalid)
	}
	return tlv(tagPIRData,
		tlv(tagPIRTID, d.TransactionID),
		nm, oid,
		tlv(tagPIRFinalResult, result),
	), nil
}

// Marshal returns the DER ProfileInstallationResult (Raw if set).
func (m *ProfileInstallationResult) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	d, err := m.Data.Marshal()
	if err != nil {
		return nil, err
	}
	if err := m.EUICCSignPIR.check("euiccSignPIR"); err != nil {
		return nil, err
	}
	return tlv(tagPIR, d, m.EUICCSignPIR), nil
}

// OtherSignedNotification is a signed enable/disable/delete notification:
//
//	OtherSignedNotification ::= SEQUENCE {                        -- 30
//	  tbsOtherNotification NotificationMetadata,                  -- BF2F
//	  euiccNotificationSignature [APPLICATION 55] OCTET STRING,   -- 5F37, over the BF2F element
//	  euiccCertificate Certificate,                               -- 30
//	  eumCertificate Certificate                                  -- 30
//	}
type OtherSignedNotification struct {
	TBSOtherNotification       NotificationMetadata
	EUICCNotificationSignature Signature // over TBSOtherNotification.Raw
	EUICCCertificate           []byte
	EUMCertificate             []byte
	Raw                        []byte
}

func parseOtherSignedNotification(top element) (*OtherSignedNotification, error) {
	r := newReader(top.value, "OtherSignedNotification")
	m := &OtherSignedNotification{Raw: top.raw}
	e, err := r.expect(tagNotificationMetadata, "tbsOtherNotification")
	if err != nil {
		return nil, err
	}
	nm, err := parseNotificationMetadata(e)
	if err != nil {
		return nil, err
	}
	m.TBSOtherNotification = *nm
	if m.EUICCNotificationSignature, err = r.signature("euiccNotificationSignature"); err != nil {
		return nil, err
	}
	if m.EUICCCertificate, err = r.certificate("euiccCertificate"); err != nil {
		return nil, err
	}
	if m.EUMCertificate, err = r.certificate("eumCertificate"); err != nil {
		return nil, err
	}
	return m, r.end()
}

// Marshal returns the DER OtherSignedNotification (Raw if set).
func (m *OtherSignedNotification) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	tbs, err := m.TBSOtherNotification.Marshal()
	if err != nil {
		return nil, err
	}
	if err := m.EUICCNotificationSignature.check("euiccNotificationSignature"); err != nil {
		return nil, err
	}
	if err := checkElement(m.EUICCCertificate, tagSequence, "euiccCertificate"); err != nil {
		return nil, err
	}
	if err := checkElement(m.EUMCertificate, tagSequence, "eumCertificate"); err != nil {
		return nil, err
	}
	return tlv(tagSequence, tbs, m.EUICCNotificationSignature, m.EUICCCertificate, m.EUMCertificate), nil
}

// PendingNotification is what HandleNotification carries:
//
//	PendingNotification ::= CHOICE {
//	  profileInstallationResult [55] ProfileInstallationResult,  -- BF37
//	  otherSignedNotification OtherSignedNotification            -- 30
//	}
//
// Exactly one of PIR and Other is set.
type PendingNotification struct {
	PIR   *ProfileInstallationResult
	Other *OtherSignedNotification
}

// ParsePendingNotification decodes a DER PendingNotification (BF37 or 30).
func ParsePendingNotification(der []byte) (*PendingNotification, error) {
	top, err := parseTop(der, peekTop(der), "PendingNotification")
	if err != nil {
		return nil, err
	}
	return parsePendingNotification(top)
}

// peekTop returns the tag of the first element of b (0 if unreadable, which
// parseTop then reports).
func peekTop(b []byte) uint32 {
	return newReader(b, "").peek()
}

func parsePendingNotification(e element) (*PendingNotification, error) {
	switch e.tag {
	case tagPIR:
		pir, err := parsePIR(e)
		if err != nil {
			return nil, err
		}
		return &PendingNotification{PIR: pir}, nil
	case tagSequence:
		o, err := parseOtherSignedNotification(e)
		if err != nil {
			return nil, err
		}
		return &PendingNotification{Other: o}, nil
	}
	return nil, fmt.Errorf("%w: PendingNotification: tag %X is neither BF37 nor 30", ErrMalformed, e.tag)
}

// Marshal returns the DER PendingNotification.
func (m *PendingNotification) Marshal() ([]byte, error) {
	switch {
	case m.PIR != nil && m.Other == nil:
		return m.PIR.Marshal()
	case m.Other != nil && m.PIR == nil:
		return m.Other.Marshal()
	}
	return nil, fmt.Errorf("%w: PendingNotification needs exactly one of PIR and Other", ErrInvalid)
}
