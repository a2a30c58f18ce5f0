package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// DataKeySpec chooses a data key's size: a cipher name (Spec) or a number
// of bytes (Bytes). The zero DataKeySpec is "aes-256-gcm".
type DataKeySpec struct {
	// Spec is the cipher the data key is for: "aes-256-gcm" (32 bytes),
	// "aes-128-gcm" (16), "chacha20-poly1305" or "xchacha20-poly1305"
	// (32).
	Spec string
	// Bytes is the data key's size, 16 .. 64, when Spec is empty.
	Bytes int
}

// dataKeySizes are the sizes of the named specs.
var dataKeySizes = map[string]int{"aes-256-gcm": 32, "aes-128-gcm": 16, "chacha20-poly1305": 32, "xchacha20-poly1305": 32}

// Bounds of DataKeySpec.Bytes.
const (
	MinDataKeyBytes = 16
	MaxDataKeyBytes = 64
)

// size returns the size the daemon must return (0: a spec name the
// client does not know; the daemon decides), or ErrInvalid.
func (s DataKeySpec) size() (int, error) {
	switch {
	case s.Spec != "" && s.Bytes != 0:
		return 0, provider.Errorf(provider.EINVAL, "give a data key spec or a number of bytes, not both")
	case s.Bytes != 0 && (s.Bytes < MinDataKeyBytes || s.Bytes > MaxDataKeyBytes):
		return 0, provider.Errorf(provider.EINVAL, "a data key is %d to %d bytes, not %d", MinDataKeyBytes, MaxDataKeyBytes, s.Bytes)
	case s.Bytes != 0:
		return s.Bytes, nil
	case s.Spec == "":
		return dataKeySizes["aes-256-gcm"], nil
	}
	return dataKeySizes[s.Spec], nil
}

// DataKey is a data key from GenerateDataKey: the plaintext key, to
// encrypt with locally and then forget (Wipe), and the same key sealed
// under Version of Key, to store beside the data: Unseal of Sealed with
// the same aad gives the key back. GenerateDataKeyWithoutPlaintext
// returns Sealed only.
//
// A DataKey prints, formats, marshals to JSON and logs (slog) without
// its plaintext; only the Plaintext field itself holds it.
type DataKey struct {
	// Key is the full key ID.
	Key       string
	Version   uint32
	Plaintext []byte
	Sealed    []byte
}

// Wipe overwrites the plaintext data key with zeros. Copies made by the
// caller (or by a cipher built from it) are the caller's to forget.
func (d DataKey) Wipe() { clear(d.Plaintext) }

// String describes the data key without its plaintext.
func (d DataKey) String() string {
	return "DataKey{" + d.Key + "@" + strconv.FormatUint(uint64(d.Version), 10) +
		", plaintext " + strconv.Itoa(len(d.Plaintext)) + " bytes (redacted), sealed " + strconv.Itoa(len(d.Sealed)) + " bytes}"
}

// GoString is String: %#v does not print the plaintext either.
func (d DataKey) GoString() string { return d.String() }

// Format prints String under every verb.
func (d DataKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) } // a formatter has no error to return

// MarshalJSON writes the key, version and sealed key; the plaintext is
// left out.
func (d DataKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Key     string `json:"key"`
		Version uint32 `json:"version"`
		Sealed  []byte `json:"sealed"`
	}{d.Key, d.Version, d.Sealed})
}

// LogValue logs the key, version and sizes, not the plaintext.
func (d DataKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key", d.Key), slog.Uint64("version", uint64(d.Version)),
		slog.Int("plaintext_bytes", len(d.Plaintext)), slog.Int("sealed_bytes", len(d.Sealed)))
}

// GenerateDataKey returns a fresh random data key of spec's size made in
// the daemon, and the same key sealed under the primary version of key, a
// decrypt key, with aad (at most 64 KiB) as associated data. Encrypt with
// the plaintext locally (package client/envelope streams a file with
// one), store Sealed with the data, and Wipe the DataKey; Unseal(key,
// Sealed, aad) recovers it. It counts one seal against the version's
// budget.
func (c *Client) GenerateDataKey(ctx context.Context, key string, spec DataKeySpec, aad []byte) (DataKey, error) {
	return c.generateDataKey(ctx, "generate-data-key", c.keys.GenerateDataKey, key, spec, aad)
}

// GenerateDataKeyWithoutPlaintext is GenerateDataKey for a service that
// stores the sealed data key now and unseals it later: the daemon returns
// only DataKey.Sealed (Plaintext is nil).
func (c *Client) GenerateDataKeyWithoutPlaintext(ctx context.Context, key string, spec DataKeySpec, aad []byte) (DataKey, error) {
	return c.generateDataKey(ctx, "generate-data-key-without-plaintext", c.keys.GenerateDataKeyWithoutPlaintext, key, spec, aad)
}

type dataKeyRPC = func(context.Context, *keystorev1.GenerateDataKeyRequest, ...grpc.CallOption) (*keystorev1.GenerateDataKeyResponse, error)

func (c *Client) generateDataKey(ctx context.Context, op string, rpc dataKeyRPC, key string, spec DataKeySpec, aad []byte) (DataKey, error) {
	size, err := spec.size()
	if err != nil {
		return DataKey{}, provider.WithOp(op, key, err)
	}
	resp, _, err := call(ctx, c, rpc, &keystorev1.GenerateDataKeyRequest{Key: key, Spec: spec.Spec, NumberOfBytes: uint32(spec.Bytes), Aad: aad})
	if err != nil {
		return DataKey{}, err
	}
	d := DataKey{Key: resp.GetKey(), Version: resp.GetVersion(), Plaintext: resp.GetPlaintext(), Sealed: resp.GetSealed()}
	withPlaintext := op == "generate-data-key"
	bad := ""
	switch {
	case d.Version == 0 || len(d.Sealed) == 0:
		bad = "empty sealed data key or version 0"
	case withPlaintext && size != 0 && len(d.Plaintext) != size:
		bad = "a data key of " + strconv.Itoa(len(d.Plaintext)) + " bytes, not " + strconv.Itoa(size)
	case withPlaintext && len(d.Plaintext) == 0:
		bad = "no plaintext data key"
	case !withPlaintext && len(d.Plaintext) != 0:
		bad = "a plaintext data key from GenerateDataKeyWithoutPlaintext"
	}
	if bad != "" {
		d.Wipe()
		return DataKey{}, protocolError(op, key, bad)
	}
	if !withPlaintext {
		d.Plaintext = nil
	}
	return d, nil
}
