package template

import (
	"encoding/hex"
	"fmt"

	"github.com/perso-esim/perso/esim"
)

// Report describes a template for people and tools (`perso template
// inspect`). Its JSON form is a stable interface: fields are only ever
// added, never renamed or removed; see doc.go for the schema.
type Report struct {
	Size              int          `json:"size"`
	Header            HeaderReport `json:"header"`
	PEs               []PEReport   `json:"pes"`
	NAAs              []NAAReport  `json:"naas"`
	MandatoryServices []string     `json:"mandatoryServices"`
	Slots             []SlotReport `json:"slots"`
	Problems          []string     `json:"problems"` // validation problems; empty when valid
	CompileError      string       `json:"compileError,omitempty"`
	// Notes says, for each optional field the template cannot take, why
	// (Plan.Notes): a record setting it is refused.
	Notes []string `json:"notes"`
	// AlgorithmSwitch describes the algorithm switch the plan applies
	// (InspectOptions.Compile.Algorithm; Plan.Switch), "" when none.
	AlgorithmSwitch string `json:"algorithmSwitch,omitempty"`
	// AlgorithmPolicy is what a batch does with the records' algorithms
	// ("keep (usim-test-algorithm)", "switch …", "record (milenage)"),
	// filled in by callers that know the policy (perso template inspect).
	AlgorithmPolicy string `json:"algorithmPolicy,omitempty"`
	// Constants lists where the per-template values (GID1/GID2,
	// SUCI_Calc_Info) are written into the template (Plan.Constants),
	// filled in by callers (perso template inspect).
	Constants []string `json:"constants,omitempty"`
}

// InspectOptions are the settings of InspectWith.
type InspectOptions struct {
	ShowSecrets bool    // show K, OPc and SD keys instead of Masked
	Compile     Options // the plan's settings (CompileWith): the report describes the compiled template
}

// HeaderReport is the ProfileHeader.
type HeaderReport struct {
	MajorVersion   int      `json:"majorVersion"`
	MinorVersion   int      `json:"minorVersion"`
	ProfileType    string   `json:"profileType,omitempty"`
	ICCID          string   `json:"iccid"`
	MandatoryGFSTE []string `json:"mandatoryGFSTE"`
}

// PEReport is one profile element.
type PEReport struct {
	Index      int    `json:"index"`
	Type       string `json:"type"`
	Tag        string `json:"tag"` // hex
	Offset     int    `json:"offset"`
	Size       int    `json:"size"`
	ID         *int   `json:"id"` // identification; null for the header
	Mandated   bool   `json:"mandated"`
	TemplateID string `json:"templateId,omitempty"` // file-system PEs
}

// NAAReport is a network access application (or the MF) instance.
type NAAReport struct {
	Type       string `json:"type"` // mf, usim, isim, csim
	PE         int    `json:"pe"`
	AID        string `json:"aid,omitempty"` // hex, from the ADF's dfName
	TemplateID string `json:"templateId"`
	Algorithm  string `json:"algorithm,omitempty"` // of the akaParameter that follows, if any
}

// SlotReport is one personalisable slot and its current value.
type SlotReport struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	PE     int    `json:"pe"`
	PEType string `json:"peType"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Fixed  bool   `json:"fixed"`  // patched in place (else the PE is re-encoded)
	Secret bool   `json:"secret"` // K, OPc, SD keys: masked unless asked
	Value  string `json:"value"`
	KeyRef *int   `json:"keyRef,omitempty"` // PIN/PUK key reference
	KVN    *int   `json:"kvn,omitempty"`    // SD keys
	KeyID  *int   `json:"keyId,omitempty"`  // SD keys
	SD     *int   `json:"sd,omitempty"`     // SD keys: securityDomain ordinal
	// File content slots: the file, where the bytes land in it, and how
	// Apply writes them ("in place", "piece" of split content, or
	// "rewrite" of Target's fill commands, re-encoding its PE, for Reason).
	File       string `json:"file,omitempty"`
	FileOffset *int   `json:"fileOffset,omitempty"`
	From       *int   `json:"from,omitempty"` // offset of this piece in the value
	Placement  string `json:"placement,omitempty"`
	Target     string `json:"target,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Masked is what Inspect shows instead of a secret value.
const Masked = "********"

// Inspect decodes a template and describes it. Decoding errors are
// returned; validation problems and a failed compilation are reported in
// the Report. Secret slot values are masked unless showSecrets is set.
func Inspect(der []byte, showSecrets bool) (*Report, error) {
	return InspectWith(der, InspectOptions{ShowSecrets: showSecrets})
}

