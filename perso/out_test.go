package perso

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testTransport holds the made-up transport keys of the fixtures.
func testTransport(t testing.TB) *SoftwareTransport {
	t.Helper()
	st := NewSoftwareTransport()
	// key 3: the AES-128 key of NIST SP 800-38A F.1.1, so the fixture's
	// ciphertexts are the published ECB-AES128 vectors
	if err := st.Add(TransportKeyLabel(3), mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c")); err != nil {
		t.Fatal(err)
	}
	// key 5: a made-up two-key 3DES key
	if err := st.Add(TransportKeyLabel(5), mustHex(t, "0123456789abcdeffedcba9876543210")); err != nil {
		t.Fatal(err)
	}
	return st
}

// renderGolden renders what a reader made of an input: header, rejects and
// records (secrets in hex: the fixtures are made up).
func renderGolden(t *testing.T, r *Reader, rejects *RejectList) string {
	t.Helper()
	var b bytes.Buffer
	if h := r.OutHeader(); h != nil {
		for _, k := range h.Keys {
			fmt.Fprintf(&b, "# header %s = %s\n", k, h.Fields[k])
		}
		fmt.Fprintf(&b, "# quantity %d (line %d), transport key %d %s, var_out %s, data from line %d\n",
			h.Quantity, h.QuantityLine, h.TransportKey, h.TransportAlg, strings.Join(h.VarOut, "/"), h.DataLine)
	}
	fmt.Fprintf(&b, "# ignored columns %q\n", r.IgnoredColumns())
	var w *CSVWriter
	for {
		rec, err := r.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if w == nil {
			if w, err = NewCSVWriter(&b, rec.Schema(), ','); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if w != nil {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, rj := range rejects.Items {
		fmt.Fprintf(&b, "# reject %s\n", rj)
	}
	fmt.Fprintf(&b, "# stats %+v\n", r.Stats())
	return b.String()
}

func TestOutGolden(t *testing.T) {
	cases := []struct {
		file string
		opts Options
		// independent expectations, on top of the golden file
		check func(t *testing.T, recs []Record)
	}{
		{file: "plain_opc.out", opts: Options{Rules: Rules{MCC: "234", MNC: "15"}}, check: func(t *testing.T, recs []Record) {
			if len(recs) != 3 || recs[0].OTA[0].KVN != 1 || string(recs[2].PIN1) != "4711\xFF\xFF\xFF\xFF" {
				t.Fatalf("plain .out: unexpected records")
			}
		}},
		{file: "transport_aes_ecb.out", opts: Options{Decrypter: testTransport(t)}, check: func(t *testing.T, recs []Record) {
			// the SP 800-38A plaintext blocks come back
			for i, p := range []string{"6bc1bee22e409f96e93d7e117393172a", "ae2d8a571e03ac9c9eb76fac45af8e51",
				"30c81c46a35ce411e5fbc1191a0a52ef", "f69f2445df4f9b17ad2b417be66c3710"} {
				if !bytes.Equal(recs[i].Ki, mustHex(t, p)) {
					t.Fatalf("record %d: Ki not decrypted to the SP 800-38A plaintext", i)
				}
			}
		}},
		{file: "transport_aes_ecb.out", opts: Options{Decrypter: testTransport(t), Transport: Transport{Key: 3, Alg: "aes"}}},
		{file: "transport_3des_cbc_op.out", opts: Options{Decrypter: testTransport(t), BatchSize: 2}, check: func(t *testing.T, recs []Record) {
			// 3GPP TS 35.208 test sets 1 and 2: OPc derived from the decrypted K and OP
			for i, want := range []string{"cd63cb71954a9f4e48a5994e37a02baf", "53c15671c60a4b731c55b4a441c0bde2"} {
				if !bytes.Equal(recs[i].OPc, mustHex(t, want)) {
					t.Fatalf("record %d: derived OPc differs from TS 35.208", i)
				}
			}
		}},
		{file: "transport_3des_cbc_op.out", opts: Options{KeepEncrypted: true}},
	}
	for _, c := range cases {
		name := strings.TrimSuffix(c.file, ".out")
		golden := name
		if c.opts.KeepEncrypted {
			golden += "_encrypted"
		}
		t.Run(golden, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var rejects RejectList
			c.opts.File, c.opts.Rejects = c.file, &rejects
			r, err := NewOutReader(f, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := renderGolden(t, r, &rejects)
			path := filepath.Join("testdata", golden+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("output differs from %s (run go test -run TestOutGolden -update and review the diff):\n%s", path, got)
			}
			if len(rejects.Items) != 0 {
				t.Fatalf("unexpected rejects %v", rejects.Items)
			}
			if c.check != nil {
				f.Seek(0, io.SeekStart)
				r, err := NewOutReader(f, c.opts)
				if err != nil {
					t.Fatal(err)
				}
				c.check(t, readAll(t, r))
			}
		})
	}
}

func TestOutHeaderErrors(t *testing.T) {
	star := strings.Repeat("*", 32) + "\n"
	head := star + "* HEADER DESCRIPTION\n" + star
	out := star + "* OUTPUT VARIABLES\n" + star
	cases := []struct {
		name, in string
		opts     Options
		want     string
	}{
		{"no var_out", head + "Customer: X\nQuantity: 1\n", Options{}, "no var_out"},
		{"quantity not a number", head + "Quantity: many\n" + out + "var_out: ICCID/IMSI/KI/OPC\n", Options{}, "Quantity is not a number"},
		{"transport key without decrypter", head + "Quantity: 0\nTransport_key: 2\nTransport_alg: AES\n" + out + "var_out: ICCID/IMSI/KI/OPC\n", Options{}, "no decrypter"},
		{"transport key without algorithm", head + "Transport_key: 2\n" + out + "var_out: ICCID/IMSI/KI/OPC\n", Options{Decrypter: NewSoftwareTransport()}, "without its algorithm"},
		{"contradicting transport key", head + "Transport_key: 2\nTransport_alg: AES\n" + out + "var_out: ICCID/IMSI/KI/OPC\n",
			Options{Decrypter: NewSoftwareTransport(), Transport: Transport{Key: 4, Alg: "AES"}}, "contradicts"},
		{"unknown transport algorithm", head + "Transport_key: 2\nTransport_alg: RC4\n" + out + "var_out: ICCID/IMSI/KI/OPC\n", Options{Decrypter: NewSoftwareTransport()}, "unknown transport algorithm"},
		{"no ki in var_out", head + out + "var_out: ICCID/IMSI/OPC\n", Options{}, "no ki column"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewOutReader(strings.NewReader(c.in), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestOutHeaderKeepsNoSecret(t *testing.T) {
	star := strings.Repeat("*", 32) + "\n"
	in := star + "* HEADER DESCRIPTION\n" + star + "Customer: X\nOP: 00112233445566778899aabbccddeeff\nKIC1: 0011\n" +
		star + "* OUTPUT VARIABLES\n" + star + "var_out: ICCID/IMSI/KI/OPC\n"
	r, err := NewOutReader(strings.NewReader(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := r.OutHeader()
	if h.Fields["OP"] != Redacted || h.Fields["KIC1"] != Redacted || h.Fields["Customer"] != "X" {
		t.Fatalf("header fields %v: secret-named entries must be redacted, others kept", h.Fields)
	}
}

// TestOutSerialRange: Ser_nb may be given with or without its check digit;
// the ICCIDs' length decides, even when Ser_nb happens to pass Luhn.
func TestOutSerialRange(t *testing.T) {
	q, _ := ICCIDWithCheck("894415000000000100") // 19 digits passing Luhn, used as a 19-digit payload
	row := func(payload string, imsi string) string {
		iccid, _ := ICCIDWithCheck(payload)
		return iccid + " " + imsi + " 000102030405060708090A0B0C0D0E0F 000102030405060708090A0B0C0D0E0F\n"
	}
	star := strings.Repeat("*", 32) + "\n"
	head := func(ser string) string {
		return star + "* HEADER DESCRIPTION\n" + star + "Quantity: 3\n" + star + "* INPUT VARIABLES\n" + star +
			"Var_In_List:\nIMSI: 234150000000001\nSer_nb: " + ser + "\n" + star + "* OUTPUT VARIABLES\n" + star + "var_out: ICCID/IMSI/KI/OPC\n"
	}
	next := func(d string, k int64) string { return addDigits(d, k) }
	cases := []struct {
		name    string
		in      string
		rejects []int64
	}{
		{"Ser_nb as a Luhn-valid 19-digit payload of 20-digit ICCIDs", head(q) +
			row(q, "234150000000001") + row(next(q, 1), "234150000000002") + row(next(q, 3), "234150000000003"), []int64{17}},
		{"Ser_nb as a full 19-digit ICCID", head(q) +
			row(q[:18], "234150000000001") + row(next(q[:18], 1), "234150000000002") + row(next(q[:18], 2), "234150000000004"), []int64{17}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rejects RejectList
			r, err := NewOutReader(strings.NewReader(c.in), Options{Rejects: &rejects})
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, r)
			var lines []int64
			for _, rj := range rejects.Items {
				lines = append(lines, rj.Line)
			}
			if fmt.Sprint(lines) != fmt.Sprint(c.rejects) {
				t.Fatalf("rejects %v, want lines %v", rejects.Items, c.rejects)
			}
		})
	}
}
