// Package server serves keystored's public API, keystore.v1 (services
// Keys, Store, TrustAnchors and Admin, with gRPC health and reflection),
// over one core.Keystore.
//
// Identity comes only from the kernel: the server's transport credentials
// read SO_PEERCRED (uid, gid, pid) of every Unix socket connection, and an
// Identity maps the uid to an app ID and the operator role. A request
// never names its own identity.
//
// Every request has one state (a call, audit.go) from the moment the
// transport sees it: the caller, and the core's audit events folded into
// the request's one audit record. Every method runs through serve
// (rpc.go), which refuses denied callers and malformed messages, runs the
// handler and writes the record; a request the transport refused before
// serve gets its record when it ends. A state change writes the record
// ahead of the change. When the record cannot be written the call fails
// with EIO and returns no output (fail closed). Errors cross the wire
// through internal/rpcerr's one table.
//
// The provider's work is shared fairly among apps: New wraps the provider
// in internal/fairsched, so every Generate, Sign, SignDigest, MAC, Seal
// and Open (every batch item) waits in the queue of the app serve
// admitted, weighted by its algorithm's cost (docs/architecture.md, "Fair scheduling").
//
// The daemon (cmd/keystored) owns listening, configuration and the
// process; docs/api.md describes the API and docs/operations.md the
// daemon.
package server
