package faults

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
)

// snapshot returns every file under <state>/keystore and <state>/store by
// path relative to state, with its content: what a request may change.
func snapshot(t *testing.T, state string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, top := range []string{"keystore", "store"} {
		root := filepath.Join(state, top)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(state, path)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = string(data)
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot of %s: %v", root, err)
		}
	}
	return files
}

// sameFiles fails the test unless after holds exactly the files of before
// with the same contents.
func sameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			diffs = append(diffs, p+": removed")
		case a != b:
			diffs = append(diffs, p+": changed")
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, p+": added")
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: the state directory changed:\n%s", what, strings.Join(diffs, "\n"))
	}
}

// noTempFiles fails the test if a temporary file (".tmp-…") is left
// anywhere in the state directory.
func noTempFiles(t *testing.T, state string) {
	t.Helper()
	err := filepath.WalkDir(state, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixture is what setUp made: keys in every state a write needs, and
// sealed data and a signature the reads must keep opening.
type fixture struct {
	msg     []byte
	sig     client.Signature
	tag     client.MACTag // of msg by keyMAC
	pt, aad []byte
	sealed  client.Sealed
	value   []byte
	// hpke is a message sent to keyHPKE's version 1, of pt.
	hpke client.HPKEMessage
	// importToken, importEnc and importWrapped import importMaterial
	// into keyImpNew, once: import parameters issued by setUp.
	importToken              string
	importEnc, importWrapped []byte
}

// importMaterial is the AES-256-GCM key material of the fixture's
// imports.
var importMaterial = bytes.Repeat([]byte{0x3c}, 32)

// The keys of the fixture (names of the caller's own app).
const (
	keySig   = "p/sig"   // ed25519, signed with
	keyBox   = "p/box"   // xchacha20-poly1305, sealed with (its seal budget is reserved)
	keyFresh = "p/fresh" // xchacha20-poly1305, never sealed with: its first seal writes a reservation
	keyOld   = "p/old"   // ed25519 at version 2: version 1 can be revoked
	keyGone  = "p/gone"  // ed25519, revoked: can be destroyed
	keyMAC   = "p/mac"   // hmac-sha256, MACed with
	keyHPKE  = "p/hpke"  // hpke-x25519-sha256-chacha20poly1305, a message sent to it
	keyImp   = "p/imp"   // aes-256-gcm, imported: a new version may be imported
	keyNew   = "p/new"   // not created
	// keyImpNew is not created: setUp's import parameters are for it.
	keyImpNew = "p/impnew"
)

// fixtureKeys is the number of keys setUp creates; writtenKeys the keys
// the writes create (keyNew and keyImpNew).
const (
	fixtureKeys = 8
	writtenKeys = 2
)

// setUp creates the fixture through c.
func setUp(t *testing.T, c *client.Client) fixture {
	t.Helper()
	ctx := context.Background()
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{{keySig, client.Ed25519}, {keyBox, client.XChaCha20Poly1305}, {keyFresh, client.XChaCha20Poly1305}, {keyOld, client.Ed25519}, {keyGone, client.Ed25519},
		{keyMAC, client.HMACSHA256}, {keyHPKE, client.HPKEX25519}} {
		if _, err := c.Create(ctx, k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatalf("create %s: %v", k.name, err)
		}
	}
	if _, err := c.ImportKey(ctx, keyImp, client.AES256GCM, importMaterial); err != nil {
		t.Fatalf("import %s: %v", keyImp, err)
	}
	if _, err := c.Rotate(ctx, keyOld); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, keyGone); err != nil {
		t.Fatal(err)
	}
	fx := fixture{msg: []byte("a message"), pt: []byte("a plaintext"), aad: []byte("an aad"), value: []byte("a value")}
	var err error
	if fx.sig, err = c.Sign(ctx, keySig, fx.msg); err != nil {
		t.Fatal(err)
	}
	if fx.sealed, err = c.Seal(ctx, keyBox, fx.pt, fx.aad); err != nil {
		t.Fatal(err)
	}
	if fx.tag, err = c.MAC(ctx, keyMAC, fx.msg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"v1", "v2"} {
		if err := c.PutValue(ctx, name, fx.value); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := c.PublicKey(ctx, keyHPKE, 1)
	if err != nil {
		t.Fatal(err)
	}
	fx.hpke = client.HPKEMessage{Info: []byte("an info"), AAD: fx.aad}
	if fx.hpke.Enc, fx.hpke.Ciphertext, err = client.HPKESeal(pub, fx.hpke.Info, fx.hpke.AAD, fx.pt); err != nil {
		t.Fatal(err)
	}
	p, err := c.GetImportParameters(ctx, keyImpNew, client.AES256GCM, client.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fx.importToken = p.Token
	if fx.importEnc, fx.importWrapped, err = client.WrapForImport(p, importMaterial); err != nil {
		t.Fatal(err)
	}
	return fx
}

// request is one client call of a test table.
type request struct {
	name string
	call func(ctx context.Context, c *client.Client) error
}

// writes are the state-changing requests (but destroy, which removes the
// handle files before it writes the metadata: see destroyRequest). With
// deletes false, the value delete is left out (an unlink needs no space).
func writes(deletes bool) []request {
	w := []request{
		{"create", func(ctx context.Context, c *client.Client) error {
			_, err := c.Create(ctx, keyNew, client.CreateOptions{Algorithm: client.Ed25519})
			return err
		}},
		{"rotate", func(ctx context.Context, c *client.Client) error { _, err := c.Rotate(ctx, keySig); return err }},
		{"revoke", func(ctx context.Context, c *client.Client) error { _, err := c.Revoke(ctx, keyBox); return err }},
		{"revoke-version", func(ctx context.Context, c *client.Client) error {
			_, err := c.RevokeVersion(ctx, keyOld, 1)
			return err
		}},
		{"set-policy", func(ctx context.Context, c *client.Client) error {
			_, err := c.SetPolicy(ctx, keySig, client.Policy{MinDecryptionVersion: 1})
			return err
		}},
		{"seal-budget reservation", func(ctx context.Context, c *client.Client) error {
			_, err := c.Seal(ctx, keyFresh, []byte("x"), nil)
			return err
		}},
		{"seal-batch reservation", func(ctx context.Context, c *client.Client) error {
			res, err := c.SealBatch(ctx, []client.SealItem{{Key: keyFresh, Plaintext: []byte("x")}})
			if err != nil {
				return err
			}
			return res[0].Err
		}},
		{"data-key reservation", func(ctx context.Context, c *client.Client) error {
			_, err := c.GenerateDataKey(ctx, keyFresh, client.DataKeySpec{}, nil)
			return err
		}},
		{"import a new key", func(ctx context.Context, c *client.Client) error {
			_, err := c.ImportKey(ctx, keyImpNew, client.AES256GCM, importMaterial)
			return err
		}},
		{"import a new version", func(ctx context.Context, c *client.Client) error {
			_, err := c.ImportKey(ctx, keyImp, client.AES256GCM, importMaterial)
			return err
		}},
		{"rotate to generated", func(ctx context.Context, c *client.Client) error {
			_, err := c.RotateWith(ctx, keyImp, client.RotateOptions{Generate: true})
			return err
		}},
		{"put new value", func(ctx context.Context, c *client.Client) error { return c.PutValue(ctx, "v3", []byte("x")) }},
		{"replace value", func(ctx context.Context, c *client.Client) error { return c.PutValue(ctx, "v1", []byte("x")) }},
	}
	if deletes {
		w = append(w, request{"delete value", func(ctx context.Context, c *client.Client) error { return c.DeleteValue(ctx, "v2") }})
	}
	return w
}

var destroyRequest = request{"destroy", func(ctx context.Context, c *client.Client) error {
	_, err := c.Destroy(ctx, keyGone)
	return err
}}

// writesFail runs every request of ws and wants EIO whose message holds
// cause (the system error, e.g. "no space left on device").
func writesFail(t *testing.T, c *client.Client, ws []request, cause string) {
	t.Helper()
	for _, w := range ws {
		err := w.call(context.Background(), c)
		t.Logf("%s: %v", w.name, err)
		if !errors.Is(err, client.ErrIO) || !strings.Contains(err.Error(), cause) {
			t.Errorf("%s: got %v, want EIO saying %q", w.name, err, cause)
		}
	}
}

// readsWork checks that every read is served, and that the fixture's
// sealed data and signature still open and verify.
func readsWork(t *testing.T, c *client.Client, fx fixture) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err := c.Sign(ctx, keySig, fx.msg)
	check("sign", err)
	check("verify", c.Verify(ctx, keySig, fx.sig.Version, fx.msg, fx.sig.Signature))
	u, err := c.Unseal(ctx, keyBox, fx.sealed.Data, fx.aad)
	check("unseal", err)
	if err == nil && !bytes.Equal(u.Plaintext, fx.pt) {
		t.Errorf("unseal: plaintext %q, want %q", u.Plaintext, fx.pt)
	}
	s, err := c.Seal(ctx, keyBox, fx.pt, nil) // within the reserved budget: no write
	check("seal (budget reserved)", err)
	if err == nil {
		_, err = c.Unseal(ctx, keyBox, s.Data, nil)
		check("unseal of a new seal", err)
	}
	_, err = c.Rewrap(ctx, keyBox, fx.sealed.Data, fx.aad)
	check("rewrap", err)
	if info, err := c.Get(ctx, keySig); err != nil || info.CurrentVersion != 1 || info.State != client.KeyActive {
		t.Errorf("get %s: %+v, %v; want version 1, active", keySig, info, err)
	}
	page, err := c.List(ctx, client.ListOptions{})
	check("list", err)
	if err == nil && (len(page.Keys) != fixtureKeys || len(page.Unreadable) != 0) {
		t.Errorf("list: %d keys, unreadable %v; want the %d keys of the fixture", len(page.Keys), page.Unreadable, fixtureKeys)
	}
	_, err = c.PublicKey(ctx, keySig, 1)
	check("public key", err)
	v, err := c.GetValue(ctx, "v1")
	check("get value", err)
	if err == nil && !bytes.Equal(v, fx.value) {
		t.Errorf("get value: %q, want %q", v, fx.value)
	}
	_, err = c.ListValues(ctx, 0, "")
	check("list values", err)
	sr, err := c.SignBatch(ctx, []client.SignItem{{Key: keySig, Message: fx.msg}, {Key: keyOld, Message: fx.msg}})
	check("sign batch", err)
	for i, r := range sr {
		check("sign batch item "+string(rune('0'+i)), r.Err)
	}
	ur, err := c.UnsealBatch(ctx, []client.UnsealItem{{Key: keyBox, Sealed: fx.sealed.Data, AAD: fx.aad}})
	check("unseal batch", err)
	for _, r := range ur {
		check("unseal batch item", r.Err)
	}
	br, err := c.SealBatch(ctx, []client.SealItem{{Key: keyBox, Plaintext: fx.pt}})
	check("seal batch (budget reserved)", err)
	for _, r := range br {
		check("seal batch item", r.Err)
	}
	m, err := c.MAC(ctx, keyMAC, fx.msg)
	check("mac", err)
	if err == nil && !bytes.Equal(m.Tag, fx.tag.Tag) {
		t.Errorf("mac: tag %x, want the fixture's %x", m.Tag, fx.tag.Tag)
	}
	check("verify-mac", c.VerifyMAC(ctx, keyMAC, fx.tag.Version, fx.msg, fx.tag.Tag))
	mr, err := c.MACBatch(ctx, []client.MACItem{{Key: keyMAC, Message: fx.msg}})
	check("mac batch", err)
	for _, r := range mr {
		check("mac batch item", r.Err)
	}
	vr, err := c.VerifyMACBatch(ctx, []client.VerifyMACItem{{Key: keyMAC, Version: fx.tag.Version, Message: fx.msg, Tag: fx.tag.Tag}})
	check("verify-mac batch", err)
	for _, err := range vr {
		check("verify-mac batch item", err)
	}
	s2, err := c.SignWith(ctx, keySig, fx.sig.Version, client.SignInput{Message: fx.msg})
	check("sign with a named version", err)
	if err == nil && s2.Version != fx.sig.Version {
		t.Errorf("sign with version %d: signed with %d", fx.sig.Version, s2.Version)
	}
	d, err := c.Decrypt(ctx, keyHPKE, 1, fx.hpke)
	check("hpke decrypt", err)
	if err == nil && !bytes.Equal(d.Plaintext, fx.pt) {
		t.Errorf("hpke decrypt: plaintext %q, want %q", d.Plaintext, fx.pt)
	}
	dk, err := c.GenerateDataKey(ctx, keyBox, client.DataKeySpec{}, fx.aad) // within the reserved budget: no write
	check("data key (budget reserved)", err)
	if err == nil {
		u, err := c.Unseal(ctx, keyBox, dk.Sealed, fx.aad)
		check("unseal of a data key", err)
		if err == nil && !bytes.Equal(u.Plaintext, dk.Plaintext) {
			t.Error("unseal of a data key: not the data key")
		}
	}
	_, err = c.GenerateDataKeyWithoutPlaintext(ctx, keyBox, client.DataKeySpec{}, nil)
	check("data key without plaintext (budget reserved)", err)
	// Import parameters live in memory: no write.
	_, err = c.GetImportParameters(ctx, keyImp, client.AES256GCM, client.ImportOptions{})
	check("import parameters", err)
	if info, err := c.Get(ctx, keyImp); err != nil || info.CurrentVersion != 1 || info.Origin != client.OriginImported {
		t.Errorf("get %s: %+v, %v; want version 1, imported", keyImp, info, err)
	}
	if _, err := c.Get(ctx, keyImpNew); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get %s: %v, want ErrNotFound (the refused import made it)", keyImpNew, err)
	}
}

// logLines is an audit log's content cut into its lines (each with its
// newline), with the edits the tamper tests make of it.
type logLines [][]byte

// splitLog splits a log's content into its lines; it fails t unless
// there are at least min.
func splitLog(t *testing.T, data []byte, min int) logLines {
	t.Helper()
	ls := bytes.SplitAfter(data, []byte("\n"))
	ls = ls[:len(ls)-1] // after the last newline
	if len(ls) < min {
		t.Fatalf("the log has %d records, want at least %d", len(ls), min)
	}
	return ls
}

// join concatenates lines.
func join(ls ...[]byte) []byte { return bytes.Join(ls, nil) }

// record is line i without its newline.
func (l logLines) record(i int) []byte { return bytes.TrimSuffix(l[i], []byte("\n")) }

// without is the log with line i deleted.
func (l logLines) without(i int) []byte {
	return join(join(l[:i]...), join(l[i+1:]...))
}

// swapped is the log with lines i and i+1 swapped.
func (l logLines) swapped(i int) []byte {
	s := append(logLines{}, l...)
	s[i], s[i+1] = s[i+1], s[i]
	return join(s...)
}

// flipped is the log with one bit of byte off of line i flipped.
func (l logLines) flipped(i, off int) []byte {
	out := join(l...)
	out[len(join(l[:i]...))+off] ^= 1
	return out
}
