package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/template"
)

// surveyResult is what one pass over the input found.
type surveyResult struct {
	sha256       string // hex SHA-256 of the file
	rows         int64  // data rows: good and bad
	good         int64  // rows the reader accepted: the chunks' record space
	readRejected int64  // rows the reader refused
	tmplRejected int64  // good rows the template refused (their chunks count them when stored)
}

// survey hashes the input and reads it once through the same checks the
// chunks apply, so that the batch's geometry (good records, chunks) is
// known before any chunk runs and every reject reaches spec.Rejects on
// every run, resumed or not. It costs a few µs per record, against the
// tens that personalising and protecting one costs.
func survey(ctx context.Context, spec Spec, plan *template.Plan, keep bool) (*surveyResult, error) {
	sum, err := hashFile(ctx, spec.Input)
	if err != nil {
		return nil, err
	}
	res := &surveyResult{sha256: sum}
	opts := spec.Read
	opts.Rejects = spec.Rejects
	r, err := openInput(spec.Input, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	v := newValidator(plan, keep, fileName(spec), spec.Rejects)
	buf := make([]byte, 0, len(plan.Template()))
	for {
		batch, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("engine: reading %s: %w", spec.Input, err)
		}
		n, err := v.surveyBatch(batch, res.good, buf)
		batch.Release()
		if err != nil {
			return nil, err
		}
		res.tmplRejected += int64(n)
		res.good += batch.NumRows()
	}
	st := r.Stats()
	res.rows, res.readRejected = st.Rows, st.Rejected
	return res, nil
}

// surveyBatch checks every row of a batch as the validate and personalise
// stages will, reporting the rows they will refuse.
func (v *validator) surveyBatch(batch arrow.Record, first int64, buf []byte) (int, error) {
	rejected := 0
	for i := 0; i < int(batch.NumRows()); i++ {
		rec, vals, err := v.values(batch, i)
		if err == nil {
			var upp []byte
			upp, err = v.plan.Apply(&vals, buf)
			clear(upp)
		}
		iccid := rec.ICCID
		rec.Wipe()
		if errors.Is(err, template.ErrUndeclaredAlgorithm) {
			// A template setting, not a bad record: stop before any chunk.
			return rejected, fmt.Errorf("engine: good record %d (ICCID %s): %w", first+int64(i)+1, iccid, err)
		}
		if err != nil {
			rejected++
			if rerr := v.reject(first+int64(i), iccid, err); rerr != nil {
				return rejected, rerr
			}
		}
	}
	return rejected, nil
}

func hashFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("engine: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("engine: reading %s: %w", path, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func openInput(path string, opts perso.Options) (*perso.Reader, error) {
	r, _, err := perso.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("engine: opening %s: %w", path, err)
	}
	return r, nil
}

func fileName(spec Spec) string {
	if spec.Read.File != "" {
		return spec.Read.File
	}
	return filepath.Base(spec.Input)
}
