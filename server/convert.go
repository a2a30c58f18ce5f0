package server

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// parseKeyName resolves a key name of a request: "<purpose>/<name>" is a
// key of the caller's app, "<app>/<purpose>/<name>" names the app (the
// core refuses another app's key to a non-operator with EPERM, whether or
// not it exists).
func parseKeyName(c *Caller, s string) (core.KeyID, error) {
	if len(s) > provider.MaxKeyIDLen {
		return core.KeyID{}, provider.Errorf(provider.EINVAL, "key name longer than %d bytes", provider.MaxKeyIDLen)
	}
	switch strings.Count(s, "/") {
	case 1:
		purpose, name, _ := strings.Cut(s, "/")
		return provider.NewKeyID(c.App, purpose, name)
	case 2:
		return provider.ParseKeyID(s)
	}
	return core.KeyID{}, provider.Errorf(provider.EINVAL, "key name must be <purpose>/<name> or <app>/<purpose>/<name>")
}

// parseVersion checks a version a request must name: 1 .. 4294967295.
func parseVersion(v int64) (core.Version, error) {
	if v < 1 || v > int64(provider.MaxVersion) {
		return 0, provider.Errorf(provider.EINVAL, "version must be a number from 1 to %s", provider.MaxVersion)
	}
	return core.Version(v), nil
}

// parseOptionalVersion checks a version a request may leave out: 0 (the
// proto's "the current version") or 1 .. 4294967295.
func parseOptionalVersion(v int64) (core.Version, error) {
	if v == 0 {
		return 0, nil
	}
	return parseVersion(v)
}

// maxRotationSeconds is the largest rotation period in seconds.
const maxRotationSeconds = int64(core.MaxRotationPeriod / time.Second)

// policyFrom converts a request's policy; nil is the zero policy. The core
// checks the values; this only keeps the conversion from overflowing.
func policyFrom(p *keystorev1.KeyPolicy) (core.Policy, error) {
	secs := p.GetRotationPeriodSeconds()
	if secs < 0 || secs > maxRotationSeconds {
		return core.Policy{}, provider.Errorf(provider.EINVAL, "rotation period must be 0 (off) or between %s and %s", core.MinRotationPeriod, core.MaxRotationPeriod)
	}
	return core.Policy{
		MinDecryptionVersion: core.Version(p.GetMinDecryptionVersion()),
		RotationPeriod:       time.Duration(secs) * time.Second,
	}, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var keyStates = map[core.KeyState]keystorev1.KeyState{
	core.StateActive:    keystorev1.KeyState_KEY_STATE_ACTIVE,
	core.StateRevoked:   keystorev1.KeyState_KEY_STATE_REVOKED,
	core.StateDestroyed: keystorev1.KeyState_KEY_STATE_DESTROYED,
}

var versionStates = map[core.VersionState]keystorev1.VersionState{
	core.VersionPrimary:   keystorev1.VersionState_VERSION_STATE_PRIMARY,
	core.VersionRetired:   keystorev1.VersionState_VERSION_STATE_RETIRED,
	core.VersionRevoked:   keystorev1.VersionState_VERSION_STATE_REVOKED,
	core.VersionDestroyed: keystorev1.VersionState_VERSION_STATE_DESTROYED,
}

// keyMetadata converts core metadata to the API's, with the rotation due
// time and whether it has passed at now. It never holds private material
// (core.Metadata has none).
func keyMetadata(m *core.Metadata, now time.Time) *keystorev1.KeyMetadata {
	out := &keystorev1.KeyMetadata{
		Id:             m.ID.String(),
		Algorithm:      string(m.Algorithm),
		Uses:           []string{m.Use.String()},
		State:          keyStates[m.State],
		CurrentVersion: uint32(m.Current),
		Policy: &keystorev1.KeyPolicy{
			MinDecryptionVersion:  uint32(m.Policy.MinDecryptionVersion),
			RotationPeriodSeconds: int64(m.Policy.RotationPeriod / time.Second),
		},
		Provider:  m.Provider,
		Insecure:  m.Insecure,
		Origin:    m.Origin.String(),
		Created:   ts(m.Created),
		Revoked:   ts(m.Revoked),
		Destroyed: ts(m.Destroyed),
		Versions:  make([]*keystorev1.KeyVersion, 0, len(m.Versions)),
	}
	if due, ok := m.RotationDue(); ok {
		out.RotationDue, out.RotationOverdue = ts(due), !now.Before(due)
	}
	for i := range m.Versions {
		v := &m.Versions[i]
		out.Versions = append(out.Versions, &keystorev1.KeyVersion{
			Version:   uint32(v.Version),
			State:     versionStates[v.State],
			PublicKey: v.PublicKey,
			Created:   ts(v.Created),
			Retired:   ts(v.Retired),
			Revoked:   ts(v.Revoked),
			Destroyed: ts(v.Destroyed),
			Seals:     v.Seals,
			SealLimit: v.SealLimit,
			Origin:    v.Origin.String(),
		})
	}
	return out
}

// errorDetail is the per-item error of a batch or listing.
func errorDetail(err error) *keystorev1.ErrorDetail {
	msg := err.Error()
	if len(msg) > rpcerr.MaxMessage {
		msg = strings.ToValidUTF8(msg[:rpcerr.MaxMessage], "")
	}
	return &keystorev1.ErrorDetail{Reason: codeOf(err).String(), Message: msg}
}
