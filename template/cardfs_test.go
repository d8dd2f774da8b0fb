package template

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/esim/tlv"
)

// This file is an independent check of personalised profiles: it reads a
// UPP the way an eUICC installs it, with its own walk of the DER (esim/tlv
// headers only, none of this package's decoder, file model or plan), and
// compares every personalised field with the record. File contents are
// built as the card builds them: each file starts unwritten, every
// fillFileOffset/fillFileContent of the FS PE that creates it and of any
// later genericFileManagement sequence that selects it is applied in
// profile order (offsets relative, the last write of a byte wins), record
// files being one stream of records.

// cardTLV is one element: tag and content.
type cardTLV struct {
	tag tlv.Tag
	val []byte
}

// cardKids splits content into its elements.
func cardKids(t *testing.T, b []byte) []cardTLV {
	t.Helper()
	var out []cardTLV
	for off := 0; off < len(b); {
		tag, hl, vl, err := tlv.ReadHeader(b, off, len(b))
		if err != nil {
			t.Fatalf("card: %v", err)
		}
		out = append(out, cardTLV{tag, b[off+hl : off+hl+vl]})
		off += hl + vl
	}
	return out
}

func cardChild(t *testing.T, b []byte, tag tlv.Tag) []byte {
	for _, k := range cardKids(t, b) {
		if k.tag == tag {
			return k.val
		}
	}
	return nil
}

// cardEF is an EF as the card holds it after installation.
type cardEF struct {
	data    []byte
	written []bool
	recLen  int
	size    int // efFileSize, 0 if the FCP does not say
}

func (f *cardEF) write(pos int, b []byte) {
	for len(f.data) < pos+len(b) {
		f.data, f.written = append(f.data, 0xFF), append(f.written, false)
	}
	copy(f.data[pos:], b)
	for i := range b {
		f.written[pos+i] = true
	}
}

// bytes returns n bytes from pos, failing if the profile never wrote one
// of them (the card would hold its template default, not the record).
func (f *cardEF) bytes(t *testing.T, what string, pos, n int) []byte {
	t.Helper()
	if f == nil {
		t.Fatalf("card: %s: file not created", what)
	}
	if len(f.data) < pos+n {
		t.Fatalf("card: %s: file holds %d bytes written, want %d", what, len(f.data), pos+n)
	}
	for i := pos; i < pos+n; i++ {
		if !f.written[i] {
			t.Fatalf("card: %s: byte %d never written by the profile", what, i)
		}
	}
	return f.data[pos : pos+n]
}

// cardAKA is one algoParameter.
type cardAKA struct {
	alg    byte
	k, opc []byte
}

// installedCard is what the independent reader found.
type installedCard struct {
	headerICCID []byte
	services    map[int]bool
	files       map[string]*cardEF // DF path + FID, hex
	usimADFs    []string
	isimADFs    []string
	csimADFs    []string
	df5GS       []string // DF.5GS paths (ADF.USIM + DF)
	dfSAIP      []string
	akas        []cardAKA
	pins, puks  map[int][][]byte
}

// Component numbers of the files the check reads (TCA PEDefinitions).
const (
	cardMFICCID     = 4
	cardUSIMADF     = 2
	cardOptMSISDN   = 7
	cardADFUSIMFID  = "7fd0"
	cardFIDICCID    = "2fe2"
	cardFIDIMSI     = "6f07"
	cardFIDACC      = "6f78"
	cardFIDSMSP     = "6f42"
	cardFIDSPN      = "6f46"
	cardFIDMSISDN   = "6f40"
	cardServiceBase = 0x80
)

// Component numbers → FIDs of the files the check reads, per PE.
var (
	cardUSIMFiles = map[int]string{3: cardFIDIMSI, 11: cardFIDSMSP, 13: cardFIDSPN, 18: cardFIDACC, 21: "6fad"}
	cardOptFiles  = map[int]string{cardOptMSISDN: cardFIDMSISDN, 17: "6f62", 58: "6fd9", 5: "6f3e", 6: "6f3f"}
	cardISIMFiles = map[int]string{3: "6f02", 4: "6f04", 5: "6f03"}
)

