package bpp

import (
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
)

// BindParams are the per-download inputs of Bind.
type BindParams struct {
	TransactionID []byte // 1..16 bytes (ES9+ transactionId)
	HostID        []byte // CRT host ID, 1..16 bytes
	EID           []byte // 16 raw bytes
	EUICCOtpk     []byte // otPK.EUICC.ECKA from EUICCSigned2: 65-byte uncompressed point

	// Metadata is encoded into StoreMetadataRequest unless MetadataDER is
	// set; MetadataDER (a complete BF25) is then sent as is, e.g. the exact
	// profileMetadata already given to the eUICC in authenticateClient.
	Metadata    *StoreMetadata
	MetadataDER []byte

	// DPOID, if set, is sent as ConfigureISDPRequest's dpProprietaryData
	// (B8 { 80 dpOid }); otherwise ConfigureISDPRequest is empty (BF24 00).
	DPOID asn1.ObjectIdentifier
}

func (p *BindParams) validate() error {
	if p == nil {
		return fmt.Errorf("%w: nil BindParams", ErrInvalidParams)
	}
	if len(p.TransactionID) < 1 || len(p.TransactionID) > MaxTxIDSize {
		return fmt.Errorf("%w: transactionId is %d bytes, want 1..%d", ErrInvalidParams, len(p.TransactionID), MaxTxIDSize)
	}
	if err := checkHostEID(p.HostID, p.EID); err != nil {
		return err
	}
	if len(p.EUICCOtpk) != PointSize || p.EUICCOtpk[0] != 4 {
		return fmt.Errorf("%w: euiccOtpk is not a %d-byte uncompressed point", ErrInvalidParams, PointSize)
	}
	if p.Metadata == nil && p.MetadataDER == nil {
		return fmt.Errorf("%w: no StoreMetadata", ErrInvalidParams)
	}
	return nil
}

// ConfigureISDP is the decoded ConfigureISDPRequest (BF24).
type ConfigureISDP struct {
	DPOID asn1.ObjectIdentifier // dpProprietaryData.dpOid, nil when absent
}

// maxDPProprietaryData is the largest dpProprietaryData element, tag and
// length included (SGP.22 ASN.1 comment on DpProprietaryData).
const maxDPProprietaryData = 128

// marshalConfigureISDP encodes ConfigureISDPRequest. The SGP.22 module has
// AUTOMATIC TAGS and DpProprietaryData's components carry no tag of their
// own, so dpOid is [0] IMPLICIT: B8 { 80 <OID contents> }, not 06.
// Independent decoders (an ASN.1 compiler over the module, lpac) refuse 06.
func marshalConfigureISDP(oid asn1.ObjectIdentifier) ([]byte, error) {
	if len(oid) == 0 {
		return []byte{0xBF, 0x24, 0x00}, nil
	}
	o, err := asn1.Marshal(oid)
	if err != nil {
		return nil, fmt.Errorf("%w: dpOid: %v", ErrInvalidParams, err)
	}
	var rv asn1.RawValue
	if _, err := asn1.Unmarshal(o, &rv); err != nil {
		return nil, fmt.Errorf("%w: dpOid: %v", ErrInvalidParams, err)
	}
	dpLen := tlvSize(tagDPOID, len(rv.Bytes))
	if n := tlvSize(tagDPPropData, dpLen); n > maxDPProprietaryData {
		return nil, fmt.Errorf("%w: dpProprietaryData would be %d bytes, the maximum is %d: use a shorter dpOid", ErrInvalidParams, n, maxDPProprietaryData)
	}
	b := appendHeader(nil, tagConfigureISDP, tlvSize(tagDPPropData, dpLen))
	b = appendHeader(b, tagDPPropData, dpLen)
	return appendTLV(b, tagDPOID, rv.Bytes), nil
}

