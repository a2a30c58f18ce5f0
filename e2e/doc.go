// Package e2e holds keystored's end-to-end tests and benchmarks: a real
// keystored process (built and started by internal/daemontest) on a real
// Unix socket, driven through the typed client (package client) and the
// keystorectl binary, built and executed for real.
//
//	go test -race ./e2e/                               # the tests
//	go test -run '^$' -bench . -benchtime 3s ./e2e/    # the benchmarks
package e2e
