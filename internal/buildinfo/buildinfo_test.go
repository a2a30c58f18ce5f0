package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	got := String("keystorectl", "v1.2.3")
	if !strings.HasPrefix(got, "keystorectl v1.2.3 (") || !strings.HasSuffix(got, ", "+runtime.Version()+")") {
		t.Fatalf("String = %q", got)
	}
	if r := Revision(); r == "" || len(r) > 16 {
		t.Fatalf("Revision = %q", r)
	}
}
