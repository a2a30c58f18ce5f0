package core_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/testseed"
)

// TestSignDigest: a digest signature of an ECDSA, RSA or Ed25519ph key is
// the message's signature (the same bytes, the provider being
// deterministic) and verifies both ways; the core refuses another hash, a
// wrong length, a message and a digest together, and digests for
// algorithms that sign whole messages, before any provider work.
func TestSignDigest(t *testing.T) {
	e := newEnv(t)
	big := bytes.Repeat([]byte{'r'}, provider.MaxSignMessage+1)
	for _, c := range []struct {
		a    core.Algorithm
		hash crypto.Hash
	}{
		{provider.ECDSAP256, crypto.SHA256}, {provider.ECDSAP384, crypto.SHA384},
		{provider.RSA2048PSS, crypto.SHA256}, {provider.RSA2048PKCS1, crypto.SHA256},
		{provider.Ed25519ph, crypto.SHA512},
	} {
		t.Run(string(c.a), func(t *testing.T) {
			id := e.create(t, appA, "app-a/d/"+string(c.a), c.a)
			msg := []byte("release.tar contents")
			h := c.hash.New()
			h.Write(msg)
			d := h.Sum(nil)
			whole, err := e.ks.Sign(ctx, appA, id, msg)
			if err != nil {
				t.Fatal(err)
			}
			ds, err := e.ks.SignWith(ctx, appA, id, 0, core.SignInput{Digest: d, Hash: c.hash})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ds.Signature, whole.Signature) || ds.Version != 1 {
				t.Fatalf("digest signature differs from the message's")
			}
			if err := e.ks.Verify(ctx, appA, id, 1, msg, ds.Signature); err != nil {
				t.Fatalf("message verify of a digest signature: %v", err)
			}
			if err := e.ks.VerifyWith(ctx, appA, id, 1, core.SignInput{Digest: d, Hash: c.hash}, whole.Signature); err != nil {
				t.Fatalf("digest verify of a message signature: %v", err)
			}
			bad := append([]byte(nil), d...)
			bad[0] ^= 1
			if err := e.ks.VerifyWith(ctx, appA, id, 1, core.SignInput{Digest: bad, Hash: c.hash}, whole.Signature); codeOf(err) != provider.EBADMSG {
				t.Fatalf("verify of another digest: %v, want EBADMSG", err)
			}
			// A digest lets a message of any size be signed; the message
			// itself stays bounded.
			if _, err := e.ks.Sign(ctx, appA, id, big); codeOf(err) != provider.EMSGSIZE || !strings.Contains(err.Error(), "digest") {
				t.Fatalf("oversize message: %v, want EMSGSIZE suggesting a digest", err)
			}
			for _, other := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
				if other == c.hash {
					continue
				}
				oh := other.New()
				oh.Write(msg)
				if _, err := e.ks.SignWith(ctx, appA, id, 0, core.SignInput{Digest: oh.Sum(nil), Hash: other}); codeOf(err) != provider.EINVAL {
					t.Fatalf("a %v digest: %v, want EINVAL", other, err)
				}
			}
			for _, in := range []core.SignInput{
				{Digest: d[1:], Hash: c.hash},
				{Digest: append(d, 0), Hash: c.hash},
				{Digest: d},
				{Hash: c.hash},
				{Digest: d, Hash: c.hash, Message: msg},
				{Digest: d, Hash: crypto.MD5},
			} {
				if _, err := e.ks.SignWith(ctx, appA, id, 0, in); codeOf(err) != provider.EINVAL {
					t.Fatalf("bad input (digest %d bytes, hash %v, message %d bytes): %v, want EINVAL", len(in.Digest), in.Hash, len(in.Message), err)
				}
			}
		})
	}
	for _, a := range []core.Algorithm{provider.Ed25519, provider.Ed448, provider.MLDSA44} {
		id := e.create(t, appA, "app-a/pure/"+string(a), a)
		d := sha256.Sum256([]byte("m"))
		if _, err := e.ks.SignWith(ctx, appA, id, 0, core.SignInput{Digest: d[:], Hash: crypto.SHA256}); codeOf(err) != provider.EPERM {
			t.Fatalf("%s digest signing: %v, want EPERM", a, err)
		}
	}
}

