package e2e

import (
	"strings"
	"testing"
)

// Bad input through keystorectl: each a typed error with its exit status,
// nothing created, and the daemon still serving. (cmd/keystored's
// TestBadInput covers the API in depth.)
func TestBadInputCLI(t *testing.T) {
	d := start(t)
	ctlOK(t, d, nil, "create", "p/sig", "--alg", "ed25519")
	ctlOK(t, d, nil, "create", "p/box")
	sig := writeTemp(t, make([]byte, 64))
	tests := []struct {
		stdin  string
		exit   int
		reason string
		args   []string
	}{
		{"", 22, "EINVAL", []string{"create", "../../etc/passwd"}},
		{"", 22, "EINVAL", []string{"create", "p/../x"}},
		{"", 22, "EINVAL", []string{"create", "p/..", "--alg", "ed25519"}},
		{"", 22, "EINVAL", []string{"create", "p/ключ"}},
		{"", 22, "EINVAL", []string{"create", "p/K"}},
		{"", 22, "EINVAL", []string{"create", "p/" + strings.Repeat("a", 65)}},
		{"", 22, "EINVAL", []string{"create", "a/b/c/d"}},
		{"", 22, "EINVAL", []string{"create", "p/k\n"}},
		{"", 95, "ENOTSUP", []string{"create", "p/k", "--alg", "rsa-2048"}},
		{"m", 22, "EINVAL", []string{"verify", "p/sig@0", "--sig", sig}},
		{"m", 22, "EINVAL", []string{"verify", "p/sig@-1", "--sig", sig}},
		{"m", 22, "EINVAL", []string{"verify", "p/sig@4294967296", "--sig", sig}},
		{"m", 2, "ENOENT", []string{"verify", "p/sig@4294967295", "--sig", sig}},
		{"m", 74, "EBADMSG", []string{"verify", "p/sig@1", "--sig", sig}},
		{"garbage sealed blob", 74, "EBADMSG", []string{"unseal", "p/box"}},
		{"", 74, "EBADMSG", []string{"unseal", "p/box"}},
		{strings.Repeat("x", 64<<10+1), 90, "EMSGSIZE", []string{"sign", "p/sig"}},
		{"", 90, "EMSGSIZE", []string{"seal", "p/box", "--aad", strings.Repeat("a", 64<<10+1)}},
		{"m", 1, "EPERM", []string{"sign", "p/box"}},
		{"m", 1, "EPERM", []string{"seal", "p/sig"}},
	}
	for _, tt := range tests {
		ctlFails(t, d, []byte(tt.stdin), tt.exit, tt.reason, tt.args...)
	}
	r := ctlOK(t, d, nil, "list")
	if n := strings.Count(string(r.stdout), "\n"); n != 3 {
		t.Errorf("after bad input the daemon lists %d lines, want the header and 2 keys:\n%s", n, r.stdout)
	}
	ctlOK(t, d, []byte("still serving"), "sign", "p/sig")
	d.Stop()
}
