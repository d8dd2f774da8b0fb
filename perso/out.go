package perso

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// OutHeader is the parsed header of a SIM-vendor output (.out) file.
type OutHeader struct {
	// Fields holds every HEADER DESCRIPTION entry by its key as written
	// (Customer, Quantity, Type, Profile, Batch, Transport_key, ...).
	// Entries whose key names a secret (Ki, OPc, OP, ...) are not kept.
	Fields map[string]string
	// Keys lists the header keys in file order.
	Keys []string
	// Quantity is the declared number of data lines (-1 when absent).
	Quantity     int64
	QuantityLine int64
	// TransportKey/TransportAlg come from Transport_key/Transport_alg
	// (0/"" when absent).
	TransportKey int
	TransportAlg string
	// InputVars holds the INPUT VARIABLES entries (IMSI, Ser_nb, ...).
	InputVars map[string]string
	// VarOut is the OUTPUT VARIABLES column list.
	VarOut []string
	// DataLine is the line number of the first line after var_out.
	DataLine int64
}

// Get returns a header field by key, case-insensitively.
func (h *OutHeader) Get(key string) string {
	for k, v := range h.Fields {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// outSource reads the data section of a .out file: whitespace-separated
// columns in var_out order.
type outSource struct {
	lr     *lineReader
	h      *OutHeader
	cols   *columnMap
	fields [][]byte
	lines  int64 // data lines seen (good or bad)
	closer io.Closer
	file   string
}

// NewOutReader reads a classic SIM-vendor output file:
//
//	********************************
//	* HEADER DESCRIPTION
//	********************************
//	Customer        : ACME Mobile
//	Quantity        : 5
//	Transport_key   : 3
//	Transport_alg   : AES-128-ECB
//	...
//	********************************
//	* INPUT VARIABLES
//	********************************
//	Var_In_List:
//	IMSI: 234150000000001
//	Ser_nb: 894415000000000001
//	********************************
//	* OUTPUT VARIABLES
//	********************************
//	var_out: ICCID/IMSI/KI/OPC/PIN1/PUK1/PIN2/PUK2/ADM1
//	8944150000000000013 234150000000001 0A1B... ...
//
// Header keys and section titles are matched case-insensitively; a '*'
// line or a blank line may appear anywhere before the data. Quantity is
// checked against the number of data lines (a mismatch is reported as a
// reject on the Quantity line). When Quantity, IMSI and Ser_nb are all
// given and Options.Rules has no ranges of its own, IMSIs must lie in
// [IMSI, IMSI+Quantity-1] and ICCIDs in the range starting at Ser_nb (a full
// ICCID or one without its check digit). Transport_key N and Transport_alg
// override Options.Transport; they must not contradict it.
func NewOutReader(r io.Reader, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	s := &outSource{lr: newLineReader(r, &o), file: o.File}
	if c, ok := r.(io.Closer); ok {
		s.closer = c
	}
	h, err := s.readHeader()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s.h = h
	cm, err := mapColumns(h.VarOut)
	if err != nil {
		return nil, fmt.Errorf("%s: var_out: %w", o.File, err)
	}
	s.cols = cm
	if h.TransportKey != 0 {
		if o.Transport.Key != 0 && o.Transport.Key != h.TransportKey {
			return nil, fmt.Errorf("%s: header Transport_key %d contradicts the configured transport key %d", o.File, h.TransportKey, o.Transport.Key)
		}
		o.Transport.Key = h.TransportKey
	}
	if h.TransportAlg != "" {
		ha, err := ParseTransportAlg(h.TransportAlg)
		if err != nil {
			return nil, fmt.Errorf("%s: header Transport_alg: %w", o.File, err)
		}
		if o.Transport.Alg != "" {
			if oa, err := ParseTransportAlg(o.Transport.Alg); err != nil || oa != ha {
				return nil, fmt.Errorf("%s: header Transport_alg %s contradicts the configured %s", o.File, ha, o.Transport.Alg)
			}
		}
		o.Transport.Alg = ha
	}
	if err := outRanges(h, &o.Rules); err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	rd, err := newReader(s, o, cm.kvns, cm.present)
	if err != nil {
		return nil, err
	}
	rd.ignored = cm.ignored
	rd.header = h
	return rd, nil
}

// section names a part of the .out header.
type section int

const (
	secNone section = iota
	secHeader
	secInput
	secOutput
)

func (s *outSource) readHeader() (*OutHeader, error) {
	h := &OutHeader{Fields: map[string]string{}, InputVars: map[string]string{}, Quantity: -1}
	sec := secNone
	s.lr.noSkip = true
	defer func() { s.lr.noSkip = false }()
	for {
		if s.lr.consumed > maxHeaderBytes {
			return nil, fmt.Errorf("no var_out line (OUTPUT VARIABLES) in the first %s", sizeText(maxHeaderBytes))
		}
		line, err := s.lr.next()
		if err == io.EOF {
			return nil, fmt.Errorf("no var_out line (OUTPUT VARIABLES)")
		}
		if err == errLineTooLong {
			return nil, fmt.Errorf("line %d: header %s", s.lr.line, s.lr.tooLong("line"))
		}
		if err != nil {
			return nil, err
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 {
			continue
		}
		if t[0] == '*' {
			title := strings.ToUpper(strings.Join(strings.Fields(strings.Trim(string(t), "* \t")), " "))
			switch strings.ReplaceAll(title, " ", "") {
			case "":
			case "HEADERDESCRIPTION", "HEADER":
				sec = secHeader
			case "INPUTVARIABLES":
				sec = secInput
			case "OUTPUTVARIABLES":
				sec = secOutput
			default:
				sec = secNone // comment line
			}
			continue
		}
		key, val, ok := strings.Cut(string(t), ":")
		if !ok {
			continue // free text in the header (some vendors add remarks): not a field
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		nk := normName(key)
		if nk == "varout" {
			if val == "" {
				return nil, fmt.Errorf("line %d: empty var_out", s.lr.line)
			}
			for _, c := range strings.Split(val, "/") {
				h.VarOut = append(h.VarOut, strings.TrimSpace(c))
			}
			h.DataLine = s.lr.line + 1
			return h, nil
		}
		switch sec {
		case secInput:
			if nk != "varinlist" {
				h.InputVars[key] = val
			}
		case secOutput:
			// other entries before var_out (vendor extras) carry no columns
		default:
			if _, secret := aliases[nk]; secret && aliases[nk] >= cKi && aliases[nk] != cAlg {
				val = Redacted
			} else if _, _, ota := otaName(nk); ota {
				val = Redacted
			}
			if _, dup := h.Fields[key]; !dup {
				h.Keys = append(h.Keys, key)
			}
			h.Fields[key] = val
			switch nk {
			case "quantity":
				q, err := strconv.ParseInt(val, 10, 64)
				if err != nil || q < 0 {
					return nil, fmt.Errorf("line %d: Quantity is not a number", s.lr.line)
				}
				h.Quantity, h.QuantityLine = q, s.lr.line
			case "transportkey", "transportkeyid", "tk":
				switch strings.ToLower(val) {
				case "", "0", "none", "no", "-":
				default:
					n, err := strconv.Atoi(strings.TrimLeft(strings.ToUpper(val), "TK#"))
					if err != nil || n <= 0 {
						return nil, fmt.Errorf("line %d: Transport_key is not a key number", s.lr.line)
					}
					h.TransportKey = n
				}
			case "transportalg", "transportalgorithm", "transportkeyalg":
				h.TransportAlg = val
			}
		}
	}
}

// outRanges turns IMSI/Ser_nb/Quantity into range rules.
func outRanges(h *OutHeader, r *Rules) error {
	if h.Quantity <= 0 {
		return nil
	}
	get := func(k string) string {
		for kk, v := range h.InputVars {
			if normName(kk) == k {
				return v
			}
		}
		return ""
	}
	if imsi := get("imsi"); imsi != "" && r.IMSIFirst == "" {
		if !allDigits([]byte(imsi)) || len(imsi) < 6 || len(imsi) > 15 {
			return fmt.Errorf("input variable IMSI is not 6-15 digits")
		}
		r.IMSIFirst, r.IMSILast = imsi, addDigits(imsi, h.Quantity-1)
	}
	if ser := get("sernb"); ser != "" && r.ICCIDFirst == "" {
		if !allDigits([]byte(ser)) || len(ser) < 17 || len(ser) > 20 {
			return fmt.Errorf("input variable Ser_nb is not 17-20 digits")
		}
		// Whether Ser_nb carries its check digit is decided per ICCID by
		// length (see serialRange): a Luhn test could pass by chance.
		r.serial = &serialRange{start: ser, count: h.Quantity}
	}
	return nil
}

// addDigits adds n to a decimal string keeping its length (saturating at all 9s).
func addDigits(d string, n int64) string {
	b := []byte(d)
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		v := int64(b[i]-'0') + carry
		b[i] = byte('0' + v%10)
		carry = v / 10
	}
	if carry > 0 {
		return strings.Repeat("9", len(d))
	}
	return string(b)
}

func (s *outSource) setContext(ctx context.Context) { s.lr.ctx = ctx }

func (s *outSource) read(row *rawRow) error {
	for {
		line, err := s.lr.next()
		if err == errLineTooLong {
			s.lines++
			row.line = s.lr.line
			row.bad = &Problem{Reason: s.lr.tooLong("line")}
			row.unterminated = s.lr.unterminated
			return nil
		}
		if err != nil {
			return err
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '*' {
			continue
		}
		s.lines++
		row.line = s.lr.line
		row.unterminated = s.lr.unterminated
		s.fields = s.fields[:0]
		for len(t) > 0 {
			i := bytes.IndexAny(t, " \t")
			if i < 0 {
				s.fields = append(s.fields, t)
				break
			}
			s.fields = append(s.fields, t[:i])
			t = trimLeftBlank(t[i:])
		}
		if len(s.fields) != len(s.cols.idx) {
			row.bad = &Problem{Reason: fmt.Sprintf("wrong column count: %d, var_out has %d", len(s.fields), len(s.cols.idx))}
			return nil
		}
		for i, c := range s.cols.idx {
			if c >= 0 {
				row.vals[c] = s.fields[i]
			}
		}
		return nil
	}
}

func (s *outSource) finish() []Reject {
	if s.h.Quantity >= 0 && s.h.Quantity != s.lines {
		return []Reject{{File: s.file, Line: s.h.QuantityLine, Column: "Quantity", Class: "header",
			Reason: fmt.Sprintf("header Quantity is %d but the data section has %d lines", s.h.Quantity, s.lines)}}
	}
	return nil
}

func (s *outSource) close() error {
	s.lr.wipe()
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}
