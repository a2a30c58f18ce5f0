package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// set-policy changes only the flags given, and the daemon enforces it:
// after rotate + rewrap + --min-decryption-version 2, data sealed under
// version 1 no longer unseals while the rewrapped copy does.
func TestSetPolicyAndRewrap(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	dir := t.TempDir()
	ok(t, s, nil, "create", "db/box", "--alg", "xchacha20-poly1305")
	old := ok(t, s, []byte("secret"), "seal", "db/box", "--aad", "row-7").stdout
	ok(t, s, nil, "rotate", "db/box")
	oldFile := filepath.Join(dir, "old")
	if err := os.WriteFile(oldFile, old, 0o600); err != nil {
		t.Fatal(err)
	}
	newer := ok(t, s, nil, "rewrap", "db/box", "--aad", "row-7", "--in", oldFile).stdout
	if bytes.Equal(newer, old) {
		t.Fatal("rewrap returned the same sealed bytes")
	}
	m := decode(t, ok(t, s, newer, "--json", "unseal", "db/box", "--aad", "row-7"))
	if m["version"] != 2.0 {
		t.Errorf("rewrapped data unsealed by version %v, want 2", m["version"])
	}
	fails(t, s, old, 74, "rewrap", "db/box", "--aad", "other") // wrong AAD: EBADMSG

	fails(t, s, nil, exitUsage, "set-policy", "db/box") // nothing to set
	fails(t, s, nil, exitUsage, "set-policy", "db/box", "--rotation-period", "-1s")
	r := ok(t, s, nil, "set-policy", "db/box", "--min-decryption-version", "2")
	if !strings.Contains(string(r.stdout), "min decryption version 2, rotation period off") {
		t.Errorf("set-policy printed %q", r.stdout)
	}
	m = decode(t, ok(t, s, nil, "--json", "set-policy", "db/box", "--rotation-period", "720h"))
	pol := m["policy"].(map[string]any)
	if pol["min_decryption_version"] != 2.0 || pol["rotation_period_seconds"] != 720*3600.0 {
		t.Errorf("set-policy --rotation-period lost the other setting: %v", pol)
	}
	fails(t, s, old, 1, "unseal", "db/box", "--aad", "row-7") // version 1 refused by policy: EPERM
	if got := ok(t, s, newer, "unseal", "db/box", "--aad", "row-7").stdout; string(got) != "secret" {
		t.Errorf("unseal of the rewrapped data = %q", got)
	}
	fails(t, s, nil, 2, "set-policy", "db/none", "--min-decryption-version", "1") // ENOENT
}

// store put/get/list/delete round-trip values byte for byte; a missing
// value is ENOENT with a hint; values are bounded before sending.
func TestStoreCommands(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	value := []byte{0, 1, 2, 'x', 0xff, '\n'}
	ok(t, s, value, "store", "put", "blob")
	ok(t, s, []byte("two"), "store", "put", "a-text")
	if got := ok(t, s, nil, "store", "get", "blob").stdout; !bytes.Equal(got, value) {
		t.Errorf("store get = %q, want %q", got, value)
	}
	if got := string(ok(t, s, nil, "store", "list").stdout); got != "a-text\nblob\n" {
		t.Errorf("store list = %q", got)
	}
	m := decode(t, ok(t, s, nil, "--json", "store", "list"))
	if names := m["names"].([]any); len(names) != 2 {
		t.Errorf("store list --json = %v", m)
	}
	ok(t, s, nil, "store", "delete", "blob")
	r := fails(t, s, nil, 2, "store", "get", "blob")
	if !strings.Contains(r.stderr, "hint: no value named blob") {
		t.Errorf("store get of a deleted value: stderr %q", r.stderr)
	}
	fails(t, s, nil, 2, "store", "delete", "blob")
	fails(t, s, make([]byte, 64<<10+1), 90, "store", "put", "big") // EMSGSIZE before sending
	if n := srv.Calls("/keystore.v1.Store/Put"); n != 2 {
		t.Errorf("the daemon saw %d puts, want 2", n)
	}
	fails(t, s, nil, exitUsage, "store", "get")
	fails(t, s, nil, 22, "store", "put", "Bad Name") // EINVAL from the daemon
}

// anchors list shows the operator's anchors; anchors verify accepts the
// anchor's signature and refuses another's (EBADMSG) and an unknown
// anchor (ENOENT).
func TestAnchorsCommands(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	srv := startDaemon(t, clienttest.Options{Anchors: map[string]ed25519.PublicKey{"release": priv.Public().(ed25519.PublicKey)}})
	s := srv.Socket
	out := string(ok(t, s, nil, "anchors", "list").stdout)
	if !strings.Contains(out, "release") || !strings.Contains(out, "ed25519") || !strings.Contains(out, "sha256:") {
		t.Errorf("anchors list = %q", out)
	}
	dir := t.TempDir()
	msg := []byte("release 1.0")
	sigFile := filepath.Join(dir, "sig")
	if err := os.WriteFile(sigFile, ed25519.Sign(priv, msg), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, s, msg, "anchors", "verify", "release", "--sig", sigFile)
	fails(t, s, []byte("release 1.1"), 74, "anchors", "verify", "release", "--sig", sigFile)
	if err := os.WriteFile(sigFile, ed25519.Sign(other, msg), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, s, msg, 74, "anchors", "verify", "release", "--sig", sigFile)
	fails(t, s, msg, 2, "anchors", "verify", "nope", "--sig", sigFile)
	fails(t, s, msg, exitUsage, "anchors", "verify", "release")
}

