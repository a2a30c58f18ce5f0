package server

import (
	"sort"
	"strconv"

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
// says what happens to every other uid.
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
		c.App = "uid-" + strconv.FormatUint(uint64(p.UID), 10)
	default:
		c.Denied = true
		c.Operator = false
	}
	return c
}

// Unmapped returns the policy for uids the map does not name.
func (id Identity) Unmapped() Unmapped { return id.unmapped }
