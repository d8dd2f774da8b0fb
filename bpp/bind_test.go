package bpp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// Compile-time: the software implementations satisfy the interfaces that
// hsmpool implements structurally.
var (
	_ Signer       = (*SoftwareSigner)(nil)
	_ KeyAgreement = (*SoftwareKeyAgreement)(nil)
)

func smallPPP(t testing.TB) (*PPP, []byte) {
	t.Helper()
	upp, err := os.ReadFile(testenv.Path(t, "ts48", "TS48v2_SAIP2.1_NoBERTLV.der"))
	if err != nil {
		t.Fatal(err)
	}
	ppp, err := Protect(upp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ppp, upp
}

// recordingKA wraps a KeyAgreement and keeps the Z slice it hands out, so
// that the test can check Bind wiped it.
type recordingKA struct {
	KeyAgreement
	z   []byte
	err error
}

func (r *recordingKA) EphemeralECDH(ctx context.Context, peer []byte) ([]byte, []byte, error) {
	if r.err != nil {
		return nil, nil, r.err
	}
	otpk, z, err := r.KeyAgreement.EphemeralECDH(ctx, peer)
	r.z = z
	return otpk, z, err
}

type recordingSigner struct {
	Signer
	digest []byte
	err    error
	trunc  bool
}

func (r *recordingSigner) SignDigest(ctx context.Context, d []byte) ([]byte, error) {
	r.digest = append([]byte(nil), d...)
	if r.err != nil {
		return nil, r.err
	}
	sig, err := r.Signer.SignDigest(ctx, d)
	if r.trunc {
		sig = sig[:63]
	}
	return sig, err
}

// smdpSign covers exactly 82 01 01 || 80 10 tid || A6 .. CRT || 5F49 41
// smdpOtpk || 5F49 41 euiccOtpk: 175 bytes for a 16-byte transactionId and an
// 8-byte hostId (spec digest §3), and the package carries it as 5F37 40.
func TestBindSignedData(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, _ := smallPPP(t)
	rs := &recordingSigner{Signer: e.signer}
	otk, _ := GenerateOneTimeKey(esim.CurveP256, nil)
	p := &BindParams{
		TransactionID: mustDecode("00112233445566778899aabbccddeeff"),
		HostID:        []byte("mahlzeit"),
		EID:           testEID,
		EUICCOtpk:     otk.PublicKey(),
		Metadata:      fullMetadata(t, "89000123456789012341"),
	}
	b, err := Bind(context.Background(), rs, e.ka, p, ppp)
	if err != nil {
		t.Fatal(err)
	}
	init := parseOne(t, split(t, b).init).Value
	wantPrefix := mustDecode("820101" + "801000112233445566778899aabbccddeeff" + "a610800188810110" + "84086d61686c7a656974" + "5f4941")
	if !bytes.HasPrefix(init, wantPrefix) {
		t.Fatalf("InitialiseSecureChannelRequest starts %x, want %x", init[:len(wantPrefix)], wantPrefix)
	}
	signed := append(append([]byte(nil), init[:len(init)-67]...), 0x5F, 0x49, 0x41)
	signed = append(signed, otk.PublicKey()...)
	if len(signed) != 175 {
		t.Errorf("signed data is %d bytes, want 175", len(signed))
	}
	if d := sha256.Sum256(signed); !bytes.Equal(d[:], rs.digest) {
		t.Error("Signer was not asked to sign SHA-256 of the exact TLVs + euiccOtpk TLV")
	}
	if !bytes.Equal(init[len(init)-67:len(init)-64], []byte{0x5F, 0x37, 0x40}) || !VerifySignature(e.pub, rs.digest, init[len(init)-64:]) {
		t.Error("smdpSign is not a valid 5F37 40 r||s")
	}
}

func TestBindRejectsBadParams(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, _ := smallPPP(t)
	otk, _ := GenerateOneTimeKey(esim.CurveP256, nil)
	good := func() *BindParams {
		return &BindParams{TransactionID: []byte{1}, HostID: []byte{2}, EID: testEID, EUICCOtpk: otk.PublicKey(), Metadata: fullMetadata(t, "89000123456789012341")}
	}
	badPPP := *ppp
	badPPP.SegmentCount++
	foreign := *ppp
	foreign.Segments = append([]byte{0x87, 0x01, 0x00}, ppp.Segments...)
	foreign.SegmentCount++
	for _, tc := range []struct {
		name string
		edit func(p *BindParams)
		ppp  *PPP
		want error
	}{
		{"empty transactionId", func(p *BindParams) { p.TransactionID = nil }, ppp, ErrInvalidParams},
		{"17-byte transactionId", func(p *BindParams) { p.TransactionID = make([]byte, 17) }, ppp, ErrInvalidParams},
		{"empty hostId", func(p *BindParams) { p.HostID = nil }, ppp, ErrInvalidParams},
		{"17-byte hostId", func(p *BindParams) { p.HostID = make([]byte, 17) }, ppp, ErrInvalidParams},
		{"15-byte EID", func(p *BindParams) { p.EID = testEID[:15] }, ppp, ErrInvalidParams},
		{"compressed euiccOtpk", func(p *BindParams) { p.EUICCOtpk = append([]byte{2}, p.EUICCOtpk[1:33]...) }, ppp, ErrInvalidParams},
		{"euiccOtpk not on the curve", func(p *BindParams) { p.EUICCOtpk = append([]byte{4}, make([]byte, 64)...) }, ppp, ErrKeyAgreement},
		{"no metadata", func(p *BindParams) { p.Metadata = nil }, ppp, ErrInvalidParams},
		{"invalid metadata", func(p *BindParams) { p.Metadata.ProfileName = strings.Repeat("x", 65) }, ppp, ErrInvalidParams},
		{"MetadataDER not BF25", func(p *BindParams) { p.MetadataDER = []byte{0xBF, 0x24, 0x00} }, ppp, ErrMalformed},
		{"nil PPP", func(*BindParams) {}, nil, ErrInvalidParams},
		{"SegmentCount mismatch", func(*BindParams) {}, &badPPP, ErrInvalidParams},
		{"PPP with a non-86 element", func(*BindParams) {}, &foreign, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.edit(p)
			b, err := Bind(context.Background(), e.signer, e.ka, p, tc.ppp)
			if !errors.Is(err, tc.want) || b != nil {
				t.Fatalf("Bind = %d bytes, %v; want %v", len(b), err, tc.want)
			}
		})
	}
}

