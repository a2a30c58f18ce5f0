package core_test

import (
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// The lifecycle table of ARCHITECTURE.md / docs/lifecycle.md, written out
// independently of the implementation's table and checked cell by cell
// through the public API, forbidden cells included. ok means success.
const ok provider.Code = 0

type state string

const (
	active    state = "active"
	revoked   state = "revoked"
	destroyed state = "destroyed"
	missing   state = "missing"
)

var wantLifecycle = map[string]map[state]provider.Code{
	"create":         {active: provider.EALREADY, revoked: provider.EALREADY, destroyed: provider.EALREADY, missing: ok},
	"rotate":         {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"revoke":         {active: ok, revoked: provider.EALREADY, destroyed: provider.EALREADY, missing: provider.ENOENT},
	"destroy":        {active: provider.EPERM, revoked: ok, destroyed: provider.EALREADY, missing: provider.ENOENT},
	"sign":           {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"seal":           {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"verify":         {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"unseal":         {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"rewrap":         {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"revoke-version": {active: ok, revoked: provider.EALREADY, destroyed: provider.EALREADY, missing: provider.ENOENT},
	"set-policy":     {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"public-key":     {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"get":            {active: ok, revoked: ok, destroyed: ok, missing: provider.ENOENT},
	"mac":            {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"verify-mac":     {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},

	"generate-data-key":                   {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"generate-data-key-without-plaintext": {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	"decrypt":                             {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: provider.ENOENT},
	// import-parameters and import make a missing key, add a version to an
	// active imported one
	"import-parameters": {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: ok},
	"import":            {active: ok, revoked: provider.EKEYREVOKED, destroyed: provider.EKEYREVOKED, missing: ok},
}

// fixture is one key brought to a state, with artefacts made while it was
// active (a signature, a sealed blob, a retired version 1).
type fixture struct {
	sign, dec, mac core.KeyID
	sig            core.Signature
	sealed         []byte
	tag            core.MACTag
	// hpke is an asymmetric-decrypt key, msg a message sent to its v2;
	// imp an imported AES key with a token got while it was active (one
	// for a missing key when it is missing).
	hpke   core.KeyID
	msg    core.HPKEMessage
	imp    core.KeyID
	impReq core.ImportRequest
}

func setup(t *testing.T, e *env, st state) fixture {
	t.Helper()
	f := fixture{sign: mustID(t, "app-a/sig/"+string(st)), dec: mustID(t, "app-a/dec/"+string(st)), mac: mustID(t, "app-a/mac/"+string(st)),
		hpke: mustID(t, "app-a/hpke/"+string(st)), imp: mustID(t, "app-a/imp/"+string(st))}
	if st == missing {
		f.impReq = e.importRequest(t, appA, f.imp, provider.AES256GCM, fixedAESKey)
		return f
	}
	if _, err := e.ks.Import(ctx, appA, f.imp, e.importRequest(t, appA, f.imp, provider.AES256GCM, fixedAESKey)); err != nil {
		t.Fatal(err)
	}
	f.impReq = e.importRequest(t, appA, f.imp, provider.AES256GCM, fixedAESKey)
	if _, err := e.ks.Create(ctx, appA, f.hpke, core.CreateOptions{Algorithm: provider.HPKEX25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ks.Rotate(ctx, appA, f.hpke); err != nil {
		t.Fatal(err)
	}
	f.msg = e.hpkeSeal(t, appA, f.hpke, 2, []byte("p"))
	for _, id := range []core.KeyID{f.sign, f.dec, f.mac} {
		a := provider.Ed25519
		switch id {
		case f.dec:
			a = provider.XChaCha20Poly1305
		case f.mac:
			a = provider.HMACSHA256
		}
		if _, err := e.ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: a}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ks.Rotate(ctx, appA, id); err != nil { // v1 retired, v2 primary
			t.Fatal(err)
		}
	}
	var err error
	if f.sig, err = e.ks.Sign(ctx, appA, f.sign, []byte("m")); err != nil {
		t.Fatal(err)
	}
	s, err := e.ks.Seal(ctx, appA, f.dec, []byte("p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.sealed = s.Data
	if f.tag, err = e.ks.MAC(ctx, appA, f.mac, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if st == active {
		return f
	}
	for _, id := range []core.KeyID{f.sign, f.dec, f.mac, f.hpke, f.imp} {
		if _, err := e.ks.Revoke(ctx, appA, id); err != nil {
			t.Fatal(err)
		}
		if st == destroyed {
			if _, err := e.ks.Destroy(ctx, appA, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func invoke(e *env, op string, f fixture) error {
	switch op {
	case "create":
		_, err := e.ks.Create(ctx, appA, f.sign, core.CreateOptions{Algorithm: provider.Ed25519})
		return err
	case "rotate":
		_, err := e.ks.Rotate(ctx, appA, f.sign)
		return err
	case "revoke":
		_, err := e.ks.Revoke(ctx, appA, f.sign)
		return err
	case "destroy":
		_, err := e.ks.Destroy(ctx, appA, f.sign)
		return err
	case "sign":
		_, err := e.ks.Sign(ctx, appA, f.sign, []byte("m"))
		return err
	case "seal":
		_, err := e.ks.Seal(ctx, appA, f.dec, []byte("p"), nil)
		return err
	case "verify":
		v, sig := f.sig.Version, f.sig.Signature
		if v == 0 {
			v, sig = 1, make([]byte, 64)
		}
		return e.ks.Verify(ctx, appA, f.sign, v, []byte("m"), sig)
	case "unseal":
		sealed := f.sealed
		if sealed == nil {
			sealed = []byte("KS\x01\x10\x00\x00\x00\x01" + string(make([]byte, 40)))
		}
		_, err := e.ks.Unseal(ctx, appA, f.dec, sealed, nil)
		return err
	case "rewrap":
		sealed := f.sealed
		if sealed == nil {
			sealed = []byte("KS\x01\x10\x00\x00\x00\x01" + string(make([]byte, 40)))
		}
		_, err := e.ks.Rewrap(ctx, appA, f.dec, sealed, nil)
		return err
	case "revoke-version":
		_, err := e.ks.RevokeVersion(ctx, appA, f.sign, 1)
		return err
	case "set-policy":
		_, err := e.ks.SetPolicy(ctx, appA, f.sign, core.Policy{MinDecryptionVersion: 1})
		return err
	case "public-key":
		_, err := e.ks.PublicKey(ctx, appA, f.sign, 1)
		return err
	case "get":
		_, err := e.ks.Get(ctx, appA, f.sign)
		return err
	case "mac":
		_, err := e.ks.MAC(ctx, appA, f.mac, []byte("m"))
		return err
	case "verify-mac":
		v, tag := f.tag.Version, f.tag.Tag
		if v == 0 {
			v, tag = 1, make([]byte, 32)
		}
		return e.ks.VerifyMAC(ctx, appA, f.mac, v, []byte("m"), tag)
	case "generate-data-key":
		_, err := e.ks.GenerateDataKey(ctx, appA, f.dec, core.DataKeySpec{}, nil)
		return err
	case "generate-data-key-without-plaintext":
		_, err := e.ks.GenerateDataKeyWithoutPlaintext(ctx, appA, f.dec, core.DataKeySpec{}, nil)
		return err
	case "decrypt":
		m := f.msg
		if m.Enc == nil {
			m = core.HPKEMessage{Enc: make([]byte, 32), Ciphertext: make([]byte, 17)}
		}
		_, err := e.ks.Decrypt(ctx, appA, f.hpke, 2, m)
		return err
	case "import-parameters":
		_, err := e.ks.ImportParameters(ctx, appA, f.imp, core.ImportOptions{Algorithm: provider.AES256GCM})
		return err
	case "import":
		_, err := e.ks.Import(ctx, appA, f.imp, f.impReq)
		return err
	}
	return provider.Errorf(provider.EINVAL, "unknown op %s", op)
}

func TestLifecycleTable(t *testing.T) {
	// Every operation of the core that names a key has a row.
	named := map[string]bool{}
	for _, op := range core.Ops() {
		if op != core.OpList && op != core.OpSweep && op != core.OpKEKStatus && op != core.OpKEKRotate {
			named[op.String()] = true
		}
	}
	for op := range named {
		if _, ok := wantLifecycle[op]; !ok {
			t.Errorf("operation %s has no row in the test table", op)
		}
	}
	for op, row := range wantLifecycle {
		for _, st := range []state{active, revoked, destroyed, missing} {
			t.Run(op+"/"+string(st), func(t *testing.T) {
				e := newEnv(t)
				f := setup(t, e, st)
				err := invoke(e, op, f)
				if got, want := codeOf(err), row[st]; got != want {
					t.Fatalf("%s on %s key: got %v (%v), want %v", op, st, provider.Code(got), err, provider.Code(want))
				}
				// A refused operation changes nothing and is audited once.
				ev := e.audit.last(t)
				if ev.Op.String() != op || ev.Result != row[st] {
					t.Fatalf("audit event %+v, want op %s result %v", ev, op, row[st])
				}
			})
		}
	}
}

// The version table: sign (with an explicit version), verify, verify-mac,
// unseal, public-key and revoke-version by the state of the version named.
func TestVersionTable(t *testing.T) {
	type vstate string
	const (
		primary  vstate = "primary"
		retired  vstate = "retired"
		vrevoked vstate = "revoked"
		vmissing vstate = "missing"
	)
	want := map[string]map[vstate]provider.Code{
		"sign":           {primary: ok, retired: ok, vrevoked: provider.EKEYREVOKED, vmissing: provider.ENOENT},
		"verify":         {primary: ok, retired: ok, vrevoked: provider.EKEYREVOKED, vmissing: provider.ENOENT},
		"verify-mac":     {primary: ok, retired: ok, vrevoked: provider.EKEYREVOKED, vmissing: provider.ENOENT},
		"unseal":         {primary: ok, retired: ok, vrevoked: provider.EKEYREVOKED, vmissing: provider.EBADMSG},
		"public-key":     {primary: ok, retired: ok, vrevoked: provider.EKEYREVOKED, vmissing: provider.ENOENT},
		"revoke-version": {primary: provider.EPERM, retired: ok, vrevoked: provider.EALREADY, vmissing: provider.ENOENT},
	}
	for op, row := range want {
		for vs, code := range row {
			t.Run(op+"/"+string(vs), func(t *testing.T) {
				e := newEnv(t)
				sid := e.create(t, appA, "app-a/s/k", provider.Ed25519)
				did := e.create(t, appA, "app-a/d/k", provider.XChaCha20Poly1305)
				mid := e.create(t, appA, "app-a/m/k", provider.HMACSHA256)
				// v1: revoked, v2: retired, v3: primary.
				sigs := map[core.Version]core.Signature{}
				sealed := map[core.Version][]byte{}
				tags := map[core.Version]core.MACTag{}
				for v := core.Version(1); v <= 3; v++ {
					if v > 1 {
						for _, id := range []core.KeyID{sid, did, mid} {
							if _, err := e.ks.Rotate(ctx, appA, id); err != nil {
								t.Fatal(err)
							}
						}
					}
					m, err := e.ks.MAC(ctx, appA, mid, []byte("m"))
					if err != nil || m.Version != v {
						t.Fatalf("mac v%d: %v %v", v, m.Version, err)
					}
					tags[v] = m
					s, err := e.ks.Sign(ctx, appA, sid, []byte("m"))
					if err != nil || s.Version != v {
						t.Fatalf("sign v%d: %v %v", v, s.Version, err)
					}
					sigs[v] = s
					b, err := e.ks.Seal(ctx, appA, did, []byte("p"), nil)
					if err != nil || b.Version != v {
						t.Fatal(err)
					}
					sealed[v] = b.Data
				}
				for _, id := range []core.KeyID{sid, did, mid} {
					if _, err := e.ks.RevokeVersion(ctx, appA, id, 1); err != nil {
						t.Fatal(err)
					}
				}
				v := map[vstate]core.Version{primary: 3, retired: 2, vrevoked: 1, vmissing: 4}[vs]
				var err error
				switch op {
				case "sign":
					var s core.Signature
					s, err = e.ks.SignWith(ctx, appA, sid, v, core.SignInput{Message: []byte("m")})
					if err == nil && (s.Version != v || e.ks.Verify(ctx, appA, sid, v, []byte("m"), s.Signature) != nil) {
						t.Fatalf("sign with version %d made version %d's signature", v, s.Version)
					}
				case "verify-mac":
					tag := tags[v].Tag
					if tag == nil {
						tag = tags[3].Tag
					}
					err = e.ks.VerifyMAC(ctx, appA, mid, v, []byte("m"), tag)
				case "verify":
					sig := sigs[v].Signature
					if sig == nil {
						sig = sigs[3].Signature
					}
					err = e.ks.Verify(ctx, appA, sid, v, []byte("m"), sig)
				case "unseal":
					b := sealed[v]
					if b == nil {
						b = append([]byte(nil), sealed[3]...)
						b[7] = 4
					}
					_, err = e.ks.Unseal(ctx, appA, did, b, nil)
				case "public-key":
					_, err = e.ks.PublicKey(ctx, appA, sid, v)
				case "revoke-version":
					_, err = e.ks.RevokeVersion(ctx, appA, sid, v)
				}
				if got := codeOf(err); got != code {
					t.Fatalf("%s of a %s version: got %v (%v), want %v", op, vs, provider.Code(got), err, provider.Code(code))
				}
			})
		}
	}
}
