// Package server serves keystored's public API, keystore.v1 (services
// Keys, Store and TrustAnchors), over one core.Keystore.
//
// Identity comes only from the kernel: the server's transport credentials
// read SO_PEERCRED (uid, gid, pid) of every Unix socket connection, and an
// Identity maps the uid to an app ID and the operator role. A request
// never names its own identity.
//
// Every RPC passes one unary interceptor that establishes the caller,
// refuses denied callers and malformed messages, runs the handler with a
// request-scoped collector of the core's audit events, and writes exactly
// one audit record per request (a stats handler writes the record of a
// call the transport refused before the interceptor). When the record
// cannot be written the call fails with EIO and returns no output (fail
// closed). Errors cross the wire through internal/rpcerr's one table.
//
// The daemon (cmd/keystored) owns listening, configuration and the
// process; docs/api.md describes the API and docs/operations.md the
// daemon.
package server
