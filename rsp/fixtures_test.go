package rsp

import (
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Values with every optional component present, for the tag tables and the
// fuzz seeds. Certificates are the smallest SEQUENCE (30 00), so that the
// tag walk does not descend into X.509.

var (
	testTID       = TransactionID(mustHex("0123456789ABCDEF0123456789ABCDEF"))
	testCert      = []byte{0x30, 0x00}
	testSKINIST   = mustHex("F54172BDF98A95D65CBEB88A38A1C11D800A85C3")
	testSKIBRP    = mustHex("C0BC70BA36929D43B467FF57570530E57AB8FCD8")
	testOtpk      = append([]byte{0x04}, make([]byte, 64)...)
	testSig       = mustSig(make([]byte, SignatureSize))
	testChallenge = [ChallengeSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	testICCID     = mustHex("98001032547698103214")
	testDPOID     = asn1.ObjectIdentifier{2, 999, 10}
	testAddress   = "testsmdpplus1.example.com"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func mustSig(rs []byte) Signature {
	s, err := NewSignature(rs)
	if err != nil {
		panic(err)
	}
	return s
}

func fullEUICCInfo1() *EUICCInfo1 {
	return &EUICCInfo1{
		SVN:                    Version{2, 2, 0},
		CIPKIDsForVerification: [][]byte{testSKINIST, testSKIBRP},
		CIPKIDsForSigning:      [][]byte{testSKINIST, testSKIBRP},
	}
}

func fullEUICCInfo2() *EUICCInfo2 {
	ts, gp := Version{9, 2, 0}, Version{2, 3, 0}
	cat := int64(2)
	return &EUICCInfo2{
		ProfileVersion:         Version{2, 3, 1},
		SVN:                    Version{2, 2, 0},
		FirmwareVersion:        Version{1, 0, 0},
		ExtCardResource:        mustHex("810100 8204 00049C68 83022223"),
		UICCCapability:         1<<1 | 1<<2 | 1<<4 | 1<<19,
		TS102241Version:        &ts,
		GlobalPlatformVersion:  &gp,
		RSPCapability:          1<<0 | 1<<3,
		CIPKIDsForVerification: [][]byte{testSKINIST},
		CIPKIDsForSigning:      [][]byte{testSKINIST},
		EUICCCategory:          &cat,
		ForbiddenPPRs:          1 << 1,
		PPVersion:              Version{1, 0, 0},
		SASAccreditationNumber: "GI-BA-UP-0419",
	}
}

func fullCtxParams1() *CtxParams1 {
	mid := "ABCD-1234"
	return &CtxParams1{Common: &CtxParamsForCommonAuthentication{
		MatchingID: &mid,
		DeviceInfo: DeviceInfo{
			TAC:                [4]byte{0x35, 0x29, 0x06, 0x11},
			DeviceCapabilities: mustHex("8003 0F0000 8503 0F0000"),
			IMEI:               mustHex("3529061100000001"),
		},
	}}
}

func fullServerSigned1() *ServerSigned1 {
	return &ServerSigned1{TransactionID: testTID, EUICCChallenge: testChallenge, ServerAddress: testAddress, ServerChallenge: testChallenge}
}

func fullEUICCSigned1() *EUICCSigned1 {
	return &EUICCSigned1{
		TransactionID:   testTID,
		ServerAddress:   testAddress,
		ServerChallenge: testChallenge,
		EUICCInfo2:      *fullEUICCInfo2(),
		CtxParams1:      *fullCtxParams1(),
	}
}

func fullAuthenticateServerResponse() *AuthenticateServerResponse {
	return &AuthenticateServerResponse{Ok: &AuthenticateResponseOk{
		EUICCSigned1: *fullEUICCSigned1(), EUICCSignature1: testSig,
		EUICCCertificate: testCert, EUMCertificate: testCert,
	}}
}

func fullSmdpSigned2() *SmdpSigned2 {
	return &SmdpSigned2{TransactionID: testTID, CCRequired: true, BPPEUICCOtpk: testOtpk}
}

func fullEUICCSigned2() *EUICCSigned2 {
	return &EUICCSigned2{TransactionID: testTID, EUICCOtpk: testOtpk, HashCc: make([]byte, HashCcSize)}
}

func fullPrepareDownloadResponse() *PrepareDownloadResponse {
	return &PrepareDownloadResponse{Ok: &PrepareDownloadResponseOk{EUICCSigned2: *fullEUICCSigned2(), EUICCSignature2: testSig}}
}

func fullNotificationMetadata(op NamedBits) *NotificationMetadata {
	return &NotificationMetadata{SeqNumber: 300, Operation: op, NotificationAddress: testAddress, ICCID: testICCID}
}

func fullPIR(success bool) *ProfileInstallationResult {
	d := ProfileInstallationResultData{
		TransactionID:        testTID,
		NotificationMetadata: *fullNotificationMetadata(NotificationInstall),
		SMDPOID:              testDPOID,
	}
	if success {
		d.Success = &SuccessResult{AID: mustHex("A0000005591010FFFFFFFF8900001000"), SIMAResponse: mustHex("3007A00530038001 00")}
	} else {
		d.Error = &ErrorResult{BPPCommandID: 5, ErrorReason: 12, SIMAResponse: mustHex("9000")}
	}
	return &ProfileInstallationResult{Data: d, EUICCSignPIR: testSig}
}

func fullOtherNotification() *OtherSignedNotification {
	return &OtherSignedNotification{
		TBSOtherNotification:       *fullNotificationMetadata(NotificationEnable),
		EUICCNotificationSignature: testSig, EUICCCertificate: testCert, EUMCertificate: testCert,
	}
}

func fullCancelSessionResponse() *CancelSessionResponse {
	return &CancelSessionResponse{Ok: &CancelSessionResponseOk{
		EUICCCancelSessionSigned:    EUICCCancelSessionSigned{TransactionID: testTID, SMDPOID: testDPOID, Reason: CancelPostponed},
		EUICCCancelSessionSignature: testSig,
	}}
}

// testMetadata is a minimal StoreMetadataRequest (BF25 { 5A, 91, 92 }).
var testMetadata = mustHex("BF2514 5A0A98001032547698103214 9100 9204 54657374")

// testBPP is a framing-only BoundProfilePackage element.
var testBPP = mustHex("BF3602 A000")

func fullRequests() []Request {
	return []Request{
		&InitiateAuthenticationRequest{EUICCChallenge: testChallenge, SMDPAddress: testAddress, EUICCInfo1: *fullEUICCInfo1()},
		&AuthenticateClientRequest{TransactionID: testTID, AuthenticateServerResponse: *fullAuthenticateServerResponse()},
		&GetBoundProfilePackageRequest{TransactionID: testTID, PrepareDownloadResponse: *fullPrepareDownloadResponse()},
		&HandleNotification{PendingNotification: PendingNotification{PIR: fullPIR(true)}},
		&HandleNotification{PendingNotification: PendingNotification{Other: fullOtherNotification()}},
		&CancelSessionRequestEs9{TransactionID: testTID, CancelSessionResponse: *fullCancelSessionResponse()},
	}
}

func fullResponses() []Response {
	return []Response{
		&InitiateAuthenticationResponse{TransactionID: testTID, ServerSigned1: *fullServerSigned1(), ServerSignature1: testSig, EUICCCIPKIDToBeUsed: testSKINIST, ServerCertificate: testCert},
		&AuthenticateClientResponse{TransactionID: testTID, ProfileMetadata: testMetadata, SmdpSigned2: *fullSmdpSigned2(), SmdpSignature2: testSig, SmdpCertificate: testCert},
		&GetBoundProfilePackageResponse{TransactionID: testTID, BoundProfilePackage: testBPP},
		&CancelSessionResponseEs9{},
	}
}

func mustMarshal(t testing.TB, m interface{ Marshal() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatalf("%T.Marshal: %v", m, err)
	}
	return b
}

// tagPaths walks an encoding with encoding/asn1 (independent of this
// package's TLV code) and returns the path of every element ("BF38/A0/30")
// in order of first appearance. Constructed elements are descended into.
func tagPaths(t testing.TB, der []byte) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	var walk func(b []byte, prefix string)
	walk = func(b []byte, prefix string) {
		for len(b) > 0 {
			var rv asn1.RawValue
			rest, err := asn1.Unmarshal(b, &rv)
			if err != nil {
				t.Fatalf("at %q: %v", prefix, err)
			}
			p := prefix + identifierHex(rv)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
			if rv.IsCompound {
				walk(rv.Bytes, p+"/")
			}
			b = rest
		}
	}
	walk(der, "")
	return out
}

func identifierHex(rv asn1.RawValue) string {
	first := byte(rv.Class << 6)
	if rv.IsCompound {
		first |= 0x20
	}
	if rv.Tag < 31 {
		return fmt.Sprintf("%02X", first|byte(rv.Tag))
	}
	var tail []byte
	for n := rv.Tag; ; n >>= 7 {
		tail = append([]byte{byte(n & 0x7F)}, tail...)
		if n < 0x80 {
			break
		}
	}
	for i := range len(tail) - 1 {
		tail[i] |= 0x80
	}
	return strings.ToUpper(hex.EncodeToString(append([]byte{first | 0x1F}, tail...)))
}
