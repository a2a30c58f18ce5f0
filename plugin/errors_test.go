package plugin

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// fakeProvider is a minimal in-process provider for tests of the wire:
// its Sign, SignDigest and MAC return what sign returns for the message
// (or digest), or wait in it.
type fakeProvider struct {
	info  provider.Info
	sign  func(ctx context.Context, msg []byte) ([]byte, error)
	calls chan provider.KeyRef // gets each Sign's, SignDigest's and MAC's ref, if non-nil
	// hash is the hash of the last SignDigest call.
	hash atomic.Uint32
}

func newFake(sign func(ctx context.Context, msg []byte) ([]byte, error)) *fakeProvider {
	return &fakeProvider{
		info: provider.Info{Name: "fake", Version: "1", Secure: true, Algorithms: []provider.Algorithm{
			provider.Ed25519, provider.AES256GCM, provider.ECDSAP256, provider.HMACSHA256}},
		sign: sign,
	}
}

func (f *fakeProvider) Info(context.Context) (provider.Info, error) { return f.info, nil }
func (f *fakeProvider) Generate(context.Context, provider.KeyRef) (provider.Generated, error) {
	return provider.Generated{PublicKey: make([]byte, 32), Handle: provider.Handle("h")}, nil
}
func (f *fakeProvider) Sign(ctx context.Context, ref provider.KeyRef, _ provider.Handle, msg []byte) ([]byte, error) {
	if f.calls != nil {
		f.calls <- ref
	}
	return f.sign(ctx, msg)
}
func (f *fakeProvider) SignDigest(ctx context.Context, ref provider.KeyRef, _ provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	if f.calls != nil {
		f.calls <- ref
	}
	f.hash.Store(uint32(hash))
	return f.sign(ctx, digest)
}
func (f *fakeProvider) MAC(ctx context.Context, ref provider.KeyRef, _ provider.Handle, msg []byte) ([]byte, error) {
	if f.calls != nil {
		f.calls <- ref
	}
	return f.sign(ctx, msg)
}
func (f *fakeProvider) Seal(_ context.Context, _ provider.KeyRef, _ provider.Handle, pt, _ []byte) ([]byte, error) {
	return append(make([]byte, 28), pt...), nil
}
func (f *fakeProvider) Open(_ context.Context, _ provider.KeyRef, _ provider.Handle, sealed, _ []byte) ([]byte, error) {
	return sealed[28:], nil
}
func (f *fakeProvider) Destroy(context.Context, provider.KeyRef, provider.Handle) error { return nil }

// signRef returns a valid ed25519 ref for provider name.
func signRef(t testing.TB, name string) provider.KeyRef {
	t.Helper()
	id, err := provider.NewKeyID("app", "test", "key")
	if err != nil {
		t.Fatal(err)
	}
	return provider.KeyRef{ID: id, Version: 1, Algorithm: provider.Ed25519, Use: provider.UseSign, Provider: name}
}

// macKeyRef returns a valid hmac-sha256 ref for provider "fake".
func macKeyRef(t testing.TB) provider.KeyRef {
	t.Helper()
	ref := signRef(t, "fake")
	ref.Algorithm, ref.Use = provider.HMACSHA256, provider.UseMAC
	return ref
}

// checkCode checks that err carries code c: the sentinel, the errno and
// CodeOf all agree.
func checkCode(t *testing.T, err error, c provider.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", c)
	}
	if !errors.Is(err, c) {
		t.Errorf("errors.Is(%q, %v) = false", err, c)
	}
	if got, ok := provider.CodeOf(err); !ok || got != c {
		t.Errorf("CodeOf(%q) = %v, %v; want %v", err, got, ok, c)
	}
	if errno := c.Errno(); errno != 0 && !errors.Is(err, errno) {
		t.Errorf("errors.Is(%q, syscall %v) = false", err, errno)
	}
	for _, other := range provider.Codes() {
		if other != c && errors.Is(err, other) {
			t.Errorf("errors.Is(%q, %v) = true, want only %v", err, other, c)
		}
	}
}