// TestECDSASignatureIsDER: the ECDSA signature the core returns is the
// ASN.1 DER form crypto/ecdsa verifies, under the SEC 1 public key.
func TestECDSASignatureIsDER(t *testing.T) {
	e := newEnv(t)
	id := e.create(t, appA, "app-a/s/p256", provider.ECDSAP256)
	s, err := e.ks.Sign(ctx, appA, id, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := e.ks.PublicKey(ctx, appA, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pk.Key)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("m"))
	if !ecdsa.VerifyASN1(pub, d[:], s.Signature) {
		t.Fatal("crypto/ecdsa does not verify the signature")
	}
}

// TestSignNamedVersion: a signer bound to one version keeps signing with
// it after a rotation, and is refused once that version is revoked.
func TestSignNamedVersion(t *testing.T) {
	e := newEnv(t)
	id := e.create(t, appA, "app-a/tls/server", provider.ECDSAP256)
	if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
		t.Fatal(err)
	}
	s, err := e.ks.SignWith(ctx, appA, id, 1, core.SignInput{Message: []byte("handshake")})
	if err != nil || s.Version != 1 {
		t.Fatalf("sign with retired version 1: %v %v", s.Version, err)
	}
	if ev := e.audit.last(t); ev.Op != core.OpSign || ev.Version != 1 {
		t.Fatalf("audit %+v, want sign of version 1", ev)
	}
	if err := e.ks.Verify(ctx, appA, id, 1, []byte("handshake"), s.Signature); err != nil {
		t.Fatal(err)
	}
	// Below the minimum decryption version, a named version signs no more
	// (verify would refuse what it made).
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{MinDecryptionVersion: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.SignWith(ctx, appA, id, 1, core.SignInput{Message: []byte("handshake")}); codeOf(err) != provider.EPERM {
		t.Fatalf("sign with version 1 below the minimum: %v, want EPERM", err)
	}
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.RevokeVersion(ctx, appA, id, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.SignWith(ctx, appA, id, 1, core.SignInput{Message: []byte("handshake")}); codeOf(err) != provider.EKEYREVOKED {
		t.Fatalf("sign with revoked version 1: %v, want EKEYREVOKED", err)
	}
	if _, err := e.ks.SignWith(ctx, appA, id, 3, core.SignInput{Message: []byte("x")}); codeOf(err) != provider.ENOENT {
		t.Fatalf("sign with a version the key never had: %v, want ENOENT", err)
	}
	// A named version is never rotated away under the caller: a key past
	// its rotation period rotates on an unnamed sign only.
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: core.MinRotationPeriod}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * core.MinRotationPeriod)
	if s, err := e.ks.SignWith(ctx, appA, id, 2, core.SignInput{Message: []byte("x")}); err != nil || s.Version != 2 {
		t.Fatalf("sign with primary version 2 past the rotation period: %v %v", s.Version, err)
	}
	if m, err := e.ks.Get(ctx, appA, id); err != nil || m.Current != 2 {
		t.Fatalf("a named-version sign rotated the key: current %v, %v", m.Current, err)
	}
	if s, err := e.ks.Sign(ctx, appA, id, []byte("x")); err != nil || s.Version != 3 {
		t.Fatalf("an unnamed sign past the rotation period: version %v, %v; want 3", s.Version, err)
	}
}

