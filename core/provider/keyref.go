package provider

import "encoding/binary"

// KeyRef identifies one version of one key to a provider: the key ID, the
// version, the algorithm, the use and the name of the provider that made it.
// A provider binds every handle to its KeyRef, so a handle presented under
// another key, version, algorithm, use or provider fails.
type KeyRef struct {
	ID        KeyID
	Version   Version
	Algorithm Algorithm
	Use       Use
	Provider  string
}

// Check reports whether every field of r is set and well formed.
func (r KeyRef) Check() error {
	switch {
	case r.ID.IsZero():
		return Errorf(EINVAL, "key ref has no key ID")
	case r.Version == 0:
		return Errorf(EINVAL, "key ref has no version")
	case r.Algorithm == "" || len(r.Algorithm) > MaxSegment:
		return Errorf(EINVAL, "key ref has no valid algorithm")
	case !r.Use.Valid():
		return Errorf(EINVAL, "key ref has no valid use")
	}
	return CheckSegment("provider name", r.Provider)
}

// String returns "<id>@<n>", the form used in messages and audit records.
func (r KeyRef) String() string {
	return r.ID.String() + "@" + r.Version.String()
}

// refMagic starts the canonical binary form of a KeyRef.
const refMagic = "keystored/keyref/v1"

// AppendBinary appends the canonical binary encoding of r to b: a fixed
// magic, then each of app ID, purpose, name, algorithm and provider as a
// 2-byte big-endian length and bytes, the version as 4 bytes big-endian and
// the use as one byte. Distinct KeyRefs always encode differently, so the
// encoding is fit to be authenticated (as AEAD associated data) or hashed.
func (r KeyRef) AppendBinary(b []byte) ([]byte, error) {
	if err := r.Check(); err != nil {
		return b, err
	}
	b = append(b, refMagic...)
	for _, s := range [...]string{r.ID.App(), r.ID.Purpose(), r.ID.Name(), string(r.Algorithm), r.Provider} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(r.Version))
	return append(b, byte(r.Use)), nil
}
