package template

import (
	"errors"
	"fmt"

	"github.com/perso-esim/perso/esim"
)

// Validate checks the profile-level rules that Decode does not: the header
// is the first PE and appears once, the end PE is the last and appears
// once, identification numbers are unique, every mandatory service declared
// in the header has the PE that provides it, every algorithm an
// akaParameter uses is declared, PIN key references are unique within a
// pinCodes PE, and every PIN's unblocking reference names a PUK that exists. It returns every problem found,
// joined (errors.Is works with the sentinels; each is an *Error).
func (p *Profile) Validate() error {
	errs := p.Problems()
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// Validate decodes and validates a UPP.
func Validate(der []byte) error {
	p, err := Decode(der)
	if err != nil {
		return err
	}
	return p.Validate()
}

// Problems is Validate as a list.
func (p *Profile) Problems() []*Error {
	var errs []*Error
	add := func(pe *PE, cause error) {
		if pe == nil {
			errs = append(errs, &Error{PE: -1, Offset: -1, Err: cause})
			return
		}
		errs = append(errs, errAt(pe.Index, pe.Type, pe.Offset, "", cause))
	}
	if len(p.PEs) == 0 {
		add(nil, fmt.Errorf("empty profile: %w", ErrOrder))
		return errs
	}
	if first := p.PEs[0]; first.Type != PEHeader {
		add(first, fmt.Errorf("the first PE must be the header, found %s: %w", first.Type, ErrOrder))
	}
	last := p.PEs[len(p.PEs)-1]
	if last.Type != PEEnd {
		add(last, fmt.Errorf("the last PE must be end, found %s: %w", last.Type, ErrOrder))
	}
	ids := map[int]*PE{}
	for _, pe := range p.PEs {
		switch {
		case pe.Type == PEHeader && pe.Index != 0:
			add(pe, fmt.Errorf("header PE repeated (the first is PE #0): %w", ErrOrder))
		case pe.Type == PEEnd && pe != last:
			add(pe, fmt.Errorf("end PE before the last PE: %w", ErrOrder))
		}
		if pe.ID >= 0 {
			if prev, dup := ids[pe.ID]; dup {
				add(pe, fmt.Errorf("identification %d already used by PE #%d (%s): %w", pe.ID, prev.Index, prev.Type, ErrDuplicateID))
			} else {
				ids[pe.ID] = pe
			}
		}
	}
	if h := p.Header(); h != nil {
		for _, svc := range h.MandatoryServices {
			if ok, what := p.provides(svc); !ok {
				add(p.PEs[0], fmt.Errorf("mandatory service %q declared but %s: %w", svc, what, ErrMissingPE))
			}
		}
	}
	if h := p.Header(); h != nil {
		for _, pe := range p.All(PEAKAParameter) {
			if a := pe.AKA.Algo; a != nil {
				if svc := algorithmService(a); svc != "" && !h.HasService(svc) {
					add(pe, fmt.Errorf("uses %s but the header does not declare the mandatory service %q: %w", a.AlgorithmID, svc, ErrUndeclaredService))
				}
			}
		}
	}
	puks := map[int]bool{}
	for _, pe := range p.All(PEPUKCodes) {
		for _, c := range pe.PUKs.Configs {
			puks[c.KeyReference] = true
		}
	}
	for _, pe := range p.All(PEPINCodes) {
		seen := map[int]bool{}
		for i, c := range pe.PINs.Configs {
			if seen[c.KeyReference] {
				add(pe, fmt.Errorf("pinconfig[%d]: key reference 0x%02X defined twice: %w", i, c.KeyReference, ErrStructure))
			}
			seen[c.KeyReference] = true
			if c.UnblockingRef >= 0 && !puks[c.UnblockingRef] {
				add(pe, fmt.Errorf("pinconfig[%d]: unblocking reference 0x%02X has no PUK in any pukCodes PE: %w", i, c.UnblockingRef, ErrStructure))
			}
		}
	}
	return errs
}

// provides reports whether the profile contains what a mandatory service
// needs; what describes the missing part.
func (p *Profile) provides(svc string) (bool, string) {
	has := func(t PEType) bool { return p.First(t) != nil }
	switch svc {
	case "usim":
		return has(PEUSIM) || has(PEIoT), "no usim PE"
	case "isim":
		return has(PEISIM), "no isim PE"
	case "csim":
		return has(PECSIM), "no csim PE"
	case "eap":
		return has(PEEAP), "no eap PE"
	case "cave":
		return has(PECDMAParameter), "no cdmaParameter PE"
	case "milenage", "tuak128", "tuak256", "usim-test-algorithm":
		// Declaring an algorithm the profile does not (yet) use is harmless;
		// the reverse is checked separately (algorithmService).
		return has(PEAKAParameter), "no akaParameter PE"
	case "javacard", "multos":
		return true, ""
	}
	// Platform capabilities (ber-tlv, get-identity, profile-a-x25519 …)
	// are requirements on the eUICC, not on PEs.
	return true, ""
}

// algorithmService is the ServicesList flag an algoParameter needs.
func algorithmService(a *AlgoParameter) string {
	switch a.AlgorithmID {
	case esim.AlgorithmMilenage:
		return "milenage"
	case esim.AlgorithmTUAK:
		if len(a.Key) == 32 {
			return "tuak256"
		}
		return "tuak128"
	case esim.AlgorithmTest:
		return "usim-test-algorithm"
	}
	return ""
}
