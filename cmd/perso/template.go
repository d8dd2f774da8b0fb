package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/template"
)

func init() { register(newTemplateCmd) }

func newTemplateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "inspect, validate and personalise SAIP profile templates",
	}
	cmd.AddCommand(newTemplateInspectCmd(a), newTemplateValidateCmd(a), newTemplatePersonaliseCmd(a))
	return cmd
}

// invalid wraps an input error so that perso exits with status 2.
func invalid(err error) error { return exitError{code: 2, err: err} }

func newTemplateInspectCmd(a *app) *cobra.Command {
	var asJSON, showSecrets bool
	var switchAlg, homePLMN string
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "list the PEs, NAAs, mandatory services and personalisable slots of a template",
		Long: `inspect decodes a SAIP template (DER) and prints its profile elements with
offsets, sizes and identification numbers, the NAAs, the mandatory services,
and every personalisable slot with its current value. K, OPc,
security-domain keys and the PIN, PUK and ADM codes are masked unless
--show-secrets is given.

Each file slot says where its value lands in the file and how it is
written: in place, as pieces (split content, or content rewritten by a
later PE), or by rewriting the fill commands of one element (re-encoding its
PE) when the template does not write the content. Notes say why optional
fields (SMSC, SPN, MSISDN, EF.ACC) cannot be personalised.

--switch-algorithm shows the plan of the template switched to milenage,
tuak (TUAK-128), tuak256 or test (template.Options.Algorithm).
--home-plmn MCCMNC adds the fields derived from it and the IMSI (EF.AD's
MNC length, EF.EHPLMN/EF.HPLMNwAcT, ISIM EF.IMPI/IMPU/DOMAIN:
template.Options.HomePLMN) and notes the files too small for them.

--json prints a template.Report (see template/doc.go for the schema).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The template.* settings perso run uses; the flags override
			// them for a look at another choice.
			ts, err := readTemplateSettings(a.templateSetting)
			if err != nil {
				return usageError(fmt.Errorf("template inspect: %w", err))
			}
			opts := ts.opts
			if switchAlg != "" {
				sw, err := switchAlgorithmFlag(switchAlg)
				if err != nil {
					return usagef("template inspect: %v", err)
				}
				opts.Algorithm, opts.KeyLength, ts.keep = sw.Algorithm, sw.KeyLength, false
			}
			if homePLMN != "" {
				opts.HomePLMN = homePLMN
			}
			der, err := readTemplate(cmd, a, args[0])
			if err != nil {
				return err
			}
			r, err := template.InspectWith(der, template.InspectOptions{ShowSecrets: showSecrets, Compile: opts})
			if err != nil {
				return invalid(fmt.Errorf("%s: %w", args[0], err))
			}
			if pl, err := template.CompileWith(der, opts); err == nil {
				// What perso run's report will say (engine.Report.Algorithm).
				r.AlgorithmPolicy = engine.AlgorithmReport(pl, ts.keep)
				for _, c := range pl.Constants() {
					r.Constants = append(r.Constants, fmt.Sprintf("%s: PE #%d (%s) %s, %s", c.Name(), c.PE, c.PEType, c.File, c.Placement))
				}
			}
			markCodes(r, showSecrets)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printTemplateReport(out, args[0], r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "show K, OPc, SD key and PIN/PUK/ADM values instead of masking them")
	cmd.Flags().StringVar(&switchAlg, "switch-algorithm", "", "show the plan switched to milenage, tuak, tuak256 or test")
	cmd.Flags().StringVar(&homePLMN, "home-plmn", "", "home MCC+MNC (5 or 6 digits): show the derived fields")
	templateMaxSizeFlag(cmd)
	return cmd
}

// markCodes treats the PIN, PUK and ADM values of a report like the keys
// (secret, masked unless show): an ADM code opens the card's file system
// as a key would.
func markCodes(r *template.Report, show bool) {
	for i := range r.Slots {
		if k := r.Slots[i].Kind; k == "pin" || k == "puk" {
			r.Slots[i].Secret = true
			if !show {
				r.Slots[i].Value = template.Masked
			}
		}
	}
}

func printTemplateReport(w io.Writer, name string, r *template.Report) {
	fmt.Fprintf(w, "%s: %d bytes, %d PEs, SAIP %d.%d, %q\n", name, r.Size, len(r.PEs), r.Header.MajorVersion, r.Header.MinorVersion, r.Header.ProfileType)
	fmt.Fprintf(w, "ICCID %s\n", r.Header.ICCID)
	fmt.Fprintf(w, "mandatory services: %s\n", strings.Join(r.MandatoryServices, ", "))
	fmt.Fprintln(w, "\nprofile elements:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\ttype\ttag\toffset\tsize\tid\ttemplate")
	for _, pe := range r.PEs {
		id := "-"
		if pe.ID != nil {
			id = fmt.Sprint(*pe.ID)
			if pe.Mandated {
				id += " (mandated)"
			}
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t0x%04x\t%d\t%s\t%s\n", pe.Index, pe.Type, pe.Tag, pe.Offset, pe.Size, id, pe.TemplateID)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nNAAs:")
	for _, n := range r.NAAs {
		fmt.Fprintf(w, "  %-5s PE #%-3d template %s", n.Type, n.PE, n.TemplateID)
		if n.AID != "" {
			fmt.Fprintf(w, "  AID %s", n.AID)
		}
		if n.Algorithm != "" {
			fmt.Fprintf(w, "  algorithm %s", n.Algorithm)
		}
		fmt.Fprintln(w)
	}
	if r.AlgorithmPolicy != "" {
		fmt.Fprintf(w, "\nalgorithm (template.algorithm): %s\n", r.AlgorithmPolicy)
	}
	for _, c := range r.Constants {
		fmt.Fprintf(w, "constant written into the template: %s\n", c)
	}
	if r.AlgorithmSwitch != "" {
		fmt.Fprintf(w, "\nalgorithm switch: %s\n", r.AlgorithmSwitch)
	}
	fmt.Fprintln(w, "\nslots:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  name\tPE\toffset\tlength\tplacement\tvalue")
	for _, s := range r.Slots {
		fmt.Fprintf(tw, "  %s\t#%d %s\t0x%04x\t%d\t%s\t%s\n", s.Name, s.PE, s.PEType, s.Offset, s.Length, slotPlacement(s), s.Value)
	}
	tw.Flush()
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnot personalisable:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if r.CompileError != "" {
		fmt.Fprintf(w, "\nnot usable as a personalisation template: %s\n", r.CompileError)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "\n%d validation problem(s):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

// slotPlacement says where a slot's bytes land and how they are written:
// "in place", "EF.IMSI[0..8] piece", "EF.IMSI[0..8] rewrite of PE #7 (usim)
// ef-imsi: the template writes no content for it".
func slotPlacement(s template.SlotReport) string {
	if s.File == "" || s.FileOffset == nil {
		return "in place"
	}
	place := fmt.Sprintf("%s[%d..%d] %s", s.File, *s.FileOffset, *s.FileOffset+s.Length-1, s.Placement)
	if s.Target != "" {
		place += " of " + s.Target + ": " + s.Reason
	}
	return place
}

// switchAlgorithmFlag reads --switch-algorithm: milenage, tuak (TUAK-128),
// tuak256 or test; "" keeps the template's algorithms.
func switchAlgorithmFlag(s string) (template.Options, error) {
	switch {
	case s == "":
		return template.Options{}, nil
	case strings.EqualFold(s, "tuak256"):
		return template.Options{Algorithm: esim.AlgorithmTUAK, KeyLength: 32}, nil
	}
	alg, err := esim.ParseAlgorithm(s)
	if err != nil {
		return template.Options{}, fmt.Errorf("--switch-algorithm: %w (or tuak256)", err)
	}
	return template.Options{Algorithm: alg}, nil
}

func newTemplateValidateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "check templates: DER syntax, PE structure and order, identifications, mandatory services, slots",
		Long: `validate decodes each template, checks the profile-level rules and that it can
be compiled into a personalisation plan. It prints one line per problem
(naming the PE and byte offset) and exits with status 2 if any file is invalid.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, f := range args {
				der, err := readTemplate(cmd, a, f)
				if err != nil {
					return err
				}
				errs := validateTemplate(der)
				if len(errs) == 0 {
					p, _ := template.Decode(der)
					fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d PEs, %d bytes)\n", f, len(p.PEs), len(der))
					// What the plan cannot personalise, or only by
					// re-encoding a PE per profile, and why.
					if pl, err := template.Compile(der); err == nil {
						for _, n := range pl.Notes() {
							fmt.Fprintf(cmd.OutOrStdout(), "%s: note: not personalisable: %s\n", f, n)
						}
						for _, s := range pl.Slots() {
							if s.Placement == template.PlaceRewrite {
								fmt.Fprintf(cmd.OutOrStdout(), "%s: note: %s (%s) is written by rewriting %s (the PE is re-encoded per profile): %s\n",
									f, s.Name(), s.File, s.Target, s.Reason)
							}
						}
					}
					continue
				}
				bad++
				for _, e := range errs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %v\n", f, e)
				}
			}
			if bad > 0 {
				return invalid(fmt.Errorf("%d of %d template(s) invalid", bad, len(args)))
			}
			return nil
		},
	}
	templateMaxSizeFlag(cmd)
	return cmd
}

