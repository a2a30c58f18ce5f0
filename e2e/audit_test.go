package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
)

// keystorectl audit verify on the daemon's real log: ok after a workload,
// and the first bad record named (exit 74) after one byte is changed.
func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	d := start(t)
	c := dial(t, d)
	if _, err := c.Create(ctx, "p/sig", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := c.Sign(ctx, "p/sig", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, "p/missing"); err == nil { // a failed request is audited too
		t.Fatal("Get(missing) succeeded")
	}
	d.Stop() // flush the log

	r := ctlOK(t, d, nil, "--json", "audit", "verify", "--state", d.State)
	var got struct {
		OK       bool   `json:"ok"`
		Records  int    `json:"records"`
		LastSeq  uint64 `json:"last_seq"`
		LastHash string `json:"last_hash"`
	}
	if err := json.Unmarshal(r.stdout, &got); err != nil {
		t.Fatalf("audit verify --json %q: %v", r.stdout, err)
	}
	if !got.OK || got.Records < 22 || got.LastSeq != uint64(got.Records) || len(got.LastHash) != 64 {
		t.Fatalf("audit verify = %+v, want at least 22 records (create, 20 signs, a failed get)", got)
	}

	path := filepath.Join(d.State, "audit", "audit.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{"\"m\"", "bQ=="} { // the message, raw or base64
		if strings.Contains(string(data), forbidden) {
			t.Errorf("the audit log holds the message (%s)", forbidden)
		}
	}
	// Change one byte inside the tenth record.
	lines := strings.SplitAfter(string(data), "\n")
	i := strings.Index(lines[9], `"seq":10`)
	if i < 0 {
		t.Fatalf("line 10 %q has no seq 10", lines[9])
	}
	off := len(strings.Join(lines[:9], "")) + i + len(`"seq":1`)
	data[off] = '1' // "seq":10 -> "seq":11
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = ctlFails(t, d, nil, 74, "EBADMSG", "audit", "verify", "--state", d.State)
	if !strings.Contains(r.stderr, "line 10") || !strings.Contains(r.stderr, "hint: the record at line 10 (seq 10) fails its check") {
		t.Errorf("tampered log: stderr %q", r.stderr)
	}
	r = ctl(t, d, nil, "--json", "audit", "verify", "--state", d.State)
	var bad struct {
		Error struct {
			Reason string `json:"reason"`
			Line   int    `json:"line"`
			Seq    uint64 `json:"seq"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.stdout, &bad); err != nil || bad.Error.Reason != "EBADMSG" || bad.Error.Line != 10 || bad.Error.Seq != 10 || r.code != 74 {
		t.Errorf("tampered log --json = %s (exit %d), want EBADMSG at line 10, seq 10", r.stdout, r.code)
	}
}