// installCard reads a UPP as a card installs it.
func installCard(t *testing.T, upp []byte) *installedCard {
	t.Helper()
	c := &installedCard{services: map[int]bool{}, files: map[string]*cardEF{}, pins: map[int][][]byte{}, puks: map[int][][]byte{}}
	adf := cardADFUSIMFID
	fsFile := func(df string, defFID string, comp []byte) {
		fid, recLen, size := defFID, 0, 0
		var ef *cardEF
		pos := 0
		for _, it := range cardKids(t, comp) {
			switch it.tag {
			case 0x80:
				return // doNotCreate
			case 0xA1:
				if id := cardChild(t, it.val, 0x83); len(id) == 2 {
					fid = hex.EncodeToString(id)
				}
				if fd := cardChild(t, it.val, 0x82); len(fd) >= 4 {
					recLen = int(fd[2])<<8 | int(fd[3])
				}
				size = cardUint(cardChild(t, it.val, 0x80))
			case 0x82:
				pos += cardUint(it.val)
			case 0x83:
				if ef == nil {
					ef = c.ef(df + fid)
				}
				ef.write(pos, it.val)
				pos += len(it.val)
			}
		}
		ef = c.ef(df + fid)
		ef.recLen, ef.size = recLen, size
	}
	// dfFID reads the FID of the DF/ADF that component 2 of an FS PE
	// creates, or def.
	dfFID := func(kids []cardTLV, def string) string {
		for _, k := range kids {
			if k.tag.Number() == 2 && k.tag.Class() == 0x80 {
				if fcp := cardChild(t, k.val, 0xA1); fcp != nil {
					if id := cardChild(t, fcp, 0x83); len(id) == 2 {
						return hex.EncodeToString(id)
					}
				}
			}
		}
		return def
	}
	// Other PEs' files the check reads: PE tag → component number → FID,
	// and the DF they live in (relative to ADF.USIM for DF.5GS/DF.SAIP).
	otherFiles := map[tlv.Tag]map[int]string{
		0xB9: {5: "6f22", 6: "6f23"}, // csim: EF.IMSI_M, EF.IMSI_T
		0xBC: {9: "4f07"},            // df-5gs: EF.SUCI_Calc_Info
		0xBD: {3: "4f01"},            // df-saip: EF.SUCI_Calc_Info_USIM
	}
	for _, pe := range cardKids(t, upp) {
		switch pe.tag {
		case 0xA0: // header
			for _, k := range cardKids(t, pe.val) {
				switch k.tag {
				case 0x83:
					c.headerICCID = k.val
				case 0xA5:
					for _, f := range cardKids(t, k.val) {
						c.services[int(f.tag)-cardServiceBase] = true
					}
				}
			}
		case 0xB0: // mf
			for _, k := range cardKids(t, pe.val) {
				if k.tag.Number() == cardMFICCID && k.tag.Class() == 0x80 && k.tag.Constructed() {
					fsFile("", cardFIDICCID, k.val)
				}
			}
			// The MF template creates EF.ICCID even when the PE has no
			// File component for it (mandatory file, content required).
			c.ef(cardFIDICCID)
		case 0xB3, 0xB5: // usim, isim
			kids := cardKids(t, pe.val)
			naa, files := cardADFUSIMFID, cardUSIMFiles
			if pe.tag == 0xB5 {
				naa, files = "7fb0", cardISIMFiles
			}
			for _, k := range kids {
				if k.tag.Number() == cardUSIMADF && k.tag.Class() == 0x80 {
					if fcp := cardChild(t, k.val, 0xA1); fcp != nil {
						if id := cardChild(t, fcp, 0x83); len(id) == 2 {
							naa = hex.EncodeToString(id)
						}
					}
				}
			}
			if pe.tag == 0xB3 {
				adf = naa
				c.usimADFs = append(c.usimADFs, adf)
			} else {
				c.isimADFs = append(c.isimADFs, naa)
			}
			for _, k := range kids {
				if fid, ok := files[k.tag.Number()]; ok && k.tag.Class() == 0x80 && k.tag.Constructed() {
					fsFile(naa, fid, k.val)
				}
			}
			if pe.tag == 0xB3 {
				// Mandatory files of the ADF.USIM template exist without
				// a File component.
				for _, fid := range []string{cardFIDIMSI, cardFIDACC, "6fad"} {
					c.ef(naa + fid)
				}
			}
		case 0xB4: // opt-usim
			for _, k := range cardKids(t, pe.val) {
				if fid, ok := cardOptFiles[k.tag.Number()]; ok && k.tag.Class() == 0x80 && k.tag.Constructed() {
					fsFile(adf, fid, k.val)
				}
			}
		case 0xB9, 0xBC, 0xBD: // csim, df-5gs, df-saip
			kids := cardKids(t, pe.val)
			var df string
			switch pe.tag {
			case 0xB9:
				df = dfFID(kids, "7fc0")
				c.csimADFs = append(c.csimADFs, df)
			case 0xBC:
				df = adf + dfFID(kids, "5fc0")
				c.df5GS = append(c.df5GS, df)
			case 0xBD:
				df = adf + dfFID(kids, "5fd0")
				c.dfSAIP = append(c.dfSAIP, df)
			}
			for _, k := range kids {
				if fid, ok := otherFiles[pe.tag][k.tag.Number()]; ok && k.tag.Class() == 0x80 && k.tag.Constructed() {
					fsFile(df, fid, k.val)
				}
			}
		case 0xA1: // genericFileManagement
			for _, seq := range cardKids(t, cardChild(t, pe.val, 0xA1)) {
				df := ""
				var ef *cardEF
				pos := 0
				for _, cmd := range cardKids(t, seq.val) {
					switch cmd.tag {
					case 0x80:
						path := hex.EncodeToString(cmd.val)
						if f, ok := c.files[path]; ok {
							ef, pos = f, 0
						} else {
							df, ef = path, nil
						}
					case 0x62:
						fid := hex.EncodeToString(cardChild(t, cmd.val, 0x83))
						if fd := cardChild(t, cmd.val, 0x82); len(fd) > 0 && fd[0]&0x38 == 0x38 {
							df, ef = df+fid, nil
							continue
						}
						ef, pos = c.ef(df+fid), 0
					case 0x02:
						pos += cardUint(cmd.val)
					case 0x81:
						if ef == nil {
							t.Fatalf("card: fillFileContent without a selected EF")
						}
						ef.write(pos, cmd.val)
						pos += len(cmd.val)
					}
				}
			}
		case 0xA4: // akaParameter
			cfg := cardChild(t, pe.val, 0xA1)
			if ap := cardChild(t, cfg, 0xA1); ap != nil {
				a := cardAKA{k: cardChild(t, ap, 0x82), opc: cardChild(t, ap, 0x83)}
				a.alg = cardChild(t, ap, 0x80)[0]
				c.akas = append(c.akas, a)
			}
		case 0xA2: // pinCodes
			if list := cardChild(t, cardChild(t, pe.val, 0xA1), 0xA0); list != nil {
				for _, pc := range cardKids(t, list) {
					ref := cardUint(cardChild(t, pc.val, 0x80))
					c.pins[ref] = append(c.pins[ref], cardChild(t, pc.val, 0x81))
				}
			}
		case 0xA3: // pukCodes
			for _, pc := range cardKids(t, cardChild(t, pe.val, 0xA1)) {
				ref := cardUint(cardChild(t, pc.val, 0x80))
				c.puks[ref] = append(c.puks[ref], cardChild(t, pc.val, 0x81))
			}
		}
	}
	return c
}

