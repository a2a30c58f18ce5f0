package conformance_test

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/conformance"
)

// docsTable returns the first column of the table that follows the
// marker line in docs/providers.md, with "<alg>/" removed.
func docsTable(t *testing.T, marker string) []string {
	t.Helper()
	f, err := os.Open("../docs/providers.md")
	if err != nil {
		t.Fatalf("the provider author guide: %v", err)
	}
	defer f.Close()
	var names []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- ") && strings.Contains(line, marker):
			in = true
		case in && line == "":
			if len(names) > 0 {
				return names
			}
		case in && strings.HasPrefix(line, "| `") && !strings.Contains(line, "subtest |"):
			cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			names = append(names, strings.Replace(cell, "/<alg>/", "/", 1))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("docs/providers.md has no table after a %q marker", marker)
	}
	return names
}

// TestDocumentedChecks holds the subtest tables of docs/providers.md
// against the suites: every subtest is documented, once, and every
// documented one exists.
func TestDocumentedChecks(t *testing.T) {
	for _, c := range []struct {
		marker string
		suite  []string
	}{
		// Run's subtests are CheckOne's checks plus Deterministic, which
		// compares two fresh providers.
		{"conformance.Run subtests", append(conformance.CheckNames(), "Deterministic")},
		{"conformance.RunKeystore subtests", conformance.KeystoreCheckNames()},
	} {
		documented := docsTable(t, c.marker)
		for _, n := range c.suite {
			if !slices.Contains(documented, n) {
				t.Errorf("%s: %s is not in docs/providers.md", c.marker, n)
			}
		}
		for i, n := range documented {
			if !slices.Contains(c.suite, n) {
				t.Errorf("%s: docs/providers.md lists %s, which the suite does not run", c.marker, n)
			}
			if slices.Index(documented, n) != i {
				t.Errorf("%s: docs/providers.md lists %s twice", c.marker, n)
			}
		}
	}
}
