package hsmpool

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/scrypt"

	"github.com/perso-esim/perso/esim"
)

// The software backend keeps keys in one file encrypted with AES-256-GCM
// under scrypt(passphrase). It exists for development without an HSM; it is
// selected only by Config.Backend = "software" and refused when a PKCS#11
// module is configured. It implements exactly the PKCS#11 backend's
// operations and blob formats (RFC 3394 key wrap of batch data keys), so the
// pool's lanes, metrics and batch-key code are the same for both.

type softFile struct {
	Version int    `json:"version"`
	Salt    []byte `json:"salt"`
	N       int    `json:"scrypt_n"`
	Nonce   []byte `json:"nonce"`
	Sealed  []byte `json:"sealed"`
}

type softKey struct {
	Label string `json:"label"`
	Kind  string `json:"kind"`            // KindKEK, KindTransportAES, KindTransport3DES, "ec"
	Curve string `json:"curve,omitempty"` // for "ec"
	Value []byte `json:"value"`           // secret value or EC scalar
	Point []byte `json:"point,omitempty"`
}

type softBackend struct {
	path string
	pass string

	mu    sync.RWMutex
	keys  map[string]*softKey
	ops   atomic.Uint64
	saltN softFile
}

// softScryptN is the scrypt cost of new key files (lowered by tests).
var softScryptN = 1 << 15

// CreateSoftwareKeyFile creates an empty software-backend key file at path
// protected by passphrase. It refuses to overwrite an existing file.
func CreateSoftwareKeyFile(path, passphrase string) error {
	if passphrase == "" {
		return errors.New("hsmpool: the software key file needs a passphrase")
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("hsmpool: %s already exists", path)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	b := &softBackend{path: path, pass: passphrase, keys: map[string]*softKey{},
		saltN: softFile{Version: 1, Salt: salt, N: softScryptN}}
	return b.save()
}

func openSoftware(cfg Config) (*softBackend, error) {
	if cfg.SoftwareFile == "" || cfg.SoftwarePassphrase == "" {
		return nil, errors.New("hsmpool: the software backend needs a key file and a passphrase")
	}
	raw, err := os.ReadFile(cfg.SoftwareFile)
	if err != nil {
		return nil, fmt.Errorf("hsmpool: software key file: %w", err)
	}
	var f softFile
	if err := json.Unmarshal(raw, &f); err != nil || f.Version != 1 {
		return nil, errors.New("hsmpool: software key file is malformed")
	}
	aead, err := softAEAD(cfg.SoftwarePassphrase, f.Salt, f.N)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, f.Nonce, f.Sealed, []byte("perso-softhsm-v1"))
	if err != nil {
		return nil, errors.New("hsmpool: software key file: wrong passphrase or corrupted file")
	}
	defer clear(plain)
	var list []*softKey
	if err := json.Unmarshal(plain, &list); err != nil {
		return nil, errors.New("hsmpool: software key file content is malformed")
	}
	b := &softBackend{path: cfg.SoftwareFile, pass: cfg.SoftwarePassphrase, keys: map[string]*softKey{},
		saltN: softFile{Version: 1, Salt: f.Salt, N: f.N}}
	for _, k := range list {
		b.keys[k.Label] = k
	}
	return b, nil
}