// Z handed out by the KeyAgreement is wiped by Bind on success and on
// failure; Signer and KeyAgreement errors surface wrapped; a signer that
// returns anything but 64 bytes is refused.
func TestBindWipesAndPropagates(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, _ := smallPPP(t)
	otk, _ := GenerateOneTimeKey(esim.CurveP256, nil)
	p := &BindParams{TransactionID: []byte{1}, HostID: []byte{2}, EID: testEID, EUICCOtpk: otk.PublicKey(), Metadata: fullMetadata(t, "89000123456789012341")}
	hsmDown := errors.New("hsm: session lost")
	for _, tc := range []struct {
		name   string
		signer *recordingSigner
		kaErr  error
		want   error
	}{
		{"success", &recordingSigner{Signer: e.signer}, nil, nil},
		{"signer error", &recordingSigner{Signer: e.signer, err: hsmDown}, nil, hsmDown},
		{"63-byte signature", &recordingSigner{Signer: e.signer, trunc: true}, nil, ErrInvalidParams},
		{"key agreement error", &recordingSigner{Signer: e.signer}, hsmDown, hsmDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ka := &recordingKA{KeyAgreement: e.ka, err: tc.kaErr}
			_, err := Bind(context.Background(), tc.signer, ka, p, ppp)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Bind: %v, want %v", err, tc.want)
			}
			if tc.kaErr == nil {
				if len(ka.z) != SharedSecretSize || !bytes.Equal(ka.z, make([]byte, SharedSecretSize)) {
					t.Errorf("Z not wiped after Bind (len %d)", len(ka.z))
				}
			}
		})
	}
}

