// Package secret holds key material in a type that will not print.
//
// A Bytes value redacts under every fmt verb (including %+v and %#v), as
// JSON and text, and in log/slog. The bytes come out only through the
// named accessor Reveal, so every place that handles raw key material is
// greppable.
//
// Memory: Go may copy a slice's backing array (growth, GC compaction does
// not move heap objects today but the compiler may spill registers), so
// Wipe zeroes the one copy this value owns and promises nothing more.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Bytes is secret key material.
type Bytes struct {
	b []byte
}

// New returns a Bytes holding a copy of b.
func New(b []byte) Bytes {
	return Bytes{b: append([]byte(nil), b...)}
}

// Own returns a Bytes that takes ownership of b (no copy): the caller must
// not use b afterwards except through the returned value.
func Own(b []byte) Bytes { return Bytes{b: b} }

// Reveal returns the raw bytes. The caller must not retain or log them.
func (s Bytes) Reveal() []byte { return s.b }

// Len returns the length of the material.
func (s Bytes) Len() int { return len(s.b) }

// IsZero reports whether s holds no material.
func (s Bytes) IsZero() bool { return len(s.b) == 0 }

// Wipe zeroes the bytes this value owns.
func (s Bytes) Wipe() { clear(s.b) }

// String returns "[REDACTED]".
func (s Bytes) String() string { return redacted }

// GoString returns "[REDACTED]".
func (s Bytes) GoString() string { return redacted }

// Format prints "[REDACTED]" under every verb.
func (s Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON returns the JSON string "[REDACTED]".
func (s Bytes) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[REDACTED]".
func (s Bytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes log/slog print "[REDACTED]".
func (s Bytes) LogValue() slog.Value { return slog.StringValue(redacted) }
