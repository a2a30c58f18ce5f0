package main

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
)

// docCommandLines returns the argument lists of the keystorectl command
// lines in docs/cli.md (comments, pipes and redirections dropped).
func docCommandLines(tb testing.TB) [][]string {
	tb.Helper()
	data, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		tb.Fatalf("reading docs/cli.md for seeds: %v", err)
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "keystorectl ")
		if i < 0 || strings.Contains(line[:i], "`") {
			continue
		}
		line = line[i+len("keystorectl "):]
		line, _, _ = strings.Cut(line, "#")
		for _, stop := range []string{" |", " >", " <", "`", "$("} {
			line, _, _ = strings.Cut(line, stop)
		}
		if args := strings.Fields(line); len(args) > 0 {
			out = append(out, args)
		}
	}
	return out
}

// fileFlags are the flags that name files or sockets: inputs using them
// are not run, so that the fuzzer never reads or writes a file of the
// machine it runs on.
var fileFlags = []string{"--in", "--out", "--sig", "--tag", "--state", "--socket", "--agent-socket", "-a"}

// longRunning are the commands that serve until a signal: inputs naming
// them are not run (ssh-agent has its own tests, sshagent_test.go).
var longRunning = []string{"ssh-agent"}

// FuzzCommandLine runs keystorectl in-process with arbitrary arguments
// (NUL-separated) and standard input against keystored's server
// (clienttest, in the test process) holding a signing and a sealing key:
// every run ends with exit status 0, 64 (usage), 69 (unavailable) or the
// errno of a keystored code, with a
// "keystorectl: error:" line on stderr when it fails, and never panics.
// This covers KEY@N references, --format, --alg, --rotation-period,
// --aad, --app, --checkpoint, --json and the command tree. Seeded with
// every command line of docs/cli.md.
func FuzzCommandLine(f *testing.F) {
	srv := clienttest.Start(f, clienttest.Options{App: "web"})
	var setupOut, setupErr bytes.Buffer
	env := func(k string) string {
		if k == SocketEnv {
			return srv.Socket
		}
		return ""
	}
	for _, args := range [][]string{{"create", "signing/release", "--alg", "ed25519"}, {"create", "db/secrets"}} {
		if code := runEnv(args, bytes.NewReader(nil), &setupOut, &setupErr, env); code != 0 {
			f.Fatalf("setup %v: exit %d: %s", args, code, setupErr.String())
		}
	}
	valid := map[int]bool{0: true, exitUsage: true, exitUnavailable: true}
	for _, c := range provider.Codes() {
		valid[int(c.Errno())] = true
	}
	lines := docCommandLines(f)
	for _, args := range lines {
		f.Add(strings.Join(args, "\x00"), []byte("hello"))
	}
	f.Add("sign\x00signing/release", []byte("message"))
	f.Add("pubkey\x00signing/release@1\x00--format\x00jwk", []byte(nil))
	f.Add("--json\x00seal\x00db/secrets\x00--aad\x00ctx", []byte("plaintext"))
	if len(lines) == 0 {
		f.Fatal("empty seed set: no keystorectl command line found in docs/cli.md")
	}
	f.Fuzz(func(t *testing.T, argv string, stdin []byte) {
		var args []string
		if argv != "" {
			args = strings.Split(argv, "\x00")
		}
		for _, a := range args {
			for _, ff := range fileFlags {
				if strings.HasPrefix(a, ff) {
					return
				}
			}
			if slices.Contains(longRunning, a) {
				return
			}
		}
		var stdout, stderr bytes.Buffer
		code := runEnv(args, bytes.NewReader(stdin), &stdout, &stderr, env)
		if !valid[code] {
			t.Fatalf("keystorectl %q: exit %d is not 0, 64, 69 or a keystored errno", args, code)
		}
		if code != 0 && !strings.HasPrefix(stderr.String(), "keystorectl: error: ") && !strings.Contains(stderr.String(), "\nkeystorectl: error: ") {
			t.Fatalf("keystorectl %q: exit %d without a 'keystorectl: error:' line: %q", args, code, stderr.String())
		}
	})
}
