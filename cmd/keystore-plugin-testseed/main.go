// Command keystore-plugin-testseed is INSECURE: keystored's deterministic
// test provider (package providers/testseed) as a provider plugin. Every
// private key derives from the seed given on the command line, so anyone
// who knows the seed knows every key. It exists for reproducible tests
// only; never give it real keys.
//
// It refuses to start unless told explicitly that this is understood, by
// the --insecure flag or KEYSTORE_PLUGIN_INSECURE=1 in its environment:
//
//	keystore-plugin-testseed --insecure --seed 000102030405060708090a0b0c0d0e0f
//
// --seed is required: 8 to 64 bytes in hex. The provider announces
// Secure=false, so a keystore made with it refuses a secure provider and
// the reverse.
package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/testseed"
)

const name = "keystore-plugin-testseed"

// insecureEnv is the environment variable that, set to 1, allows the
// plugin to start like --insecure does.
const insecureEnv = "KEYSTORE_PLUGIN_INSECURE"

func main() {
	// Before any secret is read: no core dump, no same-uid debugger.
	if err := plugin.DisableCoreDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// run parses args, builds the INSECURE provider and serves it; it returns
// the exit status when it does not serve.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	insecure := fs.Bool("insecure", false, "acknowledge that this plugin is INSECURE (every key derives from the seed); required unless "+insecureEnv+"=1")
	seedHex := fs.String("seed", "", "the seed, 8 to 64 bytes in `hex`; required")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s --insecure --seed HEX\n\nINSECURE deterministic test provider as a plugin, for tests only; the keystore daemon starts it.\n\n", name)
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
	if !*insecure && getenv(insecureEnv) != "1" {
		fmt.Fprintf(stderr, "%s: refusing to start: this provider is INSECURE. Every private key it makes derives "+
			"from the seed, so anyone who knows the seed knows every key; it exists for tests only. "+
			"Pass --insecure (or set %s=1) to run it anyway.\n", name, insecureEnv)
		return 2
	}
	if *seedHex == "" {
		fmt.Fprintf(stderr, "%s: error: --seed HEX is required (%d to %d bytes)\n", name, testseed.MinSeed, testseed.MaxSeed)
		return 2
	}
	seed, err := hex.DecodeString(*seedHex)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: --seed is not hex\n", name)
		return 2
	}
	if getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
		fmt.Fprintf(stderr, "%s: error: this binary is a keystored provider plugin: the keystore daemon starts it "+
			"(keystored --provider-plugin PATH --provider-sha256 HEX); it does nothing when run by hand\n", name)
		return 1
	}
	p, err := testseed.NewInsecure(seed, testseed.AllowOutsideTests())
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 2
	}
	fmt.Fprintf(stderr, "[WARN] %s: INSECURE provider: every key derives from the seed; for tests only\n", name)
	plugin.Serve(p)
	return 0
}
