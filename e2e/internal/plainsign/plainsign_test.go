package plainsign

import (
	"context"
	"crypto/ed25519"
	"os"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestSignsInItsOwnProcess runs the baseline's binary and checks that it
// answers a real Ed25519 signature of the request's message.
func TestSignsInItsOwnProcess(t *testing.T) {
	p := Start(t)
	if p.Pid == os.Getpid() {
		t.Fatal("the baseline runs in the test's process")
	}
	cc, err := Dial(p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	msg := []byte("message to sign")
	resp, err := Call(context.Background(), cc, &keystorev1.SignRequest{Key: "p/k", Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetKey() != "p/k" || resp.GetVersion() != 1 || !ed25519.Verify(p.Public, msg, resp.GetSignature()) {
		t.Fatalf("Sign = %v: not a signature of the message by %x", resp, p.Public)
	}
}
