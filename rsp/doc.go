// Package rsp is the SGP.22 message layer shared by the SM-DP+ (smdp) and
// the virtual eUICC (euiccsim): one Go type per ES9+ message and per ES10b
// structure those messages carry, exact-bytes DER codecs, and the two ES9+
// bindings (JSON and ASN.1) as thin translators around the same types.
//
// # Messages
//
// The ES9+ functions, in download order, with their request and answer:
//
//	initiateAuthentication   InitiateAuthenticationRequest  → InitiateAuthenticationResponse
//	authenticateClient       AuthenticateClientRequest      → AuthenticateClientResponse
//	getBoundProfilePackage   GetBoundProfilePackageRequest  → GetBoundProfilePackageResponse
//	handleNotification       HandleNotification             → (HTTP 204)
//	cancelSession            CancelSessionRequestEs9        → CancelSessionResponseEs9
//
// and the structures they carry: EUICCInfo1, EUICCInfo2, ServerSigned1,
// AuthenticateServerRequest/Response (EUICCSigned1, CtxParams1,
// DeviceInfo), SmdpSigned2, PrepareDownloadRequest/Response (EUICCSigned2),
// PendingNotification (ProfileInstallationResult with its data, or
// OtherSignedNotification, both with NotificationMetadata),
// CancelSessionRequest/Response (EUICCCancelSessionSigned). StoreMetadata
// and the BoundProfilePackage are bpp's; here they travel as opaque DER
// elements.
//
// # Tagging
//
// The SGP.22 ASN.1 module (RSPDefinitions) has AUTOMATIC TAGS and
// EXTENSIBILITY IMPLIED. A SEQUENCE none of whose components carries a tag
// gets [0], [1] … IMPLICIT in order (EuiccCancelSessionSigned is
// 30 { 80, 81, 82 }); where some components are tagged, the untagged ones
// keep their universal tag (SmdpSigned2's ccRequiredFlag is 01,
// ProfileInstallationResultData's smdpOid is 06). CHOICE alternatives are
// numbered the same way, and a tagged CHOICE is tagged explicitly. Every
// type's comment shows its module definition with the resulting tags, and
// the tests check each component's tag against tables written from the
// module.
//
// # Exact bytes
//
// Parsers keep the element as received in the type's Raw field, and a
// Signature is its whole 5F37 element as received. Signatures are verified
// over those bytes, never over a re-encoding: clients send BIT STRINGs that
// are not DER-minimal, and later SGP.22 versions append components this
// package skips. The signed data of each signature:
//
//	serverSignature1   ServerSigned1.Raw
//	euiccSignature1    EUICCSigned1.Raw
//	smdpSignature2     SmdpSignature2Data(SmdpSigned2.Raw, euiccSignature1)
//	euiccSignature2    EUICCSignature2Data(EUICCSigned2.Raw, smdpSignature2)
//	euiccSignPIR       ProfileInstallationResultData.Raw
//	notification       NotificationMetadata.Raw (OtherSignedNotification)
//	cancel session     EUICCCancelSessionSigned.Raw
//
// Marshal emits Raw when it is set, so that a parsed value is forwarded byte
// for byte (the eUICC copies ctxParams1 verbatim); a value built in code has
// no Raw and is encoded in DER. Set Raw to nil after changing a parsed
// value. Transaction ids are compared as bytes (TransactionID.Equal).
//
// Parsers enforce DER framing (definite, minimal lengths; tags in minimal
// form) and every size the module gives, accept trailing components of
// later versions, never panic, and return errors wrapping ErrMalformed.
// Encoders return errors wrapping ErrInvalid.
//
// # Bindings
//
// JSON (DecodeJSONRequest, EncodeJSONResponse, EncodeJSONStatus, and for
// clients EncodeJSONRequest, DecodeJSONResponse): request decoders ignore
// unknown members; response decoders are strict (unknown or missing
// members, statusCodeData on success); encoders emit exactly the members
// SGP.22 defines, and a failure is the header alone. See jsonbinding.go.
//
// ASN.1 (DecodeASN1Request, EncodeASN1Response, EncodeASN1Request,
// DecodeASN1Response): RemoteProfileProvisioningRequest/Response A2 CHOICE
// on /gsma/rsp2/asn1. A Status travels as the function's INTEGER error
// alternative (ASN1ErrorCode, StatusFromASN1Error).
package rsp
