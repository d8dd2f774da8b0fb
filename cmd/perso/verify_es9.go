package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

// perso verify downloads through the SM-DP+ itself by default (issue 15
// item 5): it orders each sampled profile through the store, then runs the
// complete SGP.22 download with the virtual eUICC over HTTPS (a running
// perso serve named by --server, or one started in process on 127.0.0.1),
// so that it checks what a device would get. The downloaded profiles end
// Installed: run it on a test batch or on profiles set aside for it.
// --offline keeps the older check that binds and opens a profile locally
// and changes nothing.

const verifyES9Help = `
By default each sampled profile is ordered through the store (DownloadOrder +
ConfirmOrder, as ES2+ would) and downloaded over ES9+ by the virtual eUICC
with the SGP.26 certificates under --sgp26 (P-256 and brainpoolP256r1
alternately): from an SM-DP+ this command starts in process with the serve.*
settings (serve.address, serve.curves, serve.pki_dir, serve.tls_cert and
serve.tls_key, the HSM's DPauth and DPpb keys) over TLS on 127.0.0.1 at a
free port, or from a running perso serve at --server (https://HOST[:PORT];
the activation code names serve.address, dialled at HOST:PORT). Each
recovered UPP must decode, carry the stored ICCID and IMSI and, when --input
and --template are given, equal the record personalised directly. With
--input, the sample is drawn among the records whose profiles are still
Available (the others were downloaded or ordered before: they are counted,
not checked). Without --input, N Available profiles of --profile-type
(default: the --batch's type) are allocated by the store. The downloaded
profiles end Installed: use a test batch.

--offline checks without a server and without changing the store: for N
records drawn at random from --input it personalises the template directly
(template.Plan.Apply), then takes the stored profile of the same ICCID,
unseals its PPK with the HSM, binds it for a one-time eUICC key (bpp.Bind
with the DPpb key, P-256 and brainpoolP256r1 alternately) and opens it as
the eUICC would (bpp.Open: signature, every MAC, decryption). The opened UPP
must equal the directly personalised one, byte for byte. It needs the same
input, template and batch as the run (default batch: as perso run names it).`

func addVerifyES9Flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Bool("offline", false, "bind and open each sampled profile locally (bpp.Open) instead of downloading it over ES9+; the store is not changed")
	f.Bool("es9", false, "download over ES9+ (the default; kept for scripts that name it)")
	f.String("server", "", "URL of a running perso serve (https://HOST[:PORT]); default: an SM-DP+ in process on 127.0.0.1")
	f.String("profile-type", "", "without --input: the profile type to allocate from (default: the --batch's)")
	f.String("binding", "json", "ES9+ binding, json or asn1")
	f.String("sgp26", "testdata/sgp26", "directory of the SGP.26 test PKI (eUICC/, EUM/, CertificateIssuer/, DPtls/) of the virtual eUICC")
	f.String("tls-root", "", `with --server: certificate (PEM or DER) the server's TLS certificate must chain to; "system" for the system roots (default: the SGP.26 DPtls certificate under --sgp26)`)
}

// verifyOffline reports whether the command runs offline (--offline),
// refusing it beside the flags of the ES9+ mode.
func verifyOffline(cmd *cobra.Command) (bool, error) {
	fl := cmd.Flags()
	offline, _ := fl.GetBool("offline")
	if !offline {
		return false, nil
	}
	for _, name := range []string{"es9", "server", "profile-type", "binding", "tls-root"} {
		if fl.Changed(name) {
			return true, usagef("verify: --offline opens profiles locally: --%s is for the ES9+ download (the default)", name)
		}
	}
	return true, nil
}

// es9Target is one profile to download: its ICCID when the sample came
// from the input (with the digest of the UPP personalised directly), or
// nothing when the store allocates one. skipped (on the first target) is
// how many sampled records were passed over because their profiles were
// no longer Available.
type es9Target struct {
	pick    *verifyPick
	ptype   string
	skipped int
}