// validateTemplate returns every problem found in a template.
func validateTemplate(der []byte) []error {
	p, err := template.Decode(der)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, e := range p.Problems() {
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return errs
	}
	if _, err := template.Compile(der); err != nil {
		return []error{err}
	}
	return nil
}

func newTemplatePersonaliseCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "personalise --template FILE --iccid ICCID --imsi IMSI --ki HEX --opc HEX -o OUT.der",
		Aliases: []string{"personalize"},
		Short:   "personalise one profile from a template",
		Long: `personalise writes one personalised UPP: the template with the given values in
every copy of every field (header ICCID and EF.ICCID, EF.IMSI and EF.ACC, K,
OPc and algorithm in every akaParameter, PINs, PUKs, ADMs, SD keys, and
optionally SMSC, SPN and MSISDN). Fields not given keep the template's value.

Every flag can also come from the environment (PERSO_KI, PERSO_OPC, …) or
perso.yaml; prefer the environment for --ki, --opc, --adm1 and --sd-key so
that secrets stay out of the process list and shell history.

--sd-key takes KVN:ID:HEX (e.g. 01:01:404142...), repeatable, for the
first security domain (the MNO-SD).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPersonalise(cmd, a) },
	}
	f := cmd.Flags()
	f.String("template", "", "template file (SAIP DER)")
	f.StringP("output", "o", "", "output file for the personalised UPP (written with mode 0600)")
	f.String("iccid", "", "ICCID, 18–20 digits as printed")
	f.String("imsi", "", "IMSI, 6–15 digits (also sets EF.ACC)")
	f.String("ki", "", "K (Ki), hex; prefer PERSO_KI")
	f.String("opc", "", "OPc, hex; prefer PERSO_OPC")
	f.String("algorithm", "", "milenage, tuak or test (default: keep the template's); a template that does not declare it is switched to it (TUAK-256 with a 32-byte --ki)")
	f.String("pin1", "", "PIN1, 4–8 digits")
	f.String("pin2", "", "PIN2, 4–8 digits")
	f.String("puk1", "", "PUK1, 8 digits")
	f.String("puk2", "", "PUK2, 8 digits")
	f.String("adm1", "", "ADM1, 4–8 digits or 16 hex digits; prefer PERSO_ADM1")
	f.String("adm2", "", "ADM2, 4–8 digits or 16 hex digits")
	f.StringSlice("sd-key", nil, "security-domain key KVN:ID:HEX (repeatable)")
	f.String("smsc", "", "SMS service centre address (EF.SMSP), e.g. +447700900123")
	f.String("spn", "", "service provider name (EF.SPN)")
	f.String("msisdn", "", "MSISDN (EF.MSISDN record 1), e.g. +447700900999")
	f.Bool("keep-template-keys", false, "allow a profile without --ki/--opc: it keeps the template's (often public test) keys")
	f.Bool("force", false, "replace an existing output file")
	templateMaxSizeFlag(cmd)
	return cmd
}

// personaliseFields are the flags that are record fields: they are checked
// by perso.ParseText, the validator `perso check` uses, under the same
// names (flag = column).
var personaliseFields = []string{"iccid", "imsi", "ki", "opc", "pin1", "pin2", "puk1", "puk2", "adm1", "smsc", "spn", "msisdn", "algorithm"}

func runPersonalise(cmd *cobra.Command, a *app) error {
	v := a.v
	tmpl, out := v.GetString("template"), v.GetString("output")
	if tmpl == "" || out == "" {
		return usagef("template personalise: --template and -o/--output are required")
	}
	keep := v.GetBool("keep-template-keys")
	oo := outputOptions{force: v.GetBool("force"), secret: true, inputs: []string{tmpl}, flag: "-o"}
	if out != "-" {
		if err := checkOutputPath(out, oo); err != nil {
			return err
		}
	}
	fields := map[string]string{}
	for _, name := range personaliseFields {
		fields[name] = strings.TrimSpace(v.GetString(name))
	}
	alg := fields["algorithm"]
	if !keep && (fields["ki"] == "" || (fields["opc"] == "" && !isTestAlgorithm(alg))) {
		return usagef("template personalise: --ki and --opc are required: without them the profile would keep the template's keys, " +
			"which are public test keys in every published template (pass --keep-template-keys to do that on purpose)")
	}
	der, err := readTemplate(cmd, a, tmpl)
	if err != nil {
		return err
	}
	plan, ts, err := compileTemplate(a, der)
	if err != nil {
		return err
	}
	if alg != "" && ts.opts.Algorithm == esim.AlgorithmUnset {
		// --algorithm names the algorithm the profile must use: a
		// template that does not declare it (TS.48's test algorithm) is
		// switched to it, every akaParameter and the header.
		want, perr := esim.ParseAlgorithm(alg)
		declared := false
		for _, d := range plan.Algorithms() {
			declared = declared || d == want
		}
		if perr == nil && !declared {
			o := ts.opts
			o.Algorithm = want
			if want == esim.AlgorithmTUAK {
				o.KeyLength = len(fields["ki"]) / 2
			}
			if plan, err = template.CompileWith(der, o); err != nil {
				return invalid(fmt.Errorf("%s: switching to %s: %w", tmpl, want, err))
			}
			a.log.Info("template switched to the requested algorithm", "switch", plan.Switch())
		}
	}
	// A field not given keeps the template's value; the ICCID and IMSI are
	// still checked (the output carries them).
	if fields["iccid"] == "" || fields["imsi"] == "" {
		p, err := template.Decode(der)
		if err != nil {
			return invalid(fmt.Errorf("%s: %w", tmpl, err))
		}
		if fields["iccid"] == "" {
			fields["iccid"] = fmt.Sprint(p.ICCID())
		}
		if fields["imsi"] == "" {
			fields["imsi"] = fmt.Sprint(p.IMSI())
		}
	}
	layout := perso.Layout{KiBytes: 16, OPcBytes: 16}
	if len(fields["ki"]) == 64 {
		layout.KiBytes = 32
	}
	if len(fields["opc"]) == 64 {
		layout.OPcBytes = 32
	}
	rec, probs, err := perso.ParseText(fields, perso.Options{File: "flags", Layout: layout, Rules: perso.Rules{NoDuplicateCheck: true}}, keep)
	if err != nil {
		return invalid(fmt.Errorf("template personalise: %w", err))
	}
	defer rec.Wipe()
	if len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = flagProblem(p)
		}
		return usagef("template personalise: %s", strings.Join(msgs, "; "))
	}
	vals, err := engine.Values(&rec, alg == "")
	if err != nil && !(keep && len(vals.K) == 0) {
		return invalid(fmt.Errorf("template personalise: %w", err))
	}
	defer vals.Zero()
	// ADM2 and the SD keys are not record fields of perso's model: they
	// keep their own flag parsers.
	if vals.ADM2, err = codeFlag("adm2", esim.ADM, v.GetString("adm2")); err != nil {
		return invalid(err)
	}
	for _, s := range v.GetStringSlice("sd-key") {
		k, err := sdKeyFlag(s)
		if err != nil {
			return invalid(err)
		}
		vals.SDKeys = append(vals.SDKeys, k)
	}
	upp, err := plan.Apply(&vals, nil)
	if err != nil {
		return invalid(err)
	}
	defer clear(upp)
	// Belt and braces: the output must decode and validate.
	p, err := template.Decode(upp)
	if err == nil {
		err = p.Validate()
	}
	if err != nil {
		return fmt.Errorf("personalised profile failed re-validation: %w", err)
	}
	if out == "-" {
		_, err = os.Stdout.Write(upp)
		return err
	}
	if err := writeAtomic(out, upp, oo); err != nil {
		return err
	}
	if keep && (len(vals.K) == 0 || len(vals.OPc) == 0) {
		a.log.Warn("the profile keeps the template's K/OPc (--keep-template-keys): not for a real subscriber", "file", out)
	}
	a.log.Info("personalised profile written", "file", out, "bytes", len(upp), "iccid", p.ICCID())
	return nil
}

// flagProblem words a validation problem in terms of the flag it concerns.
func flagProblem(p perso.Problem) string {
	s := "--" + p.Column + ": " + p.Reason
	if p.Class != "" {
		s += " (value: " + p.Class + ")"
	}
	return s
}

func isTestAlgorithm(s string) bool {
	alg, err := esim.ParseAlgorithm(s)
	return err == nil && alg == esim.AlgorithmTest
}

// codeFlag encodes a PIN/PUK/ADM flag (digits, or 16 hex digits for an
// ADM key) into the card form; empty leaves the template's.
func codeFlag(name string, kind esim.CodeKind, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := kind.EncodeString(s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	return b[:], nil
}

func sdKeyFlag(s string) (template.SDKey, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return template.SDKey{}, errors.New("--sd-key: want KVN:ID:HEX")
	}
	kvn, err1 := hex.DecodeString(parts[0])
	id, err2 := hex.DecodeString(parts[1])
	key, err3 := hex.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(kvn) != 1 || len(id) != 1 {
		return template.SDKey{}, errors.New("--sd-key: want KVN:ID:HEX with one-byte hex KVN and ID")
	}
	return template.SDKey{KVN: kvn[0], ID: id[0], Key: key}, nil
}
