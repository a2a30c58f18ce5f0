// Package faults holds keystored's disk-fault tests: a full disk (ENOSPC
// injected into the state directory's writes through storage.WithHook, in
// an in-process server on a real Unix socket), a read-only state directory
// under the real daemon, and an audit log that cannot be written (the
// real daemon with its file size limit lowered under the log's size).
// Each checks that state-changing requests fail with a clear EIO, that
// nothing is half-written, and that reads are still served (or, with no
// audit log, that nothing is served and nothing changes).
//
// It also holds the audit count test: over more than 10^4 mixed requests
// (granted, denied, malformed, refused by the transport, batches) the real
// daemon writes exactly one audit record per request.
//
//	go test -race ./e2e/faults/
package faults
