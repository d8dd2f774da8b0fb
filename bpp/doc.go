// Package bpp implements SGP.22 profile protection and binding:
//
//   - the BSP (Bound Profile Package Secure Protocol): X9.63 key derivation
//     (DeriveSessionKeys), segment encryption with a block-counter ICV and
//     mandatory 80 00.. padding, AES-CMAC chaining with 8-byte truncation,
//     MAC-only segments that still advance the counter, segments of at most
//     1020 bytes (1007 plaintext bytes when encrypted);
//   - Protect: a pre-computed Protected Profile Package (PPP), i.e. the UPP
//     cut into 86 segments under a fresh random PPK (PPK-ENC, PPK-MAC, initial
//     MAC chaining value), produced once in the batch;
//   - Bind: the per-eUICC part of a BoundProfilePackage (BF36):
//     InitialiseSecureChannelRequest with smdpSign, ConfigureISDP (87),
//     StoreMetadata (88), ReplaceSessionKeys (87), followed by the stored 86
//     segments, each sequence single-wrapped;
//   - Open: the eUICC side, which verifies smdpSign, derives the session
//     keys, checks every MAC, decrypts, applies ReplaceSessionKeys and
//     returns ConfigureISDP, StoreMetadata and the UPP, rejecting any
//     tampering with a precise, typed error.
//
// # Using it
//
// Batch (one Protector per worker goroutine):
//
//	p := bpp.NewProtector(nil)                        // crypto/rand
//	var ppk bpp.PPK
//	p.NewPPK(&ppk)
//	segs, n, err := p.AppendProtected(buf[:0], upp, &ppk)
//	var flat [bpp.PPKSize]byte; ppk.Put(&flat)        // Enc||MAC||MCV → hsmpool wraps it
//	ppk.Zero(); clear(flat[:])
//
// or simply ppp, err := bpp.Protect(upp, nil).
//
// Download (getBoundProfilePackage):
//
//	ppk, _ := bpp.PPKFromBytes(unwrapped)             // from hsmpool.UnprotectPPK
//	ppp := &bpp.PPP{Segments: stored, SegmentCount: n, PPK: ppk}
//	pkg, err := bpp.Bind(ctx, signer, ka, &bpp.BindParams{
//		TransactionID: tid, HostID: hostID, EID: eid, EUICCOtpk: euiccOtpk,
//		Metadata: &bpp.StoreMetadata{...},           // or MetadataDER: the exact profileMetadata sent
//	}, ppp)
//	ppp.PPK.Zero()
//
// eUICC side (tests, virtual eUICC, perso verify):
//
//	otk, _ := bpp.GenerateOneTimeKey(esim.CurveP256, nil) // its PublicKey() goes in EUICCSigned2
//	opened, err := bpp.Open(pkg, otk, eid, dppbPublicKey)
//
// Private-key operations (smdpSign, the SM-DP+ one-time ECDH) go through the
// narrow Signer and KeyAgreement interfaces, which hsmpool implements;
// software implementations for NIST P-256 and brainpoolP256r1
// (NewSoftwareSigner, NewSoftwareKeyAgreement; esim.ParsePrivateKeyPEM reads the
// SGP.26 keys) are for tests and development: the brainpool ones run on
// math/big, in variable time.
//
// # Secrets
//
// PPK and SessionKeys redact themselves under every fmt verb and have a
// Zero method; errors never contain key material or plaintext. Bind wipes
// Z (the slice its KeyAgreement returned), the session keys and its BSP
// state before returning; Open wipes Z, the session keys, the PPK it
// received and any partial plaintext on failure.
//
// On amd64 with AES-NI (the default build) the AES-128 key schedules of
// PPK-ENC/S-ENC and PPK-MAC/S-MAC, the CMAC subkeys and the decryption
// schedule are expanded in constant time by assembly (AESKEYGENASSIST, no
// tables) into the BSP state itself, and that state is wiped when
// Protect, Bind and Open return, schedules included; the kernels also clear
// the XMM registers that held round keys. With the purego build tag, on other
// architectures or on CPUs without AES-NI, the AES goes through crypto/aes,
// whose expanded schedules cannot be wiped from outside the standard library:
// there they become garbage when the call returns.
package bpp