// errNoneAvailable: a sample of the input found no Available profile.
var errNoneAvailable = errors.New("none of the sampled records' profiles is Available (all downloaded or ordered before)")

func runVerifyES9(ctx context.Context, cmd *cobra.Command, a *app, o verifyOptions, out io.Writer) error {
	fl := cmd.Flags()
	flag := func(name string) string { s, _ := fl.GetString(name); return s }
	if o.sample < 1 || o.sample > 10000 {
		return usagef("verify: --sample %d: want 1..10000", o.sample)
	}
	binding, err := euiccsim.ParseBinding(flag("binding"))
	if err != nil {
		return usagef("verify: --binding: %w", err)
	}
	if (o.input == "") != (o.template == "") {
		return usagef("verify: give --input and --template together (to compare with the records), or neither")
	}
	dir := flag("sgp26")
	curves := [2]esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1}
	var euiccs [2]*euiccsim.Credentials
	for i, c := range curves {
		if euiccs[i], err = euiccsim.LoadSGP26(dir, c); err != nil {
			return usagef("verify: %w (point --sgp26 at the SGP.26 test PKI)", err)
		}
	}

	dsn := a.v.GetString("store.dsn")
	db, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
	if err != nil {
		return fmt.Errorf("verify: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer db.Close()

	targets, err := es9Targets(ctx, cmd, a, o, db)
	if err != nil {
		return err
	}

	address := a.v.GetString("serve.address")
	var dial string
	var roots *x509.CertPool
	if server := flag("server"); server != "" {
		u, err := url.Parse(server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return usagef("verify: --server %q: want https://HOST[:PORT]", server)
		}
		dial = u.Host
		if u.Port() == "" {
			dial = net.JoinHostPort(u.Hostname(), "443")
		}
		switch root := flag("tls-root"); root {
		case "system":
		case "":
			if roots, err = euiccsim.LoadTLSRoots(filepath.Join(dir, defaultTLSRoot)); err != nil {
				return usagef("verify: %w (give --tls-root FILE or --tls-root system)", err)
			}
		default:
			if roots, err = euiccsim.LoadTLSRoots(root); err != nil {
				return usagef("verify: --tls-root: %w", err)
			}
		}
	} else {
		stop, addr, r, err := verifyInProcessServer(ctx, a, db)
		if err != nil {
			return err
		}
		defer stop()
		dial, roots = addr, r
	}

	start := time.Now()
	var failed int
	if len(targets) == 0 {
		return fmt.Errorf("verify: no profile to download: %w", errNoneAvailable)
	}
	for i, tg := range targets {
		curve := i % 2
		iccid, err := verifyDownload(ctx, a, db, tg, euiccs[curve], euiccsim.LPAConfig{Binding: binding, RootCAs: roots,
			Resolve: map[string]string{strings.ToLower(address): dial}, Logger: a.log}, address)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("verify: stopped after %d of %d profiles: %w", i, len(targets), context.Cause(ctx))
			}
			if iccid == "" { // the store allocates no more: nothing left to check
				return fmt.Errorf("verify: %d of %d profiles downloaded, then: %w", i-failed, len(targets), err)
			}
			failed++
			fmt.Fprintf(out, "FAIL  %s: %v\n", iccid, err)
			slog.Error("verify: ES9+ download check failed", "iccid", iccid, "err", err)
			continue
		}
		what := "decodes with the stored ICCID and IMSI"
		if tg.pick != nil {
			what = "equal to the record personalised directly"
		}
		fmt.Fprintf(out, "ok    %s  %s  %s  downloaded over ES9+, Installed, %s\n", iccid, curves[curve], binding, what)
	}
	fmt.Fprintf(out, "verify: %d of %d profiles downloaded over ES9+ and checked, %d failed, in %s\n",
		len(targets)-failed, len(targets), failed, time.Since(start).Round(time.Millisecond))
	if targets[0].skipped > 0 {
		fmt.Fprintf(out, "verify: %d sampled records skipped: their profiles were no longer Available (downloaded or ordered before)\n", targets[0].skipped)
	}
	if failed > 0 {
		return fmt.Errorf("verify: %d of %d profiles failed the ES9+ download check", failed, len(targets))
	}
	return nil
}

