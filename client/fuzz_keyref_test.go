package client_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
)

// FuzzParseKeyRef: "KEY" or "KEY@N" (keystorectl's key references) either
// fail with ErrInvalid and nothing else, or split so that joining the
// parts again gives the input exactly: N from 1 to 4294967295 in
// canonical decimal, a non-empty key before the last @.
func FuzzParseKeyRef(f *testing.F) {
	seeds := []string{
		"signing/release", "signing/release@1", "billing/signing/invoices@4294967295", "p/k@4294967296",
		"p/k@0", "p/k@01", "p/k@-1", "p/k@+1", "p/k@", "@1", "a@b@2", "p/k@1 ", "p/k@١", "",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, ref string) {
		key, version, err := client.ParseKeyRef(ref)
		if err != nil {
			if !errors.Is(err, client.ErrInvalid) {
				t.Fatalf("ParseKeyRef(%q): error %v is not ErrInvalid", ref, err)
			}
			if key != "" || version != 0 {
				t.Fatalf("ParseKeyRef(%q): %q, %d returned with an error", ref, key, version)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("ParseKeyRef(%q): error of %d bytes: messages must be bounded", ref, len(err.Error()))
			}
			return
		}
		if version == 0 {
			if key != ref || strings.Contains(ref, "@") {
				t.Fatalf("ParseKeyRef(%q) = %q, 0", ref, key)
			}
			return
		}
		if key == "" || key+"@"+strconv.FormatUint(uint64(version), 10) != ref {
			t.Fatalf("ParseKeyRef(%q) = %q, %d: does not join back", ref, key, version)
		}
	})
}
