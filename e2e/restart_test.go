package e2e

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/internal/daemontest"
)

// Through keystorectl: stop the daemon, start it on the same state, and
// every key, version and state is back (a version's seal count resumes
// from its durable reservation, never below the count before); old
// signatures verify and old sealed data unseals.
func TestRestartCLI(t *testing.T) {
	state := t.TempDir()
	d := daemontest.Start(t, daemontest.Options{State: state})
	ctlOK(t, d, nil, "create", "p/sig", "--alg", "ed25519")
	ctlOK(t, d, nil, "create", "p/box")
	ctlOK(t, d, nil, "create", "p/gone", "--alg", "ed25519")
	sig := ctlOK(t, d, []byte("m"), "sign", "p/sig").stdout
	sealed := ctlOK(t, d, []byte("secret"), "seal", "p/box", "--aad", "a").stdout
	ctlOK(t, d, nil, "rotate", "p/sig")
	ctlOK(t, d, nil, "revoke", "p/gone")
	before := ctlOK(t, d, nil, "--json", "list").stdout
	pub := ctlOK(t, d, nil, "pubkey", "p/sig@1").stdout
	d.Stop()

	d2 := daemontest.Start(t, daemontest.Options{State: state})
	after := ctlOK(t, d2, nil, "--json", "list").stdout
	b, bSeals := listWithoutSeals(t, before)
	a, aSeals := listWithoutSeals(t, after)
	if !reflect.DeepEqual(b, a) {
		t.Errorf("keys after restart differ:\n%s\n%s", before, after)
	}
	for ref, n := range bSeals {
		if aSeals[ref] < n {
			t.Errorf("%s: %v seals counted after the restart, %v before: the count went back", ref, aSeals[ref], n)
		}
	}
	if len(bSeals) == 0 {
		t.Error("no seal count in the listing")
	}
	if got := ctlOK(t, d2, nil, "pubkey", "p/sig@1").stdout; !bytes.Equal(got, pub) {
		t.Errorf("public key of version 1 changed across restart")
	}
	ctlOK(t, d2, []byte("m"), "verify", "p/sig@1", "--sig", writeTemp(t, sig))
	if r := ctlOK(t, d2, sealed, "unseal", "p/box", "--aad", "a"); string(r.stdout) != "secret" {
		t.Errorf("unseal after restart = %q", r.stdout)
	}
	if r := ctlOK(t, d2, []byte("m"), "sign", "p/sig"); !strings.Contains(r.stderr, "@2") {
		t.Errorf("sign after restart: %q, want version 2", r.stderr)
	}
	ctlFails(t, d2, []byte("m"), 128, "EKEYREVOKED", "sign", "p/gone")
	d2.Stop()
}

// listWithoutSeals decodes a "keystorectl --json list" and takes the
// versions' seal counts out of it (returned by "<key>@<version>").
func listWithoutSeals(t *testing.T, out []byte) (map[string]any, map[string]float64) {
	t.Helper()
	var l map[string]any
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("list --json: %v", err)
	}
	seals := map[string]float64{}
	keys, _ := l["keys"].([]any)
	for _, k := range keys {
		km, _ := k.(map[string]any)
		vs, _ := km["versions"].([]any)
		for _, v := range vs {
			vm, _ := v.(map[string]any)
			if n, ok := vm["seals"].(float64); ok {
				seals[km["id"].(string)+"@"+strconv.FormatFloat(vm["version"].(float64), 'f', -1, 64)] = n
				delete(vm, "seals")
			}
		}
	}
	return l, seals
}
