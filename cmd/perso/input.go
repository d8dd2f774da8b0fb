package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// defaultTemplateMaxSize bounds a template file read into memory. The
// largest TS.48 profile is about 40 KB; a few MB leaves room for real
// operator templates while /dev/zero or a 10 GB file is refused at once.
const defaultTemplateMaxSize = 4 << 20

// openInput opens a file a command reads; "-" is standard input. A FIFO
// blocks in open(2) until a writer appears, so the open runs aside and a
// signal (ctx) still stops the command. Once open, the file is closed when
// ctx is done so that a read blocked on a pipe returns at once. Errors that
// come from the argument (no such file, a directory, no permission) are
// usage errors naming the file.
func openInput(ctx context.Context, path string) (*os.File, error) {
	var f *os.File
	if path == "-" {
		f = os.Stdin
	} else {
		type opened struct {
			f   *os.File
			err error
		}
		ch := make(chan opened, 1)
		go func() {
			f, err := os.Open(path)
			ch <- opened{f, err}
		}()
		select {
		case o := <-ch:
			if o.err != nil {
				return nil, inputError(path, o.err)
			}
			f = o.f
		case <-ctx.Done():
			// The goroutine stays blocked in open(2) on a FIFO nobody writes
			// to; if a writer comes later it closes what it opened.
			go func() {
				if o := <-ch; o.f != nil {
					o.f.Close()
				}
			}()
			return nil, fmt.Errorf("%s: %w", path, context.Cause(ctx))
		}
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			f.Close()
			return nil, usagef("%s: is a directory, want a file", path)
		}
	}
	context.AfterFunc(ctx, func() { f.Close() })
	return f, nil
}

// inputError classifies an error opening or reading an input: problems with
// the argument itself are usage errors (exit status 2), others (EIO, ...)
// operational ones.
func inputError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is named once, by us
	}
	e := fmt.Errorf("%s: %w", path, err)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ELOOP) {
		return usageError(e)
	}
	return e
}

// readBounded reads a whole file of at most limit bytes. A regular file's
// size is checked before reading; anything else (a pipe, /dev/zero) is read
// through a limit, so memory never exceeds limit plus one buffer. The error
// names the limit and the setting that raises it.
func readBounded(ctx context.Context, path string, limit int64, what, setting string) ([]byte, error) {
	f, err := openInput(ctx, path)
	if err != nil {
		return nil, err
	}
	if f != os.Stdin {
		defer f.Close()
	}
	tooBig := func(size string) error {
		return usagef("%s: %s exceeds the %s size limit of %s (raise it with %s)", path, size, what, formatSize(limit), setting)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, tooBig(formatSize(fi.Size()))
	}
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, context.Cause(ctx))
		}
		n, err := f.Read(chunk)
		if int64(len(buf)+n) > limit {
			return nil, tooBig("more than " + formatSize(limit))
		}
		buf = append(buf, chunk[:n]...)
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", path, context.Cause(ctx))
			}
			return nil, inputError(path, err)
		}
	}
}

// parseSize parses a byte count: plain digits, or digits with a suffix
// k/K/KiB (1024), M/MiB, G/GiB.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: want a positive size in bytes, e.g. 4194304 or 4MiB", s)
	}
	return n * mult, nil
}

// formatSize prints a byte count the way parseSize reads it back.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// templateMaxSizeFlag adds --template-max-size to a command that reads a
// template; templateMaxSize reads it, else template.max_size.
func templateMaxSizeFlag(cmd *cobra.Command) {
	cmd.Flags().String("template-max-size", "", "largest template file accepted (default: template.max_size, 4MiB)")
}

const templateMaxSizeSetting = "--template-max-size or template.max_size"

func templateMaxSize(cmd *cobra.Command, a *app) (int64, error) {
	if f := cmd.Flags().Lookup("template-max-size"); f != nil && f.Changed {
		n, err := parseSize(f.Value.String())
		if err != nil {
			return 0, usagef("--template-max-size %w", err)
		}
		return n, nil
	}
	s := a.v.GetString("template.max_size")
	if s == "" {
		return defaultTemplateMaxSize, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return 0, usagef("template.max_size %w", err)
	}
	return n, nil
}

// readTemplate reads a template file within the configured size limit.
func readTemplate(cmd *cobra.Command, a *app, path string) ([]byte, error) {
	limit, err := templateMaxSize(cmd, a)
	if err != nil {
		return nil, err
	}
	return readBounded(cmd.Context(), path, limit, "template", templateMaxSizeSetting)
}
