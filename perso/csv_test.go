package perso

import (
	"bytes"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

func TestCSVRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		gen   GenOptions
		delim rune
		batch int
	}{
		{"milenage, comma, one partial batch", GenOptions{Count: 10, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001"}, ',', 64},
		{"semicolon, several batches, OTA keys, metadata", GenOptions{Count: 300, ICCIDStart: "89441500000000000005", IMSIStart: "234150000000001",
			Layout: Layout{OTAKVNs: []uint8{1, 2}}, MSISDNStart: "447700900000", SMSC: "+447785016005", SPN: "Acme, \"Mobile\"",
			ProfileName: "ACME 5G", ServiceProvider: "Acme", ProfileType: "operational", ProfileClass: "prod"}, ';', 128},
		{"TUAK-256", GenOptions{Count: 20, ICCIDStart: "8944150000000000017", IMSIStart: "23415000001", Algorithm: esim.AlgorithmTUAK,
			Layout: Layout{KiBytes: 32, OPcBytes: 32}}, '\t', 7},
		{"test algorithm without OPc", GenOptions{Count: 5, ICCIDStart: "894415000000000005", IMSIStart: "001010000000001", Algorithm: esim.AlgorithmTest}, ',', 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := generate(t, c.gen)
			var buf bytes.Buffer
			b, err := NewBuilder(c.gen.Layout, nil, len(want))
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if err := b.Append(&want[i]); err != nil {
					t.Fatal(err)
				}
			}
			rec := b.NewRecord()
			w, err := NewCSVWriter(&buf, rec.Schema(), c.delim)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			rec.Release()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			var rejects RejectList
			r, err := NewCSVReader(&buf, Options{Delimiter: c.delim, BatchSize: c.batch, Layout: c.gen.Layout,
				Rejects: &rejects, DefaultAlgorithm: c.gen.Algorithm})
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, r)
			if len(rejects.Items) != 0 {
				t.Fatalf("rejects: %v", rejects.Items)
			}
			sameRecords(t, got, want)
			if s := r.Stats(); s.Records != int64(len(want)) || s.Rows != int64(len(want)) || s.Rejected != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestCSVHeaderMapping(t *testing.T) {
	in := "\xEF\xBB\xBFICCID;Imsi;KI;OPc;PIN_1;puk-1;Adm;KIC_3;kid3;KIK3;Comment\r\n" +
		"\r\n" +
		" 8944150000000000017 ;\"234150000000001\";000102030405060708090A0B0C0D0E0F;0f0e0d0c0b0a09080706050403020100;1234;12345678;0011223344556677;" +
		"101112131415161718191a1b1c1d1e1f;202122232425262728292a2b2c2d2e2f;303132333435363738393a3b3c3d3e3f;\"free; text\"\r\n"
	var rejects RejectList
	r, err := NewCSVReader(strings.NewReader(in), Options{Delimiter: ';', Rejects: &rejects})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if len(rejects.Items) > 0 {
			t.Errorf("rejects: %v", rejects.Items)
		}
	}()
	if got := r.IgnoredColumns(); len(got) != 1 || got[0] != "Comment" {
		t.Fatalf("ignored columns %q, want [Comment]", got)
	}
	got := readAll(t, r)
	want := Record{ICCID: "8944150000000000017", IMSI: "234150000000001", Algorithm: esim.AlgorithmMilenage,
		Ki: mustHex(t, "000102030405060708090a0b0c0d0e0f"), OPc: mustHex(t, "0f0e0d0c0b0a09080706050403020100"),
		PIN1: Secret("1234\xFF\xFF\xFF\xFF"), PUK1: Secret("12345678"), ADM1: mustHex(t, "0011223344556677"),
		OTA: []OTAKeySet{{KVN: 3, KIc: mustHex(t, "101112131415161718191a1b1c1d1e1f"), KID: mustHex(t, "202122232425262728292a2b2c2d2e2f"),
			KIK: mustHex(t, "303132333435363738393a3b3c3d3e3f")}}}
	sameRecords(t, got, []Record{want})
	if l := r.Layout(); len(l.OTAKVNs) != 1 || l.OTAKVNs[0] != 3 {
		t.Fatalf("layout KVNs %v, want [3]", l.OTAKVNs)
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"empty input", "", "no header row"},
		{"no ki column", "iccid,imsi,opc\n", "no ki column"},
		{"no opc or op", "iccid,imsi,ki\n", "no opc or op column"},
		{"same field twice", "iccid,imsi,ki,KI,opc\n", "same field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewCSVReader(strings.NewReader(c.in), Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestCSVLongLines: lines longer than the read buffer are read whole; lines
// longer than 1 MiB are rejected and reading goes on with the next line.
func TestCSVLongLines(t *testing.T) {
	good := func(n int) string {
		iccid, _ := ICCIDWithCheck("89441500000000000" + string(rune('0'+n)))
		return iccid + ",23415000000000" + string(rune('0'+n)) + ",000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f"
	}
	in := "iccid,imsi,ki,opc,profile_name\n" +
		good(1) + "," + strings.Repeat("x", 300<<10) + "\n" + // 300 KiB: longer than the buffer, metadata too long
		good(2) + "," + strings.Repeat("y", 2<<20) + "\n" + // 2 MiB: over the line limit
		good(3) + ",ok\n"
	var rejects RejectList
	r, err := NewCSVReader(strings.NewReader(in), Options{Rejects: &rejects})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r)
	if len(got) != 1 || got[0].ProfileName != "ok" {
		t.Fatalf("got %d records, want only the third", len(got))
	}
	want := []wantReject{{2, ColProfileName, "at most 256 bytes"}, {3, "", "longer than 1 MiB"}}
	if len(rejects.Items) != len(want) {
		t.Fatalf("rejects %v", rejects.Items)
	}
	for i, w := range want {
		g := rejects.Items[i]
		if g.Line != w.line || g.Column != w.column || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("reject %s, want %+v", g, w)
		}
	}
}
