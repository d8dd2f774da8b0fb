package perso

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/perso-esim/perso/esim"
)

// Problem is one thing wrong with one field of a record. It names the
// column and the class of the value (its shape: "19 digits", "31 hex
// chars", "invalid UTF-8"), never the value.
type Problem struct {
	Column string // canonical column name; "" for the line as a whole
	Class  string // shape of the offending value
	Reason string
}

func (p Problem) Error() string {
	if p.Column == "" {
		return p.Reason
	}
	if p.Class == "" {
		return p.Column + ": " + p.Reason
	}
	return p.Column + ": " + p.Reason + " (value: " + p.Class + ")"
}

// classify describes the shape of a text value without revealing it.
func classify(b []byte) string {
	switch {
	case len(b) == 0:
		return "empty"
	case !utf8.Valid(b):
		return strconv.Itoa(len(b)) + " bytes, invalid UTF-8"
	case allDigits(b):
		return strconv.Itoa(len(b)) + " digits"
	case allHex(b):
		return strconv.Itoa(len(b)) + " hex chars"
	}
	return strconv.Itoa(utf8.RuneCount(b)) + " chars, not hex"
}

// classifyRaw describes a binary value.
func classifyRaw(b []byte) string { return strconv.Itoa(len(b)) + " bytes binary" }

func allDigits(b []byte) bool {
	for _, c := range b {
		if c-'0' > 9 {
			return false
		}
	}
	return true
}

var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
		t[c-'a'+'A'] = byte(c-'a') + 10
	}
	return t
}()

func allHex(b []byte) bool {
	for _, c := range b {
		if hexVal[c] == 0xFF {
			return false
		}
	}
	return true
}

// decodeHex decodes src into dst, which must be exactly half its length.
func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		h, l := hexVal[src[2*i]], hexVal[src[2*i+1]]
		if h|l == 0xFF {
			return false
		}
		dst[i] = h<<4 | l
	}
	return true
}

// Rules are the batch-level constraints a record must meet besides the
// format of its fields. The zero value only checks formats and duplicates.
type Rules struct {
	// MCC and MNC (2 or 3 digits): when set, every IMSI must start with MCC+MNC.
	MCC, MNC string
	// ICCIDPrefix: when set, every ICCID must start with it (e.g. "8944").
	ICCIDPrefix string
	// ICCIDFirst/ICCIDLast: inclusive range. Bounds may be full ICCIDs or
	// ICCIDs without their check digit; the payloads are compared.
	ICCIDFirst, ICCIDLast string
	// IMSIFirst/IMSILast: inclusive range of IMSIs (same digit count).
	IMSIFirst, IMSILast string
	// serial is the .out header's Ser_nb/Quantity range.
	serial *serialRange
	// NoDuplicateCheck turns off the duplicate ICCID/IMSI check (which costs
	// about 1 bit per record for consecutive numbers, more for scattered ones).
	NoDuplicateCheck bool
}

func (r *Rules) check() error {
	for _, f := range []struct{ name, v string }{
		{"MCC", r.MCC}, {"MNC", r.MNC}, {"ICCID prefix", r.ICCIDPrefix}, {"ICCID range start", r.ICCIDFirst},
		{"ICCID range end", r.ICCIDLast}, {"IMSI range start", r.IMSIFirst}, {"IMSI range end", r.IMSILast},
	} {
		if !allDigits([]byte(f.v)) {
			return fmt.Errorf("rules: %s must be digits", f.name)
		}
	}
	if r.MCC != "" && len(r.MCC) != 3 {
		return fmt.Errorf("rules: MCC must be 3 digits")
	}
	if r.MNC != "" && (len(r.MNC) < 2 || len(r.MNC) > 3 || r.MCC == "") {
		return fmt.Errorf("rules: MNC must be 2 or 3 digits and needs an MCC")
	}
	if (r.IMSIFirst == "") != (r.IMSILast == "") || len(r.IMSIFirst) != len(r.IMSILast) {
		return fmt.Errorf("rules: IMSI range needs both ends with the same number of digits")
	}
	if (r.ICCIDFirst == "") != (r.ICCIDLast == "") || len(r.ICCIDFirst) != len(r.ICCIDLast) {
		return fmt.Errorf("rules: ICCID range needs both ends with the same number of digits")
	}
	if r.IMSIFirst > r.IMSILast || r.ICCIDFirst > r.ICCIDLast {
		return fmt.Errorf("rules: range start after range end")
	}
	return nil
}

// Validator checks records against the format rules and a batch's Rules and
// remembers the ICCIDs and IMSIs of accepted records to find duplicates.
// It is not safe for concurrent use.
type Validator struct {
	rules  Rules
	iccids digitSet
	imsis  digitSet
}

// NewValidator returns a Validator for rules.
func NewValidator(rules Rules) (*Validator, error) {
	if err := rules.check(); err != nil {
		return nil, err
	}
	return &Validator{rules: rules}, nil
}

