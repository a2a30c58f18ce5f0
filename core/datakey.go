package core

import (
	"context"
	"io"

	"github.com/nexus-os/keystored/core/provider"
)

// dataKeySpecs are the sizes of the named data key specs.
var dataKeySpecs = map[string]int{
	"aes-256-gcm": 32, "aes-128-gcm": 16, "chacha20-poly1305": 32, "xchacha20-poly1305": 32,
}

// defaultDataKeySpec is the spec of a DataKeySpec that names none.
const defaultDataKeySpec = "aes-256-gcm"

// size returns the data key size the spec asks for, or EINVAL.
func (s DataKeySpec) size() (int, error) {
	switch {
	case s.Name != "" && s.Size != 0:
		return 0, provider.Errorf(provider.EINVAL, "give a data key spec or a number of bytes, not both")
	case s.Name != "":
		n, ok := dataKeySpecs[s.Name]
		if !ok {
			name := s.Name
			if len(name) > provider.MaxSegment {
				name = name[:provider.MaxSegment] + "..."
			}
			return 0, provider.Errorf(provider.EINVAL, "unknown data key spec %q; use aes-256-gcm, aes-128-gcm, chacha20-poly1305 or xchacha20-poly1305", name)
		}
		return n, nil
	case s.Size != 0:
		if s.Size < MinDataKeySize || s.Size > MaxDataKeySize {
			return 0, provider.Errorf(provider.EINVAL, "a data key is %d to %d bytes", MinDataKeySize, MaxDataKeySize)
		}
		return s.Size, nil
	}
	return dataKeySpecs[defaultDataKeySpec], nil
}

// GenerateDataKey returns a fresh random data key of spec's size, drawn
// from the keystore's random source (Config.Random), and the same key
// sealed under the decrypt key's primary version with aad (at most MaxAAD
// bytes): an ordinary envelope that Unseal opens. It counts one seal
// against the version's budget, rotates a key past its rotation period
// first, and is audited as "generate-data-key" (the data key never is).
func (k *Keystore) GenerateDataKey(ctx context.Context, c Caller, id KeyID, spec DataKeySpec, aad []byte) (DataKey, error) {
	ev := k.event(c, OpGenerateDataKey, id.String(), 0)
	d, err := k.generateDataKey(ctx, c, OpGenerateDataKey, id, spec, aad, &ev)
	return audited(ctx, k, &ev, d, err)
}

// GenerateDataKeyWithoutPlaintext is GenerateDataKey returning only the
// sealed data key, for a service that stores it and unseals it later.
func (k *Keystore) GenerateDataKeyWithoutPlaintext(ctx context.Context, c Caller, id KeyID, spec DataKeySpec, aad []byte) (Sealed, error) {
	ev := k.event(c, OpGenerateDataKeyWithoutPlaintext, id.String(), 0)
	d, err := k.generateDataKey(ctx, c, OpGenerateDataKeyWithoutPlaintext, id, spec, aad, &ev)
	d.wipe()
	return audited(ctx, k, &ev, Sealed{Version: d.Version, Data: d.Sealed}, err)
}

func (k *Keystore) generateDataKey(ctx context.Context, c Caller, op Op, id KeyID, spec DataKeySpec, aad []byte, ev *Event) (DataKey, error) {
	n, err := spec.size()
	if err != nil {
		return DataKey{}, err
	}
	if len(aad) > provider.MaxAAD {
		return DataKey{}, provider.Errorf(provider.EMSGSIZE, "AAD over %d bytes", provider.MaxAAD)
	}
	if err := admit(ctx, c, op, id); err != nil {
		return DataKey{}, err
	}
	plaintext := make([]byte, n)
	if _, err := io.ReadFull(k.random, plaintext); err != nil {
		return DataKey{}, provider.Errorf(provider.EIO, "random source failed: %v", err)
	}
	s, err := k.seal(ctx, c, op, id, plaintext, aad, ev)
	if err != nil {
		clear(plaintext)
		return DataKey{}, err
	}
	return DataKey{Version: s.Version, Plaintext: plaintext, Sealed: s.Data}, nil
}