// InspectWith is Inspect with the plan's settings: with an algorithm
// switch, the report describes the switched template (its header services,
// akaParameters and slots) and says what the switch changed.
func InspectWith(der []byte, o InspectOptions) (*Report, error) {
	showSecrets := o.ShowSecrets
	if err := o.Compile.check(); err != nil {
		return nil, err
	}
	p, err := Decode(der)
	if err != nil {
		return nil, err
	}
	switched := ""
	if o.Compile.Algorithm != esim.AlgorithmUnset {
		if switched, err = p.SwitchAlgorithm(o.Compile); err != nil {
			return nil, err
		}
		if p, err = Decode(p.Encode()); err != nil {
			return nil, err
		}
		der = p.src
	}
	if err != nil {
		return nil, err
	}
	r := &Report{Size: len(der), PEs: []PEReport{}, NAAs: []NAAReport{}, Slots: []SlotReport{}, Problems: []string{}, MandatoryServices: []string{}, Notes: []string{},
		AlgorithmSwitch: switched}
	if h := p.Header(); h != nil {
		r.Header = HeaderReport{MajorVersion: h.MajorVersion, MinorVersion: h.MinorVersion, ProfileType: h.ProfileType,
			MandatoryGFSTE: append([]string{}, h.MandatoryGFSTE...)}
		if c, err := esim.ICCIDFromBCD(h.ICCID); err == nil {
			r.Header.ICCID = c.String()
		}
		r.MandatoryServices = append(r.MandatoryServices, h.MandatoryServices...)
	}
	var lastNAA *NAAReport
	for _, pe := range p.PEs {
		pr := PEReport{Index: pe.Index, Type: pe.Type.String(), Tag: pe.Node.Tag.String(), Offset: pe.Offset, Size: pe.Size(), Mandated: pe.Mandated}
		if pe.Type == PEUnknown {
			pr.Type = "unknown"
		}
		if pe.ID >= 0 {
			id := pe.ID
			pr.ID = &id
		}
		if pe.FS != nil {
			pr.TemplateID = pe.FS.TemplateID
		}
		r.PEs = append(r.PEs, pr)
		if pe.Type.IsNAA() {
			n := NAAReport{Type: pe.Type.String(), PE: pe.Index, TemplateID: pe.FS.TemplateID}
			if len(pe.FS.Files) > 0 {
				if fcp := pe.FS.Files[0].FCP; fcp != nil {
					if aid := fcp.DFName(); aid != nil {
						n.AID = hex.EncodeToString(aid)
					}
				}
			}
			r.NAAs = append(r.NAAs, n)
			lastNAA = &r.NAAs[len(r.NAAs)-1]
		}
		if pe.Type == PEAKAParameter && lastNAA != nil && lastNAA.Algorithm == "" {
			if pe.AKA.Algo != nil {
				lastNAA.Algorithm = pe.AKA.Algo.AlgorithmID.String()
			} else {
				lastNAA.Algorithm = "mapping"
			}
		}
	}
	for _, e := range p.Problems() {
		r.Problems = append(r.Problems, e.Error())
	}
	pl, err := p.compile(o.Compile)
	if err != nil {
		r.CompileError = err.Error()
		return r, nil
	}
	for _, s := range pl.slots {
		sr := SlotReport{Name: s.Name(), Kind: s.Kind.String(), PE: s.PE, PEType: s.PEType.String(), Offset: s.Offset,
			Length: s.Len, Fixed: s.Fixed, Secret: s.Secret(), Value: slotValue(p, pl, s)}
		switch s.Kind {
		case SlotPIN, SlotPUK:
			ref := s.KeyRef
			sr.KeyRef = &ref
		case SlotSDKey:
			kvn, id, sd := int(s.KVN), int(s.KeyID), s.SD
			sr.KVN, sr.KeyID, sr.SD = &kvn, &id, &sd
		}
		if s.File != "" {
			fo, from := s.FileOffset, s.From
			sr.File, sr.FileOffset, sr.From, sr.Placement, sr.Target, sr.Reason = s.File, &fo, &from, s.Placement.String(), s.Target, s.Reason
		}
		if s.Secret() && !showSecrets {
			sr.Value = Masked
		}
		r.Slots = append(r.Slots, sr)
	}
	r.Notes = append(r.Notes, pl.notes...)
	return r, nil
}

// slotValue renders a slot's current template value.
func slotValue(p *Profile, pl *Plan, s Slot) string {
	if s.Placement == PlaceRewrite {
		return "(not written by the template)"
	}
	if s.Placement == PlacePiece {
		return fmt.Sprintf("(bytes %d..%d of the value) %s", s.From, s.From+s.Len-1, hex.EncodeToString(pl.tmpl[s.Offset:s.Offset+s.Len]))
	}
	switch s.Kind {
	case SlotSMSC:
		v, err := DecodeSMSP(pl.tmpl[s.Offset : s.Offset+s.Len])
		if err != nil {
			return "(undecodable)"
		}
		return v
	case SlotMSISDN:
		v, err := DecodeMSISDN(pl.tmpl[s.Offset : s.Offset+s.Len])
		if err != nil {
			return "(undecodable)"
		}
		return v
	case SlotSPN:
		cond, name, err := DecodeSPN(pl.tmpl[s.Offset : s.Offset+s.Len])
		if err != nil {
			return "(undecodable)"
		}
		return fmt.Sprintf("%q (display condition 0x%02X)", name, cond)
	}
	b := pl.tmpl[s.Offset : s.Offset+s.Len]
	var v fmt.Stringer
	var err error
	switch s.Kind {
	case SlotHeaderICCID:
		v, err = esim.ICCIDFromBCD(b)
	case SlotEFICCID:
		v, err = esim.ICCIDFromSwappedBCD(b)
	case SlotIMSI:
		v, err = esim.IMSIFromEF(b)
	case SlotAlgorithm:
		return esim.Algorithm(b[0]).String()
	case SlotPIN, SlotPUK:
		return esim.CodeText(b)
	default:
		return hex.EncodeToString(b)
	}
	if err != nil {
		return "(undecodable: " + hex.EncodeToString(b) + ")"
	}
	return v.String()
}
