// Command misbehave is a provider plugin for the plugin package's tests:
// it hangs, crashes, answers too much, returns chosen errors and reports
// its environment, on request. Never for real use.
//
// Modes (first argument):
//
//	serve  a provider named "misbehave" (algorithm ed25519), whose Sign
//	       acts on the message: "hang" blocks forever, ignoring the
//	       context; "crash" exits the process; "huge" returns 2 MiB;
//	       "sig+1" returns provider.MaxSignature+1 bytes; "code:ENAME"
//	       fails with that code; anything else returns 64 zero bytes. Info's
//	       Version reports the environment and working directory:
//	       "canary=<set|absent>;visible=<value of KEYSTORE_TEST_VISIBLE>;cwd=<mode>".
//	flip   like serve, but Info announces Secure=true on its first start
//	       in a working directory and Secure=false afterwards.
//	notls  serves go-plugin's protocol without mutual TLS.
//	exit   exits at once with status 3.
package main

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"strings"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin"
)

func main() {
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "serve":
		plugin.Serve(&misbehave{secure: true})
	case "flip":
		_, err := os.Stat("started")
		first := os.IsNotExist(err)
		if werr := os.WriteFile("started", []byte("1"), 0o600); werr != nil {
			fmt.Fprintln(os.Stderr, "misbehave:", werr)
			os.Exit(1)
		}
		plugin.Serve(&misbehave{secure: first})
	case "notls":
		_ = os.Unsetenv("PLUGIN_CLIENT_CERT")
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig:  plugin.Handshake,
			VersionedPlugins: map[int]goplugin.PluginSet{plugin.ProtocolVersion: {"provider": nothing{}}},
			GRPCServer:       goplugin.DefaultGRPCServer,
		})
	case "exit":
		fmt.Fprintln(os.Stderr, "misbehave: exiting at once, as asked")
		os.Exit(3)
	default:
		fmt.Fprintln(os.Stderr, "misbehave: unknown mode", mode)
		os.Exit(2)
	}
}

// nothing is a go-plugin gRPC plugin that registers no service.
type nothing struct {
	goplugin.NetRPCUnsupportedPlugin
}

func (nothing) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error { return nil }

func (nothing) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, nil
}

type misbehave struct{ secure bool }

func (m *misbehave) Info(context.Context) (provider.Info, error) {
	canary := "absent"
	if _, ok := os.LookupEnv("KEYSTORE_TEST_HOST_CANARY"); ok {
		canary = "set"
	}
	cwd := "unknown"
	if fi, err := os.Stat("."); err == nil {
		cwd = fmt.Sprintf("%04o", fi.Mode().Perm())
	}
	return provider.Info{
		Name:       "misbehave",
		Version:    "canary=" + canary + ";visible=" + os.Getenv("KEYSTORE_TEST_VISIBLE") + ";cwd=" + cwd,
		Secure:     m.secure,
		Algorithms: []provider.Algorithm{provider.Ed25519},
	}, nil
}

func (m *misbehave) Generate(context.Context, provider.KeyRef) (provider.Generated, error) {
	return provider.Generated{PublicKey: make([]byte, 32), Handle: provider.Handle("handle")}, nil
}

func (m *misbehave) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	switch s := string(msg); {
	case s == "hang":
		select {} // ignores ctx on purpose
	case s == "crash":
		os.Exit(3)
	case s == "huge":
		return make([]byte, 2<<20), nil
	case s == "sig+1":
		return make([]byte, provider.MaxSignature+1), nil
	case strings.HasPrefix(s, "code:"):
		c, ok := provider.ParseCode(strings.TrimPrefix(s, "code:"))
		if !ok {
			return nil, provider.Errorf(provider.EINVAL, "unknown code")
		}
		return nil, provider.WithOp("sign", ref.String(), provider.Errorf(c, "misbehave chose %s", c.String()))
	}
	return make([]byte, 64), nil
}

func (m *misbehave) Seal(_ context.Context, _ provider.KeyRef, _ provider.Handle, plaintext, _ []byte) ([]byte, error) {
	return append(make([]byte, 16), plaintext...), nil
}

func (m *misbehave) Open(_ context.Context, _ provider.KeyRef, _ provider.Handle, sealed, _ []byte) ([]byte, error) {
	if len(sealed) < 16 {
		return nil, provider.Errorf(provider.EBADMSG, "authentication failed")
	}
	return sealed[16:], nil
}

func (m *misbehave) Destroy(context.Context, provider.KeyRef, provider.Handle) error { return nil }

// SignDigest is not served: this plugin misbehaves only in Sign and its
// other methods.
func (m *misbehave) SignDigest(context.Context, provider.KeyRef, provider.Handle, crypto.Hash, []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "misbehave: no SignDigest")
}

// MAC is not served.
func (m *misbehave) MAC(context.Context, provider.KeyRef, provider.Handle, []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "misbehave: no MAC")
}

func (m *misbehave) Decrypt(context.Context, provider.KeyRef, provider.Handle, []byte, []byte, []byte, []byte) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, "misbehave: no decrypt")
}

func (m *misbehave) NewImportKey(context.Context, provider.KeyRef) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "misbehave: no import")
}

func (m *misbehave) Import(context.Context, provider.KeyRef, provider.KeyRef, provider.Handle, []byte, []byte) (provider.Generated, error) {
	return provider.Generated{}, provider.Errorf(provider.ENOTSUP, "misbehave: no import")
}
