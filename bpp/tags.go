package bpp

// BoundProfilePackage tags (SGP.22 §2.5.5 / spec digest §3), packed as in tlv.go.
const (
	tagBPP           = 0xBF36 // BoundProfilePackage
	tagInitSecure    = 0xBF23 // InitialiseSecureChannelRequest
	tagFirstSeq87    = 0xA0   // firstSequenceOf87 (ConfigureISDP)
	tagSeq88         = 0xA1   // sequenceOf88 (StoreMetadata)
	tagSecondSeq87   = 0xA2   // secondSequenceOf87 (ReplaceSessionKeys), PPK case only
	tagSeq86         = 0xA3   // sequenceOf86 (the profile)
	tagRemoteOpID    = 0x82   // remoteOpId
	tagTransactionID = 0x80   // transactionId
	tagCRT           = 0xA6   // controlRefTemplate
	tagCRTKeyType    = 0x80
	tagCRTKeyLen     = 0x81
	tagCRTHostID     = 0x84
	tagSMDPOtpk      = 0x5F49 // smdpOtpk / euiccOtpk
	tagSMDPSign      = 0x5F37 // smdpSign
	tagConfigureISDP = 0xBF24 // ConfigureISDPRequest
	tagDPPropData    = 0xB8   // dpProprietaryData
	tagDPOID         = 0x80   // DpProprietaryData.dpOid, [0] IMPLICIT by AUTOMATIC TAGS
	tagOID           = 0x06   // universal OBJECT IDENTIFIER
	tagStoreMetadata = 0xBF25 // StoreMetadataRequest
	tagReplaceKeys   = 0xBF26 // ReplaceSessionKeysRequest
	tagRSKInitialMCV = 0x80
	tagRSKPPKEnc     = 0x81
	tagRSKPPKMAC     = 0x82

	remoteOpInstallBPP = 0x01 // remoteOpId installBoundProfilePackage
)
