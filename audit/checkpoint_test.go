package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
)

const testKeyRef = "keystored/audit/checkpoint@1"

// testKey is a fixed Ed25519 key (seed 0x01..0x20), so that signatures
// and lines are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

// testSigner signs with a fixed key; fail makes Sign fail.
type testSigner struct {
	key  ed25519.PrivateKey
	ref  string
	fail atomic.Bool
	n    atomic.Int64
}

func newSigner() *testSigner { return &testSigner{key: testKey(1), ref: testKeyRef} }

func (s *testSigner) KeyRef() string { return s.ref }
func (s *testSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	s.n.Add(1)
	if s.fail.Load() {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "signer down")
	}
	return ed25519.Sign(s.key, msg), nil
}

func (s *testSigner) pub() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// memSink keeps the lines it is given.
type memSink struct {
	mu     sync.Mutex
	lines  [][]byte
	fail   bool
	closed bool
}

func (m *memSink) WriteCheckpoint(line []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("sink down")
	}
	m.lines = append(m.lines, append([]byte(nil), line...))
	return nil
}

func (m *memSink) Close() error { m.mu.Lock(); m.closed = true; m.mu.Unlock(); return nil }

func (m *memSink) data() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Join(m.lines, nil)
}

// signedLog writes a log of n records with checkpoints every `every`
// records, closed (so it ends with "stop"), and returns its path, the
// shipped lines and the signer.
func signedLog(t testing.TB, n, every int) (string, *memSink, *testSigner) {
	t.Helper()
	path := logPath(t)
	clk := clock.NewFake(epoch)
	l, err := audit.Open(path, audit.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	s, sink := newSigner(), &memSink{}
	if err := l.SetSigner(s, every, 0, sink); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), record(i)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		waitIdle(t, l)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Fatal("Close did not close the sink")
	}
	return path, sink, s
}

// waitIdle waits until no checkpoint is being made, so the log's
// content is deterministic.
func waitIdle(t testing.TB, l *audit.Log) {
	t.Helper()
	audit.WaitCheckpoints(l)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return lines(b)
}

func writeLines(t *testing.T, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func parse(t *testing.T, line []byte) audit.Record {
	t.Helper()
	r, err := audit.ParseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckpointsWritten(t *testing.T) {
	path, sink, s := signedLog(t, 10, 4)
	recs := readAll(t, path)
	var cps []audit.Record
	for _, r := range recs {
		if r.Op == audit.OpCheckpoint {
			cps = append(cps, r)
		}
	}
	// start (covers 0), after 4 records, after 4 more, stop.
	reasons := []string{}
	for _, c := range cps {
		reasons = append(reasons, strings.Fields(c.Detail)[0])
		if c.Key != testKeyRef || c.Result != "ok" || c.Caller.App != "" {
			t.Errorf("checkpoint record %+v", c)
		}
	}
	if got := strings.Join(reasons, ","); got != "start,every,every,stop" {
		t.Fatalf("checkpoint reasons %s", got)
	}
	if got := sink.data(); !bytes.Equal(got, shippedOf(t, path)) {
		t.Fatalf("sink got\n%s\nwant the log's checkpoint lines", got)
	}
	res, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: s.pub()})
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	if res.Checkpoints != 4 || !res.EndsWithStop || res.Unsigned != 0 || res.LastSigned != last.Seq-1 || res.KeyRef != testKeyRef {
		t.Fatalf("VerifyLogWith = %+v", res)
	}
}

// shippedOf returns the checkpoint lines of a log.
func shippedOf(t *testing.T, path string) []byte {
	var out []byte
	for _, ln := range readLines(t, path) {
		if bytes.Contains(ln, []byte(`"op":"`+audit.OpCheckpoint+`"`)) {
			out = append(out, ln...)
		}
	}
	return out
}

// TestCheckpointGolden pins the message and the record line format.
func TestCheckpointGolden(t *testing.T) {
	msg := audit.CheckpointMessage(41, strings.Repeat("ab", 32), time.Date(2026, 3, 1, 12, 0, 0, 5000, time.FixedZone("x", 3600)), testKeyRef, "every")
	const want = "keystored-audit-checkpoint-v1\n41\n" + "abababababababababababababababababababababababababababababababab" +
		"\n2026-03-01T11:00:00.000005Z\nkeystored/audit/checkpoint@1\nevery\n"
	if string(msg) != want {
		t.Fatalf("CheckpointMessage = %q\nwant %q", msg, want)
	}
	path := logPath(t)
	l, err := audit.Open(path, audit.WithClock(clock.NewFake(epoch)))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetSigner(newSigner(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ls := readLines(t, path)
	if len(ls) != 2 {
		t.Fatalf("%d lines, want start and stop", len(ls))
	}
	// The caller's uid/gid/pid are the test process's: blank them.
	got := string(ls[0])
	r := parse(t, ls[0])
	r.Caller = audit.Caller{}
	body := string(audit.EncodeLine(r))
	const wantStart = `{"seq":1,"time":"2026-03-01T12:00:00Z","caller":{"uid":0,"gid":0,"pid":0,"app":"","operator":false},"op":"audit.checkpoint","key":"keystored/audit/checkpoint@1","version":0,"result":"ok","items":0,"failed":0,"detail":"start seq=0 ed25519:`
	if !strings.HasPrefix(body, wantStart) {
		t.Fatalf("start checkpoint line\n%s\nwant prefix\n%s", got, wantStart)
	}
	// Ed25519 is deterministic: the signature is pinned too.
	sig := ed25519.Sign(testKey(1), audit.CheckpointMessage(0, audit.Genesis, epoch, testKeyRef, "start"))
	if !strings.Contains(got, `"detail":"start seq=0 ed25519:`+b64(sig)+`"`) {
		t.Fatalf("start checkpoint %s does not carry the signature of its message", got)
	}
	const pinned = "DZiR5v07Lz9PTvijRnsLET4owVktWEV+DOwI0bzKlIUAbeYOsThHei+jlFppNbaj/YN+iD++9LWS+qQfRe8ZBA=="
	if b64(sig) != pinned {
		t.Fatalf("signature of the start message = %s, pinned %s", b64(sig), pinned)
	}
	if stop := parse(t, ls[1]); !strings.HasPrefix(stop.Detail, "stop seq=1 ed25519:") || stop.Prev != r.Hash {
		t.Fatalf("stop checkpoint %+v", stop)
	}
}
