package plugin

import (
	"bytes"
	"context"
	"crypto"
	"slices"
	"strings"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// echoFake is a fake whose SignDigest and MAC (and Sign) return "out:"
// followed by their input, "" for the input "empty", and fail with the
// code named by an input "code:ENAME".
func echoFake() *fakeProvider {
	return newFake(func(_ context.Context, in []byte) ([]byte, error) {
		s := string(in)
		switch {
		case s == "empty":
			return nil, nil
		case strings.HasPrefix(s, "code:"):
			c, _ := provider.ParseCode(strings.TrimPrefix(s, "code:"))
			return nil, provider.Errorf(c, "fake chose %s", c.String())
		}
		return append([]byte("out:"), in...), nil
	})
}

// TestSignDigestAcrossTheWire: the digest and its hash reach the provider
// as they were given, for each of the three hashes, and its signature
// comes back; a reply of no bytes or over MaxSignature is EIO; the
// provider's errors keep their code.
func TestSignDigestAcrossTheWire(t *testing.T) {
	t.Parallel()
	fake := echoFake()
	p := TestClient(t, fake)
	ctx := t.Context()
	ref := signRef(t, "fake")
	ref.Algorithm = provider.ECDSAP256
	for _, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := bytes.Repeat([]byte{byte(hash)}, hash.Size())
		sig, err := p.SignDigest(ctx, ref, provider.Handle("h"), hash, d)
		if err != nil || !bytes.Equal(sig, append([]byte("out:"), d...)) {
			t.Errorf("%v: SignDigest = %q, %v; want out: and the digest", hash, sig, err)
		}
		if got := crypto.Hash(fake.hash.Load()); got != hash {
			t.Errorf("the provider was given hash %v, want %v", got, hash)
		}
	}
	// Replies outside the bounds (the fake echoes; a digest cannot make
	// them, so the provider is swapped for one that returns them).
	for name, sig := range map[string][]byte{"empty": nil, "over MaxSignature": make([]byte, provider.MaxSignature+1)} {
		bad := newFake(func(context.Context, []byte) ([]byte, error) { return sig, nil })
		if _, err := TestClient(t, bad).SignDigest(ctx, ref, provider.Handle("h"), crypto.SHA256, make([]byte, 32)); !errorsIsCode(err, provider.EIO) {
			t.Errorf("a signature reply %s: %v, want EIO", name, err)
		}
	}
	for _, c := range []provider.Code{provider.EPERM, provider.EINVAL, provider.EKEYREVOKED} {
		failing := newFake(func(context.Context, []byte) ([]byte, error) {
			return nil, provider.Errorf(c, "fake chose %s", c.String())
		})
		_, err := TestClient(t, failing).SignDigest(ctx, ref, provider.Handle("h"), crypto.SHA256, make([]byte, 32))
		checkCode(t, err, c)
	}
}

// TestMACAcrossTheWire: messages of 0, 1 and MaxMACMessage bytes reach
// the provider whole and the tag comes back; a tag of no bytes or over
// MaxMAC is EIO; the provider's errors keep their code.
func TestMACAcrossTheWire(t *testing.T) {
	t.Parallel()
	fake := newFake(func(_ context.Context, msg []byte) ([]byte, error) {
		// A "tag" that names the message: its length and its last byte.
		last := byte(0)
		if len(msg) > 0 {
			last = msg[len(msg)-1]
		}
		return []byte{byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg)), last}, nil
	})
	fake.calls = make(chan provider.KeyRef, 10)
	p := TestClient(t, fake)
	ctx := t.Context()
	ref := macKeyRef(t)
	for _, n := range []int{0, 1, provider.MaxMACMessage} {
		msg := bytes.Repeat([]byte{7}, n)
		want := []byte{byte(n >> 16), byte(n >> 8), byte(n), 0}
		if n > 0 {
			want[3] = 7
		}
		tag, err := p.MAC(ctx, ref, provider.Handle("h"), msg)
		if err != nil || !bytes.Equal(tag, want) {
			t.Errorf("MAC of %d bytes = %x, %v; want %x", n, tag, err, want)
		}
		if got := <-fake.calls; got != ref {
			t.Errorf("the provider was given ref %+v, want %+v", got, ref)
		}
	}
	for name, tag := range map[string][]byte{"empty": nil, "over MaxMAC": make([]byte, provider.MaxMAC+1)} {
		bad := newFake(func(context.Context, []byte) ([]byte, error) { return tag, nil })
		if _, err := TestClient(t, bad).MAC(ctx, ref, provider.Handle("h"), []byte("m")); !errorsIsCode(err, provider.EIO) {
			t.Errorf("a tag reply %s: %v, want EIO", name, err)
		}
	}
	tag, err := TestClient(t, newFake(func(context.Context, []byte) ([]byte, error) { return make([]byte, provider.MaxMAC), nil })).
		MAC(ctx, ref, provider.Handle("h"), nil)
	if err != nil || len(tag) != provider.MaxMAC {
		t.Errorf("a tag of MaxMAC bytes: %d bytes, %v", len(tag), err)
	}
	for _, c := range []provider.Code{provider.EPERM, provider.EBADMSG, provider.EKEYREVOKED} {
		failing := newFake(func(context.Context, []byte) ([]byte, error) {
			return nil, provider.Errorf(c, "fake chose %s", c.String())
		})
		_, err := TestClient(t, failing).MAC(ctx, ref, provider.Handle("h"), []byte("m"))
		checkCode(t, err, c)
	}
}

