package main

import (
	"context"
	"crypto/ecdsa"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

func init() { register(newVerifyCmd) }

type verifyOptions struct {
	template, input, batch string
	sample                 int
	seed                   uint64
	transportKey           int
	transportAlg           string
	mcc, mnc               string
}

func newVerifyCmd(a *app) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify [--template T --input F] [--batch ID] --sample N",
		Short: "Download a random sample of stored profiles over ES9+ with the virtual eUICC and check each recovered UPP (--offline: open them locally)",
		Long: `Checks what perso run stored, independently of the engine, as a device
would get it.
` + verifyES9Help + `

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			offline, err := verifyOffline(cmd)
			if err != nil {
				return err
			}
			if !offline {
				return runVerifyES9(cmd.Context(), cmd, a, o, cmd.OutOrStdout())
			}
			if o.template == "" || o.input == "" {
				return usagef("verify --offline: --template and --input are required")
			}
			der, err := readTemplate(cmd, a, o.template)
			if err != nil {
				return err
			}
			return runVerify(cmd.Context(), a, o, der, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.template, "template", "", "SAIP DER profile template of the run (with --input: each recovered UPP is compared with its record; required with --offline)")
	f.StringVar(&o.input, "input", "", "the run's input file, the sample is drawn from its records (required with --offline)")
	f.StringVar(&o.batch, "batch", "", "batch ID (--offline: default batch- and the input's SHA-256 prefix, as perso run; without --input: its profile type is allocated from)")
	f.IntVar(&o.sample, "sample", 20, "number of records to check (1..10000)")
	f.Uint64Var(&o.seed, "seed", 0, "sample seed (0: random); the same seed draws the same records")
	f.IntVar(&o.transportKey, "transport-key", 0, "as perso run: the input's Ki/OPc are encrypted under HSM key transport-N")
	f.StringVar(&o.transportAlg, "transport-alg", perso.TransportAES128ECB, "transport algorithm (with --transport-key)")
	f.StringVar(&o.mcc, "mcc", "", "as perso run: every IMSI must start with this MCC")
	f.StringVar(&o.mnc, "mnc", "", "… and this MNC")
	f.String("hsm.token", "", "HSM token label (default from config: hsm.token)")
	f.String("store.driver", "", "store driver: sqlite or postgres (default from config: store.driver)")
	f.String("store.dsn", "", "store DSN (default from config: store.dsn)")
	f.String("template.algorithm", "", "the template.algorithm perso run used: auto, keep, milenage, tuak128, tuak256 or test (default from config)")
	templateMaxSizeFlag(cmd)
	addVerifyES9Flags(cmd)
	return cmd
}

// verifyPick is one sampled record: its ICCID and the SHA-256 of the UPP
// personalised directly from it (the record's secrets are wiped at once).
type verifyPick struct {
	iccid, imsi string
	digest      [32]byte
}

func runVerify(ctx context.Context, a *app, o verifyOptions, der []byte, out io.Writer) error {
	if o.sample < 1 || o.sample > 10000 {
		return usagef("verify: --sample %d: want 1..10000", o.sample)
	}
	// The template settings perso run compiled the template with
	// (template.*): the same switch, derived fields and algorithm policy.
	plan, ts, err := compileTemplate(a, der)
	if err != nil {
		return usageError(fmt.Errorf("verify: template %s: %w", o.template, err))
	}
	keep := ts.keep
	if o.batch == "" {
		sum, err := fileSHA256(o.input)
		if err != nil {
			return usagef("verify: --input %s: %v", o.input, err)
		}
		o.batch = "batch-" + sum[:16]
	}
	seed := o.seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	pool, err := openHSM(ctx, a, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The records are read as perso run read them: the same rules and
	// transport decryption (by the HSM).
	read := perso.Options{Rules: perso.Rules{MCC: o.mcc, MNC: o.mnc}, Decrypter: pool, Layout: ts.layout()}
	if o.transportKey != 0 {
		read.Transport = perso.Transport{Key: o.transportKey, Alg: o.transportAlg}
	}
	picks, good, err := verifySampleWith(ctx, o.input, read, plan, keep, o.sample, seed)
	if err != nil {
		return err
	}

	dsn := a.v.GetString("store.dsn")
	db, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
	if err != nil {
		return fmt.Errorf("verify: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer db.Close()
	b, err := db.GetBatch(ctx, o.batch)
	if err != nil {
		return fmt.Errorf("verify: batch %s: %w (name it with --batch as perso run did)", o.batch, err)
	}
	pubs := map[esim.Curve]*ecdsa.PublicKey{}
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		_, point, err := pool.PublicKey(ctx, hsmpool.DPpbLabel(c))
		if err != nil {
			return fmt.Errorf("verify: DPpb public key (%s): %w (import the SGP.26 DPpb keys: perso hsm init --import-sgp26)", c, err)
		}
		if pubs[c], err = c.PublicKey(point); err != nil {
			return err
		}
	}
	start := time.Now()
	var failed int
	for i, p := range picks {
		curve := esim.CurveP256
		if i%2 == 1 {
			curve = esim.CurveBrainpoolP256r1
		}
		if err := verifyOne(ctx, pool, db, b, p, curve, pubs[curve]); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("verify: stopped after %d of %d profiles: %w", i, len(picks), context.Cause(ctx))
			}
			failed++
			fmt.Fprintf(out, "FAIL  %s: %v\n", p.iccid, err)
			continue
		}
		fmt.Fprintf(out, "ok    %s  %s  opened as the eUICC, equal to the record personalised directly\n", p.iccid, curve)
	}
	fmt.Fprintf(out, "verify: batch %s: %d of %d sampled profiles (of %d good records, seed %d) opened and equal, %d failed, in %s\n",
		b.ID, len(picks)-failed, len(picks), good, seed, failed, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return fmt.Errorf("verify: %d of %d sampled profiles of batch %s did not open to the personalised UPP", failed, len(picks), b.ID)
	}
	return nil
}

// verifySample is verifySampleWith for plain inputs (no transport
// encryption, no MCC/MNC rules).
func verifySample(ctx context.Context, input string, plan *template.Plan, keep bool, n int, seed uint64) ([]verifyPick, int64, error) {
	return verifySampleWith(ctx, input, perso.Options{}, plan, keep, n, seed)
}

// verifySampleWith draws n good records of the input uniformly (reservoir
// sampling, one pass), read with the options perso run read them with,
// and personalises each directly.
func verifySampleWith(ctx context.Context, input string, read perso.Options, plan *template.Plan, keep bool, n int, seed uint64) ([]verifyPick, int64, error) {
	r, _, err := perso.Open(input, read)
	if err != nil {
		return nil, 0, usagef("verify: --input %s: %v", input, err)
	}
	defer r.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var picks []verifyPick
	var good int64
	for {
		batch, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("verify: reading %s: %w", input, err)
		}
		for i := 0; i < int(batch.NumRows()); i++ {
			good++
			slot := len(picks)
			if len(picks) >= n {
				j := rng.Int64N(good)
				if j >= int64(n) {
					continue
				}
				slot = int(j)
			}
			rec, err := perso.RecordAt(batch, i)
			if err != nil {
				batch.Release()
				return nil, 0, fmt.Errorf("verify: record %d: %w", good, err)
			}
			p, err := verifyPersonalise(plan, keep, &rec)
			rec.Wipe()
			if err != nil {
				// The run rejected it too (the template refuses it): not a sample.
				good--
				continue
			}
			if slot == len(picks) {
				picks = append(picks, p)
			} else {
				picks[slot] = p
			}
		}
		batch.Release()
	}
	return picks, good, nil
}

func verifyPersonalise(plan *template.Plan, keep bool, rec *perso.Record) (verifyPick, error) {
	v, err := engine.Values(rec, keep)
	if err != nil {
		return verifyPick{}, err
	}
	upp, err := plan.Apply(&v, nil)
	if err != nil {
		return verifyPick{}, err
	}
	p := verifyPick{iccid: rec.ICCID, imsi: rec.IMSI, digest: sha256.Sum256(upp)}
	clear(upp)
	return p, nil
}

// verifyOne binds the stored profile of p for a fresh one-time eUICC key,
// opens it and compares.
func verifyOne(ctx context.Context, pool *hsmpool.Pool, db *store.DB, b store.Batch, p verifyPick, curve esim.Curve, dppb *ecdsa.PublicKey) error {
	sp, err := db.GetProfile(ctx, p.iccid)
	if err != nil {
		return fmt.Errorf("not in the store: %w", err)
	}
	if sp.BatchID != b.ID {
		return fmt.Errorf("held by batch %s, not %s (a conflict the run reported)", sp.BatchID, b.ID)
	}
	flat, err := pool.UnprotectPPK(ctx, b.KeyBlob, p.iccid, sp.ProtectedPPK)
	if err != nil {
		return fmt.Errorf("unsealing the PPK: %w", err)
	}
	ppk, err := bpp.PPKFromBytes(flat)
	clear(flat)
	if err != nil {
		return err
	}
	defer ppk.Zero()
	euicc, err := bpp.GenerateOneTimeKey(curve, crand.Reader)
	if err != nil {
		return err
	}
	defer euicc.Zero()
	eidValue, err := esim.ParseEID(demoEID)
	if err != nil {
		return err
	}
	eidBCD := eidValue.BCD()
	iccidValue, err := esim.ParseICCID(p.iccid)
	if err != nil {
		return err
	}
	tid := make([]byte, 16)
	if _, err := io.ReadFull(crand.Reader, tid); err != nil {
		return err
	}
	pkg, err := bpp.Bind(ctx, pool.Signer(hsmpool.DPpbLabel(curve)), pool.KeyAgreement(curve), &bpp.BindParams{
		TransactionID: tid, HostID: []byte("perso-verify"), EID: eidBCD[:], EUICCOtpk: euicc.PublicKey(),
		Metadata: &bpp.StoreMetadata{ICCID: iccidValue, ServiceProviderName: sp.Metadata.ServiceProviderName,
			ProfileName: sp.Metadata.ProfileName, ProfileClass: bpp.ClassTest},
	}, &bpp.PPP{Segments: sp.Segments, PPK: ppk})
	if err != nil {
		return fmt.Errorf("binding: %w", err)
	}
	opened, err := bpp.Open(pkg, euicc, eidBCD[:], dppb)
	if err != nil {
		return fmt.Errorf("the eUICC rejected the package: %w", err)
	}
	defer clear(opened.UPP)
	if sha256.Sum256(opened.UPP) != p.digest {
		return errors.New("the opened UPP differs from the record personalised directly")
	}
	if sp.IMSI != p.imsi {
		return fmt.Errorf("stored IMSI %s, the record's %s", sp.IMSI, p.imsi)
	}
	return nil
}

// fileSHA256 is the hex SHA-256 of a file, as perso run names batches.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
