package pkcs11

import (
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// TestDecryptNotSupported: the provider announces no HPKE algorithm, and
// Decrypt is ENOTSUP with the reason for every HPKE suite; EPERM for a
// ref of another use or an algorithm of another use; EMSGSIZE over a
// bound, before anything else about the key.
func TestDecryptNotSupported(t *testing.T) {
	tk := newToken(t, "decrypt")
	p := tk.open(t)
	ctx := t.Context()
	info, err := p.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range info.Algorithms {
		if s, err := alg.Default().Lookup(a); err != nil || s.Use == provider.UseAsymmetricDecrypt {
			t.Errorf("Info announces %s (%v); want no asymmetric-decrypt algorithm", a, err)
		}
	}
	enc, ct := make([]byte, 32), make([]byte, 32)
	for _, suite := range []provider.Algorithm{provider.HPKEMLKEM768X25519, provider.HPKEX25519, provider.HPKEP256} {
		ref := mustRef(t, "hpke", 1, suite)
		_, err := p.Decrypt(ctx, ref, encodeHandle(objectID{}), enc, ct, nil, nil)
		wantCode(t, "Decrypt("+string(suite)+")", err, provider.ENOTSUP)
		if err != nil && !strings.Contains(err.Error(), "HPKE") {
			t.Errorf("Decrypt(%s): %q gives no reason", suite, err)
		}
		_, err = p.Generate(ctx, ref)
		wantCode(t, "Generate("+string(suite)+")", err, provider.ENOTSUP)
	}
	edRef := mustRef(t, "ed", 1, provider.Ed25519)
	g := generate(t, p, edRef)
	_, err = p.Decrypt(ctx, edRef, g.Handle, enc, ct, nil, nil)
	wantCode(t, "Decrypt with a sign key's ref", err, provider.EPERM)
	switched := edRef
	switched.Use = provider.UseAsymmetricDecrypt
	_, err = p.Decrypt(ctx, switched, g.Handle, enc, ct, nil, nil)
	wantCode(t, "Decrypt with a sign key's handle under an asymmetric-decrypt ref", err, provider.EPERM)
	hpkeRef := mustRef(t, "hpke", 1, provider.HPKEX25519)
	for _, c := range []struct {
		what               string
		enc, ct, info, aad []byte
	}{
		{"enc", make([]byte, provider.MaxHPKEEnc+1), ct, nil, nil},
		{"ciphertext", enc, make([]byte, provider.MaxHPKECiphertext+1), nil, nil},
		{"info", enc, ct, make([]byte, provider.MaxHPKEInfo+1), nil},
		{"aad", enc, ct, nil, make([]byte, provider.MaxAAD+1)},
	} {
		_, err := p.Decrypt(ctx, hpkeRef, nil, c.enc, c.ct, c.info, c.aad)
		wantCode(t, "Decrypt with "+c.what+" over its bound", err, provider.EMSGSIZE)
	}
	_, err = p.Decrypt(ctx, hpkeRef, make(provider.Handle, provider.MaxHandle+1), enc, ct, nil, nil)
	wantCode(t, "Decrypt with a handle over its bound", err, provider.EINVAL)
}
