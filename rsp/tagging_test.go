package rsp

import (
	"slices"
	"testing"
)

// The expected tags below are written from the SGP.22 ASN.1 module
// (RSPDefinitions, AUTOMATIC TAGS; v2.5 layout of AuthenticateClientOk),
// one comment per rule applied, not from this package's encoder:
//   - a SEQUENCE with no tagged component: components [0], [1] … IMPLICIT;
//   - a SEQUENCE with some tagged component: untagged ones keep universal tags;
//   - CHOICE alternatives likewise; a tagged CHOICE is tagged explicitly.
// Paths list each element's tags from the outermost, in first-seen order.

var euiccInfo2Tags = []string{
	"BF22",       // euiccInfo2 [34]
	"BF22/81",    // profileVersion [1]
	"BF22/82",    // svn [2]
	"BF22/83",    // euiccFirmwareVer [3]
	"BF22/84",    // extCardResource [4]
	"BF22/85",    // uiccCapability [5]
	"BF22/86",    // ts102241Version [6]
	"BF22/87",    // globalplatformVersion [7]
	"BF22/88",    // rspCapability [8]
	"BF22/A9",    // euiccCiPKIdListForVerification [9] SEQUENCE OF
	"BF22/A9/04", // SubjectKeyIdentifier: OCTET STRING
	"BF22/AA",    // euiccCiPKIdListForSigning [10]
	"BF22/AA/04",
	"BF22/8B", // euiccCategory [11]
	"BF22/99", // forbiddenProfilePolicyRules [25]
	"BF22/04", // ppVersion: untagged in a tagged SEQUENCE
	"BF22/0C", // sasAcreditationNumber: UTF8String
}

// prefixed returns paths with prefix+"/" in front.
func prefixed(prefix string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = prefix + "/" + p
	}
	return out
}

func ctxParams1Tags() []string {
	return []string{
		"A0",       // ctxParamsForCommonAuthentication: CHOICE alternative [0]
		"A0/80",    // matchingId → [0] (no tagged component)
		"A0/A1",    // deviceInfo → [1]
		"A0/A1/80", // tac → [0]
		"A0/A1/A1", // deviceCapabilities → [1]
		"A0/A1/A1/80",
		"A0/A1/A1/85",
		"A0/A1/82", // imei → [2]
	}
}

func euiccSigned1Tags() []string {
	t := []string{
		"30",    // EuiccSigned1 SEQUENCE
		"30/80", // transactionId [0]
		"30/83", // serverAddress [3]
		"30/84", // serverChallenge [4]
	}
	t = append(t, prefixed("30", euiccInfo2Tags)...)
	return append(t, prefixed("30", ctxParams1Tags())...) // ctxParams1: untagged CHOICE
}

func notificationMetadataTags(iccid bool) []string {
	t := []string{
		"BF2F",    // NotificationMetadata [47]
		"BF2F/80", // seqNumber [0]
		"BF2F/81", // profileManagementOperation [1]
		"BF2F/0C", // notificationAddress: UTF8String, untagged in a tagged SEQUENCE
	}
	if iccid {
		t = append(t, "BF2F/5A") // iccid Iccid [APPLICATION 26]
	}
	return t
}

func pirTags(success bool) []string {
	t := []string{
		"BF37",      // ProfileInstallationResult [55]
		"BF37/BF27", // profileInstallationResultData [39]
		"BF37/BF27/80",
	}
	t = append(t, prefixed("BF37/BF27", notificationMetadataTags(true))...)
	t = append(t,
		"BF37/BF27/06", // smdpOid: OBJECT IDENTIFIER, untagged in a tagged SEQUENCE
		"BF37/BF27/A2", // finalResult [2] CHOICE, explicit
	)
	if success {
		t = append(t,
			"BF37/BF27/A2/A0",    // successResult: alternative [0]
			"BF37/BF27/A2/A0/4F", // aid [APPLICATION 15]
			"BF37/BF27/A2/A0/04", // simaResponse: OCTET STRING (aid is tagged)
		)
	} else {
		t = append(t,
			"BF37/BF27/A2/A1",    // errorResult: alternative [1]
			"BF37/BF27/A2/A1/80", // bppCommandId → [0] (no tagged component)
			"BF37/BF27/A2/A1/81", // errorReason → [1]
			"BF37/BF27/A2/A1/82", // simaResponse → [2]
		)
	}
	return append(t, "BF37/5F37") // euiccSignPIR [APPLICATION 55]
}

