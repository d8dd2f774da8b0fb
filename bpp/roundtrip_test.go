package bpp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/template"
)

var curves = []struct {
	curve esim.Curve
	sgp26 string // suffix of the SGP.26 key files
}{
	{esim.CurveP256, "NIST"},
	{esim.CurveBrainpoolP256r1, "BRP"},
}

// testEID is the SGP.26 test eUICC's EID.
var testEID = mustDecode("89049032123451234512345678901235")

func mustDecode(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// dppb loads the SGP.26 DPpb private key for a curve and checks it against
// the published public key.
func dppb(t testing.TB, suffix string) (*SoftwareSigner, *ecdsa.PublicKey) {
	t.Helper()
	skPEM, err := os.ReadFile(testenv.Path(t, "sgp26", "DPpb", "SK_S_SM_DPpb_ECDSA_"+suffix+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	pkPEM, err := os.ReadFile(testenv.Path(t, "sgp26", "DPpb", "PK_S_SM_DPpb_ECDSA_"+suffix+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := esim.ParsePrivateKeyPEM(skPEM)
	if err != nil {
		t.Fatalf("SK DPpb %s: %v", suffix, err)
	}
	pub, err := esim.ParsePublicKeyPEM(pkPEM)
	if err != nil {
		t.Fatalf("PK DPpb %s: %v", suffix, err)
	}
	if !priv.PublicKey.Equal(pub) && (priv.X.Cmp(pub.X) != 0 || priv.Y.Cmp(pub.Y) != 0) {
		t.Fatalf("DPpb %s: private key does not match the published public key", suffix)
	}
	s, err := NewSoftwareSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, pub
}

// fullMetadata sets every StoreMetadata field this package supports.
func fullMetadata(t testing.TB, iccid string) *StoreMetadata {
	t.Helper()
	ic, err := esim.ParseICCID(iccid)
	if err != nil {
		t.Fatal(err)
	}
	return &StoreMetadata{
		ICCID:               ic,
		ServiceProviderName: "GSMA Test Operator",
		ProfileName:         "TS.48 generic test profile ✓",
		Icon:                &Icon{Type: IconPNG, Data: bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 40)},
		ProfileClass:        ClassTest,
		Notifications: []NotificationConfig{
			{Events: NotifyInstall, Address: "smdp.example.com"},
			{Events: NotifyEnable | NotifyDisable | NotifyDelete, Address: "notify.example.com"},
		},
		ProfileOwner: &ProfileOwner{MCCMNC: [3]byte{0x00, 0xF1, 0x10}, GID1: []byte{0x12}},
		PolicyRules:  PPR1 | PPR2,
	}
}

type env struct {
	curve  esim.Curve
	signer *SoftwareSigner
	ka     *SoftwareKeyAgreement
	pub    *ecdsa.PublicKey
}

func newEnv(t testing.TB, c esim.Curve, suffix string) *env {
	t.Helper()
	s, pub := dppb(t, suffix)
	ka, err := NewSoftwareKeyAgreement(c)
	if err != nil {
		t.Fatal(err)
	}
	return &env{curve: c, signer: s, ka: ka, pub: pub}
}

// bind makes a fresh eUICC one-time key and binds ppp for it.
func (e *env) bind(t testing.TB, ppp *PPP, md *StoreMetadata) ([]byte, *OneTimeKey, *BindParams) {
	t.Helper()
	otk, err := GenerateOneTimeKey(e.curve, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &BindParams{
		TransactionID: mustDecode("0123456789abcdef0123456789abcdef"),
		HostID:        []byte("perso-01"),
		EID:           testEID,
		EUICCOtpk:     otk.PublicKey(),
		Metadata:      md,
		DPOID:         []int{2, 999, 10},
	}
	b, err := Bind(context.Background(), e.signer, e.ka, p, ppp)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return b, otk, p
}

// segments lists every BSP segment of a BPP with the sequence holding it.
type segRef struct {
	seq      uint32
	index    int
	off, end int // byte range of the whole segment TLV within the BPP
	valueOff int // offset of the segment's content
}

func bppSegments(t testing.TB, b []byte) (segs []segRef, sigOff int) {
	t.Helper()
	top := parseOne(t, b)
	in := cryptoString(top.Value)
	base := len(b) - len(top.Value)
	for !in.Empty() {
		off := base + len(top.Value) - len(in)
		e, err := readTLV(&in)
		if err != nil {
			t.Fatal(err)
		}
		hdr := len(e.Raw) - len(e.Value)
		if e.Tag == tagInitSecure {
			sigOff = off + len(e.Raw) - SignatureSize
			continue
		}
		ss := cryptoString(e.Value)
		for i := 0; !ss.Empty(); i++ {
			so := off + hdr + len(e.Value) - len(ss)
			seg, err := readTLV(&ss)
			if err != nil {
				t.Fatal(err)
			}
			segs = append(segs, segRef{seq: e.Tag, index: i, off: so, end: so + len(seg.Raw), valueOff: so + len(seg.Raw) - len(seg.Value)})
		}
	}
	return segs, sigOff
}

// personalise compiles a TS.48 template and applies one record to it, as
// the batch does before Protect. The ICCID differs per template (i).
func personalise(t testing.TB, der []byte, i int) ([]byte, string) {
	t.Helper()
	plan, err := template.Compile(der)
	if err != nil {
		t.Fatalf("template.Compile: %v", err)
	}
	payload := fmt.Sprintf("8949000000000%05d", i)
	luhn, err := esim.LuhnDigit(payload)
	if err != nil {
		t.Fatal(err)
	}
	iccid := payload + string(luhn)
	ic, err := esim.ParseICCID(iccid)
	if err != nil {
		t.Fatal(err)
	}
	imsi, err := esim.ParseIMSI(fmt.Sprintf("0010112345%05d", i))
	if err != nil {
		t.Fatal(err)
	}
	v := &template.Values{
		ICCID: ic,
		IMSI:  imsi,
		K:     bytes.Repeat([]byte{0x11 + byte(i)}, 16),
		OPc:   bytes.Repeat([]byte{0x22 + byte(i)}, 16),
		PIN1:  cardCode(t, "2468"),
		PUK1:  cardCode(t, "13572468"),
		ADM1:  cardCode(t, "75318642"),
		SPN:   "perso",
	}
	upp, err := plan.Apply(v, nil)
	if err != nil {
		t.Fatalf("Plan.Apply: %v", err)
	}
	if bytes.Equal(upp, der) {
		t.Fatal("personalisation changed nothing")
	}
	return upp, iccid
}

// Invariant 1 of ARCHITECTURE.md, at the bpp level: for every TS.48
// template and both curves, personalise (template.Compile + Plan.Apply) →
// Protect → Bind → Open gives back the identical personalised UPP, the
// metadata and ConfigureISDP as bound, and no segment exceeds 1020 bytes.
func TestRoundTripTS48(t *testing.T) {
	t.Parallel()
	ts48 := testenv.TS48(t)
	if len(ts48) != 36 {
		t.Fatalf("expected the 36 TS.48 profiles, found %d", len(ts48))
	}
	for _, c := range curves {
		e := newEnv(t, c.curve, c.sgp26)
		for i, path := range ts48 {
			t.Run(c.curve.String()+"/"+filepath.Base(path), func(t *testing.T) {
				der, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				upp, iccid := personalise(t, der, i)
				ppp, err := Protect(upp, nil)
				if err != nil {
					t.Fatal(err)
				}
				size, count := ProtectedSize(len(upp))
				if len(ppp.Segments) != size || ppp.SegmentCount != count || count != (len(upp)+MaxEncryptedChunk-1)/MaxEncryptedChunk {
					t.Fatalf("PPP: %d segments / %d bytes, planned %d / %d", ppp.SegmentCount, len(ppp.Segments), count, size)
				}
				md := fullMetadata(t, iccid)
				b, otk, p := e.bind(t, ppp, md)
				segs, _ := bppSegments(t, b)
				n86 := 0
				for _, s := range segs {
					if s.end-s.off > MaxSegmentSize {
						t.Errorf("%s segment %d is %d bytes", sequenceName(s.seq), s.index, s.end-s.off)
					}
					if s.seq == tagSeq86 {
						n86++
					}
				}
				if n86 != ppp.SegmentCount {
					t.Errorf("BPP carries %d 86 segments, PPP has %d", n86, ppp.SegmentCount)
				}
				o, err := Open(b, otk, testEID, e.pub)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(o.UPP, upp) {
					t.Fatalf("opened UPP differs from the personalised one (%d vs %d bytes)", len(o.UPP), len(upp))
				}
				prof, err := template.Decode(o.UPP)
				if err != nil {
					t.Fatalf("opened UPP does not decode: %v", err)
				}
				if prof.ICCID().String() != iccid || prof.IMSI().String() != fmt.Sprintf("0010112345%05d", i) {
					t.Errorf("opened UPP carries ICCID %s IMSI %s", prof.ICCID(), prof.IMSI())
				}
				if !reflect.DeepEqual(o.StoreMetadata, md) || o.StoreMetadata.ICCID.String() != iccid {
					t.Errorf("StoreMetadata = %+v, want %+v", o.StoreMetadata, md)
				}
				if !bytes.Equal(o.TransactionID, p.TransactionID) || !bytes.Equal(o.HostID, p.HostID) || !o.PPKMode {
					t.Errorf("tid %x host %q ppk %v", o.TransactionID, o.HostID, o.PPKMode)
				}
				if !o.ConfigureISDP.DPOID.Equal(p.DPOID) {
					t.Errorf("dpOid = %v, want %v", o.ConfigureISDP.DPOID, p.DPOID)
				}
			})
		}
	}
}

// flipOpen flips one byte at off, opens, restores, and returns the error.
func flipOpen(b []byte, off int, otk *OneTimeKey, pub *ecdsa.PublicKey) error {
	b[off] ^= 0x01
	_, err := Open(b, otk, testEID, pub)
	b[off] ^= 0x01
	return err
}

var sentinels = []error{ErrMalformed, ErrSignature, ErrKeyAgreement, ErrMAC, ErrPadding, ErrSegmentSize, ErrIncomplete}

func checkTamperErr(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: Open accepted the tampered package", what)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("%s: error %v wraps no sentinel", what, err)
}

// Flipping any single byte anywhere in the package (P-256, one profile,
// every offset) makes Open fail; inside a segment's content the error names
// that segment and is a MAC failure; inside smdpSign it is ErrSignature.
func TestTamperEveryByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t, esim.CurveP256, "NIST")
	upp, err := os.ReadFile(testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"))
	if err != nil {
		t.Fatal(err)
	}
	ppp, err := Protect(upp, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, otk, _ := e.bind(t, ppp, fullMetadata(t, "89000123456789012341"))
	if _, err := Open(b, otk, testEID, e.pub); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	segs, sigOff := bppSegments(t, b)
	owner := make([]*segRef, len(b))
	for i := range segs {
		for j := segs[i].valueOff; j < segs[i].end; j++ {
			owner[j] = &segs[i]
		}
	}
	for off := range b {
		err := flipOpen(b, off, otk, e.pub)
		checkTamperErr(t, "offset "+itoa(off), err)
		switch {
		case off >= sigOff && off < sigOff+SignatureSize:
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("smdpSign byte %d: %v, want ErrSignature", off-sigOff, err)
			}
		case owner[off] != nil:
			var se *SegmentError
			if !errors.As(err, &se) || se.Sequence != owner[off].seq || se.Index != owner[off].index || !errors.Is(err, ErrMAC) {
				t.Fatalf("offset %d in %s segment %d: %v", off, sequenceName(owner[off].seq), owner[off].index, err)
			}
		}
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// For every personalised TS.48 profile and both curves, flipping bytes of every segment and of
// smdpSign fails Open. P-256 (fast): the first two, a middle and the last
// byte of each segment and all 64 signature bytes. brainpoolP256r1 (math/big,
// ~4 ms per Open): the same for the first profile, then a middle byte of
// each segment and one signature byte; the segment crypto is curve-independent.
func TestTamperEverySegment(t *testing.T) {
	t.Parallel()
	for _, c := range curves {
		e := newEnv(t, c.curve, c.sgp26)
		for i, path := range testenv.TS48(t) {
			der, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			upp, _ := personalise(t, der, i)
			ppp, err := Protect(upp, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, otk, _ := e.bind(t, ppp, fullMetadata(t, "8949449999999990023"))
			segs, sigOff := bppSegments(t, b)
			name := c.curve.String() + "/" + filepath.Base(path)
			full := c.curve == esim.CurveP256 || i == 0
			for _, s := range segs {
				offs := []int{(s.valueOff + s.end) / 2}
				if full {
					offs = append(offs, s.off, s.off+1, s.end-1)
				}
				for _, off := range offs {
					checkTamperErr(t, name+" "+sequenceName(s.seq)+" segment "+itoa(s.index)+" offset "+itoa(off), flipOpen(b, off, otk, e.pub))
				}
			}
			first, step := sigOff, 1
			if !full {
				first, step = sigOff+i%SignatureSize, SignatureSize
			}
			for off := first; off < sigOff+SignatureSize; off += step {
				if err := flipOpen(b, off, otk, e.pub); !errors.Is(err, ErrSignature) {
					t.Fatalf("%s smdpSign byte %d: %v", name, off-sigOff, err)
				}
			}
		}
	}
}

// Exhaustive at the segment level, for every personalised TS.48 profile and
// both curves: after a successful Open, the test re-derives the session keys
// (eUICC side) and replays the BSP; for every segment of every sequence it
// flips each byte of the segment's content and MAC in turn, and opening that
// segment from the chain state just before it must fail with ErrMAC.
// (Structural bytes and smdpSign are covered through the whole Open by
// TestTamperEveryByte and TestTamperEverySegment; signature and ECDH cost
// make an exhaustive whole-Open run over 36 profiles × 2 curves too slow.)
func TestTamperSegmentContentExhaustive(t *testing.T) {
	t.Parallel()
	for _, c := range curves {
		e := newEnv(t, c.curve, c.sgp26)
		for i, path := range testenv.TS48(t) {
			der, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			upp, iccid := personalise(t, der, i)
			ppp, err := Protect(upp, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, otk, p := e.bind(t, ppp, fullMetadata(t, iccid))
			o, err := Open(b, otk, testEID, e.pub)
			if err != nil {
				t.Fatal(err)
			}
			z, err := otk.ECDH(o.SMDPOtpk)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := DeriveSessionKeys(z, p.HostID, p.EID)
			if err != nil {
				t.Fatal(err)
			}
			st := new(bsp)
			st.init(&keys.Enc, &keys.MAC, &keys.InitialMCV)
			parts := split(t, b)
			flips := 0
			for _, seq := range parts.order {
				decrypt := seq != tagSeq88
				var plain []byte
				for idx, raw := range parts.segs[seq] {
					seg := parseOne(t, raw)
					hdr := len(raw) - len(seg.Value)
					for off := hdr; off < len(raw); off++ {
						snap := *st
						raw[off] ^= 0x5A
						_, err := snap.openSegment(nil, parseOne(t, raw), decrypt)
						raw[off] ^= 0x5A
						if !errors.Is(err, ErrMAC) {
							t.Fatalf("%v/%s: %s segment %d byte %d flipped: %v", c.curve, filepath.Base(path), sequenceName(seq), idx, off, err)
						}
						flips++
					}
					if plain, err = st.openSegment(plain, seg, decrypt); err != nil {
						t.Fatalf("%v/%s: untampered %s segment %d: %v", c.curve, filepath.Base(path), sequenceName(seq), idx, err)
					}
				}
				if seq == tagSecondSeq87 {
					ppk, err := parseReplaceSessionKeys(plain)
					if err != nil {
						t.Fatal(err)
					}
					st.init(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV)
				}
				if seq == tagSeq86 && !bytes.Equal(plain, upp) {
					t.Fatalf("%v/%s: replayed BSP does not give the UPP", c.curve, filepath.Base(path))
				}
			}
			if flips < len(upp) {
				t.Fatalf("only %d flips for a %d-byte profile", flips, len(upp))
			}
		}
	}
}

// cardCode encodes digits as the template's card-form PIN/PUK/ADM value.
func cardCode(t testing.TB, digits string) []byte {
	t.Helper()
	b, err := esim.PIN.EncodeString(digits)
	if err != nil {
		t.Fatal(err)
	}
	return b[:]
}
