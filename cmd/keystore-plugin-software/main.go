// Command keystore-plugin-software is keystored's software provider as a
// provider plugin: private keys come from crypto/rand and exist outside
// the plugin only wrapped under the key-encryption key (KEK) in
// --kek-file. The daemon starts it; it is not meant to be run by hand.
//
//	keystore-plugin-software --kek-file /var/lib/keystored/kek
//
// --kek-file is required and absolute. If the file does not exist it is
// created (32 random bytes, mode 0600); an existing file must be a
// regular file of exactly 32 bytes, mode 0600 or stricter, owned by the
// plugin's user. Every handle the daemon stores is wrapped under this KEK,
// so it must be the same file across restarts of the plugin: keys made
// under another KEK cannot be used.
//
// Pin the binary in the daemon's configuration with its SHA-256:
//
//	keystored --provider-plugin /usr/libexec/keystored/keystore-plugin-software \
//	    --provider-sha256 "$(sha256sum /usr/libexec/keystored/keystore-plugin-software | cut -d' ' -f1)"
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/software"
)

const name = "keystore-plugin-software"

func main() {
	// Before any secret is read: no core dump, no same-uid debugger.
	if err := plugin.DisableCoreDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, builds the provider and serves it; it returns the exit
// status when it does not serve.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	kekFile := fs.String("kek-file", "", "absolute `path` of the 32-byte key-encryption key file (created 0600 if missing); required")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s --kek-file PATH\n\nkeystored's software provider as a plugin; the keystore daemon starts it.\n\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: error: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	if *kekFile == "" {
		fmt.Fprintf(stderr, "%s: error: --kek-file PATH is required: every key is kept wrapped under this "+
			"key-encryption key, and the same file must be used across plugin restarts or the keys are lost\n", name)
		return 2
	}
	if !filepath.IsAbs(*kekFile) {
		fmt.Fprintf(stderr, "%s: error: --kek-file %q must be an absolute path (the plugin runs in a private working directory)\n", name, *kekFile)
		return 2
	}
	if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
		fmt.Fprintf(stderr, "%s: error: this binary is a keystored provider plugin: the keystore daemon starts it "+
			"(keystored --provider-plugin PATH --provider-sha256 HEX); it does nothing when run by hand\n", name)
		return 1
	}
	p, err := software.New(software.Config{KEKFile: *kekFile})
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 1
	}
	plugin.Serve(p)
	return 0
}
