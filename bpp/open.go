package bpp

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// MaxBPPSize bounds the BoundProfilePackage Open accepts.
const MaxBPPSize = MaxUPPSize + MaxUPPSize/64 + 64<<10

// Opened is what an eUICC obtains from a BoundProfilePackage.
type Opened struct {
	TransactionID []byte // from InitialiseSecureChannelRequest: the caller compares it with its session
	HostID        []byte // CRT host ID
	SMDPOtpk      []byte // the SM-DP+ one-time public key

	ConfigureISDP    *ConfigureISDP
	ConfigureISDPDER []byte // decrypted ConfigureISDPRequest (BF24) as received
	StoreMetadata    *StoreMetadata
	StoreMetadataDER []byte // StoreMetadataRequest (BF25) as received
	// PPKMode reports whether the package carried ReplaceSessionKeys
	// (secondSequenceOf87), i.e. the profile was protected under a PPK.
	PPKMode bool
	UPP     []byte // the decrypted profile package
}

// Open is the eUICC side of a download: it parses the BoundProfilePackage,
// verifies smdpSign with smdpPub over the InitialiseSecureChannelRequest
// TLVs exactly as received followed by 5F49 41 || the eUICC's own one-time
// public key, derives the session keys with otk (otSK.EUICC.ECKA) and eid,
// verifies every segment's MAC in order, decrypts, switches to the PPK keys
// carried by ReplaceSessionKeys (counter back to 1) when present, and
// returns ConfigureISDP, StoreMetadata and the UPP.
//
// Input is untrusted: every length is checked, nothing is read out of
// bounds, memory is proportional to len(bpp), and any change to any byte
// fails with an error that wraps one of ErrMalformed, ErrSignature,
// ErrKeyAgreement, ErrMAC, ErrPadding, ErrSegmentSize (segment failures as
// *SegmentError naming the sequence, index and tag) or ErrIncomplete (the
// UPP does not end with a complete end PE: trailing 86 segments dropped).
func Open(bpp []byte, otk *OneTimeKey, eid []byte, smdpPub *ecdsa.PublicKey) (*Opened, error) {
	if otk == nil || smdpPub == nil {
		return nil, fmt.Errorf("bpp: open: %w: nil one-time key or SM-DP+ public key", ErrInvalidParams)
	}
	if len(eid) != EIDSize {
		return nil, fmt.Errorf("bpp: open: %w: EID is %d bytes, want %d", ErrInvalidParams, len(eid), EIDSize)
	}
	if len(bpp) > MaxBPPSize {
		return nil, fmt.Errorf("bpp: open: %w: %d bytes exceeds the %d-byte limit", ErrMalformed, len(bpp), MaxBPPSize)
	}
	s := cryptobyte.String(bpp)
	top, err := expectTLV(&s, tagBPP, "BoundProfilePackage")
	if err != nil {
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	if !s.Empty() {
		return nil, fmt.Errorf("bpp: open: %w: %d bytes after BoundProfilePackage", ErrMalformed, len(s))
	}
	in := cryptobyte.String(top.Value)
	init, err := expectTLV(&in, tagInitSecure, "InitialiseSecureChannelRequest")
	if err != nil {
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	var seqs [4]tlv // A0, A1, A2 (optional), A3
	for i, tag := range [...]uint32{tagFirstSeq87, tagSeq88, tagSecondSeq87, tagSeq86} {
		if tag == tagSecondSeq87 {
			if t, ok := peekTag(in); !ok || t != tagSecondSeq87 {
				continue
			}
		}
		if seqs[i], err = expectTLV(&in, tag, sequenceName(tag)); err != nil {
			return nil, fmt.Errorf("bpp: open: %w", err)
		}
	}
	if !in.Empty() {
		return nil, fmt.Errorf("bpp: open: %w: unexpected element after sequenceOf86", ErrMalformed)
	}

	o := new(Opened)
	signed, sig, err := parseInitialiseSecureChannel(init.Value, o)
	if err != nil {
		return nil, fmt.Errorf("bpp: open: InitialiseSecureChannelRequest: %w", err)
	}
	var sbuf [256]byte
	msg := append(append(sbuf[:0], signed...), 0x5F, 0x49, PointSize)
	msg = append(msg, otk.pub[:]...)
	digest := sha256.Sum256(msg)
	if !VerifySignature(smdpPub, digest[:], sig) {
		return nil, fmt.Errorf("bpp: open: %w", ErrSignature)
	}

	z, err := otk.ECDH(o.SMDPOtpk)
	if err != nil {
		return nil, fmt.Errorf("bpp: open: smdpOtpk: %w", err)
	}
	keys, err := DeriveSessionKeys(z, o.HostID, eid)
	clear(z)
	if err != nil {
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	st := new(bsp)
	defer st.zero()
	st.init(&keys.Enc, &keys.MAC, &keys.InitialMCV)
	keys.Zero()

	// In the order an eUICC processes them: ConfigureISDP, StoreMetadata
	// (each decoded before going on), ReplaceSessionKeys, the profile.
	if o.ConfigureISDPDER, err = openSequence(st, seqs[0], tagSegCmd, true, nil); err != nil {
		return nil, err
	}
	if o.ConfigureISDP, err = ParseConfigureISDP(o.ConfigureISDPDER); err != nil {
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	if o.StoreMetadataDER, err = openSequence(st, seqs[1], tagSegMACOnly, false, nil); err != nil {
		return nil, err
	}
	if o.StoreMetadata, err = ParseStoreMetadata(o.StoreMetadataDER); err != nil {
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	if seqs[2].Tag == tagSecondSeq87 {
		rsk, err := openSequence(st, seqs[2], tagSegCmd, true, nil)
		if err != nil {
			return nil, err
		}
		ppk, err := parseReplaceSessionKeys(rsk)
		clear(rsk)
		if err != nil {
			return nil, fmt.Errorf("bpp: open: %w", err)
		}
		st.zero()
		st.init(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV)
		ppk.Zero()
		o.PPKMode = true
	}
	o.UPP, err = openSequence(st, seqs[3], tagSegProfile, true, make([]byte, 0, len(seqs[3].Value)))
	if err != nil {
		return nil, err
	}
	if err := checkUPPComplete(o.UPP); err != nil {
		clear(o.UPP)
		return nil, fmt.Errorf("bpp: open: %w", err)
	}
	return o, nil
}

// tagEndPE is the SAIP end ProfileElement, always the last one.
const tagEndPE = 0xAA

// checkUPPComplete checks that upp is a sequence of complete DER
// ProfileElements whose last one is the end PE.
func checkUPPComplete(upp []byte) error {
	s := cryptobyte.String(upp)
	var last uint32
	for n := 0; !s.Empty(); n++ {
		e, err := readTLV(&s)
		if err != nil {
			return fmt.Errorf("%w: ProfileElement %d: %w", ErrIncomplete, n, err)
		}
		last = e.Tag
	}
	if last != tagEndPE {
		return fmt.Errorf("%w: last ProfileElement has tag %X, not the end PE (AA)", ErrIncomplete, last)
	}
	return nil
}

// parseInitialiseSecureChannel decodes the BF23 content strictly and returns
// the signed part (every TLV before smdpSign, as received) and the signature.
func parseInitialiseSecureChannel(b []byte, o *Opened) (signed, sig []byte, err error) {
	s := cryptobyte.String(b)
	op, err := expectTLV(&s, tagRemoteOpID, "remoteOpId")
	if err != nil {
		return nil, nil, err
	}
	if len(op.Value) != 1 || op.Value[0] != remoteOpInstallBPP {
		return nil, nil, fmt.Errorf("%w: remoteOpId is not installBoundProfilePackage(1)", ErrMalformed)
	}
	tid, err := expectTLV(&s, tagTransactionID, "transactionId")
	if err != nil {
		return nil, nil, err
	}
	if len(tid.Value) < 1 || len(tid.Value) > MaxTxIDSize {
		return nil, nil, fmt.Errorf("%w: transactionId is %d bytes, want 1..%d", ErrMalformed, len(tid.Value), MaxTxIDSize)
	}
	crt, err := expectTLV(&s, tagCRT, "controlRefTemplate")
	if err != nil {
		return nil, nil, err
	}
	cs := cryptobyte.String(crt.Value)
	for _, f := range []struct {
		tag  uint32
		name string
		want byte
	}{{tagCRTKeyType, "keyType", KeyTypeAES}, {tagCRTKeyLen, "keyLen", KeyLengthAES128}} {
		e, err := expectTLV(&cs, f.tag, "controlRefTemplate."+f.name)
		if err != nil {
			return nil, nil, err
		}
		if len(e.Value) != 1 || e.Value[0] != f.want {
			return nil, nil, fmt.Errorf("%w: controlRefTemplate.%s is not %02X", ErrMalformed, f.name, f.want)
		}
	}
	host, err := expectTLV(&cs, tagCRTHostID, "controlRefTemplate.hostId")
	if err != nil {
		return nil, nil, err
	}
	if len(host.Value) < 1 || len(host.Value) > MaxHostIDSize {
		return nil, nil, fmt.Errorf("%w: hostId is %d bytes, want 1..%d", ErrMalformed, len(host.Value), MaxHostIDSize)
	}
	if !cs.Empty() {
		return nil, nil, fmt.Errorf("%w: controlRefTemplate: unexpected element after hostId", ErrMalformed)
	}
	pk, err := expectTLV(&s, tagSMDPOtpk, "smdpOtpk")
	if err != nil {
		return nil, nil, err
	}
	if len(pk.Value) != PointSize || pk.Value[0] != 4 {
		return nil, nil, fmt.Errorf("%w: smdpOtpk is not a %d-byte uncompressed point", ErrMalformed, PointSize)
	}
	signedLen := len(b) - len(s)
	sg, err := expectTLV(&s, tagSMDPSign, "smdpSign")
	if err != nil {
		return nil, nil, err
	}
	if len(sg.Value) != SignatureSize {
		return nil, nil, fmt.Errorf("%w: smdpSign is %d bytes, want %d", ErrMalformed, len(sg.Value), SignatureSize)
	}
	if !s.Empty() {
		return nil, nil, fmt.Errorf("%w: unexpected element after smdpSign", ErrMalformed)
	}
	o.TransactionID = append([]byte(nil), tid.Value...)
	o.HostID = append([]byte(nil), host.Value...)
	o.SMDPOtpk = append([]byte(nil), pk.Value...)
	return b[:signedLen], sg.Value, nil
}

// openSequence opens every segment of one BPP sequence in order with st and
// returns the concatenated payload (appended to dst).
func openSequence(st *bsp, seq tlv, segTag uint32, decrypt bool, dst []byte) ([]byte, error) {
	if dst == nil {
		dst = make([]byte, 0, len(seq.Value))
	}
	s := cryptobyte.String(seq.Value)
	if s.Empty() {
		return nil, &SegmentError{Sequence: seq.Tag, Index: 0, Tag: segTag, Err: fmt.Errorf("%w: empty sequence", ErrMalformed)}
	}
	for i := 0; !s.Empty(); i++ {
		e, err := readTLV(&s)
		if err != nil {
			return nil, &SegmentError{Sequence: seq.Tag, Index: i, Tag: segTag, Err: err}
		}
		if e.Tag != segTag {
			return nil, &SegmentError{Sequence: seq.Tag, Index: i, Tag: e.Tag, Err: fmt.Errorf("%w: tag %X, want %X", ErrMalformed, e.Tag, segTag)}
		}
		if dst, err = st.openSegment(dst, e, decrypt); err != nil {
			clear(dst[:cap(dst)])
			return nil, &SegmentError{Sequence: seq.Tag, Index: i, Tag: e.Tag, Err: err}
		}
	}
	return dst, nil
}
