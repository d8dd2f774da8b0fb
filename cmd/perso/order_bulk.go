package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
)

// orderRow is one order of a --from file.
type orderRow struct {
	line                    int
	iccid, eid, profileType string
}

// maxOrderRows bounds a --from file: a bulk order is thousands of rows, a
// file of millions is a mistake (or the wrong file).
const maxOrderRows = 1_000_000

// readOrderRows reads a CSV with a header naming iccid, eid and
// profile_type (any order, other columns ignored), or a plain list of
// ICCIDs, one per line.
func readOrderRows(path string) ([]orderRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError(fmt.Errorf("order: --from: %w", err))
	}
	defer f.Close()
	r := csv.NewReader(io.LimitReader(f, 256<<20))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	cols := map[string]int{"iccid": 0, "eid": -1, "profile_type": -1}
	var rows []orderRow
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, usageError(fmt.Errorf("order: --from %s: %w", path, err))
		}
		if line == 1 && isOrderHeader(rec) {
			cols = map[string]int{"iccid": -1, "eid": -1, "profile_type": -1}
			for i, name := range rec {
				n := strings.ToLower(strings.TrimSpace(name))
				if n == "profiletype" {
					n = "profile_type"
				}
				if _, known := cols[n]; known {
					cols[n] = i
				}
			}
			if cols["iccid"] < 0 && cols["profile_type"] < 0 {
				return nil, usagef("order: --from %s: the header names neither iccid nor profile_type", path)
			}
			continue
		}
		get := func(c string) string {
			if i := cols[c]; i >= 0 && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := orderRow{line: line, iccid: get("iccid"), eid: get("eid"), profileType: get("profile_type")}
		if row.iccid == "" && row.profileType == "" && row.eid == "" {
			continue // blank line
		}
		if row.iccid == "" && row.profileType == "" {
			return nil, usagef("order: --from %s line %d: neither an ICCID nor a profile type", path, line)
		}
		if len(rows) == maxOrderRows {
			return nil, usagef("order: --from %s holds more than %d orders: split it", path, maxOrderRows)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, usagef("order: --from %s holds no order", path)
	}
	return rows, nil
}

func isOrderHeader(rec []string) bool {
	for _, f := range rec {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "iccid", "eid", "profile_type", "profiletype":
			return true
		}
	}
	return false
}

type orderResult struct {
	iccid, eid, code string
	err              error
}

// runBulkOrder places every order of --from, o.concurrency at a time, and
// writes --out-dir/activation-codes.csv (line, iccid, eid, activation
// code), errors.csv for the orders that failed, and with --qr-png one PNG
// per order. A failed order does not stop the others (exit status 3).
// Rerunning the file resumes rows that name an ICCID (resent orders
// succeed); rows by profile type order new profiles.
func runBulkOrder(cmd *cobra.Command, o orderFlags, c *smdp.ES2Client) error {
	rows, err := readOrderRows(o.from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return usageError(fmt.Errorf("order: --out-dir: %w", err))
	}
	codesPath, errorsPath := filepath.Join(o.outDir, "activation-codes.csv"), filepath.Join(o.outDir, "errors.csv")
	for _, p := range []string{codesPath, errorsPath} {
		if err := checkOutputPath(p, outputOptions{force: o.force, flag: "--out-dir", inputs: []string{o.from}}); err != nil {
			return err
		}
	}
	ctx := cmd.Context()
	results := make([]orderResult, len(rows))
	// Rows naming an ICCID go first, rows by profile type after them: an
	// allocation from the pool must not take an ICCID the file names (the
	// SM-DP+ would then answer the ICCID's row as a resent call of the
	// same operator, and both rows would get one profile).
	var werr error
	for _, byType := range []bool{false, true} {
		if werr = orderWave(ctx, o, c, rows, results, byType); werr != nil {
			break
		}
	}
	var codes, errs bytes.Buffer
	cw, ew := csv.NewWriter(&codes), csv.NewWriter(&errs)
	cw.Write([]string{"line", "iccid", "eid", "activation_code"})
	ew.Write([]string{"line", "iccid", "profile_type", "error"})
	done := 0
	for i, res := range results {
		line := strconv.Itoa(rows[i].line)
		switch {
		case res.code != "":
			cw.Write([]string{line, res.iccid, res.eid, res.code})
			done++
		case res.err != nil:
			ew.Write([]string{line, rows[i].iccid, rows[i].profileType, res.err.Error()})
		default:
			ew.Write([]string{line, rows[i].iccid, rows[i].profileType, "not attempted: the command was stopped"})
		}
	}
	cw.Flush()
	ew.Flush()
	if err := writeAtomic(codesPath, codes.Bytes(), outputOptions{force: o.force, flag: "--out-dir"}); err != nil {
		return err
	}
	if done < len(rows) {
		if err := writeAtomic(errorsPath, errs.Bytes(), outputOptions{force: o.force, flag: "--out-dir"}); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%d of %d orders placed; activation codes in %s\n", done, len(rows), codesPath)
	if werr != nil {
		return werr
	}
	if done < len(rows) {
		return partialError(fmt.Errorf("order: %d of %d orders failed: see %s", len(rows)-done, len(rows), errorsPath))
	}
	return nil
}

// orderWave places the rows by ICCID (byType false) or by profile type,
// o.concurrency at a time, filling results.
func orderWave(ctx context.Context, o orderFlags, c *smdp.ES2Client, rows []orderRow, results []orderResult, byType bool) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.concurrency)
	for i, row := range rows {
		if (row.iccid == "") != byType {
			continue
		}
		g.Go(func() error {
			res := &results[i]
			d, co, err := placeOrder(gctx, c, rsp.DownloadOrderRequest{ICCID: row.iccid, EID: row.eid, ProfileType: row.profileType}, "", o.release, nil)
			if err == nil {
				code := activation.Code{SMDPAddress: orderAddress(co, o.server), MatchingID: co.MatchingID, SMDPOID: o.oid}
				if err = code.Validate(); err == nil {
					res.iccid, res.eid, res.code = d.ICCID, co.EID, code.String()
				}
				if err == nil && o.qrPNG {
					var png []byte
					if png, err = activation.QRPNG(res.code, o.qrSize); err == nil {
						err = writeAtomic(filepath.Join(o.outDir, d.ICCID+".png"), png, outputOptions{force: true, flag: "--out-dir"})
					}
				}
			}
			if err != nil {
				res.iccid, res.err = row.iccid, err
			}
			return ctx.Err() // only a stop ends the others early
		})
	}
	return g.Wait()
}
