// Package badinput holds the end-to-end bad-input table: more than 25
// classes of hostile or malformed input (path traversal, look-alike
// unicode, control bytes, length and version edges, algorithm/use
// mismatches, malformed envelopes of every length, oversized frames and
// batches, garbage protobuf, ...) sent to every RPC of keystore.v1 where
// the class makes sense, through a raw gRPC client against the real
// keystored. Each request must end with a typed error (or its documented
// answer), the daemon must keep serving without a panic, the state
// directory must not change, and each request must leave exactly one
// audit record.
//
//	go test -race -v -run TestBadInput ./e2e/badinput/   # prints the table's summary
package badinput