// ParseConfigureISDP decodes a DER ConfigureISDPRequest (BF24). dpOid must
// carry its automatic tag [0] (80); the universal form B8 { 06 … } that bpp
// emitted before is refused, as other SGP.22 decoders refuse it. Data objects
// that the SM-DP+ may add after dpOid are checked for well-formedness and
// ignored.
func ParseConfigureISDP(der []byte) (*ConfigureISDP, error) {
	s := cryptoString(der)
	top, err := expectTLV(&s, tagConfigureISDP, "ConfigureISDPRequest")
	if err != nil {
		return nil, err
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: ConfigureISDPRequest: trailing data", ErrMalformed)
	}
	c := new(ConfigureISDP)
	in := cryptoString(top.Value)
	if in.Empty() {
		return c, nil
	}
	dp, err := expectTLV(&in, tagDPPropData, "ConfigureISDPRequest.dpProprietaryData")
	if err != nil {
		return nil, err
	}
	if !in.Empty() {
		return nil, fmt.Errorf("%w: ConfigureISDPRequest: unexpected element after dpProprietaryData", ErrMalformed)
	}
	if len(dp.Raw) > maxDPProprietaryData {
		return nil, fmt.Errorf("%w: dpProprietaryData is %d bytes, the maximum is %d", ErrMalformed, len(dp.Raw), maxDPProprietaryData)
	}
	ds := cryptoString(dp.Value)
	if t, ok := peekTag(ds); ok && t == tagOID {
		return nil, fmt.Errorf("%w: dpProprietaryData.dpOid has the universal tag 06; SGP.22 (AUTOMATIC TAGS) requires [0] IMPLICIT, tag 80", ErrMalformed)
	}
	o, err := expectTLV(&ds, tagDPOID, "dpProprietaryData.dpOid")
	if err != nil {
		return nil, err
	}
	for !ds.Empty() { // SM-DP+ specific data objects may follow dpOid
		if _, err := readTLV(&ds); err != nil {
			return nil, fmt.Errorf("dpProprietaryData: %w", err)
		}
	}
	full := appendTLV(make([]byte, 0, tlvSize(tagOID, len(o.Value))), tagOID, o.Value)
	if rest, err := asn1.Unmarshal(full, &c.DPOID); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: dpProprietaryData.dpOid is not an OBJECT IDENTIFIER", ErrMalformed)
	}
	return c, nil
}

// checkPPPSegments walks a stored sequenceOf86 content: only 86 TLVs of at
// most 1020 bytes, count as recorded (SegmentCount 0: not recorded, not checked).
func checkPPPSegments(ppp *PPP) error {
	if len(ppp.Segments) == 0 {
		return fmt.Errorf("%w: PPP has no segments", ErrInvalidParams)
	}
	s := cryptoString(ppp.Segments)
	n := 0
	for ; !s.Empty(); n++ {
		seg, err := readTLV(&s)
		if err != nil {
			return &SegmentError{Sequence: tagSeq86, Index: n, Tag: seg.Tag, Err: err}
		}
		if seg.Tag != tagSegProfile {
			return &SegmentError{Sequence: tagSeq86, Index: n, Tag: seg.Tag, Err: fmt.Errorf("%w: PPP element is not an 86 segment", ErrMalformed)}
		}
		if len(seg.Raw) > MaxSegmentSize {
			return &SegmentError{Sequence: tagSeq86, Index: n, Tag: seg.Tag, Err: fmt.Errorf("%w: %d bytes", ErrSegmentSize, len(seg.Raw))}
		}
	}
	if ppp.SegmentCount != 0 && n != ppp.SegmentCount {
		return fmt.Errorf("%w: PPP holds %d segments, SegmentCount says %d", ErrInvalidParams, n, ppp.SegmentCount)
	}
	return nil
}

// Bind builds the BoundProfilePackage (BF36) for one eUICC from a stored
// PPP: one ECKA-DH through ka, the KDF, smdpSign through signer, the
// ConfigureISDP (87), StoreMetadata (88) and ReplaceSessionKeys (87)
// segments under the session keys, and the PPP's 86 segments as stored.
// ppp.PPK must hold the clear PPK; the caller zeroes it afterwards. Bind
// zeroes Z, the session keys and its BSP state before returning.
func Bind(ctx context.Context, signer Signer, ka KeyAgreement, p *BindParams, ppp *PPP) ([]byte, error) {
	if ppp == nil {
		return nil, fmt.Errorf("%w: nil PPP", ErrInvalidParams)
	}
	if err := checkPPPSegments(ppp); err != nil {
		return nil, fmt.Errorf("bpp: bind: %w", err)
	}
	return bind(ctx, signer, ka, p, ppp, nil)
}

// BindUnprotected builds a BoundProfilePackage in session-key mode: no
// secondSequenceOf87, the UPP is cut into 86 segments that continue the
// session-key BSP instance. It costs the full profile-size AES/CMAC per
// download; the PPK path (Protect + Bind) is the product, this exists for
// completeness and interoperability tests.
func BindUnprotected(ctx context.Context, signer Signer, ka KeyAgreement, p *BindParams, upp []byte) ([]byte, error) {
	if len(upp) == 0 || len(upp) > MaxUPPSize {
		return nil, fmt.Errorf("%w: UPP of %d bytes", ErrInvalidParams, len(upp))
	}
	return bind(ctx, signer, ka, p, nil, upp)
}