// One PPP binds to several eUICCs: the 86 part is byte-identical, the rest
// differs, and each package opens only for its own eUICC.
func TestBindSamePPPTwice(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, upp := smallPPP(t)
	md := fullMetadata(t, "89000123456789012341")
	b1, otk1, _ := e.bind(t, ppp, md)
	b2, otk2, _ := e.bind(t, ppp, md)
	p1, p2 := split(t, b1), split(t, b2)
	if !bytes.Equal(bytes.Join(p1.segs[tagSeq86], nil), ppp.Segments) || !bytes.Equal(bytes.Join(p2.segs[tagSeq86], nil), ppp.Segments) {
		t.Fatal("sequenceOf86 is not the stored PPP")
	}
	if bytes.Equal(p1.init, p2.init) || bytes.Equal(p1.segs[tagSecondSeq87][0], p2.segs[tagSecondSeq87][0]) {
		t.Fatal("two bindings share session material")
	}
	for i, c := range []struct {
		b   []byte
		otk *OneTimeKey
	}{{b1, otk1}, {b2, otk2}} {
		o, err := Open(c.b, c.otk, testEID, e.pub)
		if err != nil || !bytes.Equal(o.UPP, upp) {
			t.Fatalf("package %d: %v", i, err)
		}
	}
	if _, err := Open(b1, otk2, testEID, e.pub); !errors.Is(err, ErrSignature) {
		t.Fatalf("package 1 with eUICC 2's key: %v", err)
	}
}

// A 1024-byte icon makes StoreMetadata longer than one 88 segment: it is
// split into several, each at most 1020 bytes, and reassembled by Open;
// MetadataDER is sent byte for byte.
func TestBindLargeMetadata(t *testing.T) {
	e := newEnv(t, esim.CurveBrainpoolP256r1, "BRP")
	ppp, upp := smallPPP(t)
	md := fullMetadata(t, "89000123456789012341")
	md.Icon = &Icon{Type: IconJPG, Data: bytes.Repeat([]byte{0xA5}, MaxIconSize)}
	der, err := md.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	otk, _ := GenerateOneTimeKey(esim.CurveBrainpoolP256r1, nil)
	b, err := Bind(context.Background(), e.signer, e.ka, &BindParams{
		TransactionID: []byte{9, 9}, HostID: []byte{1}, EID: testEID, EUICCOtpk: otk.PublicKey(), MetadataDER: der,
	}, ppp)
	if err != nil {
		t.Fatal(err)
	}
	segs := split(t, b).segs[tagSeq88]
	if want := (len(der) + MaxMACOnlyChunk - 1) / MaxMACOnlyChunk; len(segs) != want || want < 2 {
		t.Fatalf("%d 88 segments, want %d (>= 2)", len(segs), want)
	}
	for i, s := range segs {
		if len(s) > MaxSegmentSize {
			t.Errorf("88 segment %d is %d bytes", i, len(s))
		}
	}
	o, err := Open(b, otk, testEID, e.pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.StoreMetadataDER, der) || !bytes.Equal(o.UPP, upp) || !bytes.Equal(o.StoreMetadata.Icon.Data, md.Icon.Data) {
		t.Fatal("metadata or UPP differ after Open")
	}
}

