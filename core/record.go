package core

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// record is a key's state in memory: its metadata plus what the core
// needs at run time for each version.
type record struct {
	meta     Metadata
	spec     *alg.Spec
	versions []*versionRT // index v-1
	// path is where the key's metadata is stored: metaPath, or
	// legacyMetaPath for a legacy key (its changes stay there); "" for a
	// record not read from storage, which is written at metaPath.
	path string
}

// metaFile returns the storage path of r's metadata.
func (r *record) metaFile() string {
	if r.path != "" {
		return r.path
	}
	return metaPath(r.meta.ID)
}

// versionRT is the run-time state of one key version.
type versionRT struct {
	ref    provider.KeyRef
	refStr string // "<id>@<n>"
	idStr  string // "<id>"
	// inline: the version's handle is in meta.json (set when the version
	// is made or read; never changes). Else it is in v<N>.handle.
	inline bool
	// handle is the version's handle: for an inline version, set with
	// the record (nil once destroyed); else loaded from its file on
	// first use.
	handle atomic.Pointer[provider.Handle]
	// seals counts seals made, starting at reserved on load so a crash
	// never lets the count go back; reserved is the durable reservation.
	seals    atomic.Uint64
	reserved atomic.Uint64
}

func newVersionRT(id KeyID, v Version, spec *alg.Spec, providerName string, reserved uint64) *versionRT {
	vr := &versionRT{ref: provider.KeyRef{ID: id, Version: v, Algorithm: spec.Name, Use: spec.Use, Provider: providerName}}
	vr.idStr = id.String()
	vr.refStr = vr.idStr + "@" + v.String()
	vr.reserved.Store(reserved)
	vr.seals.Store(reserved)
	return vr
}

// snapshot returns a copy of the record's metadata for a caller, with
// each version's seal count as of now.
func (r *record) snapshot() Metadata {
	m := r.meta.clone()
	if r.spec.SealLimit == 0 {
		return m
	}
	for i := range m.Versions {
		v := &m.Versions[i]
		v.SealLimit = r.spec.SealLimit
		if i < len(r.versions) {
			v.Seals = min(r.versions[i].seals.Load(), r.spec.SealLimit)
		}
	}
	return m
}

// body encodes the record for meta.json.
func (r *record) body() metaBody {
	m := &r.meta
	b := metaBody{
		ID:        m.ID.String(),
		Algorithm: string(m.Algorithm),
		Uses:      []string{m.Use.String()},
		State:     m.State.String(),
		Current:   uint32(m.Current),
		Provider:  m.Provider,
		Insecure:  m.Insecure,
		Origin:    originField(m.Origin),
		Created:   m.Created.UTC(),
		Revoked:   timePtr(m.Revoked.UTC()),
		Destroyed: timePtr(m.Destroyed.UTC()),
		Policy: policyBody{
			MinDecryptionVersion:  uint32(m.Policy.MinDecryptionVersion),
			RotationPeriodSeconds: int64(m.Policy.RotationPeriod / time.Second),
		},
		Generation: m.Generation,
	}
	for i, v := range m.Versions {
		vb := versionBody{
			Version:   uint32(v.Version),
			State:     v.State.String(),
			PublicKey: v.PublicKey,
			Created:   v.Created.UTC(),
			Retired:   timePtr(v.Retired.UTC()),
			Revoked:   timePtr(v.Revoked.UTC()),
			Destroyed: timePtr(v.Destroyed.UTC()),
			Origin:    originField(v.Origin),
		}
		if i < len(r.versions) {
			vr := r.versions[i]
			vb.SealsReserved = vr.reserved.Load()
			if h := vr.handle.Load(); vr.inline && h != nil && v.State != VersionDestroyed {
				vb.Handle = *h
			}
		}
		b.Versions = append(b.Versions, vb)
	}
	return b
}

