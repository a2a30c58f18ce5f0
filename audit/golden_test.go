package audit_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/nexus-os/keystored/audit"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.jsonl")

const (
	goldenFile    = "testdata/golden.jsonl"
	goldenRecords = 8
	// goldenLastHash pins the format: a change to the encoding, the hash
	// preimage or the genesis value changes it, and this test fails until
	// docs/audit.md and the pin are updated on purpose.
	goldenLastHash = "5e5218ddb8f374d5eff50698f1a310e4868633354803e25958a6f36772911687"
)

// TestGolden writes the golden records and compares the bytes with
// testdata/golden.jsonl, which docs/audit.md quotes.
func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeRecords(t, path, goldenRecords)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding drifted from %s:\n got %s\nwant %s", goldenFile, got, want)
	}
	res, err := audit.Verify(bytes.NewReader(want))
	if err != nil {
		t.Fatalf("Verify(%s): %v", goldenFile, err)
	}
	if res.Records != goldenRecords || res.LastHash != goldenLastHash {
		t.Fatalf("Verify(%s) = %+v, want %d records ending at %s", goldenFile, res, goldenRecords, goldenLastHash)
	}
}

func TestGenesis(t *testing.T) {
	// hex(SHA-256("keystored/audit/genesis/v1")), computed independently:
	// printf 'keystored/audit/genesis/v1' | sha256sum
	const want = "e994b3ae880deddd6637eb1267296124c6ef537d21ba3a8fc6ce6212d1d204f7"
	if audit.Genesis != want {
		t.Fatalf("Genesis = %s, want %s", audit.Genesis, want)
	}
}
