// Package load holds keystored's load and slow-client test: the real
// daemon, many concurrent clients signing and sealing, slow clients that
// hold connections open (a raw socket that never sends the HTTP/2
// preface, one that sends half of it, one that stops in the middle of a
// frame, gRPC clients that stop reading their responses), and a
// well-behaved client whose every call must still be served. After they
// all leave, the daemon's goroutine and file descriptor counts (from its
// metrics endpoint) must return to their baseline. The package has tests
// only.
//
//	go test -race ./e2e/load/
package load
