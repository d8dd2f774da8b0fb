package perso

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// TransportDecrypter decrypts data encrypted under a transport key that
// lives in the HSM; the key never leaves it. hsmpool.Pool implements it.
// alg is one of the Transport* algorithm names; CBC uses a zero IV. The
// ciphertext is a whole number of cipher blocks and the result has the same
// length; the caller wipes the result after use.
type TransportDecrypter interface {
	DecryptTransport(ctx context.Context, keyLabel string, alg string, ciphertext []byte) ([]byte, error)
}

// Transport algorithms.
const (
	TransportAES128ECB = "AES-128-ECB"
	TransportAES128CBC = "AES-128-CBC" // zero IV, each value encrypted on its own
	Transport3DESECB   = "3DES-ECB"
	Transport3DESCBC   = "3DES-CBC" // zero IV, each value encrypted on its own
)

// Transport names the transport key protecting the secret columns.
type Transport struct {
	Key int    // transport key number N (HSM label "transport-N"); 0 = plaintext input
	Alg string // one of the Transport* algorithms (aliases accepted, see ParseTransportAlg)
	// Columns lists the encrypted columns (default ki, opc, op). Name OTA
	// key columns (kic1, kid1, ...) here when the vendor encrypted them too.
	Columns []string
}

// TransportKeyLabel is the HSM label of transport key number n.
func TransportKeyLabel(n int) string { return "transport-" + strconv.Itoa(n) }

// ParseTransportAlg normalises the algorithm names found in SIM-vendor
// files ("AES", "AES128", "aes-128-cbc", "3DES", "DES3", "TDES-CBC", ...) to
// one of the Transport* constants. A bare cipher name means ECB.
func ParseTransportAlg(s string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	u = strings.NewReplacer("-", "", "_", "", " ", "", "/", "").Replace(u)
	mode := "ECB"
	for _, m := range []string{"ECB", "CBC"} {
		if strings.HasSuffix(u, m) {
			mode, u = m, strings.TrimSuffix(u, m)
		}
	}
	switch u {
	case "AES", "AES128":
		return "AES-128-" + mode, nil
	case "3DES", "DES3", "TDES", "TDEA", "DESEDE":
		return "3DES-" + mode, nil
	}
	return "", fmt.Errorf("unknown transport algorithm (want AES-128-ECB, AES-128-CBC, 3DES-ECB or 3DES-CBC)")
}

// transportBlockSize returns the cipher block size of alg.
func transportBlockSize(alg string) int {
	if strings.HasPrefix(alg, "3DES") {
		return des.BlockSize
	}
	return aes.BlockSize
}

// transportState is a Reader's view of the transport encryption of its input.
type transportState struct {
	active bool
	label  string
	alg    string
	cbc    bool
	cols   []int
	dec    TransportDecrypter
}

// setup resolves Options.Transport (already merged with a .out header).
func (t *transportState) setup(o *Options, cols []bool, l Layout) error {
	if o.Transport.Key == 0 {
		return nil
	}
	if o.Transport.Key < 0 {
		return errors.New("transport key number must be positive")
	}
	if o.Transport.Alg == "" {
		return fmt.Errorf("transport key %d given without its algorithm", o.Transport.Key)
	}
	alg, err := ParseTransportAlg(o.Transport.Alg)
	if err != nil {
		return err
	}
	if o.Decrypter == nil && !o.KeepEncrypted {
		return fmt.Errorf("input is encrypted under transport key %d but no decrypter is configured", o.Transport.Key)
	}
	*t = transportState{active: true, label: TransportKeyLabel(o.Transport.Key), alg: alg,
		cbc: strings.HasSuffix(alg, "CBC"), dec: o.Decrypter}
	names := o.Transport.Columns
	if len(names) == 0 {
		names = []string{ColKi, ColOPc, ColOP}
	}
	for _, n := range names {
		c := -1
		for i := 0; i < l.numCols(); i++ {
			if l.colName(i) == strings.ToLower(n) {
				c = i
			}
		}
		if c < 0 || l.width(c) == 0 || c == cPIN1 || c == cPUK1 || c == cPIN2 || c == cPUK2 || c == cADM1 {
			return fmt.Errorf("transport column %q is not a key column of this input", n)
		}
		if cols[c] && !slices.Contains(t.cols, c) {
			t.cols = append(t.cols, c)
		}
	}
	return nil
}

// decryptColumn decrypts one fixed-size column of the batch in place with a
// single DecryptTransport call: the values are concatenated. For ECB that is
// exactly the per-value result. For CBC (each value encrypted on its own
// with a zero IV) a chained decryption of the concatenation differs only in
// the first block of each value, which came out XORed with the previous
// value's last ciphertext block; XORing that block again undoes it.
func (t *transportState) decryptColumn(ctx context.Context, b *batch, col int) error {
	w := b.cols[col].width
	bs := transportBlockSize(t.alg)
	if w%bs != 0 {
		return fmt.Errorf("column %s: %d-byte values are not whole %s blocks", b.l.colName(col), w, t.alg)
	}
	n := b.n
	ct := b.cols[col].data[:n*w]
	pt, err := t.dec.DecryptTransport(ctx, t.label, t.alg, ct)
	defer wipe(pt)
	if err != nil {
		return fmt.Errorf("transport decryption of column %s under %s: %w", b.l.colName(col), t.label, err)
	}
	if len(pt) != len(ct) {
		return fmt.Errorf("transport decryption of column %s: got %d bytes for %d", b.l.colName(col), len(pt), len(ct))
	}
	if t.cbc {
		for j := n - 1; j >= 1; j-- {
			first, prevLast := pt[j*w:j*w+bs], ct[j*w-bs:j*w]
			for k := range first {
				first[k] ^= prevLast[k]
			}
		}
	}
	copy(ct, pt)
	for j := 0; j < n; j++ {
		if !b.isValid(col, j) {
			clear(b.fixedAt(col, j))
		}
	}
	return nil
}

