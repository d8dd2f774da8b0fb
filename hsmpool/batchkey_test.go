package hsmpool

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
)

func randomPPK(t testing.TB) []byte {
	ppk := make([]byte, PPKLen)
	if _, err := rand.Read(ppk); err != nil {
		t.Fatal(err)
	}
	return ppk
}

// A PPK protected in the batch comes back, on the live path, from the stored
// blob and record only; the blob names its KEK and batch.
func TestBatchKeyProtectUnprotect(t *testing.T) {
	p := openPool(t, testConfig(t))
	ctx := context.Background()
	bk, err := p.NewBatchKey(ctx, "batch-0001")
	if err != nil {
		t.Fatalf("NewBatchKey: %v", err)
	}
	if bk.KeyRef() != "kek-1" || bk.ID() != "batch-0001" {
		t.Fatalf("KeyRef %q ID %q", bk.KeyRef(), bk.ID())
	}
	ppks := map[string][]byte{}
	protected := map[string][]byte{}
	for i := range 10 {
		iccid := fmt.Sprintf("89000000000000000%02d", i)
		ppks[iccid] = randomPPK(t)
		if protected[iccid], err = bk.Protect(iccid, ppks[iccid]); err != nil {
			t.Fatal(err)
		}
		if len(protected[iccid]) != ProtectedPPKLen {
			t.Fatalf("protected PPK is %d bytes, want %d", len(protected[iccid]), ProtectedPPKLen)
		}
		if bytes.Contains(protected[iccid], ppks[iccid][:16]) {
			t.Fatal("protected record contains PPK-ENC in the clear")
		}
	}
	blob := bk.Blob()
	bk.Close()
	if _, err := bk.Protect("8900", randomPPK(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Protect after Close: %v, want ErrClosed", err)
	}

	p.cache.purge()
	for iccid, want := range ppks {
		got, err := p.UnprotectPPK(ctx, blob, iccid, protected[iccid])
		if err != nil {
			t.Fatalf("UnprotectPPK(%s): %v", iccid, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("PPK of %s changed", iccid)
		}
	}
}

// Every single-byte change to a protected record or to its batch key blob,
// a record presented for another ICCID, and a record from another batch are
// all rejected as integrity failures.
func TestBatchKeyTamperingIsDetected(t *testing.T) {
	p := openPool(t, testConfig(t))
	ctx := context.Background()
	bk, err := p.NewBatchKey(ctx, "batch-A")
	if err != nil {
		t.Fatal(err)
	}
	const iccid = "8944500000000000017"
	rec, err := bk.Protect(iccid, randomPPK(t))
	if err != nil {
		t.Fatal(err)
	}
	blob := bk.Blob()
	bk.Close()
	other, err := p.NewBatchKey(ctx, "batch-B")
	if err != nil {
		t.Fatal(err)
	}
	otherRec, _ := other.Protect(iccid, randomPPK(t))
	otherBlob := other.Blob()
	other.Close()

	type input struct {
		blob, rec []byte
		iccid     string
	}
	cases := map[string]input{
		"wrong ICCID":                {blob, rec, "8944500000000000018"},
		"record of another batch":    {blob, otherRec, iccid},
		"blob of another batch":      {otherBlob, rec, iccid},
		"truncated record":           {blob, rec[:len(rec)-1], iccid},
		"truncated blob":             {blob[:len(blob)-1], rec, iccid},
		"blob with another batch ID": {bytes.Replace(blob, []byte("batch-A"), []byte("batch-C"), 1), rec, iccid},
		"blob naming the test KEK":   {bytes.Replace(blob, []byte("kek-1"), []byte("kek-X"), 1), rec, iccid},
	}
	for i := range rec {
		r := bytes.Clone(rec)
		r[i] ^= 0x01
		cases[fmt.Sprintf("record byte %d flipped", i)] = input{blob, r, iccid}
	}
	for i := range blob {
		b := bytes.Clone(blob)
		b[i] ^= 0x80
		cases[fmt.Sprintf("blob byte %d flipped", i)] = input{b, rec, iccid}
	}
	for name, in := range cases {
		ppk, err := p.UnprotectPPK(ctx, in.blob, in.iccid, in.rec)
		if err == nil {
			t.Errorf("%s: accepted (PPK %d bytes)", name, len(ppk))
			continue
		}
		if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("%s: err = %v, want ErrIntegrity (or an unknown KEK)", name, err)
		}
	}
	if _, err := p.UnprotectPPK(ctx, blob, iccid, rec); err != nil {
		t.Fatalf("untampered record rejected: %v", err)
	}
}

// Protecting N PPKs costs one HSM operation per batch key, whatever N; the
// live path unwraps a blob once and then serves from the cache (whose
// evictions zero the key).
func TestBatchKeyHSMRoundTrips(t *testing.T) {
	cfg := testConfig(t)
	cfg.BatchKeyCache = 2
	p := openPool(t, cfg)
	ctx := context.Background()
	const profiles = 1000
	ops0 := p.hsmOps()
	calls0 := p.HSMCalls()
	bk, err := p.NewBatchKey(ctx, "rt")
	if err != nil {
		t.Fatal(err)
	}
	recs := make([][]byte, profiles)
	for i := range recs {
		if recs[i], err = bk.Protect(fmt.Sprint(i), randomPPK(t)); err != nil {
			t.Fatal(err)
		}
	}
	blob := bk.Blob()
	bk.Close()
	ops, calls := p.hsmOps()-ops0, p.HSMCalls()-calls0
	perProfile := float64(ops) / profiles
	t.Logf("protect: %d profiles, %d HSM operations (%d PKCS#11 calls): %.4f round trips per profile", profiles, ops, calls, perProfile)
	if perProfile > 0.01 {
		t.Fatalf("%.4f HSM round trips per profile on the protect path, want <= 0.01", perProfile)
	}

	ops0 = p.hsmOps()
	for i, r := range recs {
		if _, err := p.UnprotectPPK(ctx, blob, fmt.Sprint(i), r); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.hsmOps() - ops0; n != 1 {
		t.Fatalf("unprotecting %d records of one batch took %d HSM operations, want 1 (cached)", profiles, n)
	}

	// Cache bound: three blobs through a 2-entry cache evict (and zero) one.
	var held [][]byte
	for i := range 3 {
		k, err := p.NewBatchKey(ctx, fmt.Sprint("evict-", i))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, k.Blob())
		k.Close()
		ok, err := p.OpenBatchKey(ctx, held[i])
		if err != nil {
			t.Fatal(err)
		}
		ok.Close()
	}
	if n := p.cache.len(); n != 2 {
		t.Fatalf("cache holds %d keys, want 2", n)
	}
}

// Batch keys made by the software backend's RFC 3394 wrap and by the token's
// CKM_AES_KEY_WRAP are interchangeable: the same KEK value unwraps both.
func TestBatchKeyWrapInteroperatesWithToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.KEK = "kek-test"
	p := openPool(t, cfg)
	dk := randomPPK(t)[:32]
	wrapped, err := aesKeyWrap(testKEK, dk)
	if err != nil {
		t.Fatal(err)
	}
	header, _ := encodeBlobHeader("kek-test", "interop")
	sw, err := newBatchKeyFrom(header, "kek-test", "interop", append(bytes.Clone(header), wrapped...), bytes.Clone(dk))
	if err != nil {
		t.Fatal(err)
	}
	ppk := randomPPK(t)
	rec, _ := sw.Protect("89", ppk)
	got, err := p.UnprotectPPK(context.Background(), sw.Blob(), "89", rec)
	if err != nil || !bytes.Equal(got, ppk) {
		t.Fatalf("token could not open a software-wrapped batch key: %v", err)
	}

	hw, err := p.NewBatchKey(context.Background(), "interop-2")
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, w, err := parseBlob(hw.Blob())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aesKeyUnwrap(testKEK, w); err != nil {
		t.Fatalf("software could not unwrap a token-wrapped data key: %v", err)
	}
}

