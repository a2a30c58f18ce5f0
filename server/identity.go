package server

import (
	"sort"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// Unmapped says what happens to a uid that the identity map does not name.
type Unmapped uint8

// The policies for unmapped uids.
const (
	_ Unmapped = iota
	// UnmappedDeny refuses every request of an unmapped uid (EPERM); each
	// refusal is audited.
	UnmappedDeny
	// UnmappedUID gives an unmapped uid N the app ID "uid-N".
	UnmappedUID
)

// String returns "deny" or "uid".
func (u Unmapped) String() string {
	switch u {
	case UnmappedDeny:
		return "deny"
	case UnmappedUID:
		return "uid"
	}
	return "invalid-unmapped(" + strconv.Itoa(int(u)) + ")"
}

// ParseUnmapped parses "deny" or "uid".
func ParseUnmapped(s string) (Unmapped, error) {
	switch s {
	case "deny":
		return UnmappedDeny, nil
	case "uid":
		return UnmappedUID, nil
	}
	return 0, provider.Errorf(provider.EINVAL, "unmapped must be \"deny\" or \"uid\", not %q", s)
}

// Identity maps a caller's uid (from the kernel) to an app ID and the
// operator role. The zero Identity is invalid; use DefaultIdentity or
// NewIdentity.
type Identity struct {
	apps      map[uint32]string
	operators map[uint32]bool
	unmapped  Unmapped
}

// Caller is who is asking, as the daemon established it: the kernel's
// uid, gid and pid of the connecting process and the app ID and role the
// identity map gives that uid. Denied is true when the map refuses the uid.
type Caller struct {
	UID, GID uint32
	PID      int32
	App      string
	Operator bool
	Denied   bool
}

// DefaultIdentity is the map of a daemon without a config file: uid N is
// app "uid-N", and uid 0 is an operator.
func DefaultIdentity() Identity {
	return Identity{apps: map[uint32]string{}, operators: map[uint32]bool{0: true}, unmapped: UnmappedUID}
}

// NewIdentity returns the map of a config file: apps maps uids to app IDs
// (each a key ID segment), operators lists the operator uids, unmapped
// says what happens to every other uid. An app ID starting with
// GeneratedPrefix is refused (EINVAL) unless it is the uid's own
// generated name: generated and configured names never collide, whatever
// the unmapped policy (operators without an app get generated names too).
func NewIdentity(apps map[uint32]string, operators []uint32, unmapped Unmapped) (Identity, error) {
	if unmapped != UnmappedDeny && unmapped != UnmappedUID {
		return Identity{}, provider.Errorf(provider.EINVAL, "identity: unmapped policy must be deny or uid")
	}
	id := Identity{apps: make(map[uint32]string, len(apps)), operators: make(map[uint32]bool, len(operators)), unmapped: unmapped}
	uids := make([]uint32, 0, len(apps))
	for uid := range apps {
		uids = append(uids, uid)
	}
	sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	for _, uid := range uids {
		app := apps[uid]
		if err := provider.CheckSegment("app ID of uid "+strconv.FormatUint(uint64(uid), 10), app); err != nil {
			return Identity{}, err
		}
		if err := checkReserved(uid, app); err != nil {
			return Identity{}, err
		}
		id.apps[uid] = app
	}
	for _, uid := range operators {
		if id.operators[uid] {
			return Identity{}, provider.Errorf(provider.EINVAL, "identity: operator uid %d listed twice", uint64(uid))
		}
		id.operators[uid] = true
	}
	return id, nil
}

// GeneratedPrefix starts every app ID the daemon makes up for a uid that
// the map does not name ("uid-1005"). Configured app IDs may not use it
// (except uid N naming its own "uid-N"): a configured "uid-1005" would let
// uid 1005, unlisted, act as that app.
const GeneratedPrefix = "uid-"

// generatedApp is the app ID of an unnamed uid.
func generatedApp(uid uint32) string {
	return GeneratedPrefix + strconv.FormatUint(uint64(uid), 10)
}

// checkReserved refuses a configured app ID that is, or could be, a
// generated one: anything starting with GeneratedPrefix except the uid's
// own generated name. Two uids therefore never share a generated name,
// and no configured app can be reached by an unnamed uid or an operator
// without an app.
func checkReserved(uid uint32, app string) error {
	if app == core.ReservedApp {
		return provider.Errorf(provider.EINVAL,
			"app ID %q of uid %d is refused: %q is the daemon's own namespace (its audit checkpoint key); choose another app ID",
			app, uint64(uid), core.ReservedApp)
	}
	rest, ok := strings.CutPrefix(app, GeneratedPrefix)
	if !ok || app == generatedApp(uid) {
		return nil
	}
	why := "it could collide with a generated name"
	if n, err := strconv.ParseUint(rest, 10, 32); err == nil && generatedApp(uint32(n)) == app {
		why = "it is the name uid " + rest + " gets when no app is configured for it, so uid " + rest + " would use uid " +
			strconv.FormatUint(uint64(uid), 10) + "'s keys"
	}
	return provider.Errorf(provider.EINVAL,
		"app ID %q of uid %d is refused: app IDs starting with %q are reserved for the names the daemon gives uids "+
			"without a configured app (uid N is %q), and %s; choose another app ID",
		app, uint64(uid), GeneratedPrefix, GeneratedPrefix+"N", why)
}

// Resolve returns the caller for a peer's kernel credentials. A request
// never names its own identity: this is the only source of it.
func (id Identity) Resolve(p PeerInfo) Caller {
	c := Caller{UID: p.UID, GID: p.GID, PID: p.PID}
	app, mapped := id.apps[p.UID]
	c.Operator = id.operators[p.UID]
	switch {
	case mapped:
		c.App = app
	case c.Operator || id.unmapped == UnmappedUID:
		c.App = generatedApp(p.UID)
	default:
		c.Denied = true
		c.Operator = false
	}
	return c
}

// Unmapped returns the policy for uids the map does not name.
func (id Identity) Unmapped() Unmapped { return id.unmapped }
