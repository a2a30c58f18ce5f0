package core

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
	path := metaPath(id)
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
