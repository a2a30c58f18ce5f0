// Package plugin runs keystored providers out of process, over
// hashicorp/go-plugin's gRPC protocol, so that the daemon never holds
// private key material, a crashing provider cannot take the keystore down,
// and a vendor can ship a provider as a binary.
//
// # Plugin side
//
// A plugin's main builds a provider.Provider and calls Serve:
//
//	func main() {
//		p, err := myprovider.New(...)
//		if err != nil { ... }
//		plugin.Serve(p)
//	}
//
// Serve speaks protocol version 1 of the wire protocol
// (proto/keystore/provider/v1/provider.proto, protobuf package
// keystore.provider.v1) under Handshake. It checks every request (key
// reference, sizes) before the provider sees it, carries the provider's
// errors across as gRPC statuses through internal/rpcerr's one table, and
// never logs payloads.
//
// # Daemon side
//
// Launch starts a plugin binary and returns a *Client, which implements
// provider.Provider:
//
//   - the binary is named by an absolute path and pinned by its SHA-256;
//     it and every directory above it must be owned by root or the
//     daemon's uid and not writable by group or others, with no symbolic
//     link on the path (sshd's StrictModes; EPERM otherwise);
//   - Launch copies it into Config.PrivateDir (a 0700 directory of the
//     daemon's; keystored uses <state>/.plugins, never $TMPDIR), hashing the
//     copy as it writes it, and refuses a mismatch (EPERM, naming both
//     sums). Every start, restarts included, hashes the copy again and
//     executes the very descriptor it hashed (/proc/self/fd/3 in the
//     child), so nothing can be swapped between check and exec;
//   - the plugin's environment is exactly Config.Env plus go-plugin's own
//     variables (nothing of the host's); its stdin is /dev/null and its
//     working directory a private 0700 one; on Linux it is killed if the
//     daemon dies;
//   - the connection always uses go-plugin's automatic mutual TLS and the
//     gRPC protocol, over a Unix socket in the private directory; there is
//     no reattach;
//   - Info comes from the plugin, is checked (provider.Info.Check) and
//     cached; the client refuses algorithms the plugin did not announce;
//   - every call is bounded by Config.CallTimeout, every reply by
//     Config.MaxReply and the contract's bounds;
//   - errors come out as the same sentinels the plugin's provider returned
//     (errors.Is(err, provider.ErrKeyRevoked) holds);
//   - if the plugin dies, calls in flight fail with EUNAVAILABLE, and the
//     next call restarts it with exponential backoff; after
//     Config.MaxRestarts consecutive failures the client answers
//     EUNAVAILABLE for a cool-down before trying again. A restarted plugin
//     must describe itself (Info) exactly as before.
//
// The plugin's stderr (go-plugin's log lines and anything the plugin
// prints) is forwarded to Config.Logger; while the plugin starts, plain
// lines are logged at Info (go-plugin would log them at Debug), so its
// reason for refusing to start is always visible.
//
// docs/providers.md is the guide for provider authors: the contract, the
// conformance suite, packaging and pinning, the wire protocol for other
// languages, and the security model of the plugin boundary.
package plugin
