package plugin

// The wire protocol's Go code is generated from proto/ and committed. To
// regenerate it, install protoc (Debian: apt-get install protobuf-compiler)
// and the pinned code generators, then run go generate:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	PATH="$(go env GOPATH)/bin:$PATH" go generate ./plugin
//
// TestGeneratedCodeIsFresh fails when the committed code differs from what
// these tools generate.

//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/nexus-os/keystored/plugin --go-grpc_out=. --go-grpc_opt=module=github.com/nexus-os/keystored/plugin keystore/provider/v1/provider.proto
