package esim

import (
	"strconv"
	"strings"
)

// Algorithm is the network authentication algorithm of a USIM, numbered as
// the SAIP algorithmID (akaParameter/algoParameter). The zero value,
// AlgorithmUnset, means "not set": a record or a set of personalisation
// values without an algorithm leaves the template's in place. It is never a
// valid algorithmID to write to a card.
type Algorithm uint8

// Algorithms.
const (
	AlgorithmUnset    Algorithm = 0
	AlgorithmMilenage Algorithm = 1 // TS 35.206
	AlgorithmTUAK     Algorithm = 2 // TS 35.231
	AlgorithmTest     Algorithm = 3 // usim-test-algorithm (TS 34.108 §8.1.2, XOR)
)

// String returns the canonical name: "milenage", "tuak", "test", "unset",
// or "algorithm(N)" for an algorithmID this package does not know.
// ParseAlgorithm reads each of them back.
func (a Algorithm) String() string {
	switch a {
	case AlgorithmUnset:
		return "unset"
	case AlgorithmMilenage:
		return "milenage"
	case AlgorithmTUAK:
		return "tuak"
	case AlgorithmTest:
		return "test"
	}
	return "algorithm(" + strconv.Itoa(int(a)) + ")"
}

// Valid reports whether a is one of the three defined algorithms.
func (a Algorithm) Valid() bool { return a >= AlgorithmMilenage && a <= AlgorithmTest }

// ParseAlgorithm accepts the names and numbers operators use, case-
// insensitively: milenage|mil|1, tuak|2, test|xor|usim-test|
// usim-test-algorithm|3. An empty string is an error: "not set" is the
// caller's decision (AlgorithmUnset), not a spelling.
func ParseAlgorithm(s string) (Algorithm, error) {
	s = strings.TrimSpace(s)
	switch { // the common spellings, without allocating
	case s == "1" || strings.EqualFold(s, "milenage"):
		return AlgorithmMilenage, nil
	case s == "2" || strings.EqualFold(s, "tuak"):
		return AlgorithmTUAK, nil
	case s == "3" || strings.EqualFold(s, "test"):
		return AlgorithmTest, nil
	}
	switch strings.ToLower(s) {
	case "mil":
		return AlgorithmMilenage, nil
	case "xor", "usim-test", "usim-test-algorithm":
		return AlgorithmTest, nil
	case "":
		return AlgorithmUnset, valueErr("algorithm", ErrMissing, "missing: want milenage, tuak or test")
	}
	return AlgorithmUnset, valueErr("algorithm", ErrUnknown, "unknown: want milenage, tuak or test")
}