// Validate checks one record against the format rules and rules, without
// the duplicate check (which needs the state of a Validator).
func Validate(r *Record, rules Rules) []Problem {
	rules.NoDuplicateCheck = true
	v, err := NewValidator(rules)
	if err != nil {
		return []Problem{{Reason: err.Error()}}
	}
	return v.Check(r)
}

// Check validates a whole record, including duplicates against the records
// accepted so far; an accepted record (no problems) is remembered.
func (v *Validator) Check(r *Record) []Problem {
	var ps []Problem
	v.checkIdentity([]byte(r.ICCID), []byte(r.IMSI), &ps)
	checkSecretLen(&ps, ColKi, r.Ki, 16, 32)
	if len(r.OPc) > 0 {
		checkSecretLen(&ps, ColOPc, r.OPc, 16, 32)
	}
	if len(r.OP) > 0 {
		checkSecretLen(&ps, ColOP, r.OP, 16, 32)
	}
	switch r.Algorithm {
	case esim.AlgorithmMilenage, esim.AlgorithmTUAK:
		if len(r.OPc) == 0 && len(r.OP) == 0 {
			ps = append(ps, Problem{Column: ColOPc, Class: "empty", Reason: "missing: " + r.Algorithm.String() + " needs OPc or OP"})
		}
	case esim.AlgorithmTest:
	case esim.AlgorithmUnset:
		ps = append(ps, Problem{Column: ColAlgorithm, Class: "empty", Reason: "missing: want milenage, tuak or test"})
	default:
		ps = append(ps, Problem{Column: ColAlgorithm, Class: r.Algorithm.String(), Reason: "unknown algorithm"})
	}
	if r.Algorithm == esim.AlgorithmMilenage && len(r.Ki) == 32 {
		ps = append(ps, Problem{Column: ColKi, Class: classifyRaw(r.Ki), Reason: "Milenage needs a 16-byte Ki"})
	}
	for _, p := range []struct {
		col string
		v   Secret
	}{{ColPIN1, r.PIN1}, {ColPUK1, r.PUK1}, {ColPIN2, r.PIN2}, {ColPUK2, r.PUK2}, {ColADM1, r.ADM1}} {
		if len(p.v) != 0 && len(p.v) != 8 {
			ps = append(ps, Problem{Column: p.col, Class: classifyRaw(p.v), Reason: "want the 8-byte card value"})
		}
	}
	if len(ps) == 0 && !v.rules.NoDuplicateCheck {
		if col := v.duplicate([]byte(r.ICCID), []byte(r.IMSI)); col != "" {
			ps = append(ps, Problem{Column: col, Class: classify([]byte(r.ICCID)), Reason: "duplicate " + col + " within the file"})
		} else {
			v.remember([]byte(r.ICCID), []byte(r.IMSI))
		}
	}
	return ps
}

func checkSecretLen(ps *[]Problem, col string, s Secret, ok ...int) {
	for _, n := range ok {
		if len(s) == n {
			return
		}
	}
	cls := "empty"
	if len(s) > 0 {
		cls = classifyRaw(s)
	}
	*ps = append(*ps, Problem{Column: col, Class: cls, Reason: fmt.Sprintf("wrong length, want %v bytes", ok)})
}

// checkIdentity checks the ICCID and IMSI formats and the rules on them.
func (v *Validator) checkIdentity(iccid, imsi []byte, ps *[]Problem) {
	switch err := esim.CheckICCID(iccid); {
	case err != nil:
		*ps = append(*ps, Problem{Column: ColICCID, Class: classify(iccid), Reason: esim.Reason(err)})
	default:
		r := &v.rules
		if r.ICCIDPrefix != "" && (len(iccid) < len(r.ICCIDPrefix) || string(iccid[:len(r.ICCIDPrefix)]) != r.ICCIDPrefix) {
			*ps = append(*ps, Problem{Column: ColICCID, Class: classify(iccid), Reason: "does not start with the batch's issuer prefix"})
		} else if r.ICCIDFirst != "" && !iccidInRange(iccid, r.ICCIDFirst, r.ICCIDLast) {
			*ps = append(*ps, Problem{Column: ColICCID, Class: classify(iccid), Reason: "outside the batch's ICCID range"})
		} else if r.serial != nil && !r.serial.contains(iccid) {
			*ps = append(*ps, Problem{Column: ColICCID, Class: classify(iccid), Reason: "outside the header's Ser_nb range"})
		}
	}
	switch err := esim.CheckIMSI(imsi); {
	case err != nil:
		*ps = append(*ps, Problem{Column: ColIMSI, Class: classify(imsi), Reason: esim.Reason(err)})
	default:
		r := &v.rules
		if r.MCC != "" && (len(imsi) < len(r.MCC)+len(r.MNC) || string(imsi[:3]) != r.MCC || string(imsi[3:3+len(r.MNC)]) != r.MNC) {
			*ps = append(*ps, Problem{Column: ColIMSI, Class: classify(imsi), Reason: "MCC/MNC differs from the batch's " + r.MCC + "/" + r.MNC})
		} else if r.IMSIFirst != "" && (len(imsi) != len(r.IMSIFirst) || string(imsi) < r.IMSIFirst || string(imsi) > r.IMSILast) {
			*ps = append(*ps, Problem{Column: ColIMSI, Class: classify(imsi), Reason: "outside the batch's IMSI range"})
		}
	}
}

