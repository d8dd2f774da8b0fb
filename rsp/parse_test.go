package rsp

import (
	"bytes"
	"errors"
	"testing"
)

// TestParseRejects: each constraint of the module, broken once, is an
// ErrMalformed and never a partial value.
func TestParseRejects(t *testing.T) {
	ss1 := func(tid, chal, addr, schal string) []byte {
		return tlv(tagSequence, mustHex(tid), mustHex(chal), mustHex(addr), mustHex(schal))
	}
	nm := tlv(tagNotificationMetadata, mustHex("800101 81020780 0C0161"))
	chal := "8110" + "00112233445566778899AABBCCDDEEFF"
	schal := "8410" + "00112233445566778899AABBCCDDEEFF"
	for _, c := range []struct {
		name  string
		der   []byte
		parse func([]byte) error
	}{
		{"ServerSigned1 with a 17-byte transactionId", ss1("8011"+"00112233445566778899AABBCCDDEEFF00", chal, "830161", schal), parseServerSigned1Err},
		{"ServerSigned1 with an empty transactionId", ss1("8000", chal, "830161", schal), parseServerSigned1Err},
		{"ServerSigned1 with a 15-byte challenge", ss1("8001 01", "810F"+"112233445566778899AABBCCDDEEFF", "830161", schal), parseServerSigned1Err},
		{"ServerSigned1 with invalid UTF-8", ss1("800101", chal, "8301FF", schal), parseServerSigned1Err},
		{"ServerSigned1 with components swapped", ss1("800101", "830161", chal, schal), parseServerSigned1Err},
		{"ServerSigned1 truncated", ss1("800101", chal, "830161", schal)[:20], parseServerSigned1Err},
		{"ServerSigned1 with trailing bytes", append(ss1("800101", chal, "830161", schal), 0), parseServerSigned1Err},
		{"ServerSigned1 with a non-minimal length", append([]byte{0x30, 0x81, 0x2A}, ss1("800101", chal, "830161", schal)[2:]...), parseServerSigned1Err},
		{"ServerSigned1 with an indefinite length", append(append([]byte{0x30, 0x80}, ss1("800101", chal, "830161", schal)[2:]...), 0, 0), parseServerSigned1Err},
		{"SmdpSigned2 with a 2-byte BOOLEAN", mustHex("3007 800101 0102FFFF"), parseSmdpSigned2Err},
		{"SmdpSigned2 without ccRequiredFlag", mustHex("3003 800101"), parseSmdpSigned2Err},
		{"signature of 63 bytes", tlv(tagPIR, mustMarshal(t, &fullPIR(true).Data), tlv(tagSignature, make([]byte, 63))), parsePIRErr},
		{"PIR with a 4-byte ISD-P AID", pirWith(nm, tlv(tagSuccessResult, mustHex("4F04 01020304 0400"))), parsePIRErr},
		{"PIR with both results", pirWith(nm, tlv(tagSuccessResult, mustHex("4F05 0102030405 0400")), tlv(tagErrorResult, mustHex("800105 810101"))), parsePIRErr},
		{"PIR with a 9-byte ICCID", pirWith(tlv(tagNotificationMetadata, mustHex("800101 81020780 0C0161 5A09 980010325476981032")), tlv(tagSuccessResult, mustHex("4F05 0102030405 0400"))), parsePIRErr},
		{"PIR with an empty smdpOid", tlv(tagPIR, tlv(tagPIRData, mustHex("800101"), nm, mustHex("0600"), tlv(tagPIRFinalResult, tlv(tagErrorResult, mustHex("800105 810101")))), testSig), parsePIRErr},
		{"EUICCSigned2 with a compressed key", tlv(tagPrepareDownload, tlv(tagDownloadOk, tlv(tagSequence, mustHex("800101"), tlv(tagOtpk, append([]byte{2}, make([]byte, 32)...))), testSig)), parsePDRErr},
		{"PrepareDownloadResponse with a 31-byte hashCc", func() []byte {
			s2 := fullEUICCSigned2()
			s2.HashCc = nil
			b := mustMarshal(t, s2)
			b = tlv(tagSequence, b[2:], tlv(tagOctetString, make([]byte, 31)))
			return tlv(tagPrepareDownload, tlv(tagDownloadOk, b, testSig))
		}(), parsePDRErr},
		{"PrepareDownloadResponse with two alternatives", tlv(tagPrepareDownload, mustHex("A1 06 800101 020105"), mustHex("A1 06 800101 020105")), parsePDRErr},
		{"PrepareDownloadResponse with an unknown alternative", tlv(tagPrepareDownload, mustHex("A2 00")), parsePDRErr},
		{"AuthenticateServerResponse error with an empty INTEGER", tlv(tagAuthenticateServer, mustHex("A1 05 800101 0200")), parseASRErr},
		{"AuthenticateServerResponse error with a 9-byte INTEGER", tlv(tagAuthenticateServer, mustHex("A1 0E 800101 0209 010000000000000000")), parseASRErr},
		{"EUICCInfo2 missing svn", removeElement(t, mustMarshal(t, fullEUICCInfo2()), mustHex("8203020200")), parseInfo2Err},
		{"EUICCInfo2 with svn after firmware version", swapInfo2(t), parseInfo2Err},
		{"EUICCInfo2 with 8 unused bits", bytes.Replace(mustMarshal(t, fullEUICCInfo2()), mustHex("880204 90"), mustHex("880208 90"), 1), parseInfo2Err},
		{"EUICCInfo1 with a PKID not an OCTET STRING", mustHex("BF20 0D 820302 0200 A904 0C020102 AA00"), parseInfo1Err},
		{"CancelSessionResponse with an OID of zero length", tlv(tagCancelSession, tlv(tagCancelOk, mustHex("3008 800101 8100 820101"), testSig)), parseCSRErr},
		{"PendingNotification of another tag", mustHex("BF3602A000"), parsePNErr},
		{"empty input", nil, parsePNErr},
		{"a tag of four octets", mustHex("BF818180 00"), parsePNErr},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.parse(c.der)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed (input %x)", err, c.der)
			}
			t.Log(err)
		})
	}
	// Controls: the builders above give valid messages when nothing is broken.
	for _, b := range [][]byte{
		pirWith(nm, tlv(tagSuccessResult, mustHex("4F05 0102030405 0400"))),
		pirWith(nm, tlv(tagErrorResult, mustHex("800105 810101"))),
		ss1("800101", chal, "830161", schal),
	} {
		if err := parsePNErr(b); err != nil && parseServerSigned1Err(b) != nil {
			t.Errorf("control %x: %v", b, err)
		}
	}
}