// newTransportCipher returns the block cipher for alg and key.
func newTransportCipher(alg string, key []byte) (cipher.Block, error) {
	switch {
	case strings.HasPrefix(alg, "AES-128"):
		if len(key) != 16 {
			return nil, errors.New("AES-128 transport key must be 16 bytes")
		}
		return aes.NewCipher(key)
	case strings.HasPrefix(alg, "3DES"):
		k := key
		switch len(key) {
		case 16: // two-key 3DES: K1 K2 K1
			k = make([]byte, 24)
			copy(k, key)
			copy(k[16:], key[:8])
			defer wipe(k)
		case 24:
		default:
			return nil, errors.New("3DES transport key must be 16 or 24 bytes")
		}
		return des.NewTripleDESCipher(k)
	}
	return nil, fmt.Errorf("unknown transport algorithm")
}

// TransportEncrypt encrypts a column of fixed-size values under a software
// key, each value on its own (CBC restarts with a zero IV per value): the
// format operators deliver. Development and test-data generation only.
func TransportEncrypt(alg string, key, plaintext []byte, valueSize int) ([]byte, error) {
	return transportCrypt(alg, key, plaintext, valueSize, true)
}

func transportCrypt(alg string, key, in []byte, valueSize int, encrypt bool) ([]byte, error) {
	alg, err := ParseTransportAlg(alg)
	if err != nil {
		return nil, err
	}
	blk, err := newTransportCipher(alg, key)
	if err != nil {
		return nil, err
	}
	bs := blk.BlockSize()
	if valueSize <= 0 || valueSize%bs != 0 || len(in)%valueSize != 0 {
		return nil, fmt.Errorf("transport %s: data is not whole %d-byte values of whole blocks", alg, valueSize)
	}
	out := make([]byte, len(in))
	iv := make([]byte, bs)
	cbc := strings.HasSuffix(alg, "CBC")
	for off := 0; off < len(in); off += valueSize {
		src, dst := in[off:off+valueSize], out[off:off+valueSize]
		switch {
		case cbc && encrypt:
			cipher.NewCBCEncrypter(blk, iv).CryptBlocks(dst, src)
		case cbc:
			cipher.NewCBCDecrypter(blk, iv).CryptBlocks(dst, src)
		default:
			for i := 0; i < valueSize; i += bs {
				if encrypt {
					blk.Encrypt(dst[i:i+bs], src[i:i+bs])
				} else {
					blk.Decrypt(dst[i:i+bs], src[i:i+bs])
				}
			}
		}
	}
	return out, nil
}

// SoftwareTransport is a TransportDecrypter holding transport keys in
// process memory. DEVELOPMENT AND TESTS ONLY: in production the transport
// key must stay inside the HSM (use hsmpool.Pool).
type SoftwareTransport struct {
	mu   sync.RWMutex
	keys map[string][]byte
}

// NewSoftwareTransport returns an empty development-only key store.
func NewSoftwareTransport() *SoftwareTransport {
	return &SoftwareTransport{keys: make(map[string][]byte)}
}

// Add stores a copy of key under label (e.g. TransportKeyLabel(3)).
func (s *SoftwareTransport) Add(label string, key []byte) error {
	if len(key) != 16 && len(key) != 24 {
		return errors.New("transport key must be 16 or 24 bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.keys[label]; old != nil {
		wipe(old)
	}
	s.keys[label] = append([]byte(nil), key...)
	return nil
}

// DecryptTransport implements TransportDecrypter. Like an HSM's C_Decrypt,
// CBC chains across the whole input (zero IV at the start only).
func (s *SoftwareTransport) DecryptTransport(ctx context.Context, keyLabel, alg string, ciphertext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	key := s.keys[keyLabel]
	s.mu.RUnlock()
	if key == nil {
		return nil, fmt.Errorf("no transport key %q", keyLabel)
	}
	if len(ciphertext) == 0 {
		return []byte{}, nil
	}
	return transportCrypt(alg, key, ciphertext, len(ciphertext), false)
}

// Wipe zeroes and forgets every key.
func (s *SoftwareTransport) Wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l, k := range s.keys {
		wipe(k)
		delete(s.keys, l)
	}
}

// DeriveOPc computes the Milenage OPc from K and OP: OPc = AES-128_K(OP) XOR OP.
func DeriveOPc(k, op []byte) (Secret, error) {
	out := make(Secret, 16)
	if err := deriveOPc(out, k, op); err != nil {
		return nil, err
	}
	return out, nil
}

func deriveOPc(dst, k, op []byte) error {
	if len(k) != 16 || len(op) != 16 {
		return errors.New("OPc derivation needs a 16-byte K and OP")
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return err
	}
	blk.Encrypt(dst, op)
	for i := range dst {
		dst[i] ^= op[i]
	}
	return nil
}

// deriveOPcColumn fills opc from ki and op for the rows that lack it.
func deriveOPcColumn(b *batch) error {
	for i := 0; i < b.n; i++ {
		if b.isValid(cOPc, i) || !b.isValid(cOP, i) {
			continue
		}
		if err := deriveOPc(b.fixedAt(cOPc, i), b.fixedAt(cKi, i), b.fixedAt(cOP, i)); err != nil {
			return fmt.Errorf("column opc: %w", err)
		}
		b.setValid(cOPc, i)
	}
	return nil
}
