// Package bpp implements SGP.22 profile protection and binding:
//
//   - the BSP (Bound Profile Package Secure Protocol): X9.63 key derivation
//     (DeriveSessionKeys), segment encryption with a block-counter ICV and
//     mandatory 80 00.. padding, AES-CMAC chaining with 8-byte truncation,
//     MAC-only segments, segments of at most 1020 bytes;
//   - Protect: a pre-computed Protected Profile Package (PPP), i.e. the UPP
//     cut into 86 segments under a fresh random PPK (PPK-ENC, PPK-MAC, initial
//     MAC chaining value), produced once in the batch;
//   - Bind: the per-eUICC part of a BoundProfilePackage (BF36):
//     InitialiseSecureChannelRequest with smdpSign, ConfigureISDP,
//     StoreMetadata, ReplaceSessionKeys, followed by the stored 86 segments;
//   - Open: the eUICC side, which verifies, decrypts and returns every part,
//     rejecting any tampering with a precise, typed error.
//
// Private-key operations (smdpSign, the SM-DP+ one-time ECDH) go through the
// narrow Signer and KeyAgreement interfaces so that an HSM pool can provide
// them; software implementations for NIST P-256 and brainpoolP256r1 are
// included for tests and development.
//
// Secrets: PPK and SessionKeys redact themselves when formatted and have a
// Zero method; errors never contain key material. Bind and Open zero the
// session keys, Z and the derived BSP state they own before returning. The
// expanded AES key schedules live inside crypto/aes and cannot be wiped from
// outside the standard library; they become garbage when the call returns.
package bpp
