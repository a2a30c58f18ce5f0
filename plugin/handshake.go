package plugin

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// ProtocolVersion is the version of the provider wire protocol this
// package speaks (protobuf package keystore.provider.v1).
const ProtocolVersion = 1

// Handshake is the go-plugin handshake every keystored provider plugin and
// the daemon share. The cookie only tells a plugin binary that it was
// started by the daemon (go-plugin: "not a security measure, just a UX
// feature"); the security of the channel comes from automatic mutual TLS.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "KEYSTORED_PROVIDER_PLUGIN",
	MagicCookieValue: "22855a0f1b59789b98f95d97602065a7",
}

// pluginName is the name of the provider in go-plugin's plugin set.
const pluginName = "provider"

// versionedPlugins returns the plugin sets by protocol version: version 1
// serves (or dispenses) the provider.
func versionedPlugins(gp *grpcPlugin) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ProtocolVersion: {pluginName: gp},
	}
}

// grpcPlugin is the go-plugin GRPCPlugin of the provider: on the plugin
// side it registers the server for impl, on the daemon side it returns a
// stub over the connection.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl provider.Provider // plugin side only
	stub stubConfig        // daemon side only
}

// GRPCServer implements goplugin.GRPCPlugin.
func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	providerpb.RegisterProviderServer(s, &server{p: p.impl})
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin.
func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return newStub(providerpb.NewProviderClient(c), p.stub), nil
}
