package server

import (
	"crypto/sha256"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// fuzzMethods are the full method names of every RPC of keystore.v1.
func fuzzMethods() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{keystorev1.Keys_ServiceDesc, keystorev1.Store_ServiceDesc, keystorev1.TrustAnchors_ServiceDesc, keystorev1.Admin_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
	}
	return out
}

// FuzzRequest sends arbitrary bytes as the request message of each RPC
// (chosen by the first argument) to a real server over its Unix socket,
// through the transport, the request codec, the interceptor and the
// handler: every call ends in success or a typed error carrying a
// keystored reason, never a panic or an untyped status, and writes
// exactly one audit record. The corpus is seeded with a valid request of
// every RPC against keys that exist (an HPKE message to a key, material
// wrapped to import parameters for v1.4's), and with malformed encodings.
func FuzzRequest(f *testing.F) {
	e := newEnv(f, envOpts{anchors: testAnchors(f)})
	for _, k := range []struct {
		id  string
		alg provider.Algorithm
	}{{"alice/sig/k", provider.Ed25519}, {"alice/box/k", provider.XChaCha20Poly1305},
		{"alice/ec/k", provider.ECDSAP256}, {"alice/mac/k", provider.HMACSHA256}} {
		if _, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: k.id, Algorithm: string(k.alg)}); err != nil {
			f.Fatal(err)
		}
	}
	sealed, err := e.keys.Seal(bg, &keystorev1.SealRequest{Key: "box/k", Plaintext: []byte("pt"), Aad: []byte("aad")})
	if err != nil {
		f.Fatal(err)
	}
	sig, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
	if err != nil {
		f.Fatal(err)
	}
	tag, err := e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: []byte("m")})
	if err != nil {
		f.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	// v1.4: an HPKE key and a message to it, import parameters.
	if _, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "hpke/k", Algorithm: string(provider.HPKEX25519)}); err != nil {
		f.Fatal(err)
	}
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "hpke/k"})
	if err != nil {
		f.Fatal(err)
	}
	hpkeEnc, hpkeCT := hpkeSealTo(f, pk.GetKemId(), pk.GetKdfId(), pk.GetAeadId(), pk.GetPublicKey(), []byte("info"), []byte("aad"), []byte("m"))
	ip, err := e.keys.GetImportParameters(bg, &keystorev1.GetImportParametersRequest{Key: "imp/k", Algorithm: "aes-256-gcm", WrappingAlgorithm: string(provider.HPKEX25519)})
	if err != nil {
		f.Fatal(err)
	}
	importEnc, wrapped := hpkeSealTo(f, ip.GetKemId(), ip.GetKdfId(), ip.GetAeadId(), ip.GetPublicKey(), ip.GetInfo(), nil, make([]byte, 32))
	if _, err := e.store.Put(bg, &keystorev1.PutValueRequest{Name: "v", Value: []byte("value")}); err != nil {
		f.Fatal(err)
	}
	methods := fuzzMethods()
	index := map[string]uint8{}
	for i, m := range methods {
		index[m] = uint8(i)
	}
	golden := map[string]proto.Message{
		"/keystore.v1.Keys/Create":        &keystorev1.CreateKeyRequest{Key: "sig/new", Algorithm: "ed25519", Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}},
		"/keystore.v1.Keys/Get":           &keystorev1.GetKeyRequest{Key: "sig/k"},
		"/keystore.v1.Keys/List":          &keystorev1.ListKeysRequest{PageSize: 2},
		"/keystore.v1.Keys/Rotate":        &keystorev1.RotateKeyRequest{Key: "sig/k"},
		"/keystore.v1.Keys/Revoke":        &keystorev1.RevokeKeyRequest{Key: "sig/gone"},
		"/keystore.v1.Keys/RevokeVersion": &keystorev1.RevokeKeyVersionRequest{Key: "sig/k", Version: 1},
		"/keystore.v1.Keys/Destroy":       &keystorev1.DestroyKeyRequest{Key: "sig/gone"},
		"/keystore.v1.Keys/SetPolicy":     &keystorev1.SetKeyPolicyRequest{Key: "box/k", Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 1}},
		"/keystore.v1.Keys/PublicKey":     &keystorev1.PublicKeyRequest{Key: "sig/k", Version: 1},
		"/keystore.v1.Keys/Sign":          &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")},
		"/keystore.v1.Keys/Verify":        &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: []byte("m"), Signature: sig.GetSignature()},
		"/keystore.v1.Keys/Seal":          &keystorev1.SealRequest{Key: "box/k", Plaintext: []byte("pt"), Aad: []byte("aad")},
		"/keystore.v1.Keys/Unseal":        &keystorev1.UnsealRequest{Key: "box/k", Sealed: sealed.GetSealed(), Aad: []byte("aad")},
		"/keystore.v1.Keys/Rewrap":        &keystorev1.RewrapRequest{Key: "box/k", Sealed: sealed.GetSealed(), Aad: []byte("aad")},
		"/keystore.v1.Keys/SignBatch": &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
			{Key: "sig/k", Message: []byte("a")}, {Key: "../x", Message: []byte("b")}}},
		"/keystore.v1.Keys/SealBatch": &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{
			{Key: "box/k", Plaintext: []byte("a")}, {Key: "sig/k", Plaintext: []byte("b")}}},
		"/keystore.v1.Keys/UnsealBatch": &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{
			{Key: "box/k", Sealed: sealed.GetSealed(), Aad: []byte("aad")}, {Key: "box/k", Sealed: []byte{1}}}},
		"/keystore.v1.Keys/Mac":       &keystorev1.MacRequest{Key: "mac/k", Message: []byte("m")},
		"/keystore.v1.Keys/VerifyMac": &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: []byte("m"), Tag: tag.GetTag()},
		"/keystore.v1.Keys/MacBatch": &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{
			{Key: "mac/k", Message: []byte("a")}, {Key: "sig/k", Message: []byte("b")}}},
		"/keystore.v1.Keys/VerifyMacBatch": &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
			{Key: "mac/k", Version: 1, Message: []byte("m"), Tag: tag.GetTag()}, {Key: "mac/k", Version: 1, Message: []byte("n"), Tag: tag.GetTag()}}},
		"/keystore.v1.Keys/GenerateDataKey":                 &keystorev1.GenerateDataKeyRequest{Key: "box/k", Spec: "aes-256-gcm", Aad: []byte("aad")},
		"/keystore.v1.Keys/GenerateDataKeyWithoutPlaintext": &keystorev1.GenerateDataKeyRequest{Key: "box/k", NumberOfBytes: 24},
		"/keystore.v1.Keys/Decrypt":                         &keystorev1.DecryptRequest{Key: "hpke/k", Version: 1, Enc: hpkeEnc, Ciphertext: hpkeCT, Info: []byte("info"), Aad: []byte("aad")},
		"/keystore.v1.Keys/GetImportParameters":             &keystorev1.GetImportParametersRequest{Key: "imp/new", Algorithm: "hmac-sha256", WrappingAlgorithm: string(provider.HPKEX25519), TtlSeconds: 60},
		"/keystore.v1.Keys/Import":                          &keystorev1.ImportKeyRequest{Key: "imp/k", Token: ip.GetToken(), Enc: importEnc, Wrapped: wrapped},
		"/keystore.v1.Keys/Sweep":                           &keystorev1.SweepKeysRequest{Limit: 10},
		"/keystore.v1.Keys/GetUsage":                        &keystorev1.GetUsageRequest{},
		"/keystore.v1.Store/Put":                            &keystorev1.PutValueRequest{Name: "w", Value: []byte("x")},
		"/keystore.v1.Store/Get":                            &keystorev1.GetValueRequest{Name: "v"},
		"/keystore.v1.Store/Delete":                         &keystorev1.DeleteValueRequest{Name: "w"},
		"/keystore.v1.Store/List":                           &keystorev1.ListValuesRequest{PageSize: 1},
		"/keystore.v1.TrustAnchors/ListAnchors":             &keystorev1.ListAnchorsRequest{},
		"/keystore.v1.TrustAnchors/Verify":                  &keystorev1.VerifyAnchorRequest{Anchor: "release", Message: []byte("m"), Signature: make([]byte, 64)},
		"/keystore.v1.Admin/WrappingKeyStatus":              &keystorev1.WrappingKeyStatusRequest{},
		"/keystore.v1.Admin/RotateWrappingKey":              &keystorev1.RotateWrappingKeyRequest{},
	}
	seeds := 0
	for _, m := range methods {
		g, ok := golden[m]
		if !ok {
			f.Fatalf("no golden request for %s: add one", m)
		}
		b, err := proto.Marshal(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[m], b)
		f.Add(index[m], b[:len(b)/2])
		f.Add(index[m], append(b, 0xff))
		seeds += 3
	}
	// The v1.3 fields of requests that had golden requests before.
	for m, g := range map[string]proto.Message{
		"/keystore.v1.Keys/Create": &keystorev1.CreateKeyRequest{Key: "mac/new", Use: "mac"},
		"/keystore.v1.Keys/Sign":   &keystorev1.SignRequest{Key: "ec/k", Version: 1, Digest: digest[:], DigestHash: "sha256"},
		"/keystore.v1.Keys/Verify": &keystorev1.VerifyRequest{Key: "ec/k", Version: 1, Digest: digest[:], DigestHash: "sha256", Signature: make([]byte, 70)},
		// v1.4 fields of older requests.
		"/keystore.v1.Keys/Rotate": &keystorev1.RotateKeyRequest{Key: "box/k", Generate: true},
	} {
		b, err := proto.Marshal(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[m], b)
		seeds++
	}
	if len(golden) != len(methods) {
		f.Fatalf("%d golden requests for %d methods", len(golden), len(methods))
	}
	if seeds == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		m := methods[int(which)%len(methods)]
		before := e.audit.count()
		err := invokeRaw(e.conn, m, body)
		if err != nil {
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("%s: not a status: %v", m, err)
			}
			if !hasKeystoredReason(st) {
				t.Fatalf("%s: status without a keystored reason: %v", m, err)
			}
			if c := codeOfRPC(err); !c.Valid() {
				t.Fatalf("%s: invalid code in %v", m, err)
			}
		}
		recs := e.audit.waitFor(t, before+1)
		if len(recs) != before+1 {
			t.Fatalf("%s: %d audit records for one call", m, len(recs)-before)
		}
	})
}

// hasKeystoredReason reports whether st carries keystored's ErrorInfo.
func hasKeystoredReason(st *status.Status) bool {
	for _, d := range st.Proto().GetDetails() {
		if d.GetTypeUrl() == "type.googleapis.com/google.rpc.ErrorInfo" {
			return true
		}
	}
	return false
}