// recordFromBody checks every invariant of a decoded meta.json and builds
// the record. id is the key the file's path names; providerName the
// keystore's provider.
func recordFromBody(id KeyID, path string, b *metaBody, reg *alg.Registry, providerName string) (*record, error) {
	bad := func(why string) (*record, error) {
		return nil, provider.Errorf(provider.EIO, "corrupted metadata %s: %s", path, why)
	}
	if b.ID != id.String() {
		return bad("it names another key")
	}
	spec, err := reg.Lookup(provider.Algorithm(b.Algorithm))
	if err != nil {
		return bad("unknown algorithm")
	}
	if len(b.Uses) != 1 || b.Uses[0] != spec.Use.String() {
		return bad("uses do not match the algorithm")
	}
	state, ok := parseKeyState(b.State)
	if !ok {
		return bad("invalid state")
	}
	if b.Provider != providerName {
		return bad("made by provider " + strconv.Quote(b.Provider) + ", not " + strconv.Quote(providerName))
	}
	n := len(b.Versions)
	if n == 0 || uint64(n) > uint64(provider.MaxVersion) || b.Current != uint32(n) {
		return bad("versions are not 1..current")
	}
	m := Metadata{
		ID: id, Algorithm: spec.Name, Use: spec.Use, State: state, Current: Version(b.Current),
		Provider: b.Provider, Insecure: b.Insecure, Created: b.Created,
		Revoked: timeVal(b.Revoked), Destroyed: timeVal(b.Destroyed), Generation: b.Generation,
		Policy: Policy{
			MinDecryptionVersion: Version(b.Policy.MinDecryptionVersion),
			RotationPeriod:       time.Duration(b.Policy.RotationPeriodSeconds) * time.Second,
		},
	}
	if m.Policy.MinDecryptionVersion > m.Current {
		return bad("minimum decryption version above the current version")
	}
	if m.Origin, ok = parseOrigin(b.Origin); !ok {
		return bad("invalid origin")
	}
	if p := m.Policy.RotationPeriod; p != 0 && (p < MinRotationPeriod || p > MaxRotationPeriod) {
		return bad("rotation period out of range")
	}
	r := &record{spec: spec, path: path}
	primaries := 0
	for i, vb := range b.Versions {
		vs, ok := parseVersionState(vb.State)
		if !ok || vb.Version != uint32(i+1) {
			return bad("version " + strconv.Itoa(i+1) + " is malformed")
		}
		if !spec.PublicKeySizeOK(len(vb.PublicKey)) {
			return bad("version " + strconv.Itoa(i+1) + " public key has the wrong size")
		}
		if vs == VersionPrimary {
			primaries++
		}
		if !versionStateAllowed(state, vs, Version(vb.Version) == m.Current) {
			return bad("version " + strconv.Itoa(i+1) + " is " + vs.String() + " in a " + state.String() + " key")
		}
		if spec.SealLimit > 0 && vb.SealsReserved > spec.SealLimit || spec.SealLimit == 0 && vb.SealsReserved != 0 {
			return bad("version " + strconv.Itoa(i+1) + " seal count out of range")
		}
		vo, ok := parseOrigin(vb.Origin)
		if !ok {
			return bad("version " + strconv.Itoa(i+1) + " has an invalid origin")
		}
		if vb.Handle != nil && (len(vb.Handle) == 0 || len(vb.Handle) > provider.MaxHandle || vs == VersionDestroyed) {
			return bad("version " + strconv.Itoa(i+1) + " has a malformed handle")
		}
		m.Versions = append(m.Versions, VersionInfo{
			Version: Version(vb.Version), State: vs, PublicKey: vb.PublicKey, Created: vb.Created,
			Retired: timeVal(vb.Retired), Revoked: timeVal(vb.Revoked), Destroyed: timeVal(vb.Destroyed),
			Origin: vo,
		})
		vr := newVersionRT(id, Version(vb.Version), spec, providerName, vb.SealsReserved)
		if vb.Handle != nil {
			h := provider.Handle(append([]byte(nil), vb.Handle...))
			vr.inline = true
			vr.handle.Store(&h)
		}
		r.versions = append(r.versions, vr)
	}
	if (state == StateActive) != (primaries == 1) || primaries > 1 {
		return bad("an active key needs exactly one primary version, other keys none")
	}
	r.meta = m
	return r, nil
}

// versionStateAllowed says which version states each key state admits:
// an active key has its current version primary and the others retired or
// revoked; a revoked key has every version revoked or destroyed; a
// destroyed key every version destroyed.
func versionStateAllowed(k KeyState, v VersionState, current bool) bool {
	switch k {
	case StateActive:
		if current {
			return v == VersionPrimary
		}
		return v == VersionRetired || v == VersionRevoked
	case StateRevoked:
		return v == VersionRevoked || v == VersionDestroyed
	case StateDestroyed:
		return v == VersionDestroyed
	}
	return false
}

// originField is an origin as meta.json records it: "imported", or
// nothing for generated material (so that files of keys that were never
// imported read as before).
func originField(o Origin) string {
	if o == OriginImported {
		return "imported"
	}
	return ""
}

// parseOrigin reads originField's form.
func parseOrigin(s string) (Origin, bool) {
	switch s {
	case "":
		return OriginGenerated, true
	case "imported":
		return OriginImported, true
	}
	return 0, false
}
