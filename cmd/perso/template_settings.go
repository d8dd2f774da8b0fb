package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/template"
)

// Per-template settings (template.* in the configuration): how the
// template is compiled for a run. They live in the configuration rather
// than in the records because they are the operator's choices for a
// template (one perso.yaml, or PERSO_TEMPLATE_* variables, per template),
// and perso run and perso verify must read them alike: verify rebuilds
// the UPPs run built.

// algorithmModes are the values of template.algorithm.
var algorithmModes = []string{"auto", "keep", "milenage", "tuak128", "tuak256", "test"}

// templateSettings is the parsed template.* configuration.
type templateSettings struct {
	opts template.Options
	// keep: the template's algorithm stays whatever the records say
	// (template.algorithm keep). Otherwise the records' algorithm is
	// written and must be one the (possibly switched) template declares.
	keep bool
	mode string // template.algorithm as configured
}

// layout is the width of the records' Ki and OPc columns that the
// algorithm setting implies: a template switched to TUAK takes TUAK records
// (TOPc of 32 bytes; Ki of 16 or 32). The zero Layout (16 and 16) otherwise.
func (s templateSettings) layout() perso.Layout {
	if s.opts.Algorithm == esim.AlgorithmTUAK {
		return perso.Layout{KiBytes: s.opts.KeyLength, OPcBytes: 32}
	}
	return perso.Layout{}
}

// templateSetting is the effective value of a template.* key: flag, then
// environment, then configuration file, then default. Not viper's
// GetString: the commands' --template flag (a file name) is bound to the
// key "template" and shadows every "template.*" key in viper's nested
// lookup.
func (a *app) templateSetting(key string) string {
	if c := a.conf.cmd; c != nil {
		if f := c.Flags().Lookup(key); f != nil && f.Changed {
			return f.Value.String()
		}
	}
	if v, ok := os.LookupEnv(envName(key)); ok && v != "" {
		return v
	}
	if fv, ok := a.conf.values[key]; ok && fv.node != nil {
		return fv.node.Value
	}
	if s, ok := settingFor(key); ok {
		return fmt.Sprint(s.def)
	}
	return ""
}

// readTemplateSettings reads template.algorithm, template.home_plmn,
// template.no_derive, template.gid1, template.gid2 and template.suci
// through get (app.templateSetting).
func readTemplateSettings(get func(key string) string) (templateSettings, error) {
	var s templateSettings
	s.mode = strings.ToLower(strings.TrimSpace(get("template.algorithm")))
	switch s.mode {
	case "", "auto":
		s.mode = "auto"
	case "keep":
		s.keep = true
	case "milenage":
		s.opts.Algorithm = esim.AlgorithmMilenage
	case "tuak128":
		s.opts.Algorithm, s.opts.KeyLength = esim.AlgorithmTUAK, 16
	case "tuak256":
		s.opts.Algorithm, s.opts.KeyLength = esim.AlgorithmTUAK, 32
	case "test":
		s.opts.Algorithm = esim.AlgorithmTest
	default:
		return s, fmt.Errorf("template.algorithm %q: want one of %s", s.mode, strings.Join(algorithmModes, ", "))
	}
	s.opts.HomePLMN = strings.TrimSpace(get("template.home_plmn"))
	for _, d := range strings.Split(get("template.no_derive"), ",") {
		switch strings.TrimSpace(strings.ToLower(d)) {
		case "":
		case "ad":
			s.opts.NoDerive |= template.DeriveAD
		case "hplmn":
			s.opts.NoDerive |= template.DeriveHPLMN
		case "isim":
			s.opts.NoDerive |= template.DeriveISIM
		case "csim":
			s.opts.NoDerive |= template.DeriveCSIM
		default:
			return s, fmt.Errorf("template.no_derive %q: want a comma-separated list of ad, hplmn, isim, csim", d)
		}
	}
	var err error
	if s.opts.GID1, err = hexSetting(get, "template.gid1"); err != nil {
		return s, err
	}
	if s.opts.GID2, err = hexSetting(get, "template.gid2"); err != nil {
		return s, err
	}
	if s.opts.SUCI, err = parseSUCI(get("template.suci")); err != nil {
		return s, fmt.Errorf("template.suci: %w", err)
	}
	return s, nil
}