func parseServerSigned1Err(b []byte) error { _, err := ParseServerSigned1(b); return err }
func parseSmdpSigned2Err(b []byte) error   { _, err := ParseSmdpSigned2(b); return err }
func parsePIRErr(b []byte) error           { _, err := ParseProfileInstallationResult(b); return err }
func parsePDRErr(b []byte) error           { _, err := ParsePrepareDownloadResponse(b); return err }
func parseASRErr(b []byte) error           { _, err := ParseAuthenticateServerResponse(b); return err }
func parseInfo1Err(b []byte) error         { _, err := ParseEUICCInfo1(b); return err }
func parseInfo2Err(b []byte) error         { _, err := ParseEUICCInfo2(b); return err }
func parseCSRErr(b []byte) error           { _, err := ParseCancelSessionResponse(b); return err }
func parsePNErr(b []byte) error            { _, err := ParsePendingNotification(b); return err }

// pirWith returns a ProfileInstallationResult with the given metadata and
// finalResult alternatives, every other component valid.
func pirWith(nm []byte, results ...[]byte) []byte {
	return tlv(tagPIR, tlv(tagPIRData, mustHex("800101"), nm, tlv(tagPIRFinalResult, results...)), testSig)
}

func removeElement(t *testing.T, der, el []byte) []byte {
	t.Helper()
	e, err := parseTop(der, peekTop(der), "test")
	if err != nil {
		t.Fatal(err)
	}
	v := bytes.Replace(e.value, el, nil, 1)
	if len(v) == len(e.value) {
		t.Fatalf("%x not in %x", el, der)
	}
	return tlv(e.tag, v)
}

