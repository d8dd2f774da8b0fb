package perso

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

func TestSecretNeverPrints(t *testing.T) {
	ki := mustHex(t, "465b5ce8b199b49faa5f0a2ee238a6bc")
	rec := Record{ICCID: "8944150000000000017", IMSI: "234150000000001", Ki: ki, OPc: ki, ADM1: Secret("12345678"),
		OTA: []OTAKeySet{{KVN: 1, KIc: ki, KID: ki, KIK: ki}}}
	var logBuf bytes.Buffer
	lg := slog.New(slog.NewJSONHandler(&logBuf, nil))
	lg.Info("record", "ki", rec.Ki, "rec", rec)
	js, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"log": logBuf.String(), "json": string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		outputs["Secret "+verb] = fmt.Sprintf(verb, rec.Ki)
		outputs["Record "+verb] = fmt.Sprintf(verb, rec)
		outputs["*Record "+verb] = fmt.Sprintf(verb, &rec)
	}
	outputs["error"] = fmt.Errorf("bad record %v", rec).Error()
	for name, out := range outputs {
		for _, s := range []string{hex.EncodeToString(ki), strings.ToUpper(hex.EncodeToString(ki)), string(ki), "12345678",
			fmt.Sprint([]byte(ki))[1:12]} {
			if strings.Contains(out, s) {
				t.Errorf("%s leaks a secret: %s", name, out)
			}
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s does not show %q: %s", name, Redacted, out)
		}
	}
	if !bytes.Equal(rec.Ki.Bytes(), ki) {
		t.Fatal("Bytes must return the value")
	}
	rec.Wipe()
	if !bytes.Equal(rec.Ki, make([]byte, 16)) || !bytes.Equal(rec.OTA[0].KIK, make([]byte, 16)) {
		t.Fatal("Wipe must zero every secret")
	}
}

// Luhn digits are esim's (esim.TestLuhnDigit).

