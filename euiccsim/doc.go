// Package euiccsim is a virtual eUICC and LPA that perform real SGP.22
// downloads from any SM-DP+, with the GSMA SGP.26 test eUICC certificates
// and keys on either curve (NIST P-256, brainpoolP256r1). It serves tests,
// `perso euicc download`, `perso verify` and load generation; no production
// code path may use it.
//
// # The eUICC
//
// EUICC holds the ISD-R's state explicitly (pending challenge, the open
// download session, kept one-time keys, the notification counter and list,
// installed profiles) and has one method per ES10b command:
//
//	GetEUICCChallenge, GetEUICCInfo1, GetEUICCInfo2
//	AuthenticateServer       checks CERT.DPauth → CI, serverSignature1, the challenge; signs euiccSigned1
//	PrepareDownload          checks CERT.DPpb → CI, smdpSignature2, the transaction; one-time key; signs euiccSigned2
//	LoadBoundProfilePackage  bpp.Open (smdpSign, every MAC, decryption); returns the signed PIR
//	CancelSession            signs euiccCancelSessionSigned
//	ListNotification, RetrieveNotificationsList, RemoveNotificationFromList
//
// plus the ES10c operations EnableProfile, DisableProfile and DeleteProfile
// for the signed notifications they produce. A refusal is answered as SGP.22
// does (the error alternative, or a PIR with errorResult), which the LPA
// forwards, together with an *ES10Error carrying the code. Commands take and
// return rsp types; signatures are made and checked over the exact bytes rsp
// keeps in Raw.
//
// Certificates are read by hand (cert.go): crypto/x509 cannot parse
// brainpool certificates. Brainpool ECDSA and ECDH use esim's curve
// (github.com/ProtonMail/go-crypto/brainpool on math/big): variable time,
// acceptable for a test eUICC whose keys are published.
//
// # The LPA
//
// LPA.Download runs initiateAuthentication, AuthenticateServer,
// authenticateClient, PrepareDownload (with the confirmation-code hash when
// the SM-DP+ asks), getBoundProfilePackage, LoadBoundProfilePackage and
// handleNotification over HTTPS, with the JSON binding or the ASN.1 binding,
// and returns the installed UPP. Failures are *DownloadError naming the
// step, with the SM-DP+'s rsp.Status when it sent one. LPAConfig sets the
// TLS roots (e.g. the SGP.26 DPtls certificate) and a host-name override
// (testsmdpplus1.example.com → 127.0.0.1) for tests.
//
// Typical use:
//
//	creds, err := euiccsim.LoadSGP26("testdata/sgp26", esim.CurveP256)
//	e, err := euiccsim.New(creds)
//	upp, err := euiccsim.NewLPA(e, euiccsim.LPAConfig{RootCAs: roots}).Download(ctx, "LPA:1$smdp.example.com$MATCH")
//
// Not modelled: the STORE DATA transport and segmented LoadBoundProfilePackage
// calls (the eUICC takes the whole BF36), profile policy rules, SM-DS, and
// SGP.22 v3 structures.
package euiccsim
