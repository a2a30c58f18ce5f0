package client

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"io"
	"strconv"

	"github.com/nexus-os/keystored/core/provider"
)

// Signer returns a crypto.Signer for a keystored signing key, usable with
// crypto/x509 (CreateCertificate, CreateCertificateRequest) and crypto/tls
// (tls.Certificate{PrivateKey: signer}). keyRef is "KEY" (the current
// version) or "KEY@N", which must be the current version.
//
// Only ed25519 keys are supported (ErrNotSupported otherwise): Public()
// returns an ed25519.PublicKey, and Sign signs the message itself (pure
// Ed25519): opts.HashFunc() must be 0 and an Ed25519 context is refused,
// as ed25519.PrivateKey does.
//
// Sign takes no context, so its calls to the daemon use ctx: pass a
// context that lives as long as the Signer. The daemon always signs with
// the key's primary version; if the key was rotated after Signer was
// called, Sign returns an error wrapping ErrVersionMismatch (and
// ErrInvalid) instead of a signature that would not match Public().
func (c *Client) Signer(ctx context.Context, keyRef string) (crypto.Signer, error) {
	key, version, err := ParseKeyRef(keyRef)
	if err != nil {
		return nil, err
	}
	pub, err := c.PublicKey(ctx, key, version)
	if err != nil {
		return nil, err
	}
	if pub.Algorithm != Ed25519 {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "signer", Key: keyRef, Msg: "crypto.Signer supports ed25519 keys only, not " + string(pub.Algorithm)}
	}
	if len(pub.Raw) != ed25519.PublicKeySize {
		return nil, protocolError("signer", keyRef, "ed25519 public key of "+strconv.Itoa(len(pub.Raw))+" bytes")
	}
	if version != 0 {
		cur, err := c.PublicKey(ctx, key, 0)
		if err != nil {
			return nil, err
		}
		if cur.Version != version {
			return nil, &provider.Error{Code: provider.EINVAL, Op: "signer", Key: keyRef,
				Msg: "version " + strconv.FormatUint(uint64(version), 10) + " is not the current version " +
					strconv.FormatUint(uint64(cur.Version), 10) + "; the daemon signs only with the current version"}
		}
	}
	return &keySigner{c: c, ctx: ctx, key: key, pub: pub}, nil
}

// keySigner signs through the daemon with one key version.
type keySigner struct {
	c   *Client
	ctx context.Context // the Signer's context: crypto.Signer has no ctx argument
	key string
	pub PublicKey
}

// Public returns the ed25519.PublicKey of the Signer's version.
func (s *keySigner) Public() crypto.PublicKey {
	return ed25519.PublicKey(append([]byte(nil), s.pub.Raw...))
}

// Sign signs message (pure Ed25519: the message itself, not a digest).
// rand is ignored: the daemon's provider signs.
func (s *keySigner) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o, ok := opts.(*ed25519.Options); ok && o == nil {
		opts = nil // a typed nil would panic in HashFunc
	}
	if opts != nil && opts.HashFunc() != 0 {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "sign", Key: s.pub.Ref(), Msg: "only pure Ed25519 is supported: opts.HashFunc() must be 0, got " + opts.HashFunc().String()}
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "sign", Key: s.pub.Ref(), Msg: "Ed25519 contexts are not supported"}
	}
	sig, err := s.c.Sign(s.ctx, s.key, message)
	if err != nil {
		return nil, err
	}
	if sig.Version != s.pub.Version {
		return nil, &provider.Error{Code: provider.EINVAL, Op: "sign", Key: s.pub.Ref(),
			Msg: "daemon signed with version " + strconv.FormatUint(uint64(sig.Version), 10) + " (key rotated)",
			Err: ErrVersionMismatch}
	}
	return sig.Signature, nil
}