func swapInfo2(t *testing.T) []byte {
	t.Helper()
	der := mustMarshal(t, fullEUICCInfo2())
	e, _ := parseTop(der, tagEUICCInfo2, "test")
	v := bytes.Replace(e.value, mustHex("8203020200 8303010000"), mustHex("8303010000 8203020200"), 1)
	if bytes.Equal(v, e.value) {
		t.Fatal("svn/firmware not found")
	}
	return tlv(tagEUICCInfo2, v)
}

// TestParseAcceptsLaterVersions: components a later SGP.22 version appends
// (EXTENSIBILITY IMPLIED) are accepted, ignored, and kept in Raw; a CtxParams1
// alternative other than ctxParamsForCommonAuthentication decodes with
// Common nil (the server answers 1.3.1/2.2, not "malformed").
func TestParseAcceptsLaterVersions(t *testing.T) {
	info1 := mustMarshal(t, fullEUICCInfo1())
	e, _ := parseTop(info1, tagEUICCInfo1, "test")
	v3 := tlv(tagEUICCInfo1, e.value, mustHex("B100"), mustHex("930103")) // v3: euiccCiPKIdListForSigningV3 [17], highestSvn [19]
	got, err := ParseEUICCInfo1(v3)
	if err != nil {
		t.Fatal(err)
	}
	if got.SVN != (Version{2, 2, 0}) || len(got.CIPKIDsForSigning) != 2 || !bytes.Equal(mustMarshal(t, got), v3) {
		t.Errorf("v3 EUICCInfo1 decoded as %+v", got)
	}

	s1 := mustMarshal(t, fullServerSigned1())
	e, _ = parseTop(s1, tagSequence, "test")
	withCtx := tlv(tagSequence, e.value, mustHex("A500 8600")) // v3 sessionContext [5], serverRspCapability [6]
	if m, err := ParseServerSigned1(withCtx); err != nil || m.ServerAddress != testAddress || !bytes.Equal(m.Raw, withCtx) {
		t.Errorf("v3 ServerSigned1: %+v, %v", m, err)
	}

	// EUICCInfo2 with certificationDataObject and a v2.2 treProperties.
	info2 := mustMarshal(t, fullEUICCInfo2())
	e, _ = parseTop(info2, tagEUICCInfo2, "test")
	extended := tlv(tagEUICCInfo2, e.value, mustHex("AC06 8001 61 8101 62"), mustHex("8D020780"))
	if m, err := ParseEUICCInfo2(extended); err != nil || m.SASAccreditationNumber != "GI-BA-UP-0419" || m.ForbiddenPPRs != 1<<1 {
		t.Errorf("extended EUICCInfo2: %+v, %v", m, err)
	} else if n, ok := m.FreeNonVolatileMemory(); !ok || n != 0x00049C68 {
		t.Errorf("free NVM = %d, %v", n, ok)
	}

	es1 := fullEUICCSigned1()
	es1.CtxParams1 = CtxParams1{Raw: mustHex("A1 03 800101")} // another CHOICE alternative
	asr := &AuthenticateServerResponse{Ok: &AuthenticateResponseOk{EUICCSigned1: *es1, EUICCSignature1: testSig, EUICCCertificate: testCert, EUMCertificate: testCert}}
	m, err := ParseAuthenticateServerResponse(mustMarshal(t, asr))
	if err != nil {
		t.Fatal(err)
	}
	if ctx := m.Ok.EUICCSigned1.CtxParams1; ctx.Common != nil || !bytes.Equal(ctx.Raw, mustHex("A1 03 800101")) {
		t.Errorf("ctxParams1 = %+v", ctx)
	}
	// Present-but-empty matchingId is kept apart from an absent one.
	es1 = fullEUICCSigned1()
	empty := ""
	es1.CtxParams1.Common.MatchingID = &empty
	asr.Ok.EUICCSigned1 = *es1
	m, err = ParseAuthenticateServerResponse(mustMarshal(t, asr))
	if err != nil || m.Ok.EUICCSigned1.CtxParams1.Common.MatchingID == nil || *m.Ok.EUICCSigned1.CtxParams1.Common.MatchingID != "" {
		t.Errorf("empty matchingId: %+v, %v", m, err)
	}
}
