package plugin

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// TestRefRoundTrip: a valid KeyRef survives the wire unchanged.
func TestRefRoundTrip(t *testing.T) {
	ref := signRef(t, "software")
	got, err := refFromWire(refToWire(ref))
	if err != nil || got != ref {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, ref)
	}
}

// TestRefFromWireRejects: the server rebuilds refs from the wire and
// trusts nothing.
func TestRefFromWireRejects(t *testing.T) {
	good := func() *providerpb.KeyRef {
		return &providerpb.KeyRef{KeyId: "app/p/n", Version: 1, Algorithm: "ed25519", Use: providerpb.Use_USE_SIGN, Provider: "software"}
	}
	cases := map[string]func(*providerpb.KeyRef){
		"no key ID":           func(r *providerpb.KeyRef) { r.KeyId = "" },
		"traversal key ID":    func(r *providerpb.KeyRef) { r.KeyId = "../p/n" },
		"two-segment key ID":  func(r *providerpb.KeyRef) { r.KeyId = "app/p" },
		"upper-case key ID":   func(r *providerpb.KeyRef) { r.KeyId = "App/p/n" },
		"huge key ID":         func(r *providerpb.KeyRef) { r.KeyId = strings.Repeat("a", 1<<16) },
		"version 0":           func(r *providerpb.KeyRef) { r.Version = 0 },
		"no algorithm":        func(r *providerpb.KeyRef) { r.Algorithm = "" },
		"long algorithm":      func(r *providerpb.KeyRef) { r.Algorithm = strings.Repeat("a", provider.MaxSegment+1) },
		"use 0":               func(r *providerpb.KeyRef) { r.Use = 0 },
		"use 3":               func(r *providerpb.KeyRef) { r.Use = 3 },
		"use 259 (wraps 3)":   func(r *providerpb.KeyRef) { r.Use = 259 },
		"use 257 (wraps 1)":   func(r *providerpb.KeyRef) { r.Use = 257 },
		"negative use":        func(r *providerpb.KeyRef) { r.Use = -1 },
		"no provider":         func(r *providerpb.KeyRef) { r.Provider = "" },
		"bad provider name":   func(r *providerpb.KeyRef) { r.Provider = "Soft/ware" },
		"long provider name":  func(r *providerpb.KeyRef) { r.Provider = strings.Repeat("a", provider.MaxProviderName+1) },
		"NUL in key ID":       func(r *providerpb.KeyRef) { r.KeyId = "app/p/n\x00" },
		"non-ASCII in key ID": func(r *providerpb.KeyRef) { r.KeyId = "app/p/é" },
	}
	if _, err := refFromWire(good()); err != nil {
		t.Fatalf("good ref refused: %v", err)
	}
	if _, err := refFromWire(nil); !errorsIsCode(err, provider.EINVAL) {
		t.Errorf("nil ref: %v, want EINVAL", err)
	}
	for name, mutate := range cases {
		w := good()
		mutate(w)
		if _, err := refFromWire(w); !errorsIsCode(err, provider.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
}

func errorsIsCode(err error, c provider.Code) bool {
	got, ok := provider.CodeOf(err)
	return err != nil && ok && got == c
}

// TestInfoFromWireRejects: an Info that fails Info.Check or is over its
// bounds is refused with EIO.
func TestInfoFromWireRejects(t *testing.T) {
	many := make([]string, provider.MaxAlgorithms+1)
	for i := range many {
		many[i] = "alg" + strings.Repeat("x", i%10) + string(rune('a'+i%26))
	}
	cases := map[string]*providerpb.InfoResponse{
		"no name":         {Algorithms: []string{"ed25519"}},
		"bad name":        {Name: "Bad Name"},
		"long version":    {Name: "p", Version: strings.Repeat("v", provider.MaxInfoString+1)},
		"duplicate alg":   {Name: "p", Algorithms: []string{"ed25519", "ed25519"}},
		"empty alg":       {Name: "p", Algorithms: []string{""}},
		"too many algs":   {Name: "p", Algorithms: many},
		"long alg":        {Name: "p", Algorithms: []string{strings.Repeat("a", provider.MaxSegment+1)}},
		"long name":       {Name: strings.Repeat("a", provider.MaxSegment+1)},
		"newline in name": {Name: "a\nb"},
		"empty KEK":       {Name: "p", Keks: []string{""}},
		"upper-case KEK":  {Name: "p", Keks: []string{"ABCD"}},
		"duplicate KEK":   {Name: "p", Keks: []string{"ab", "ab"}},
		"long KEK":        {Name: "p", Keks: []string{strings.Repeat("a", provider.MaxKEKFingerprint+1)}},
		"too many KEKs":   {Name: "p", Keks: []string{"1", "2", "3", "4", "5"}},
	}
	for name, w := range cases {
		if _, err := infoFromWire(w); !errorsIsCode(err, provider.EIO) {
			t.Errorf("%s: %v, want EIO", name, err)
		}
	}
	want := provider.Info{Name: "p", Version: "1", Secure: true, Deterministic: true, Algorithms: []provider.Algorithm{"ed25519", "aes-256-gcm"}}
	got, err := infoFromWire(infoToWire(want))
	if err != nil || !sameInfo(got, want) {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	// KEKs cross both ways, in order; a changed list is another Info.
	want.KEKs = []string{"0123456789abcdef", "fedcba9876543210"}
	got, err = infoFromWire(infoToWire(want))
	if err != nil || !sameInfo(got, want) || !reflect.DeepEqual(got.KEKs, want.KEKs) {
		t.Errorf("round trip with KEKs = %+v, %v; want KEKs %v", got, err, want.KEKs)
	}
	other := want
	other.KEKs = []string{"fedcba9876543210", "0123456789abcdef"}
	if sameInfo(want, other) {
		t.Error("sameInfo ignores the order of KEKs")
	}
	other.KEKs = nil
	if sameInfo(want, other) {
		t.Error("sameInfo ignores KEKs")
	}
}

// TestServerChecksRequests calls the server adapter directly, as a
// malicious or buggy client could: bad refs and over-bound payloads are
// refused with the right reason before the provider sees them.
func TestServerChecksRequests(t *testing.T) {
	fake := newFake(func(context.Context, []byte) ([]byte, error) { return make([]byte, 64), nil })
	fake.calls = make(chan provider.KeyRef, 100)
	s := &server{p: fake}
	ctx := t.Context()
	ref := refToWire(signRef(t, "fake"))
	big := func(n int) []byte { return make([]byte, n) }
	cases := []struct {
		name string
		call func() error
		code provider.Code
	}{
		{"sign without ref", func() error { _, err := s.Sign(ctx, &providerpb.SignRequest{}); return err }, provider.EINVAL},
		{"sign message over bound", func() error {
			_, err := s.Sign(ctx, &providerpb.SignRequest{Ref: ref, Handle: []byte("h"), Message: big(provider.MaxSignMessage + 1)})
			return err
		}, provider.EMSGSIZE},
		{"sign handle over bound", func() error {
			_, err := s.Sign(ctx, &providerpb.SignRequest{Ref: ref, Handle: big(provider.MaxHandle + 1)})
			return err
		}, provider.EINVAL},
		{"seal plaintext over bound", func() error {
			_, err := s.Seal(ctx, &providerpb.SealRequest{Ref: ref, Plaintext: big(provider.MaxSealPlaintext + 1)})
			return err
		}, provider.EMSGSIZE},
		{"seal aad over bound", func() error {
			_, err := s.Seal(ctx, &providerpb.SealRequest{Ref: ref, Aad: big(provider.MaxProviderAAD + 1)})
			return err
		}, provider.EMSGSIZE},
		{"open sealed over bound", func() error {
			_, err := s.Open(ctx, &providerpb.OpenRequest{Ref: ref, Sealed: big(provider.MaxSealed + 1)})
			return err
		}, provider.EMSGSIZE},
		{"open aad over bound", func() error {
			_, err := s.Open(ctx, &providerpb.OpenRequest{Ref: ref, Aad: big(provider.MaxProviderAAD + 1)})
			return err
		}, provider.EMSGSIZE},
		{"destroy handle over bound", func() error {
			_, err := s.Destroy(ctx, &providerpb.DestroyRequest{Ref: ref, Handle: big(provider.MaxHandle + 1)})
			return err
		}, provider.EINVAL},
		{"generate bad ref", func() error {
			_, err := s.Generate(ctx, &providerpb.GenerateRequest{Ref: &providerpb.KeyRef{KeyId: "x"}})
			return err
		}, provider.EINVAL},
	}
	for _, tc := range cases {
		err := rpcerr.FromStatus(tc.call())
		if !errorsIsCode(err, tc.code) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	if n := len(fake.calls); n != 0 {
		t.Errorf("the provider saw %d bad requests", n)
	}
}

// panicky panics in Sign.
type panicky struct{ fakeProvider }

func (*panicky) Sign(context.Context, provider.KeyRef, provider.Handle, []byte) ([]byte, error) {
	panic("provider bug holding request data")
}

// TestServerRecoversPanics: a provider panic becomes EIO without the
// panic value, and the plugin keeps serving.
func TestServerRecoversPanics(t *testing.T) {
	p := &panicky{fakeProvider: *newFake(nil)}
	c := TestClient(t, p)
	for i := 0; i < 2; i++ {
		_, err := c.Sign(t.Context(), signRef(t, "fake"), provider.Handle("h"), []byte("m"))
		if !errorsIsCode(err, provider.EIO) {
			t.Fatalf("panicking Sign: %v, want EIO", err)
		}
		if strings.Contains(err.Error(), "request data") {
			t.Errorf("error %q carries the panic value", err)
		}
	}
}

// TestClientChecksBeforeSending: the client refuses what the plugin did
// not announce, and bad refs and over-bound inputs, without a call.
func TestClientChecksBeforeSending(t *testing.T) {
	fake := newFake(func(context.Context, []byte) ([]byte, error) { return make([]byte, 64), nil })
	fake.calls = make(chan provider.KeyRef, 100)
	c := TestClient(t, fake)
	ctx := t.Context()
	ref := signRef(t, "fake")
	mldsa := ref
	mldsa.Algorithm = provider.MLDSA44
	bad := ref
	bad.Version = 0
	_, err := c.Sign(ctx, mldsa, provider.Handle("h"), []byte("m"))
	if !errorsIsCode(err, provider.ENOTSUP) {
		t.Errorf("unannounced algorithm: %v, want ENOTSUP", err)
	}
	if _, err := c.Generate(ctx, mldsa); !errorsIsCode(err, provider.ENOTSUP) {
		t.Errorf("generate unannounced algorithm: %v, want ENOTSUP", err)
	}
	if _, err := c.Sign(ctx, bad, provider.Handle("h"), []byte("m")); !errorsIsCode(err, provider.EINVAL) {
		t.Errorf("bad ref: %v, want EINVAL", err)
	}
	if _, err := c.Sign(ctx, ref, provider.Handle("h"), make([]byte, provider.MaxSignMessage+1)); !errorsIsCode(err, provider.EMSGSIZE) {
		t.Errorf("big message: %v, want EMSGSIZE", err)
	}
	if n := len(fake.calls); n != 0 {
		t.Errorf("%d refused calls reached the provider", n)
	}
}

// TestLineLogger: lines are split, bounded, and all bytes copied.
func TestLineLogger(t *testing.T) {
	var lines []string
	var copied bytes.Buffer
	w := &lineLogger{copy: &copied, log: func(l string) { lines = append(lines, l) }}
	in := "one\r\ntwo\nthr" + "ee\n" + strings.Repeat("x", maxLogLine+10) + "\n"
	for _, chunk := range []string{in[:5], in[5:12], in[12:]} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if len(lines) != 5 || lines[0] != "one" || lines[1] != "two" || lines[2] != "three" ||
		len(lines[3]) != maxLogLine || lines[4] != strings.Repeat("x", 10) {
		t.Errorf("got %d lines of lengths %v, want one, two, three, %d x's, 10 x's", len(lines), lineLens(lines), maxLogLine)
	}
	if copied.String() != in {
		t.Error("copy lost bytes")
	}
}

func lineLens(lines []string) []int {
	n := make([]int, len(lines))
	for i, l := range lines {
		n[i] = len(l)
	}
	return n
}

// TestSlogAdapter: go-plugin's hclog calls reach the slog handler with
// their level, name and arguments.
func TestSlogAdapter(t *testing.T) {
	var buf bytes.Buffer
	var starting atomic.Bool
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "myplugin", &starting)
	l.Named("stdio").With("a", 1).Warn("careful", "b", 2)
	l.Debug("hidden")
	got := buf.String()
	for _, want := range []string{"level=WARN", "msg=careful", "logger=stdio", "a=1", "b=2"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Error("a debug line passed an info handler")
	}
	if l.GetLevel() != hclog.Info || l.IsDebug() || !l.IsWarn() {
		t.Errorf("level = %v", l.GetLevel())
	}
	if newHCLogger(nil, "", nil).GetLevel() != hclog.Off {
		t.Error("a nil logger is not off")
	}

	// The plugin's stderr logger raises unleveled (Debug) lines to Info
	// while the plugin starts, and only then; other loggers never.
	buf.Reset()
	stderr := l.Named("myplugin")
	stderr.Debug("after the start")
	starting.Store(true)
	stderr.Debug("while starting")
	l.Named("other").Debug("other logger")
	l.Debug("root logger")
	got = buf.String()
	if !strings.Contains(got, `level=INFO msg="while starting" logger=myplugin`) {
		t.Errorf("a stderr line while starting is not at Info: %q", got)
	}
	for _, hidden := range []string{"after the start", "other logger", "root logger"} {
		if strings.Contains(got, hidden) {
			t.Errorf("%q was raised to Info: %q", hidden, got)
		}
	}
}
