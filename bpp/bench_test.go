package bpp

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/cputime"
	"github.com/perso-esim/perso/internal/testenv"
)

// benchUPP is the TS.48 v5 SAIP 2.3 generic profile (12 163 bytes), the
// "TS.48-size UPP" of the performance targets.
func benchUPP(b *testing.B) []byte {
	upp, err := os.ReadFile(testenv.Path(b, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"))
	if err != nil {
		b.Fatal(err)
	}
	return upp
}

// reportRate adds unit/s (wall) and cpu-µs/op; start is cputime.Process() taken
// just before the timed loop.
func reportRate(b *testing.B, start time.Duration, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit+"/s")
	}
	if cpu := cputime.Process() - start; cpu > 0 {
		b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), unit+"/cpu-s")
	}
}

// Protect of a TS.48-size UPP with a fresh random PPK per profile, reusing
// the Protector and the output buffer (the batch hot path).
// The two-pass reference (CBC, then CMAC) for comparison with the
// interleaved hot path.
func BenchmarkProtectTwoPass(b *testing.B) {
	upp := benchUPP(b)
	var st bsp
	var ppk PPK
	size, _ := ProtectedSize(len(upp))
	buf := make([]byte, 0, size)
	b.SetBytes(int64(len(upp)))
	b.ReportAllocs()
	start := cputime.Process()
	for b.Loop() {
		st.initImpl(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV, false)
		buf = buf[:0]
		for rest := upp; len(rest) > 0; {
			k := min(len(rest), MaxEncryptedChunk)
			buf = st.appendEncryptedReference(buf, tagSegProfile, rest[:k])
			rest = rest[k:]
		}
	}
	reportRate(b, start, "profiles")
}

func BenchmarkProtect(b *testing.B) {
	upp := benchUPP(b)
	p := NewProtector(nil)
	size, _ := ProtectedSize(len(upp))
	buf := make([]byte, 0, size)
	var ppk PPK
	b.SetBytes(int64(len(upp)))
	b.ReportAllocs()
	start := cputime.Process()
	for b.Loop() {
		if err := p.NewPPK(&ppk); err != nil {
			b.Fatal(err)
		}
		var err error
		if buf, _, err = p.AppendProtected(buf[:0], upp, &ppk); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, start, "profiles")
}

// The batch hot path on the pure-Go interleaved path (crypto/aes), i.e.
// what other architectures, the purego tag and CPUs without AES-NI run;
// compare with BenchmarkProtect (the AES-NI kernel on amd64).
func BenchmarkProtectGeneric(b *testing.B) {
	upp := benchUPP(b)
	var st bsp
	var ppk PPK
	size, _ := ProtectedSize(len(upp))
	buf := make([]byte, 0, size)
	b.SetBytes(int64(len(upp)))
	b.ReportAllocs()
	start := cputime.Process()
	for b.Loop() {
		st.initImpl(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV, false)
		buf = st.appendSegments(buf[:0], tagSegProfile, upp, true)
	}
	reportRate(b, start, "profiles")
}

