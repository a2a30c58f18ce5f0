// Package layering holds the test that keeps keystored's import graph in
// its layers (docs/architecture.md, "Packages"), like go/build's deps_test.
package layering

import (
	"os/exec"
	"slices"
	"strings"
	"sync"
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
	{"internal/privfile", []string{"core/provider"}},
	{"internal/tamper", []string{"audit", "core/provider", "internal/privfile", "golang.org/x/sys"}},
	{"internal/strictmodes", []string{"core/provider", "golang.org/x/sys"}},
	{"internal/unixsock", []string{"core/provider", "golang.org/x/sys"}},
	{"internal/coredump", []string{"golang.org/x/sys"}},
	{"internal/tpmcounter", []string{"core/provider", "core/secret", "github.com/google/go-tpm/", "golang.org/x/sys"}},
	// swtpmtest runs a software TPM for tests: the standard library only.
	{"internal/tpmcounter/swtpmtest", nil},
	{"internal/fairsched", []string{"core/provider", "core/alg", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"providers/pkcs11", []string{"core/provider", "core/alg", "core/secret", "internal/privfile", "providers/internal/importkey", "github.com/miekg/pkcs11", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"providers/", []string{"core/provider", "core/alg", "core/secret", "providers/internal/", "internal/privfile", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
	{"conformance", []string{"core", "core/", "clock", "golang.org/x/crypto", "golang.org/x/sys", "github.com/cloudflare/circl"}},
}

// forbidden: for each outer package pattern, imports it must never have
// (prefixes, relative to the module when they start with a letter of a
// module package, else full paths).
var forbidden = []struct {
	pkg    string
	deny   []string
	except []string // packages below pkg that have a rule of their own
}{
	// The plugin layer carries the contract only: no keystore, no storage.
	{"plugin", []string{module + "/core/storage", module + "/server", module + "/client", module + "/providers/"}, nil},
	// The client talks to the daemon: it never links the keystore itself.
	{"client", []string{module + "/core/storage", module + "/core/alg", module + "/server", module + "/plugin", module + "/providers/", module + "/audit"}, []string{"client/clienttest"}},
	// clienttest is test support: it runs the real server in the test
	// process (so it links server, storage, audit and the in-process
	// providers), never a plugin process or cgo, and only tests import it
	// (TestTestSupportOnlyInTests).
	{"client/clienttest", []string{module + "/plugin", module + "/providers/pkcs11", module + "/cmd/", "github.com/miekg/pkcs11"}, nil},
	// The daemon side never links cgo PKCS#11 (it runs as a plugin binary).
	{"server", []string{module + "/plugin", module + "/client", "github.com/miekg/pkcs11"}, nil},
	{"cmd/keystored", []string{"github.com/miekg/pkcs11", module + "/providers/pkcs11"}, nil},
	// The KEK options shared by the daemon and the software plugin: files
	// and the software provider only.
	{"internal/keksource", []string{module + "/plugin", module + "/server", module + "/core/storage", "google.golang.org/grpc", "github.com/hashicorp/"}, nil},
	{"cmd/keystorectl", []string{module + "/core/storage", module + "/server", module + "/plugin", module + "/providers/"}, nil},
	// The ssh agent is a client of the daemon like keystorectl: it holds no
	// key and links no keystore.
	{"internal/sshagent", []string{module + "/core/storage", module + "/core/alg", module + "/server", module + "/plugin", module + "/providers/", module + "/audit"}, nil},
	// The wire API is generated code only.
	{"api/", []string{module + "/core", module + "/server"}, nil},
	// core must not import any outer layer.
	{"core", []string{module + "/server", module + "/plugin", module + "/client", module + "/providers/", module + "/api/", "google.golang.org/grpc", "github.com/hashicorp/"}, nil},
}

// pkgDeps is a package of the module and every package it depends on
// (go list's Deps: the imports of its tests are not included).
type pkgDeps struct {
	pkg  string
	deps []string
}

var (
	graphOnce sync.Once
	graph     []pkgDeps
	graphErr  error
)

// importGraph lists the module's packages once per test binary, or skips
// t when the go command is unavailable.
func importGraph(t *testing.T) []pkgDeps {
	t.Helper()
	graphOnce.Do(func() {
		out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
		if err != nil {
			graphErr = err
			return
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if fields := strings.Fields(line); len(fields) > 0 {
				graph = append(graph, pkgDeps{pkg: fields[0], deps: fields[1:]})
			}
		}
	})
	if graphErr != nil {
		t.Skipf("go list unavailable (%v): the layering check needs the go command", graphErr)
	}
	return graph
}

func TestImportLayers(t *testing.T) {
	checked := 0
	for _, p := range importGraph(t) {
		pkg := strings.TrimPrefix(p.pkg, module+"/")
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
		for _, dep := range p.deps {
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

func TestForbiddenImports(t *testing.T) {
	matched := map[string]bool{}
	for _, p := range importGraph(t) {
		pkg := strings.TrimPrefix(p.pkg, module+"/")
		for _, f := range forbidden {
			if pkg != f.pkg && !(strings.HasSuffix(f.pkg, "/") && strings.HasPrefix(pkg, f.pkg)) && !strings.HasPrefix(pkg, f.pkg+"/") {
				continue
			}
			if slices.Contains(f.except, pkg) {
				continue
			}
			matched[f.pkg] = true
			for _, dep := range p.deps {
				for _, d := range f.deny {
					if dep == d || strings.HasPrefix(dep, strings.TrimSuffix(d, "/")+"/") || strings.HasSuffix(d, "/") && strings.HasPrefix(dep, d) {
						t.Errorf("%s imports %s, which its layer forbids", pkg, dep)
					}
				}
			}
		}
	}
	for _, f := range forbidden {
		if !matched[f.pkg] {
			t.Errorf("rule for %s matched no package", f.pkg)
		}
	}
}

// testSupport are packages that link a whole daemon, build binaries or
// run helper processes (a software TPM) for tests; a package that is not
// a test never imports them.
var testSupport = []string{module + "/client/clienttest", module + "/internal/daemontest", module + "/internal/tpmcounter/swtpmtest"}

func TestTestSupportOnlyInTests(t *testing.T) {
	checked := 0
	for _, p := range importGraph(t) {
		checked++
		for _, dep := range p.deps {
			if slices.Contains(testSupport, dep) {
				t.Errorf("%s imports the test-support package %s", p.pkg, dep)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list listed no package")
	}
}

// isStd reports whether an import path is in the standard library (no dot
// in its first element).
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
