package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
)

// Forgeries by someone who knows the formats (docs/storage.md,
// docs/audit.md) and can write the state directory and the audit log, but
// cannot use the daemon's keys: each tries to make a restored meta.json
// (or a restored state) pass, and each is refused at start.

// rechecksum recomputes the checksum of a checked JSON file (MANIFEST,
// meta.json: bound to its path under the state; audit-index: to its
// name) after edit changed its body, as the documented formula says.
func rechecksum(t *testing.T, path, kind, bound string, edit func(body string) string) {
	t.Helper()
	data := string(readFile(t, path))
	i, j := strings.Index(data, `"body":`), strings.LastIndex(data, `,"sha256":"`)
	if i < 0 || j < i {
		t.Fatalf("%s is not a checked envelope: %q", path, data)
	}
	body := edit(data[i+len(`"body":`) : j])
	sum := sha256.Sum256([]byte("keystored/" + kind + "/v1\x00" + bound + "\x00" + body))
	writeFile(t, path, []byte(data[:i]+`"body":`+body+`,"sha256":"`+hex.EncodeToString(sum[:])+`"}`+"\n"))
}

// appendForged appends lines (records) to the log at path, each re-chained
// after the last one with its seq and hash recomputed.
func appendForged(t *testing.T, path string, lines ...[]byte) {
	t.Helper()
	data := readFile(t, path)
	ls := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	last := ls[len(ls)-1]
	seq := len(ls) // a log that starts at seq 1
	for _, l := range lines {
		seq++
		f := forge(t, l, seq, hashOf(t, last))
		data = append(append(data, f...), '\n')
		last = f
	}
	writeFile(t, path, data)
}

// lineWith returns the first line of the log at path containing all of
// parts.
func lineWith(t *testing.T, path string, parts ...string) []byte {
	t.Helper()
next:
	for _, l := range bytes.Split(readFile(t, path), []byte("\n")) {
		for _, p := range parts {
			if !bytes.Contains(l, []byte(p)) {
				continue next
			}
		}
		return l
	}
	t.Fatalf("no line of %s holds %q", path, parts)
	return nil
}

