package audit

import (
	"strings"
	"testing"
)

// FuzzSegmentName: parseSealed reads back every name sealedName makes, and
// accepts nothing else: exactly "<stem>-<20 digits><ext>", seq >= 1.
func FuzzSegmentName(f *testing.F) {
	f.Add("audit.jsonl", "audit-00000000000000000001.jsonl", uint64(1))
	f.Add("audit.jsonl", "audit-18446744073709551615.jsonl", uint64(18446744073709551615))
	f.Add("log", "log-00000000000000000042", uint64(42))
	f.Add(".jsonl", ".jsonl-00000000000000000007", uint64(7))
	f.Add("audit.jsonl", "audit.jsonl.bad-1700000000", uint64(0))
	f.Add("audit.jsonl", "audit-99999999999999999999.jsonl", uint64(0))
	f.Fuzz(func(t *testing.T, base, name string, seq uint64) {
		if base == "" || strings.ContainsAny(base, "/\x00") {
			return
		}
		if seq > 0 {
			made := sealedName(base, seq)
			if got, ok := parseSealed(base, made); !ok || got != seq {
				t.Fatalf("parseSealed(%q, %q) = %d, %v; want %d", base, made, got, ok, seq)
			}
		}
		got, ok := parseSealed(base, name)
		if !ok {
			return
		}
		if got == 0 || sealedName(base, got) != name {
			t.Fatalf("parseSealed(%q, %q) = %d, but that seq's name is %q", base, name, got, sealedName(base, got))
		}
	})
}
