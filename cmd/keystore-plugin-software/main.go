// Command keystore-plugin-software is keystored's software provider as a
// provider plugin: private keys come from crypto/rand and exist outside
// the plugin only wrapped under the key-encryption key (KEK) in
// --kek-file. The daemon starts it; it is not meant to be run by hand.
//
//	keystore-plugin-software --kek-file /var/lib/keystored/kek
//
// --kek-file is required and absolute. An existing file must be a
// regular file of exactly 32 bytes, mode 0600 or stricter, owned by the
// plugin's user. Every handle the daemon stores is wrapped under this KEK,
// so it must be the same file across restarts of the plugin: keys made
// under another KEK cannot be used. A missing file is created (32 random
// bytes, mode 0600) only for a state that holds no keys: when the daemon
// says so with KEYSTORED_STATE_HOLDS_KEYS=0 and KEYSTORED_STATE_KEK empty
// (docs/providers.md). Otherwise, the variables unset included, the
// plugin refuses to start, naming the missing file and the KEK
// fingerprint the state records: restore the KEK from its backup.
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

	"github.com/nexus-os/keystored/core/provider"
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
	state, err := stateFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 2
	}
	p, err := software.New(software.Config{KEKFile: *kekFile, Create: state.mayCreate()})
	if errors.Is(err, provider.ErrNotFound) {
		fmt.Fprintf(stderr, "%s: error: %s\n", name, state.missingKEK(*kekFile))
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 1
	}
	plugin.Serve(p)
	return 0
}

// The variables keystored sets in a plugin's environment
// (docs/providers.md).
const (
	envHoldsKeys = "KEYSTORED_STATE_HOLDS_KEYS"
	envStateKEK  = "KEYSTORED_STATE_KEK"
)

// stateInfo is what the daemon says of its state directory.
type stateInfo struct {
	holdsKeys bool   // true unless the daemon said "0"
	kek       string // the fingerprint its MANIFEST records, or ""
}

// stateFromEnv reads the daemon's variables. KEYSTORED_STATE_HOLDS_KEYS
// unset means the state may hold keys: a KEK is then never created.
func stateFromEnv(getenv func(string) string) (stateInfo, error) {
	s := stateInfo{holdsKeys: true, kek: getenv(envStateKEK)}
	switch v := getenv(envHoldsKeys); v {
	case "0":
		s.holdsKeys = false
	case "1", "":
	default:
		return stateInfo{}, fmt.Errorf("%s=%q: want 0 or 1", envHoldsKeys, v)
	}
	if s.kek != "" {
		if err := provider.CheckKEKFingerprint(s.kek); err != nil {
			return stateInfo{}, fmt.Errorf("%s: %w", envStateKEK, err)
		}
	}
	return s, nil
}

// mayCreate reports whether a missing KEK may be created: only for a
// state that holds no keys and records no KEK.
func (s stateInfo) mayCreate() bool { return !s.holdsKeys && s.kek == "" }

// missingKEK is the refusal to start without the KEK at path.
func (s stateInfo) missingKEK(path string) string {
	recorded := "a KEK whose fingerprint the daemon did not pass (" + envStateKEK + " is empty)"
	if s.kek != "" {
		recorded = "KEK " + s.kek + " (the fingerprint recorded in the state's keystore/MANIFEST)"
	}
	why := "the state holds keys (" + envHoldsKeys + "=1, or unset) wrapped under"
	if !s.holdsKeys {
		why = "the state was made with"
	}
	return fmt.Sprintf("KEK file %q is missing, and %s %s; refusing to start rather than make a new KEK, "+
		"under which none of its keys would work: restore the KEK file from its backup (docs/operations.md, \"Backup and restore\")",
		path, why, recorded)
}
