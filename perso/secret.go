package perso

import (
	"fmt"
	"log/slog"
)

// Redacted is what a Secret prints as, whatever the verb or encoder.
const Redacted = "[redacted]"

// Secret holds key material or a PIN/PUK/ADM value. It never prints: every
// fmt verb, %#v, JSON, text marshalling and slog render it as "[redacted]",
// so a Secret that slips into a log line, an error or a report leaks nothing.
// Use Bytes for the value and Wipe when done.
type Secret []byte

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer (%#v).
func (Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that %x, %X, %q, %s, %v and %d all redact.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Bytes returns the secret value itself (no copy).
func (s Secret) Bytes() []byte { return s }

// Len returns the length of the value in bytes.
func (s Secret) Len() int { return len(s) }

// Wipe overwrites the value with zeros.
func (s Secret) Wipe() { clear(s) }

// wipe zeroes any number of scratch buffers.
func wipe(bufs ...[]byte) {
	for _, b := range bufs {
		clear(b)
	}
}
