package bpp

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// fuzzFixture is one valid P-256 package with fixed keys; the fuzz targets
// open mutations of it (Open itself is deterministic for fixed keys).
type fuzzFixture struct {
	otk  *OneTimeKey
	env  *env
	good []byte
	init []byte // the signed InitialiseSecureChannelRequest TLV of good
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	e := newEnv(f, esim.CurveP256, "NIST")
	otk, err := NewOneTimeKey(esim.CurveP256, mustDecode("fb68a38ccedb69e15cbe03c256228998ac398587e5dc7117f948145c839d61a4"))
	if err != nil {
		f.Fatal(err)
	}
	// A small synthetic UPP (one 1100-byte PE + the end PE, two 86
	// segments) keeps the seed short: the fuzzer minimises every new input,
	// which with a 12 KB TS.48 package takes minutes.
	upp := appendTLV(nil, 0xA0, bytes.Repeat([]byte{0x5A}, 1100))
	upp = append(upp, 0xAA, 0x07, 0xA0, 0x05, 0x80, 0x00, 0x81, 0x01, 0x02)
	ppp, err := Protect(upp, nil)
	if err != nil {
		f.Fatal(err)
	}
	good, err := Bind(context.Background(), e.signer, e.ka, &BindParams{
		TransactionID: []byte{0xAB}, HostID: []byte{0x80}, EID: testEID, EUICCOtpk: otk.PublicKey(),
		Metadata: fullMetadata(f, "89000123456789012341"),
	}, ppp)
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzFixture{otk: otk, env: e, good: good, init: split(f, good).init}
}

func (fx *fuzzFixture) open(t *testing.T, b []byte) {
	o, err := Open(b, fx.otk, testEID, fx.env.pub)
	if err != nil {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error wraps no sentinel: %v", err)
	}
	if o.StoreMetadata == nil || o.ConfigureISDP == nil || len(o.UPP) == 0 || len(o.UPP) > len(b) {
		t.Fatalf("Open succeeded with an incomplete result")
	}
}

// FuzzOpen: arbitrary bytes never panic, errors always wrap a sentinel, a
// success yields a complete result no larger than the input. The seeds are
// small packages around the valid signed header (the whole package is the
// seed of FuzzOpenSequences): the fuzzer minimises every new input, each run
// verifies a signature, and minimising kilobytes would eat the fuzz time.
func FuzzOpen(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(appendTLV(nil, tagBPP, fx.init))
	f.Add(appendTLV(nil, tagBPP, append(append([]byte(nil), fx.init...), 0xA0, 0x00, 0xA1, 0x00, 0xA3, 0x00)))
	f.Add(fx.init)
	f.Add([]byte{0xBF, 0x36, 0x00})
	f.Add([]byte{0xBF, 0x36, 0x83, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) { fx.open(t, b) })
}

// FuzzOpenSequences keeps the valid, signed InitialiseSecureChannelRequest
// and fuzzes everything after it, so that mutations reach the sequence and
// segment parsing, the MAC checks and the size limits instead of stopping at
// the signature.
func FuzzOpenSequences(f *testing.F) {
	fx := newFuzzFixture(f)
	rest := parseOne(f, fx.good).Value[len(fx.init):]
	f.Add(rest)
	f.Add(rest[:200])
	f.Add([]byte{0xA0, 0x00, 0xA1, 0x00, 0xA3, 0x00})
	f.Add([]byte{0xA0, 0x0A, 0x87, 0x08, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, rest []byte) {
		b := appendTLV(nil, tagBPP, append(append([]byte(nil), fx.init...), rest...))
		fx.open(t, b)
	})
}

// FuzzParseStoreMetadata: no panic; whatever parses re-encodes (Marshal)
// and parses back to the same value.
func FuzzParseStoreMetadata(f *testing.F) {
	minimal := &StoreMetadata{ICCID: fullMetadata(f, "89000123456789012341").ICCID, ServiceProviderName: "a"}
	for _, m := range []*StoreMetadata{fullMetadata(f, "89000123456789012341"), minimal} {
		der, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add(mustDecode("bf25155a0a98001032547698103214910141920142950102"))
	f.Fuzz(func(t *testing.T, der []byte) {
		m, err := ParseStoreMetadata(der)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error wraps no ErrMalformed: %v", err)
			}
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed metadata does not marshal: %v", err)
		}
		m2, err := ParseStoreMetadata(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the value: %v", err)
		}
		if len(again) > len(der) && !bytes.Contains(der, []byte{0x95, 0x01, 0x02}) && len(again) > len(der)+16 {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(der), len(again))
		}
	})
}
