package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
)

// TestNewKeyAttributes asks the token directly that the objects of ECDSA,
// RSA (made as session objects and copied, and made on the token when the
// token cannot copy), Ed448 and HMAC keys have the promised attributes:
// token objects, unmodifiable, private and secret keys sensitive since
// birth and never extractable, each usable for its one operation only,
// and no session object left behind.
func TestNewKeyAttributes(t *testing.T) {
	tk := newToken(t, "new-attributes")
	p := tk.open(t)
	d := tk.openDirect(t)
	yes, no := []byte{1}, []byte{0}
	common := map[uint][]byte{p11.CKA_TOKEN: yes, p11.CKA_MODIFIABLE: no}
	secret := map[uint][]byte{
		p11.CKA_PRIVATE: yes, p11.CKA_SENSITIVE: yes, p11.CKA_ALWAYS_SENSITIVE: yes,
		p11.CKA_EXTRACTABLE: no, p11.CKA_NEVER_EXTRACTABLE: yes, p11.CKA_DERIVE: no,
	}
	signer := map[uint][]byte{p11.CKA_SIGN: yes, p11.CKA_SIGN_RECOVER: no, p11.CKA_DECRYPT: no, p11.CKA_UNWRAP: no}
	verifier := map[uint][]byte{p11.CKA_PRIVATE: no, p11.CKA_VERIFY: yes, p11.CKA_ENCRYPT: no, p11.CKA_WRAP: no, p11.CKA_DERIVE: no}
	merge := func(ms ...map[uint][]byte) map[uint][]byte {
		out := map[uint][]byte{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	cases := []struct {
		a         provider.Algorithm
		noStaging bool
		priv, pub map[uint][]byte
	}{
		{provider.ECDSAP256, false, map[uint][]byte{p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_EC)}, map[uint][]byte{p11.CKA_EC_PARAMS: p256Params}},
		{provider.ECDSAP384, false, map[uint][]byte{p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_EC)}, map[uint][]byte{p11.CKA_EC_PARAMS: p384Params}},
		{provider.Ed448, false, map[uint][]byte{p11.CKA_KEY_TYPE: ulongBytes(ckkECEdwards)}, map[uint][]byte{p11.CKA_EC_PARAMS: ed448Params}},
		{provider.RSA2048PSS, false, map[uint][]byte{p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_RSA), p11.CKA_LOCAL: yes}, map[uint][]byte{p11.CKA_MODULUS_BITS: ulongBytes(2048), p11.CKA_PUBLIC_EXPONENT: rsaExponent}},
		{provider.RSA2048PKCS1, true, map[uint][]byte{p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_RSA), p11.CKA_LOCAL: yes}, map[uint][]byte{p11.CKA_MODULUS_BITS: ulongBytes(2048), p11.CKA_PUBLIC_EXPONENT: rsaExponent}},
		{provider.HMACSHA384, false, map[uint][]byte{
			p11.CKA_KEY_TYPE: ulongBytes(p11.CKK_GENERIC_SECRET), p11.CKA_VALUE_LEN: ulongBytes(48),
			p11.CKA_SIGN: yes, p11.CKA_VERIFY: no, p11.CKA_ENCRYPT: no, p11.CKA_DECRYPT: no, p11.CKA_WRAP: no, p11.CKA_UNWRAP: no,
		}, nil},
	}
	tp := p.(*tokenProvider)
	for _, c := range cases {
		tp.noStaging.Store(c.noStaging)
		ref := mustRef(t, "attrs-"+string(c.a), 1, c.a)
		generate(t, p, ref)
		sc, _ := schemeOf(c.a)
		objs := d.objects(t, ref, sc.class())
		if len(objs) != 1 {
			t.Fatalf("%s: %d objects of class %d, want 1", ref, len(objs), sc.class())
		}
		label := map[uint][]byte{p11.CKA_LABEL: []byte(ref.String())}
		want := merge(common, secret, c.priv, label)
		if sc.pair() {
			want = merge(common, secret, signer, c.priv, label)
		}
		checkAttrs(t, d, ref, objs[0], want)
		_, err := d.ctx.GetAttributeValue(d.sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
		if sc.fam == famRSA {
			_, err = d.ctx.GetAttributeValue(d.sh, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_PRIVATE_EXPONENT, nil)})
		}
		if !rvIs(err, p11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("%s: reading the private value: got %v, want CKR_ATTRIBUTE_SENSITIVE", ref, err)
		}
		wantObjects := 1
		if sc.pair() {
			wantObjects = 2
			pubs := d.objects(t, ref, p11.CKO_PUBLIC_KEY)
			if len(pubs) != 1 {
				t.Fatalf("%s: %d public keys, want 1", ref, len(pubs))
			}
			checkAttrs(t, d, ref, pubs[0], merge(common, verifier, c.pub, label))
		}
		if n := len(allObjects(t, d, ref)); n != wantObjects {
			t.Errorf("%s: %d objects (token and session) with its CKA_ID, want %d: a staged session object was left", ref, n, wantObjects)
		}
	}
}