// Secrets never print: every fmt verb on PPK, SessionKeys and a PPP shows
// the redaction marker and none of the key bytes; Zero clears them.
func TestSecretsRedactedAndZeroed(t *testing.T) {
	var ppk PPK
	var sk SessionKeys
	for i := range 16 {
		ppk.Enc[i], ppk.MAC[i], ppk.InitialMCV[i] = 0xA0+byte(i), 0xB0+byte(i), 0xC0+byte(i)
		sk.Enc[i], sk.MAC[i], sk.InitialMCV[i] = 0xD0+byte(i), 0xE0+byte(i), 0xF0+byte(i)
	}
	ppp := &PPP{Segments: []byte{0x86}, SegmentCount: 1, PPK: ppk}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		for _, v := range []any{ppk, &ppk, sk, &sk, ppp, *ppp} {
			out := fmt.Sprintf(verb, v)
			lower := strings.ToLower(out)
			if !strings.Contains(out, "redacted") {
				t.Errorf("%s of %T = %q: no redaction marker", verb, v, out)
			}
			for _, k := range [][]byte{ppk.Enc[:], ppk.MAC[:], ppk.InitialMCV[:], sk.Enc[:], sk.MAC[:], sk.InitialMCV[:]} {
				if strings.Contains(lower, fmt.Sprintf("%x", k[:4])) || strings.Contains(out, fmt.Sprint(k[:4])[1:8]) {
					t.Errorf("%s of %T leaks key bytes: %q", verb, v, out)
				}
			}
		}
	}
	ppk.Zero()
	sk.Zero()
	if ppk != (PPK{}) || sk != (SessionKeys{}) {
		t.Error("Zero left key bytes")
	}
}

// The flat 48-byte form is PPK-ENC || PPK-MAC || initial MCV (hsmpool's
// layout) and round-trips; other sizes are refused.
func TestPPKFlatForm(t *testing.T) {
	ppp, err := Protect([]byte{0xAA, 0x00}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var flat [PPKSize]byte
	ppp.PPK.Put(&flat)
	if !bytes.Equal(flat[:16], ppp.PPK.Enc[:]) || !bytes.Equal(flat[16:32], ppp.PPK.MAC[:]) || !bytes.Equal(flat[32:], ppp.PPK.InitialMCV[:]) {
		t.Fatal("flat form is not Enc || MAC || InitialMCV")
	}
	back, err := PPKFromBytes(flat[:])
	if err != nil || back != ppp.PPK {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := PPKFromBytes(flat[:47]); !errors.Is(err, ErrInvalidParams) {
		t.Fatalf("47 bytes: %v", err)
	}
	if ppp.PPK == (PPK{}) {
		t.Fatal("Protect drew an all-zero PPK")
	}
	again, err := Protect([]byte{0xAA, 0x00}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.PPK.Enc == ppp.PPK.Enc || again.PPK.MAC == ppp.PPK.MAC || again.PPK.InitialMCV == ppp.PPK.InitialMCV || bytes.Equal(again.Segments, ppp.Segments) {
		t.Fatal("two Protect calls share PPK material")
	}
}

// Bind is safe for concurrent use with one shared Signer, KeyAgreement and
// PPP (the live lane binds many downloads of different profiles at once, and
// nothing stops two of the same); Protect likewise. Run with -race.
func TestConcurrentBindProtect(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, upp := smallPPP(t)
	md := fullMetadata(t, "89000123456789012341")
	errs := make(chan error, 16)
	for range 8 {
		go func() {
			otk, err := GenerateOneTimeKey(esim.CurveP256, nil)
			if err != nil {
				errs <- err
				return
			}
			b, err := Bind(context.Background(), e.signer, e.ka, &BindParams{
				TransactionID: []byte{7}, HostID: []byte{7}, EID: testEID, EUICCOtpk: otk.PublicKey(), Metadata: md,
			}, ppp)
			if err == nil {
				var o *Opened
				if o, err = Open(b, otk, testEID, e.pub); err == nil && !bytes.Equal(o.UPP, upp) {
					err = errors.New("UPP differs")
				}
			}
			errs <- err
		}()
		go func() {
			q, err := Protect(upp, nil)
			if err == nil && q.SegmentCount != ppp.SegmentCount {
				err = errors.New("segment count differs")
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