func (c *installedCard) ef(key string) *cardEF {
	if f, ok := c.files[key]; ok {
		return f
	}
	f := &cardEF{}
	c.files[key] = f
	return f
}

func cardUint(b []byte) int {
	n := 0
	for _, x := range b {
		n = n<<8 | int(x)
	}
	return n
}

// cardAddress reads the dialling number of an SMSP SC address or an
// MSISDN (length of TON/NPI + digits, TON/NPI, swapped BCD).
func cardAddress(a []byte) string {
	n := int(a[0])
	s := ""
	if a[1] == 0x91 {
		s = "+"
	}
	for _, b := range a[2 : 1+n] {
		for _, d := range []byte{b & 0xF, b >> 4} {
			if d != 0xF {
				s += string(rune('0' + d))
			}
		}
	}
	return s
}

// cardServiceOf is the eUICC-Mandatory-services flag of an algorithm.
func cardServiceOf(alg byte, keyLen int) int {
	switch alg {
	case 1:
		return 4
	case 2:
		if keyLen == 32 {
			return 16
		}
		return 5
	case 3:
		return 17
	}
	return -1
}

// checkCard compares an installed card with the record. wantAlg is the
// algorithm every algoParameter must hold (the record's, the switched one,
// or the template's when 0).
func checkCard(t *testing.T, upp []byte, v *Values, wantAlg esim.Algorithm) {
	t.Helper()
	c := installCard(t, upp)
	eq := func(what string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Fatalf("card: %s = %x, want %x", what, got, want)
		}
	}
	if !v.ICCID.IsZero() {
		bcd := v.ICCID.BCD()
		sw := v.ICCID.SwappedBCD()
		eq("header iccid", c.headerICCID, bcd[:])
		eq("EF.ICCID", c.files[cardFIDICCID].bytes(t, "EF.ICCID", 0, 10), sw[:])
	}
	if len(c.usimADFs) == 0 {
		t.Fatal("card: no usim")
	}
	for _, adf := range c.usimADFs {
		if !v.IMSI.IsZero() {
			imsi, acc := v.IMSI.EF(), v.IMSI.ACC()
			eq("EF.IMSI", c.files[adf+cardFIDIMSI].bytes(t, "EF.IMSI", 0, 9), imsi[:])
			if f := c.files[adf+cardFIDACC]; f != nil {
				eq("EF.ACC", f.bytes(t, "EF.ACC", 0, 2), acc[:])
			}
		}
		if v.SMSC != "" {
			f := c.files[adf+cardFIDSMSP]
			rec := f.bytes(t, "EF.SMSP record 1", 0, f.recLen)
			if got := cardAddress(rec[len(rec)-28+13:]); got != v.SMSC {
				t.Fatalf("card: SMSC %q, want %q", got, v.SMSC)
			}
		}
		if v.SPN != "" {
			b := c.files[adf+cardFIDSPN].bytes(t, "EF.SPN", 0, 17)
			if b[0] != v.SPNDisplayCondition || string(bytes.TrimRight(b[1:], "\xff")) != v.SPN {
				t.Fatalf("card: EF.SPN %x, want condition %02x and %q", b, v.SPNDisplayCondition, v.SPN)
			}
		}
		if v.MSISDN != "" {
			f := c.files[adf+cardFIDMSISDN]
			rec := f.bytes(t, "EF.MSISDN record 1", 0, f.recLen)
			if got := cardAddress(rec[len(rec)-14:]); got != v.MSISDN {
				t.Fatalf("card: MSISDN %q, want %q", got, v.MSISDN)
			}
		}
	}
	if len(c.akas) == 0 {
		t.Fatal("card: no algoParameter")
	}
	for i, a := range c.akas {
		if v.K != nil {
			eq(fmt.Sprintf("akaParameter %d key", i), a.k, v.K)
		}
		if v.OPc != nil {
			eq(fmt.Sprintf("akaParameter %d opc", i), a.opc, v.OPc)
		}
		if wantAlg != esim.AlgorithmUnset && a.alg != byte(wantAlg) {
			t.Fatalf("card: akaParameter %d algorithm %d, want %d", i, a.alg, wantAlg)
		}
		if svc := cardServiceOf(a.alg, len(a.k)); !c.services[svc] {
			t.Fatalf("card: akaParameter %d uses algorithm %d but the header does not declare service [%d]", i, a.alg, svc)
		}
	}
	if wantAlg != esim.AlgorithmUnset {
		// A switched template declares no algorithm it does not use.
		used := map[int]bool{}
		for _, a := range c.akas {
			used[cardServiceOf(a.alg, len(a.k))] = true
		}
		for _, svc := range []int{4, 5, 16, 17} {
			if c.services[svc] && !used[svc] {
				t.Fatalf("card: header declares algorithm service [%d] that no akaParameter uses", svc)
			}
		}
	}
	for ref, want := range map[int][]byte{0x01: v.PIN1, 0x81: v.PIN2, 0x0A: v.ADM1, 0x0B: v.ADM2} {
		if want == nil {
			continue
		}
		for i, got := range c.pins[ref] {
			eq(fmt.Sprintf("PIN 0x%02X copy %d", ref, i), got, want)
		}
	}
	for ref, want := range map[int][]byte{0x01: v.PUK1, 0x81: v.PUK2} {
		if want == nil {
			continue
		}
		for i, got := range c.puks[ref] {
			eq(fmt.Sprintf("PUK 0x%02X copy %d", ref, i), got, want)
		}
	}
}

