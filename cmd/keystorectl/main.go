// Command keystorectl is the command line client of keystored: it creates,
// imports, rotates, revokes and destroys keys, signs, verifies, seals and
// unseals through the daemon's Unix socket, encrypts files of any size with
// data keys (envelope encryption), encrypts to and decrypts with HPKE keys,
// prints public keys in the usual formats and checks the daemon's audit
// log.
//
//	keystorectl [--socket PATH] [--json] <command>
//
// The socket is --socket, else $KEYSTORE_SOCKET, else
// keystore-state/keystored.sock. Data goes through stdin and stdout by
// default, byte for byte; --json prints one JSON object per command. The
// exit status is 0 on success, the Linux errno of a typed error (EPERM 1,
// ENOENT 2, EKEYREVOKED 128, ...; EUNAVAILABLE 69), or 64 (EX_USAGE)
// for a usage error. docs/cli.md has every command, output shape and exit code.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func main() {
	// x/crypto's agent server logs each refused request with the log
	// package (ssh-agent): keystorectl's style, on stderr.
	log.SetFlags(0)
	log.SetPrefix("keystorectl: ")
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs keystorectl with args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runEnv(args, stdin, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment injected (tests).
func runEnv(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runCtx(context.Background(), args, stdin, stdout, stderr, getenv)
}

// runCtx is runEnv under ctx: a long-running command (ssh-agent) stops
// when it ends (tests).
func runCtx(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{
		ctx:    ctx,
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		getenv: getenv,
	}
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	err := a.setupErr
	if err == nil {
		err = root.Execute()
	}
	a.warnInsecure()
	if err == nil {
		return 0
	}
	if !a.json {
		a.json = hasJSONFlag(args) // flag parsing may have failed before setting it
	}
	return a.fail(err)
}

// app is one run of keystorectl: its streams, flags and connection.
type app struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	// global flags
	socket string
	json   bool

	client   *client.Client
	insecure bool  // the insecure warning was printed
	emitted  bool  // a long-running command printed its JSON object: errors go to stderr only
	setupErr error // building the commands failed (a bug)
}

// setup records the first error of building the commands.
func (a *app) setup(err error) {
	if err != nil && a.setupErr == nil {
		a.setupErr = provider.Errorf(provider.EIO, "keystorectl setup: %w", err)
	}
}

// close closes the connection, if any.
func (a *app) close() {
	if a.client != nil {
		if err := a.client.Close(); err != nil {
			fmt.Fprintf(a.stderr, "keystorectl: warning: %v\n", err)
		}
	}
}

// hasJSONFlag reports whether args hold --json before a "--".
func hasJSONFlag(args []string) bool {
	for _, arg := range args {
		if arg == "--" {
			return false
		}
		if arg == "--json" || arg == "--json=true" {
			return true
		}
	}
	return false
}