// TestMAC: tags are HMAC of the testseed key material (recomputed here
// with crypto/hmac), verify only under the version that made them, in
// constant time (alg.Equal), and never for another message, tag length
// or key.
func TestMAC(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		a    core.Algorithm
		size int
	}{
		{a: provider.HMACSHA256, size: 32},
		{a: provider.HMACSHA384, size: 48},
		{a: provider.HMACSHA512, size: 64},
	} {
		t.Run(string(c.a), func(t *testing.T) {
			id := e.create(t, appA, "app-a/webhook/"+string(c.a), c.a)
			tag, err := e.ks.MAC(ctx, appA, id, []byte("payload"))
			if err != nil || len(tag.Tag) != c.size || tag.Version != 1 {
				t.Fatalf("mac: %d bytes, v%d, %v", len(tag.Tag), tag.Version, err)
			}
			known, err := testseed.InsecureKnownSecrets(testSeed, provider.KeyRef{ID: id, Version: 1, Algorithm: c.a, Use: provider.UseMAC, Provider: testseed.Name})
			if err != nil || len(known) == 0 {
				t.Fatal(err)
			}
			key := known[0]
			var want []byte
			switch c.a {
			case provider.HMACSHA256:
				m := hmac.New(sha256.New, key)
				m.Write([]byte("payload"))
				want = m.Sum(nil)
			case provider.HMACSHA384:
				m := hmac.New(sha512.New384, key)
				m.Write([]byte("payload"))
				want = m.Sum(nil)
			default:
				m := hmac.New(sha512.New, key)
				m.Write([]byte("payload"))
				want = m.Sum(nil)
			}
			if !bytes.Equal(tag.Tag, want) {
				t.Fatal("tag is not HMAC of the key material")
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 1, []byte("payload"), tag.Tag); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []struct {
				msg, tag []byte
			}{
				{[]byte("payloaD"), tag.Tag},
				{[]byte("payload"), tag.Tag[:len(tag.Tag)-1]},
				{[]byte("payload"), append(append([]byte(nil), tag.Tag...), 0)},
				{[]byte("payload"), nil},
			} {
				want := provider.EBADMSG
				if len(bad.tag) > provider.MaxMAC {
					want = provider.EMSGSIZE
				}
				if err := e.ks.VerifyMAC(ctx, appA, id, 1, bad.msg, bad.tag); codeOf(err) != want {
					t.Fatalf("verify-mac of a wrong tag (%d bytes): %v, want %v", len(bad.tag), err, want)
				}
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 0, []byte("payload"), tag.Tag); codeOf(err) != provider.EINVAL {
				t.Fatalf("verify-mac without a version: %v, want EINVAL", err)
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 1, []byte("payload"), make([]byte, provider.MaxMAC+1)); codeOf(err) != provider.EMSGSIZE {
				t.Fatalf("oversize tag: %v, want EMSGSIZE", err)
			}
			if _, err := e.ks.MAC(ctx, appA, id, make([]byte, provider.MaxMACMessage+1)); codeOf(err) != provider.EMSGSIZE {
				t.Fatalf("oversize message: %v, want EMSGSIZE", err)
			}
			// After a rotation, version 1's tags still verify under version
			// 1, never under version 2, and new tags come from version 2.
			if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
				t.Fatal(err)
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 1, []byte("payload"), tag.Tag); err != nil {
				t.Fatalf("a retired version's tag: %v", err)
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 2, []byte("payload"), tag.Tag); codeOf(err) != provider.EBADMSG {
				t.Fatalf("version 1's tag under version 2: %v, want EBADMSG", err)
			}
			t2, err := e.ks.MAC(ctx, appA, id, []byte("payload"))
			if err != nil || t2.Version != 2 || bytes.Equal(t2.Tag, tag.Tag) {
				t.Fatalf("mac after rotate: v%d, same tag %v, %v", t2.Version, bytes.Equal(t2.Tag, tag.Tag), err)
			}
			// Policy: a minimum decryption version refuses older tags.
			if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{MinDecryptionVersion: 2}); err != nil {
				t.Fatal(err)
			}
			if err := e.ks.VerifyMAC(ctx, appA, id, 1, []byte("payload"), tag.Tag); codeOf(err) != provider.EPERM {
				t.Fatalf("verify-mac below the minimum version: %v, want EPERM", err)
			}
		})
	}
	// Uses do not mix.
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	mid := mustID(t, "app-a/webhook/hmac-sha256")
	if _, err := e.ks.MAC(ctx, appA, sid, []byte("m")); codeOf(err) != provider.EPERM {
		t.Fatalf("mac with a sign key: %v, want EPERM", err)
	}
	if _, err := e.ks.Sign(ctx, appA, mid, []byte("m")); codeOf(err) != provider.EPERM {
		t.Fatalf("sign with a mac key: %v, want EPERM", err)
	}
	if _, err := e.ks.Seal(ctx, appA, mid, []byte("m"), nil); codeOf(err) != provider.EPERM {
		t.Fatalf("seal with a mac key: %v, want EPERM", err)
	}
	if _, err := e.ks.PublicKey(ctx, appA, mid, 0); codeOf(err) != provider.EPERM {
		t.Fatalf("public key of a mac key: %v, want EPERM", err)
	}
	// Another app can neither make nor check tags with the key.
	if _, err := e.ks.MAC(ctx, appB, mid, []byte("m")); codeOf(err) != provider.EPERM {
		t.Fatalf("another app's mac: %v, want EPERM", err)
	}
}