func TestValidatorCheck(t *testing.T) {
	ki := make(Secret, 16)
	good := func() Record {
		return Record{ICCID: "8944150000000000017", IMSI: "234150000000001", Ki: ki, OPc: ki, Algorithm: esim.AlgorithmMilenage, PIN1: Secret("1234\xff\xff\xff\xff")}
	}
	cases := []struct {
		name   string
		rules  Rules
		mutate func(*Record)
		column string // "" = accepted
		reason string
	}{
		{"good record", Rules{}, func(*Record) {}, "", ""},
		{"18-digit ICCID", Rules{}, func(r *Record) { r.ICCID = "894415000000000005" }, "", ""},
		{"20-digit ICCID", Rules{}, func(r *Record) { r.ICCID = "89441500000000000005" }, "", ""},
		{"17-digit ICCID", Rules{}, func(r *Record) { r.ICCID = "89441500000000004" }, ColICCID, "wrong length"},
		{"bad Luhn", Rules{}, func(r *Record) { r.ICCID = "8944150000000000018" }, ColICCID, "Luhn"},
		{"letters in ICCID", Rules{}, func(r *Record) { r.ICCID = "89441500000000000F7" }, ColICCID, "not decimal"},
		{"IMSI of 16 digits", Rules{}, func(r *Record) { r.IMSI = "2341500000000011" }, ColIMSI, "wrong length"},
		{"IMSI of 6 digits", Rules{}, func(r *Record) { r.IMSI = "234150" }, "", ""},
		{"MCC/MNC match", Rules{MCC: "234", MNC: "15"}, func(*Record) {}, "", ""},
		{"MNC mismatch", Rules{MCC: "234", MNC: "10"}, func(*Record) {}, ColIMSI, "MCC/MNC"},
		{"3-digit MNC mismatch", Rules{MCC: "234", MNC: "150"}, func(r *Record) { r.IMSI = "234151000000001" }, ColIMSI, "MCC/MNC"},
		{"IMSI in range", Rules{IMSIFirst: "234150000000000", IMSILast: "234150000000009"}, func(*Record) {}, "", ""},
		{"IMSI above range", Rules{IMSIFirst: "234150000000002", IMSILast: "234150000000009"}, func(*Record) {}, ColIMSI, "range"},
		{"ICCID in range (payload bounds)", Rules{ICCIDFirst: "894415000000000001", ICCIDLast: "894415000000000001"}, func(*Record) {}, "", ""},
		{"ICCID below range (full bounds)", Rules{ICCIDFirst: "8944150000000000025", ICCIDLast: "8944150000000000033"}, func(*Record) {}, ColICCID, "range"},
		{"ICCID prefix", Rules{ICCIDPrefix: "8949"}, func(*Record) {}, ColICCID, "prefix"},
		{"short Ki", Rules{}, func(r *Record) { r.Ki = ki[:15] }, ColKi, "wrong length"},
		{"Milenage with 32-byte Ki", Rules{}, func(r *Record) { r.Ki = make(Secret, 32) }, ColKi, "Milenage"},
		{"TUAK with 32-byte Ki", Rules{}, func(r *Record) { r.Ki, r.Algorithm = make(Secret, 32), esim.AlgorithmTUAK }, "", ""},
		{"no OPc nor OP", Rules{}, func(r *Record) { r.OPc = nil }, ColOPc, "missing"},
		{"OP only", Rules{}, func(r *Record) { r.OPc, r.OP = nil, ki }, "", ""},
		{"test algorithm needs no OPc", Rules{}, func(r *Record) { r.OPc, r.Algorithm = nil, esim.AlgorithmTest }, "", ""},
		{"unknown algorithm", Rules{}, func(r *Record) { r.Algorithm = 9 }, ColAlgorithm, "unknown"},
		{"PIN not in card form", Rules{}, func(r *Record) { r.PIN1 = Secret("1234") }, ColPIN1, "8-byte"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewValidator(c.rules)
			if err != nil {
				t.Fatal(err)
			}
			r := good()
			c.mutate(&r)
			ps := v.Check(&r)
			if c.column == "" {
				if len(ps) != 0 {
					t.Fatalf("rejected: %v", ps)
				}
				// a second identical record is a duplicate
				if ps := v.Check(&r); len(ps) != 1 || !strings.Contains(ps[0].Reason, "duplicate") {
					t.Fatalf("second copy: %v, want a duplicate problem", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Column != c.column || !strings.Contains(ps[0].Error(), c.reason) {
				t.Fatalf("problems %v, want one on %s about %q", ps, c.column, c.reason)
			}
		})
	}
}

func TestRulesCheck(t *testing.T) {
	bad := []Rules{{MCC: "23"}, {MNC: "15"}, {MCC: "234", MNC: "1"}, {MCC: "2a4"}, {IMSIFirst: "1"}, {IMSIFirst: "2", IMSILast: "1"},
		{ICCIDFirst: "89", ICCIDLast: "8"}}
	for _, r := range bad {
		if _, err := NewValidator(r); err == nil {
			t.Errorf("rules %+v accepted", r)
		}
	}
}

func TestDigitSet(t *testing.T) {
	var s digitSet
	// consecutive values cross several containers and go dense; scattered
	// ones stay sparse
	for v := uint64(60000); v < 200000; v++ {
		s.add(setKey{15, v})
	}
	for _, v := range []uint64{1 << 40, 7, 1<<63 + 5} {
		s.add(setKey{19, v})
	}
	for _, c := range []struct {
		k    setKey
		want bool
	}{{setKey{15, 60000}, true}, {setKey{15, 199999}, true}, {setKey{15, 59999}, false}, {setKey{15, 200000}, false},
		{setKey{14, 60000}, false}, {setKey{19, 7}, true}, {setKey{19, 8}, false}, {setKey{19, 1<<63 + 5}, true}} {
		if got := s.has(c.k); got != c.want {
			t.Errorf("has(%v) = %v, want %v", c.k, got, c.want)
		}
	}
}

func TestValidateHasNoMemory(t *testing.T) {
	r := Record{ICCID: "8944150000000000017", IMSI: "234150000000001", Ki: make(Secret, 16), OPc: make(Secret, 16), Algorithm: esim.AlgorithmMilenage}
	for i := 0; i < 2; i++ {
		if ps := Validate(&r, Rules{MCC: "234", MNC: "15"}); len(ps) != 0 {
			t.Fatalf("call %d: %v", i, ps)
		}
	}
	if ps := Validate(&r, Rules{MCC: "208", MNC: "01"}); len(ps) != 1 || ps[0].Column != ColIMSI {
		t.Fatalf("MCC mismatch: %v", ps)
	}
}

func TestOutWriterEmpty(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewOutWriter(&buf, Layout{}.Schema(), OutFileHeader{Customer: "Acme", Quantity: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewOutReader(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); len(got) != 0 || r.OutHeader().Quantity != 0 {
		t.Fatalf("empty .out: %d records", len(got))
	}
}

func TestCodeText(t *testing.T) {
	cases := []struct {
		in   []byte
		want string
	}{
		{[]byte("1234\xff\xff\xff\xff"), "1234"},
		{[]byte("12345678"), "12345678"},
		{[]byte{0x3b, 0x9f, 0x0e, 0x2d, 0x7c, 0x6a, 0x5b, 0x41}, "3B9F0E2D7C6A5B41"},
		{[]byte("123\xff\xff\xff\xff\xff"), "313233FFFFFFFFFF"}, // 3 digits is not a PIN: shown as binary
		{nil, ""},
	}
	for _, c := range cases {
		if got := esim.CodeText(c.in); got != c.want {
			t.Errorf("esim.CodeText(% x) = %q, want %q", c.in, got, c.want)
		}
		if len(c.in) == 8 && c.want != "" {
			// the text form reads back to the same card value
			in := "iccid,imsi,ki,opc,adm1\n8944150000000000017,234150000000001,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f," + c.want + "\n"
			var rejects RejectList
			r, err := NewCSVReader(strings.NewReader(in), Options{Rejects: &rejects})
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r)
			if len(got) != 1 || !bytes.Equal(got[0].ADM1, c.in) {
				t.Errorf("%q does not read back as % x (rejects %v)", c.want, c.in, rejects.Items)
			}
		}
	}
}