// batch sign/seal/unseal: one result line per input line, in order, over
// several batch calls; bad lines and failed items are answered in place
// and the exit status is the first failure's errno.
func TestBatchCommands(t *testing.T) {
	srv := startDaemon(t, clienttest.Options{})
	s := srv.Socket
	ok(t, s, nil, "create", "p/sig", "--alg", "ed25519")
	ok(t, s, nil, "create", "p/box", "--alg", "xchacha20-poly1305")
	var in bytes.Buffer
	const n = 1500 // more than one batch call
	for i := range n {
		fmt.Fprintf(&in, `{"key":"p/sig","message":"%s"}`+"\n", base64.StdEncoding.EncodeToString([]byte(strconv.Itoa(i))))
	}
	r := ok(t, s, in.Bytes(), "batch", "sign")
	lines := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("batch sign wrote %d lines for %d", len(lines), n)
	}
	if calls := srv.Calls("/keystore.v1.Keys/SignBatch"); calls != 2 {
		t.Errorf("%d items took %d batch calls, want 2", n, calls)
	}
	for i, l := range lines {
		var res struct {
			Line      int    `json:"line"`
			Version   uint32 `json:"version"`
			Signature []byte `json:"signature"`
		}
		if err := json.Unmarshal([]byte(l), &res); err != nil || res.Line != i+1 || res.Version != 1 || len(res.Signature) != ed25519.SignatureSize {
			t.Fatalf("line %d: %s (%v)", i+1, l, err)
		}
		if i == 7 { // the daemon signed this line's message
			ok(t, s, []byte(strconv.Itoa(i)), "verify", "p/sig@1", "--sig", writeTemp(t, res.Signature))
		}
	}

	// seal then unseal through batch; a bad line, a wrong AAD and an
	// unknown key fail in place.
	in.Reset()
	for _, pt := range []string{"a", "bb", ""} {
		fmt.Fprintf(&in, `{"key":"p/box","plaintext":"%s","aad":"%s"}`+"\n", base64.StdEncoding.EncodeToString([]byte(pt)), base64.StdEncoding.EncodeToString([]byte("ctx")))
	}
	sealed := ok(t, s, in.Bytes(), "batch", "seal").stdout
	in.Reset()
	for i, l := range strings.Split(strings.TrimSuffix(string(sealed), "\n"), "\n") {
		var res struct {
			Sealed []byte `json:"sealed"`
		}
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatal(err)
		}
		aad := "ctx"
		if i == 1 {
			aad = "wrong"
		}
		fmt.Fprintf(&in, `{"key":"p/box","sealed":"%s","aad":"%s"}`+"\n", base64.StdEncoding.EncodeToString(res.Sealed), base64.StdEncoding.EncodeToString([]byte(aad)))
	}
	in.WriteString("\n   \n") // blank lines are skipped but still counted
	in.WriteString("not json\n")
	in.WriteString(`{"key":"p/none","sealed":"AA=="}` + "\n")
	r = fails(t, s, in.Bytes(), 74, "batch", "unseal") // the first failure: EBADMSG (wrong AAD)
	out := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	if len(out) != 5 {
		t.Fatalf("batch unseal wrote %d lines: %q", len(out), r.stdout)
	}
	for i, want := range []string{`"plaintext":"YQ=="`, `"reason":"EBADMSG"`, `"plaintext":""`, `"reason":"EINVAL"`, `"reason":"EBADMSG"`} {
		line := i + 1
		if i >= 3 {
			line += 2 // after the two blank lines
		}
		var got struct {
			Line int `json:"line"`
		}
		if err := json.Unmarshal([]byte(out[i]), &got); err != nil || !strings.Contains(out[i], want) || got.Line != line {
			t.Errorf("unseal result %d = %s, want %s on line %d", i+1, out[i], want, line)
		}
	}
	if !strings.Contains(out[3], "line 6 is not a JSON object") {
		t.Errorf("the bad line's message does not name its line: %s", out[3])
	}
	fails(t, s, []byte(`{"key":"p/sig","message":"AA==","aad":"AA=="}`+"\n"), 22, "batch", "sign") // sign has no aad
	r = fails(t, s, []byte(`{"key":"p/none","message":"AA=="}`+"\n"+`{"key":"p/sig","message":"AA=="}`+"\n"), 2, "batch", "sign")
	if out := string(r.stdout); !strings.Contains(out, `"reason":"ENOENT"`) || !strings.Contains(out, `"line":2,"signature"`) {
		t.Errorf("batch sign with an unknown key: %s", out)
	}
}

// writeTemp writes b to a new file and returns its path.
func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
