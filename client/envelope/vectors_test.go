package envelope_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/envelope"
)

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors.json (new random salts and nonces)")

// vector is one envelope file of testdata/vectors.json and what
// decrypting it with the fake daemon (fakeKeys: its data keys sealed under
// a fixed key) and AAD gives: the plaintext's SHA-256, or an error code.
type vector struct {
	Name   string `json:"name"`
	AAD    string `json:"aad"`
	File   []byte `json:"file"` // base64
	Result string `json:"result"`
	// PlaintextSHA256 is the hex SHA-256 of the plaintext when Result is
	// "ok".
	PlaintextSHA256 string `json:"plaintext_sha256,omitempty"`
	PlaintextSize   int    `json:"plaintext_size,omitempty"`
}

const vectorsPath = "testdata/vectors.json"

// makeVectors encrypts the vectors' plaintexts and derives the bad files.
func makeVectors(t testing.TB) []vector {
	f := newFake()
	var out []vector
	good := func(name, aad string, n int) []byte {
		pt := patternBytes(n)
		file := encrypt(t, f, pt, envelope.EncryptOptions{AAD: []byte(aad)})
		sum := sha256.Sum256(pt)
		out = append(out, vector{Name: name, AAD: aad, File: file, Result: "ok", PlaintextSHA256: hex.EncodeToString(sum[:]), PlaintextSize: n})
		return file
	}
	bad := func(name, aad string, file []byte, result string) {
		out = append(out, vector{Name: name, AAD: aad, File: file, Result: result})
	}
	good("empty plaintext", "", 0)
	file := good("100 bytes with an aad", "v1 vector", 100)
	flip := func(i int) []byte { b := bytes.Clone(file); b[i] ^= 1; return b }
	bad("a flipped tag bit", "v1 vector", flip(len(file)-1), "EBADMSG")
	bad("a flipped ciphertext bit", "v1 vector", flip(len(file)-50), "EBADMSG")
	bad("a flipped sealed-key bit", "v1 vector", flip(25), "EBADMSG")
	bad("the last byte cut", "v1 vector", file[:len(file)-1], "EBADMSG")
	bad("the stream cut", "v1 vector", file[:len(file)-116], "EBADMSG")
	bad("another aad", "v2 vector", file, "EBADMSG")
	bad("no aad", "", file, "EBADMSG")
	bad("format version 2", "v1 vector", append([]byte("KSENV\x02"), file[6:]...), "ENOTSUP")
	bad("no magic", "v1 vector", append([]byte("KSENW"), file[5:]...), "EBADMSG")
	bad("a key ID of 0 bytes", "v1 vector", append([]byte("KSENV\x01\x00"), file[7:]...), "EBADMSG")
	bad("a short key ID", "v1 vector", append([]byte("KSENV\x01\x07"), file[7:]...), "EBADMSG")
	bad("empty", "", nil, "EBADMSG")
	return out
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	if *updateVectors {
		b, err := json.MarshalIndent(makeVectors(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.FromSlash(vectorsPath))
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

// The stored vectors, written by an earlier build, decrypt to their
// plaintext or fail with their code: the format does not drift.
func TestVectors(t *testing.T) {
	f := newFake()
	for _, v := range loadVectors(t) {
		got, res, err := decrypt(f, v.File, envelope.DecryptOptions{AAD: []byte(v.AAD)})
		if v.Result == "ok" {
			sum := sha256.Sum256(got)
			if err != nil || hex.EncodeToString(sum[:]) != v.PlaintextSHA256 || len(got) != v.PlaintextSize || res.Key != "app/box/k" {
				t.Errorf("%s: %d bytes, %v; want %d bytes with SHA-256 %s", v.Name, len(got), err, v.PlaintextSize, v.PlaintextSHA256)
			}
			continue
		}
		code, _ := client.CodeOf(err)
		if code.String() != v.Result {
			t.Errorf("%s: %v, want %s", v.Name, err, v.Result)
		}
	}
}

// FuzzDecrypt decrypts any bytes: never a panic; an error with a code
// from the format's vocabulary; and a success only for an unchanged
// vector, giving its plaintext.
func FuzzDecrypt(f *testing.F) {
	vs := loadVectors(f)
	goods := map[string]bool{}
	for _, v := range vs {
		f.Add(v.File, v.AAD)
		if v.Result == "ok" {
			goods[string(v.File)+"\x00"+v.AAD] = true
		}
	}
	keys := newFake()
	f.Fuzz(func(t *testing.T, file []byte, aad string) {
		got, _, err := decrypt(keys, file, envelope.DecryptOptions{AAD: []byte(aad)})
		if err != nil {
			if !errors.Is(err, client.ErrBadMessage) && !errors.Is(err, client.ErrNotSupported) && !errors.Is(err, client.ErrTooLarge) {
				t.Fatalf("error %v: not EBADMSG, ENOTSUP or EMSGSIZE", err)
			}
			return
		}
		if !goods[string(file)+"\x00"+aad] {
			t.Fatalf("a file that is no vector decrypted to %d bytes", len(got))
		}
	})
}

// FuzzReadHeader parses any bytes: a header it accepts marshals back to
// the bytes it read.
func FuzzReadHeader(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.File)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := envelope.ReadHeader(r)
		if err != nil {
			if _, ok := client.CodeOf(err); !ok {
				t.Fatalf("error %v has no code", err)
			}
			return
		}
		hb, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("a header read does not marshal: %v", err)
		}
		read := len(b) - r.Len()
		if !bytes.Equal(hb, b[:read]) {
			t.Fatalf("header read from %x marshals to %x", b[:read], hb)
		}
		if _, err := io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	})
}

// The vectors in testdata are what makeVectors makes, but for Tink's
// random salts and nonce prefixes: same names, results and plaintexts.
func TestVectorsUpToDate(t *testing.T) {
	stored, fresh := loadVectors(t), makeVectors(t)
	if len(stored) != len(fresh) {
		t.Fatalf("%d stored vectors, makeVectors makes %d: run go test -run TestVectors -update-vectors", len(stored), len(fresh))
	}
	for i := range stored {
		s, f := stored[i], fresh[i]
		if s.Name != f.Name || s.AAD != f.AAD || s.Result != f.Result || s.PlaintextSHA256 != f.PlaintextSHA256 || len(s.File) != len(f.File) {
			t.Errorf("vector %d: stored %q, made %q: run go test -run TestVectors -update-vectors", i, s.Name, f.Name)
		}
	}
}