func softAEAD(pass string, salt []byte, n int) (cipher.AEAD, error) {
	k, err := scrypt.Key([]byte(pass), salt, n, 8, 1, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// save writes the key file atomically. Caller holds mu (or is the creator).
func (b *softBackend) save() error {
	list := make([]*softKey, 0, len(b.keys))
	for _, k := range b.keys {
		list = append(list, k)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Label < list[j].Label })
	plain, err := json.Marshal(list)
	if err != nil {
		return err
	}
	defer clear(plain)
	aead, err := softAEAD(b.pass, b.saltN.Salt, b.saltN.N)
	if err != nil {
		return err
	}
	f := b.saltN
	f.Nonce = make([]byte, aead.NonceSize())
	rand.Read(f.Nonce)
	f.Sealed = aead.Seal(nil, f.Nonce, plain, []byte("perso-softhsm-v1"))
	out, _ := json.MarshalIndent(f, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(b.path), ".perso-keys-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), b.path)
}

func (b *softBackend) name() string  { return BackendSoftware }
func (b *softBackend) calls() uint64 { return b.ops.Load() }
func (b *softBackend) faults() (uint64, uint64) {
	return 0, 0
}

func (b *softBackend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range b.keys {
		clear(k.Value)
	}
	b.keys = nil
	return nil
}

func (b *softBackend) get(label, kind string) (*softKey, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.keys == nil {
		return nil, ErrClosed
	}
	k := b.keys[label]
	if k == nil {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	}
	if kind != "" && k.Kind != kind {
		return nil, ErrWrongKeyType
	}
	b.ops.Add(1)
	return k, nil
}

func (b *softBackend) ecKey(label string) (esim.Curve, *ecdsa.PrivateKey, error) {
	k, err := b.get(label, "ec")
	if err != nil {
		return 0, nil, err
	}
	c, err := esim.ParseCurve(k.Curve)
	if err != nil {
		return 0, nil, err
	}
	pub, err := c.PublicKey(k.Point)
	if err != nil {
		return 0, nil, err
	}
	return c, &ecdsa.PrivateKey{PublicKey: *pub, D: new(big.Int).SetBytes(k.Value)}, nil
}

func (b *softBackend) sign(_ context.Context, _ int, label string, digest []byte) ([]byte, error) {
	_, priv, err := b.ecKey(label)
	if err != nil {
		return nil, err
	}
	r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

func (b *softBackend) ecdh(_ context.Context, _ int, c esim.Curve, peer []byte) (otpk, z []byte, err error) {
	b.ops.Add(1)
	switch c {
	case esim.CurveP256:
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		pp, err := ecdh.P256().NewPublicKey(peer)
		if err != nil {
			return nil, nil, ErrBadPoint
		}
		z, err := k.ECDH(pp)
		return k.PublicKey().Bytes(), z, err
	case esim.CurveBrainpoolP256r1:
		cv := c.Elliptic()
		d, x, y, err := elliptic.GenerateKey(cv, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		defer clear(d)
		px, py := new(big.Int).SetBytes(peer[1:33]), new(big.Int).SetBytes(peer[33:])
		zx, _ := cv.ScalarMult(px, py, d)
		z = make([]byte, 32)
		zx.FillBytes(z)
		return elliptic.Marshal(cv, x, y), z, nil //nolint:staticcheck // generic curve
	}
	return nil, nil, ErrUnknownCurve
}

func (b *softBackend) decrypt(_ context.Context, _ int, label string, alg transportAlg, ct []byte) ([]byte, error) {
	k, err := b.get(label, "")
	if err != nil {
		return nil, err
	}
	var blk cipher.Block
	switch {
	case alg.block == 16 && k.Kind == KindTransportAES:
		blk, err = aes.NewCipher(k.Value)
	case alg.block == 8 && k.Kind == KindTransport3DES:
		blk, err = des.NewTripleDESCipher(des3Key(k.Value))
	default:
		return nil, ErrWrongKeyType
	}
	if err != nil {
		return nil, err
	}
	pt := make([]byte, len(ct))
	if alg.cbc {
		cipher.NewCBCDecrypter(blk, make([]byte, blk.BlockSize())).CryptBlocks(pt, ct)
	} else {
		for i := 0; i < len(ct); i += blk.BlockSize() {
			blk.Decrypt(pt[i:], ct[i:])
		}
	}
	return pt, nil
}

func (b *softBackend) newDataKey(_ context.Context, _ int, kek string) (key, wrapped []byte, err error) {
	k, err := b.get(kek, KindKEK)
	if err != nil {
		return nil, nil, err
	}
	key = make([]byte, dataKeyLen)
	rand.Read(key)
	wrapped, err = aesKeyWrap(k.Value, key)
	return key, wrapped, err
}

func (b *softBackend) unwrapDataKey(_ context.Context, _ int, kek string, wrapped []byte) ([]byte, error) {
	k, err := b.get(kek, KindKEK)
	if err != nil {
		return nil, err
	}
	return aesKeyUnwrap(k.Value, wrapped)
}

func (b *softBackend) random(_ context.Context, _ int, n int) ([]byte, error) {
	b.ops.Add(1)
	r := make([]byte, n)
	_, err := rand.Read(r)
	return r, err
}

func (b *softBackend) publicKey(_ context.Context, _ int, label string) (esim.Curve, []byte, error) {
	k, err := b.get(label, "ec")
	if err != nil {
		return 0, nil, err
	}
	c, err := esim.ParseCurve(k.Curve)
	return c, append([]byte(nil), k.Point...), err
}

func (b *softBackend) ping(context.Context, int) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.keys == nil {
		return ErrClosed
	}
	return nil
}

func (b *softBackend) put(k *softKey) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.keys[k.Label]; ok {
		return fmt.Errorf("%w: %q", ErrKeyExists, k.Label)
	}
	b.keys[k.Label] = k
	if err := b.save(); err != nil {
		delete(b.keys, k.Label)
		return err
	}
	return nil
}

func (b *softBackend) createSecret(_ context.Context, _ int, label, kind string, value []byte) error {
	_, length, err := secretSpec(kind, value)
	if err != nil {
		return err
	}
	if value == nil {
		if kind == KindTransport3DES {
			length = 16
		}
		value = make([]byte, length)
		rand.Read(value)
	} else if kind != KindTransport3DES && len(value) != length {
		return fmt.Errorf("%w: %s key must be %d bytes", ErrBadInput, kind, length)
	}
	return b.put(&softKey{Label: label, Kind: kind, Value: append([]byte(nil), value...)})
}

func (b *softBackend) createEC(_ context.Context, _ int, label string, c esim.Curve, k *ecPrivate) ([]byte, error) {
	var d, point []byte
	if k == nil {
		dd, x, y, err := elliptic.GenerateKey(c.Elliptic(), rand.Reader)
		if err != nil {
			return nil, err
		}
		d, point = dd, elliptic.Marshal(c.Elliptic(), x, y) //nolint:staticcheck // generic curve
	} else {
		d, point = append([]byte(nil), k.D...), k.Point
	}
	if err := b.put(&softKey{Label: label, Kind: "ec", Curve: c.String(), Value: d, Point: point}); err != nil {
		return nil, err
	}
	return point, nil
}

func (b *softBackend) list(context.Context, int) ([]KeyInfo, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []KeyInfo
	for _, k := range b.keys {
		switch k.Kind {
		case "ec":
			out = append(out, KeyInfo{Label: k.Label, Class: "private", Type: "EC", Curve: k.Curve})
		case KindTransport3DES:
			out = append(out, KeyInfo{Label: k.Label, Class: "secret", Type: "3DES"})
		default:
			out = append(out, KeyInfo{Label: k.Label, Class: "secret", Type: "AES", Bits: 8 * len(k.Value)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out, nil
}

// aesKeyWrap is RFC 3394 AES key wrap (default IV), as CKM_AES_KEY_WRAP.
func aesKeyWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, ErrBadInput
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	out := make([]byte, 8+len(key))
	copy(out[8:], key)
	a := uint64(0xA6A6A6A6A6A6A6A6)
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			binary.BigEndian.PutUint64(buf[:8], a)
			copy(buf[8:], out[8*i:8*i+8])
			blk.Encrypt(buf[:], buf[:])
			a = binary.BigEndian.Uint64(buf[:8]) ^ uint64(n*j+i)
			copy(out[8*i:], buf[8:])
		}
	}
	binary.BigEndian.PutUint64(out[:8], a)
	clear(buf[:])
	return out, nil
}

// aesKeyUnwrap reverses aesKeyWrap, checking the integrity value.
func aesKeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, fmt.Errorf("%w: wrapped key length", ErrIntegrity)
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	out := make([]byte, 8*n)
	copy(out, wrapped[8:])
	a := binary.BigEndian.Uint64(wrapped[:8])
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			binary.BigEndian.PutUint64(buf[:8], a^uint64(n*j+i))
			copy(buf[8:], out[8*(i-1):8*i])
			blk.Decrypt(buf[:], buf[:])
			a = binary.BigEndian.Uint64(buf[:8])
			copy(out[8*(i-1):], buf[8:])
		}
	}
	clear(buf[:])
	var want, got [8]byte
	binary.BigEndian.PutUint64(want[:], 0xA6A6A6A6A6A6A6A6)
	binary.BigEndian.PutUint64(got[:], a)
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		clear(out)
		return nil, fmt.Errorf("%w: batch key blob rejected by the KEK", ErrIntegrity)
	}
	return out, nil
}
