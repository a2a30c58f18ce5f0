package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// replyWith makes the fake daemon answer the next calls with m.
func replyWith(t *testing.T, d *replyDaemon, m proto.Message) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d.set(b, false, false)
}

// The v1.4 calls check what the daemon answers: a response that breaks
// the API's promises is ErrIO ("keystored protocol error"), and a data
// key or plaintext that came with it is not returned.
func TestV14ResponsesChecked(t *testing.T) {
	d, c := startReplyDaemon(t)
	ctx := context.Background()
	ts := timestamppb.New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	x := func() ([]byte, []byte) { return make([]byte, 32), make([]byte, 90) }
	pt, sealed := x()
	params := func(mod func(*keystorev1.GetImportParametersResponse)) *keystorev1.GetImportParametersResponse {
		r := &keystorev1.GetImportParametersResponse{Key: "app/box/k", Algorithm: "aes-256-gcm", Token: "kit1.t",
			WrappingAlgorithm: string(HPKEX25519), KemId: 0x20, KdfId: 1, AeadId: 3, PublicKey: x25519Point, Info: []byte("info"), Expires: ts}
		if mod != nil {
			mod(r)
		}
		return r
	}
	tests := []struct {
		name  string
		reply proto.Message
		call  func() error
		good  bool
	}{
		{"data key", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: pt, Sealed: sealed}, func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{}, nil)
			return err
		}, true},
		{"data key of the wrong size", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: make([]byte, 16), Sealed: sealed}, func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{Spec: "aes-256-gcm"}, nil)
			return err
		}, false},
		{"data key of the asked size", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: make([]byte, 48), Sealed: sealed}, func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{Bytes: 48}, nil)
			return err
		}, true},
		{"data key without plaintext", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Sealed: sealed}, func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{}, nil)
			return err
		}, false},
		{"data key without sealed form", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: pt}, func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{}, nil)
			return err
		}, false},
		{"without plaintext, but with one", &keystorev1.GenerateDataKeyResponse{Key: "app/box/k", Version: 1, Plaintext: pt, Sealed: sealed}, func() error {
			_, err := c.GenerateDataKeyWithoutPlaintext(ctx, "box/k", DataKeySpec{}, nil)
			return err
		}, false},
		{"decrypt", &keystorev1.DecryptResponse{Key: "app/inbox/k", Version: 2, Plaintext: []byte("ab")}, func() error {
			_, err := c.Decrypt(ctx, "inbox/k", 2, HPKEMessage{Ciphertext: make([]byte, 18)})
			return err
		}, true},
		{"decrypt by another version", &keystorev1.DecryptResponse{Key: "app/inbox/k", Version: 1, Plaintext: []byte("ab")}, func() error {
			_, err := c.Decrypt(ctx, "inbox/k", 2, HPKEMessage{Ciphertext: make([]byte, 18)})
			return err
		}, false},
		{"decrypt of the wrong size", &keystorev1.DecryptResponse{Key: "app/inbox/k", Version: 1, Plaintext: []byte("abc")}, func() error {
			_, err := c.Decrypt(ctx, "inbox/k", 0, HPKEMessage{Ciphertext: make([]byte, 18)})
			return err
		}, false},
		{"hpke public key", &keystorev1.PublicKeyResponse{Key: "app/inbox/k", Version: 1, Algorithm: string(HPKEX25519), PublicKey: x25519Point, KemId: 0x20, KdfId: 1, AeadId: 3}, func() error {
			_, err := c.PublicKey(ctx, "inbox/k", 0)
			return err
		}, true},
		{"hpke public key without its suite", &keystorev1.PublicKeyResponse{Key: "app/inbox/k", Version: 1, Algorithm: string(HPKEX25519), PublicKey: x25519Point}, func() error {
			_, err := c.PublicKey(ctx, "inbox/k", 0)
			return err
		}, false},
		{"hpke public key with another suite", &keystorev1.PublicKeyResponse{Key: "app/inbox/k", Version: 1, Algorithm: string(HPKEX25519), PublicKey: x25519Point, KemId: 0x20, KdfId: 1, AeadId: 1}, func() error {
			_, err := c.PublicKey(ctx, "inbox/k", 0)
			return err
		}, false},
		{"signing key with a suite", &keystorev1.PublicKeyResponse{Key: "app/sig/k", Version: 1, Algorithm: string(Ed25519), PublicKey: x25519Point, KemId: 0x20, KdfId: 1, AeadId: 3}, func() error {
			_, err := c.PublicKey(ctx, "sig/k", 0)
			return err
		}, false},
		{"suite identifier over 16 bits", &keystorev1.PublicKeyResponse{Key: "app/x/k", Version: 1, Algorithm: "hpke-new", PublicKey: x25519Point, KemId: 0x10020, KdfId: 1, AeadId: 3}, func() error {
			_, err := c.PublicKey(ctx, "x/k", 0)
			return err
		}, false},
		{"public key of another version", &keystorev1.PublicKeyResponse{Key: "app/sig/k", Version: 1, Algorithm: string(Ed25519), PublicKey: x25519Point}, func() error {
			_, err := c.PublicKey(ctx, "sig/k", 2)
			return err
		}, false},
		{"import parameters", params(nil), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
			return err
		}, true},
		{"import parameters for another algorithm", params(nil), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", HMACSHA256, ImportOptions{})
			return err
		}, false},
		{"import parameters of another wrapping algorithm", params(nil), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{WrappingAlgorithm: HPKEP256})
			return err
		}, false},
		{"import parameters without a token", params(func(r *keystorev1.GetImportParametersResponse) { r.Token = "" }), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
			return err
		}, false},
		{"import parameters without an expiry", params(func(r *keystorev1.GetImportParametersResponse) { r.Expires = nil }), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
			return err
		}, false},
		{"import parameters with a suite not the wrapping algorithm's", params(func(r *keystorev1.GetImportParametersResponse) { r.KemId = 0x10 }), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
			return err
		}, false},
		{"import parameters without a suite", params(func(r *keystorev1.GetImportParametersResponse) { r.KemId, r.KdfId, r.AeadId = 0, 0, 0 }), func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{})
			return err
		}, false},
		{"import without key metadata", &keystorev1.ImportKeyResponse{}, func() error {
			_, err := c.Import(ctx, "box/k", "kit1.t", nil, nil, Policy{})
			return err
		}, false},
	}
	for _, tt := range tests {
		replyWith(t, d, tt.reply)
		err := tt.call()
		if tt.good && err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if !tt.good && !errors.Is(err, ErrIO) {
			t.Errorf("%s: %v, want a protocol error (ErrIO)", tt.name, err)
		}
	}
}