// RFC 3394 section 4 test vectors for the software key wrap.
func TestAESKeyWrapRFC3394(t *testing.T) {
	tests := []struct{ kek, key, wrapped string }{
		{"000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
			"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, tc := range tests {
		w, err := aesKeyWrap(mustHex(tc.kek), mustHex(tc.key))
		if err != nil || !bytes.Equal(w, mustHex(tc.wrapped)) {
			t.Fatalf("wrap = %X, %v; want %s", w, err, tc.wrapped)
		}
		k, err := aesKeyUnwrap(mustHex(tc.kek), w)
		if err != nil || !bytes.Equal(k, mustHex(tc.key)) {
			t.Fatalf("unwrap = %X, %v", k, err)
		}
		w[3] ^= 1
		if _, err := aesKeyUnwrap(mustHex(tc.kek), w); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("tampered wrap: %v, want ErrIntegrity", err)
		}
	}
}

// Cached data keys expire after BatchKeyTTL and are zeroed when evicted.
func TestBatchKeyCacheZeroesOnEviction(t *testing.T) {
	cfg := testConfig(t)
	cfg.BatchKeyTTL = 20 * time.Millisecond
	p := openPool(t, cfg)
	ctx := context.Background()
	bk, err := p.NewBatchKey(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	blob := bk.Blob()
	bk.Close()
	opened, err := p.OpenBatchKey(ctx, blob)
	if err != nil {
		t.Fatal(err)
	}
	opened.Close()
	p.cache.mu.Lock()
	if p.cache.lru.Len() != 1 {
		p.cache.mu.Unlock()
		t.Fatal("data key not cached")
	}
	cached := p.cache.lru.Front().Value.(*cacheEntry).key
	p.cache.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); p.cache.len() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("cached data key never expired")
		}
	}
	p.cache.mu.Lock()
	defer p.cache.mu.Unlock()
	if !bytes.Equal(cached, make([]byte, len(cached))) {
		t.Fatal("evicted data key was not zeroed")
	}
	if !bytes.Equal(opened.recKey, make([]byte, len(opened.recKey))) {
		t.Fatal("closed BatchKey still holds its key")
	}
}
