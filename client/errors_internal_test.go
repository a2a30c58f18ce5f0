package client

import (
	"errors"
	"strings"
	"testing"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

func TestDetailError(t *testing.T) {
	for _, code := range provider.Codes() {
		tests := []struct{ msg, want string }{
			{"sign a/b/c: boom", "sign a/b/c: boom"},
			{"boom", "boom"},
			{"", code.Error()},
		}
		for _, tt := range tests {
			err := detailError(&keystorev1.ErrorDetail{Reason: code.String(), Message: tt.msg})
			if !errors.Is(err, code) || err.Error() != tt.want {
				t.Errorf("detail(%v, %q) = %q (is %v), want %q", code, tt.msg, err, errors.Is(err, code), tt.want)
			}
			if errno := code.Errno(); errno != 0 && !errors.Is(err, errno) {
				t.Errorf("detail(%v) does not match errno %v", code, errno)
			}
		}
	}
	err := detailError(&keystorev1.ErrorDetail{Reason: "EWHAT", Message: strings.Repeat("x", 5000)})
	if !errors.Is(err, ErrIO) || len(err.Error()) > maxDetailMessage+16 {
		t.Errorf("unknown reason: %v (len %d), want ErrIO with a bounded message", errors.Is(err, ErrIO), len(err.Error()))
	}
}
