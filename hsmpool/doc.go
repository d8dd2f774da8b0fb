// Package hsmpool is perso's HSM: a pool of PKCS#11 sessions on one token
// (SoftHSM2 in tests and the demo) with a priority lane for live ES9+
// traffic, envelope encryption for batch key protection, fault recovery and
// metrics — and a software backend with the same API for development.
//
// # Opening
//
//	p, err := hsmpool.Open(ctx, hsmpool.Config{
//		Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "perso", PIN: pin, Sessions: 4,
//	})
//	defer p.Close()
//
// Open loads the module, calls C_Initialize, opens every session, logs in,
// and from then on reuses those sessions; key handles are looked up once per
// label and cached (and looked up again if the token reports them stale).
// Callers never see a PKCS#11 handle or session.
//
// # One owner of the library's lifecycle
//
// Everything goes through github.com/miekg/pkcs11, behind the small internal
// p11API interface (which tests wrap to inject faults). crypto11 is not used:
// its Context calls C_Initialize on its own private *pkcs11.Ctx and
// C_Finalize on Close, and does not expose that context, so using it next to
// miekg/pkcs11 for ECDH derive, key wrap and brainpool would make two owners
// of one module's C_Initialize/C_Finalize (the second Finalize pulls the
// module out from under the first). crypto11 also cannot sign with
// brainpoolP256r1 (no Go curve) and its session pool has no notion of
// priority. The pool therefore owns login, sessions and every mechanism
// itself; Open refuses a second pool on the same module in one process.
//
// # Operations and their default lanes
//
//	Sign(ctx, label, digest)              raw r||s (64 bytes)       Live
//	Signer(label).SignDigest(ctx, digest)  = bpp.Signer              Live
//	EphemeralECDH(ctx, curve, peer)       otpk (65 bytes), Z (32)   Live
//	KeyAgreement(curve).EphemeralECDH     = bpp.KeyAgreement        Live
//	OpenBatchKey / UnprotectPPK           PPK back for a download   Live
//	PublicKey(ctx, label)                 curve, point              Live
//	NewBatchKey(ctx, batchID)             per-batch data key        Batch
//	DecryptTransport(ctx, label, alg, ct) Ki/OPc plaintext          Batch
//	DecryptTransportBatch                 grouped decryption        Batch
//	Random(ctx, n)                        token RNG                 Batch
//
// hsmpool.WithLane(ctx, hsmpool.Live|hsmpool.Batch) overrides the default.
//
// EphemeralECDH checks that the peer point is on the curve (in Go, before
// the HSM sees it), generates the one-time key pair as session objects
// (CKA_TOKEN=false; the private key CKA_SENSITIVE=true,
// CKA_EXTRACTABLE=false), derives with CKM_ECDH1_DERIVE and CKD_NULL (the
// only KDF SoftHSM2 offers; the X9.63 KDF is bpp's job) into a generic
// secret session object that is CKA_EXTRACTABLE and not sensitive so that Z,
// the x-coordinate, can be read back, and destroys all three objects before
// returning.
//
// # Key labels
//
//	kek-<n>          AES-256 KEK, token object, CKA_WRAP/CKA_UNWRAP only,
//	                 sensitive, never extractable. Config.KEK (default kek-1)
//	                 picks the one new batch keys use; blobs name theirs.
//	transport-<n>    Ki/OPc transport key (AES-128 by default, or 3DES),
//	                 CKA_DECRYPT only.
//	dpauth-nist      SM-DP+ authentication key (CERT.DPauth.ECDSA), P-256
//	dpauth-brp       the same on brainpoolP256r1
//	dppb-nist        SM-DP+ profile binding key (CERT.DPpb.ECDSA), P-256
//	dppb-brp         the same on brainpoolP256r1
//
// Each EC key is a private-key object (CKA_SIGN only, non-extractable) plus a
// public-key object of the same label and CKA_ID. `perso hsm init` creates
// them all (importing the SGP.26 test keys on request).
//
// # Key hierarchy and batch key protection
//
//	HSM token
//	 └─ KEK  kek-<n>   (AES-256, never leaves the token)
//	     └─ batch data key DK  (AES-256, one per batch, generated in the token,
//	         │                  stored only as RFC 3394 wrap under the KEK = blob)
//	         └─ record key RK = HMAC-SHA256(DK, "perso/ppk/v1" || blob header)
//	             └─ PPK of each profile (48 bytes: PPK-ENC || PPK-MAC || initial MCV),
//	                 AES-256-GCM, AAD = "perso-ppk-v1" || len || ICCID
//	 └─ transport-<n>  (decrypts Ki/OPc from the MNO's input file)
//	 └─ dpauth-*, dppb-*  (signing keys)
//
// NewBatchKey is one HSM operation (C_GenerateKey of an extractable session
// key, C_WrapKey with CKM_AES_KEY_WRAP under the KEK, C_GetAttributeValue,
// C_DestroyObject); Protect is pure software, so a batch of N profiles costs
// 1/N HSM round trips per profile (0.001 for the engine's 1,000-profile
// batches). BatchKey.Close zeroes DK's derived key. What is stored:
//
//	blob      = "PBK1" || len || KEK label || len || batch ID || wrap(KEK, DK)   (per batch)
//	protected = 0x01 || nonce(12) || GCM ciphertext(48) || tag(16)              (per profile, 77 bytes)
//	key ref   = BatchKey.KeyRef() = the KEK label (its -<n> suffix is the version)
//
// Integrity: a changed wrapped key fails the RFC 3394 check inside the
// token; a changed header (KEK label, batch ID) changes RK; a changed record,
// a record from another batch or presented for another ICCID fails GCM. All
// are reported as ErrIntegrity (a changed KEK label may instead name an
// unknown key: ErrKeyNotFound). No key is ever stored in the clear: DK
// exists in the clear only in process memory, during the batch and, on the
// live path, in OpenBatchKey's cache: at most Config.BatchKeyCache (64) keys
// for Config.BatchKeyTTL (2 min), zeroed on eviction and on Close. (Go's AES
// key schedule inside cipher.Block cannot be zeroed explicitly; it is
// dropped with the BatchKey.)
//
// # Lanes
//
// Sessions are slots handed out by a scheduler. Live requests are served
// first; batch requests never hold more than Sessions-LiveReserved sessions
// (LiveReserved defaults to max(1, Sessions/4)), so a live request finds a
// free session even when batch work saturates its share; within a lane,
// FIFO. Each session has a worker goroutine: a request that has to queue
// is run by the worker of the session that frees up, which takes the next
// queued request itself as soon as it finishes, so a busy session is driven
// back to back from one goroutine and the token never idles while the OS
// schedules the next caller. While sessions are held for less than
// Config.SpinWait (200µs) on average, idle workers poll for work for up to
// SpinWait, and waiting callers for their result for up to twice that, on
// a spare CPU before they sleep: on a virtual machine, waking a sleeping
// thread costs as much as a fast PKCS#11 call (Stats.Handover counts how
// results reached their callers, polled or woken). A request that finds a
// free session whose worker sleeps runs on its caller's own goroutine.
// Grouped batch work (DecryptTransportBatch) holds one session for many
// items and yields it whenever a live request is queued.
//
// SoftHSM2 serialises private-key operations inside the process, so a live
// operation that has its session still queues inside the token behind every
// batch operation in flight. While any live request is in flight, batch may
// therefore start new operations only up to BatchWhileLive in flight
// (default 1); it gets its full share back as soon as live is idle. Batch
// throughput hardly changes (the token is serial anyway), and live latency
// is bounded by about one batch operation.
//
// # Faults
//
// CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_ERROR: the
// session is closed and replaced and the request retried on the new one
// (at most MaxRetries times). CKR_USER_NOT_LOGGED_IN: new session and login.
// Stale object handles: the handle cache is flushed and the lookup redone.
// CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT and similar: the slot is looked
// up again by token label with exponential backoff (RetryBackoff doubling to
// MaxBackoff, MaxRetries attempts), then ErrTokenUnavailable. Open (and the
// periodic re-initialisation, RecycleAfter) waits up to TokenWait for a
// token that is not present or not usable yet, initialising the module
// again before each look: SoftHSM2 2.6.1 hides the token from a
// C_Initialize that runs while another process logs in to it. A request is
// retried only after it failed, and every PKCS#11 sequence leaves no object
// behind on failure, so no request is lost or executed twice. Every wait
// (for a session, between retries) honours the context; a PKCS#11 call
// itself cannot be interrupted once started, and each is short.
//
// # Metrics
//
// Stats() returns, per operation and lane, ops/s since Open, errors, and
// latency (queue wait + HSM time) mean/p50/p99/p99.9/max from a lock-free
// log-linear histogram; the session-wait distribution per lane; sessions
// in use (total and batch); sessions replaced; token failures; and the number
// of PKCS#11 calls. Health(ctx) checks the token through the live lane.
//
// # Software backend
//
// Config{Backend: "software", SoftwareFile, SoftwarePassphrase} keeps the
// keys in a file encrypted with AES-256-GCM under scrypt(passphrase)
// (CreateSoftwareKeyFile makes one). For development only: Open refuses it
// when Module is set, and the PKCS#11 backend never falls back to it.
//
// Errors carry operation, lane, key label and PKCS#11 return code, never key
// material, PINs or plaintext.
package hsmpool