// es9Targets chooses what to download: a sample of the input's records
// (their stored profiles), or N profiles the store allocates by type.
func es9Targets(ctx context.Context, cmd *cobra.Command, a *app, o verifyOptions, db *store.DB) ([]es9Target, error) {
	if o.input != "" {
		der, err := readTemplate(cmd, a, o.template)
		if err != nil {
			return nil, err
		}
		// The template settings perso run compiled the template with
		// (template.*), as the offline check does.
		plan, ts, err := compileTemplate(a, der)
		if err != nil {
			return nil, usageError(fmt.Errorf("verify: template %s: %w", o.template, err))
		}
		seed := o.seed
		if seed == 0 {
			seed = rand.Uint64()
		}
		// The records are read as perso run read them: the same rules and,
		// for transport-encrypted input, decryption by the HSM.
		read := perso.Options{Rules: perso.Rules{MCC: o.mcc, MNC: o.mnc}, Layout: ts.layout()}
		if o.transportKey != 0 {
			pool, err := openHSM(ctx, a, false)
			if err != nil {
				return nil, err
			}
			defer pool.Close()
			read.Decrypter, read.Transport = pool, perso.Transport{Key: o.transportKey, Alg: o.transportAlg}
		}
		// Twice the sample and some: a download moves its profile out of
		// Available for good, so an earlier verify (or a device) may have
		// taken some of the records drawn. The candidates are shuffled (a
		// reservoir's slots are not in random order) and the first N whose
		// profiles are Available are downloaded.
		picks, _, err := verifySampleWith(ctx, o.input, read, plan, ts.keep, 2*o.sample+8, seed)
		if err != nil {
			return nil, err
		}
		rng := rand.New(rand.NewPCG(seed^0x5851f42d4c957f2d, seed))
		rng.Shuffle(len(picks), func(i, j int) { picks[i], picks[j] = picks[j], picks[i] })
		var ts9 []es9Target
		skipped := 0
		for i := range picks {
			if len(ts9) == o.sample {
				break
			}
			sp, err := db.GetProfile(ctx, picks[i].iccid)
			if err == nil && sp.State != store.StateAvailable {
				skipped++
				continue
			}
			// Not in the store: the download's order says so, as a failure.
			ts9 = append(ts9, es9Target{pick: &picks[i]})
		}
		if len(ts9) == 0 {
			return nil, fmt.Errorf("verify: %d records drawn from %s: %w", len(picks), o.input, errNoneAvailable)
		}
		ts9[0].skipped = skipped
		return ts9, nil
	}
	ptype, _ := cmd.Flags().GetString("profile-type")
	if ptype == "" {
		if o.batch == "" {
			return nil, usagef("verify --es9: name the profiles: --input and --template, --profile-type, or --batch")
		}
		b, err := db.GetBatch(ctx, o.batch)
		if err != nil {
			return nil, fmt.Errorf("verify: batch %s: %w", o.batch, err)
		}
		ptype = b.ProfileType
	}
	ts := make([]es9Target, o.sample)
	for i := range ts {
		ts[i].ptype = ptype
	}
	return ts, nil
}

