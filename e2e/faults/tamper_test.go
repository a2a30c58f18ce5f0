package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// Tamper evidence through the real daemon (docs/security.md, "Rollback
// detection" and "Audit log tampering"): each attack of issue 14 is made
// on a stopped daemon's files, then the daemon is started on them and
// keystorectl audit verify --pubkey is run; each is detected by one or
// both, with the typed reason.

// operatorConfig writes a config that makes the test's uid an operator
// (keystorectl pubkey of the daemon's own key needs one), with the
// options extra adds, and returns its path.
func operatorConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keystored.toml")
	uid := strconv.Itoa(os.Getuid())
	body := "operators = [" + uid + "]\n[apps]\n\"" + uid + "\" = \"ops\"\n" + extra
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// copyTree copies a stopped daemon's state directory with cp -a (modes,
// times and all): what an attacker with a backup has.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

// tamperDaemon is one real daemon run of the tamper tests.
type tamperDaemon struct {
	t      *testing.T
	config string
	state  string
	d      *daemontest.Daemon
	c      *client.Client
}

func startTamper(t *testing.T, config, state string, args ...string) *tamperDaemon {
	t.Helper()
	d := daemontest.Start(t, daemontest.Options{State: state, Args: append([]string{"--config", config}, args...)})
	c, err := client.Dial(context.Background(), d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	return &tamperDaemon{t: t, config: config, state: state, d: d, c: c}
}

func (td *tamperDaemon) stop() {
	td.t.Helper()
	if err := td.c.Close(); err != nil {
		td.t.Fatal(err)
	}
	td.d.Stop()
}

// startRefused runs the daemon on state and returns its output; it fails
// the test unless the daemon exits non-zero with want in its output.
func startRefused(t *testing.T, config, state, want string, args ...string) string {
	t.Helper()
	r := daemontest.Run(t, daemontest.Options{State: state, Args: append([]string{"--config", config}, args...)})
	out := r.Stdout + r.Stderr
	if r.ExitCode == 0 || !strings.Contains(out, want) {
		t.Fatalf("keystored on a tampered state: exit %d, want a refusal naming %q\n%s", r.ExitCode, want, out)
	}
	return out
}

// verifyLog runs keystorectl --json audit verify --state state --pubkey
// pub (and more args) and returns its exit status and output.
func verifyLog(t *testing.T, ctl, state, pub string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(ctl, append([]string{"--json", "audit", "verify", "--state", state, "--pubkey", pub}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("keystorectl audit verify: %v", err)
	return 0, ""
}

// metaRel is the storage path of the test app's key purpose/name: its
// key file (core.MetaPath).
func metaRel(key string) string { return "keystore/ops/" + key + "~meta.json" }

// metaPath is the key file of the test app's key purpose/name in state.
func metaPath(state, key string) string {
	return filepath.Join(state, filepath.FromSlash(metaRel(key)))
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackOneKeyRealDaemon: an older copy of one key's files put back
// while the daemon is stopped (a revoked key's file from before the
// revocation; a destroyed key's file, with its inline handle, from before
// the destroy; a key's file deleted) is refused at the next start
// with EIO "rolled back", audited, listed as unreadable; other keys sign.
func TestRollbackOneKeyRealDaemon(t *testing.T) {
	ctx := context.Background()
	ctl := buildKeystorectl(t)
	config := operatorConfig(t, "")
	state := filepath.Join(t.TempDir(), "state")
	td := startTamper(t, config, state)
	for _, k := range []string{"p/revoked", "p/destroyed", "p/deleted", "p/fine"} {
		if _, err := td.c.Create(ctx, k, client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			t.Fatal(err)
		}
	}
	td.stop()
	backup := filepath.Join(t.TempDir(), "backup")
	copyTree(t, state, backup)

	td = startTamper(t, config, state)
	if _, err := td.c.Revoke(ctx, "p/revoked"); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Revoke(ctx, "p/destroyed"); err != nil {
		t.Fatal(err)
	}
	if _, err := td.c.Destroy(ctx, "p/destroyed"); err != nil {
		t.Fatal(err)
	}
	td.stop()

	// The attack: the old files back in place.
	writeFile(t, metaPath(state, "p/revoked"), readFile(t, metaPath(backup, "p/revoked")))
	writeFile(t, metaPath(state, "p/destroyed"), readFile(t, metaPath(backup, "p/destroyed")))
	if err := os.Remove(metaPath(state, "p/deleted")); err != nil {
		t.Fatal(err)
	}

	td = startTamper(t, config, state)
	for _, k := range []string{"p/revoked", "p/destroyed", "p/deleted"} {
		_, err := td.c.Sign(ctx, k, []byte("m"))
		if !errors.Is(err, client.ErrIO) || !strings.Contains(err.Error(), "rolled back") {
			t.Errorf("sign %s after its files were rolled back: %v, want EIO rolled back", k, err)
		}
	}
	if _, err := td.c.Sign(ctx, "p/fine", []byte("m")); err != nil {
		t.Errorf("sign p/fine, a key nobody touched: %v", err)
	}
	out, code := runCtl(t, ctl, td.d.Socket, "list", "--unreadable")
	for _, k := range []string{"ops/p/revoked", "ops/p/destroyed", "ops/p/deleted"} {
		if code != 0 || !strings.Contains(out, k) || !strings.Contains(out, "rolled back") {
			t.Errorf("keys list --unreadable (exit %d) does not name %s as rolled back:\n%s", code, k, out)
		}
	}
	if strings.Contains(out, "ops/p/fine") {
		t.Errorf("keys list --unreadable names an untouched key:\n%s", out)
	}
	td.stop()
	log := string(readFile(t, filepath.Join(state, "audit", "audit.jsonl")))
	for _, k := range []string{"ops/p/revoked", "ops/p/destroyed", "ops/p/deleted"} {
		if !strings.Contains(log, `"op":"keys.rollback-detected","key":"`+k+`"`) {
			t.Errorf("no keys.rollback-detected record for %s", k)
		}
	}
}

// runCtl runs keystorectl against socket and returns its combined output
// and exit status.
func runCtl(t *testing.T, ctl, socket string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(ctl, args...)
	cmd.Env = append(os.Environ(), "KEYSTORE_SOCKET="+socket)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("keystorectl %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// revokedAfterBackup runs the daemon with config on a new state: it makes
// ops/p/k, stops, copies the whole state (the backup), starts again,
// revokes p/k (generation 2) and stops. It returns the state and the
// backup, whose p/k is active at generation 1.
func revokedAfterBackup(t *testing.T, config string) (state, backup string) {
	t.Helper()
	ctx := context.Background()
	state = filepath.Join(t.TempDir(), "state")
	td := startTamper(t, config, state)
	if _, err := td.c.Create(ctx, "p/k", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	td.stop()
	backup = filepath.Join(t.TempDir(), "backup")
	copyTree(t, state, backup)
	td = startTamper(t, config, state)
	if _, err := td.c.Revoke(ctx, "p/k"); err != nil {
		t.Fatal(err)
	}
	td.stop()
	return state, backup
}

// restoreWhole replaces the state directory with the backup.
func restoreWhole(t *testing.T, state, backup string) {
	t.Helper()
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, state)
}

// TestRollbackWholeStateRealDaemon: the whole state directory, audit log
// included, put back from a copy taken while the daemon was stopped, is
// refused at start when an external counter is configured (the counter
// is ahead of the log), and accepted, audited, with
// --accept-counter-change; without a counter the same restore starts (the
// documented limit).
func TestRollbackWholeStateRealDaemon(t *testing.T) {
	ctx := context.Background()
	counter := filepath.Join(t.TempDir(), "counter")
	config := operatorConfig(t, "[counter]\ntype = \"file\"\npath = \""+counter+"\"\n")
	state, backup := revokedAfterBackup(t, config)
	restoreWhole(t, state, backup)
	startRefused(t, config, state, "older than the external counter")

	td := startTamper(t, config, state, "--accept-counter-change")
	td.stop()
	if log := string(readFile(t, filepath.Join(state, "audit", "audit.jsonl"))); !strings.Contains(log, `"op":"audit.override"`) {
		t.Error("the accepted counter change is not in the audit log")
	}
	// Accepted once: the next start is a normal one.
	startTamper(t, config, state).stop()

	// Without a counter the same restore starts: the documented limit.
	plain := operatorConfig(t, "")
	st, old := revokedAfterBackup(t, plain)
	restoreWhole(t, st, old)
	td = startTamper(t, plain, st)
	if _, err := td.c.Sign(ctx, "p/k", []byte("m")); err != nil {
		t.Errorf("without a counter a restored state is consistent and serves (the limit docs/security.md states): %v", err)
	}
	td.stop()
}

// TestAuditTamperRealDaemon: every edit of a stopped daemon's audit log is
// detected by keystorectl audit verify --pubkey (with the daemon's
// checkpoint key exported while it ran) and/or refused at the next start.
func TestAuditTamperRealDaemon(t *testing.T) {
	ctx := context.Background()
	ctl := buildKeystorectl(t)
	config := operatorConfig(t, "[audit]\ncheckpoint_every = 4\n")
	state := filepath.Join(t.TempDir(), "state")
	td := startTamper(t, config, state)
	for i := range 6 {
		k := "p/k" + strconv.Itoa(i)
		if _, err := td.c.Create(ctx, k, client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			t.Fatal(err)
		}
		if _, err := td.c.Sign(ctx, k, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	pemOut, code := runCtl(t, ctl, td.d.Socket, "audit", "pubkey")
	if code != 0 || !strings.Contains(pemOut, "BEGIN PUBLIC KEY") {
		t.Fatalf("keystorectl audit pubkey: exit %d\n%s", code, pemOut)
	}
	pub := filepath.Join(t.TempDir(), "audit.pem")
	writeFile(t, pub, []byte(pemOut))
	td.stop()

	if code, out := verifyLog(t, ctl, state, pub); code != 0 {
		t.Fatalf("the untouched log does not verify with its key: exit %d\n%s", code, out)
	}
	logPath := filepath.Join(state, "audit", "audit.jsonl")
	orig := readFile(t, logPath)
	lines := splitLog(t, orig, 20)
	cut := lines.record
	edited := lines.flipped(4, 20)
	// A forger who knows the format: records appended after the last one
	// with their hashes recomputed, and a whole log rewritten (one field
	// changed in record 3, every later record re-chained).
	last := cut(len(lines) - 1)
	signAt := -1
	for i := range lines {
		if bytes.Contains(lines[i], []byte(`"op":"keys.sign"`)) {
			signAt = i
			break
		}
	}
	if signAt < 0 {
		t.Fatal("no keys.sign record in the log")
	}
	appended := join(orig, forge(t, cut(signAt), len(lines)+1, hashOf(t, last)), []byte("\n"))
	var rewritten []byte
	prev := ""
	for i := range lines {
		l := cut(i)
		if i == 2 {
			l = bytes.Replace(l, []byte(`"result":"ok"`), []byte(`"result":"EPERM"`), 1)
		}
		if i > 0 {
			l = forge(t, l, i+1, prev)
		}
		prev = hashOf(t, l)
		rewritten = append(append(rewritten, l...), '\n')
	}
	tail := join(lines[:len(lines)-3]...)

	// A fresh log from another daemon: a valid chain under another key.
	otherState := filepath.Join(t.TempDir(), "other")
	other := startTamper(t, operatorConfig(t, ""), otherState)
	if _, err := other.c.Create(ctx, "p/x", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	other.stop()
	replaced := readFile(t, filepath.Join(otherState, "audit", "audit.jsonl"))

	for _, tc := range []struct {
		name   string
		data   []byte // nil: the log deleted
		verify string // what audit verify --pubkey reports ("" for the deleted log)
		start  string // what the refused start says
	}{
		{"one byte of record 5 flipped", edited, `"line":5`, "audit log"},
		{"record 4 deleted", lines.without(3), `"line":4`, "audit log"},
		{"records 6 and 7 swapped", lines.swapped(5), `"line":6`, "audit log"},
		{"a copy of record 2 inserted as line 9", join(join(lines[:8]...), lines[1], join(lines[8:]...)), `"line":9`, "audit log"},
		{"forged records appended with recomputed hashes", appended, "after the last signed checkpoint", "appended"},
		{"the whole log rewritten with a recomputed chain", rewritten, "signature", "replaced"},
		{"the last three records cut off", tail, "checkpoint", "truncated"},
		{"the log replaced by another daemon's", replaced, "signature", "replaced"},
		{"the log deleted", nil, "", "deleted"},
		{"the log emptied", []byte{}, "empty", "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := filepath.Join(t.TempDir(), "state")
			copyTree(t, state, st)
			p := filepath.Join(st, "audit", "audit.jsonl")
			if tc.data == nil {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, p, tc.data)
			}
			if code, out := verifyLog(t, ctl, st, pub); code == 0 || !strings.Contains(out, tc.verify) {
				t.Errorf("audit verify --pubkey: exit %d, want a failure naming %q\n%s", code, tc.verify, out)
			}
			startRefused(t, config, st, tc.start)
		})
	}

	// The override: a deleted log is accepted once, audited, and the
	// daemon starts a new chain that says so.
	t.Run("override", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "state")
		copyTree(t, state, st)
		if err := os.Remove(filepath.Join(st, "audit", "audit.jsonl")); err != nil {
			t.Fatal(err)
		}
		td := startTamper(t, config, st, "--accept-audit-log-change")
		td.stop()
		log := string(readFile(t, filepath.Join(st, "audit", "audit.jsonl")))
		if !strings.Contains(log, `"op":"audit.override"`) {
			t.Errorf("the accepted log change is not audited:\n%s", log)
		}
		startTamper(t, config, st).stop()
	})
}

// shippedLines reads a checkpoint sink file: one log line per checkpoint.
func shippedLines(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(readFile(t, path))), "\n") {
		var r struct {
			Op string `json:"op"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Op != "audit.checkpoint" {
			t.Fatalf("shipped line %q is not a checkpoint record (%v)", l, err)
		}
		out = append(out, l)
	}
	return out
}

// TestShippedCheckpointsRealDaemon: the daemon writes every checkpoint to
// a configured file as well; a log cut back to an earlier clean stop —
// which its own signatures cannot reveal — is found against the shipped
// copy.
func TestShippedCheckpointsRealDaemon(t *testing.T) {
	ctx := context.Background()
	ctl := buildKeystorectl(t)
	shipped := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	config := operatorConfig(t, "[audit]\ncheckpoint_file = \""+shipped+"\"\n")
	state := filepath.Join(t.TempDir(), "state")
	td := startTamper(t, config, state)
	if _, err := td.c.Create(ctx, "p/a", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	pemOut, code := runCtl(t, ctl, td.d.Socket, "audit", "pubkey")
	if code != 0 {
		t.Fatalf("keystorectl audit pubkey: exit %d\n%s", code, pemOut)
	}
	pub := filepath.Join(t.TempDir(), "audit.pem")
	writeFile(t, pub, []byte(pemOut))
	td.stop()
	firstRun := readFile(t, filepath.Join(state, "audit", "audit.jsonl"))

	td = startTamper(t, config, state)
	if _, err := td.c.Create(ctx, "p/b", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	td.stop()
	if n := len(shippedLines(t, shipped)); n < 4 {
		t.Fatalf("%d checkpoints shipped over two runs, want at least 4 (start and stop of each)", n)
	}
	if code, out := verifyLog(t, ctl, state, pub, "--shipped", shipped); code != 0 {
		t.Fatalf("the untouched log against its shipped checkpoints: exit %d\n%s", code, out)
	}
	// The log cut back to the end of the first run (a clean stop, signed).
	st := filepath.Join(t.TempDir(), "state")
	copyTree(t, state, st)
	writeFile(t, filepath.Join(st, "audit", "audit.jsonl"), firstRun)
	if code, out := verifyLog(t, ctl, st, pub); code != 0 {
		t.Fatalf("a log cut at a signed stop verifies on its own (as documented): exit %d\n%s", code, out)
	}
	if code, out := verifyLog(t, ctl, st, pub, "--shipped", shipped); code == 0 || !strings.Contains(out, "truncated") {
		t.Errorf("the cut log against the shipped checkpoints: exit %d, want \"truncated\"\n%s", code, out)
	}
}
