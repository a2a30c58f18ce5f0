package plugin

import (
	"bytes"
	"context"
	"crypto"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// TestRefRoundTrip: a valid KeyRef of each use survives the wire
// unchanged, its use as the protocol's enum value.
func TestRefRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		alg  provider.Algorithm
		use  provider.Use
		wire providerpb.Use
	}{
		{provider.Ed25519, provider.UseSign, providerpb.Use_USE_SIGN},
		{provider.AES256GCM, provider.UseDecrypt, providerpb.Use_USE_DECRYPT},
		{provider.HMACSHA256, provider.UseMAC, providerpb.Use_USE_MAC},
		{provider.HPKEX25519, provider.UseAsymmetricDecrypt, providerpb.Use_USE_ASYMMETRIC_DECRYPT},
	} {
		ref := signRef(t, "software")
		ref.Algorithm, ref.Use = tc.alg, tc.use
		w := refToWire(ref)
		if w.GetUse() != tc.wire {
			t.Errorf("%s: wire use = %v, want %v", tc.alg, w.GetUse(), tc.wire)
		}
		got, err := refFromWire(w)
		if err != nil || got != ref {
			t.Errorf("round trip = %+v, %v; want %+v", got, err, ref)
		}
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
		"use 5":               func(r *providerpb.KeyRef) { r.Use = 5 },
		"use 261 (wraps 5)":   func(r *providerpb.KeyRef) { r.Use = 261 },
		"use 260 (wraps 4)":   func(r *providerpb.KeyRef) { r.Use = 260 },
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
	macRef := refToWire(macKeyRef(t))
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
		{"sign digest without ref", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{DigestHash: "sha256", Digest: big(32)})
			return err
		}, provider.EINVAL},
		{"sign digest without hash", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), Digest: big(32)})
			return err
		}, provider.EINVAL},
		{"sign digest unknown hash", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: "md5", Digest: big(16)})
			return err
		}, provider.EINVAL},
		{"sign digest hash name over bound", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: strings.Repeat("s", 1<<16), Digest: big(32)})
			return err
		}, provider.EINVAL},
		{"sign digest short", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: "sha256", Digest: big(31)})
			return err
		}, provider.EINVAL},
		{"sign digest long", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: "sha384", Digest: big(49)})
			return err
		}, provider.EINVAL},
		{"sign digest over MaxDigest", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: "sha512", Digest: big(provider.MaxDigest + 1)})
			return err
		}, provider.EINVAL},
		{"sign digest empty", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: []byte("h"), DigestHash: "sha256"})
			return err
		}, provider.EINVAL},
		{"sign digest handle over bound", func() error {
			_, err := s.SignDigest(ctx, &providerpb.SignDigestRequest{Ref: ref, Handle: big(provider.MaxHandle + 1), DigestHash: "sha256", Digest: big(32)})
			return err
		}, provider.EINVAL},
		{"mac without ref", func() error { _, err := s.Mac(ctx, &providerpb.MacRequest{Message: []byte("m")}); return err }, provider.EINVAL},
		{"mac message over bound", func() error {
			_, err := s.Mac(ctx, &providerpb.MacRequest{Ref: macRef, Handle: []byte("h"), Message: big(provider.MaxMACMessage + 1)})
			return err
		}, provider.EMSGSIZE},
		{"mac handle over bound", func() error {
			_, err := s.Mac(ctx, &providerpb.MacRequest{Ref: macRef, Handle: big(provider.MaxHandle + 1)})
			return err
		}, provider.EINVAL},
		{"mac use 5", func() error {
			bad := refToWire(signRef(t, "fake"))
			bad.Use = 5
			_, err := s.Mac(ctx, &providerpb.MacRequest{Ref: bad, Handle: []byte("h")})
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
type panicky struct{ *fakeProvider }

func (*panicky) Sign(context.Context, provider.KeyRef, provider.Handle, []byte) ([]byte, error) {
	panic("provider bug holding request data")
}

// TestServerRecoversPanics: a provider panic becomes EIO without the
// panic value, and the plugin keeps serving.
func TestServerRecoversPanics(t *testing.T) {
	p := &panicky{fakeProvider: newFake(nil)}
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
	ecdsa := ref
	ecdsa.Algorithm = provider.ECDSAP256
	for name, tc := range map[string]struct {
		ref    provider.KeyRef
		hash   crypto.Hash
		digest []byte
		h      provider.Handle
		code   provider.Code
	}{
		"no hash":           {ecdsa, 0, make([]byte, 32), provider.Handle("h"), provider.EINVAL},
		"md5":               {ecdsa, crypto.MD5, make([]byte, 16), provider.Handle("h"), provider.EINVAL},
		"short digest":      {ecdsa, crypto.SHA256, make([]byte, 31), provider.Handle("h"), provider.EINVAL},
		"long digest":       {ecdsa, crypto.SHA256, make([]byte, 33), provider.Handle("h"), provider.EINVAL},
		"over MaxDigest":    {ecdsa, crypto.SHA512, make([]byte, provider.MaxDigest+1), provider.Handle("h"), provider.EINVAL},
		"handle over bound": {ecdsa, crypto.SHA256, make([]byte, 32), make(provider.Handle, provider.MaxHandle+1), provider.EINVAL},
		"bad ref":           {bad, crypto.SHA256, make([]byte, 32), provider.Handle("h"), provider.EINVAL},
		"unannounced":       {mldsa, crypto.SHA256, make([]byte, 32), provider.Handle("h"), provider.ENOTSUP},
	} {
		if _, err := c.SignDigest(ctx, tc.ref, tc.h, tc.hash, tc.digest); !errorsIsCode(err, tc.code) {
			t.Errorf("sign digest, %s: %v, want %v", name, err, tc.code)
		}
	}
	mac := macKeyRef(t)
	unannouncedMAC := mac
	unannouncedMAC.Algorithm = provider.HMACSHA512
	if _, err := c.MAC(ctx, mac, provider.Handle("h"), make([]byte, provider.MaxMACMessage+1)); !errorsIsCode(err, provider.EMSGSIZE) {
		t.Errorf("mac of a big message: %v, want EMSGSIZE", err)
	}
	if _, err := c.MAC(ctx, mac, make(provider.Handle, provider.MaxHandle+1), []byte("m")); !errorsIsCode(err, provider.EINVAL) {
		t.Errorf("mac with a handle over the bound: %v, want EINVAL", err)
	}
	if _, err := c.MAC(ctx, unannouncedMAC, provider.Handle("h"), []byte("m")); !errorsIsCode(err, provider.ENOTSUP) {
		t.Errorf("mac of an unannounced algorithm: %v, want ENOTSUP", err)
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

// TestCheckRestarted: a restarted plugin is accepted when it describes
// itself as before, announces KEK rotation as before, and holds a KEK it
// held before (or none, as before); the KEKs of a rotation under way
// differ from the last list and are accepted.
func TestCheckRestarted(t *testing.T) {
	base := provider.Info{Name: "p", Version: "1", Secure: true, Algorithms: []provider.Algorithm{"ed25519"}, KEKs: []string{"aa"}}
	with := func(f func(*provider.Info)) provider.Info {
		i := base
		i.Algorithms = slices.Clone(base.Algorithms)
		f(&i)
		return i
	}
	cases := []struct {
		name           string
		was, now       provider.Info
		wasRot, nowRot bool
		ok             bool
	}{
		{"same", base, base, true, true, true},
		{"begun: [next, current]", base, with(func(i *provider.Info) { i.KEKs = []string{"bb", "aa"} }), true, true, true},
		{"committed: [next]", with(func(i *provider.Info) { i.KEKs = []string{"bb", "aa"} }), with(func(i *provider.Info) { i.KEKs = []string{"bb"} }), true, true, true},
		{"no KEKs, as before", with(func(i *provider.Info) { i.KEKs = nil }), with(func(i *provider.Info) { i.KEKs = nil }), false, false, true},
		{"another KEK", base, with(func(i *provider.Info) { i.KEKs = []string{"bb"} }), true, true, false},
		{"KEKs gone", base, with(func(i *provider.Info) { i.KEKs = nil }), true, true, false},
		{"KEKs appear", with(func(i *provider.Info) { i.KEKs = nil }), base, false, false, false},
		{"rotation gone", base, base, true, false, false},
		{"rotation appears", base, base, false, true, false},
		{"insecure now", base, with(func(i *provider.Info) { i.Secure = false }), true, true, false},
		{"other version", base, with(func(i *provider.Info) { i.Version = "2" }), true, true, false},
		{"other algorithms", base, with(func(i *provider.Info) { i.Algorithms = []provider.Algorithm{"ml-dsa-44"} }), true, true, false},
	}
	for _, tc := range cases {
		err := checkRestarted(tc.was, tc.now, tc.wasRot, tc.nowRot)
		if (err == nil) != tc.ok || err != nil && !errorsIsCode(err, provider.EUNAVAILABLE) {
			t.Errorf("%s: checkRestarted = %v, want accepted %v", tc.name, err, tc.ok)
		}
	}
}