func TestForgeryRealDaemon(t *testing.T) {
	ctx := context.Background()
	counter := filepath.Join(t.TempDir(), "counter")
	config := operatorConfig(t, "[counter]\ntype = \"file\"\npath = \""+counter+"\"\n")
	state, backup := revokedAfterBackup(t, config)
	oldMeta := readFile(t, metaPath(backup, "p/k")) // generation 1, active
	logOf := func(st string) string { return filepath.Join(st, "audit", "audit.jsonl") }
	fresh := func(t *testing.T) string {
		st := filepath.Join(t.TempDir(), "state")
		copyTree(t, state, st)
		writeFile(t, metaPath(st, "p/k"), oldMeta)
		return st
	}

	t.Run("the audit index edited to the old generation", func(t *testing.T) {
		st := fresh(t)
		rechecksum(t, filepath.Join(st, "audit-index"), "audit-index", "audit-index", func(b string) string {
			return strings.Replace(b, `{"id":"ops/p/k","gen":2,`, `{"id":"ops/p/k","gen":1,`, 1)
		})
		startRefused(t, config, st, "audit index corrupt")
	})
	t.Run("the audit index's head moved and its stop mark dropped", func(t *testing.T) {
		st := fresh(t)
		rechecksum(t, filepath.Join(st, "audit-index"), "audit-index", "audit-index", func(b string) string {
			return regexp.MustCompile(`,"stopped":\{[^}]*\}`).ReplaceAllString(b, "")
		})
		startRefused(t, config, st, "not signed by the daemon's audit key")
	})
	t.Run("a forged intent taking the generation back", func(t *testing.T) {
		st := fresh(t)
		revoke := lineWith(t, logOf(st), `"op":"keys.revoke"`, `"gen":2`)
		applied := lineWith(t, logOf(st), `"op":"keys.applied"`, `"gen":2`)
		appendForged(t, logOf(st),
			bytes.Replace(revoke, []byte(`"gen":2`), []byte(`"gen":1`), 1),
			bytes.Replace(applied, []byte(`"gen":2`), []byte(`"gen":1`), 1))
		// After a clean stop the records are refused as appended; the
		// generation check is for a tail after a crash, proven in
		// internal/tamper (TestOpenRefusesAGenerationGoingBack).
		startRefused(t, config, st, "after the daemon stopped")
	})
	t.Run("the log and the index removed, generations stripped", func(t *testing.T) {
		st := fresh(t)
		if err := os.RemoveAll(filepath.Join(st, "audit")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(st, "audit-index")); err != nil {
			t.Fatal(err)
		}
		rechecksum(t, metaPath(st, "p/k"), "meta", metaRel("p/k"), func(b string) string {
			return regexp.MustCompile(`"generation":\d+,?`).ReplaceAllString(b, "")
		})
		startRefused(t, config, st, "holds keys")
	})
	// --accept-audit-log-change does not launder: the verified old index
	// keeps what it knew, and an index the key did not sign adopts nothing.
	acceptBoth := []string{"--accept-audit-log-change", "--accept-counter-change"}
	signRefused := func(t *testing.T, st string) {
		t.Helper()
		// A counter of its own (missing: accepted as replaced), so that
		// the other cases' counter is left alone.
		own := operatorConfig(t, "[counter]\ntype = \"file\"\npath = \""+filepath.Join(t.TempDir(), "counter")+"\"\n")
		td := startTamper(t, own, st, acceptBoth...)
		if _, err := td.c.Sign(ctx, "p/k", []byte("m")); !errors.Is(err, client.ErrIO) {
			t.Errorf("sign of the revoked key after an accepted log change: %v, want EIO", err)
		}
		td.stop()
	}
	t.Run("the log deleted, a newer meta.json forged, the change accepted", func(t *testing.T) {
		st := fresh(t)
		if err := os.RemoveAll(filepath.Join(st, "audit")); err != nil {
			t.Fatal(err)
		}
		rechecksum(t, metaPath(st, "p/k"), "meta", metaRel("p/k"), func(b string) string {
			return strings.Replace(b, `"generation":1`, `"generation":3`, 1)
		})
		signRefused(t, st)
	})
	t.Run("the log deleted, the index edited to forget the key, the change accepted", func(t *testing.T) {
		st := fresh(t)
		if err := os.RemoveAll(filepath.Join(st, "audit")); err != nil {
			t.Fatal(err)
		}
		rechecksum(t, filepath.Join(st, "audit-index"), "audit-index", "audit-index", func(b string) string {
			return regexp.MustCompile(`\{"id":"ops/p/k","gen":\d+,"seq":\d+,"applied":(true|false)\},?`).ReplaceAllString(b, "")
		})
		signRefused(t, st)
	})
	t.Run("after a kill, the revoke's applied record cut and the old meta.json restored", func(t *testing.T) {
		own := operatorConfig(t, "[counter]\ntype = \"file\"\npath = \""+filepath.Join(t.TempDir(), "counter")+"\"\n")
		st := filepath.Join(t.TempDir(), "state")
		td := startTamper(t, own, st)
		if _, err := td.c.Create(ctx, "p/k3", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			t.Fatal(err)
		}
		active := readFile(t, metaPath(st, "p/k3"))
		if _, err := td.c.Revoke(ctx, "p/k3"); err != nil {
			t.Fatal(err)
		}
		if err := td.c.Close(); err != nil {
			t.Fatal(err)
		}
		td.d.Kill()
		// Cut the log right before the revoke's keys.applied record (and
		// so the counter record and checkpoint after it): what is left
		// looks like a crash between the revoke's intent and its write.
		data := readFile(t, logOf(st))
		cut := bytes.Index(data, lineWith(t, logOf(st), `"op":"keys.applied"`, `"key":"ops/p/k3"`, `"gen":2`))
		writeFile(t, logOf(st), data[:cut])
		writeFile(t, metaPath(st, "p/k3"), active)
		// The counter moved after the applied record: it is ahead.
		startRefused(t, own, st, "older than the external counter")
	})
	t.Run("the whole state restored, a counter record forged to match", func(t *testing.T) {
		// A backup of a state whose daemon was killed (no clean stop:
		// records after the index's snapshot are the normal case).
		td := startTamper(t, config, state)
		if _, err := td.c.Create(ctx, "p/k2", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
			t.Fatal(err)
		}
		if err := td.c.Close(); err != nil {
			t.Fatal(err)
		}
		td.d.Kill()
		crashed := filepath.Join(t.TempDir(), "crashed")
		copyTree(t, state, crashed)
		td = startTamper(t, config, state)
		if _, err := td.c.Revoke(ctx, "p/k2"); err != nil {
			t.Fatal(err)
		}
		td.stop()

		st := filepath.Join(t.TempDir(), "state")
		copyTree(t, crashed, st)
		before := readFile(t, logOf(st))
		startRefused(t, config, st, "older than the external counter") // the restore alone
		if !bytes.Equal(readFile(t, logOf(st)), before) {
			t.Error("a start refused for a rolled-back state wrote to its audit log (a refused start must sign nothing)")
		}
		// The counter file: "keystored-counter v1 <value> <sum>".
		f := strings.Fields(string(readFile(t, counter)))
		if len(f) < 3 {
			t.Fatalf("counter file %q", readFile(t, counter))
		}
		x, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		rec := lineWith(t, logOf(st), `"op":"audit.counter"`)
		appendForged(t, logOf(st), regexp.MustCompile(`"gen":\d+`).ReplaceAll(rec, []byte(`"gen":`+strconv.FormatUint(x, 10))))
		// The forged record says what the counter says, but no
		// checkpoint signs it: only signed counter records count.
		startRefused(t, config, st, "older than the external counter")
	})
}
