package perso

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// capturingDecrypter keeps the plaintext buffers it hands out.
type capturingDecrypter struct {
	TransportDecrypter
	out [][]byte
}

func (c *capturingDecrypter) DecryptTransport(ctx context.Context, label, alg string, ct []byte) ([]byte, error) {
	pt, err := c.TransportDecrypter.DecryptTransport(ctx, label, alg, ct)
	c.out = append(c.out, pt)
	return pt, err
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// TestSecretsWiped: releasing a batch zeroes its secret buffers, the slots
// of rejected rows are wiped, and the decrypter's plaintext is wiped once
// copied into the batch.
func TestSecretsWiped(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "transport_aes_ecb.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := &capturingDecrypter{TransportDecrypter: testTransport(t)}
	r, err := NewOutReader(f, Options{Decrypter: dec, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(dec.out) != 2 {
		t.Fatalf("%d decrypter calls, want 2 (ki and opc columns)", len(dec.out))
	}
	for i, pt := range dec.out {
		if len(pt) != 4*16 || !allZero(pt) {
			t.Fatalf("decrypter plaintext %d not wiped", i)
		}
	}
	var secretBufs [][]byte
	for _, name := range []string{ColKi, ColOPc, ColPIN1, ColPUK1, ColADM1} {
		col := rec.Column(rec.Schema().FieldIndices(name)[0])
		b := col.Data().Buffers()[1].Bytes()
		if allZero(b) {
			t.Fatalf("column %s empty before release", name)
		}
		secretBufs = append(secretBufs, b)
	}
	rec.Release()
	for i, b := range secretBufs {
		if !allZero(b) {
			t.Fatalf("secret buffer %d not wiped by Release", i)
		}
	}
	r.Close()

	// a rejected row's decoded Ki must not linger in the batch buffer
	in := "iccid,imsi,ki,opc\n" +
		"8944150000000000017,234150000000001,00112233445566778899aabbccddeeff,00112233445566778899aabbccddeeff\n" +
		"8944150000000000018,234150000000002,ffeeddccbbaa99887766554433221100,ffeeddccbbaa99887766554433221100\n"
	r2, err := NewCSVReader(bytes.NewReader([]byte(in)), Options{BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	rec, err = r2.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	ki := rec.Column(cKi).Data().Buffers()[1].Bytes()
	if rec.NumRows() != 1 || len(ki) < 32 || !allZero(ki[16:]) {
		t.Fatalf("%d rows; the rejected row's Ki slot is not wiped", rec.NumRows())
	}
	// consumed input text is cleared as the buffer is refilled, and Close
	// wipes what is still buffered
	if lr := r2.src.(*csvSource).lr; !allZero(lr.buf) {
		t.Fatal("input text left in the line buffer after reading to the end")
	}
	r3, err := NewCSVReader(bytes.NewReader([]byte(in)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	lr := r3.src.(*csvSource).lr
	if allZero(lr.buf) {
		t.Fatal("line buffer empty before Close")
	}
	r3.Close()
	if !allZero(lr.buf) {
		t.Fatal("Close left input text in the line buffer")
	}
}