// verifyDownload orders one profile, downloads it with a fresh virtual
// eUICC and checks what it installed. It returns the profile's ICCID
// once known.
func verifyDownload(ctx context.Context, a *app, db *store.DB, tg es9Target, cred *euiccsim.Credentials, cfg euiccsim.LPAConfig, address string) (string, error) {
	req := store.DownloadOrderRequest{ProfileType: tg.ptype}
	if tg.pick != nil {
		req = store.DownloadOrderRequest{ICCID: tg.pick.iccid}
	}
	p, err := db.DownloadOrder(ctx, req)
	if err != nil {
		return req.ICCID, fmt.Errorf("ordering (the profile must be Available): %w", err)
	}
	if p, err = db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: p.ICCID, ReleaseFlag: true}); err != nil {
		return p.ICCID, fmt.Errorf("confirming the order: %w", err)
	}
	eu, err := euiccsim.New(cred)
	if err != nil {
		return p.ICCID, err
	}
	upp, err := euiccsim.NewLPA(eu, cfg).Download(ctx, "LPA:1$"+address+"$"+p.MatchingID)
	if err != nil {
		return p.ICCID, fmt.Errorf("download: %w", describeDownloadError(err))
	}
	defer clear(upp)
	dec, err := template.Decode(upp)
	if err != nil {
		return p.ICCID, fmt.Errorf("the recovered UPP does not decode: %w", err)
	}
	if got := dec.ICCID().String(); got != p.ICCID {
		return p.ICCID, fmt.Errorf("the recovered UPP carries ICCID %s", got)
	}
	if got := dec.IMSI().String(); got != p.IMSI {
		return p.ICCID, fmt.Errorf("the recovered UPP carries IMSI %s, the store %s", got, p.IMSI)
	}
	if tg.pick != nil {
		if p.IMSI != tg.pick.imsi {
			return p.ICCID, fmt.Errorf("stored IMSI %s, the record's %s", p.IMSI, tg.pick.imsi)
		}
		if sha256.Sum256(upp) != tg.pick.digest {
			return p.ICCID, errors.New("the recovered UPP differs from the record personalised directly")
		}
	}
	after, err := db.GetProfile(ctx, p.ICCID)
	if err != nil {
		return p.ICCID, err
	}
	if after.State != store.StateInstalled {
		return p.ICCID, fmt.Errorf("the store shows %s after the install notification, want Installed", after.State)
	}
	return p.ICCID, nil
}

// verifyInProcessServer starts the SM-DP+ as perso serve would (serve.*
// settings: address, curves, pki_dir, tls_cert, tls_key) on a loopback
// port, and returns how to stop it, its address and the roots that trust
// its TLS certificate.
func verifyInProcessServer(ctx context.Context, a *app, db *store.DB) (stop func(), addr string, roots *x509.CertPool, err error) {
	v := a.v
	curves, err := serveCurves(v.GetString("serve.curves"))
	if err != nil {
		return nil, "", nil, usageError(err)
	}
	creds, err := loadCredentials(v.GetString("serve.pki_dir"), curves)
	if err != nil {
		return nil, "", nil, usageError(fmt.Errorf("verify: %w (serve.pki_dir from %s)", err, a.conf.source("serve.pki_dir")))
	}
	certPath := v.GetString("serve.tls_cert")
	tlsCert, err := loadTLSCertificate(certPath, v.GetString("serve.tls_key"))
	if err != nil {
		return nil, "", nil, usageError(fmt.Errorf("verify: %w", err))
	}
	if roots, err = euiccsim.LoadTLSRoots(certPath); err != nil {
		return nil, "", nil, usageError(fmt.Errorf("verify: serve.tls_cert: %w", err))
	}
	pool, err := openHSM(ctx, a, false)
	if err != nil {
		return nil, "", nil, fmt.Errorf("verify: opening the HSM: %w", err)
	}
	if err := checkHSMKeys(ctx, pool, creds); err != nil {
		pool.Close()
		return nil, "", nil, err
	}
	hsm := smdp.NewPoolHSM(pool)
	srv, err := smdp.NewServer(smdp.Config{Address: v.GetString("serve.address"), Credentials: creds, Store: db, HSM: hsm,
		Log: slog.Default()})
	if err != nil {
		hsm.Close()
		pool.Close()
		return nil, "", nil, usageError(fmt.Errorf("verify: %w", err))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hsm.Close()
		pool.Close()
		return nil, "", nil, err
	}
	hs := &http.Server{Handler: srv.Handler(smdp.HTTPOptions{}), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{*tlsCert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	go hs.ServeTLS(ln, "", "")
	return func() {
		hs.Close()
		hsm.Close()
		pool.Close()
	}, ln.Addr().String(), roots, nil
}
