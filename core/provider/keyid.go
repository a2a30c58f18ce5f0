package provider

import (
	"strconv"
	"strings"
)

// KeyID names a key: <appId>/<purpose>/<name>. The same three segments
// always name the same key, and the ID never changes across rotation.
//
// Each segment matches [a-z0-9][a-z0-9._-]* and is at most MaxSegment bytes,
// so an ID can never hold a path separator, a "." or ".." segment, upper
// case, non-ASCII or control bytes: it cannot escape a storage root and has
// exactly one spelling. The zero KeyID is invalid.
//
// A KeyID holds its canonical string and the positions of the two
// slashes, so String costs nothing and a KeyID compares and hashes as one
// string.
type KeyID struct {
	s      string // "<app>/<purpose>/<name>"
	p1, p2 uint8  // indexes of the two slashes
}

// NewKeyID checks the three segments and returns the KeyID they form.
func NewKeyID(app, purpose, name string) (KeyID, error) {
	for _, s := range [...]struct{ what, v string }{{"app ID", app}, {"purpose", purpose}, {"name", name}} {
		if err := CheckSegment(s.what, s.v); err != nil {
			return KeyID{}, err
		}
	}
	return KeyID{s: app + "/" + purpose + "/" + name, p1: uint8(len(app)), p2: uint8(len(app) + 1 + len(purpose))}, nil
}

// ParseKeyID parses "<appId>/<purpose>/<name>".
func ParseKeyID(s string) (KeyID, error) {
	if len(s) > MaxKeyIDLen {
		return KeyID{}, Errorf(EINVAL, "key ID longer than %d bytes", MaxKeyIDLen)
	}
	app, rest, ok1 := strings.Cut(s, "/")
	purpose, name, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 {
		return KeyID{}, Errorf(EINVAL, "key ID %q is not <appId>/<purpose>/<name>", s)
	}
	for _, seg := range [...]struct{ what, v string }{{"app ID", app}, {"purpose", purpose}, {"name", name}} {
		if err := CheckSegment(seg.what, seg.v); err != nil {
			return KeyID{}, err
		}
	}
	// s is exactly app "/" purpose "/" name: keep it, no copy.
	return KeyID{s: s, p1: uint8(len(app)), p2: uint8(len(app) + 1 + len(purpose))}, nil
}

// CheckSegment reports whether v is a valid ID segment ([a-z0-9][a-z0-9._-]*,
// 1..MaxSegment bytes); what names the segment in the error.
func CheckSegment(what, v string) error {
	if v == "" {
		return Errorf(EINVAL, "%s is empty", what)
	}
	if len(v) > MaxSegment {
		return Errorf(EINVAL, "%s is longer than %d bytes", what, MaxSegment)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return Errorf(EINVAL, "%s %q must match [a-z0-9][a-z0-9._-]*", what, v)
		}
	}
	return nil
}

// App returns the app ID segment.
func (id KeyID) App() string { return id.s[:id.p1] }

// Purpose returns the purpose segment.
func (id KeyID) Purpose() string {
	if id.IsZero() {
		return ""
	}
	return id.s[id.p1+1 : id.p2]
}

// Name returns the name segment.
func (id KeyID) Name() string {
	if id.IsZero() {
		return ""
	}
	return id.s[id.p2+1:]
}

// IsZero reports whether id is the zero (invalid) KeyID.
func (id KeyID) IsZero() bool { return id.s == "" }

// String returns "<appId>/<purpose>/<name>", or "" for the zero KeyID.
func (id KeyID) String() string { return id.s }

// Compare orders key IDs by (app, purpose, name): -1, 0 or +1. This is
// the order of listings and of their page tokens.
func (id KeyID) Compare(other KeyID) int {
	if c := strings.Compare(id.App(), other.App()); c != 0 {
		return c
	}
	if c := strings.Compare(id.Purpose(), other.Purpose()); c != 0 {
		return c
	}
	return strings.Compare(id.Name(), other.Name())
}

// MarshalText implements encoding.TextMarshaler.
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseKeyID.
func (id *KeyID) UnmarshalText(b []byte) error {
	v, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Version numbers a key's versions from 1. The zero Version means "not
// given" where a version is optional, and is invalid elsewhere.
type Version uint32

// MaxVersion is the largest version number.
const MaxVersion = Version(^uint32(0))

// String returns the decimal version.
func (v Version) String() string { return strconv.FormatUint(uint64(v), 10) }
