package engine

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/template"
)

// generated returns n records from the perso generator with OTA keys for the
// key versions the TS.48 profiles carry (01: 3DES, 02: AES).
func generated(t *testing.T, n int) []perso.Record {
	t.Helper()
	g, err := perso.NewGenerator(perso.GenOptions{
		Count: int64(n), ICCIDStart: "8949449999990000012", IMSIStart: "001010000000001",
		Layout: perso.Layout{OTAKVNs: []uint8{1, 2}}, Algorithm: esim.AlgorithmTest,
		MSISDNStart: "491700000001", SMSC: "+491700000999", SPN: "perso",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var recs []perso.Record
	for {
		b, err := g.Next()
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < int(b.NumRows()); i++ {
			r, err := perso.RecordAt(b, i)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
		b.Release()
	}
}

// A generated record, mapped by Values and applied to any TS.48 template,
// reads back from the full decoder as exactly the record's values.
func TestValuesPersonaliseEveryTS48TemplateWithTheRecord(t *testing.T) {
	recs := generated(t, 3)
	for _, file := range testenv.TS48(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			der, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := template.Compile(der)
			if err != nil {
				t.Fatal(err)
			}
			for i := range recs {
				rec := &recs[i]
				v, err := Values(rec, true)
				if err != nil {
					t.Fatal(err)
				}
				upp, err := plan.Apply(&v, nil)
				if err != nil {
					t.Fatalf("%s: %v", rec.ICCID, err)
				}
				p, err := template.Decode(upp)
				if err != nil {
					t.Fatal(err)
				}
				checkProfile(t, p, rec)
			}
		})
	}
}

func checkProfile(t *testing.T, p *template.Profile, rec *perso.Record) {
	t.Helper()
	if p.ICCID().String() != rec.ICCID || p.IMSI().String() != rec.IMSI {
		t.Errorf("ICCID/IMSI read back as %s/%s, want %s/%s", p.ICCID(), p.IMSI(), rec.ICCID, rec.IMSI)
	}
	for _, pe := range p.All(template.PEAKAParameter) {
		if a := pe.AKA.Algo; a != nil && !bytes.Equal(a.Key, rec.Ki.Bytes()) {
			t.Errorf("akaParameter #%d: K differs from the record's Ki", pe.Index)
		}
	}
	for _, pe := range p.All(template.PEPINCodes) {
		for _, c := range pe.PINs.Configs {
			want := map[int]perso.Secret{0x01: rec.PIN1, 0x81: rec.PIN2, 0x0A: rec.ADM1}[c.KeyReference]
			if want != nil && !bytes.Equal(c.Value, want.Bytes()) {
				t.Errorf("pinCodes #%d key reference %#02x differs from the record", pe.Index, c.KeyReference)
			}
		}
	}
	for _, pe := range p.All(template.PEPUKCodes) {
		for _, c := range pe.PUKs.Configs {
			want := map[int]perso.Secret{0x01: rec.PUK1, 0x81: rec.PUK2}[c.KeyReference]
			if want != nil && !bytes.Equal(c.Value, want.Bytes()) {
				t.Errorf("pukCodes key reference %#02x differs from the record", c.KeyReference)
			}
		}
	}
	sd := p.First(template.PESecurityDomain)
	for _, set := range rec.OTA {
		for id, key := range map[byte]perso.Secret{otaKIc: set.KIc, otaKID: set.KID, otaKIK: set.KIK} {
			found := false
			for _, k := range sd.SD.Keys {
				if k.KVN == set.KVN && k.ID == id {
					found = bytes.Equal(k.Components[0].Data, key.Bytes())
				}
			}
			if !found {
				t.Errorf("security domain key KVN %02x ID %02x is not the record's", set.KVN, id)
			}
		}
	}
}

func TestValuesRefusesARecordWithoutKi(t *testing.T) {
	rec := generated(t, 1)[0]
	rec.Ki = nil
	if _, err := Values(&rec, true); err == nil {
		t.Fatal("Values accepted a record without Ki")
	}
}
