package audit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

func TestOpenRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the log path
		code  provider.Code
		msg   string
	}{
		{"file is a symlink", func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "elsewhere.jsonl")
			writeRecords(t, target, 2)
			mustDo(t, os.Symlink(target, filepath.Join(dir, "audit.jsonl")))
			return filepath.Join(dir, "audit.jsonl")
		}, provider.EIO, "is a symlink"},
		{"dangling symlink", func(t *testing.T, dir string) string {
			mustDo(t, os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "audit.jsonl")))
			return filepath.Join(dir, "audit.jsonl")
		}, provider.EIO, "is a symlink"},
		{"directory is a symlink", func(t *testing.T, dir string) string {
			mustDo(t, os.Mkdir(filepath.Join(dir, "real"), 0o700))
			mustDo(t, os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "audit")))
			return filepath.Join(dir, "audit", "audit.jsonl")
		}, provider.EIO, "is a symlink"},
		{"file mode 0644", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			writeRecords(t, p, 1)
			mustDo(t, os.Chmod(p, 0o644))
			return p
		}, provider.EIO, "has mode 0644, want 0600"},
		{"file mode 0640", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			mustDo(t, os.WriteFile(p, nil, 0o600))
			mustDo(t, os.Chmod(p, 0o640))
			return p
		}, provider.EIO, "has mode 0640"},
		{"directory writable by others", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "audit")
			mustDo(t, os.Mkdir(d, 0o700))
			mustDo(t, os.Chmod(d, 0o777))
			return filepath.Join(d, "audit.jsonl")
		}, provider.EIO, "writable by group or others"},
		{"directory writable by group", func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "audit")
			mustDo(t, os.Mkdir(d, 0o700))
			mustDo(t, os.Chmod(d, 0o770))
			return filepath.Join(d, "audit.jsonl")
		}, provider.EIO, "writable by group or others"},
		{"hard link", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			writeRecords(t, p, 1)
			mustDo(t, os.Link(p, filepath.Join(dir, "copy.jsonl")))
			return p
		}, provider.EIO, "2 hard links"},
		{"path is a directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			mustDo(t, os.Mkdir(p, 0o700))
			return p
		}, provider.EIO, "audit.jsonl"},
		{"path is a FIFO", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "audit.jsonl")
			mustDo(t, syscall.Mkfifo(p, 0o600))
			return p
		}, provider.EIO, "not a regular file"},
		{"parent directory missing", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "a", "b", "audit.jsonl")
		}, provider.EIO, "create audit directory"},
		{"empty path", func(*testing.T, string) string { return "" }, provider.EINVAL, "invalid audit log path"},
		{"NUL in path", func(_ *testing.T, dir string) string { return dir + "/a\x00b" }, provider.EINVAL, "invalid audit log path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := c.setup(t, dir)
			l, err := audit.Open(path)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%s) succeeded, want %v %q", path, c.code, c.msg)
			}
			wantCode(t, err, c.code)
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not say %q", err, c.msg)
			}
		})
	}
}

func TestOpenRefusesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files to another uid; run the tests as root to cover it")
	}
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.jsonl")
		writeRecords(t, p, 1)
		mustDo(t, os.Chown(p, 12345, 12345))
		_, err := audit.Open(p)
		wantCode(t, err, provider.EIO)
		if !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Fatalf("error %q does not name the owner", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "audit")
		mustDo(t, os.Mkdir(d, 0o700))
		mustDo(t, os.Chown(d, 12345, 12345))
		_, err := audit.Open(filepath.Join(d, "audit.jsonl"))
		wantCode(t, err, provider.EIO)
		if !strings.Contains(err.Error(), "owned by uid 12345") {
			t.Fatalf("error %q does not name the owner", err)
		}
	})
}

func TestOpenTwice(t *testing.T) {
	path := logPath(t)
	l := openLog(t, path)
	_, err := audit.Open(path)
	wantCode(t, err, provider.EUNAVAILABLE)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := audit.Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	mustDo(t, l2.Close())
}

func TestVerifyFileMissing(t *testing.T) {
	_, err := audit.VerifyFile(filepath.Join(t.TempDir(), "none.jsonl"))
	wantCode(t, err, provider.ENOENT)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v is not ErrNotExist", err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
