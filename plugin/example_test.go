package plugin_test

import (
	"flag"
	"fmt"
	"os"

	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/software"
)

// A complete provider plugin: parse the flags, build the provider, serve
// it. Build it with go build, pin its SHA-256 in the daemon's
// configuration, and the daemon runs it:
//
//	keystored --provider-plugin /usr/libexec/my-plugin \
//	    --provider-sha256 "$(sha256sum /usr/libexec/my-plugin | cut -d' ' -f1)"
//
// Everything the plugin writes to stderr ends up in the daemon's log: a
// provider must never print payloads or key material.
//
// The example is compiled, not run: its body is the plugin's func main.
func ExampleServe() {
	kekFile := flag.String("kek-file", "", "absolute path of the key-encryption key file")
	flag.Parse()
	if *kekFile == "" {
		fmt.Fprintln(os.Stderr, "my-plugin: --kek-file is required")
		os.Exit(2)
	}
	// Make a KEK only for a state that holds no keys, as the daemon says
	// (docs/providers.md); never in place of a lost one.
	create := os.Getenv("KEYSTORED_STATE_HOLDS_KEYS") == "0" && os.Getenv("KEYSTORED_STATE_KEK") == ""
	p, err := software.New(software.Config{KEKFile: *kekFile, Create: create})
	if err != nil {
		fmt.Fprintln(os.Stderr, "my-plugin:", err)
		os.Exit(1)
	}
	plugin.Serve(p) // returns when the daemon stops the plugin
}