// The symmetric part of Open alone: verify and decrypt the 13 segments of a
// TS.48-size PPP, with the AES-NI kernels (hw, amd64) and through crypto/aes.
func BenchmarkOpenSegments(b *testing.B) {
	upp := benchUPP(b)
	var ppk PPK
	ppk.Enc[0], ppk.MAC[0], ppk.InitialMCV[0] = 1, 2, 3
	var st bsp
	st.initImpl(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV, false)
	segs := st.appendSegments(nil, tagSegProfile, upp, true)
	var parsed []tlv
	for rest := cryptoString(segs); !rest.Empty(); {
		t, err := readTLV(&rest)
		if err != nil {
			b.Fatal(err)
		}
		parsed = append(parsed, t)
	}
	for _, hw := range []bool{true, false} {
		name := "generic"
		if hw {
			if !haveAsm {
				continue
			}
			name = "hw"
		}
		b.Run(name, func(b *testing.B) {
			dst := make([]byte, 0, len(upp))
			b.SetBytes(int64(len(upp)))
			b.ReportAllocs()
			start := cputime.Process()
			for b.Loop() {
				st.initImpl(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV, hw)
				dst = dst[:0]
				for _, t := range parsed {
					var err error
					if dst, err = st.openSegment(dst, t, true); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportRate(b, start, "profiles")
		})
	}
}

// Protect as the convenience function: a new PPP and segment buffer per call.
func BenchmarkProtectAlloc(b *testing.B) {
	upp := benchUPP(b)
	b.SetBytes(int64(len(upp)))
	b.ReportAllocs()
	start := cputime.Process()
	for b.Loop() {
		if _, err := Protect(upp, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, start, "profiles")
}

// Bind with software keys (ECDH + ECDSA in process), per curve.
func BenchmarkBind(b *testing.B) {
	upp := benchUPP(b)
	ppp, err := Protect(upp, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range curves {
		b.Run(c.curve.String(), func(b *testing.B) {
			e := newEnv(b, c.curve, c.sgp26)
			otk, err := GenerateOneTimeKey(c.curve, nil)
			if err != nil {
				b.Fatal(err)
			}
			p := &BindParams{
				TransactionID: mustDecode("0123456789abcdef0123456789abcdef"),
				HostID:        []byte("perso-01"),
				EID:           testEID,
				EUICCOtpk:     otk.PublicKey(),
				Metadata:      fullMetadata(b, "8949449999999990023"),
			}
			ctx := context.Background()
			b.ReportAllocs()
			start := cputime.Process()
			for b.Loop() {
				if _, err := Bind(ctx, e.signer, e.ka, p, ppp); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, start, "binds")
		})
	}
}

// Bind's own work with the private-key operations stubbed out: what remains
// per download once the HSM does ECDH and signing.
func BenchmarkBindNoPK(b *testing.B) {
	upp := benchUPP(b)
	ppp, err := Protect(upp, nil)
	if err != nil {
		b.Fatal(err)
	}
	otk, _ := GenerateOneTimeKey(esim.CurveP256, nil)
	p := &BindParams{
		TransactionID: mustDecode("0123456789abcdef0123456789abcdef"),
		HostID:        []byte("perso-01"),
		EID:           testEID,
		EUICCOtpk:     otk.PublicKey(),
		Metadata:      fullMetadata(b, "8949449999999990023"),
	}
	ka := fixedKA{otpk: otk.PublicKey()}
	ctx := context.Background()
	b.ReportAllocs()
	start := cputime.Process()
	for b.Loop() {
		if _, err := Bind(ctx, fixedSigner{}, ka, p, ppp); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, start, "binds")
}

// Open (the eUICC side: smdpSign verification, ECDH, 12 KB of CMAC and
// decryption), per curve.
func BenchmarkOpen(b *testing.B) {
	upp := benchUPP(b)
	ppp, err := Protect(upp, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range curves {
		b.Run(c.curve.String(), func(b *testing.B) {
			e := newEnv(b, c.curve, c.sgp26)
			bpp, otk, _ := e.bind(b, ppp, fullMetadata(b, "8949449999999990023"))
			b.SetBytes(int64(len(upp)))
			b.ReportAllocs()
			start := cputime.Process()
			for b.Loop() {
				if _, err := Open(bpp, otk, testEID, e.pub); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, start, "opens")
		})
	}
}

type fixedSigner struct{}

func (fixedSigner) SignDigest(context.Context, []byte) ([]byte, error) {
	return make([]byte, SignatureSize), nil
}

type fixedKA struct{ otpk []byte }

func (k fixedKA) EphemeralECDH(context.Context, []byte) ([]byte, []byte, error) {
	return k.otpk, make([]byte, SharedSecretSize), nil
}