// TestErrorsRoundTrip sends every Code through the boundary, in process
// and through a plugin process, and checks it comes out as the same
// sentinel (and errno).
func TestErrorsRoundTrip(t *testing.T) {
	t.Parallel()
	fake := newFake(func(_ context.Context, msg []byte) ([]byte, error) {
		c, _ := provider.ParseCode(strings.TrimPrefix(string(msg), "code:"))
		return nil, provider.WithOp("sign", "app/test/key@1", provider.Errorf(c, "fake chose %s", c.String()))
	})
	_, _, mb := binaries(t)
	for _, side := range []struct {
		name string
		p    func(t *testing.T) provider.Provider
	}{
		{"InProcess", func(t *testing.T) provider.Provider { return TestClient(t, fake) }},
		{"Subprocess", func(t *testing.T) provider.Provider { return launch(t, mb, Config{Args: []string{"serve"}}) }},
	} {
		t.Run(side.name, func(t *testing.T) {
			p := side.p(t)
			info, err := p.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			ref := signRef(t, info.Name)
			for _, c := range provider.Codes() {
				t.Run(c.String(), func(t *testing.T) {
					sig, err := p.Sign(t.Context(), ref, provider.Handle("h"), []byte("code:"+c.String()))
					if sig != nil {
						t.Errorf("got a signature with the error")
					}
					checkCode(t, err, c)
					if !strings.Contains(err.Error(), "chose "+c.String()) {
						t.Errorf("error %q lost the provider's message", err)
					}
				})
			}
			// The two examples the contract names.
			_, err = p.Sign(t.Context(), ref, provider.Handle("h"), []byte("code:EKEYREVOKED"))
			if !errors.Is(err, provider.ErrKeyRevoked) || !errors.Is(err, syscall.EKEYREVOKED) {
				t.Errorf("EKEYREVOKED came out as %q", err)
			}
		})
	}
}

// TestContextPropagates cancels a call on the client side and checks the
// provider's context is cancelled on the server side.
func TestContextPropagates(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	ended := make(chan error, 1)
	fake := newFake(func(ctx context.Context, _ []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	p := TestClient(t, fake)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Sign(ctx, signRef(t, "fake"), provider.Handle("h"), []byte("block"))
		errc <- err
	}()
	<-started
	cancel()
	// Generous bounds: they only turn a hang into a failure.
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("server-side context ended with %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the provider's context was not cancelled")
	}
	select {
	case err := <-errc:
		checkCode(t, err, provider.EUNAVAILABLE)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("client error %q does not wrap context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the cancelled call did not return")
	}
}

// TestDeadlinePropagates: the caller's deadline reaches the provider.
func TestDeadlinePropagates(t *testing.T) {
	t.Parallel()
	want := time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC)
	got := make(chan bool, 1)
	fake := newFake(func(ctx context.Context, _ []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		got <- ok && !d.After(want)
		return make([]byte, 64), nil
	})
	p := TestClient(t, fake)
	ctx, cancel := context.WithDeadline(t.Context(), want)
	defer cancel()
	if _, err := p.Sign(ctx, signRef(t, "fake"), provider.Handle("h"), []byte("m")); err != nil {
		t.Fatal(err)
	}
	if !<-got {
		t.Error("the provider's context has no deadline at or before the caller's")
	}
}

func (*fakeProvider) Decrypt(context.Context, provider.KeyRef, provider.Handle, []byte, []byte, []byte, []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "fake: no HPKE")
}

func (*fakeProvider) NewImportKey(context.Context, provider.KeyRef) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "fake: no import")
}

func (*fakeProvider) Import(context.Context, provider.KeyRef, provider.KeyRef, provider.Handle, []byte, []byte) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "fake: no import")
}
