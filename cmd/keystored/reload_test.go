package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/keksource"
	"github.com/nexus-os/keystored/server"
)

// replaceConfig writes body to path atomically (0600), as an operator's
// editor or config management would.
func replaceConfig(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// hup sends SIGHUP and waits until the daemon's log has one more line
// containing want than before (the reload's outcome).
func hup(t *testing.T, d *daemontest.Daemon, want string) {
	t.Helper()
	before := strings.Count(d.Stderr(), want)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // only turns a hang into a failure
	for strings.Count(d.Stderr(), want) == before {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after SIGHUP:\n%s", want, d.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSIGHUPReload: SIGHUP reloads the identity map and the anchors at
// once, for new requests; a config that does not validate is refused whole
// and the running mapping stays; a change that needs a restart is named;
// every reload is audited; the daemon keeps serving and stops cleanly
// (issue 9, item 12: SIGHUP killed it).
func TestSIGHUPReload(t *testing.T) {
	uid := os.Getuid()
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "keystored.toml")
	replaceConfig(t, cfg, fmt.Sprintf("unmapped = \"deny\"\n[apps]\n%d = \"first\"\n", uid))
	d := daemontest.Start(t, daemontest.Options{Args: []string{"--config", cfg}})
	keys, _, anchors := clients(t, d)
	create := func(key string) string {
		t.Helper()
		r, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: key, Algorithm: "ed25519"})
		mustOK(t, "Create "+key, err)
		return r.GetKey().GetId()
	}
	if id := create("sig/a"); id != "first/sig/a" {
		t.Fatalf("before the reload: %s", id)
	}

	// A new app for the same uid, and trust anchors.
	anchorDir := filepath.Join(cfgDir, "anchors")
	if err := os.Mkdir(anchorDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(anchorDir, "release.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	good := fmt.Sprintf("unmapped = \"deny\"\nanchors_dir = \"anchors\"\n[apps]\n%d = \"second\"\n", uid)
	replaceConfig(t, cfg, good)
	hup(t, d, "configuration reloaded")
	if id := create("sig/b"); id != "second/sig/b" {
		t.Errorf("after the reload the same uid created %s, want second/sig/b", id)
	}
	l, err := anchors.ListAnchors(t.Context(), &keystorev1.ListAnchorsRequest{})
	mustOK(t, "ListAnchors", err)
	if len(l.GetAnchors()) != 1 {
		t.Errorf("anchors after the reload: %v", l.GetAnchors())
	}

	// A bad config (a reserved app name) is refused whole: the mapping and
	// the anchors stay.
	replaceConfig(t, cfg, fmt.Sprintf("unmapped = \"deny\"\n[apps]\n%d = \"uid-77\"\n", uid))
	hup(t, d, "configuration reload refused")
	if id := create("sig/c"); id != "second/sig/c" {
		t.Errorf("after a refused reload the uid created %s, want second/sig/c", id)
	}
	if l, err := anchors.ListAnchors(t.Context(), &keystorev1.ListAnchorsRequest{}); err != nil || len(l.GetAnchors()) != 1 {
		t.Errorf("anchors after a refused reload: %v, %v", l.GetAnchors(), err)
	}

	// A limit changes only at the next start: said so, the rest applies,
	// the sweep interval included.
	replaceConfig(t, cfg, good+"[limits]\nmax_connections = 7\n[rotation]\nsweep_interval = \"5m\"\n")
	hup(t, d, "configuration reloaded")
	if !strings.Contains(d.Stderr(), "take effect only at the next start") || !strings.Contains(d.Stderr(), "keys=limits") {
		t.Errorf("a changed limit is not reported as needing a restart:\n%s", d.Stderr())
	}
	d.Stop()

	var reloads []string
	for _, r := range auditRecords(t, filepath.Join(d.State, auditFile)) {
		if r.Op == reloadOp {
			reloads = append(reloads, r.Result+": "+r.Detail)
		}
	}
	want := []string{
		"ok: identity and anchors reloaded; anchors=1",
		"EINVAL: config refused; running configuration unchanged",
		"ok: identity and anchors reloaded; anchors=1; sweep_interval=5m0s; restart needed for limits",
	}
	if strings.Join(reloads, "\n") != strings.Join(want, "\n") {
		t.Errorf("reload audit records:\n%s\nwant:\n%s", strings.Join(reloads, "\n"), strings.Join(want, "\n"))
	}
}

// TestSIGHUPWithoutConfig: without a config file SIGHUP changes nothing
// and the daemon keeps serving, then stops with status 0.
func TestSIGHUPWithoutConfig(t *testing.T) {
	d := daemontest.Start(t, daemontest.Options{})
	hup(t, d, "nothing to reload")
	keys, _, _ := clients(t, d)
	_, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create after SIGHUP", err)
	d.Stop()
}

// TestReloadKEKNeedsRestart: a changed [kek] table is reported as needing
// a restart (the provider's KEK is read once, at start); an unchanged one
// is not.
func TestReloadKEKNeedsRestart(t *testing.T) {
	cur := defaultSettings()
	cur.kek.File = keksource.Setting{Value: "/etc/keystored/kek", From: "[kek] file"}
	r := &reloader{running: cur}
	if got := r.needsRestart(cur); len(got) != 0 {
		t.Errorf("unchanged config: needs a restart for %v", got)
	}
	next := cur
	next.kek = keksource.Options{PassphraseCredential: keksource.Setting{Value: "kek-pass", From: "[kek] passphrase_credential"}}
	if got := r.needsRestart(next); !slices.Equal(got, []string{"kek"}) {
		t.Errorf("changed [kek]: needs a restart for %v, want [kek]", got)
	}
}

// TestReloadSchedulerNeedsRestart: a changed [scheduler] is reported as
// taking effect at the next start; an unchanged one is not.
func TestReloadSchedulerNeedsRestart(t *testing.T) {
	r := &reloader{running: settings{scheduler: server.Scheduler{Workers: 2}}}
	if got := r.needsRestart(settings{scheduler: server.Scheduler{Workers: 2}}); slices.Contains(got, "scheduler") {
		t.Fatalf("unchanged scheduler reported: %v", got)
	}
	if got := r.needsRestart(settings{scheduler: server.Scheduler{Workers: 2, Nice: -1}}); !slices.Contains(got, "scheduler") {
		t.Fatalf("changed scheduler not reported: %v", got)
	}
}