// TestDefaultAlgorithmPerUse: a key created without an algorithm gets the
// provider's first algorithm of its use, and a provider without any
// algorithm of a use refuses it with ENOTSUP, naming the use.
func TestDefaultAlgorithmPerUse(t *testing.T) {
	e := newEnv(t)
	for use, want := range map[core.Use]core.Algorithm{
		0: provider.XChaCha20Poly1305, provider.UseDecrypt: provider.XChaCha20Poly1305,
		provider.UseSign: provider.Ed25519, provider.UseMAC: provider.HMACSHA256,
	} {
		name := "none"
		if use != 0 {
			name = use.String()
		}
		id := mustID(t, "app-a/default/"+name)
		m, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Use: use})
		if err != nil || m.Algorithm != want {
			t.Fatalf("use %v: %s, %v; want %s", use, m.Algorithm, err, want)
		}
	}
	// A provider offering only ECDSA and AES-GCM (as a token might).
	limited := &limitedProvider{Provider: e.p, algs: []core.Algorithm{provider.ECDSAP256, provider.AES256GCM}}
	e2 := newEnvWith(t, storage.NewMemory(), limited)
	for name, c := range map[string]struct {
		use  core.Use
		want core.Algorithm
	}{"sign": {provider.UseSign, provider.ECDSAP256}, "none": {0, provider.AES256GCM}} {
		use, want := c.use, c.want
		m, err := e2.ks.Create(ctx, appA, mustID(t, "app-a/limited/"+name), core.CreateOptions{Use: use})
		if err != nil || m.Algorithm != want {
			t.Fatalf("limited provider, use %v: %s, %v; want %s", use, m.Algorithm, err, want)
		}
	}
	if _, err := e2.ks.Create(ctx, appA, mustID(t, "app-a/limited/mac"), core.CreateOptions{Use: provider.UseMAC}); codeOf(err) != provider.ENOTSUP || !strings.Contains(err.Error(), "mac") {
		t.Fatalf("limited provider, mac: %v, want ENOTSUP naming the use", err)
	}
	// The refusal names what the provider offers for that use, never an
	// empty algorithm or the whole registry.
	if _, err := e2.ks.Create(ctx, appA, mustID(t, "app-a/limited/x"), core.CreateOptions{Algorithm: provider.Ed25519}); codeOf(err) != provider.ENOTSUP ||
		!strings.Contains(err.Error(), "does not offer ed25519; its sign algorithms: ecdsa-p256-sha256") {
		t.Fatalf("limited provider, ed25519: %v, want ENOTSUP listing ecdsa-p256-sha256", err)
	}
}

// limitedProvider announces only algs.
type limitedProvider struct {
	provider.Provider
	algs []core.Algorithm
}

func (l *limitedProvider) Info(ctx context.Context) (provider.Info, error) {
	i, err := l.Provider.Info(ctx)
	i.Algorithms = l.algs
	return i, err
}

// TestMalformedPublicKeyRefused: a provider that returns an ECDSA public
// key off the curve (or an RSA one of the wrong size) gets EIO at create,
// and nothing is stored.
func TestMalformedPublicKeyRefused(t *testing.T) {
	for _, a := range []core.Algorithm{provider.ECDSAP256, provider.RSA2048PSS} {
		p, err := testseed.NewInsecure(testSeed)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnvWith(t, storage.NewMemory(), &badPublicKey{Provider: p})
		_, err = e.ks.Create(ctx, appA, mustID(t, "app-a/s/bad"), core.CreateOptions{Algorithm: a})
		if codeOf(err) != provider.EIO {
			t.Fatalf("%s: %v, want EIO", a, err)
		}
		if _, err := e.ks.Get(ctx, appA, mustID(t, "app-a/s/bad")); codeOf(err) != provider.ENOENT {
			t.Fatalf("%s: key stored after a bad public key: %v", a, err)
		}
	}
}

// badPublicKey flips the last byte of every public key.
type badPublicKey struct{ provider.Provider }

func (b *badPublicKey) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	g, err := b.Provider.Generate(ctx, ref)
	if len(g.PublicKey) > 0 {
		g.PublicKey = append([]byte(nil), g.PublicKey...)
		g.PublicKey[len(g.PublicKey)-1] ^= 0xff
		if ref.Algorithm == provider.RSA2048PSS {
			g.PublicKey = g.PublicKey[:len(g.PublicKey)-20]
		}
	}
	return g, err
}

