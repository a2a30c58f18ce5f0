package plugin

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// FuzzRefFromWire: any bytes decoded as a wire KeyRef either fail with
// EINVAL or give a ref that passes KeyRef.Check and survives the wire
// again unchanged.
func FuzzRefFromWire(f *testing.F) {
	seeds := []*providerpb.KeyRef{
		{KeyId: "app/p/n", Version: 1, Algorithm: "ed25519", Use: providerpb.Use_USE_SIGN, Provider: "software"},
		{KeyId: "a/b/c", Version: 4294967295, Algorithm: "aes-256-gcm", Use: providerpb.Use_USE_DECRYPT, Provider: "p"},
		{KeyId: "../b/c", Version: 1, Algorithm: "x", Use: 7, Provider: "p"},
		{},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w providerpb.KeyRef
		if proto.Unmarshal(data, &w) != nil {
			return
		}
		ref, err := refFromWire(&w)
		if err != nil {
			if !errorsIsCode(err, provider.EINVAL) {
				t.Fatalf("error %v is not EINVAL", err)
			}
			return
		}
		if err := ref.Check(); err != nil {
			t.Fatalf("accepted ref fails Check: %v", err)
		}
		again, err := refFromWire(refToWire(ref))
		if err != nil || again != ref {
			t.Fatalf("round trip %+v -> %+v, %v", ref, again, err)
		}
	})
}

// FuzzInfoFromWire: any bytes decoded as a wire Info either fail with EIO
// or give an Info that passes Info.Check and survives the wire again.
func FuzzInfoFromWire(f *testing.F) {
	seeds := []*providerpb.InfoResponse{
		{Name: "software", Version: "1", Secure: true, Algorithms: []string{"ed25519", "aes-256-gcm"}},
		{Name: "testseed", Deterministic: true},
		{Name: "Bad", Algorithms: []string{"", ""}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w providerpb.InfoResponse
		if proto.Unmarshal(data, &w) != nil {
			return
		}
		info, err := infoFromWire(&w)
		if err != nil {
			if !errorsIsCode(err, provider.EIO) {
				t.Fatalf("error %v is not EIO", err)
			}
			return
		}
		if err := info.Check(); err != nil {
			t.Fatalf("accepted Info fails Check: %v", err)
		}
		again, err := infoFromWire(infoToWire(info))
		if err != nil || !sameInfo(again, info) {
			t.Fatalf("round trip %+v -> %+v, %v", info, again, err)
		}
	})
}
