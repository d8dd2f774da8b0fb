package main

import (
	"errors"
	"fmt"
)

// The exit-code contract of every perso command. It is printed by
// `perso --help` (exitCodesHelp) and documented in the README; scripts and
// process supervisors rely on it, so a code never changes meaning.
const (
	exitOK          = 0   // success
	exitFailure     = 1   // operational error: I/O, HSM, store, network
	exitUsage       = 2   // usage error (unknown command or flag, bad value) or input rejected as a whole
	exitPartial     = 3   // the command ran, but some records were rejected (see the reject report)
	exitInterrupted = 130 // stopped by SIGINT (128+2)
	exitTerminated  = 143 // stopped by SIGTERM (128+15)
)

const exitCodesHelp = `Exit status:
  0    success
  1    operational error (I/O, HSM, store, network)
  2    usage error (unknown command, bad flag or configuration value) or input rejected
  3    partial: the command ran but some records were rejected (see the reject report)
  130  interrupted (SIGINT); 143 terminated (SIGTERM)`

// exitError lets a subcommand choose its exit status.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageError marks err as a usage or input error (exit status 2).
func usageError(err error) error { return exitError{code: exitUsage, err: err} }

// usagef is usageError(fmt.Errorf(format, args...)).
func usagef(format string, args ...any) error { return usageError(fmt.Errorf(format, args...)) }

// partialError marks a run in which some records were rejected (exit status 3).
func partialError(err error) error { return exitError{code: exitPartial, err: err} }

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}
