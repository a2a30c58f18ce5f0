package privfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "secret", 0o600)
	b, err := Read(good, "test file", 16)
	if err != nil || string(b) != "secret" {
		t.Fatalf("Read = %q, %v", b, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		max  int
		want provider.Code
	}{
		{"missing", filepath.Join(dir, "missing"), 16, provider.ENOENT},
		{"symlink", link, 16, provider.EPERM},
		{"directory", dir, 16, provider.EPERM},
		{"group readable", write("g", "x", 0o640), 16, provider.EPERM},
		{"world readable", write("w", "x", 0o604), 16, provider.EPERM},
		{"too large", write("big", "0123456789", 0o600), 4, provider.EMSGSIZE},
	}
	for _, c := range cases {
		_, err := Read(c.path, "test file", c.max)
		if code, _ := provider.CodeOf(err); code != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if os.Geteuid() == 0 {
		other := write("other", "x", 0o600)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(other, "test file", 16); !errors.Is(err, provider.ErrPermission) {
			t.Errorf("file of another owner: %v, want EPERM", err)
		}
	} else {
		t.Log("not root: the other-owner case needs chown and is skipped")
	}
}
