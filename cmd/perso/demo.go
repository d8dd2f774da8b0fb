package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
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

func init() { register(newDemoCmd) }

// demoEID is the EID of the SGP.26 test eUICC.
const demoEID = "89049032123451234512345678901235"

type demoOptions struct {
	template   string
	count      int
	iccidStart string
	imsiStart  string
	demoPINs   bool // hsm.pin unset: log in with the demo PIN
	maxSize    int64
}

func newDemoCmd(a *app) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo --template FILE",
		Short: "Personalise, protect, store, bind and open a few profiles with the configured HSM",
		Long: `Runs the core of perso end to end on a handful of generated records:

  records (perso generator) → template.Plan.Apply → bpp.Protect (fresh PPK)
  → PPK sealed under an HSM batch key → store (state Available)
  → ES2+ DownloadOrder/ConfirmOrder → PPK unsealed → bpp.Bind with the HSM
  (one-time ECDH + DPpb signature; even profiles NIST P-256, odd brainpoolP256r1)
  → bpp.Open as the SGP.26 test eUICC → the UPP must equal the personalised one.

It needs a provisioned token (perso hsm init) and uses the embedded store
(store.dsn, default perso.db) unless configured otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.maxSize, err = templateMaxSize(cmd, a); err != nil {
				return err
			}
			return runDemo(cmd.Context(), a, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.template, "template", "", "TS.48 / SAIP DER template (required)")
	f.IntVar(&o.count, "count", 5, "number of profiles")
	f.StringVar(&o.iccidStart, "iccid-start", "8949449999990000012", "first ICCID (with Luhn digit)")
	f.StringVar(&o.imsiStart, "imsi-start", "001010000000001", "first IMSI")
	f.String("hsm.token", "", "HSM token label (default from config: hsm.token)")
	f.String("store.dsn", "", "store DSN (default from config: store.dsn)")
	f.BoolVar(&o.demoPINs, "demo-pins", false, "when hsm.pin is unset, log in with the demo PIN 1234 (a token made by hsm init --demo-pins)")
	templateMaxSizeFlag(cmd)
	_ = cmd.MarkFlagRequired("template")
	return cmd
}

func runDemo(ctx context.Context, a *app, o demoOptions, out io.Writer) error {
	if o.count < 1 || o.count > 10000 {
		return exitError{2, fmt.Errorf("demo: --count %d: want 1..10000", o.count)}
	}
	if o.maxSize == 0 {
		o.maxSize = defaultTemplateMaxSize
	}
	der, err := readBounded(ctx, o.template, o.maxSize, "template", templateMaxSizeSetting)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	plan, err := template.Compile(der)
	if err != nil {
		return usageError(fmt.Errorf("demo: template %s: %w", o.template, err))
	}
	pool, err := openHSM(ctx, a, o.demoPINs)
	if err != nil {
		return fmt.Errorf("demo: opening the HSM: %w (run `perso hsm init` first, see scripts/demo.sh)", err)
	}
	defer pool.Close()
	dsn := a.v.GetString("store.dsn")
	st, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
	if err != nil {
		return fmt.Errorf("demo: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer st.Close()

	fmt.Fprintf(out, "template  %s (%d bytes, %d slots)\nhsm       %s token %q\nstore     %s %s\n\n",
		o.template, len(der), len(plan.Slots()), pool.Backend(), a.v.GetString("hsm.token"),
		a.v.GetString("store.driver"), redactDSN(dsn))

	batchID := "demo-" + time.Now().UTC().Format("20060102T150405.000")
	calls0, start := pool.HSMCalls(), time.Now()
	made, err := demoPrepare(ctx, plan, pool, st, batchID, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "batch     %d profiles personalised, protected and stored in %s with %d PKCS#11 calls\n\n",
		len(made), time.Since(start).Round(time.Millisecond), pool.HSMCalls()-calls0)
	return demoDownload(ctx, pool, st, batchID, made, out)
}

// demoBatches is the part of the store the demo's batch half uses.
type demoBatches interface {
	CreateBatch(ctx context.Context, b store.Batch) (store.Batch, error)
	PutBatch(ctx context.Context, batchID string, profiles []store.Profile) (store.PutResult, error)
}

// demoOrders is the part of the store the demo's live half uses: the ES2+
// order, the ES9+ steps a server records, and the stored material.
type demoOrders interface {
	DownloadOrder(ctx context.Context, r store.DownloadOrderRequest) (store.Profile, error)
	ConfirmOrder(ctx context.Context, r store.ConfirmOrderRequest) (store.Profile, error)
	AuthenticateClient(ctx context.Context, iccid, eid string) (store.Profile, error)
	BPPDelivered(ctx context.Context, iccid string) (store.Profile, error)
	InstallResult(ctx context.Context, iccid string, success bool) (store.Profile, error)
	GetProfile(ctx context.Context, iccid string) (store.Profile, error)
	GetBatch(ctx context.Context, id string) (store.Batch, error)
	CountByState(ctx context.Context, batchID string) (map[store.State]int64, error)
}

// demoPrepare is the batch half: generate, personalise, protect, seal the
// PPKs under one HSM batch key and store the profiles. It returns the
// SHA-256 of every personalised UPP, to check what the eUICC opens.
func demoPrepare(ctx context.Context, plan *template.Plan, pool *hsmpool.Pool, st demoBatches, batchID string, o demoOptions) ([]demoProfile, error) {
	gen, err := perso.NewGenerator(perso.GenOptions{
		Count: int64(o.count), ICCIDStart: o.iccidStart, IMSIStart: o.imsiStart,
		Layout:    perso.Layout{OTAKVNs: []uint8{1, 2}},
		Algorithm: esim.AlgorithmTest, ProfileName: "perso demo", ServiceProvider: "perso", ProfileClass: "test",
	})
	if err != nil {
		return nil, fmt.Errorf("demo: generator: %w", err)
	}
	defer gen.Close()

	bk, err := pool.NewBatchKey(hsmpool.WithLane(ctx, hsmpool.Batch), batchID)
	if err != nil {
		return nil, fmt.Errorf("demo: batch key: %w", err)
	}
	defer bk.Close()
	if _, err := st.CreateBatch(ctx, store.Batch{ID: batchID, ProfileType: "demo", TemplateID: "demo",
		KeyBlob: bk.Blob(), KEKLabel: bk.KeyRef()}); err != nil {
		return nil, fmt.Errorf("demo: batch record: %w", err)
	}

	protector := bpp.NewProtector(rand.Reader)
	var made []demoProfile
	var profiles []store.Profile
	var upp []byte
	for {
		batch, err := gen.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("demo: generator: %w", err)
		}
		for i := 0; i < int(batch.NumRows()); i++ {
			if ctx.Err() != nil {
				batch.Release()
				return nil, fmt.Errorf("demo: stopped after preparing %d of %d profiles; none stored (they are stored in one transaction at the end; batch %s is empty): %w",
					len(made), o.count, batchID, context.Cause(ctx))
			}
			rec, err := perso.RecordAt(batch, i)
			if err != nil {
				batch.Release()
				return nil, fmt.Errorf("demo: record %d: %w", i, err)
			}
			p, sum, err := demoProtect(plan, protector, bk, &rec, upp[:0])
			rec.Wipe()
			if err != nil {
				batch.Release()
				return nil, err
			}
			p.BatchID = batchID
			made = append(made, demoProfile{iccid: p.ICCID, digest: sum})
			profiles = append(profiles, p)
		}
		batch.Release()
	}
	res, err := st.PutBatch(ctx, batchID, profiles)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("demo: stopped while storing %d profiles: the transaction was rolled back, none stored: %w", len(profiles), context.Cause(ctx))
		}
		return nil, fmt.Errorf("demo: storing: %w", err)
	}
	if res.Inserted != len(profiles) {
		return nil, fmt.Errorf("demo: stored %d of %d profiles (%d duplicates, %d conflicts)",
			res.Inserted, len(profiles), res.Duplicates, len(res.Conflicts))
	}
	return made, nil
}

// demoProfile is what the batch half hands to the download half.
type demoProfile struct {
	iccid  string
	digest [32]byte // SHA-256 of the personalised UPP
}

// demoProtect personalises and protects one record.
func demoProtect(plan *template.Plan, protector *bpp.Protector, bk *hsmpool.BatchKey, rec *perso.Record, buf []byte) (store.Profile, [32]byte, error) {
	v, err := engine.Values(rec, true)
	if err != nil {
		return store.Profile{}, [32]byte{}, err
	}
	upp, err := plan.Apply(&v, buf)
	if err != nil {
		return store.Profile{}, [32]byte{}, fmt.Errorf("demo: personalising %s: %w", rec.ICCID, err)
	}
	sum := sha256.Sum256(upp)
	var ppk bpp.PPK
	var flat [bpp.PPKSize]byte
	defer func() { ppk.Zero(); clear(flat[:]); clear(upp) }()
	if err := protector.NewPPK(&ppk); err != nil {
		return store.Profile{}, sum, err
	}
	segs, _, err := protector.AppendProtected(nil, upp, &ppk)
	if err != nil {
		return store.Profile{}, sum, fmt.Errorf("demo: protecting %s: %w", rec.ICCID, err)
	}
	ppk.Put(&flat)
	sealed, err := bk.Protect(rec.ICCID, flat[:])
	if err != nil {
		return store.Profile{}, sum, fmt.Errorf("demo: sealing the PPK of %s: %w", rec.ICCID, err)
	}
	return store.Profile{
		ICCID: rec.ICCID, IMSI: rec.IMSI, ProfileType: "demo", TemplateID: "demo",
		Segments: segs, ProtectedPPK: sealed, PPKKeyRef: bk.KeyRef(),
		Metadata: store.Metadata{ServiceProviderName: rec.ServiceProvider, ProfileName: rec.ProfileName, ProfileClass: 0},
	}, sum, nil
}

// demoDownload is the live half: order, bind and open every stored profile.
func demoDownload(ctx context.Context, pool *hsmpool.Pool, st demoOrders, batchID string, made []demoProfile, out io.Writer) error {
	eidValue, err := esim.ParseEID(demoEID)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	eidBCD := eidValue.BCD()
	eid := eidBCD[:]
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ICCID\tIMSI\tcurve\tUPP\t86 segments\tBPP\tbind\topened\tstate")
	// The eUICC verifies smdpSign with the DPpb public key of each curve.
	pubs := map[esim.Curve]*ecdsa.PublicKey{}
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		_, point, err := pool.PublicKey(ctx, hsmpool.DPpbLabel(c))
		if err != nil {
			return fmt.Errorf("demo: DPpb public key (%s): %w", c, err)
		}
		if pubs[c], err = c.PublicKey(point); err != nil {
			return err
		}
	}
	calls0 := pool.HSMCalls()
	for i, m := range made {
		curve := esim.CurveP256
		if i%2 == 1 {
			curve = esim.CurveBrainpoolP256r1
		}
		if ctx.Err() != nil {
			tw.Flush()
			return fmt.Errorf("demo: stopped after %d of %d downloads; the other profiles stay Available in batch %s: %w",
				i, len(made), batchID, context.Cause(ctx))
		}
		row, err := demoBindOpen(ctx, pool, st, m.iccid, eid, curve, pubs[curve], m.digest)
		if err != nil {
			tw.Flush()
			if ctx.Err() != nil {
				return fmt.Errorf("demo: stopped during download %d of %d (profile %s, left where its order stopped): %w",
					i+1, len(made), m.iccid, context.Cause(ctx))
			}
			return err
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	counts, err := st.CountByState(ctx, batchID)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nbatch %s: %d profiles, states %v\n", batchID, len(made), counts)
	fmt.Fprintf(out, "PKCS#11 calls for %d downloads: %d (one-time key pair, ECDH derive, DPpb signature, batch key unwrap)\n",
		len(made), pool.HSMCalls()-calls0)
	fmt.Fprintln(out, "every opened UPP equals the personalised one: OK")
	return nil
}

func demoBindOpen(ctx context.Context, pool *hsmpool.Pool, st demoOrders, iccid string, eid []byte, curve esim.Curve, dppb *ecdsa.PublicKey, want [32]byte) (string, error) {
	eidHex := hex.EncodeToString(eid)
	if _, err := st.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid, EID: eidHex}); err != nil {
		return "", fmt.Errorf("demo: DownloadOrder %s: %w", iccid, err)
	}
	if _, err := st.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: eidHex, ReleaseFlag: true}); err != nil {
		return "", fmt.Errorf("demo: ConfirmOrder %s: %w", iccid, err)
	}
	if _, err := st.AuthenticateClient(ctx, iccid, eidHex); err != nil {
		return "", fmt.Errorf("demo: AuthenticateClient %s: %w", iccid, err)
	}
	p, err := st.GetProfile(ctx, iccid)
	if err != nil {
		return "", err
	}
	b, err := st.GetBatch(ctx, p.BatchID)
	if err != nil {
		return "", err
	}
	flat, err := pool.UnprotectPPK(ctx, b.KeyBlob, iccid, p.ProtectedPPK)
	if err != nil {
		return "", fmt.Errorf("demo: unsealing the PPK of %s: %w", iccid, err)
	}
	ppk, err := bpp.PPKFromBytes(flat)
	clear(flat)
	if err != nil {
		return "", err
	}
	euicc, err := bpp.GenerateOneTimeKey(curve, rand.Reader)
	if err != nil {
		return "", err
	}
	defer euicc.Zero()
	iccidValue, err := esim.ParseICCID(iccid)
	if err != nil {
		return "", err
	}
	tid := make([]byte, 16)
	rand.Read(tid)
	signLabel := hsmpool.DPpbLabel(curve)
	start := time.Now()
	pkg, err := bpp.Bind(ctx, pool.Signer(signLabel), pool.KeyAgreement(curve), &bpp.BindParams{
		TransactionID: tid, HostID: []byte("perso-dp"), EID: eid, EUICCOtpk: euicc.PublicKey(),
		Metadata: &bpp.StoreMetadata{ICCID: iccidValue, ServiceProviderName: p.Metadata.ServiceProviderName,
			ProfileName: p.Metadata.ProfileName, ProfileClass: bpp.ClassTest},
	}, &bpp.PPP{Segments: p.Segments, PPK: ppk})
	ppk.Zero()
	if err != nil {
		return "", fmt.Errorf("demo: binding %s: %w", iccid, err)
	}
	bindTime := time.Since(start)
	if _, err := st.BPPDelivered(ctx, iccid); err != nil {
		return "", err
	}

	// The eUICC side: verify with the DPpb public key, decrypt, compare.
	opened, err := bpp.Open(pkg, euicc, eid, dppb)
	if err != nil {
		return "", fmt.Errorf("demo: the eUICC rejected the package of %s: %w", iccid, err)
	}
	if sha256.Sum256(opened.UPP) != want {
		return "", fmt.Errorf("demo: %s: the opened UPP differs from the personalised one", iccid)
	}
	prof, err := template.Decode(opened.UPP)
	if err != nil || prof.ICCID().String() != iccid || prof.IMSI().String() != p.IMSI {
		return "", fmt.Errorf("demo: %s: the opened UPP does not carry the record's ICCID/IMSI (%v)", iccid, err)
	}
	uppLen := len(opened.UPP)
	clear(opened.UPP)
	done, err := st.InstallResult(ctx, iccid, true)
	if err != nil {
		return "", err
	}
	// Reaching here means smdpSign verified, every MAC checked and the UPP matched.
	return fmt.Sprintf("%s\t%s\t%s\t%d B\t%d B\t%d B\t%s\tok\t%s", iccid, p.IMSI, curve, uppLen,
		len(p.Segments), len(pkg), bindTime.Round(time.Microsecond), done.State), nil
}
