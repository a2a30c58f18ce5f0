// Package leak holds keystored's non-exportability test (THREATS.md T13,
// T18): the real daemon on the INSECURE testseed provider (in process,
// and as a plugin), a workload over every RPC of Keys, Store,
// TrustAnchors and Admin with its error paths, and a search of every sink (each
// response, the daemon's and the plugin's logs, the audit log, every file
// of the state directory) for every private key, the KEK and the seed in
// raw, hex and base64 forms, and for the canary plaintexts, AAD, messages
// and values in the logs and the audit log. The package has tests only.
//
//	go test -race ./e2e/leak/
package leak
