package server

import (
	"context"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// The keystore.v1 v1.4 RPCs: data keys, HPKE decryption, key import. Each
// checks what it converts (versions, the TTL) before calling the core,
// which bounds every payload before any work; the payload bounds are also
// the methods' receive limits (admit.go), so an oversized request is
// refused before its body is read. Provider work runs in the fair
// scheduler under the caller's app (tenantOf), as for seal and unseal.

// GenerateDataKey returns a fresh data key and the same key sealed under
// the decrypt key's primary version.
func (k *keysService) GenerateDataKey(ctx context.Context, req *keystorev1.GenerateDataKeyRequest) (*keystorev1.GenerateDataKeyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	d, err := k.s.ks.GenerateDataKey(ctx, c.coreCaller(), id, dataKeySpec(req), req.GetAad())
	if err != nil {
		return nil, err
	}
	return &keystorev1.GenerateDataKeyResponse{Key: id.String(), Version: uint32(d.Version), Plaintext: d.Plaintext, Sealed: d.Sealed}, nil
}

// GenerateDataKeyWithoutPlaintext returns only the sealed data key.
func (k *keysService) GenerateDataKeyWithoutPlaintext(ctx context.Context, req *keystorev1.GenerateDataKeyRequest) (*keystorev1.GenerateDataKeyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	s, err := k.s.ks.GenerateDataKeyWithoutPlaintext(ctx, c.coreCaller(), id, dataKeySpec(req), req.GetAad())
	if err != nil {
		return nil, err
	}
	return &keystorev1.GenerateDataKeyResponse{Key: id.String(), Version: uint32(s.Version), Sealed: s.Data}, nil
}

// dataKeySpec converts a request's spec and number of bytes; the core
// checks them (one or the other, a known name, 16 .. 64 bytes).
func dataKeySpec(req *keystorev1.GenerateDataKeyRequest) core.DataKeySpec {
	n := req.GetNumberOfBytes()
	if n > uint32(core.MaxDataKeySize) {
		n = uint32(core.MaxDataKeySize) + 1 // refused by the core, and no int overflow
	}
	return core.DataKeySpec{Name: req.GetSpec(), Size: int(n)}
}

// Decrypt opens an HPKE message sent to an asymmetric-decrypt key's public
// key (version 0: the primary).
func (k *keysService) Decrypt(ctx context.Context, req *keystorev1.DecryptRequest) (*keystorev1.DecryptResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	v, err := parseOptionalVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	d, err := k.s.ks.Decrypt(ctx, c.coreCaller(), id, v, core.HPKEMessage{Enc: req.GetEnc(), Ciphertext: req.GetCiphertext(), Info: req.GetInfo(), AAD: req.GetAad()})
	if err != nil {
		return nil, err
	}
	return &keystorev1.DecryptResponse{Key: id.String(), Version: uint32(d.Version), Plaintext: d.Plaintext}, nil
}

// maxImportTTLSeconds is the longest validity of import parameters, in
// seconds.
const maxImportTTLSeconds = int64(core.MaxImportTTL / time.Second)

// GetImportParameters returns a one-time wrapping public key and a token
// for importing material of an algorithm into a key.
func (k *keysService) GetImportParameters(ctx context.Context, req *keystorev1.GetImportParametersRequest) (*keystorev1.GetImportParametersResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	// The core checks the TTL (one message for every caller); out of its
	// range here only so that the conversion cannot overflow.
	ttl := time.Duration(-1)
	if secs := req.GetTtlSeconds(); secs >= 0 && secs <= maxImportTTLSeconds {
		ttl = time.Duration(secs) * time.Second
	}
	p, err := k.s.ks.ImportParameters(ctx, c.coreCaller(), id, core.ImportOptions{
		Algorithm:         provider.Algorithm(req.GetAlgorithm()),
		WrappingAlgorithm: provider.Algorithm(req.GetWrappingAlgorithm()),
		TTL:               ttl,
	})
	if err != nil {
		return nil, err
	}
	return &keystorev1.GetImportParametersResponse{
		Key:               p.ID.String(),
		Algorithm:         string(p.Algorithm),
		Token:             p.Token,
		WrappingAlgorithm: string(p.WrappingAlgorithm),
		KemId:             uint32(p.KEMID),
		KdfId:             uint32(p.KDFID),
		AeadId:            uint32(p.AEADID),
		PublicKey:         p.PublicKey,
		Info:              p.Info,
		Expires:           ts(p.Expires),
	}, nil
}

// Import creates the key, or a new version of an imported key, from
// material wrapped to GetImportParameters' public key.
func (k *keysService) Import(ctx context.Context, req *keystorev1.ImportKeyRequest) (*keystorev1.ImportKeyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	pol, err := policyFrom(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	m, err := k.s.ks.Import(ctx, c.coreCaller(), id, core.ImportRequest{Token: req.GetToken(), Enc: req.GetEnc(), Wrapped: req.GetWrapped(), Policy: pol})
	if err != nil {
		return nil, err
	}
	return &keystorev1.ImportKeyResponse{Key: keyMetadata(&m, k.s.clock.Now())}, nil
}
