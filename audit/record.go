package audit

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nexus-os/keystored/core/provider"
)

// Bounds on the string fields of a Record. Append refuses a longer field
// with EINVAL rather than truncating it, so a caller that builds oversized
// notes finds out.
const (
	// MaxField is the longest App, Op, Key, Result or Detail, in bytes.
	MaxField = 256
	// MaxLine is the longest line a valid log can hold, newline excluded.
	// A record with every string field at MaxField bytes of characters
	// that need escaping fits (the tests check it).
	MaxLine = 4096
)

// Caller is the kernel-attested identity of the process that made a
// request, and the app ID and operator flag the daemon's configuration
// gave it.
type Caller struct {
	UID      int64  `json:"uid"`
	GID      int64  `json:"gid"`
	PID      int64  `json:"pid"`
	App      string `json:"app"`
	Operator bool   `json:"operator"`
}

// Record is one audit record: who asked for what, on which key, and the
// outcome. It holds identifiers, counts and result codes only, never
// messages, plaintext, AAD, signatures or key bytes.
//
// The JSON names are those of the line format (docs/audit.md); the package
// encodes and decodes lines itself, in a fixed field order.
type Record struct {
	// Seq is the record's position in the log: 1 for the first record,
	// +1 for each next one. Append assigns it.
	Seq uint64 `json:"seq"`
	// Time is when the request was handled, from the daemon's clock. It
	// is stored in UTC with RFC 3339 nanosecond precision; it must be
	// non-zero and within the years 1 to 9999.
	Time   time.Time `json:"time"`
	Caller Caller    `json:"caller"`
	// Op names the operation, e.g. "keys.sign", "store.put". Required.
	Op string `json:"op"`
	// Key is the key ID, versioned ref ("<id>@<n>") or store name the
	// request concerned; empty when none.
	Key     string `json:"key"`
	Version uint32 `json:"version"`
	// Gen is the key's generation after the change a record announces
	// (docs/audit.md, "Generations"); 0 for every other record. The line
	// carries "gen" only when it is not 0, so logs written before
	// generations existed read and verify unchanged.
	Gen uint64 `json:"gen,omitempty"`
	// Result is "ok" or the error's code name ("EPERM", ...). Required.
	Result string `json:"result"`
	// Items and Failed count the items of a batch request and those that
	// failed (both 0 when the request is not a batch); 0 <= Failed <= Items.
	Items  int `json:"items"`
	Failed int `json:"failed"`
	// Detail is a short machine-made note; never caller payloads.
	Detail string `json:"detail"`
	// Prev is the Hash of the previous record, or Genesis for the first
	// record of a file. Append sets it.
	Prev string `json:"prev"`
	// Hash is this record's chain value (docs/audit.md, "Chain"). Append
	// sets it.
	Hash string `json:"hash"`
}

// validate checks the fields Append takes from its caller (EINVAL).
func (r *Record) validate() error {
	if msg := r.problem(); msg != "" {
		return provider.Errorf(provider.EINVAL, "audit record %s", msg)
	}
	return nil
}

// problem returns what is wrong with the caller-supplied fields of r
// (string bounds and characters, time range, batch counts), or "". Seq,
// Prev and Hash are not checked here.
func (r *Record) problem() string {
	fields := [...]struct {
		name     string
		v        string
		required bool
	}{
		{"caller app", r.Caller.App, false},
		{"op", r.Op, true},
		{"key", r.Key, false},
		{"result", r.Result, true},
		{"detail", r.Detail, false},
	}
	for _, f := range fields {
		if msg := checkField(f.v, f.required); msg != "" {
			return f.name + ": " + msg
		}
	}
	if msg := checkTime(r.Time); msg != "" {
		return "time: " + msg
	}
	if r.Items < 0 || r.Failed < 0 || r.Failed > r.Items {
		return "batch counts: items " + strconv.Itoa(r.Items) + ", failed " +
			strconv.Itoa(r.Failed) + "; want 0 <= failed <= items"
	}
	return ""
}

// checkField returns why s is not a valid string field, or "".
func checkField(s string, required bool) string {
	if len(s) > MaxField {
		return strconv.Itoa(len(s)) + " bytes, over the bound of " + strconv.Itoa(MaxField)
	}
	if required && s == "" {
		return "empty"
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return "control character at byte " + strconv.Itoa(i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return "invalid UTF-8 at byte " + strconv.Itoa(i)
		}
		if r >= 0x80 && r <= 0x9f {
			return "control character at byte " + strconv.Itoa(i)
		}
		i += n
	}
	return ""
}

// checkTime returns why t cannot be recorded, or "".
func checkTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return "year " + strconv.Itoa(y) + " outside 1..9999"
	}
	return ""
}
