// Command keystore-plugin-pkcs11 is keystored's PKCS#11 provider as a
// provider plugin: keys are generated inside a PKCS#11 token (an HSM, a
// smart card, SoftHSM2) and never leave it. The daemon starts it; it is
// not meant to be run by hand. It needs cgo (github.com/miekg/pkcs11),
// which stays in this process and out of the daemon.
//
//	keystore-plugin-pkcs11 --module /usr/lib/softhsm/libsofthsm2.so \
//	    --token-label keystored --pin-file /etc/keystored/token.pin
//
// Flags:
//
//	--module PATH        absolute path of the token's PKCS#11 library; required
//	--token-label LABEL  label of the token to use; required
//	--pin-file PATH      file holding the user PIN (mode 0600 or 0400, owned by
//	                     the plugin's user, not a symlink; one trailing newline
//	                     is ignored)
//	--pool-size N        sessions kept open and logged in (0: min(token limit,
//	                     2×GOMAXPROCS, 8))
//	--name NAME          provider name, part of every key reference (default pkcs11)
//	--algorithms LIST    offer only these of the algorithms the token supports
//	                     (comma-separated, e.g. ecdsa-p256-sha256,hmac-sha256;
//	                     default: all of them)
//	--shared-token       other applications create and destroy objects on the
//	                     token: confirm cached object handles before every use
//
// The PIN comes from --pin-file or, without it, from the environment
// variable KEYSTORE_PKCS11_PIN (which the daemon passes with the plugin's
// environment); never from an argument: --pin is refused, because a
// command line is visible to every user of the host. A PIN file is the
// better choice: a process's environment is readable by its user
// (/proc/PID/environ) for as long as it runs.
//
// The plugin gets only the environment the daemon gives it: a module that
// needs variables (SoftHSM2 reads SOFTHSM2_CONF) must have them in the
// daemon's plugin configuration.
//
// Pin the binary in the daemon's configuration with its SHA-256, as any
// provider plugin. docs/hardware.md has the whole setup.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/pkcs11"
)

const name = "keystore-plugin-pkcs11"

// pinEnv is the environment variable that may hold the PIN.
const pinEnv = "KEYSTORE_PKCS11_PIN"

func main() {
	// Before any secret is read: no core dump, no same-uid debugger.
	if err := plugin.DisableCoreDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run parses args, builds the provider and serves it; it returns the exit
// status.
func run(args []string, stderr io.Writer) int {
	fail := func(status int, format string, a ...any) int {
		fmt.Fprintf(stderr, name+": error: "+format+"\n", a...)
		return status
	}
	if refusePIN(args) {
		return fail(2, "--pin is refused: a PIN on the command line is visible to every user of the host "+
			"(ps, /proc/PID/cmdline)\nhint: put the PIN in a file (chmod 600) and pass --pin-file PATH, "+
			"or set %s in the plugin's environment", pinEnv)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", "", "absolute `path` of the token's PKCS#11 library; required")
	label := fs.String("token-label", "", "`label` of the token to use; required")
	pinFile := fs.String("pin-file", "", "`path` of a file holding the user PIN (mode 0600, not a symlink); else $"+pinEnv)
	poolSize := fs.Int("pool-size", 0, "`sessions` kept open and logged in; 0 means min(token limit, 2×GOMAXPROCS, 8)")
	shared := fs.Bool("shared-token", false, "other applications create and destroy objects on this token: confirm cached object handles before every use")
	provName := fs.String("name", pkcs11.DefaultName, "provider `name`, part of every key reference")
	algList := fs.String("algorithms", "", "comma-separated `list` of the algorithms to offer, of those the token supports (default: all)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s --module PATH --token-label LABEL [--pin-file PATH] [--pool-size N] [--shared-token] [--name NAME] [--algorithms LIST]\n\n"+
			"keystored's PKCS#11 provider as a plugin; the keystore daemon starts it.\n"+
			"The PIN comes from --pin-file or $%s, never from an argument.\n\n", name, pinEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return fail(2, "unexpected argument %q", fs.Arg(0))
	case *module == "":
		return fail(2, "--module PATH is required: the absolute path of the token's PKCS#11 library "+
			"(SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")
	case !filepath.IsAbs(*module):
		return fail(2, "--module %q must be an absolute path (the plugin runs in a private working directory)", *module)
	case *label == "":
		return fail(2, "--token-label LABEL is required")
	case *pinFile != "" && !filepath.IsAbs(*pinFile):
		return fail(2, "--pin-file %q must be an absolute path (the plugin runs in a private working directory)", *pinFile)
	}
	algs, err := parseAlgorithms(*algList)
	if err != nil {
		return fail(2, "%v", err)
	}
	if _, err := os.Stat(*module); err != nil {
		return fail(1, "--module %q: %v", *module, err)
	}
	pin, err := readPIN(*pinFile)
	if err != nil {
		return fail(1, "%v", err)
	}
	defer pin.Wipe()
	if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
		return fail(1, "this binary is a keystored provider plugin: the keystore daemon starts it "+
			"(keystored --provider-plugin PATH --provider-sha256 HEX); it does nothing when run by hand")
	}
	p, err := pkcs11.New(pkcs11.Config{
		Module:      *module,
		TokenLabel:  *label,
		PIN:         pin,
		PoolSize:    *poolSize,
		SharedToken: *shared,
		Name:        *provName,
		Algorithms:  algs,
	})
	if err != nil {
		return fail(1, "%v", err)
	}
	plugin.Serve(p)
	if err := p.Close(); err != nil {
		return fail(1, "closing the token: %v", err)
	}
	return 0
}

// parseAlgorithms parses --algorithms: names separated by commas, spaces
// around them ignored; empty means every algorithm the token supports.
// pkcs11.New checks the names.
func parseAlgorithms(list string) ([]provider.Algorithm, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var out []provider.Algorithm
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return nil, fmt.Errorf("--algorithms %q has an empty name", list)
		}
		out = append(out, provider.Algorithm(f))
	}
	return out, nil
}

// refusePIN reports whether args try to pass a PIN as an argument (-pin,
// --pin, -pin=X, --pin=X) before a "--" terminator. It never echoes the
// argument.
func refusePIN(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		flagName, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && flagName == "pin" {
			return true
		}
	}
	return false
}

// readPIN returns the PIN from pinFile, or when it is empty from
// $KEYSTORE_PKCS11_PIN, which it then removes from the environment.
func readPIN(pinFile string) (secret.Bytes, error) {
	env, inEnv := os.LookupEnv(pinEnv)
	if inEnv {
		if err := os.Unsetenv(pinEnv); err != nil {
			return secret.Bytes{}, fmt.Errorf("clearing $%s: %w", pinEnv, err)
		}
	}
	switch {
	case pinFile != "" && inEnv:
		return secret.Bytes{}, fmt.Errorf("both --pin-file and $%s are set; give the PIN one way", pinEnv)
	case pinFile != "":
		return pkcs11.ReadPINFile(pinFile)
	case !inEnv || env == "":
		return secret.Bytes{}, fmt.Errorf("no PIN: pass --pin-file PATH (a file of mode 0600 holding the user PIN) or set $%s", pinEnv)
	case len(env) > pkcs11.MaxPIN:
		return secret.Bytes{}, fmt.Errorf("$%s is longer than %d bytes", pinEnv, pkcs11.MaxPIN)
	}
	return secret.New([]byte(env)), nil
}