// checkDerived compares the derived files of an installed card with what
// TS 31.102/31.103 and TS 23.003 §13 say they hold for the record's IMSI
// and the home PLMN. want lists the files the plan derives (by slot kind).
func checkDerived(t *testing.T, upp []byte, v *Values, homePLMN string, want map[SlotKind]bool) {
	t.Helper()
	c := installCard(t, upp)
	imsi := v.IMSI.String()
	mncLen := len(homePLMN) - 3
	mcc, mnc := imsi[:3], imsi[3:3+mncLen]
	mnc3 := fmt.Sprintf("%03s", mnc)
	// PLMN coding, TS 24.008 §10.5.1.3: MCC2 MCC1 | MNC3 MCC3 | MNC2 MNC1.
	nib := func(s string, i int) byte {
		if i < len(s) {
			return s[i] - '0'
		}
		return 0xF
	}
	plmn := []byte{nib(mcc, 1)<<4 | nib(mcc, 0), nib(mnc, 2)<<4 | nib(mcc, 2), nib(mnc, 1)<<4 | nib(mnc, 0)}
	tlvPad := func(s string, n int) []byte {
		b := append([]byte{0x80, byte(len(s))}, s...)
		return append(b, bytes.Repeat([]byte{0xFF}, n-len(b))...)
	}
	domain := "ims.mnc" + mnc3 + ".mcc" + mcc + ".3gppnetwork.org"
	for _, adf := range c.usimADFs {
		if want[SlotAD] {
			if got := c.files[adf+"6fad"].bytes(t, "EF.AD", 3, 1)[0]; int(got) != mncLen {
				t.Fatalf("card: EF.AD byte 4 = %02x, want the MNC length %d", got, mncLen)
			}
		}
		if want[SlotEHPLMN] {
			if got := c.files[adf+"6fd9"].bytes(t, "EF.EHPLMN", 0, 3); !bytes.Equal(got, plmn) {
				t.Fatalf("card: EF.EHPLMN %x, want %x", got, plmn)
			}
		}
		if want[SlotHPLMNwAcT] {
			if got := c.files[adf+"6f62"].bytes(t, "EF.HPLMNwAcT", 0, 3); !bytes.Equal(got, plmn) {
				t.Fatalf("card: EF.HPLMNwAcT %x, want %x", got, plmn)
			}
		}
	}
	for _, adf := range c.isimADFs {
		if want[SlotIMPI] {
			f := c.files[adf+"6f02"]
			if got, exp := f.bytes(t, "EF.IMPI", 0, len(f.data)), tlvPad(imsi+"@"+domain, len(f.data)); !bytes.Equal(got, exp) {
				t.Fatalf("card: EF.IMPI %q, want %q", got, exp)
			}
		}
		if want[SlotIMPU] {
			f := c.files[adf+"6f04"]
			if got, exp := f.bytes(t, "EF.IMPU record 1", 0, f.recLen), tlvPad("sip:"+imsi+"@"+domain, f.recLen); !bytes.Equal(got, exp) {
				t.Fatalf("card: EF.IMPU record 1 %q, want %q", got, exp)
			}
		}
		if want[SlotDomain] {
			f := c.files[adf+"6f03"]
			if got, exp := f.bytes(t, "EF.DOMAIN", 0, len(f.data)), tlvPad(domain, len(f.data)); !bytes.Equal(got, exp) {
				t.Fatalf("card: EF.DOMAIN %q, want %q", got, exp)
			}
		}
	}
}

