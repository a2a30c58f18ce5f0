package fairsched

import (
	"context"
	"crypto"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// fakeProvider counts calls and fails Sign with its err.
type fakeProvider struct {
	calls atomic.Int64
	err   error
}

func (f *fakeProvider) Info(context.Context) (provider.Info, error) {
	f.calls.Add(1)
	return provider.Info{Name: "fake"}, nil
}

func (f *fakeProvider) Generate(context.Context, provider.KeyRef) (provider.Generated, error) {
	f.calls.Add(1)
	return provider.Generated{PublicKey: []byte("pub")}, nil
}

func (f *fakeProvider) Sign(context.Context, provider.KeyRef, provider.Handle, []byte) ([]byte, error) {
	f.calls.Add(1)
	return []byte("sig"), f.err
}

func (f *fakeProvider) SignDigest(context.Context, provider.KeyRef, provider.Handle, crypto.Hash, []byte) ([]byte, error) {
	f.calls.Add(1)
	return []byte("digest-sig"), nil
}

func (f *fakeProvider) MAC(context.Context, provider.KeyRef, provider.Handle, []byte) ([]byte, error) {
	f.calls.Add(1)
	return []byte("tag"), nil
}

func (f *fakeProvider) Seal(context.Context, provider.KeyRef, provider.Handle, []byte, []byte) ([]byte, error) {
	f.calls.Add(1)
	return []byte("sealed"), nil
}

func (f *fakeProvider) Open(context.Context, provider.KeyRef, provider.Handle, []byte, []byte) ([]byte, error) {
	f.calls.Add(1)
	return []byte("plain"), nil
}

func (f *fakeProvider) Destroy(context.Context, provider.KeyRef, provider.Handle) error {
	f.calls.Add(1)
	return nil
}

type fakeAppender struct{ fakeProvider }

func (f *fakeAppender) SealAppend(_ context.Context, dst []byte, _ provider.KeyRef, _ provider.Handle, _, _ []byte) ([]byte, error) {
	f.calls.Add(1)
	return append(dst, "sealed"...), nil
}

type tenantKey struct{}

func tenantFromCtx(ctx context.Context) string {
	s, _ := ctx.Value(tenantKey{}).(string)
	return s
}

// TestWrapSchedulesCryptography: with the one worker busy, Generate,
// Sign, Seal, SealAppend and Open wait in the queue of the tenant
// tenantOf names and run once the worker frees; Info and Destroy do not
// wait. Results and errors pass through unchanged.
func TestWrapSchedulesCryptography(t *testing.T) {
	ref := provider.KeyRef{Algorithm: provider.MLDSA87}
	ctx := context.WithValue(context.Background(), tenantKey{}, "b")
	inner := &fakeAppender{}
	s := newSched(t, Config{Workers: 1})
	p := s.Wrap(inner, alg.Default(), tenantFromCtx)
	sa, ok := p.(provider.SealAppender)
	if !ok {
		t.Fatal("the wrapped provider lost SealAppend")
	}
	calls := map[string]func() (string, error){
		"generate": func() (string, error) { g, err := p.Generate(ctx, ref); return string(g.PublicKey), err },
		"sign":     func() (string, error) { b, err := p.Sign(ctx, ref, nil, nil); return string(b), err },
		"seal":     func() (string, error) { b, err := p.Seal(ctx, ref, nil, nil, nil); return string(b), err },
		"append": func() (string, error) {
			b, err := sa.SealAppend(ctx, []byte("hdr:"), ref, nil, nil, nil)
			return string(b), err
		},
		"open": func() (string, error) { b, err := p.Open(ctx, ref, nil, nil, nil); return string(b), err },
	}
	want := map[string]string{"generate": "pub", "sign": "sig", "seal": "sealed", "append": "hdr:sealed", "open": "plain"}
	for name, call := range calls {
		release := hold(t, s, "a")
		before := inner.calls.Load()
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() { out, err := call(); done <- result{out, err} }()
		waitUntil(t, name+" waits in b's queue", func() bool { return s.queued("b") == 1 })
		if inner.calls.Load() != before {
			t.Fatalf("%s reached the provider while the worker was busy", name)
		}
		if _, err := p.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.Destroy(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
		if inner.calls.Load() != before+2 {
			t.Fatalf("Info and Destroy waited for a worker")
		}
		release()
		r := <-done
		if r.err != nil || r.out != want[name] {
			t.Fatalf("%s = %q, %v; want %q", name, r.out, r.err, want[name])
		}
	}

	plain := &fakeProvider{err: provider.Errorf(provider.EIO, "device gone")}
	q := s.Wrap(plain, nil, nil)
	if _, ok := q.(provider.SealAppender); ok {
		t.Fatal("the wrapper claims SealAppend for a provider without it")
	}
	if _, err := q.Sign(context.Background(), ref, nil, nil); !errors.Is(err, provider.ErrIO) {
		t.Fatalf("provider error: %v, want it unchanged (EIO)", err)
	}
}

// TestWrapCosts: a call's weight is its algorithm's cost, plus its data
// at CostPerMiB; generation is costed apart; an unknown algorithm or no
// registry counts one Unit.
func TestWrapCosts(t *testing.T) {
	s := newSched(t, Config{Workers: 1})
	w := s.Wrap(&fakeProvider{}, alg.Default(), nil).(*scheduled)
	reg := alg.Default()
	ml, err := reg.Lookup(provider.MLDSA87)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		got      int64
		want     float64
		generate bool
	}{
		{"ed25519 sign", w.cost(provider.Ed25519, false, 0), Unit, false},
		{"ml-dsa-87 sign", w.cost(provider.MLDSA87, false, 0), ml.Cost * Unit, false},
		{"ml-dsa-87 sign 1 MiB", w.cost(provider.MLDSA87, false, 1<<20), (ml.Cost + ml.CostPerMiB) * Unit, false},
		{"ml-dsa-87 generate", w.cost(provider.MLDSA87, true, 0), ml.GenerateCost * Unit, true},
		{"unknown", w.cost("rsa-512", false, 1<<20), Unit, false},
	} {
		if float64(tc.got) != tc.want {
			t.Errorf("%s: cost %d, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := s.Wrap(&fakeProvider{}, nil, nil).(*scheduled).cost(provider.MLDSA87, false, 0); got != Unit {
		t.Errorf("no registry: cost %d, want %d", got, Unit)
	}
	if ml.Cost <= 1 || ml.GenerateCost <= 1 || ml.CostPerMiB <= 0 {
		t.Errorf("ml-dsa-87 costs %v/%v/%v: an ML-DSA-87 signature costs many Ed25519 ones", ml.Cost, ml.GenerateCost, ml.CostPerMiB)
	}
}

// fakeRotator is a provider that can rotate its KEK.
type fakeRotator struct{ fakeProvider }

func (f *fakeRotator) BeginKEKRotation(context.Context) (string, error) {
	return "0011223344556677", nil
}
func (f *fakeRotator) RewrapHandle(_ context.Context, _ provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return h, nil
}
func (f *fakeRotator) CommitKEKRotation(context.Context) error { return nil }

type fakeRotatingAppender struct{ fakeAppender }

func (f *fakeRotatingAppender) BeginKEKRotation(context.Context) (string, error) {
	return "0011223344556677", nil
}
func (f *fakeRotatingAppender) RewrapHandle(_ context.Context, _ provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	return h, nil
}
func (f *fakeRotatingAppender) CommitKEKRotation(context.Context) error { return nil }

// Wrap keeps the optional interfaces: SealAppender and KEKRotator exactly
// when the wrapped provider has them (a wrapper that hid KEKRotator made
// every KEK rotation ENOTSUP).
func TestWrapKeepsOptionalInterfaces(t *testing.T) {
	s, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		p               provider.Provider
		appends, rotate bool
	}{
		{"plain", &fakeProvider{}, false, false},
		{"appender", &fakeAppender{}, true, false},
		{"rotator", &fakeRotator{}, false, true},
		{"both", &fakeRotatingAppender{}, true, true},
	} {
		w := s.Wrap(tc.p, nil, nil)
		if _, ok := w.(provider.SealAppender); ok != tc.appends {
			t.Errorf("%s: SealAppender %v, want %v", tc.name, ok, tc.appends)
		}
		r, ok := w.(provider.KEKRotator)
		if ok != tc.rotate {
			t.Errorf("%s: KEKRotator %v, want %v", tc.name, ok, tc.rotate)
		}
		if ok {
			if fp, err := r.BeginKEKRotation(context.Background()); err != nil || fp != "0011223344556677" {
				t.Errorf("%s: BeginKEKRotation through the wrapper = %q, %v", tc.name, fp, err)
			}
		}
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
