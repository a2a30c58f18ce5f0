package daemontest

import (
	"os"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestStartDialStop(t *testing.T) {
	d := Start(t, Options{})
	keys := keystorev1.NewKeysClient(d.Dial(t))
	if _, err := keys.Create(t.Context(), &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}); err != nil {
		t.Fatalf("Create through the daemon: %v", err)
	}
	if !strings.Contains(d.Stdout(), "listening on "+d.Socket) {
		t.Errorf("stdout %q does not say where the daemon listens (%s)", d.Stdout(), d.Socket)
	}
	d.Stop()
}

func TestRunVersion(t *testing.T) {
	r := Run(t, Options{Args: []string{"--version"}})
	if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "keystored ") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
}
