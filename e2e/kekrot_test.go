package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/testbin"
)

// TestKEKRotateRealDaemon: keystorectl kek rotate on a running daemon
// (built-in software provider, KEK file <state>/kek) rewraps its keys
// under a new KEK: the KEK file's content changes, nothing is left
// pending, the keys sign and unseal, also after a restart; the old KEK
// file put back is refused at start (the MANIFEST records the new KEK),
// and the restored new one starts again.
func TestKEKRotateRealDaemon(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state")
	d := daemontest.Start(t, daemontest.Options{State: state})
	c := dial(t, d)
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{{"kek/sign", client.Ed25519}, {"kek/pq", client.MLDSA44}, {"kek/box", client.XChaCha20Poly1305}} {
		if _, err := c.Create(ctx, k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Rotate(ctx, "kek/box"); err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(ctx, "kek/box", []byte("before the rotation"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kekPath := filepath.Join(state, "kek")
	oldKEK, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	var before struct{ Current string }
	if err := json.Unmarshal(ctlOK(t, d, nil, "--json", "kek", "status").stdout, &before); err != nil || len(before.Current) != 16 {
		t.Fatalf("kek status: %+v, %v", before, err)
	}

	r := ctlOK(t, d, nil, "kek", "rotate")
	// The test's 3 keys and the daemon's own audit checkpoint key.
	if want := "rotated KEK " + before.Current + " -> "; !strings.HasPrefix(string(r.stdout), want) || !strings.Contains(string(r.stdout), "4 keys, 5 handles rewrapped") {
		t.Fatalf("kek rotate printed %q, want %q... 4 keys, 5 handles rewrapped", r.stdout, want)
	}
	newKEK, err := os.ReadFile(kekPath)
	if err != nil || bytes.Equal(newKEK, oldKEK) || len(newKEK) != 32 {
		t.Fatalf("KEK file after the rotation: %d bytes, changed %t (%v)", len(newKEK), !bytes.Equal(newKEK, oldKEK), err)
	}
	if _, err := os.Lstat(kekPath + ".next"); !os.IsNotExist(err) {
		t.Fatalf("kek.next left after the rotation: %v", err)
	}
	use := func(c *client.Client) {
		t.Helper()
		for _, k := range []string{"kek/sign", "kek/pq"} {
			if _, err := c.Sign(ctx, k, []byte("m")); err != nil {
				t.Fatalf("sign with %s: %v", k, err)
			}
		}
		pt, err := c.Unseal(ctx, "kek/box", sealed.Data, nil)
		if err != nil || string(pt.Plaintext) != "before the rotation" {
			t.Fatalf("unseal of data sealed before the rotation: %v", err)
		}
	}
	use(c)
	d.Stop()

	d = daemontest.Start(t, daemontest.Options{State: state})
	use(dial(t, d))
	var after struct{ Current, Pending string }
	if err := json.Unmarshal(ctlOK(t, d, nil, "--json", "kek", "status").stdout, &after); err != nil || after.Current == before.Current || after.Pending != "" {
		t.Fatalf("kek status after a restart: %+v, %v", after, err)
	}
	d.Stop()

	// The old KEK no longer opens the state.
	if err := os.WriteFile(kekPath, oldKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	res := daemontest.Run(t, daemontest.Options{State: state})
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "wrapped under KEK "+after.Current) {
		t.Fatalf("start with the old KEK: exit %d, stderr:\n%s", res.ExitCode, res.Stderr)
	}
	if err := os.WriteFile(kekPath, newKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	d = daemontest.Start(t, daemontest.Options{State: state})
	use(dial(t, d))
}

// TestKEKRotateRealDaemonPlugin: the same through the real software
// plugin binary (keystore-plugin-software over its own KEK file), with a
// rotation that fails midway. Four keys are made; one's handle (inline in
// its meta.json, re-checksummed so the file itself is whole) is damaged
// while the daemon is stopped, so the rotation stops before its
// commit (EIO) with the others rewrapped under the pending KEK. The
// plugin process is then killed (the daemon's client restarts it, holding
// both KEKs) and the daemon restarted, both with the rotation pending:
// every intact key signs. With the handle file repaired, a rerun of
// keystorectl kek rotate completes; after a restart every key signs, a
// signature made before the rotation verifies, data sealed before
// unseals, and the plugin's KEK file holds the new KEK alone. Neither
// KEK's bytes, in any common encoding, appear in keystorectl's output, the
// daemons' logs (which hold the plugin's), or any file of the state
// directory (the audit log among them).
func TestKEKRotateRealDaemonPlugin(t *testing.T) {
	ctx := context.Background()
	bin := testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-software")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dir := t.TempDir()
	state, kekPath := filepath.Join(dir, "state"), filepath.Join(dir, "plugin-kek")
	opts := daemontest.Options{Dir: dir, State: state, Args: []string{"--provider-plugin", bin,
		"--provider-sha256", hex.EncodeToString(sum[:]), "--provider-arg", "--kek-file=" + kekPath}}
	var sinks []string // keystorectl output and daemon logs
	d := daemontest.Start(t, opts)
	c := dial(t, d)
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{{"kek/sign", client.Ed25519}, {"kek/pq", client.MLDSA44}, {"kek/box", client.XChaCha20Poly1305}, {"kek/broken", client.Ed25519}} {
		if _, err := c.Create(ctx, k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Rotate(ctx, "kek/box"); err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(ctx, "kek/box", []byte("before the rotation"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := c.Sign(ctx, "kek/sign", []byte("signed before"))
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.KEKStatus(ctx)
	if err != nil || !before.Rotatable || before.Current == "" {
		t.Fatalf("kek status through the plugin: %+v, %v; want a rotatable KEK", before, err)
	}
	oldKEK, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	sinks = append(sinks, d.Logs())

	// Damage kek/broken's handle (inline in its key file; the file is
	// re-checksummed, so it loads): the rotation cannot rewrap it.
	handles, err := filepath.Glob(filepath.Join(state, "keystore", "*", "kek", "broken~meta.json"))
	if err != nil || len(handles) != 1 {
		t.Fatalf("key file of kek/broken: %v, %v", handles, err)
	}
	good, err := os.ReadFile(handles[0])
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(state, handles[0])
	if err != nil {
		t.Fatal(err)
	}
	bad := damageInlineHandle(t, good, filepath.ToSlash(rel))
	if err := os.WriteFile(handles[0], bad, 0o600); err != nil {
		t.Fatal(err)
	}
	d = daemontest.Start(t, opts)
	c = dial(t, d)
	f := ctlFails(t, d, nil, 5, "EIO", "kek", "rotate")
	sinks = append(sinks, string(f.stdout), f.stderr)
	pending, err := c.KEKStatus(ctx)
	if err != nil || pending.Pending == "" || !slices.Equal(pending.ProviderKEKs, []string{pending.Pending, before.Current}) {
		t.Fatalf("kek status after the failed rotation: %+v, %v; want %s pending, the plugin holding both", pending, err, before.Current)
	}
	use := func(c *client.Client, what string) {
		t.Helper()
		for _, k := range []string{"kek/sign", "kek/pq"} {
			var err error
			for range 3 { // the first calls after a kill may find the connection lost
				if _, err = c.Sign(ctx, k, []byte("m")); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s: sign with %s: %v", what, k, err)
			}
		}
		pt, err := c.Unseal(ctx, "kek/box", sealed.Data, nil)
		if err != nil || string(pt.Plaintext) != "before the rotation" {
			t.Fatalf("%s: unseal of data sealed before the rotation: %v", what, err)
		}
		if err := c.Verify(ctx, "kek/sign", sig.Version, []byte("signed before"), sig.Signature); err != nil {
			t.Fatalf("%s: verify a signature made before the rotation: %v", what, err)
		}
	}
	use(c, "with the rotation pending")

	// Kill the plugin with the rotation pending: the daemon's client
	// restarts it, and it holds both KEKs.
	plug := pluginOf(t, d.Pid())
	if err := syscall.Kill(plug, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	use(c, "with the rotation pending, after the plugin was killed")
	if again := pluginOf(t, d.Pid()); again == plug {
		t.Fatalf("plugin process %d still the daemon's child after SIGKILL", plug)
	}
	if st, err := c.KEKStatus(ctx); err != nil || st.Pending != pending.Pending || !slices.Equal(st.ProviderKEKs, pending.ProviderKEKs) {
		t.Fatalf("kek status after the plugin restarted: %+v, %v; want %+v", st, err, pending)
	}
	// And the daemon, with the rotation pending.
	d.Stop()
	sinks = append(sinks, d.Logs())
	d = daemontest.Start(t, opts)
	c = dial(t, d)
	use(c, "with the rotation pending, after a daemon restart")

	if err := os.WriteFile(handles[0], good, 0o600); err != nil {
		t.Fatal(err)
	}
	r := ctlOK(t, d, nil, "kek", "rotate")
	if want := "rotated KEK " + before.Current + " -> " + pending.Pending + ": 5 keys, 1 handles rewrapped, 5 already under the new KEK"; !strings.HasPrefix(string(r.stdout), want) {
		t.Fatalf("rerun of kek rotate printed %q, want %q", r.stdout, want)
	}
	sinks = append(sinks, string(r.stdout), r.stderr, string(ctlOK(t, d, nil, "--json", "kek", "status").stdout))
	d.Stop()
	sinks = append(sinks, d.Logs())

	d = daemontest.Start(t, opts)
	c = dial(t, d)
	use(c, "after the rotation and a restart")
	if _, err := c.Sign(ctx, "kek/broken", []byte("m")); err != nil {
		t.Fatalf("sign with the repaired key: %v", err)
	}
	after, err := c.KEKStatus(ctx)
	if err != nil || after.Current != pending.Pending || after.Pending != "" || !slices.Equal(after.ProviderKEKs, []string{after.Current}) {
		t.Fatalf("kek status after the rotation: %+v, %v; want %s alone", after, err, pending.Pending)
	}
	newKEK, err := os.ReadFile(kekPath)
	if err != nil || bytes.Equal(newKEK, oldKEK) {
		t.Fatalf("plugin KEK file after the rotation: changed %t (%v)", !bytes.Equal(newKEK, oldKEK), err)
	}
	if _, err := os.Lstat(kekPath + ".next"); !os.IsNotExist(err) {
		t.Fatalf("plugin-kek.next left after the rotation: %v", err)
	}
	d.Stop()
	sinks = append(sinks, d.Logs())
	err = filepath.WalkDir(state, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		sinks = append(sinks, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kek := range []struct {
		name string
		b    []byte
	}{{"old KEK", oldKEK}, {"new KEK", newKEK}} {
		for _, form := range kekForms(kek.b) {
			for i, s := range sinks {
				if strings.Contains(s, form) {
					t.Errorf("the %s (as %q) is in sink %d", kek.name, form, i)
				}
			}
		}
	}
}

// kekForms returns b raw, in hex (both cases) and in base64 (standard
// and URL alphabets, padded or not).
func kekForms(b []byte) []string {
	return []string{string(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)}
}

// pluginOf returns the pid of the one child process of the daemon pid
// (its provider plugin).
func pluginOf(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	want := "\nPPid:\t" + strconv.Itoa(pid) + "\n"
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err == nil && strings.Contains(string(b), want) && !strings.Contains(string(b), "\nState:\tZ") {
			kids = append(kids, n)
		}
	}
	if len(kids) != 1 {
		t.Fatalf("daemon %d has children %v, want exactly one (the plugin)", pid, kids)
	}
	return kids[0]
}

// damageInlineHandle returns the key file's data (at rel in the state)
// with the last byte of version 1's inline handle flipped and the
// checksum recomputed as docs/storage.md says: a whole file whose handle
// the provider cannot unwrap.
func damageInlineHandle(t *testing.T, data []byte, rel string) []byte {
	t.Helper()
	s := string(data)
	i, j := strings.Index(s, `"body":`), strings.LastIndex(s, `,"sha256":"`)
	h := strings.Index(s, `"handle":"`)
	if i < 0 || j < i || h < i || h > j {
		t.Fatalf("%s holds no inline handle: %q", rel, s)
	}
	h += len(`"handle":"`)
	end := h + strings.IndexByte(s[h:], '"')
	raw, err := base64.StdEncoding.DecodeString(s[h:end])
	if err != nil || len(raw) == 0 {
		t.Fatalf("inline handle of %s: %v", rel, err)
	}
	raw[len(raw)-1] ^= 0xff
	s = s[:h] + base64.StdEncoding.EncodeToString(raw) + s[end:]
	body := s[i+len(`"body":`) : j]
	sum := sha256.Sum256([]byte("keystored/meta/v1\x00" + rel + "\x00" + body))
	return []byte(s[:i] + `"body":` + body + `,"sha256":"` + hex.EncodeToString(sum[:]) + `"}` + "\n")
}
