package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// result is one keystorectl run.
type result struct {
	code   int
	stdout []byte
	stderr string
}

// ctl runs keystorectl in-process with $KEYSTORE_SOCKET set to sock.
func ctl(t *testing.T, sock string, stdin []byte, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runEnv(args, bytes.NewReader(stdin), &out, &errOut, func(k string) string {
		if k == SocketEnv {
			return sock
		}
		return ""
	})
	return result{code: code, stdout: out.Bytes(), stderr: errOut.String()}
}

// ok runs keystorectl and fails the test unless it exits 0.
func ok(t *testing.T, sock string, stdin []byte, args ...string) result {
	t.Helper()
	r := ctl(t, sock, stdin, args...)
	if r.code != 0 {
		t.Fatalf("keystorectl %s: exit %d, stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// fails runs keystorectl and checks the exit status and the stderr format.
func fails(t *testing.T, sock string, stdin []byte, want int, args ...string) result {
	t.Helper()
	r := ctl(t, sock, stdin, args...)
	if r.code != want {
		t.Fatalf("keystorectl %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), r.code, want, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "keystorectl: error: ") && !strings.Contains(r.stderr, "\nkeystorectl: error: ") {
		t.Errorf("keystorectl %s: stderr %q has no 'keystorectl: error:' line", strings.Join(args, " "), r.stderr)
	}
	return r
}

// decode parses stdout as exactly one JSON object.
func decode(t *testing.T, r result) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.stdout))
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("stdout %q is not a JSON object: %v", r.stdout, err)
	}
	if dec.More() {
		t.Fatalf("stdout %q holds more than one JSON value", r.stdout)
	}
	if !bytes.HasSuffix(r.stdout, []byte("\n")) || bytes.Count(r.stdout, []byte("\n")) != 1 {
		t.Errorf("stdout %q is not one line", r.stdout)
	}
	return m
}

// startDaemon starts keystored's server in the test process
// (clienttest).
func startDaemon(t *testing.T, opts clienttest.Options) *clienttest.Server {
	t.Helper()
	return clienttest.Start(t, opts)
}
