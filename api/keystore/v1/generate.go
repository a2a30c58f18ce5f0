// Package keystorev1 is the generated Go code of keystored's public API,
// protobuf package keystore.v1 (keystore.proto in this directory).
//
// Regenerate with `go generate ./...` (needs protoc from Debian's
// protobuf-compiler, and protoc-gen-go v1.36.12 and protoc-gen-go-grpc
// v1.6.2 from `go install`; docs/api.md says how).
package keystorev1

//go:generate protoc -I . -I /usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative keystore.proto
