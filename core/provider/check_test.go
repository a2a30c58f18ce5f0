package provider

import (
	"context"
	"errors"
	"testing"
)

func TestChecks(t *testing.T) {
	n := func(size int) []byte { return make([]byte, size) }
	cases := []struct {
		name string
		err  error
		want Code // 0: nil
	}{
		{"sign at bound", CheckSign(n(MaxSignMessage)), 0},
		{"sign over", CheckSign(n(MaxSignMessage + 1)), EMSGSIZE},
		{"seal at bounds", CheckSeal(n(MaxSealPlaintext), n(MaxProviderAAD)), 0},
		{"seal plaintext over", CheckSeal(n(MaxSealPlaintext+1), nil), EMSGSIZE},
		{"seal aad over", CheckSeal(nil, n(MaxProviderAAD+1)), EMSGSIZE},
		{"open at bounds", CheckOpen(n(MaxSealed), n(MaxProviderAAD)), 0},
		{"open sealed over", CheckOpen(n(MaxSealed+1), nil), EMSGSIZE},
		{"open aad over", CheckOpen(nil, n(MaxProviderAAD+1)), EMSGSIZE},
	}
	for _, c := range cases {
		got, _ := CodeOf(c.err)
		if c.err == nil {
			got = 0
		}
		if got != c.want {
			t.Errorf("%s: code %v, want %v (%v)", c.name, got, c.want, c.err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := CheckContext(ctx); err != nil {
		t.Fatalf("live context: %v", err)
	}
	cancel()
	err := CheckContext(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v, want EUNAVAILABLE wrapping context.Canceled", err)
	}
}
