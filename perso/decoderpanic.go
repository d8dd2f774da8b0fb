package perso

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"unicode"
)

// The Arrow IPC and Parquet libraries trust the lengths and offsets in
// their input and panic on some malformed files. Every call into them is
// made through guardDecoder, which turns such a panic into an error; our own
// code (column extraction, validation) runs outside it, so that a bug of
// ours crashes loudly instead of being reported as a corrupt file.

// decoder names a third-party decoding library and the error its input is
// reported with when the library panics on it.
type decoder struct {
	lib     string // "arrow/ipc" or "parquet-go"
	corrupt error  // errCorruptIPC or errCorruptParquet
}

var (
	ipcDecoder     = decoder{"arrow/ipc", errCorruptIPC}
	parquetDecoder = decoder{"parquet-go", errCorruptParquet}
)

// decoderPanicError reports a panic of a third-party decoding library on
// malformed input. It matches the library's corrupt-input error with
// errors.Is and, when the panic value was an error, that error too.
type decoderPanicError struct {
	lib   string // the library that panicked
	call  string // what perso had asked of it
	value string // the recovered panic value, with anything resembling record data masked
	err   error  // the recovered value, if it is an error
	base  error  // errCorruptIPC or errCorruptParquet
}

func (e *decoderPanicError) Error() string {
	return fmt.Sprintf("%v: %s panicked in %s: %s", e.base, e.lib, e.call, e.value)
}

func (e *decoderPanicError) Unwrap() []error {
	if e.err != nil {
		return []error{e.base, e.err}
	}
	return []error{e.base}
}

// guardDecoder runs f, a call into d's library described by call, and
// returns its results; a panic inside it becomes a *decoderPanicError
// keeping the panic value, and its stack goes to lg (slog.Default() when
// nil) at debug level. f must do nothing but call the library: whatever
// else it did would have its bugs reported as corrupt input.
func guardDecoder[T any](lg *slog.Logger, d decoder, call string, f func() (T, error)) (v T, err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		var zero T
		v, err = zero, d.recovered(lg, call, r)
	}()
	return f()
}

// guardIPC is guardDecoder for arrow/ipc calls made before a reader (and
// its logger) exists.
func guardIPC[T any](f func() (T, error)) (T, error) {
	return guardDecoder(nil, ipcDecoder, "the IPC reader", f)
}

func (d decoder) recovered(lg *slog.Logger, call string, r any) error {
	e := &decoderPanicError{lib: d.lib, call: call, value: describePanic(r), base: d.corrupt}
	if re, ok := r.(error); ok {
		e.err = re
	}
	if lg == nil {
		lg = slog.Default()
	}
	if lg.Enabled(context.Background(), slog.LevelDebug) {
		lg.Debug("perso: a decoding library panicked on its input", "lib", d.lib, "call", call,
			"panic", e.value, "stack", scrubStack(debug.Stack()))
	}
	return e
}

// describePanic renders a recovered panic value for an error message. Go
// runtime errors (index out of range, nil dereference, makeslice) and
// cappedAllocator's allocLimitError name only positions and lengths and are
// kept whole; any other value is the
// library's own message, which might quote the input, so runs that could be
// record data (hex or digit strings such as a Ki, an IMSI or a PIN) and
// non-printable bytes are masked and the text is bounded.
func describePanic(r any) string {
	switch e := r.(type) {
	case runtime.Error:
		return e.Error()
	case allocLimitError: // ours: lengths only
		return e.Error()
	}
	var s string
	switch r := r.(type) {
	case error:
		s = r.Error()
	case string:
		s = r
	default:
		s = fmt.Sprintf("panic value of type %T", r)
	}
	return maskData(s, 200)
}

// maskData replaces non-printable runes with '?' and runs of 4 or more hex
// digits that contain a decimal digit, or of 8 or more hex digits, with
// "…", and cuts s to at most max bytes.
func maskData(s string, max int) string {
	var b strings.Builder
	rs := []rune(s)
	for i := 0; i < len(rs); {
		j, digit := i, false
		for j < len(rs) && isHex(rs[j]) {
			digit = digit || rs[j] >= '0' && rs[j] <= '9'
			j++
		}
		if n := j - i; n >= 8 || n >= 4 && digit {
			b.WriteString("…")
			i = j
			continue
		}
		if j == i {
			j = i + 1
		}
		for _, c := range rs[i:j] {
			if !unicode.IsPrint(c) {
				c = '?'
			}
			b.WriteRune(c)
		}
		i = j
	}
	out := b.String()
	if len(out) > max {
		cut := max
		for cut > 0 && !isRuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…"
	}
	return out
}

func isHex(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// scrubStack removes the argument words from a goroutine stack: they are
// raw register and stack words, which may hold values read from the input.
// Function names and file:line positions remain.
func scrubStack(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		if l == "" || l[0] == '\t' || strings.HasPrefix(l, "goroutine ") {
			continue
		}
		if k := strings.LastIndexByte(l, '('); k > 0 && strings.HasSuffix(l, ")") {
			lines[i] = l[:k] + "(…)"
		}
	}
	return strings.Join(lines, "\n")
}
