package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
)

// writeAuditLog writes n records to <state>/audit/audit.jsonl.
func writeAuditLog(t *testing.T, state string, n int) string {
	t.Helper()
	path := auditFile(state)
	l, err := audit.Open(path)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	for i := range n {
		_, err := l.Append(context.Background(), audit.Record{
			Time:   time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC),
			Caller: audit.Caller{UID: 1000, App: "web"},
			Op:     "keys.sign",
			Key:    "web/p/k",
			Result: "ok",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerify(t *testing.T) {
	state := t.TempDir()
	path := writeAuditLog(t, state, 5)

	r := ok(t, "", nil, "audit", "verify", "--state", state)
	out := string(r.stdout)
	if !strings.Contains(out, "ok, 5 records") || !strings.Contains(out, "last seq  5") || !strings.Contains(out, "last hash ") {
		t.Errorf("audit verify:\n%s", out)
	}
	m := decode(t, ok(t, "", nil, "--json", "audit", "verify", "--state", state))
	if m["ok"] != true || m["records"] != 5.0 || m["last_seq"] != 5.0 || len(m["last_hash"].(string)) != 64 || m["file"] != path {
		t.Fatalf("audit verify --json = %v", m)
	}
	checkpoint := "5:" + m["last_hash"].(string)
	ok(t, "", nil, "audit", "verify", "--state", state, "--checkpoint", checkpoint)
	fails(t, "", nil, exitUsage, "audit", "verify", "--state", state, "--checkpoint", "garbage")

	// Change one byte of the third record.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	third := strings.Replace(lines[2], `"web/p/k"`, `"web/p/j"`, 1)
	if third == lines[2] {
		t.Fatalf("line 3 %q has no key to change", lines[2])
	}
	lines[2] = third
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fails(t, "", nil, 74, "audit", "verify", "--state", state)
	if !strings.Contains(r.stderr, "line 3") || !strings.Contains(r.stderr, "seq 3") || !strings.Contains(r.stderr, "(EBADMSG)\nhint: the record at line 3 (seq 3) fails its check") {
		t.Errorf("tampered log: stderr %q", r.stderr)
	}
	m = decode(t, fails(t, "", nil, 74, "--json", "audit", "verify", "--state", state))
	e := m["error"].(map[string]any)
	if e["reason"] != "EBADMSG" || e["line"] != 3.0 || e["seq"] != 3.0 || e["problem"] == "" || e["exit"] != 74.0 {
		t.Errorf("tampered log --json = %v", m)
	}

	// Truncation after the checkpoint is caught only with it.
	if err := os.WriteFile(path, data[:len(data)-len(lines[4])], 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, "", nil, "audit", "verify", "--state", state)
	fails(t, "", nil, 74, "audit", "verify", "--state", state, "--checkpoint", checkpoint)

	r = fails(t, "", nil, 2, "audit", "verify", "--state", filepath.Join(state, "none"))
	if !strings.Contains(r.stderr, "(ENOENT)\nhint: no audit log at") {
		t.Errorf("missing log: stderr %q", r.stderr)
	}
}

// audit verify walks every segment: a tampered or missing middle segment
// fails with the file named; segments moved away need --start.
func TestAuditVerifySegments(t *testing.T) {
	state := t.TempDir()
	path := auditFile(state)
	l, err := audit.Open(path, audit.WithSegmentSize(audit.MinSegmentSize))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := l.Append(context.Background(), audit.Record{Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC),
			Caller: audit.Caller{UID: 1000, App: "web"}, Op: "keys.sign", Key: "web/p/k", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	m := decode(t, ok(t, "", nil, "--json", "audit", "verify", "--state", state))
	segs, _ := m["segments"].(float64)
	if m["ok"] != true || m["records"] != 100.0 || m["first_seq"] != 1.0 || m["last_seq"] != 100.0 || segs < 4 {
		t.Fatalf("audit verify --json = %v", m)
	}
	if r := ok(t, "", nil, "audit", "verify", "--state", state); !strings.Contains(string(r.stdout), "ok, 100 records in ") {
		t.Fatalf("audit verify: %s", r.stdout)
	}
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sealed []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "audit-") {
			sealed = append(sealed, filepath.Join(dir, e.Name()))
		}
	}
	mid := sealed[1]
	data, err := os.ReadFile(mid)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), `"web/p/k"`, `"web/p/j"`, 1)
	if err := os.WriteFile(mid, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	em := decode(t, fails(t, "", nil, 74, "--json", "audit", "verify", "--state", state))
	if e := em["error"].(map[string]any); e["file"] != mid || e["line"] != 1.0 {
		t.Fatalf("tampered middle segment --json = %v", em)
	}
	if err := os.Rename(mid, mid+".gone"); err != nil {
		t.Fatal(err)
	}
	r := fails(t, "", nil, 74, "audit", "verify", "--state", state)
	if !strings.Contains(r.stderr, "are missing") || !strings.Contains(r.stderr, sealed[2]) {
		t.Fatalf("missing middle segment: %s", r.stderr)
	}
	// The first two segments archived elsewhere: --start accepts the log
	// only from where they ended.
	if err := os.WriteFile(mid, data, 0o600); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "audit")
	if err := os.Mkdir(archive, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range sealed[:2] {
		if err := os.Rename(p, filepath.Join(archive, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	fails(t, "", nil, 74, "audit", "verify", "--state", state)
	am := decode(t, ok(t, "", nil, "--json", "audit", "verify", "--state", filepath.Dir(archive)))
	start := strconv.FormatFloat(am["last_seq"].(float64), 'f', 0, 64) + ":" + am["last_hash"].(string)
	ok(t, "", nil, "audit", "verify", "--state", state, "--start", start)
	fails(t, "", nil, exitUsage, "audit", "verify", "--state", state, "--start", "nonsense")
}

// cpSigner signs checkpoints with a fixed key.
type cpSigner struct{ key ed25519.PrivateKey }

func (cpSigner) KeyRef() string { return "keystored/audit/checkpoint@1" }
func (s cpSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(s.key, msg), nil
}

// signedAuditLog writes n records with checkpoints every 4 to
// <state>/audit, closed; it returns the log's path, a PEM public key file
// and a shipped-checkpoint file.
func signedAuditLog(t *testing.T, state string, n int, seed byte) (path, pub, shipped string) {
	t.Helper()
	path = auditFile(state)
	l, err := audit.Open(path, audit.WithClock(clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))))
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	dir := t.TempDir()
	shipped = filepath.Join(dir, "shipped.jsonl")
	sink, err := audit.NewFileSink(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetSigner(cpSigner{key}, 4, 0, sink); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.AppendSync(context.Background(), audit.Record{Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC),
			Caller: audit.Caller{UID: 1000, App: "web"}, Op: "keys.sign", Key: "web/p/k", Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub = filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pub, shipped
}

func TestAuditVerifySigned(t *testing.T) {
	state := t.TempDir()
	path, pub, shipped := signedAuditLog(t, state, 10, 3)
	r := ok(t, "", nil, "audit", "verify", "--state", state, "--pubkey", pub, "--shipped", shipped)
	out := string(r.stdout)
	if !strings.Contains(out, "signed through seq ") || !strings.Contains(out, "by keystored/audit/checkpoint@1") ||
		!strings.Contains(out, "ends with the daemon's stop checkpoint") || !strings.Contains(out, "shipped checkpoints found in the log") {
		t.Fatalf("audit verify --pubkey:\n%s", out)
	}
	// FILE instead of --state.
	m := decode(t, ok(t, "", nil, "--json", "audit", "verify", "--pubkey", pub, path))
	if m["signed"] != true || m["ends_with_stop"] != true || m["key_ref"] != "keystored/audit/checkpoint@1" {
		t.Fatalf("--json = %v", m)
	}

	// Forged append: one record copied to the end with its hash and seq
	// recomputed. The chain alone accepts it; the key does not.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.SplitAfter(string(data), "\n")
	ls = ls[:len(ls)-1]
	// The forger appends with the package itself: a valid chain, no key.
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), audit.Record{Time: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		Caller: audit.Caller{UID: 1000, App: "web"}, Op: "keys.sign", Key: "web/p/k", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ok(t, "", nil, "audit", "verify", "--state", state)
	r = fails(t, "", nil, 74, "audit", "verify", "--state", state, "--pubkey", pub)
	if !strings.Contains(r.stderr, "1 records after the last signed checkpoint") || !strings.Contains(r.stderr, "--allow-unsigned-tail") {
		t.Fatalf("forged append: %s", r.stderr)
	}
	r = ok(t, "", nil, "audit", "verify", "--state", state, "--pubkey", pub, "--allow-unsigned-tail")
	if !strings.Contains(string(r.stdout), "1 unsigned records after it") {
		t.Fatalf("--allow-unsigned-tail: %s", r.stdout)
	}

	// Tail cut: the last two lines gone; the shipped stop checkpoint
	// shows it even with --allow-unsigned-tail.
	if err := os.WriteFile(path, []byte(strings.Join(ls[:len(ls)-2], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fails(t, "", nil, 74, "audit", "verify", "--state", state, "--pubkey", pub, "--allow-unsigned-tail", "--shipped", shipped)
	if !strings.Contains(r.stderr, "log truncated: shipped checkpoint seq") {
		t.Fatalf("cut tail: %s", r.stderr)
	}

	// A rewrite: record 3 edited and the chain recomputed after it.
	var recs []audit.Record
	for _, ln := range ls {
		rec, err := audit.ParseLine([]byte(strings.TrimSuffix(ln, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	recs[2].Key = "web/p/rewritten"
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l, err = audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs { // Append recomputes seq, prev and hash
		if _, err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ok(t, "", nil, "audit", "verify", "--state", state)
	r = fails(t, "", nil, 74, "audit", "verify", "--state", state, "--pubkey", pub)
	if !strings.Contains(r.stderr, "checkpoint signature invalid") || !strings.Contains(r.stderr, "hint: every record from seq 2 on is untrusted") {
		t.Fatalf("rewrite: %s", r.stderr)
	}
	r = fails(t, "", nil, 74, "audit", "verify", "--state", state, "--shipped", shipped)
	if !strings.Contains(r.stderr, "the log was rewritten") || !strings.Contains(r.stderr, "hint: every record from seq 2 on is untrusted") {
		t.Fatalf("rewrite vs shipped: %s", r.stderr)
	}

	// The wrong key; a bad key file; a junk shipped file.
	other := t.TempDir()
	_, pub2, _ := signedAuditLog(t, other, 1, 9)
	r = fails(t, "", nil, 74, "audit", "verify", "--state", other, "--pubkey", pub)
	if !strings.Contains(r.stderr, "checkpoint signature invalid") {
		t.Fatalf("wrong key: %s", r.stderr)
	}
	ok(t, "", nil, "audit", "verify", "--state", other, "--pubkey", pub2)
	fails(t, "", nil, exitUsage, "audit", "verify", "--state", other, "--pubkey", shipped)
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fails(t, "", nil, 74, "audit", "verify", "--state", other, "--shipped", junk)
	if !strings.Contains(r.stderr, "line 1") {
		t.Fatalf("junk shipped: %s", r.stderr)
	}
}
