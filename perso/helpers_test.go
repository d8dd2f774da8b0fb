package perso

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
)

// readAll drains a Reader into Records and returns them with the rejects.
func readAll(t testing.TB, r *Reader) []Record {
	t.Helper()
	var out []Record
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, recordsOf(t, rec)...)
		rec.Release()
	}
}

func recordsOf(t testing.TB, rec arrow.Record) []Record {
	t.Helper()
	var out []Record
	for i := 0; i < int(rec.NumRows()); i++ {
		r, err := RecordAt(rec, i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// generate returns n generated records (and their batches' schema layout).
func generate(t testing.TB, o GenOptions) []Record {
	t.Helper()
	g, err := NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var out []Record
	for {
		rec, err := g.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recordsOf(t, rec)...)
		rec.Release()
	}
}

// sameRecords compares records field by field, naming the first difference
// without printing secret values.
func sameRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if d := recordDiff(&got[i], &want[i]); d != "" {
			t.Fatalf("record %d (ICCID %s): %s differs", i, want[i].ICCID, d)
		}
	}
}

func recordDiff(a, b *Record) string {
	str := []struct {
		n    string
		x, y string
	}{{"iccid", a.ICCID, b.ICCID}, {"imsi", a.IMSI, b.IMSI}, {"msisdn", a.MSISDN, b.MSISDN}, {"smsc", a.SMSC, b.SMSC},
		{"spn", a.SPN, b.SPN}, {"profile_name", a.ProfileName, b.ProfileName}, {"service_provider", a.ServiceProvider, b.ServiceProvider},
		{"profile_type", a.ProfileType, b.ProfileType}, {"profile_class", a.ProfileClass, b.ProfileClass}}
	for _, s := range str {
		if s.x != s.y {
			return s.n
		}
	}
	sec := []struct {
		n    string
		x, y Secret
	}{{"ki", a.Ki, b.Ki}, {"opc", a.OPc, b.OPc}, {"op", a.OP, b.OP}, {"pin1", a.PIN1, b.PIN1}, {"puk1", a.PUK1, b.PUK1},
		{"pin2", a.PIN2, b.PIN2}, {"puk2", a.PUK2, b.PUK2}, {"adm1", a.ADM1, b.ADM1}}
	for _, s := range sec {
		if !bytes.Equal(s.x, s.y) {
			return s.n
		}
	}
	if a.Algorithm != b.Algorithm {
		return "algorithm"
	}
	if len(a.OTA) != len(b.OTA) {
		return "ota key sets"
	}
	for i := range a.OTA {
		x, y := a.OTA[i], b.OTA[i]
		if x.KVN != y.KVN || !bytes.Equal(x.KIc, y.KIc) || !bytes.Equal(x.KID, y.KID) || !bytes.Equal(x.KIK, y.KIK) {
			return "ota key set " + string(rune('0'+x.KVN))
		}
	}
	return ""
}

// secretHexes lists every secret of the records as upper- and lower-case hex.
func secretHexes(recs []Record) []string {
	var out []string
	add := func(s Secret) {
		if len(s) > 0 {
			h := hex.EncodeToString(s)
			out = append(out, h, strings.ToUpper(h))
		}
	}
	for _, r := range recs {
		add(r.Ki)
		add(r.OPc)
		add(r.OP)
		for _, k := range r.OTA {
			add(k.KIc)
			add(k.KID)
			add(k.KIK)
		}
	}
	return out
}

func mustHex(t testing.TB, s string) Secret {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
