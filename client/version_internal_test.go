package client

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// A daemon older than API v1.3 ignores SignRequest.version and signs with
// the primary version: SignWith, SignBatch and a Signer see the version in
// the answer and refuse the signature.
func TestVersionIgnoredByOldDaemon(t *testing.T) {
	d, c := startReplyDaemon(t)
	ctx := context.Background()
	reply := func(m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		d.set(b, false, false)
	}
	signedBy2 := &keystorev1.SignResponse{Key: "app/p/k", Version: 2, Signature: make([]byte, ed25519.SignatureSize)}

	reply(signedBy2)
	if s, err := c.SignWith(ctx, "p/k", 2, SignInput{Message: []byte("m")}); err != nil || s.Version != 2 {
		t.Fatalf("SignWith(2) answered by version 2 = %+v, %v", s, err)
	}
	_, err := c.SignWith(ctx, "p/k", 1, SignInput{Message: []byte("m")})
	if !errors.Is(err, ErrVersionMismatch) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("SignWith(1) answered by version 2 = %v, want ErrVersionMismatch", err)
	}

	reply(&keystorev1.SignBatchResponse{Results: []*keystorev1.SignResult{{Response: signedBy2}, {Response: signedBy2}}})
	res, err := c.SignBatch(ctx, []SignItem{{Key: "p/k", Version: 1}, {Key: "p/k"}})
	if err != nil || !errors.Is(res[0].Err, ErrVersionMismatch) || res[0].Signature.Signature != nil || res[1].Err != nil {
		t.Fatalf("SignBatch = %+v, %v; want item 0 ErrVersionMismatch, item 1 signed", res, err)
	}

	reply(&keystorev1.PublicKeyResponse{Key: "app/p/k", Version: 1, Algorithm: "ed25519", PublicKey: make([]byte, ed25519.PublicKeySize)})
	s, err := c.Signer(ctx, "p/k")
	if err != nil {
		t.Fatal(err)
	}
	reply(signedBy2)
	if _, err := s.Sign(nil, []byte("m"), crypto.Hash(0)); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("Signer(version 1).Sign answered by version 2 = %v, want ErrVersionMismatch", err)
	}
}
