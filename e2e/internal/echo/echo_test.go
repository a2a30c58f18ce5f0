package echo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

func TestEcho(t *testing.T) {
	dir, err := os.MkdirTemp("", "echo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stop := Serve(ln)
	defer stop()
	cc, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := Call(context.Background(), cc, &keystorev1.SignRequest{Key: "p/k", Message: []byte("m")})
	if err != nil || resp.GetKey() != "p/k" || len(resp.GetSignature()) != 64 || resp.GetVersion() != 1 {
		t.Fatalf("Echo = %v, %v", resp, err)
	}
}
