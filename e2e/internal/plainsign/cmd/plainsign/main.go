// Command plainsign serves the plainsign baseline (package plainsign) on
// a Unix socket with a fresh Ed25519 key, until it is killed. It prints
// plainsign.ReadyLine and the public key in hex once it serves.
package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"fmt"
	"os"

	"github.com/nexus-os/keystored/e2e/internal/plainsign"
)

func main() {
	socket := flag.String("socket", "", "Unix socket to listen on")
	flag.Parse()
	if err := run(*socket); err != nil {
		fmt.Fprintln(os.Stderr, "plainsign:", err)
		os.Exit(1)
	}
}

func run(socket string) error {
	if socket == "" {
		return fmt.Errorf("--socket is required")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	ln, err := plainsign.Listen(socket)
	if err != nil {
		return err
	}
	s := plainsign.NewServer(priv)
	fmt.Println(plainsign.ReadyLine + hex.EncodeToString(pub))
	return s.Serve(ln)
}
