package clienttest

import (
	"strings"
	"testing"
)

// pendingMarks are the messages of issue 12's placeholders in a tree where
// the server side (the keystore.v1 RPCs of API v1.4) or the providers'
// side (HPKE keys, import) has not landed yet: gRPC's Unimplemented stub
// of a Keys method, the providers' "not implemented yet" stubs, and a
// provider that does not know the asymmetric-decrypt use.
var pendingMarks = []string{" not implemented", "has no valid use"}

// SkipIfPending skips t, saying why, when err is one of issue 12's
// placeholders (pendingMarks): the client side of data keys, HPKE
// decryption and import is written and tested against the real server,
// which answers them only once the server and provider sides are merged.
// In a tree where they are, no placeholder is left and SkipIfPending never
// skips; any other error is the test's to judge. Remove it once issue 12
// is merged.
func SkipIfPending(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, m := range pendingMarks {
		if strings.Contains(err.Error(), m) {
			t.Skipf("SKIP (issue 12 pending): the server or provider of this tree does not implement it yet: %v", err)
		}
	}
}
