package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// outputOptions say how an output file may be created.
type outputOptions struct {
	// force allows replacing an existing regular file.
	force bool
	// secret marks content holding key material (Ki, OPc, PINs, keys): the
	// file gets mode 0600 whatever the umask or an earlier file's mode.
	secret bool
	// inputs are the files the command reads: the output must be none of
	// them, even with force (os.SameFile, so hard links and other
	// spellings of the same path are caught too).
	inputs []string
	// flag names the option that chose the path, for error messages.
	flag string
}

// atomicFile is an output being written: a temporary file in the target's
// directory that becomes the target only on Commit (fsync, rename, fsync of
// the directory). Until then nothing at the target changes, so an
// interrupted or failed command never leaves a half-written output; Abort
// (or a forced exit, see removeTempFiles) removes the temporary file.
type atomicFile struct {
	*os.File
	target string
	o      outputOptions
	done   bool
}

// createOutput checks that path may be written and opens its temporary
// file. Refusals are usage errors (exit status 2) naming the file and the
// way out: a symbolic link is never followed or replaced, an existing file
// needs --force, and an output that is one of the inputs is refused.
func createOutput(path string, o outputOptions) (*atomicFile, error) {
	if o.flag == "" {
		o.flag = "output"
	}
	if path == "" {
		return nil, usagef("%s: empty file name", o.flag)
	}
	if err := checkOutputPath(path, o); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission)) {
			return nil, usagef("%s %s: cannot create a file in %s: %w", o.flag, path, dir, pe.Err)
		}
		return nil, fmt.Errorf("%s %s: %w", o.flag, path, err)
	}
	mode := os.FileMode(0o644)
	if o.secret {
		mode = 0o600
	}
	// CreateTemp makes the file 0600; reports are widened to 0644 (no umask
	// applies to fchmod, and 0644 is what umask 022 would give).
	if mode != 0o600 {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("%s %s: %w", o.flag, path, err)
		}
	}
	trackTemp(f.Name())
	return &atomicFile{File: f, target: path, o: o}, nil
}

// checkOutputPath applies createOutput's refusals without creating anything,
// so that a command can refuse before it starts long work.
func checkOutputPath(path string, o outputOptions) error {
	if o.flag == "" {
		o.flag = "output"
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return usagef("%s %s: %v", o.flag, path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return usagef("%s %s is a symbolic link: refusing to write through it (name the real file)", o.flag, path)
	case !fi.Mode().IsRegular():
		return usagef("%s %s exists and is not a regular file (%s): refusing to replace it", o.flag, path, fi.Mode().Type())
	default:
		for _, in := range o.inputs {
			if in == "" || in == "-" {
				continue
			}
			if ii, err := os.Stat(in); err == nil && os.SameFile(fi, ii) {
				return usagef("%s %s is the input %s: refusing to overwrite an input", o.flag, path, in)
			}
		}
		if !o.force {
			return usagef("%s %s already exists: pass --force to replace it", o.flag, path)
		}
	}
	return nil
}

// Commit makes the written content the target: fsync, then rename (or,
// without force, link, which fails rather than replace a file created
// meanwhile), then fsync the directory so that the new name is durable.
func (a *atomicFile) Commit() error {
	if a.done {
		return errors.New("output already committed or aborted")
	}
	tmp := a.File.Name()
	fail := func(err error) error {
		a.Abort()
		return err
	}
	if err := a.File.Sync(); err != nil {
		return fail(fmt.Errorf("%s: %w", a.target, err))
	}
	if err := a.File.Close(); err != nil {
		return fail(fmt.Errorf("%s: %w", a.target, err))
	}
	// Re-check: the target may have appeared (or become a link) while we wrote.
	if err := checkOutputPath(a.target, a.o); err != nil {
		return fail(err)
	}
	if a.o.force {
		if err := os.Rename(tmp, a.target); err != nil {
			return fail(fmt.Errorf("%s: %w", a.target, err))
		}
	} else {
		if err := os.Link(tmp, a.target); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fail(usagef("%s %s already exists: pass --force to replace it", a.o.flag, a.target))
			}
			return fail(fmt.Errorf("%s: %w", a.target, err))
		}
		os.Remove(tmp)
	}
	a.done = true
	untrackTemp(tmp)
	if d, err := os.Open(filepath.Dir(a.target)); err == nil {
		d.Sync() // best effort: some file systems refuse fsync on directories
		d.Close()
	}
	return nil
}

// Abort discards the temporary file; the target is untouched. It is safe
// to call after Commit (it does nothing then), so `defer f.Abort()` works.
func (a *atomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
	untrackTemp(a.File.Name())
}

// writeAtomic writes data to path through createOutput and Commit.
func writeAtomic(path string, data []byte, o outputOptions) error {
	f, err := createOutput(path, o)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Commit()
}

// Temporary files in flight, removed by removeTempFiles when the process
// exits without unwinding (a second signal, or the stop deadline).
var temps struct {
	sync.Mutex
	names map[string]bool
}

func trackTemp(name string) {
	temps.Lock()
	defer temps.Unlock()
	if temps.names == nil {
		temps.names = map[string]bool{}
	}
	temps.names[name] = true
}

func untrackTemp(name string) {
	temps.Lock()
	defer temps.Unlock()
	delete(temps.names, name)
}

// removeTempFiles removes every temporary output still in flight. It holds
// the lock until the process exits so that no new one appears meanwhile.
func removeTempFiles() {
	temps.Lock()
	for name := range temps.names {
		os.Remove(name)
	}
	temps.names = nil
}
