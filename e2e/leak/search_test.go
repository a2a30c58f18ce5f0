package leak

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// needle is one secret or canary to search for.
type needle struct {
	what string
	b    []byte
}

// forms returns the ways b could appear in a sink: raw, hex in both
// cases, base64 (standard and URL, padded or not) and Go's %v of a byte
// slice (for secrets of at least 8 bytes; shorter ones are not searched
// as %v, which would match by chance).
func forms(b []byte) map[string][]byte {
	f := map[string][]byte{
		"raw":           b,
		"hex":           []byte(hex.EncodeToString(b)),
		"HEX":           []byte(strings.ToUpper(hex.EncodeToString(b))),
		"base64":        []byte(base64.StdEncoding.EncodeToString(b)),
		"base64 raw":    []byte(base64.RawStdEncoding.EncodeToString(b)),
		"base64url":     []byte(base64.URLEncoding.EncodeToString(b)),
		"base64url raw": []byte(base64.RawURLEncoding.EncodeToString(b)),
	}
	if len(b) >= 8 {
		f["%v"] = []byte(strings.Trim(fmt.Sprint(b), "[]"))
	}
	return f
}

// formNames is the sorted list of form names (for the report).
func formNames() []string {
	var names []string
	for n := range forms(make([]byte, 8)) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// searchStats counts a search.
type searchStats struct {
	needles, places, searches, hits int
	bytes                           int64
}

// search looks for every form of every needle in every place; each hit is
// a test error naming the needle, the form and the place.
func search(t *testing.T, kind string, needles []needle, places map[string][]byte) searchStats {
	t.Helper()
	st := searchStats{needles: len(needles), places: len(places)}
	for _, p := range places {
		st.bytes += int64(len(p))
	}
	hits, searches := find(needles, places)
	st.searches, st.hits = searches, len(hits)
	for _, h := range hits {
		t.Errorf("LEAK: %s %s", kind, h)
	}
	return st
}

// find returns "<needle> found in <place> as <form>" for every hit, and
// the number of searches made.
func find(needles []needle, places map[string][]byte) (hits []string, searches int) {
	for _, n := range needles {
		for form, f := range forms(n.b) {
			for name, hay := range places {
				searches++
				if bytes.Contains(hay, f) {
					hits = append(hits, n.what+" found in "+name+" as "+form)
				}
			}
		}
	}
	sort.Strings(hits)
	return hits, searches
}

// stateFiles returns every regular file under dir (recursively) by its
// path relative to dir; the socket and other non-regular files are
// skipped. A symlink is an error: the state directory holds none.
func stateFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return fmt.Errorf("symlink %s in the state directory", path)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out["state file "+rel] = b
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

// TestFindSeesEveryForm: a secret planted in each form is found, in that
// form, in the place it was planted (the search cannot pass vacuously).
func TestFindSeesEveryForm(t *testing.T) {
	secret := []byte("0123456789abcdef\x00\xff\xfe secret bytes")
	for form, f := range forms(secret) {
		hay := append(append([]byte("log line: "), f...), " end"...)
		hits, searches := find([]needle{{"s", secret}}, map[string][]byte{"place": hay, "clean": []byte("nothing here")})
		if searches != 2*len(forms(secret)) {
			t.Errorf("%s: %d searches, want %d", form, searches, 2*len(forms(secret)))
		}
		want := "s found in place as " + form
		ok := false
		for _, h := range hits {
			ok = ok || h == want
			if strings.Contains(h, "clean") {
				t.Errorf("%s: false hit %q", form, h)
			}
		}
		if !ok {
			t.Errorf("%s: hits %q, want one %q", form, hits, want)
		}
	}
}
