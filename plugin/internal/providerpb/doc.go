// Package providerpb is the Go code generated from the keystored provider
// plugin protocol, plugin/proto/keystore/provider/v1/provider.proto
// (protobuf package keystore.provider.v1). Do not edit the .pb.go files:
// change the .proto and run go generate ./plugin.
package providerpb
