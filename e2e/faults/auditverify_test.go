package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// buildKeystorectl builds the keystorectl binary into a temporary
// directory.
func buildKeystorectl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keystorectl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nexus-os/keystored/cmd/keystorectl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build keystorectl: %v\n%s", err, out)
	}
	return bin
}

var (
	seqField  = regexp.MustCompile(`"seq":[0-9]+,`)
	prevField = regexp.MustCompile(`"prev":"[0-9a-f]{64}"`)
	hashField = regexp.MustCompile(`"hash":"[0-9a-f]{64}"\}$`)
)

// forge returns line (a record, without its newline) as record seq after
// the record whose hash is prev, with its own hash recomputed as
// docs/audit.md specifies: what a forger who knows the format writes.
func forge(t *testing.T, line []byte, seq int, prev string) []byte {
	t.Helper()
	out := seqField.ReplaceAll(line, []byte(`"seq":`+strconv.Itoa(seq)+`,`))
	out = prevField.ReplaceAll(out, []byte(`"prev":"`+prev+`"`))
	loc := hashField.FindIndex(out)
	if loc == nil {
		t.Fatalf("no hash at the end of %q", line)
	}
	pre := append(bytes.Clone(out[:loc[0]]), `"hash":""}`...)
	sum := sha256.Sum256(append([]byte("keystored/audit/v1\x00"), pre...))
	return append(out[:loc[0]], `"hash":"`+hex.EncodeToString(sum[:])+`"}`...)
}

// hashOf returns the hash field of a record line.
func hashOf(t *testing.T, line []byte) string {
	t.Helper()
	m := hashField.Find(line)
	if m == nil {
		t.Fatalf("no hash in %q", line)
	}
	return string(m[len(`"hash":"`) : len(`"hash":"`)+64])
}

// keystorectl audit verify on a real daemon's log: every kind of change
// (a byte edited, a record deleted, two swapped, one inserted, a forged
// record with its own hash recomputed, the last line cut) is detected,
// with exit status 74 and the first bad record's line and seq.
func TestAuditVerifyCLI(t *testing.T) {
	ctx := context.Background()
	ctl := buildKeystorectl(t)
	d := daemontest.Start(t, daemontest.Options{})
	c, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	setUp(t, c) // a dozen records of several kinds
	for range 8 {
		if _, err := c.Get(ctx, "p/missing"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get p/missing: %v", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	orig, err := os.ReadFile(auditLogOf(d))
	if err != nil {
		t.Fatal(err)
	}
	lines := splitLog(t, orig, 16)
	cut := lines.record
	edited := lines.flipped(9, 20)
	forged := forge(t, cut(3), 8, hashOf(t, cut(6)))

	for _, tc := range []struct {
		name string
		data []byte
		line int // first bad line, 1-based
	}{
		{"one byte of record 10 edited", edited, 10},
		{"record 4 deleted", lines.without(3), 4},
		{"records 6 and 7 swapped", lines.swapped(5), 6},
		{"a copy of record 2 inserted as line 9", join(join(lines[:8]...), lines[1], join(lines[8:]...)), 9},
		{"a forged record with its own hash inserted as line 8", join(join(lines[:7]...), forged, []byte("\n"), join(lines[7:]...)), 9},
		{"the last line cut short", orig[:len(orig)-10], len(lines)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			if err := os.Mkdir(filepath.Join(state, "audit"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(state, "audit", "audit.jsonl"), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(ctl, "--json", "audit", "verify", "--state", state)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 74 {
				t.Fatalf("keystorectl audit verify: %v, want exit status 74\n%s%s", err, stdout.Bytes(), stderr.Bytes())
			}
			var out struct {
				Error struct {
					Reason string `json:"reason"`
					Line   int    `json:"line"`
					Seq    int    `json:"seq"`
				} `json:"error"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("output %q: %v", stdout.Bytes(), err)
			}
			if out.Error.Reason != "EBADMSG" || out.Error.Line != tc.line || out.Error.Seq != tc.line {
				t.Errorf("reported %+v, want EBADMSG at line %d, seq %d", out.Error, tc.line, tc.line)
			}
		})
	}
}
