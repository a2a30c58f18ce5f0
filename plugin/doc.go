// Package plugin runs keystored providers out of process over
// hashicorp/go-plugin's gRPC protocol, so the daemon never holds private
// key material, a crashing provider cannot take the keystore down, and a
// vendor can ship a provider as a binary.
//
// A plugin's main builds a [provider.Provider] and calls [Serve], which
// speaks the wire protocol keystore.provider.v1 under [Handshake] and
// checks every request before the provider sees it. The daemon calls
// [Launch], which runs only a private copy (in [Config].PrivateDir, re-hashed and executed
// from its descriptor at every start) of a binary whose SHA-256 it pinned
// and that passes sshd-style StrictModes checks, with an environment of its own, and returns a
// [*Client] that implements provider.Provider: calls are bounded in time
// and size, errors keep their codes, and a plugin that dies is restarted
// with backoff. Sign, SignDigest and MAC travel on one long-lived call
// stream, batched with the calls made at the same time, when the plugin
// serves it (Serve does); every other call is a unary RPC.
// [Client.Provider] adds the optional interfaces the plugin
// announces (provider.KEKRotator). [TestClient] serves a provider over the
// real protocol inside a test.
//
// docs/providers.md is the guide for provider authors: the contract, the
// conformance suite, packaging and pinning, what Launch does, the wire
// protocol for other languages and the security model of the boundary.
package plugin