// TestSlowGenerateBlocksNoSigner: while one key's generation is in the
// provider (an RSA-4096 key takes up to seconds), signing with another
// key, and signing with the same app, proceed.
func TestSlowGenerateBlocksNoSigner(t *testing.T) {
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedGenerate{Provider: p, entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnvWith(t, storage.NewMemory(), g)
	sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
	g.gate.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := e.ks.Create(ctx, appA, mustID(t, "app-a/s/rsa"), core.CreateOptions{Algorithm: provider.RSA4096PSS}); err != nil {
			t.Errorf("create: %v", err)
		}
	})
	<-g.entered
	// Generation is in the provider: every other call still runs (bounded,
	// so that a regression fails instead of hanging).
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := e.ks.Sign(ctx, appA, sid, []byte("m")); err != nil {
		t.Fatalf("sign during a slow generate: %v", err)
	}
	if _, err := e.ks.Rotate(ctx, appA, sid); err != nil {
		t.Fatalf("rotate another key during a slow generate: %v", err)
	}
	if _, err := e.ks.List(ctx, appA, core.ListOptions{}); err != nil {
		t.Fatalf("list during a slow generate: %v", err)
	}
	close(g.release)
	wg.Wait()
}

// TestAutoRotationBlocksNoSigner: while a sign's automatic rotation of an
// RSA key generates the new version in the provider, other signs of the
// same key do not wait for it: they sign with the overdue primary.
func TestAutoRotationBlocksNoSigner(t *testing.T) {
	p, err := testseed.NewInsecure(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedGenerate{Provider: p, entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnvWith(t, storage.NewMemory(), g)
	id := e.create(t, appA, "app-a/s/rsa", provider.RSA2048PSS)
	if _, err := e.ks.SetPolicy(ctx, appA, id, core.Policy{RotationPeriod: core.MinRotationPeriod}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * core.MinRotationPeriod)
	g.gate.Store(true)
	var wg sync.WaitGroup
	var first core.Signature
	var ferr error
	wg.Go(func() { first, ferr = e.ks.Sign(ctx, appA, id, []byte("m")) })
	<-g.entered
	bounded, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := e.ks.Sign(bounded, appA, id, []byte("n"))
	if err != nil || s.Version != 1 {
		t.Fatalf("sign during the automatic rotation: version %v, %v; want the overdue version 1", s.Version, err)
	}
	close(g.release)
	wg.Wait()
	if ferr != nil || first.Version != 2 {
		t.Fatalf("the rotating sign: version %v, %v; want 2", first.Version, ferr)
	}
}

// gatedGenerate holds Generate in the provider, once gate is set, until
// release is closed.
type gatedGenerate struct {
	provider.Provider
	gate             atomic.Bool
	entered, release chan struct{}
}

func (g *gatedGenerate) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	if g.gate.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Provider.Generate(ctx, ref)
}

// gatedSign holds Sign in the provider, once gate is set, until release
// is closed: a call queued in the fair scheduler looks the same.
type gatedSign struct {
	provider.Provider
	gate             atomic.Bool
	entered, release chan struct{}
}

func (g *gatedSign) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	if g.gate.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Provider.Sign(ctx, ref, h, msg)
}

// TestNoSignatureAfterRevocation: a sign that passed its checks and then
// waited in the provider (queued behind other work) while its version,
// or its key, was revoked returns EKEYREVOKED, not a signature made after
// the revocation was acknowledged (attacker review of issue 11).
func TestNoSignatureAfterRevocation(t *testing.T) {
	for _, whole := range []bool{false, true} {
		p, err := testseed.NewInsecure(testSeed)
		if err != nil {
			t.Fatal(err)
		}
		g := &gatedSign{Provider: p, entered: make(chan struct{}), release: make(chan struct{})}
		e := newEnvWith(t, storage.NewMemory(), g)
		id := e.create(t, appA, "app-a/s/k", provider.ECDSAP256)
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		g.gate.Store(true)
		var wg sync.WaitGroup
		var serr error
		wg.Go(func() { _, serr = e.ks.SignWith(ctx, appA, id, 1, core.SignInput{Message: []byte("m")}) })
		<-g.entered
		if whole {
			_, err = e.ks.Revoke(ctx, appA, id)
		} else {
			_, err = e.ks.RevokeVersion(ctx, appA, id, 1)
		}
		if err != nil {
			t.Fatal(err)
		}
		close(g.release)
		wg.Wait()
		if codeOf(serr) != provider.EKEYREVOKED {
			t.Fatalf("revoke (whole key %v) while the sign was in the provider: %v, want EKEYREVOKED", whole, serr)
		}
		if ev := e.audit.last(t); ev.Op != core.OpSign || ev.Result != provider.EKEYREVOKED {
			t.Fatalf("audit %+v, want the sign recorded as EKEYREVOKED", ev)
		}
	}
}