// Options the daemon would refuse are refused here, before any call.
func TestV14OptionsCheckedLocally(t *testing.T) {
	_, c := startReplyDaemon(t)
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"spec and bytes": func() error {
			_, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{Spec: "aes-256-gcm", Bytes: 32}, nil)
			return err
		},
		"15 bytes": func() error {
			_, err := c.GenerateDataKeyWithoutPlaintext(ctx, "box/k", DataKeySpec{Bytes: 15}, nil)
			return err
		},
		"65 bytes": func() error { _, err := c.GenerateDataKey(ctx, "box/k", DataKeySpec{Bytes: 65}, nil); return err },
		"a TTL in milliseconds": func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{TTL: 90500 * time.Millisecond})
			return err
		},
		"a negative TTL": func() error {
			_, err := c.GetImportParameters(ctx, "box/k", AES256GCM, ImportOptions{TTL: -time.Minute})
			return err
		},
		"no material": func() error { _, _, err := WrapForImport(ImportParameters{}, nil); return err },
	} {
		if err := call(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := WrapForImport(ImportParameters{}, make([]byte, MaxImportMaterial+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("material over the bound: %v, want ErrTooLarge", err)
	}
}

// Origins come through per key and version; a daemon older than v1.4
// sends none, which reads as generated.
func TestOriginOfMetadata(t *testing.T) {
	m := &keystorev1.KeyMetadata{Id: "app/box/k", Origin: "imported", Versions: []*keystorev1.KeyVersion{{Version: 1, Origin: "imported"}, {Version: 2, Origin: "generated"}, {Version: 3}}}
	k := keyInfo(m, false)
	if k.Origin != OriginImported || k.Versions[0].Origin != OriginImported || k.Versions[1].Origin != OriginGenerated || k.Versions[2].Origin != OriginGenerated {
		t.Errorf("origins %q %q %q %q", k.Origin, k.Versions[0].Origin, k.Versions[1].Origin, k.Versions[2].Origin)
	}
	if k := keyInfo(&keystorev1.KeyMetadata{Id: "app/box/k"}, false); k.Origin != OriginGenerated {
		t.Errorf("no origin: %q, want generated", k.Origin)
	}
}
