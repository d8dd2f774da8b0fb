package perso

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// aliases maps normalised input column names (lower case, without '_',
// '-', '.', spaces) to canonical columns. Inputs name columns in many ways;
// these are the names seen in operator CSV exports and SIM-vendor files.
var aliases = map[string]int{
	"iccid": cICCID,
	"imsi":  cIMSI,
	"ki":    cKi, "k": cKi, "eki": cKi,
	"opc": cOPc, "eopc": cOPc,
	"op":        cOP,
	"algorithm": cAlg, "alg": cAlg, "algo": cAlg,
	"pin1": cPIN1, "pin": cPIN1,
	"puk1": cPUK1, "puk": cPUK1,
	"pin2": cPIN2,
	"puk2": cPUK2,
	"adm1": cADM1, "adm": cADM1,
	"msisdn": cMSISDN,
	"smsc":   cSMSC, "smsp": cSMSC,
	"spn":             cSPN,
	"profilename":     cProfileName,
	"serviceprovider": cServiceProvider,
	"profiletype":     cProfileType,
	"profileclass":    cProfileClass,
}

func normName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(s)
}

// otaName recognises kic<N>, kid<N>, kik<N> (also KIC_1, KiD-2, ...).
func otaName(n string) (kind int, kvn uint8, ok bool) {
	if len(n) < 4 {
		return 0, 0, false
	}
	switch n[:3] {
	case "kic":
		kind = 0
	case "kid":
		kind = 1
	case "kik":
		kind = 2
	default:
		return 0, 0, false
	}
	v, err := strconv.Atoi(n[3:])
	if err != nil || v < 1 || v > 255 || !allDigits([]byte(n[3:])) {
		return 0, 0, false
	}
	return kind, uint8(v), true
}

// columnMap is the mapping of an input's columns onto the canonical ones.
type columnMap struct {
	idx     []int   // per input column: canonical column index, or -1
	kvns    []uint8 // OTA key versions present, ascending
	present []bool  // per canonical column of the layout
	ignored []string
}

// mapColumns maps input column names case-insensitively.
func mapColumns(names []string) (*columnMap, error) {
	m := &columnMap{idx: make([]int, len(names))}
	type ota struct {
		kind int
		kvn  uint8
	}
	otas := make(map[int]ota)
	for i, name := range names {
		n := normName(name)
		if c, ok := aliases[n]; ok {
			m.idx[i] = c
			continue
		}
		if kind, kvn, ok := otaName(n); ok {
			otas[i] = ota{kind, kvn}
			if !slices.Contains(m.kvns, kvn) {
				m.kvns = append(m.kvns, kvn)
			}
			m.idx[i] = -2
			continue
		}
		m.idx[i] = -1
		m.ignored = append(m.ignored, name)
	}
	slices.Sort(m.kvns)
	for i, o := range otas {
		m.idx[i] = nBase + 3*slices.Index(m.kvns, o.kvn) + o.kind
	}
	m.present = make([]bool, nBase+3*len(m.kvns))
	seen := make(map[int]string)
	for i, c := range m.idx {
		if c < 0 {
			continue
		}
		if prev, dup := seen[c]; dup {
			return nil, fmt.Errorf("columns %s and %s are the same field", safeName(prev), safeName(names[i]))
		}
		seen[c] = names[i]
		m.present[c] = true
	}
	return m, nil
}

// safeName quotes a column name for an error message, unless it looks like
// data rather than a name (a headerless file's first line could hold a
// Ki): then only its shape is shown.
func safeName(n string) string {
	hexRun := 0
	for i := 0; i < len(n); i++ {
		if hexVal[n[i]] != 0xFF {
			hexRun++
			if hexRun >= 12 {
				return "(" + classify([]byte(n)) + ")"
			}
		} else {
			hexRun = 0
		}
	}
	if len(n) > 64 {
		return "(" + classify([]byte(n)) + ")"
	}
	return strconv.Quote(n)
}
