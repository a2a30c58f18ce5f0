package pkcs11

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// TestKeystoreImport imports through the core over the provider: an
// ECDSA P-256 key (the default, hybrid post-quantum wrapping suite) and
// then a second version of it, and an AES-256-GCM key. The keys are
// origin imported (key and versions); signatures verify under the
// imported keys' own public keys, each version its own; a seal and unseal
// through the core round trip (TestImportSecrets checks the token's AES
// key against crypto/cipher). An Ed25519 import is refused ENOTSUP at
// Import (the token's probe).
func TestKeystoreImport(t *testing.T) {
	tk := newToken(t, "keystore-import")
	p := tk.open(t)
	ks, err := core.Open(t.Context(), core.Config{
		Storage: storage.NewMemory(), Provider: p,
		Clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), Audit: nopAudit{},
	})
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	ctx := t.Context()
	caller := core.Caller{App: "test"}
	importVia := func(id provider.KeyID, a provider.Algorithm, material []byte) (core.Metadata, error) {
		t.Helper()
		ip, err := ks.ImportParameters(ctx, caller, id, core.ImportOptions{Algorithm: a})
		if err != nil {
			t.Fatalf("ImportParameters(%s, %s): %v", id, a, err)
		}
		if ip.WrappingAlgorithm != provider.HPKEMLKEM768X25519 {
			t.Errorf("wrapping algorithm %s, want the default %s", ip.WrappingAlgorithm, provider.HPKEMLKEM768X25519)
		}
		ref := provider.KeyRef{ID: id, Algorithm: a}
		if !bytes.Equal(ip.Info, provider.ImportInfo(ref.ID, ref.Algorithm)) {
			t.Errorf("Info = %q, want ImportInfo", ip.Info)
		}
		enc, wrapped := sealTo(t, ip.WrappingAlgorithm, ip.PublicKey, ref, material)
		return ks.Import(ctx, caller, id, core.ImportRequest{Token: ip.Token, Enc: enc, Wrapped: wrapped})
	}

	id, err := provider.NewKeyID("test", "import", "ec")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("signed through the keystore")
	for v := provider.Version(1); v <= 2; v++ {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		m, err := importVia(id, provider.ECDSAP256, pkcs8(t, ec))
		if err != nil {
			t.Fatalf("Import of version %d: %v", v, err)
		}
		if m.Origin != core.OriginImported || m.Current != v || len(m.Versions) != int(v) || m.Versions[v-1].Origin != core.OriginImported {
			t.Errorf("Import: origin %v, current version %d of %d; want imported, %d", m.Origin, m.Current, len(m.Versions), v)
		}
		sig, err := ks.Sign(ctx, caller, id, msg)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		pub, err := ec.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if sig.Version != v {
			t.Errorf("signed with version %d, want %d", sig.Version, v)
		}
		verifyIndependently(t, provider.ECDSAP256, pub, msg, sig.Signature)
	}

	aesID, err := provider.NewKeyID("test", "import", "aes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importVia(aesID, provider.AES256GCM, randomKey(t, 32)); err != nil {
		t.Fatalf("Import of an AES key: %v", err)
	}
	sealed, err := ks.Seal(ctx, caller, aesID, msg, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if u, err := ks.Unseal(ctx, caller, aesID, sealed.Data, []byte("aad")); err != nil || !bytes.Equal(u.Plaintext, msg) {
		t.Errorf("Unseal = %q, %v", u.Plaintext, err)
	}

	edID, err := provider.NewKeyID("test", "import", "ed")
	if err != nil {
		t.Fatal(err)
	}
	_, err = importVia(edID, provider.Ed25519, pkcs8(t, ed25519Key(t)))
	wantCode(t, "Import of an Ed25519 key", err, provider.ENOTSUP)
}
