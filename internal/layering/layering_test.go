// Package layering holds the test that keeps keystored's import graph in
// its layers (docs/architecture.md, "Packages"), like go/build's deps_test.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/nexus-os/keystored"

// rules: for each package pattern (prefix of the import path below the
// module), the only non-stdlib imports allowed, as prefixes. Packages of
// the module itself are listed explicitly too.
var rules = []struct {
	pkg     string
	allowed []string
}{
	{"core/provider", nil},
	{"core/secret", nil},
	{"core/storage", []string{"core/provider", "golang.org/x/sys"}},
	{"core/alg", []string{"core/provider", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"core", []string{"core/", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"clock", nil},
	{"audit", []string{"core/provider", "golang.org/x/sys"}},
	{"providers/pkcs11", []string{"core/provider", "core/alg", "core/secret", "github.com/miekg/pkcs11", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"providers/", []string{"core/provider", "core/alg", "core/secret", "providers/internal/", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"conformance", []string{"core", "core/", "clock", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
}

func TestImportLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Skipf("go list unavailable (%v): the layering check needs the go command", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module+"/")
		rule := -1
		for i, r := range rules {
			if pkg == r.pkg || strings.HasSuffix(r.pkg, "/") && strings.HasPrefix(pkg, r.pkg) {
				rule = i
				break
			}
		}
		if rule < 0 {
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if isStd(dep) {
				continue
			}
			rel := strings.TrimPrefix(dep, module+"/")
			ok := false
			for _, a := range rules[rule].allowed {
				if rel == a || strings.HasSuffix(a, "/") && strings.HasPrefix(rel, a) || strings.HasPrefix(dep, a) {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("%s imports %s, outside its layer", pkg, dep)
			}
		}
	}
	if checked < len(rules) {
		t.Fatalf("checked %d packages, want at least %d", checked, len(rules))
	}
}

// isStd reports whether an import path is in the standard library (no dot
// in its first element).
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