// oldPlugin serves the protocol as a plugin built before the methods
// drop names (SignDigest and Mac; Decrypt, NewImportKey and Import; the
// call stream, Calls, although its Info still announces it): its service
// has no such methods, so gRPC itself answers them UNIMPLEMENTED, without
// a keystored reason.
type oldPlugin struct {
	grpcPlugin
	drop []string
}

func (p *oldPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	desc := providerpb.Provider_ServiceDesc
	desc.Methods = slices.DeleteFunc(slices.Clone(desc.Methods), func(m grpc.MethodDesc) bool {
		return slices.Contains(p.drop, m.MethodName)
	})
	desc.Streams = slices.DeleteFunc(slices.Clone(desc.Streams), func(m grpc.StreamDesc) bool {
		return slices.Contains(p.drop, m.StreamName)
	})
	s.RegisterService(&desc, &server{p: p.impl})
	return nil
}

// TestOldPluginIsENOTSUP: SignDigest and MAC to a plugin that does not
// serve them are ENOTSUP, the connection is not taken for lost, and the
// methods it serves still work — unary, since it does not serve the call
// stream it announces.
func TestOldPluginIsENOTSUP(t *testing.T) {
	t.Parallel()
	lost := false
	cfg := testStub
	cfg.onLost = func() { lost = true }
	r := testRemote(t, &oldPlugin{grpcPlugin: grpcPlugin{impl: echoFake(), stub: cfg}, drop: []string{"SignDigest", "Mac", "Calls"}})
	ctx := t.Context()
	ref := signRef(t, "fake")
	ref.Algorithm = provider.ECDSAP256
	_, err := r.SignDigest(ctx, ref, provider.Handle("h"), crypto.SHA256, make([]byte, 32))
	checkCode(t, err, provider.ENOTSUP)
	if !strings.Contains(err.Error(), "does not serve sign digest") {
		t.Errorf("SignDigest error %q does not say the plugin lacks it", err)
	}
	_, err = r.MAC(ctx, macKeyRef(t), provider.Handle("h"), []byte("m"))
	checkCode(t, err, provider.ENOTSUP)
	if lost {
		t.Error("an UNIMPLEMENTED answer marked the connection lost")
	}
	if sig, err := r.Sign(ctx, signRef(t, "fake"), provider.Handle("h"), []byte("m")); err != nil || string(sig) != "out:m" {
		t.Errorf("Sign on the old plugin = %q, %v", sig, err)
	}
	// The same plugin, with its methods: they answer.
	r = testRemote(t, &grpcPlugin{impl: echoFake(), stub: testStub})
	if _, err := r.MAC(ctx, macKeyRef(t), provider.Handle("h"), []byte("m")); err != nil {
		t.Errorf("MAC on a current plugin: %v", err)
	}
}

// TestRotatingWrappersForward: the client of a provider that rotates its
// KEK (a rotatingRemote; a rotatingClient in a daemon) serves SignDigest
// and MAC as the plain one does.
func TestRotatingWrappersForward(t *testing.T) {
	t.Parallel()
	f := newFakeRotator()
	f.sign = echoFake().sign
	p := TestClient(t, f)
	if _, ok := p.(rotatingRemote); !ok {
		t.Fatalf("TestClient of a KEKRotator is a %T, want rotatingRemote", p)
	}
	ctx := t.Context()
	ref := signRef(t, "fake")
	ref.Algorithm = provider.ECDSAP256
	if sig, err := p.SignDigest(ctx, ref, provider.Handle("h"), crypto.SHA256, bytes.Repeat([]byte("d"), 32)); err != nil || !bytes.HasPrefix(sig, []byte("out:d")) {
		t.Errorf("SignDigest through rotatingRemote = %q, %v", sig, err)
	}
	if tag, err := p.MAC(ctx, macKeyRef(t), provider.Handle("h"), []byte("m")); err != nil || string(tag) != "out:m" {
		t.Errorf("MAC through rotatingRemote = %q, %v", tag, err)
	}
}