// allObjects returns the token and session objects with ref's CKA_ID
// (session objects of this process are visible to every session of it).
func allObjects(t *testing.T, d *direct, ref provider.KeyRef) []p11.ObjectHandle {
	t.Helper()
	id, err := idOf(ref)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := findObjects(d.ctx, d.sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id[:])}, 16)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestGenerateReplacesNew: Generate again for the same ref replaces an
// ECDSA, RSA (staged and copied) or HMAC key: the objects are not
// duplicated, the public key changes, the old key's signatures no longer
// come out.
func TestGenerateReplacesNew(t *testing.T) {
	tk := newToken(t, "replace-new")
	p := tk.open(t)
	d := tk.openDirect(t)
	for _, a := range []provider.Algorithm{provider.ECDSAP256, provider.RSA2048PSS, provider.HMACSHA256} {
		ref := mustRef(t, "again-"+string(a), 1, a)
		g1 := generate(t, p, ref)
		var tag1 []byte
		if ref.Use == provider.UseMAC {
			var err error
			if tag1, err = p.MAC(t.Context(), ref, g1.Handle, []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
		before := len(allObjects(t, d, ref))
		g2 := generate(t, p, ref)
		if after := len(allObjects(t, d, ref)); after != before {
			t.Errorf("%s: %d objects after the second Generate, want %d", ref, after, before)
		}
		switch ref.Use {
		case provider.UseSign:
			if bytes.Equal(g1.PublicKey, g2.PublicKey) {
				t.Errorf("%s: second Generate kept the key", ref)
			}
			sig, err := p.Sign(t.Context(), ref, g2.Handle, []byte("m"))
			if err != nil {
				t.Fatal(err)
			}
			verifyIndependently(t, a, g2.PublicKey, []byte("m"), sig)
		case provider.UseMAC:
			tag2, err := p.MAC(t.Context(), ref, g2.Handle, []byte("m"))
			if err != nil || bytes.Equal(tag1, tag2) {
				t.Errorf("%s: MAC after replacement = %x, %v; want another key's tag", ref, tag2, err)
			}
		}
	}
}

// TestRefusesCopy: the errors that mean a token will not copy a session
// object to the token (the staging fallback) and the ones that do not.
func TestRefusesCopy(t *testing.T) {
	for _, rv := range []uint{p11.CKR_FUNCTION_NOT_SUPPORTED, p11.CKR_ACTION_PROHIBITED, p11.CKR_ATTRIBUTE_READ_ONLY,
		p11.CKR_TEMPLATE_INCONSISTENT, p11.CKR_ATTRIBUTE_TYPE_INVALID, p11.CKR_ATTRIBUTE_VALUE_INVALID} {
		if !refusesCopy(call("C_CopyObject", p11.Error(rv))) {
			t.Errorf("%s: not a refusal to copy", ckrName(rv))
		}
	}
	for _, err := range []error{nil, errors.New("other"), p11.Error(p11.CKR_DEVICE_MEMORY), p11.Error(p11.CKR_SESSION_HANDLE_INVALID)} {
		if refusesCopy(err) {
			t.Errorf("%v: taken for a refusal to copy", err)
		}
	}
}

// TestRSAGenerationBlocksNothing: while an RSA-4096 key generates, on a
// provider whose pool has one session for calls, another key signs, an
// HMAC key computes a tag, and an Ed25519 key is generated and destroyed:
// all of them complete between the moment the generation is about to call
// C_GenerateKeyPair and the moment that call returns (the generation's
// hooks wait for them), so the generation holds no session, lock or turn
// they need. Were it to hold one, the waiting hook would never see them
// finish and the test would fail when their context expires. The same
// holds for signing when the token cannot copy (RSA then generates on the
// token, in its turn). No assertion is on time.
func TestRSAGenerationBlocksNothing(t *testing.T) {
	tk := newToken(t, "rsa-busy")
	p := tk.open(t, func(c *Config) { c.PoolSize = 1 })
	tp := p.(*tokenProvider)
	ecRef, macRef := mustRef(t, "ec", 1, provider.ECDSAP256), mustRef(t, "mac", 1, provider.HMACSHA256)
	ec, mac := generate(t, p, ecRef), generate(t, p, macRef)

	run := func(t *testing.T, rsaAlg provider.Algorithm, others bool) {
		rsaRef := mustRef(t, "rsa-"+string(rsaAlg), 1, rsaAlg)
		results := make(chan error, 1)
		// The other calls' own deadline only turns a deadlock into a
		// failure; it is not a bound on their speed.
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		calls := 0
		tp.testHooks.beforeKeygen = func(r provider.KeyRef) {
			if r != rsaRef {
				return
			}
			calls++
			go func() { results <- otherCalls(ctx, p, ecRef, ec, macRef, mac, others) }()
		}
		tp.testHooks.afterKeygen = func(r provider.KeyRef) {
			if r != rsaRef {
				return
			}
			if err := <-results; err != nil {
				t.Errorf("a call during the %s generation: %v", rsaAlg, err)
			}
		}
		defer func() { tp.testHooks.beforeKeygen, tp.testHooks.afterKeygen = nil, nil }()
		g := generate(t, p, rsaRef)
		if calls == 0 {
			t.Fatal("the generation never called its hook")
		}
		sig, err := p.Sign(t.Context(), rsaRef, g.Handle, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		verifyIndependently(t, rsaAlg, g.PublicKey, []byte("m"), sig)
	}
	t.Run("staged", func(t *testing.T) { run(t, provider.RSA4096PSS, true) })
	t.Run("on the token", func(t *testing.T) {
		tp.noStaging.Store(true)
		defer tp.noStaging.Store(false)
		run(t, provider.RSA2048PKCS1, false)
	})
}

// otherCalls signs with ec, computes a tag with mac and, when keys is
// set, generates and destroys an Ed25519 key.
func otherCalls(ctx context.Context, p provider.Provider, ecRef provider.KeyRef, ec provider.Generated, macRef provider.KeyRef, mac provider.Generated, keys bool) error {
	if _, err := p.Sign(ctx, ecRef, ec.Handle, []byte("during")); err != nil {
		return err
	}
	if _, err := p.MAC(ctx, macRef, mac.Handle, []byte("during")); err != nil {
		return err
	}
	if !keys {
		return nil
	}
	id, err := provider.NewKeyID("test", "pkcs11", "during")
	if err != nil {
		return err
	}
	ref := provider.KeyRef{ID: id, Version: 1, Algorithm: provider.Ed25519, Use: provider.UseSign, Provider: DefaultName}
	g, err := p.Generate(ctx, ref)
	if err != nil {
		return err
	}
	return p.Destroy(ctx, ref, g.Handle)
}

// TestDefaultAlgorithms: a key created through the core with no algorithm
// gets the first of core.DefaultAlgorithms its use the token offers:
// ed25519, aes-256-gcm and hmac-sha256 on SoftHSM2; with Config.Algorithms
// leaving those out, ecdsa-p256-sha256 and hmac-sha512. Each works: a
// signature verifies, a tag verifies, a sealed value unseals.
func TestDefaultAlgorithms(t *testing.T) {
	tk := newToken(t, "defaults")
	caller := core.Caller{App: "test"}
	cases := []struct {
		name string
		edit func(*Config)
		want map[provider.Use]provider.Algorithm
	}{
		{"all", nil, map[provider.Use]provider.Algorithm{
			0: provider.AES256GCM, provider.UseDecrypt: provider.AES256GCM, provider.UseSign: provider.Ed25519, provider.UseMAC: provider.HMACSHA256,
		}},
		{"limited", func(c *Config) {
			c.Algorithms = []provider.Algorithm{provider.HMACSHA512, provider.ECDSAP384, provider.ECDSAP256, provider.AES256GCM}
		}, map[provider.Use]provider.Algorithm{
			provider.UseDecrypt: provider.AES256GCM, provider.UseSign: provider.ECDSAP256, provider.UseMAC: provider.HMACSHA512,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var edit []func(*Config)
			if c.edit != nil {
				edit = append(edit, c.edit)
			}
			p := tk.open(t, edit...)
			ks, err := core.Open(t.Context(), core.Config{
				Storage: storage.NewMemory(), Provider: p,
				Clock: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), Audit: nopAudit{},
			})
			if err != nil {
				t.Fatalf("core.Open: %v", err)
			}
			for use, want := range c.want {
				id, err := provider.NewKeyID("test", "defaults", c.name+"-"+strconv.Itoa(int(use)))
				if err != nil {
					t.Fatal(err)
				}
				m, err := ks.Create(t.Context(), caller, id, core.CreateOptions{Use: use})
				if err != nil {
					t.Fatalf("Create with use %s and no algorithm: %v", use, err)
				}
				if m.Algorithm != want {
					t.Errorf("use %s: algorithm %s, want %s", use, m.Algorithm, want)
				}
				msg := []byte("default " + use.String())
				switch m.Use {
				case provider.UseSign:
					sig, err := ks.Sign(t.Context(), caller, id, msg)
					if err != nil {
						t.Fatal(err)
					}
					if err := ks.Verify(t.Context(), caller, id, sig.Version, msg, sig.Signature); err != nil {
						t.Errorf("Verify: %v", err)
					}
				case provider.UseMAC:
					tag, err := ks.MAC(t.Context(), caller, id, msg)
					if err != nil {
						t.Fatal(err)
					}
					if err := ks.VerifyMAC(t.Context(), caller, id, tag.Version, msg, tag.Tag); err != nil {
						t.Errorf("VerifyMAC: %v", err)
					}
					tag.Tag[0] ^= 1
					err = ks.VerifyMAC(t.Context(), caller, id, tag.Version, msg, tag.Tag)
					wantCode(t, "VerifyMAC of a changed tag", err, provider.EBADMSG)
				case provider.UseDecrypt:
					sealed, err := ks.Seal(t.Context(), caller, id, msg, nil)
					if err != nil {
						t.Fatal(err)
					}
					u, err := ks.Unseal(t.Context(), caller, id, sealed.Data, nil)
					if err != nil || !bytes.Equal(u.Plaintext, msg) {
						t.Errorf("Unseal = %q, %v", u.Plaintext, err)
					}
				}
			}
		})
	}
}

// nopAudit is an audit sink that keeps nothing.
type nopAudit struct{}

func (nopAudit) Ready(context.Context) error              { return nil }
func (nopAudit) Commit(context.Context, core.Event) error { return nil }
func (nopAudit) Record(context.Context, core.Event) error { return nil }
func (nopAudit) Note(context.Context, core.Event) error   { return nil }

// TestCommitRefusedCopy: when the token refuses to copy a staged key
// (here SoftHSM2 refusing to change CKA_TOKEN of an unmodifiable session
// object, CKR_ATTRIBUTE_READ_ONLY), commit reports errNoCopy, destroys the
// staged objects, leaves no token object and sets noStaging; the next RSA
// Generate then makes the key on the token and works.
func TestCommitRefusedCopy(t *testing.T) {
	tk := newToken(t, "refused-copy")
	p := tk.open(t)
	tp := p.(*tokenProvider)
	d := tk.openDirect(t)
	ref := mustRef(t, "rsa", 1, provider.RSA2048PSS)
	id, err := idOf(ref)
	if err != nil {
		t.Fatal(err)
	}
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_TOKEN, false), p11.NewAttribute(p11.CKA_ID, id[:]), p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_VERIFY, true), p11.NewAttribute(p11.CKA_MODULUS_BITS, 2048), p11.NewAttribute(p11.CKA_PUBLIC_EXPONENT, rsaExponent),
	}
	privT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_TOKEN, false), p11.NewAttribute(p11.CKA_ID, id[:]), p11.NewAttribute(p11.CKA_MODIFIABLE, false),
		p11.NewAttribute(p11.CKA_PRIVATE, true), p11.NewAttribute(p11.CKA_SENSITIVE, true), p11.NewAttribute(p11.CKA_SIGN, true),
	}
	pubObj, privObj, err := d.ctx.GenerateKeyPair(d.sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.commit(t.Context(), d.sh, id, madeKey{obj: privObj, pubObj: pubObj})
	if !errors.Is(err, errNoCopy) || !rvIs(err, p11.CKR_ATTRIBUTE_READ_ONLY) {
		t.Fatalf("commit of an uncopyable key: %v; want errNoCopy with CKR_ATTRIBUTE_READ_ONLY", err)
	}
	if !tp.noStaging.Load() {
		t.Error("noStaging not set after the token refused the copy")
	}
	if n := len(allObjects(t, d, ref)); n != 0 {
		t.Errorf("%d objects with the key's CKA_ID after the refused commit, want 0", n)
	}
	g := generate(t, p, ref)
	sig, err := p.Sign(t.Context(), ref, g.Handle, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	verifyIndependently(t, ref.Algorithm, g.PublicKey, []byte("m"), sig)
	if n := len(d.objects(t, ref, anyClass)); n != 2 {
		t.Errorf("%d token objects after Generate, want 2", n)
	}
}
