package perso

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/perso-esim/perso/esim"
)

// OTAKeySet is one OTA (SCP80) key set: KIc, KID and KIK under one key version number.
type OTAKeySet struct {
	KVN           uint8
	KIc, KID, KIK Secret
}

// Record is one personalisation record. Readers produce Arrow batches, not
// Records, for speed; Record is the row view used by the generator, by
// tests and by code that handles a single profile (see RecordAt, Builder).
//
// PIN1, PUK1, PIN2, PUK2 and ADM1 hold the 8-byte value as it is written to
// the card: ASCII digits padded with 0xFF (esim.CodeKind.Encode), or for ADM1 also an
// arbitrary 8-byte binary key. An empty Secret means "not given" (the
// template's value stays).
type Record struct {
	ICCID     string         // 18-20 digits, last digit Luhn (esim.CheckICCID)
	IMSI      string         // 6-15 digits (esim.CheckIMSI)
	Ki        Secret         // 16 or 32 bytes
	OPc       Secret         // 16 bytes (Milenage OPc) or 32 (TUAK TOPc); derived from OP when only OP is given
	OP        Secret         // optional operator variant
	Algorithm esim.Algorithm // never AlgorithmUnset once read: readers apply Options.DefaultAlgorithm

	PIN1, PUK1, PIN2, PUK2, ADM1 Secret

	OTA []OTAKeySet

	MSISDN, SMSC, SPN string

	ProfileName, ServiceProvider, ProfileType, ProfileClass string
}

// Wipe zeroes every secret of the record.
func (r *Record) Wipe() {
	wipe(r.Ki, r.OPc, r.OP, r.PIN1, r.PUK1, r.PIN2, r.PUK2, r.ADM1)
	for _, k := range r.OTA {
		wipe(k.KIc, k.KID, k.KIK)
	}
}

// Column names of the Arrow schema. They are stable: the engine and
// reports address columns by these names.
const (
	ColICCID           = "iccid"            // utf8, not null
	ColIMSI            = "imsi"             // utf8, not null
	ColKi              = "ki"               // fixed_size_binary(Layout.KiBytes), not null, secret
	ColOPc             = "opc"              // fixed_size_binary(Layout.OPcBytes), null only for the test algorithm, secret
	ColOP              = "op"               // fixed_size_binary(Layout.OPcBytes), nullable, secret
	ColAlgorithm       = "algorithm"        // uint8 (SAIP algorithmID), not null
	ColPIN1            = "pin1"             // fixed_size_binary(8), nullable, secret
	ColPUK1            = "puk1"             // fixed_size_binary(8), nullable, secret
	ColPIN2            = "pin2"             // fixed_size_binary(8), nullable, secret
	ColPUK2            = "puk2"             // fixed_size_binary(8), nullable, secret
	ColADM1            = "adm1"             // fixed_size_binary(8), nullable, secret
	ColMSISDN          = "msisdn"           // utf8, nullable
	ColSMSC            = "smsc"             // utf8, nullable
	ColSPN             = "spn"              // utf8, nullable
	ColProfileName     = "profile_name"     // utf8, nullable
	ColServiceProvider = "service_provider" // utf8, nullable
	ColProfileType     = "profile_type"     // utf8, nullable
	ColProfileClass    = "profile_class"    // utf8, nullable
)

// OTA key columns are named kic<KVN>, kid<KVN>, kik<KVN> (KVN in decimal,
// e.g. kic1), fixed_size_binary(Layout.OTAKeyBytes), nullable, secret.
func OTAColumns(kvn uint8) (kic, kid, kik string) {
	n := strconv.Itoa(int(kvn))
	return "kic" + n, "kid" + n, "kik" + n
}

// column indexes of the fixed part of the schema.
const (
	cICCID = iota
	cIMSI
	cKi
	cOPc
	cOP
	cAlg
	cPIN1
	cPUK1
	cPIN2
	cPUK2
	cADM1
	cMSISDN
	cSMSC
	cSPN
	cProfileName
	cServiceProvider
	cProfileType
	cProfileClass
	nBase // first OTA column
)

var baseNames = [nBase]string{
	ColICCID, ColIMSI, ColKi, ColOPc, ColOP, ColAlgorithm, ColPIN1, ColPUK1, ColPIN2, ColPUK2,
	ColADM1, ColMSISDN, ColSMSC, ColSPN, ColProfileName, ColServiceProvider, ColProfileType, ColProfileClass,
}

// Layout fixes the widths of the secret columns and which OTA key sets a
// batch carries. The zero Layout means 16-byte Ki, OPc and OTA keys and no
// OTA keys.
type Layout struct {
	KiBytes     int     // 16 (default) or 32 (TUAK-256)
	OPcBytes    int     // 16 (default, Milenage OPc) or 32 (TUAK TOPc)
	OTAKeyBytes int     // 16 (default), 24 or 32
	OTAKVNs     []uint8 // key version numbers with kic/kid/kik columns, ascending
}

