package perso

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/perso-esim/perso/esim"
)

// GenOptions configure the test-data Generator.
type GenOptions struct {
	Count      int64
	ICCIDStart string // first ICCID, 18-20 digits with a valid Luhn digit
	IMSIStart  string // first IMSI, 6-15 digits
	Layout     Layout // secret widths and OTA key versions to fill
	Algorithm  esim.Algorithm
	// OP is the operator variant; nil draws a random one per generator.
	// OPc = AES_Ki(OP) xor OP for every record (Milenage).
	OP Secret
	// OmitOPc leaves opc empty and writes op instead (to exercise derivation).
	OmitOPc bool
	// MSISDNStart, when set, numbers the records' MSISDNs consecutively.
	MSISDNStart                                                        string
	SMSC, SPN, ProfileName, ServiceProvider, ProfileType, ProfileClass string
	BatchSize                                                          int
	// Rand supplies randomness (default crypto/rand).
	Rand io.Reader
	// Transport, with TransportKey (a software key: DEVELOPMENT ONLY),
	// encrypts the ki/opc/op columns the way operators deliver them.
	Transport    Transport
	TransportKey []byte
	Allocator    memory.Allocator
}

// Generator produces realistic personalisation records: consecutive
// ICCIDs with correct check digits, consecutive IMSIs, random Ki, OPc
// derived from OP, random PIN/PUK/ADM digits and OTA keys.
type Generator struct {
	o       GenOptions
	l       Layout
	b       *batch
	schema  *arrow.Schema
	done    int64
	iccid   []byte // payload digits + check digit
	imsi    []byte
	msisdn  []byte
	op      Secret
	rnd     []byte
	present []bool
	strs    [][]byte
	tk      Transport
}

