package template

import "github.com/perso-esim/perso/esim"

// Options are the per-template settings of a Plan (CompileWith). The zero
// Options compile the template as it is.
type Options struct {
	// Algorithm, when set, switches every algoParameter of the template to
	// this algorithm at compile time and makes the header's
	// eUICC-Mandatory-services consistent with it (see SwitchAlgorithm).
	// AlgorithmUnset keeps the template's algorithms; records may then only
	// set an algorithm the header already declares.
	Algorithm esim.Algorithm
	// KeyLength is the K length for TUAK: 16 (TUAK-128, the default) or 32
	// (TUAK-256). Milenage and the test algorithm use 16-byte keys.
	KeyLength int
}