// serialRange is count consecutive ICCIDs from start, which is a full ICCID
// or one without its check digit: an ICCID of the same length as start
// means the former, one digit longer the latter.
type serialRange struct {
	start string
	count int64
	// payload bounds per ICCID length, computed on first use
	first, last [21]string
}

func (s *serialRange) contains(iccid []byte) bool {
	n := len(iccid)
	if s.first[n] == "" {
		var p string
		switch len(s.start) {
		case n:
			p = s.start[:n-1]
		case n - 1:
			p = s.start
		default:
			return false
		}
		s.first[n], s.last[n] = p, addDigits(p, s.count-1)
	}
	return string(iccid[:n-1]) >= s.first[n] && string(iccid[:n-1]) <= s.last[n]
}

// iccidInRange compares ICCID payloads (without check digits) as numbers.
func iccidInRange(iccid []byte, first, last string) bool {
	p := string(iccid[:len(iccid)-1])
	if len(first) == len(iccid) {
		first, last = first[:len(first)-1], last[:len(last)-1]
	}
	return len(first) == len(p) && p >= first && p <= last
}

// duplicate returns the column of the first identifier already seen, or "".
func (v *Validator) duplicate(iccid, imsi []byte) string {
	if v.iccids.has(iccidKey(iccid)) {
		return ColICCID
	}
	if v.imsis.has(digitKey(imsi)) {
		return ColIMSI
	}
	return ""
}

func (v *Validator) remember(iccid, imsi []byte) {
	v.iccids.add(iccidKey(iccid))
	v.imsis.add(digitKey(imsi))
}

// digitKey packs up to 19 digits and their count into a set key.
type setKey struct {
	n uint8
	v uint64
}

func digitKey(d []byte) setKey {
	var v uint64
	for _, c := range d {
		v = v*10 + uint64(c-'0')
	}
	return setKey{uint8(len(d)), v}
}

// iccidKey drops the check digit (already verified), so 20 digits fit.
func iccidKey(d []byte) setKey { return digitKey(d[:len(d)-1]) }

// digitSet is a set of digit strings (up to 19 digits): one compressed
// integer set per length.
type digitSet struct {
	byLen [20]*u64Set
}

func (s *digitSet) has(k setKey) bool {
	t := s.byLen[k.n]
	return t != nil && t.has(k.v)
}

func (s *digitSet) add(k setKey) {
	t := s.byLen[k.n]
	if t == nil {
		t = &u64Set{m: make(map[uint64]*container)}
		s.byLen[k.n] = t
	}
	t.add(k.v)
}

// u64Set is a small roaring-style bitmap: values are grouped by their high
// 48 bits; each group holds a sorted array of low 16-bit halves until it has
// 4096 of them, then a 8 KiB bitmap. Consecutive ICCIDs/IMSIs (the normal
// case) cost about one bit each, so memory stays flat for big files.
type u64Set struct {
	m       map[uint64]*container
	lastKey uint64
	last    *container
}

type container struct {
	arr  []uint16
	bits []uint64 // 1024 words once dense
}

const denseAt = 4096

func (s *u64Set) get(hi uint64, create bool) *container {
	if s.last != nil && s.lastKey == hi {
		return s.last
	}
	c := s.m[hi]
	if c == nil {
		if !create {
			return nil
		}
		c = &container{}
		s.m[hi] = c
	}
	s.last, s.lastKey = c, hi
	return c
}

func (s *u64Set) has(v uint64) bool {
	c := s.get(v>>16, false)
	if c == nil {
		return false
	}
	lo := uint16(v)
	if c.bits != nil {
		return c.bits[lo>>6]&(1<<(lo&63)) != 0
	}
	i, found := searchU16(c.arr, lo)
	_ = i
	return found
}

func (s *u64Set) add(v uint64) {
	c := s.get(v>>16, true)
	lo := uint16(v)
	if c.bits != nil {
		c.bits[lo>>6] |= 1 << (lo & 63)
		return
	}
	i, found := searchU16(c.arr, lo)
	if found {
		return
	}
	if len(c.arr) >= denseAt {
		c.bits = make([]uint64, 1024)
		for _, x := range c.arr {
			c.bits[x>>6] |= 1 << (x & 63)
		}
		c.bits[lo>>6] |= 1 << (lo & 63)
		c.arr = nil
		return
	}
	c.arr = append(c.arr, 0)
	copy(c.arr[i+1:], c.arr[i:])
	c.arr[i] = lo
}

// searchU16 finds x in the sorted slice a; appends (x > last) are O(1).
func searchU16(a []uint16, x uint16) (int, bool) {
	n := len(a)
	if n == 0 || x > a[n-1] {
		return n, false
	}
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < n && a[lo] == x
}
