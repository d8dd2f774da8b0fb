package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stopGrace is how long a command has, after the first SIGINT or SIGTERM
// cancelled its context, to finish or roll back its current unit of work
// and return. Every loop checks its context far more often than this; the
// deadline is the backstop for a call that cannot be interrupted (an HSM or
// database round trip), so that perso always stops within a second, as a
// process supervisor expects before it escalates to SIGKILL.
const stopGrace = 750 * time.Millisecond

// graceOverride, when set (setStopGrace, before the command starts its
// work), replaces stopGrace: perso run stores the chunks in flight after a
// stop, which takes longer than a second (engine.stop_grace).
var graceOverride atomic.Int64

// setStopGrace gives the running command d instead of stopGrace.
func setStopGrace(d time.Duration) { graceOverride.Store(int64(d)) }

func currentStopGrace() time.Duration {
	if d := graceOverride.Load(); d > 0 {
		return time.Duration(d)
	}
	return stopGrace
}

// signalWatch records the first stop signal and cancels the command's
// context with a cause naming it.
type signalWatch struct {
	mu  sync.Mutex
	sig os.Signal
}

// received returns the first stop signal, or nil.
func (w *signalWatch) received() os.Signal {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sig
}

// stoppedError is the cause of a context cancelled by a signal.
type stoppedError struct{ sig os.Signal }

func (e stoppedError) Error() string { return "stopped by " + signalName(e.sig) }

// Is makes errors.Is(err, context.Canceled) hold for the cause too.
func (e stoppedError) Is(target error) bool { return target == context.Canceled }

// watchSignals returns a context cancelled by the first SIGINT or SIGTERM.
// A second signal, or the stopGrace deadline, ends the process at once,
// after removing the temporary files of outputs still being written (so
// nothing half-written is left behind either way).
func watchSignals() (context.Context, *signalWatch) {
	ctx, cancel := context.WithCancelCause(context.Background())
	w := &signalWatch{}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		w.mu.Lock()
		w.sig = sig
		w.mu.Unlock()
		fmt.Fprintf(os.Stderr, "perso: %s received: stopping (the current unit of work is finished or rolled back; send it again to exit at once)\n", signalName(sig))
		cancel(stoppedError{sig})
		grace := currentStopGrace()
		t := time.NewTimer(grace)
		select {
		case again := <-ch:
			removeTempFiles()
			fmt.Fprintf(os.Stderr, "perso: %s received again: exiting at once; outputs in progress were removed\n", signalName(again))
		case <-t.C:
			removeTempFiles()
			fmt.Fprintf(os.Stderr, "perso: still busy %s after %s: exiting; outputs in progress were removed\n", grace, signalName(sig))
		}
		os.Exit(signalExitCode(sig))
	}()
	return ctx, w
}

func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// signalExitCode is the status shells give a process killed by sig.
func signalExitCode(sig os.Signal) int {
	if sig == syscall.SIGTERM {
		return exitTerminated
	}
	return exitInterrupted
}
