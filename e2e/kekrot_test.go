package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// TestKEKRotateRealDaemon: keystorectl kek rotate on a running daemon
// (built-in software provider, KEK file <state>/kek) rewraps its keys
// under a new KEK: the KEK file's content changes, nothing is left
// pending, the keys sign and unseal, also after a restart; the old KEK
// file put back is refused at start (the MANIFEST records the new KEK),
// and the restored new one starts again.
func TestKEKRotateRealDaemon(t *testing.T) {
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state")
	d := daemontest.Start(t, daemontest.Options{State: state})
	c := dial(t, d)
	for _, k := range []struct {
		name string
		alg  client.Algorithm
	}{{"kek/sign", client.Ed25519}, {"kek/pq", client.MLDSA44}, {"kek/box", client.XChaCha20Poly1305}} {
		if _, err := c.Create(ctx, k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Rotate(ctx, "kek/box"); err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal(ctx, "kek/box", []byte("before the rotation"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kekPath := filepath.Join(state, "kek")
	oldKEK, err := os.ReadFile(kekPath)
	if err != nil {
		t.Fatal(err)
	}
	var before struct{ Current string }
	if err := json.Unmarshal(ctlOK(t, d, nil, "--json", "kek", "status").stdout, &before); err != nil || len(before.Current) != 16 {
		t.Fatalf("kek status: %+v, %v", before, err)
	}

	r := ctlOK(t, d, nil, "kek", "rotate")
	if want := "rotated KEK " + before.Current + " -> "; !strings.HasPrefix(string(r.stdout), want) || !strings.Contains(string(r.stdout), "3 keys, 4 handles rewrapped") {
		t.Fatalf("kek rotate printed %q, want %q... 3 keys, 4 handles rewrapped", r.stdout, want)
	}
	newKEK, err := os.ReadFile(kekPath)
	if err != nil || bytes.Equal(newKEK, oldKEK) || len(newKEK) != 32 {
		t.Fatalf("KEK file after the rotation: %d bytes, changed %t (%v)", len(newKEK), !bytes.Equal(newKEK, oldKEK), err)
	}
	if _, err := os.Lstat(kekPath + ".next"); !os.IsNotExist(err) {
		t.Fatalf("kek.next left after the rotation: %v", err)
	}
	use := func(c *client.Client) {
		t.Helper()
		for _, k := range []string{"kek/sign", "kek/pq"} {
			if _, err := c.Sign(ctx, k, []byte("m")); err != nil {
				t.Fatalf("sign with %s: %v", k, err)
			}
		}
		pt, err := c.Unseal(ctx, "kek/box", sealed.Data, nil)
		if err != nil || string(pt.Plaintext) != "before the rotation" {
			t.Fatalf("unseal of data sealed before the rotation: %v", err)
		}
	}
	use(c)
	d.Stop()

	d = daemontest.Start(t, daemontest.Options{State: state})
	use(dial(t, d))
	var after struct{ Current, Pending string }
	if err := json.Unmarshal(ctlOK(t, d, nil, "--json", "kek", "status").stdout, &after); err != nil || after.Current == before.Current || after.Pending != "" {
		t.Fatalf("kek status after a restart: %+v, %v", after, err)
	}
	d.Stop()

	// The old KEK no longer opens the state.
	if err := os.WriteFile(kekPath, oldKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	res := daemontest.Run(t, daemontest.Options{State: state})
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "wrapped under KEK "+after.Current) {
		t.Fatalf("start with the old KEK: exit %d, stderr:\n%s", res.ExitCode, res.Stderr)
	}
	if err := os.WriteFile(kekPath, newKEK, 0o600); err != nil {
		t.Fatal(err)
	}
	d = daemontest.Start(t, daemontest.Options{State: state})
	use(dial(t, d))
}