func bind(ctx context.Context, signer Signer, ka KeyAgreement, p *BindParams, ppp *PPP, upp []byte) ([]byte, error) {
	if signer == nil || ka == nil {
		return nil, fmt.Errorf("%w: nil Signer or KeyAgreement", ErrInvalidParams)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("bpp: bind: %w", err)
	}
	cfg, err := marshalConfigureISDP(p.DPOID)
	if err != nil {
		return nil, fmt.Errorf("bpp: bind: %w", err)
	}
	md := p.MetadataDER
	if md == nil {
		if md, err = p.Metadata.Marshal(); err != nil {
			return nil, fmt.Errorf("bpp: bind: %w", err)
		}
	} else if _, err := ParseStoreMetadata(md); err != nil {
		return nil, fmt.Errorf("bpp: bind: MetadataDER: %w", err)
	}

	otpk, z, err := ka.EphemeralECDH(ctx, p.EUICCOtpk)
	if err != nil {
		clear(z)
		return nil, fmt.Errorf("bpp: bind: key agreement: %w", err)
	}
	if len(otpk) != PointSize || otpk[0] != 4 || len(z) != SharedSecretSize {
		clear(z)
		return nil, fmt.Errorf("bpp: bind: %w: KeyAgreement returned a %d-byte key and a %d-byte Z", ErrKeyAgreement, len(otpk), len(z))
	}
	keys, err := DeriveSessionKeys(z, p.HostID, p.EID)
	clear(z)
	if err != nil {
		return nil, fmt.Errorf("bpp: bind: %w", err)
	}
	defer keys.Zero()

	// Sizes, so that the package is written into one exact allocation.
	crtLen := 3 + 3 + tlvSize(tagCRTHostID, len(p.HostID))
	signedLen := 3 + tlvSize(tagTransactionID, len(p.TransactionID)) + tlvSize(tagCRT, crtLen) + tlvSize(tagSMDPOtpk, PointSize)
	initLen := signedLen + tlvSize(tagSMDPSign, SignatureSize)
	a0, _ := segmentsSize(len(cfg), true)
	a1, _ := segmentsSize(len(md), false)
	var a2, a3 int
	if ppp != nil {
		a2 = encryptedSegmentSize(rskSize)
		a3 = len(ppp.Segments)
	} else {
		a3, _ = segmentsSize(len(upp), true)
	}
	content := tlvSize(tagInitSecure, initLen) + tlvSize(tagFirstSeq87, a0) + tlvSize(tagSeq88, a1) + tlvSize(tagSeq86, a3)
	if ppp != nil {
		content += tlvSize(tagSecondSeq87, a2)
	}
	total := tlvSize(tagBPP, content)
	out := make([]byte, 0, total)

	out = appendHeader(out, tagBPP, content)
	out = appendHeader(out, tagInitSecure, initLen)
	signedStart := len(out)
	out = append(out, tagRemoteOpID, 1, remoteOpInstallBPP)
	out = appendTLV(out, tagTransactionID, p.TransactionID)
	out = appendHeader(out, tagCRT, crtLen)
	out = append(out, tagCRTKeyType, 1, KeyTypeAES, tagCRTKeyLen, 1, KeyLengthAES128)
	out = appendTLV(out, tagCRTHostID, p.HostID)
	out = appendTLV(out, tagSMDPOtpk, otpk)

	// smdpSign covers the TLVs above followed by the eUICC's one-time key TLV.
	var sbuf [256]byte
	signed := append(append(sbuf[:0], out[signedStart:]...), 0x5F, 0x49, PointSize)
	signed = append(signed, p.EUICCOtpk...)
	digest := sha256.Sum256(signed)
	sig, err := signer.SignDigest(ctx, digest[:])
	if err != nil {
		return nil, fmt.Errorf("bpp: bind: smdpSign: %w", err)
	}
	if len(sig) != SignatureSize {
		return nil, fmt.Errorf("bpp: bind: smdpSign: %w: signer returned %d bytes, want raw r||s of %d", ErrInvalidParams, len(sig), SignatureSize)
	}
	out = appendTLV(out, tagSMDPSign, sig)

	st := new(bsp)
	defer st.zero()
	st.init(&keys.Enc, &keys.MAC, &keys.InitialMCV)
	out = appendHeader(out, tagFirstSeq87, a0)
	out = st.appendSegments(out, tagSegCmd, cfg, true)
	out = appendHeader(out, tagSeq88, a1)
	out = st.appendSegments(out, tagSegMACOnly, md, false)
	if ppp != nil {
		var rbuf [rskSize]byte
		rsk := appendReplaceSessionKeys(rbuf[:0], &ppp.PPK)
		out = appendHeader(out, tagSecondSeq87, a2)
		out = st.appendEncrypted(out, tagSegCmd, rsk)
		clear(rbuf[:])
		out = appendHeader(out, tagSeq86, a3)
		out = append(out, ppp.Segments...)
	} else {
		out = appendHeader(out, tagSeq86, a3)
		out = st.appendSegments(out, tagSegProfile, upp, true)
	}
	if len(out) != total {
		return nil, fmt.Errorf("bpp: bind: internal error: wrote %d bytes, planned %d", len(out), total)
	}
	return out, nil
}

// rskSize is the size of ReplaceSessionKeysRequest: BF26 36 + 3 × (tag, 10, 16 bytes).
const rskSize = 3 + 3*18
