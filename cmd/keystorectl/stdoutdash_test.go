package main

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/nexus-os/keystored/client/clienttest"
)

// "--out -" is stdout: with --json, stdout holds the one JSON object, which
// carries the data (never the raw bytes beside it, never nothing).
func TestJSONOutDash(t *testing.T) {
	s := startDaemon(t, clienttest.Options{}).Socket
	ok(t, s, nil, "create", "sig/k", "--alg", "ed25519")
	ok(t, s, nil, "create", "db/box")

	m := decode(t, ok(t, s, []byte("hello"), "--json", "sign", "sig/k", "--out", "-"))
	if sig, err := base64.StdEncoding.DecodeString(m["signature"].(string)); err != nil || len(sig) != 64 {
		t.Errorf("sign --json --out - = %v, want the signature in the object", m)
	}

	sealed := ok(t, s, binaryInput, "seal", "db/box").stdout
	m = decode(t, ok(t, s, sealed, "--json", "unseal", "db/box", "--out", "-"))
	pt, _ := m["plaintext"].(string)
	if got, err := base64.StdEncoding.DecodeString(pt); err != nil || !bytes.Equal(got, binaryInput) {
		t.Errorf("unseal --json --out - = %v, want the plaintext in the object", m)
	}
}
