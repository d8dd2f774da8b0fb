package hsmpool

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// encryptGo encrypts like an MNO's transport-key tooling would (ECB, or CBC
// with a zero IV, no padding).
func encryptGo(t *testing.T, alg string, key, pt []byte) []byte {
	t.Helper()
	var blk cipher.Block
	var err error
	if alg[0] == '3' {
		blk, err = des.NewTripleDESCipher(des3Key(key))
	} else {
		blk, err = aes.NewCipher(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(pt))
	if alg == AlgAES128CBC || alg == Alg3DESCBC {
		cipher.NewCBCEncrypter(blk, make([]byte, blk.BlockSize())).CryptBlocks(ct, pt)
	} else {
		for i := 0; i < len(pt); i += blk.BlockSize() {
			blk.Encrypt(ct[i:], pt[i:])
		}
	}
	return ct
}

// DecryptTransport recovers Ki and OPc encrypted under the transport key in
// each supported mode; multi-block values (Ki || OPc) chain correctly in CBC.
func TestDecryptTransport(t *testing.T) {
	p := openPool(t, testConfig(t))
	ki := mustHex("465b5ce8b199b49faa5f0a2ee238a6bc")
	opc := mustHex("cd63cb71954a9f4e48a5994e37a02baf")
	tests := []struct {
		alg   string
		label string
		key   []byte
		pt    []byte
	}{
		{AlgAES128ECB, "transport-1", testTransportAES, ki},
		{AlgAES128CBC, "transport-1", testTransportAES, ki},
		{AlgAES128ECB, "transport-1", testTransportAES, append(bytes.Clone(ki), opc...)},
		{AlgAES128CBC, "transport-1", testTransportAES, append(bytes.Clone(ki), opc...)},
		{Alg3DESECB, "transport-2", testTransport3DES, ki},
		{Alg3DESCBC, "transport-2", testTransport3DES, append(bytes.Clone(ki), opc...)},
	}
	for _, tc := range tests {
		t.Run(tc.alg+"/"+tc.label, func(t *testing.T) {
			ct := encryptGo(t, tc.alg, tc.key, tc.pt)
			got, err := p.DecryptTransport(context.Background(), tc.label, tc.alg, ct)
			if err != nil {
				t.Fatalf("DecryptTransport: %v", err)
			}
			if !bytes.Equal(got, tc.pt) {
				t.Fatalf("plaintext differs")
			}
			many, err := p.DecryptTransportBatch(context.Background(), tc.label, tc.alg, [][]byte{ct, ct, ct})
			if err != nil || len(many) != 3 || !bytes.Equal(many[2], tc.pt) {
				t.Fatalf("DecryptTransportBatch: %v", err)
			}
		})
	}
}

func TestDecryptTransportRejects(t *testing.T) {
	p := openPool(t, testConfig(t))
	block16 := make([]byte, 16)
	tests := []struct {
		name, label, alg string
		ct               []byte
		want             error
	}{
		{"unknown algorithm", "transport-1", "AES-256-GCM", block16, ErrBadInput},
		{"partial AES block", "transport-1", AlgAES128ECB, block16[:15], ErrBadInput},
		{"empty ciphertext", "transport-1", AlgAES128CBC, nil, ErrBadInput},
		{"partial DES block", "transport-2", Alg3DESECB, block16[:12], ErrBadInput},
		{"AES algorithm on a 3DES key", "transport-2", AlgAES128ECB, block16, ErrWrongKeyType},
		{"3DES algorithm on an AES key", "transport-1", Alg3DESCBC, block16, ErrWrongKeyType},
		{"the token refuses to decrypt with the KEK", "kek-1", AlgAES128ECB, block16, pkcs11.Error(pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)},
		{"unknown transport key", "transport-9", AlgAES128ECB, block16, ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.DecryptTransport(context.Background(), tc.label, tc.alg, tc.ct)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// A grouped batch decryption holds its session across items but yields it
// to a live request at the next item boundary. The group is held inside the
// token at its second item until the live request has queued, so the test
// sees the order of the token calls, whatever the machine's load: the live
// signature comes between two items of the group, not after the last.
func TestDecryptTransportBatchYieldsToLive(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sessions = 1 // no reserved session: live must get the group's session
	p, f := openFaultyPoolConfig(t, cfg)
	f.gate, f.gateFn, f.gateCall = make(chan struct{}), "Decrypt", 2
	f.trace = true
	const items = 50
	cts := make([][]byte, items)
	for i := range cts {
		cts[i] = make([]byte, 32)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.DecryptTransportBatch(context.Background(), "transport-1", AlgAES128ECB, cts)
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); f.gated.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the grouped decryption never reached its second item")
		}
	}
	signed := make(chan error, 1)
	go func() {
		d := sha256.Sum256(nil)
		_, err := p.Sign(context.Background(), "dppb-nist", d[:])
		signed <- err
	}()
	waitQueued(t, p.sched, Live, 1)
	mark := f.eventCount()
	close(f.gate)
	if err := <-signed; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ev := f.eventsSince(mark)
	sign := slices.Index(ev, "SignInit")
	after := 0
	for _, e := range ev[max(sign, 0):] {
		if e == "Decrypt" {
			after++
		}
	}
	if sign < 0 || after == 0 {
		t.Fatalf("the live signature was served after the whole group (%d of its items after the signature, want %d)", after, items-2)
	}
	if after != items-2 {
		t.Fatalf("%d items decrypted after the live signature, want the %d after the one in flight", after, items-2)
	}
}