// cardMINDigits decodes n digits coded as C.S0005 §2.3.1.1 (the 10-bit
// and 7-bit MIN codings): value + 111 (or 11) read as digits 1..10, 10
// being 0.
func cardMINDigits(v, n int) string {
	v += map[int]int{2: 11, 3: 111}[n]
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		d := v % 10
		v /= 10
		if d == 0 { // a digit 10 carries into the next
			d = 10
			v--
		}
		out[i] = byte('0' + d%10)
	}
	return string(out)
}

// cardIMSIM reads EF.IMSI_M/EF.IMSI_T content back into the 15-digit
// IMSI it carries (C.S0023 §3.4.2), failing on a class or flag the
// derivation does not write.
func cardIMSIM(t *testing.T, b []byte) string {
	t.Helper()
	if b[0] != 0 || b[7] != 0x80 {
		t.Fatalf("card: IMSI_M class %02x flags %02x, want class 0, programmed, address number 0", b[0], b[7])
	}
	s2 := int(b[1]) | int(b[2]&0x03)<<8
	s1 := int(b[3]) | int(b[4])<<8 | int(b[5])<<16
	mcc := int(b[8]) | int(b[9]&0x03)<<8
	thousands := (s1 >> 10) & 0xF
	return cardMINDigits(mcc, 3) + cardMINDigits(int(b[6]&0x7F), 2) + cardMINDigits(s2, 3) +
		cardMINDigits(s1>>14, 3) + string(rune('0'+thousands%10)) + cardMINDigits(s1&0x3FF, 3)
}

