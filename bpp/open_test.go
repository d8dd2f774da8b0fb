package bpp

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// parts is a BoundProfilePackage taken apart into its InitialiseSecureChannel
// TLV and the segments of each sequence, so that tests can rebuild it with
// consistent outer lengths after a change.
type parts struct {
	init  []byte
	order []uint32
	segs  map[uint32][][]byte
}

func split(t testing.TB, b []byte) *parts {
	t.Helper()
	top := parseOne(t, b)
	p := &parts{segs: map[uint32][][]byte{}}
	in := cryptoString(top.Value)
	for !in.Empty() {
		e, err := readTLV(&in)
		if err != nil {
			t.Fatal(err)
		}
		if e.Tag == tagInitSecure {
			p.init = append([]byte(nil), e.Raw...)
			continue
		}
		p.order = append(p.order, e.Tag)
		ss := cryptoString(e.Value)
		for !ss.Empty() {
			seg, err := readTLV(&ss)
			if err != nil {
				t.Fatal(err)
			}
			p.segs[e.Tag] = append(p.segs[e.Tag], append([]byte(nil), seg.Raw...))
		}
	}
	return p
}

func (p *parts) build() []byte {
	var c []byte
	c = append(c, p.init...)
	for _, tag := range p.order {
		var v []byte
		for _, s := range p.segs[tag] {
			v = append(v, s...)
		}
		c = appendTLV(c, tag, v)
	}
	return appendTLV(nil, tagBPP, c)
}

func (p *parts) clone() *parts {
	q := &parts{init: append([]byte(nil), p.init...), order: append([]uint32(nil), p.order...), segs: map[uint32][][]byte{}}
	for k, v := range p.segs {
		for _, s := range v {
			q.segs[k] = append(q.segs[k], append([]byte(nil), s...))
		}
	}
	return q
}