// NewGenerator checks the options and returns a Generator.
func NewGenerator(o GenOptions) (*Generator, error) {
	if o.Count < 0 {
		return nil, errors.New("generator: negative count")
	}
	ic := []byte(o.ICCIDStart)
	if esim.CheckICCID(ic) != nil {
		return nil, errors.New("generator: ICCID start must be 18-20 digits with a valid Luhn check digit")
	}
	im := []byte(o.IMSIStart)
	if !allDigits(im) || len(im) < 6 || len(im) > 15 {
		return nil, errors.New("generator: IMSI start must be 6-15 digits")
	}
	if o.MSISDNStart != "" && (!allDigits([]byte(o.MSISDNStart)) || len(o.MSISDNStart) > 15) {
		return nil, errors.New("generator: MSISDN start must be up to 15 digits")
	}
	if o.Algorithm == esim.AlgorithmUnset {
		o.Algorithm = esim.AlgorithmMilenage
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	l, err := o.Layout.normalized()
	if err != nil {
		return nil, err
	}
	if o.Algorithm == esim.AlgorithmTUAK && o.OmitOPc {
		return nil, errors.New("generator: TUAK TOPc cannot be derived from TOP; do not omit OPc")
	}
	if o.Algorithm == esim.AlgorithmMilenage && (l.KiBytes != 16 || l.OPcBytes != 16) {
		return nil, errors.New("generator: Milenage needs 16-byte Ki and OPc")
	}
	g := &Generator{o: o, l: l, b: newBatch(l, o.Allocator, o.BatchSize),
		iccid: append([]byte(nil), ic...), imsi: append([]byte(nil), im...), msisdn: []byte(o.MSISDNStart),
		present: make([]bool, l.numCols()), strs: make([][]byte, l.numCols())}
	md := map[string]string{MetaSource: "generator"}
	if o.Transport.Key != 0 {
		alg, err := ParseTransportAlg(o.Transport.Alg)
		if err != nil {
			return nil, err
		}
		if _, err := newTransportCipher(alg, o.TransportKey); err != nil {
			return nil, err
		}
		g.tk = Transport{Key: o.Transport.Key, Alg: alg}
		md[MetaTransportKey], md[MetaTransportAlg] = TransportKeyLabel(o.Transport.Key), alg
	}
	meta := arrow.MetadataFrom(md)
	g.schema = l.schema(&meta)
	g.op = append(Secret(nil), o.OP...)
	if g.op == nil {
		g.op = make(Secret, l.OPcBytes)
		if _, err := io.ReadFull(o.Rand, g.op); err != nil {
			return nil, err
		}
	}
	if len(g.op) != l.OPcBytes {
		return nil, fmt.Errorf("generator: OP must be %d bytes", l.OPcBytes)
	}
	return g, nil
}

// Schema returns the schema of the generated batches (with transport
// metadata when the secrets are encrypted).
func (g *Generator) Schema() *arrow.Schema { return g.schema }

// Next returns the next batch, or io.EOF after Count records.
func (g *Generator) Next() (arrow.Record, error) {
	n := g.o.Count - g.done
	if n <= 0 {
		return nil, io.EOF
	}
	if n > int64(g.o.BatchSize) {
		n = int64(g.o.BatchSize)
	}
	// One read of randomness for the whole batch.
	topc := 0 // TUAK: random TOPc (it cannot be derived like Milenage OPc)
	if g.o.Algorithm == esim.AlgorithmTUAK && !g.o.OmitOPc {
		topc = g.l.OPcBytes
	}
	per := g.l.KiBytes + topc + 4*8 + 8 + 3*g.l.OTAKeyBytes*len(g.l.OTAKVNs)
	need := int(n) * per
	if cap(g.rnd) < need {
		g.rnd = make([]byte, need)
	}
	rnd := g.rnd[:need]
	if _, err := io.ReadFull(g.o.Rand, rnd); err != nil {
		return nil, err
	}
	defer wipe(rnd)
	for i := 0; i < int(n); i++ {
		r := rnd[i*per : (i+1)*per]
		clear(g.present)
		g.present[cICCID], g.present[cIMSI], g.present[cAlg] = true, true, true
		g.strs[cICCID], g.strs[cIMSI] = g.iccid, g.imsi
		ki := g.b.slot(cKi)
		copy(ki, r[:g.l.KiBytes])
		r = r[g.l.KiBytes:]
		g.present[cKi] = true
		if g.o.Algorithm != esim.AlgorithmTest {
			if g.o.OmitOPc {
				copy(g.b.slot(cOP), g.op)
				g.present[cOP] = true
			} else if g.o.Algorithm == esim.AlgorithmMilenage {
				if err := deriveOPc(g.b.slot(cOPc), ki, g.op); err != nil {
					return nil, err
				}
				g.present[cOPc] = true
			} else {
				copy(g.b.slot(cOPc), r[:topc])
				r = r[topc:]
				g.present[cOPc] = true
			}
		}
		for j, col := range []int{cPIN1, cPUK1, cPIN2, cPUK2, cADM1} {
			v := binary.LittleEndian.Uint64(r[8*j:])
			nd := 8
			if col == cPIN1 || col == cPIN2 {
				nd = 4
			}
			putDigits(g.b.slot(col), v, nd)
			g.present[col] = true
		}
		r = r[40:]
		for j := range g.l.OTAKVNs {
			for m := 0; m < 3; m++ {
				copy(g.b.slot(nBase+3*j+m), r[:g.l.OTAKeyBytes])
				r = r[g.l.OTAKeyBytes:]
				g.present[nBase+3*j+m] = true
			}
		}
		for _, s := range [...]struct {
			c int
			v string
		}{{cSMSC, g.o.SMSC}, {cSPN, g.o.SPN}, {cProfileName, g.o.ProfileName}, {cServiceProvider, g.o.ServiceProvider},
			{cProfileType, g.o.ProfileType}, {cProfileClass, g.o.ProfileClass}} {
			if s.v != "" {
				g.present[s.c], g.strs[s.c] = true, []byte(s.v)
			}
		}
		if len(g.msisdn) > 0 {
			g.present[cMSISDN], g.strs[cMSISDN] = true, g.msisdn
		}
		g.b.commit(g.present, g.strs, g.o.Algorithm)
		if err := g.advance(); err != nil {
			return nil, err
		}
	}
	g.done += n
	if g.tk.Key != 0 {
		for _, col := range []int{cKi, cOPc, cOP} {
			if err := g.encryptColumn(col); err != nil {
				return nil, err
			}
		}
	}
	return g.b.build(g.schema), nil
}

// advance steps ICCID (recomputing its check digit), IMSI and MSISDN.
func (g *Generator) advance() error {
	p := g.iccid[:len(g.iccid)-1]
	if !incDigits(p) {
		return errors.New("generator: ICCID range exhausted")
	}
	g.iccid[len(g.iccid)-1], _ = esim.LuhnDigit(p)
	if !incDigits(g.imsi) {
		return errors.New("generator: IMSI range exhausted")
	}
	if len(g.msisdn) > 0 && !incDigits(g.msisdn) {
		return errors.New("generator: MSISDN range exhausted")
	}
	return nil
}

// incDigits adds one to a decimal string in place; false on overflow.
func incDigits(d []byte) bool {
	for i := len(d) - 1; i >= 0; i-- {
		if d[i] < '9' {
			d[i]++
			return true
		}
		d[i] = '0'
	}
	return false
}

// putDigits writes nd decimal digits of v into the 8-byte card value, FF-padded.
func putDigits(dst []byte, v uint64, nd int) {
	for i := nd - 1; i >= 0; i-- {
		dst[i] = '0' + byte(v%10)
		v /= 10
	}
	for i := nd; i < 8; i++ {
		dst[i] = 0xFF
	}
}

func (g *Generator) encryptColumn(col int) error {
	c := &g.b.cols[col]
	n := g.b.n
	data := c.data[:n*c.width]
	ct, err := TransportEncrypt(g.tk.Alg, g.o.TransportKey, data, c.width)
	if err != nil {
		return err
	}
	copy(data, ct)
	for j := 0; j < n; j++ {
		if !g.b.isValid(col, j) {
			clear(g.b.fixedAt(col, j))
		}
	}
	return nil
}

// Close wipes the generator's OP and any unfinished batch.
func (g *Generator) Close() {
	g.op.Wipe()
	g.b.release()
}

// ICCIDWithCheck appends the Luhn check digit to an ICCID payload.
func ICCIDWithCheck(payload string) (string, error) {
	d, err := esim.LuhnDigit(payload)
	if err != nil {
		return "", err
	}
	return payload + strconv.Itoa(int(d-'0')), nil
}