// checkConstantsAndCSIM compares GID1/GID2, both SUCI_Calc_Info files and
// the CSIM's IMSI_M/IMSI_T of an installed card with the options and the
// record; want lists what the plan writes.
func checkConstantsAndCSIM(t *testing.T, upp []byte, v *Values, o Options, want map[SlotKind]bool) {
	t.Helper()
	c := installCard(t, upp)
	padded := func(what string, f *cardEF, val []byte) {
		t.Helper()
		if f == nil || f.size == 0 {
			t.Fatalf("card: %s: no file or no size", what)
		}
		got := f.bytes(t, what, 0, f.size)
		if !bytes.Equal(got[:len(val)], val) || len(bytes.Trim(got[len(val):], "\xff")) != 0 {
			t.Fatalf("card: %s = %x, want %x padded with FF", what, got, val)
		}
	}
	for _, adf := range c.usimADFs {
		if want[SlotGID1] {
			padded("EF.GID1", c.files[adf+"6f3e"], o.GID1)
		}
		if want[SlotGID2] {
			padded("EF.GID2", c.files[adf+"6f3f"], o.GID2)
		}
	}
	suci := func(what string, f *cardEF) {
		t.Helper()
		if f == nil {
			t.Fatalf("card: %s: not created", what)
		}
		b := f.bytes(t, what, 0, f.size)
		kids := cardKids(t, bytes.TrimRight(b, "\xff"))
		if len(kids) != 2 || kids[0].tag != 0xA0 || kids[1].tag != 0xA1 {
			t.Fatalf("card: %s: %x is not A0 (schemes) A1 (keys)", what, b)
		}
		keys := cardKids(t, kids[1].val)
		if len(keys) != 2*len(o.SUCI.Keys) {
			t.Fatalf("card: %s: %d key TLVs, want %d", what, len(keys), 2*len(o.SUCI.Keys))
		}
		for i, k := range o.SUCI.Keys {
			if keys[2*i].tag != 0x80 || !bytes.Equal(keys[2*i].val, []byte{k.ID}) || keys[2*i+1].tag != 0x81 || !bytes.Equal(keys[2*i+1].val, k.Key) {
				t.Fatalf("card: %s: key %d is %x %x, want id %d key %x", what, i, keys[2*i].val, keys[2*i+1].val, k.ID, k.Key)
			}
		}
		list := kids[0].val
		if len(list) != 2*len(o.SUCI.Schemes) {
			t.Fatalf("card: %s: scheme list %x, want %d entries", what, list, len(o.SUCI.Schemes))
		}
		for i, sc := range o.SUCI.Schemes {
			if list[2*i] != sc.Scheme {
				t.Fatalf("card: %s: scheme %d is %d, want %d", what, i, list[2*i], sc.Scheme)
			}
			idx := int(list[2*i+1])
			if sc.Scheme == 0 {
				if idx != 0 {
					t.Fatalf("card: %s: null-scheme with key index %d", what, idx)
				}
				continue
			}
			if idx < 1 || idx > len(o.SUCI.Keys) || o.SUCI.Keys[idx-1].ID != sc.KeyID {
				t.Fatalf("card: %s: scheme %d key index %d does not point at key id %d", what, i, idx, sc.KeyID)
			}
		}
	}
	if want[SlotSUCICalcInfo] {
		if len(c.df5GS) == 0 {
			t.Fatal("card: no DF.5GS")
		}
		for _, df := range c.df5GS {
			suci("DF.5GS EF.SUCI_Calc_Info", c.files[df+"4f07"])
		}
	}
	if want[SlotSUCICalcInfoUSIM] {
		for _, df := range c.dfSAIP {
			suci("DF.SAIP EF.SUCI_Calc_Info_USIM", c.files[df+"4f01"])
		}
	}
	if want[SlotIMSIM] {
		if len(c.csimADFs) == 0 {
			t.Fatal("card: no csim")
		}
		for _, adf := range c.csimADFs {
			for _, fid := range []string{"6f22", "6f23"} {
				if got := cardIMSIM(t, c.files[adf+fid].bytes(t, "EF."+fid, 0, 10)); got != v.IMSI.String() {
					t.Fatalf("card: CSIM %s carries IMSI %s, want %s", fid, got, v.IMSI)
				}
			}
		}
	}
}