// Each kind of damage is rejected with the error that names it.
func TestOpenRejects(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	upp, err := os.ReadFile(testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"))
	if err != nil {
		t.Fatal(err)
	}
	ppp, err := Protect(upp, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, otk, _ := e.bind(t, ppp, fullMetadata(t, "89000123456789012341"))
	orig := split(t, good)
	if !bytes.Equal(orig.build(), good) {
		t.Fatal("split/build is not the identity")
	}
	otherOTK, _ := GenerateOneTimeKey(esim.CurveP256, nil)

	type want struct {
		err   error
		seq   uint32 // 0: not a SegmentError
		index int
	}
	for _, tc := range []struct {
		name   string
		mutate func(p *parts) []byte // returns the package to open
		otk    *OneTimeKey
		eid    []byte
		want   want
	}{
		{"untouched package opens", func(p *parts) []byte { return p.build() }, nil, nil, want{}},
		{"other EID: first 87 MAC fails", func(p *parts) []byte { return p.build() }, nil,
			mustDecode("89049032123451234512345678901335"), want{ErrMAC, tagFirstSeq87, 0}},
		{"other eUICC one-time key: smdpSign covers euiccOtpk", func(p *parts) []byte { return p.build() }, otherOTK, nil,
			want{ErrSignature, 0, 0}},
		{"86 segments swapped", func(p *parts) []byte {
			s := p.segs[tagSeq86]
			s[0], s[1] = s[1], s[0]
			return p.build()
		}, nil, nil, want{ErrMAC, tagSeq86, 0}},
		{"86 segment replayed", func(p *parts) []byte {
			s := p.segs[tagSeq86]
			s[2] = s[1]
			return p.build()
		}, nil, nil, want{ErrMAC, tagSeq86, 2}},
		{"86 segment inserted", func(p *parts) []byte {
			s := p.segs[tagSeq86]
			p.segs[tagSeq86] = append(s[:3:3], append([][]byte{s[0]}, s[3:]...)...)
			return p.build()
		}, nil, nil, want{ErrMAC, tagSeq86, 3}},
		{"last 86 segment dropped: every MAC valid, UPP incomplete", func(p *parts) []byte {
			s := p.segs[tagSeq86]
			p.segs[tagSeq86] = s[:len(s)-1]
			return p.build()
		}, nil, nil, want{ErrIncomplete, 0, 0}},
		{"secondSequenceOf87 dropped: 86s opened with session keys", func(p *parts) []byte {
			p.order = []uint32{tagFirstSeq87, tagSeq88, tagSeq86}
			return p.build()
		}, nil, nil, want{ErrMAC, tagSeq86, 0}},
		{"sequenceOf88 dropped", func(p *parts) []byte {
			p.order = []uint32{tagFirstSeq87, tagSecondSeq87, tagSeq86}
			return p.build()
		}, nil, nil, want{ErrMalformed, 0, 0}},
		{"sequences out of order", func(p *parts) []byte {
			p.order = []uint32{tagSeq88, tagFirstSeq87, tagSecondSeq87, tagSeq86}
			return p.build()
		}, nil, nil, want{ErrMalformed, 0, 0}},
		{"empty sequenceOf86", func(p *parts) []byte {
			p.segs[tagSeq86] = nil
			return p.build()
		}, nil, nil, want{ErrMalformed, tagSeq86, 0}},
		{"87 segment in sequenceOf86", func(p *parts) []byte {
			p.segs[tagSeq86][4][0] = 0x87
			return p.build()
		}, nil, nil, want{ErrMalformed, tagSeq86, 4}},
		{"segment of 1036 bytes (pySim-style 1008-byte chunk)", func(p *parts) []byte {
			s := p.segs[tagSeq86]
			s[1] = appendTLV(nil, 0x86, make([]byte, 1024+8))
			return p.build()
		}, nil, nil, want{ErrSegmentSize, tagSeq86, 1}},
		{"ciphertext not a multiple of 16", func(p *parts) []byte {
			p.segs[tagSeq86][0] = appendTLV(nil, 0x86, make([]byte, 20+8))
			return p.build()
		}, nil, nil, want{ErrSegmentSize, tagSeq86, 0}},
		{"segment shorter than its MAC", func(p *parts) []byte {
			p.segs[tagSeq88][0] = []byte{0x88, 0x03, 1, 2, 3}
			return p.build()
		}, nil, nil, want{ErrSegmentSize, tagSeq88, 0}},
		{"trailing byte after BF36", func(p *parts) []byte { return append(p.build(), 0) }, nil, nil, want{ErrMalformed, 0, 0}},
		{"truncated package", func(p *parts) []byte { b := p.build(); return b[:len(b)-1] }, nil, nil, want{ErrMalformed, 0, 0}},
		{"indefinite length", func(p *parts) []byte { b := p.build(); b[2] = 0x80; return b }, nil, nil, want{ErrMalformed, 0, 0}},
		{"smdpSign of 63 bytes", func(p *parts) []byte {
			in := parseOne(t, p.init).Value
			v := append([]byte(nil), in[:len(in)-67]...)
			v = appendTLV(v, tagSMDPSign, in[len(in)-63:])
			p.init = appendTLV(nil, tagInitSecure, v)
			return p.build()
		}, nil, nil, want{ErrMalformed, 0, 0}},
		{"element after smdpSign", func(p *parts) []byte {
			in := parseOne(t, p.init).Value
			p.init = appendTLV(nil, tagInitSecure, append(append([]byte(nil), in...), 0x80, 0x00))
			return p.build()
		}, nil, nil, want{ErrMalformed, 0, 0}},
		{"empty input", func(*parts) []byte { return nil }, nil, nil, want{ErrMalformed, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(orig.clone())
			k, eid := otk, testEID
			if tc.otk != nil {
				k = tc.otk
			}
			if tc.eid != nil {
				eid = tc.eid
			}
			o, err := Open(b, k, eid, e.pub)
			if tc.want.err == nil {
				if err != nil || !bytes.Equal(o.UPP, upp) {
					t.Fatalf("Open: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Open accepted the package")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tc.want.err) {
				t.Fatalf("error %q does not wrap %q", err, tc.want.err)
			}
			var se *SegmentError
			isSeg := errors.As(err, &se)
			if tc.want.seq == 0 && isSeg {
				t.Fatalf("unexpected SegmentError %v", err)
			}
			if tc.want.seq != 0 && (!isSeg || se.Sequence != tc.want.seq || se.Index != tc.want.index) {
				t.Fatalf("error %q, want a SegmentError for %s segment %d", err, sequenceName(tc.want.seq), tc.want.index)
			}
		})
	}

	t.Run("other SM-DP+ public key", func(t *testing.T) {
		pem, err := os.ReadFile(testenv.Path(t, "sgp26", "DPpb", "PK_S_SM_DP2pb_ECDSA_NIST.pem"))
		if err != nil {
			t.Fatal(err)
		}
		dp2, err := esim.ParsePublicKeyPEM(pem)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(good, otk, testEID, dp2); !errors.Is(err, ErrSignature) {
			t.Fatalf("Open with DP2pb key: %v, want ErrSignature", err)
		}
	})
	t.Run("brainpool one-time key for a P-256 package", func(t *testing.T) {
		bp, _ := GenerateOneTimeKey(esim.CurveBrainpoolP256r1, nil)
		if _, err := Open(good, bp, testEID, e.pub); !errors.Is(err, ErrSignature) {
			t.Fatalf("%v, want ErrSignature", err)
		}
	})
}

// Session-key mode (no ReplaceSessionKeys): the 86 segments continue the
// session BSP instance; Open handles both modes.
func TestSessionKeyMode(t *testing.T) {
	for _, c := range curves {
		e := newEnv(t, c.curve, c.sgp26)
		upp, err := os.ReadFile(testenv.Path(t, "ts48", "TS48v4_SAIP2.3_BERTLV.der"))
		if err != nil {
			t.Fatal(err)
		}
		otk, _ := GenerateOneTimeKey(c.curve, nil)
		md := fullMetadata(t, "8949449999999990023")
		b, err := BindUnprotected(context.Background(), e.signer, e.ka, &BindParams{
			TransactionID: []byte{1}, HostID: []byte{0x80}, EID: testEID, EUICCOtpk: otk.PublicKey(), Metadata: md,
		}, upp)
		if err != nil {
			t.Fatal(err)
		}
		p := split(t, b)
		if _, ok := p.segs[tagSecondSeq87]; ok {
			t.Fatal("session-key mode BPP has a secondSequenceOf87")
		}
		o, err := Open(b, otk, testEID, e.pub)
		if err != nil {
			t.Fatalf("%v: %v", c.curve, err)
		}
		if o.PPKMode || !bytes.Equal(o.UPP, upp) || o.ConfigureISDP.DPOID != nil {
			t.Fatalf("%v: PPKMode %v, UPP equal %v, dpOid %v", c.curve, o.PPKMode, bytes.Equal(o.UPP, upp), o.ConfigureISDP.DPOID)
		}
		if !bytes.Equal(o.ConfigureISDPDER, []byte{0xBF, 0x24, 0x00}) {
			t.Errorf("ConfigureISDP = %x, want bf2400", o.ConfigureISDPDER)
		}
	}
}

// Open's memory is bounded by its input: a package whose sequenceOf86
// claims megabytes of garbage fails at the first MAC having allocated about
// the input size once, and oversize input is refused before any work.
func TestOpenBoundedMemory(t *testing.T) {
	e := newEnv(t, esim.CurveP256, "NIST")
	upp, _ := os.ReadFile(testenv.Path(t, "ts48", "TS48v1_A.der"))
	ppp, err := Protect(upp, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, otk, _ := e.bind(t, ppp, fullMetadata(t, "89000123456789012341"))
	p := split(t, good)
	junk := appendTLV(nil, 0x86, make([]byte, 1000))
	for len(p.segs[tagSeq86]) < 3000 {
		p.segs[tagSeq86] = append(p.segs[tagSeq86], junk)
	}
	b := p.build()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := Open(b, otk, testEID, e.pub); err == nil {
		t.Fatal("accepted junk segments")
	}
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(len(b))+256<<10; got > limit {
		t.Errorf("Open of %d bytes allocated %d bytes (limit %d)", len(b), got, limit)
	}
	if _, err := Open(make([]byte, MaxBPPSize+1), otk, testEID, e.pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversize input: %v", err)
	}
}
