// Command keystore-plugin-software is keystored's software provider as a
// provider plugin: private keys come from crypto/rand and exist outside
// the plugin only wrapped under the key-encryption key (KEK). The daemon
// starts it; it is not meant to be run by hand.
//
//	keystore-plugin-software --kek-file /var/lib/keystored/kek
//	keystore-plugin-software --kek-passphrase-credential kek-passphrase --kek-params-file /var/lib/keystored/kek.params
//
// Exactly one KEK source, paths absolute (the plugin runs in a private
// working directory): --kek-file PATH, a file of the 32 raw KEK bytes; or
// a passphrase stretched with Argon2id, read from --kek-passphrase-file
// PATH or from the systemd credential --kek-passphrase-credential NAME
// ($CREDENTIALS_DIRECTORY/NAME: the daemon must pass the variable with
// --provider-env CREDENTIALS_DIRECTORY), with --kek-params-file PATH (the
// salt, parameters and verifier). Every file must be a regular file, mode
// 0600 or stricter, owned by the plugin's user; a passphrase is at most
// 1024 bytes, one trailing newline stripped. Every handle the daemon
// stores is wrapped under this KEK, so it must be the same across
// restarts of the plugin: keys made under another KEK cannot be used.
//
// A missing KEK file or parameters file is created (mode 0600) only for a
// state that holds no keys: when the daemon says so with
// KEYSTORED_STATE_HOLDS_KEYS=0 and KEYSTORED_STATE_KEK empty
// (docs/providers.md). Otherwise, the variables unset included, the
// plugin refuses to start, naming the missing file and the KEK
// fingerprint the state records: restore it from its backup.
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
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/keksource"
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
	kek := keksource.Options{
		File:                 keksource.Setting{From: "--kek-file"},
		PassphraseFile:       keksource.Setting{From: "--kek-passphrase-file"},
		PassphraseCredential: keksource.Setting{From: "--kek-passphrase-credential"},
		ParamsFile:           keksource.Setting{From: "--kek-params-file"},
	}
	fs.StringVar(&kek.File.Value, "kek-file", "", "absolute `path` of the 32-byte key-encryption key file (created 0600 for a new state)")
	fs.StringVar(&kek.PassphraseFile.Value, "kek-passphrase-file", "", "derive the KEK (Argon2id) from the passphrase in the absolute `path`")
	fs.StringVar(&kek.PassphraseCredential.Value, "kek-passphrase-credential", "", "derive the KEK from the systemd credential `NAME` ($CREDENTIALS_DIRECTORY/NAME; pass --provider-env CREDENTIALS_DIRECTORY to the daemon)")
	fs.StringVar(&kek.ParamsFile.Value, "kek-params-file", "", "absolute `path` of the Argon2id parameters file of a passphrase KEK (created 0600 for a new state); required with a passphrase")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s --kek-file PATH | (--kek-passphrase-file PATH | --kek-passphrase-credential NAME) --kek-params-file PATH\n\n"+
			"keystored's software provider as a plugin; the keystore daemon starts it.\n\n", name)
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
	if kek.Values() == ([4]string{}) {
		fmt.Fprintf(stderr, "%s: error: --kek-file PATH is required (or a passphrase: --kek-passphrase-file or --kek-passphrase-credential, "+
			"with --kek-params-file): every key is kept wrapped under this key-encryption key, and the same KEK must be used "+
			"across plugin restarts or the keys are lost\n", name)
		return 2
	}
	src, err := keksource.Resolve(kek, keksource.Defaults{Abs: true}, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 2
	}
	if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
		fmt.Fprintf(stderr, "%s: error: this binary is a keystored provider plugin: the keystore daemon starts it "+
			"(keystored --provider-plugin PATH --provider-sha256 HEX); it does nothing when run by hand\n", name)
		return 1
	}
	state, err := keksource.StateFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 2
	}
	cfg, wipe, err := src.Config(state.MayCreate())
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 1
	}
	p, err := software.New(cfg)
	wipe()
	if errors.Is(err, provider.ErrNotFound) {
		fmt.Fprintf(stderr, "%s: error: %s\n", name, missingKEK(state, src))
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return 1
	}
	plugin.Serve(p)
	return 0
}

// missingKEK is the refusal to start without the KEK file (or the
// passphrase's parameters file) of src.
func missingKEK(s keksource.State, src keksource.Source) string {
	what := "KEK file " + strconv.Quote(src.KEKFile)
	if src.Passphrase() {
		what = "KEK parameters file " + strconv.Quote(src.ParamsFile) + " (its salt: without it the passphrase gives another KEK)"
	}
	recorded := "a KEK whose fingerprint the daemon did not pass (" + keksource.EnvStateKEK + " is empty)"
	if s.KEK != "" {
		recorded = "KEK " + s.KEK + " (the fingerprint recorded in the state's keystore/MANIFEST)"
	}
	why := "the state holds keys (" + keksource.EnvHoldsKeys + "=1, or unset) wrapped under"
	if !s.HoldsKeys {
		why = "the state was made with"
	}
	return fmt.Sprintf("%s is missing, and %s %s; refusing to start rather than make a new KEK, "+
		"under which none of its keys would work: restore the file from its backup (docs/operations.md, \"Backup and restore\")",
		what, why, recorded)
}