func otherNotificationTags() []string {
	t := []string{"30"} // OtherSignedNotification SEQUENCE
	t = append(t, prefixed("30", notificationMetadataTags(true))...)
	return append(t,
		"30/5F37", // euiccNotificationSignature [APPLICATION 55]
		"30/30",   // euiccCertificate, eumCertificate: Certificate
	)
}

func cancelSessionResponseTags(outer string) []string {
	return []string{
		outer,
		outer + "/A0",       // cancelSessionResponseOk: alternative [0]
		outer + "/A0/30",    // euiccCancelSessionSigned SEQUENCE
		outer + "/A0/30/80", // transactionId → [0] (no tagged component)
		outer + "/A0/30/81", // smdpOid → [1]
		outer + "/A0/30/82", // reason → [2]
		outer + "/A0/5F37",  // euiccCancelSessionSignature
	}
}

func TestTagging(t *testing.T) {
	authOk := append([]string{
		"BF38",    // AuthenticateServerResponse [56] CHOICE
		"BF38/A0", // authenticateResponseOk: alternative [0]
	}, prefixed("BF38/A0", euiccSigned1Tags())...)
	authOk = append(authOk, "BF38/A0/5F37") // euiccSignature1; the certificates are 30 like euiccSigned1

	mid := "x"
	for _, c := range []struct {
		name string
		m    interface{ Marshal() ([]byte, error) }
		want []string
	}{
		{"EUICCInfo1", fullEUICCInfo1(), []string{
			"BF20",    // EUICCInfo1 [32]
			"BF20/82", // svn [2]
			"BF20/A9", // euiccCiPKIdListForVerification [9]
			"BF20/A9/04",
			"BF20/AA", // euiccCiPKIdListForSigning [10]
			"BF20/AA/04",
		}},
		{"EUICCInfo2", fullEUICCInfo2(), euiccInfo2Tags},
		{"ServerSigned1", fullServerSigned1(), []string{
			"30", "30/80", // transactionId [0]
			"30/81", // euiccChallenge [1]
			"30/83", // serverAddress [3]
			"30/84", // serverChallenge [4]
		}},
		{"CtxParams1", fullCtxParams1(), ctxParams1Tags()},
		{"CtxParams1 without matchingId and imei", &CtxParams1{Common: &CtxParamsForCommonAuthentication{DeviceInfo: DeviceInfo{}}},
			[]string{"A0", "A0/A1", "A0/A1/80", "A0/A1/A1"}},
		{"CtxParams1 with empty matchingId", &CtxParams1{Common: &CtxParamsForCommonAuthentication{MatchingID: new(string)}},
			[]string{"A0", "A0/80", "A0/A1", "A0/A1/80", "A0/A1/A1"}},
		{"EUICCSigned1", fullEUICCSigned1(), euiccSigned1Tags()},
		{"AuthenticateServerResponse ok", fullAuthenticateServerResponse(), authOk},
		{"AuthenticateServerResponse error", &AuthenticateServerResponse{Error: &AuthenticateResponseError{TransactionID: testTID, Code: AuthErrInvalidSignature}}, []string{
			"BF38", "BF38/A1", // authenticateResponseError: alternative [1]
			"BF38/A1/80", // transactionId [0]
			"BF38/A1/02", // authenticateErrorCode: INTEGER, untagged in a tagged SEQUENCE
		}},
		{"AuthenticateServerRequest", &AuthenticateServerRequest{
			ServerSigned1: *fullServerSigned1(), ServerSignature1: testSig, EUICCCIPKIDToBeUsed: testSKINIST,
			ServerCertificate: testCert, CtxParams1: CtxParams1{Common: &CtxParamsForCommonAuthentication{MatchingID: &mid}},
		}, []string{
			"BF38",    // AuthenticateServerRequest [56]
			"BF38/30", // serverSigned1 (and serverCertificate)
			"BF38/30/80",
			"BF38/30/81",
			"BF38/30/83",
			"BF38/30/84",
			"BF38/5F37", // serverSignature1 [APPLICATION 55]
			"BF38/04",   // euiccCiPKIdToBeUsed: SubjectKeyIdentifier, untagged in a tagged SEQUENCE
			"BF38/A0",   // ctxParams1: CHOICE alternative [0]
			"BF38/A0/80",
			"BF38/A0/A1",
			"BF38/A0/A1/80",
			"BF38/A0/A1/A1",
		}},
		{"SmdpSigned2", fullSmdpSigned2(), []string{
			"30", "30/80", // transactionId [0]
			"30/01",   // ccRequiredFlag: BOOLEAN, untagged in a tagged SEQUENCE
			"30/5F49", // bppEuiccOtpk [APPLICATION 73]
		}},
		{"PrepareDownloadRequest", &PrepareDownloadRequest{SmdpSigned2: *fullSmdpSigned2(), SmdpSignature2: testSig, HashCc: make([]byte, 32), SmdpCertificate: testCert}, []string{
			"BF21",    // PrepareDownloadRequest [33]
			"BF21/30", // smdpSigned2 (and smdpCertificate)
			"BF21/30/80",
			"BF21/30/01",
			"BF21/30/5F49",
			"BF21/5F37", // smdpSignature2
			"BF21/04",   // hashCc: Octet32, untagged in a tagged SEQUENCE
		}},
		{"PrepareDownloadResponse ok", fullPrepareDownloadResponse(), []string{
			"BF21",            // PrepareDownloadResponse [33] CHOICE
			"BF21/A0",         // downloadResponseOk: alternative [0]
			"BF21/A0/30",      // euiccSigned2
			"BF21/A0/30/80",   // transactionId [0]
			"BF21/A0/30/5F49", // euiccOtpk [APPLICATION 73]
			"BF21/A0/30/04",   // hashCc: untagged in a tagged SEQUENCE
			"BF21/A0/5F37",    // euiccSignature2
		}},
		{"PrepareDownloadResponse error", &PrepareDownloadResponse{Error: &PrepareDownloadResponseError{TransactionID: testTID, Code: DownloadErrInvalidSignature}}, []string{
			"BF21", "BF21/A1", // downloadResponseError: alternative [1]
			"BF21/A1/80", // transactionId [0]
			"BF21/A1/02", // downloadErrorCode: INTEGER
		}},
		{"NotificationMetadata", fullNotificationMetadata(NotificationDelete), notificationMetadataTags(true)},
		{"ProfileInstallationResult success", fullPIR(true), pirTags(true)},
		{"ProfileInstallationResult error", fullPIR(false), pirTags(false)},
		{"OtherSignedNotification", fullOtherNotification(), otherNotificationTags()},
		{"CancelSessionRequest (ES10b)", &CancelSessionRequest{TransactionID: testTID, Reason: CancelTimeout}, []string{
			"BF41",    // CancelSessionRequest [65]
			"BF41/80", // transactionId → [0] (no tagged component)
			"BF41/81", // reason → [1]
		}},
		{"CancelSessionResponse ok", fullCancelSessionResponse(), cancelSessionResponseTags("BF41")},
		{"CancelSessionResponse error", &CancelSessionResponse{Error: new(CancelSessionErrorCode)}, []string{
			"BF41", "BF41/81", // cancelSessionResponseError INTEGER: alternative [1], implicit
		}},

		// ES9+ requests.
		{"InitiateAuthenticationRequest", fullRequests()[0], []string{
			"BF39",                                                                                            // InitiateAuthenticationRequest [57]
			"BF39/81",                                                                                         // euiccChallenge [1]
			"BF39/83",                                                                                         // smdpAddress [3]
			"BF39/BF20", "BF39/BF20/82", "BF39/BF20/A9", "BF39/BF20/A9/04", "BF39/BF20/AA", "BF39/BF20/AA/04", // euiccInfo1: its own [32]
		}},
		{"AuthenticateClientRequest", fullRequests()[1], append([]string{
			"BF3B",    // AuthenticateClientRequest [59]
			"BF3B/80", // transactionId [0]
		}, prefixed("BF3B", authOk)...)},
		{"GetBoundProfilePackageRequest", fullRequests()[2], []string{
			"BF3A",    // GetBoundProfilePackageRequest [58]
			"BF3A/80", // transactionId [0]
			"BF3A/BF21", "BF3A/BF21/A0", "BF3A/BF21/A0/30", "BF3A/BF21/A0/30/80", "BF3A/BF21/A0/30/5F49",
			"BF3A/BF21/A0/30/04", "BF3A/BF21/A0/5F37",
		}},
		{"HandleNotification PIR", fullRequests()[3], append([]string{
			"BF3D",    // HandleNotification [61]
			"BF3D/A0", // pendingNotification: CHOICE in a SEQUENCE without tags → [0], explicit
		}, prefixed("BF3D/A0", pirTags(true))...)},
		{"HandleNotification other", fullRequests()[4], append([]string{"BF3D", "BF3D/A0"}, prefixed("BF3D/A0", otherNotificationTags())...)},
		{"CancelSessionRequestEs9", fullRequests()[5], append([]string{
			"BF41",    // CancelSessionRequestEs9 [65]
			"BF41/80", // transactionId → [0] (no tagged component)
		}, prefixed("BF41", cancelSessionResponseTags("A1"))...)}, // cancelSessionResponse → [1] replaces BF41

		// ES9+ answers (ASN.1 binding: the ok alternative).
		{"InitiateAuthenticationResponse", fullResponses()[0], []string{
			"BF39", "BF39/A0", // initiateAuthenticationOk: alternative [0]
			"BF39/A0/80", // transactionId [0]
			"BF39/A0/30", // serverSigned1 (and serverCertificate)
			"BF39/A0/30/80", "BF39/A0/30/81", "BF39/A0/30/83", "BF39/A0/30/84",
			"BF39/A0/5F37", // serverSignature1
			"BF39/A0/04",   // euiccCiPKIdToBeUsed
		}},
		{"AuthenticateClientResponse", fullResponses()[1], []string{
			"BF3B", "BF3B/A0", // authenticateClientOk: alternative [0]
			"BF3B/A0/80",   // transactionId [0]
			"BF3B/A0/BF25", // profileMetaData [37]
			"BF3B/A0/BF25/5A", "BF3B/A0/BF25/91", "BF3B/A0/BF25/92",
			"BF3B/A0/30", // smdpSigned2 (and smdpCertificate)
			"BF3B/A0/30/80", "BF3B/A0/30/01", "BF3B/A0/30/5F49",
			"BF3B/A0/5F37", // smdpSignature2
		}},
		{"GetBoundProfilePackageResponse", fullResponses()[2], []string{
			"BF3A", "BF3A/A0", "BF3A/A0/80", // transactionId [0]
			"BF3A/A0/BF36", // boundProfilePackage [54]
			"BF3A/A0/BF36/A0",
		}},
		{"CancelSessionResponseEs9", fullResponses()[3], []string{"BF41", "BF41/A0"}}, // cancelSessionOk: empty SEQUENCE, [0]
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tagPaths(t, mustMarshal(t, c.m)); !slices.Equal(got, c.want) {
				t.Errorf("tags\n got %q\nwant %q", got, c.want)
			}
		})
	}
}
