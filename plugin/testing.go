package plugin

import (
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/nexus-os/keystored/core/provider"
)

// TestClient serves p over the plugin wire protocol inside the test
// process (go-plugin's in-memory test connection: no subprocess, no TLS)
// and returns the daemon-side provider for it: requests and replies are
// encoded, checked, bounded and carried across gRPC exactly as with a
// plugin process, so a provider author can run the conformance suite
// through the boundary without building a binary:
//
//	conformance.Run(t, func(t *testing.T) provider.Provider {
//		return plugin.TestClient(t, myprovider.New(...))
//	})
//
// When p implements provider.KEKRotator, so does the provider returned,
// over the KEK rotation RPCs (the plugin announces kek_rotation).
//
// The connection is closed when t ends. For tests only.
func TestClient(t testing.TB, p provider.Provider) provider.Provider {
	t.Helper()
	return testRemote(t, &grpcPlugin{impl: p, stub: testStub}).asProvider()
}

// testStub is the daemon side's configuration of TestClient.
var testStub = stubConfig{
	label:       "in-process test plugin",
	callTimeout: DefaultCallTimeout,
	maxReply:    DefaultMaxReply,
}

// testRemote connects to the plugin gp serves in process, as TestClient
// does, and returns the daemon side's remote for it.
func testRemote(t testing.TB, gp goplugin.Plugin) *remote {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{pluginName: gp})
	t.Cleanup(func() {
		// Stop the server first: client.Close asks it to stop too, and
		// go-plugin's GRPCServer.Stop is not safe to run twice at once.
		server.Stop()
		if err := client.Close(); err != nil {
			t.Logf("plugin.TestClient: closing the connection: %v", err)
		}
	})
	raw, err := client.Dispense(pluginName)
	if err != nil {
		t.Fatalf("plugin.TestClient: %v", err)
	}
	s, ok := raw.(*stub)
	if !ok {
		t.Fatalf("plugin.TestClient: unexpected client type %T", raw)
	}
	info, rotates, err := s.fetchInfo(t.Context())
	if err != nil {
		t.Fatalf("plugin.TestClient: Info: %v", err)
	}
	return newRemote(s, info, rotates)
}