func hexSetting(get func(string) string, key string) ([]byte, error) {
	t := strings.TrimSpace(get(key))
	if t == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(t)
	if err != nil || len(b) > 255 {
		return nil, fmt.Errorf("%s: want up to 255 bytes in hex (e.g. 0a01)", key)
	}
	return b, nil
}

// parseSUCI reads template.suci: the protection schemes in priority order,
// comma-separated, each "null" or "A:ID:KEYHEX" / "B:ID:KEYHEX" (Profile A
// with a 32-byte X25519 key, Profile B with a 33-byte compressed P-256
// key, ID the home network public key identifier 0..255). A scheme may
// name the ID of a key given earlier without repeating the key ("A:3").
func parseSUCI(s string) (*template.SUCICalcInfo, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	info := &template.SUCICalcInfo{}
	have := map[byte]bool{}
	for _, e := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(e), ":")
		var sc template.SUCIScheme
		switch strings.ToLower(parts[0]) {
		case "null":
			if len(parts) != 1 {
				return nil, fmt.Errorf("%q: the null-scheme takes no key", e)
			}
			info.Schemes = append(info.Schemes, sc)
			continue
		case "a", "profile-a":
			sc.Scheme = 1
		case "b", "profile-b":
			sc.Scheme = 2
		default:
			return nil, fmt.Errorf("%q: want null, A:ID:KEYHEX or B:ID:KEYHEX", e)
		}
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("%q: want %s:ID:KEYHEX", e, parts[0])
		}
		id, err := strconv.ParseUint(parts[1], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("%q: key identifier %q: want 0..255", e, parts[1])
		}
		sc.KeyID = byte(id)
		if len(parts) == 3 {
			key, err := hex.DecodeString(parts[2])
			if err != nil {
				return nil, fmt.Errorf("%q: the key is not hex", e)
			}
			if have[sc.KeyID] {
				return nil, fmt.Errorf("%q: key identifier %d given twice", e, id)
			}
			have[sc.KeyID] = true
			info.Keys = append(info.Keys, template.HomeNetworkKey{ID: sc.KeyID, Key: key})
		}
		info.Schemes = append(info.Schemes, sc)
	}
	return info, nil
}

// compileTemplate compiles der with the template settings; errors are
// usage errors naming the setting when a setting is at fault.
func compileTemplate(a *app, der []byte) (*template.Plan, templateSettings, error) {
	s, err := readTemplateSettings(a.templateSetting)
	if err != nil {
		return nil, s, usageError(err)
	}
	pl, err := template.CompileWith(der, s.opts)
	if err != nil {
		var te *template.Error
		if errors.As(err, &te) && strings.HasPrefix(te.Field, "Options.") {
			return nil, s, usageError(fmt.Errorf("%w (check the template.* settings)", err))
		}
		return nil, s, err
	}
	return pl, s, nil
}

// algorithmHint explains a record algorithm the template does not declare
// in terms of the settings that fix it.
func algorithmHint(pl *template.Plan) string {
	var names []string
	for _, a := range pl.Algorithms() {
		names = append(names, a.String())
	}
	return fmt.Sprintf("the template declares only %s (its header's eUICC-Mandatory-services). Set template.algorithm "+
		"(perso.yaml, PERSO_TEMPLATE_ALGORITHM or --template.algorithm) to the records' algorithm (milenage, tuak128, tuak256, test) "+
		"to switch the template to it (every akaParameter and the header), or to keep to keep the template's algorithm "+
		"whatever the records say", strings.Join(names, ", "))
}
