package client

import (
	"context"
	"time"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// ImportOptions are the options of GetImportParameters.
type ImportOptions struct {
	// WrappingAlgorithm is the HPKE suite of the one-time wrapping key:
	// empty means the daemon's default, the post-quantum hybrid
	// hpke-mlkem768x25519-sha256-aes256gcm.
	WrappingAlgorithm Algorithm
	// TTL is how long the parameters are valid: 0 means 24 hours,
	// otherwise 1 minute .. 24 hours, in whole seconds.
	TTL time.Duration
}

// Import bounds.
const (
	// MinImportTTL and MaxImportTTL bound ImportOptions.TTL.
	MinImportTTL = time.Minute
	MaxImportTTL = 24 * time.Hour
	// MaxImportMaterial is the largest key material WrapForImport wraps.
	MaxImportMaterial = provider.MaxImportMaterial
)

// ImportParameters are what wrapping key material for one Import takes:
// a one-time HPKE public key made for it inside the daemon's provider, the
// info to seal under, and the token Import takes. The token is valid once,
// for Key and Algorithm, for the calling app, until Expires (the daemon's
// clock); a daemon restart ends it. ImportKey does the whole exchange.
type ImportParameters struct {
	// Key is the full key ID the token is for.
	Key       string
	Algorithm Algorithm
	Token     string
	// WrappingAlgorithm and Suite are the wrapping key's HPKE suite,
	// PublicKey its serialized public key.
	WrappingAlgorithm Algorithm
	Suite             HPKESuite
	PublicKey         []byte
	// Info is the HPKE info to seal the material under (base mode, empty
	// aad): "keystored import v1" 0x00 key ID 0x00 algorithm.
	Info    []byte
	Expires time.Time
}

// GetImportParameters asks the daemon for the parameters of one import of
// material of alg into key: a key that does not exist yet (Import creates
// it) or an existing imported key (Import adds a version). A generated key
// gives ErrPermission; an algorithm that cannot be imported (ed448,
// ML-DSA, the hybrid HPKE suite) ErrNotSupported; too many outstanding
// tokens ErrQuota.
func (c *Client) GetImportParameters(ctx context.Context, key string, alg Algorithm, opts ImportOptions) (ImportParameters, error) {
	if opts.TTL < 0 || opts.TTL%time.Second != 0 {
		return ImportParameters{}, &provider.Error{Code: provider.EINVAL, Op: "import-parameters", Key: key, Msg: "the TTL must be whole seconds, from 1m to 24h (0: 24h)"}
	}
	resp, _, err := call(ctx, c, c.keys.GetImportParameters, &keystorev1.GetImportParametersRequest{
		Key: key, Algorithm: string(alg), WrappingAlgorithm: string(opts.WrappingAlgorithm), TtlSeconds: int64(opts.TTL / time.Second),
	})
	if err != nil {
		return ImportParameters{}, err
	}
	suite, ok := wireSuite(resp.GetKemId(), resp.GetKdfId(), resp.GetAeadId())
	wrapping := Algorithm(resp.GetWrappingAlgorithm())
	bad := ""
	switch {
	case resp.GetKey() == "" || resp.GetToken() == "" || len(resp.GetPublicKey()) == 0 || len(resp.GetInfo()) == 0 || resp.GetExpires() == nil:
		bad = "import parameters without a key, token, public key, info or expiry"
	case Algorithm(resp.GetAlgorithm()) != alg:
		bad = "import parameters for " + resp.GetAlgorithm() + ", not " + string(alg)
	case opts.WrappingAlgorithm != "" && wrapping != opts.WrappingAlgorithm:
		bad = "a wrapping key of " + string(wrapping) + ", not " + string(opts.WrappingAlgorithm)
	case !ok || suite.IsZero() || !checkSuite(wrapping, suite):
		bad = "wrapping algorithm " + string(wrapping) + " with HPKE suite " + suite.String()
	case len(resp.GetInfo()) > provider.MaxHPKEInfo:
		bad = "an HPKE info over its bound"
	}
	if bad != "" {
		return ImportParameters{}, protocolError("import-parameters", key, bad)
	}
	return ImportParameters{
		Key:               resp.GetKey(),
		Algorithm:         alg,
		Token:             resp.GetToken(),
		WrappingAlgorithm: wrapping,
		Suite:             suite,
		PublicKey:         resp.GetPublicKey(),
		Info:              resp.GetInfo(),
		Expires:           resp.GetExpires().AsTime(),
	}, nil
}

// WrapForImport seals key material to the wrapping key of params, here,
// with Go's crypto/hpke (base mode, info params.Info, empty aad): the
// material never leaves the process unwrapped. The material is the raw
// key for decrypt and mac algorithms (exactly the key's size: 32 bytes for
// aes-256-gcm, ...) and PKCS #8 DER for the others (at most
// MaxImportMaterial bytes; ErrTooLarge over it). The caller keeps and
// wipes material; enc and wrapped go to Import.
func WrapForImport(params ImportParameters, material []byte) (enc, wrapped []byte, err error) {
	switch {
	case len(material) == 0:
		return nil, nil, provider.Errorf(provider.EINVAL, "no key material to import")
	case len(material) > MaxImportMaterial:
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "key material over %d bytes", MaxImportMaterial)
	}
	kem, _, _, err := params.Suite.parts()
	if err != nil {
		return nil, nil, err
	}
	pk, err := kem.NewPublicKey(params.PublicKey)
	if err != nil {
		return nil, nil, &provider.Error{Code: provider.EIO, Op: "import", Key: params.Key, Msg: "keystored protocol error: the import wrapping key does not decode as " + string(params.WrappingAlgorithm)}
	}
	return hpkeSeal(pk, params.Suite, params.Info, nil, material)
}

// Import creates key from material wrapped to GetImportParameters'
// public key (WrapForImport's enc and wrapped), or adds a new primary
// version to an existing imported key. policy is a new key's (ignored for
// a new version); an imported key has no rotation period (ErrPermission).
// The token is spent by the call: a second use gives ErrAlready. Errors:
// an unknown token ErrNotFound, an expired one ErrExpired, another app's
// ErrPermission, another key's ErrInvalid, material of the wrong algorithm
// or size ErrInvalid, a wrapped form that does not open ErrBadMessage.
func (c *Client) Import(ctx context.Context, key, token string, enc, wrapped []byte, policy Policy) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.Import, &keystorev1.ImportKeyRequest{
		Key: key, Token: token, Enc: enc, Wrapped: wrapped, Policy: policyProto(policy),
	})
	return keyResult(resp.GetKey(), insec, "import", key, err)
}

// importTTL is the TTL of ImportKey's parameters: they are used at once,
// so the shortest the daemon allows.
const importTTL = MinImportTTL

// ImportKey imports material of alg into key in one go: it gets import
// parameters (the daemon's default wrapping suite, valid 1 minute), wraps
// material here (WrapForImport) and imports it, with the default policy.
// material is as for WrapForImport; the caller wipes it.
func (c *Client) ImportKey(ctx context.Context, key string, alg Algorithm, material []byte) (KeyInfo, error) {
	params, err := c.GetImportParameters(ctx, key, alg, ImportOptions{TTL: importTTL})
	if err != nil {
		return KeyInfo{}, err
	}
	enc, wrapped, err := WrapForImport(params, material)
	if err != nil {
		return KeyInfo{}, err
	}
	return c.Import(ctx, key, params.Token, enc, wrapped, Policy{})
}
