package pkcs11

import (
	"crypto/sha256"

	"github.com/nexus-os/keystored/core/provider"
)

// objectID is the CKA_ID of a key version's objects.
type objectID [idSize]byte

// idOf returns the CKA_ID of ref's objects: the first idSize bytes of
// SHA-256(idPrefix ‖ ref.AppendBinary). It depends on every field of ref.
func idOf(ref provider.KeyRef) (objectID, error) {
	b, err := ref.AppendBinary([]byte(idPrefix))
	if err != nil {
		return objectID{}, err
	}
	sum := sha256.Sum256(b)
	var id objectID
	copy(id[:], sum[:])
	return id, nil
}

// encodeHandle returns the handle naming the objects with CKA_ID id.
func encodeHandle(id objectID) provider.Handle {
	h := make(provider.Handle, 0, handleSize)
	h = append(h, handleMagic...)
	return append(h, id[:]...)
}

// checkHandleFor checks that h is the handle of ref: well formed, and
// carrying the CKA_ID computed from ref. It returns that CKA_ID.
func checkHandleFor(ref provider.KeyRef, h provider.Handle) (objectID, error) {
	if len(h) > provider.MaxHandle {
		return objectID{}, provider.Errorf(provider.EINVAL, "handle for %s is over %d bytes", ref, provider.MaxHandle)
	}
	id, err := idOf(ref)
	if err != nil {
		return objectID{}, err
	}
	if len(h) != handleSize || string(h[:len(handleMagic)]) != handleMagic {
		return objectID{}, provider.Errorf(provider.EIO, "handle for %s is not a pkcs11 handle", ref)
	}
	if string(h[len(handleMagic):]) != string(id[:]) {
		return objectID{}, provider.Errorf(provider.EIO, "handle does not belong to %s", ref)
	}
	return id, nil
}
