package core

import (
	"errors"

	"github.com/nexus-os/keystored/core/provider"
)

// Ops lists every operation a call makes (for tests that walk the
// lifecycle table): not the notes (OpApplied, OpRollbackDetected).
func Ops() []Op {
	out := make([]Op, 0, opEnd-1)
	for o := Op(1); o < opEnd; o++ {
		if o != OpApplied && o != OpRollbackDetected && o != OpAdopted { // notes, not calls
			out = append(out, o)
		}
	}
	return out
}

// EncodeManifest returns a MANIFEST file as Open writes it (for tests that
// write old or damaged ones).
func EncodeManifest(providerName string, secure bool, kek string) ([]byte, error) {
	return encodeChecked("manifest", manifestPath, manifestBody{Provider: providerName, Secure: secure, KEK: kek})
}

// EncodeManifestRotating is EncodeManifest with a pending KEK rotation
// (kek_next).
func EncodeManifestRotating(providerName string, secure bool, kek, next string) ([]byte, error) {
	return encodeChecked("manifest", manifestPath, manifestBody{Provider: providerName, Secure: secure, KEK: kek, KEKNext: next})
}

// ImportTableLen returns how many import tokens (unused and spent) k
// remembers.
func ImportTableLen(k *Keystore) int {
	k.imports.mu.Lock()
	defer k.imports.mu.Unlock()
	return len(k.imports.tokens)
}

// RewriteGeneration rewrites id's meta.json with generation g (0: a file
// as written before generations), as a forger or an old daemon would.
func RewriteGeneration(st Storage, id KeyID, g uint64) error {
	path := MetaFileOf(st, id)
	data, err := st.ReadFile(path)
	if err != nil {
		return err
	}
	var b metaBody
	if err := decodeChecked("meta", path, data, &b); err != nil {
		return err
	}
	b.Generation = g
	out, err := encodeChecked("meta", path, b)
	if err != nil {
		return err
	}
	return st.WriteFile(path, out)
}

// LegacyLayout moves key id's metadata to where a version from before
// keys were one file wrote it: keystore/<id>/meta.json (re-checksummed for
// that path), its handles still inline (as the versions between inline
// handles and key files wrote them). A keystore that has the key in
// memory still holds it the new way: use a fresh one.
func LegacyLayout(st Storage, id KeyID) error {
	return legacy(st, id, false)
}

// LegacyHandles rewrites key id's files as a version from before inline
// handles wrote them: in its legacy directory (LegacyLayout), each
// version's handle in its v<N>.handle file and meta.json without it (for
// tests of states made by older versions, and of attacks on handle files
// and on the legacy layout). A keystore that has the key in memory still
// holds it the new way: use a fresh one.
func LegacyHandles(st Storage, id KeyID) error {
	return legacy(st, id, true)
}

func legacy(st Storage, id KeyID, handles bool) error {
	path := metaPath(id)
	data, err := st.ReadFile(path)
	if errors.Is(err, provider.ErrNotFound) {
		path = legacyMetaPath(id)
		data, err = st.ReadFile(path)
	}
	if err != nil {
		return err
	}
	var b metaBody
	if err := decodeChecked("meta", path, data, &b); err != nil {
		return err
	}
	for i := range b.Versions {
		v := &b.Versions[i]
		if v.Handle == nil || !handles {
			continue
		}
		hp := handlePath(id, Version(v.Version))
		if err := st.WriteFile(hp, encodeHandle(hp, v.Handle)); err != nil {
			return err
		}
		v.Handle = nil
	}
	lp := legacyMetaPath(id)
	out, err := encodeChecked("meta", lp, b)
	if err != nil {
		return err
	}
	if err := st.WriteFile(lp, out); err != nil {
		return err
	}
	if path == lp {
		return nil
	}
	return st.Remove(path)
}

// MetaFileOf returns the storage path of key id's metadata in st: its key
// file, or its legacy meta.json when only that exists.
func MetaFileOf(st Storage, id KeyID) string {
	if _, err := st.ReadFile(metaPath(id)); errors.Is(err, provider.ErrNotFound) {
		if _, err := st.ReadFile(legacyMetaPath(id)); err == nil {
			return legacyMetaPath(id)
		}
	}
	return metaPath(id)
}
