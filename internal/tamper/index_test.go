package tamper_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/tamper"
)

// feed observes rs with seqs 1.. and made-up hashes.
func feed(x *tamper.Index, rs ...audit.Record) {
	for i, r := range rs {
		r.Seq = x.Head().Seq + 1
		r.Hash = fmt.Sprintf("%064x", r.Seq*1000+uint64(i))
		x.Observe(r)
	}
}

func TestIndexRules(t *testing.T) {
	x := tamper.NewIndex()
	if _, _, found := x.Expected("a/p/k"); found {
		t.Fatal("an empty index knows a key")
	}
	if h := x.Head(); h.Seq != 0 || h.Hash != audit.Genesis {
		t.Fatalf("empty head %v", h)
	}
	feed(x,
		intent("keys.create", "a/p/k", 1),       // seq 1: intent
		applied("a/p/k", 1),                     // 2: applied
		intent("keys.rotate", "a/p/k@2", 2),     // 3: versioned ref names the key
		applied("a/p/k", 3),                     // 4: not the entry's generation: ignored
		rec("keys.revoke", "a/p/j", 4, "EPERM"), // 5: a refused change is no intent
		intent("keys.sign", "a/p/i", 0),         // 6: no generation
		intent("audit.override", "a/p/h", 7),    // 7: the log's own records are no intents
		applied("a/p/g", 1),                     // 8: applied of an unknown key
		intent("keys.create", "b/p/k", 1),       // 9
		intent(tamper.OpCounter, "", 5),         // 10: counter
		rec(tamper.OpCounter, "", 6, "EIO"),     // 11: not ok: ignored
		intent("daemon.sweep", "c/p/k", 4),      // 12: the record of the request that made the change
	)
	wantExpected(t, x, "a/p/k", 2, false, true)
	wantExpected(t, x, "b/p/k", 1, false, true)
	wantExpected(t, x, "c/p/k", 4, false, true)
	for _, id := range []string{"a/p/j", "a/p/i", "a/p/h", "a/p/g"} {
		wantExpected(t, x, id, 0, false, false)
	}
	if got := x.Keys(); !slices.Equal(got, []string{"a/p/k", "b/p/k", "c/p/k"}) {
		t.Errorf("Keys = %q", got)
	}
	if v, ok := x.Counter(); v != 5 || !ok {
		t.Errorf("Counter = %d, %v; want 5, true", v, ok)
	}
	if h := x.Head(); h.Seq != 12 {
		t.Errorf("head seq %d, want 12", h.Seq)
	}

	// The applied record of the current generation marks it.
	feed(x, applied("a/p/k@2", 2))
	wantExpected(t, x, "a/p/k", 2, true, true)
	// A new intent clears applied.
	feed(x, intent("keys.revoke", "a/p/k", 3))
	wantExpected(t, x, "a/p/k", 3, false, true)

	// A record at or below the head is ignored (seen already).
	h := x.Head()
	x.Observe(audit.Record{Seq: h.Seq, Op: "keys.destroy", Key: "a/p/k", Gen: 9, Result: "ok", Hash: h.Hash})
	x.Observe(audit.Record{Seq: 1, Op: "keys.destroy", Key: "a/p/k", Gen: 9, Result: "ok", Hash: h.Hash})
	wantExpected(t, x, "a/p/k", 3, false, true)
	if x.Head() != h {
		t.Errorf("head moved to %v on an old record", x.Head())
	}
}

// sampleIndex is an index with a few keys, an applied one and a counter.
func sampleIndex() *tamper.Index {
	x := tamper.NewIndex()
	feed(x, intent("keys.create", "a/p/k", 1), applied("a/p/k", 1), intent("keys.create", "z/p/k", 1),
		intent("keys.rotate", "z/p/k", 2), intent(tamper.OpCounter, "", 3))
	return x
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		x    *tamper.Index
	}{{"empty", tamper.NewIndex()}, {"sample", sampleIndex()}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tamper.SnapshotName)
			syncs := 0
			if err := tc.x.WriteSnapshot(path, func() error { syncs++; return nil }); err != nil {
				t.Fatal(err)
			}
			if syncs != 1 {
				t.Errorf("sync called %d times, want 1", syncs)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("snapshot file: %v, %v", fi, err)
			}
			y, err := tamper.LoadSnapshot(path)
			if err != nil {
				t.Fatal(err)
			}
			if y.Head() != tc.x.Head() || !slices.Equal(y.Keys(), tc.x.Keys()) {
				t.Errorf("loaded head %v keys %q, want %v %q", y.Head(), y.Keys(), tc.x.Head(), tc.x.Keys())
			}
			for _, id := range tc.x.Keys() {
				g, a, f := tc.x.Expected(id)
				wantExpected(t, y, id, g, a, f)
			}
			v1, ok1 := tc.x.Counter()
			v2, ok2 := y.Counter()
			if v1 != v2 || ok1 != ok2 {
				t.Errorf("counter %d,%v, want %d,%v", v2, ok2, v1, ok1)
			}
			entries, err := os.ReadDir(filepath.Dir(path))
			if err != nil || len(entries) != 1 {
				t.Errorf("directory holds %v (%v), want the snapshot only", entries, err)
			}
		})
	}
}

func TestSnapshotNotWrittenWhenSyncFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), tamper.SnapshotName)
	boom := errors.New("fsync failed")
	err := sampleIndex().WriteSnapshot(path, func() error { return boom })
	wantErr(t, err, boom, provider.EIO)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("snapshot written although the log's sync failed: %v", err)
	}
}

func TestLoadSnapshotMissing(t *testing.T) {
	_, err := tamper.LoadSnapshot(filepath.Join(t.TempDir(), tamper.SnapshotName))
	wantErr(t, err, fs.ErrNotExist, provider.ENOENT)
}

func TestSnapshotCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, tamper.SnapshotName)
	if err := sampleIndex().WriteSnapshot(path, nil); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, data []byte) {
		t.Helper()
		writeFile(t, path, data)
		if _, err := tamper.LoadSnapshot(path); err == nil {
			t.Errorf("%s: accepted", name)
		} else if c, _ := provider.CodeOf(err); c != provider.EIO {
			t.Errorf("%s: code %v (%v), want EIO", name, c, err)
		}
	}
	for i := 0; i < len(good); i += max(1, len(good)/97) {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		check(fmt.Sprintf("flip byte %d", i), b)
	}
	for _, n := range []int{0, 1, len(good) / 2, len(good) - 1} {
		check(fmt.Sprintf("cut to %d bytes", n), good[:n])
	}
	check("junk appended", append(bytes.Clone(good), "x\n"...))
	check("second line", append(bytes.Clone(good), good...))

	// Edited with the checksum recomputed, but not canonical: the reader
	// re-encodes and compares.
	body := `{"head":{"seq":5,"hash":"` + strings.Repeat("a", 64) + `"}, "keys":[]}`
	check("not canonical", envelope(body))
	// Canonical, checksum right, but an entry beyond the head.
	check("entry past the head", envelope(`{"head":{"seq":1,"hash":"`+strings.Repeat("a", 64)+`"},"keys":[{"id":"a/p/k","gen":1,"seq":2,"applied":false}]}`))
	check("unsorted keys", envelope(`{"head":{"seq":9,"hash":"`+strings.Repeat("a", 64)+`"},"keys":[{"id":"b/p/k","gen":1,"seq":2,"applied":false},{"id":"a/p/k","gen":1,"seq":3,"applied":false}]}`))
	check("unknown field", envelope(`{"head":{"seq":9,"hash":"`+strings.Repeat("a", 64)+`"},"keys":[],"x":1}`))
	// A well-formed envelope is accepted: the helper makes valid files.
	writeFile(t, path, envelope(`{"head":{"seq":9,"hash":"`+strings.Repeat("a", 64)+`"},"keys":[{"id":"a/p/k","gen":1,"seq":2,"applied":false}]}`))
	if _, err := tamper.LoadSnapshot(path); err != nil {
		t.Fatalf("a valid hand-made snapshot: %v", err)
	}

	// Not private.
	writeFile(t, path, good)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tamper.LoadSnapshot(path); err == nil {
		t.Error("a snapshot readable by others was accepted")
	}
}

// envelope wraps body in a snapshot file with the right checksum.
func envelope(body string) []byte {
	h := sha256.New()
	h.Write([]byte("keystored/audit-index/v1\x00audit-index\x00"))
	h.Write([]byte(body))
	return []byte(`{"kind":"audit-index","format":1,"body":` + body + `,"sha256":"` + hex.EncodeToString(h.Sum(nil)) + "\"}\n")
}

func TestSnapshotBounds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, tamper.SnapshotName)

	// Over the size bound: refused before reading.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(tamper.MaxSnapshotSize + 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = tamper.LoadSnapshot(path)
	wantErr(t, err, nil, provider.EMSGSIZE)

	// More entries than the bound, with a valid checksum.
	var b strings.Builder
	b.WriteString(`{"head":{"seq":` + fmt.Sprint(tamper.MaxSnapshotKeys+1) + `,"hash":"` + strings.Repeat("a", 64) + `"},"keys":[`)
	for i := range tamper.MaxSnapshotKeys + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"a/p/k%07d","gen":1,"seq":%d,"applied":false}`, i, i+1)
	}
	b.WriteString("]}")
	writeFile(t, path, envelope(b.String()))
	_, err = tamper.LoadSnapshot(path)
	wantErr(t, err, nil, provider.EIO, "more than the bound")

	// And the writer refuses to make one.
	x := tamper.NewIndex()
	rs := make([]audit.Record, tamper.MaxSnapshotKeys+1)
	for i := range rs {
		rs[i] = intent("keys.create", fmt.Sprintf("a/p/k%07d", i), 1)
	}
	feed(x, rs...)
	err = x.WriteSnapshot(filepath.Join(dir, "other"), nil)
	wantErr(t, err, nil, provider.EDQUOT)
}