// normalized fills in defaults and checks the widths.
func (l Layout) normalized() (Layout, error) {
	if l.KiBytes == 0 {
		l.KiBytes = 16
	}
	if l.OPcBytes == 0 {
		l.OPcBytes = 16
	}
	if l.OTAKeyBytes == 0 {
		l.OTAKeyBytes = 16
	}
	if l.KiBytes != 16 && l.KiBytes != 32 {
		return l, fmt.Errorf("layout: Ki width %d, want 16 or 32", l.KiBytes)
	}
	if l.OPcBytes != 16 && l.OPcBytes != 32 {
		return l, fmt.Errorf("layout: OPc width %d, want 16 or 32", l.OPcBytes)
	}
	if l.OTAKeyBytes != 16 && l.OTAKeyBytes != 24 && l.OTAKeyBytes != 32 {
		return l, fmt.Errorf("layout: OTA key width %d, want 16, 24 or 32", l.OTAKeyBytes)
	}
	l.OTAKVNs = slices.Clone(l.OTAKVNs)
	slices.Sort(l.OTAKVNs)
	l.OTAKVNs = slices.Compact(l.OTAKVNs)
	for _, k := range l.OTAKVNs {
		if k == 0 {
			return l, fmt.Errorf("layout: OTA key version number 0")
		}
	}
	return l, nil
}

// Schema metadata keys.
const (
	MetaTransportKey = "perso.transport_key" // set when the secret columns still hold transport ciphertext
	MetaTransportAlg = "perso.transport_alg"
	MetaSource       = "perso.source" // input file name
)

// Schema returns the Arrow schema of batches with this layout. Column order:
// the Col* constants in declaration order, then kic/kid/kik per KVN.
func (l Layout) Schema() *arrow.Schema {
	l, err := l.normalized()
	if err != nil {
		panic(err)
	}
	return l.schema(nil)
}

func (l Layout) schema(md *arrow.Metadata) *arrow.Schema {
	fields := make([]arrow.Field, 0, nBase+3*len(l.OTAKVNs))
	for i := 0; i < nBase; i++ {
		fields = append(fields, arrow.Field{Name: baseNames[i], Type: l.colType(i), Nullable: i >= cOPc && i != cAlg})
	}
	for _, k := range l.OTAKVNs {
		a, b, c := OTAColumns(k)
		for _, n := range []string{a, b, c} {
			fields = append(fields, arrow.Field{Name: n, Type: &arrow.FixedSizeBinaryType{ByteWidth: l.OTAKeyBytes}, Nullable: true})
		}
	}
	return arrow.NewSchema(fields, md)
}

func (l Layout) colType(i int) arrow.DataType {
	if w := l.width(i); w > 0 {
		return &arrow.FixedSizeBinaryType{ByteWidth: w}
	}
	if i == cAlg {
		return arrow.PrimitiveTypes.Uint8
	}
	return arrow.BinaryTypes.String
}

// width returns the byte width of fixed-size column i (0 for other columns).
func (l Layout) width(i int) int {
	switch {
	case i == cKi:
		return l.KiBytes
	case i == cOPc || i == cOP:
		return l.OPcBytes
	case i >= cPIN1 && i <= cADM1:
		return 8
	case i >= nBase:
		return l.OTAKeyBytes
	}
	return 0
}

// numCols is the number of columns of the layout.
func (l Layout) numCols() int { return nBase + 3*len(l.OTAKVNs) }

// colName names column i.
func (l Layout) colName(i int) string {
	if i < nBase {
		return baseNames[i]
	}
	j := i - nBase
	a, b, c := OTAColumns(l.OTAKVNs[j/3])
	return [3]string{a, b, c}[j%3]
}

// LayoutOf recovers the layout of a schema produced by Layout.Schema.
func LayoutOf(s *arrow.Schema) (Layout, error) {
	var l Layout
	for i := 0; i < nBase; i++ {
		idx := s.FieldIndices(baseNames[i])
		if len(idx) != 1 || idx[0] != i {
			return l, fmt.Errorf("schema: column %d is not %q", i, baseNames[i])
		}
	}
	w := func(i int) int {
		if t, ok := s.Field(i).Type.(*arrow.FixedSizeBinaryType); ok {
			return t.ByteWidth
		}
		return 0
	}
	l.KiBytes, l.OPcBytes = w(cKi), w(cOPc)
	rest := s.Fields()[nBase:]
	if len(rest)%3 != 0 {
		return l, fmt.Errorf("schema: %d OTA columns, want kic/kid/kik triples", len(rest))
	}
	for j := 0; j < len(rest); j += 3 {
		kvn, err := strconv.Atoi(strings.TrimPrefix(rest[j].Name, "kic"))
		if err != nil || kvn < 1 || kvn > 255 {
			return l, fmt.Errorf("schema: unexpected column %q", rest[j].Name)
		}
		l.OTAKVNs = append(l.OTAKVNs, uint8(kvn))
		l.OTAKeyBytes = w(nBase + j)
	}
	l, err := l.normalized()
	if err != nil {
		return l, err
	}
	if !l.Schema().Equal(arrow.NewSchema(s.Fields(), nil)) {
		return l, fmt.Errorf("schema: column types differ from the perso layout")
	}
	return l, nil
}
