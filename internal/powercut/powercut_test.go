package powercut

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/storage"
)

// image returns the durable files of m, failing t on a restore error.
func image(t *testing.T, m *Machine) map[string][]byte {
	t.Helper()
	files, _, _ := m.Image()
	return files
}

// A write to a new directory (mkdir, parent fsync, temp, write, fsync,
// rename, dir fsync: 7 events) is durable only once its last step ran;
// an overwrite keeps the old content until its directory fsync.
func TestWriteDurableAtDirFsync(t *testing.T) {
	const steps = 7
	for k := 1; k <= steps+1; k++ {
		m := New()
		m.CutAt(k)
		err := m.Storage().WriteFile("d/f", []byte("v1"))
		files := image(t, m)
		if k <= steps {
			if !errors.Is(err, ErrPowerCut) {
				t.Errorf("cut at %d: write error %v, want ErrPowerCut", k, err)
			}
			if _, ok := files["d/f"]; ok {
				t.Errorf("cut at %d: d/f durable before its directory fsync", k)
			}
			continue
		}
		if err != nil || !bytes.Equal(files["d/f"], []byte("v1")) {
			t.Errorf("no cut: err %v, image %q", err, files)
		}
	}
	for k := 1; k <= 6; k++ { // the overwrite: 5 events
		m := New()
		if err := m.Storage().WriteFile("d/f", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		m.CutAt(m.Events() + k)
		err := m.Storage().WriteFile("d/f", []byte("v2"))
		want := "v1"
		if k == 6 {
			want = "v2"
		}
		if got := image(t, m)["d/f"]; string(got) != want || (k < 6) != (err != nil) {
			t.Errorf("overwrite cut at +%d: image %q, err %v; want %q", k, got, err, want)
		}
	}
}

// A removal is durable at its directory's fsync.
func TestRemoveDurableAtDirFsync(t *testing.T) {
	for k, want := range map[int]bool{1: true, 2: true, 3: false} {
		m := New()
		if err := m.Storage().WriteFile("f", []byte("x")); err != nil {
			t.Fatal(err)
		}
		m.CutAt(m.Events() + k)
		err := m.Storage().Remove("f")
		_, present := image(t, m)["f"]
		if present != want || (err != nil) != want {
			t.Errorf("remove cut at +%d: present %v (want %v), err %v", k, present, want, err)
		}
	}
}

// A rename whose data was never fsynced leaves an empty file once its
// directory is fsynced; a file under a directory whose entry is not
// durable is lost with it.
func TestUnsyncedRenameAndLostDirectory(t *testing.T) {
	m := New()
	if err := m.Storage().WriteFile("f", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	// v2 replaces v1 without an fsync of its data (Corrupt bypasses the
	// hook, as the data write would).
	if err := m.Storage().Corrupt("f", func([]byte) []byte { return []byte("v2") }); err != nil {
		t.Fatal(err)
	}
	for _, s := range []storage.Step{storage.StepCreateTemp, storage.StepWrite, storage.StepRename} {
		if err := m.hook(s, "f"); err != nil {
			t.Fatal(err)
		}
	}
	if got := image(t, m)["f"]; string(got) != "v1" {
		t.Errorf("before the dir fsync: %q, want v1", got)
	}
	if err := m.hook(storage.StepDirFsync, "."); err != nil {
		t.Fatal(err)
	}
	if got, ok := image(t, m)["f"]; !ok || len(got) != 0 {
		t.Errorf("unsynced data renamed: %q (present %v), want an empty file", got, ok)
	}

	m = New()
	if err := m.Storage().WriteFile("a/b/f", []byte("x")); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	delete(m.durDirs, "a") // as if the top's fsync after mkdir a never ran
	m.mu.Unlock()
	files, dirs, _ := m.Image()
	if len(files) != 0 || len(dirs) != 0 {
		t.Errorf("a file under a directory not durable survived: %q %q", files, dirs)
	}
}

// Restore rebuilds the image, empty directories included; after the cut
// every step fails and nothing more becomes durable.
func TestRestoreAndAfterCut(t *testing.T) {
	m := New()
	st := m.Storage()
	if err := st.WriteFile("keys/a/meta", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteFile("keys/b/meta", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove("keys/b/meta"); err != nil {
		t.Fatal(err)
	}
	m.CutNow()
	if err := st.WriteFile("keys/c/meta", []byte("m")); !errors.Is(err, ErrPowerCut) {
		t.Errorf("write after the cut: %v, want ErrPowerCut", err)
	}
	r, err := m.Restore()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.ReadFile("keys/a/meta"); err != nil || string(got) != "m" {
		t.Errorf("keys/a/meta: %q %v", got, err)
	}
	if ents, err := r.ReadDir("keys"); err != nil || len(ents) != 2 {
		t.Errorf("keys holds %v (%v), want a and the empty b", ents, err)
	}
	if _, err := r.ReadFile("keys/c/meta"); err == nil {
		t.Error("a write after the cut is in the image")
	}
}

// The audit image keeps the records through the last durable report.
func TestAuditKeepsDurableRecords(t *testing.T) {
	m := New()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l, err := audit.Open(path, audit.WithSync(audit.SyncInterval(time.Hour)), audit.WithDurableObserver(m.DurableObserver))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec := audit.Record{Time: time.Unix(1, 0).UTC(), Op: "test", Result: "ok"}
	for range 2 {
		if _, err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.AppendSync(ctx, rec); err != nil { // seq 3, durable
		t.Fatal(err)
	}
	m.CutAt(m.Events() + 1)
	if _, err := l.AppendSync(ctx, rec); err != nil { // seq 4: after the cut
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, seq := m.Image()
	if seq != 3 {
		t.Fatalf("durable seq %d, want 3", seq)
	}
	out := filepath.Join(t.TempDir(), "a")
	if err := CopyAuditDir(dir, out, "audit.jsonl", seq, 0); err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyLog(filepath.Join(out, "audit.jsonl"))
	if err != nil || res.LastSeq != 3 {
		t.Errorf("image log: %+v, %v; want through seq 3", res, err)
	}
	// A torn tail of the record after: Open cuts it off and says so.
	torn := filepath.Join(t.TempDir(), "b")
	if err := CopyAuditDir(dir, torn, "audit.jsonl", seq, 10); err != nil {
		t.Fatal(err)
	}
	l, err = audit.Open(filepath.Join(torn, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err = audit.VerifyLog(filepath.Join(torn, "audit.jsonl"))
	if err != nil || res.LastSeq != 4 { // 3 + the recovery record
		t.Errorf("torn image log: %+v, %v; want through seq 4", res, err)
	}
	if got := keepThrough([]byte("{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3"), 9); string(got) != "{\"seq\":1}\n{\"seq\":2}\n" {
		t.Errorf("torn line kept: %q", got)
	}
}

// With segments: a rotation after the cut leaves the file that was
// current at the cut as the image's current file, and the image opens
// and verifies through the durable seq, with or without a torn tail.
func TestAuditSegmentsImage(t *testing.T) {
	for _, tail := range []int{0, 1, 150} {
		m := New()
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		l, err := audit.Open(path, audit.WithSync(audit.SyncInterval(time.Hour)), audit.WithSegmentSize(audit.MinSegmentSize),
			audit.WithDurableObserver(m.DurableObserver))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		rec := audit.Record{Time: time.Unix(1, 0).UTC(), Op: "test", Result: "ok", Detail: "a detail that makes the record longer"}
		for i := range 60 {
			if i == 30 {
				if _, err := l.AppendSync(ctx, rec); err != nil {
					t.Fatal(err)
				}
				m.CutNow()
			}
			if _, err := l.Append(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		_, _, seq := m.Image()
		if seq != 31 {
			t.Fatalf("durable through %d, want 31", seq)
		}
		out := filepath.Join(t.TempDir(), "a")
		if err := CopyAuditDir(dir, out, "audit.jsonl", seq, tail); err != nil {
			t.Fatal(err)
		}
		l, err = audit.Open(filepath.Join(out, "audit.jsonl"))
		if err != nil {
			t.Fatalf("tail %d: the image does not open: %v", tail, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		res, err := audit.VerifyLog(filepath.Join(out, "audit.jsonl"))
		if err != nil || res.LastSeq < seq || res.Segments < 2 {
			t.Errorf("tail %d: image log %+v, %v; want through seq %d or more, in segments", tail, res, err, seq)
		}
	}
}

// Reboot carries the image over, durable, and can be cut again.
func TestReboot(t *testing.T) {
	m := New()
	if err := m.Storage().WriteFile("a/f", []byte("1")); err != nil {
		t.Fatal(err)
	}
	m.CutNow()
	n, err := m.Reboot()
	if err != nil {
		t.Fatal(err)
	}
	if got := image(t, n)["a/f"]; string(got) != "1" {
		t.Errorf("after reboot: %q, want 1", got)
	}
	n.CutAt(n.Events() + 5) // the overwrite's dir fsync
	if err := n.Storage().WriteFile("a/f", []byte("2")); !errors.Is(err, ErrPowerCut) {
		t.Errorf("overwrite: %v, want ErrPowerCut", err)
	}
	if got := image(t, n)["a/f"]; string(got) != "1" {
		t.Errorf("second cut before the dir fsync: %q, want 1", got)
	}
}

// Concurrent writes of different files in one directory: with no cut,
// every write that returned is in the image. A directory fsync must not
// apply what it saw of the directory after a later fsync applied more
// (a stale view would drop files it never saw as removed).
func TestConcurrentWritesInOneDirectory(t *testing.T) {
	const writers, each = 8, 50
	m := New()
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				name := fmt.Sprintf("a/p/k%d-%d", w, i)
				if err := m.Storage().WriteFile(name, []byte(name)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	files := image(t, m)
	for w := range writers {
		for i := range each {
			name := fmt.Sprintf("a/p/k%d-%d", w, i)
			if string(files[name]) != name {
				t.Errorf("%s: image holds %q after its write returned", name, files[name])
			}
		}
	}
}
