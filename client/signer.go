package client

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"io"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/nexus-os/keystored/core/provider"
)

// KeySigner is the crypto.Signer of one version of a keystored signing
// key (Client.Signer).
type KeySigner interface {
	crypto.Signer
	// KeyVersion returns the key version the signer signs with, whose
	// public key Public returns: name it in a certificate, a JWK (its
	// kid) or an authorized_keys line.
	KeyVersion() PublicKey
}

// Signer returns a crypto.Signer for a keystored signing key of any
// algorithm, usable with crypto/x509 (CreateCertificate,
// CreateCertificateRequest), crypto/tls (tls.Certificate{PrivateKey:
// signer}), golang.org/x/crypto/ssh (NewSignerFromSigner) and go-jose
// (cryptosigner.Opaque). keyRef is "KEY" (the key's current version) or
// "KEY@N" (version N, primary or retired).
//
// The Signer is bound to that version: Public returns its public key and
// every Sign names it, so the key may be rotated under a running TLS
// server or JWT issuer, which keeps signing with its version until it is
// revoked; from then on Sign returns an error wrapping ErrKeyRevoked
// (make a new Signer, and a new certificate, for the new primary). A
// daemon that signs with another version (one older than API v1.3)
// gives ErrVersionMismatch, never a signature that Public would not
// verify.
//
// Public returns ed25519.PublicKey (ed25519, ed25519ph), *ecdsa.PublicKey,
// *rsa.PublicKey, or circl's ed448.PublicKey and *mldsa44/65/87.PublicKey.
// Sign honours opts as the standard library's keys do, and refuses what
// the key cannot make: ErrInvalid for a wrong hash or padding (PSS options
// for a PKCS #1 v1.5 key, a plain hash for a PSS key, another salt
// length), ErrNotSupported for a context or a mode the key does not have:
//
//	ed25519, ed448, ml-dsa-*   opts.HashFunc() 0: the message itself (at
//	                           most 64 KiB); no Ed25519/Ed448 context
//	ed25519ph                  *ed25519.Options{Hash: crypto.SHA512} (or
//	                           crypto.SHA512) and the SHA-512 digest; no
//	                           context
//	ecdsa-p256-sha256          crypto.SHA256 and the digest; DER signature
//	ecdsa-p384-sha384          crypto.SHA384 and the digest; DER signature
//	rsa-*-pss-sha256           *rsa.PSSOptions{Hash: crypto.SHA256} with
//	                           SaltLength PSSSaltLengthEqualsHash, 32 or
//	                           PSSSaltLengthAuto: the key signs with a
//	                           32-byte salt, which all three verify
//	rsa-*-pkcs1-sha256         crypto.SHA256 (not *rsa.PSSOptions)
//
// x509.CreateCertificate picks PKCS #1 v1.5 for an RSA key unless the
// template's SignatureAlgorithm is x509.SHA256WithRSAPSS: set it for a
// PSS key. For tls.Certificate set SupportedSignatureAlgorithms to
// TLSSignatureSchemes(algorithm): a TLS 1.2 peer may otherwise ask for a
// hash the key does not sign with. ssh.NewSignerFromSigner of an RSA key
// signs "ssh-rsa" (SHA-1) by default: restrict it to "rsa-sha2-256" with
// ssh.NewSignerWithAlgorithms (a PKCS #1 v1.5 key; ssh has no PSS). The
// public key formats (PEM, authorized_keys, JWK) are in client/keyfmt.
//
// rand is ignored: the daemon's provider signs. Sign takes no context, so
// its calls to the daemon use ctx: pass a context that lives as long as
// the Signer.
func (c *Client) Signer(ctx context.Context, keyRef string) (KeySigner, error) {
	key, version, err := ParseKeyRef(keyRef)
	if err != nil {
		return nil, err
	}
	pub, err := c.PublicKey(ctx, key, version)
	if err != nil {
		return nil, err
	}
	if version != 0 && pub.Version != version {
		return nil, protocolError("signer", keyRef, "the daemon returned the public key of another version")
	}
	alg, ok := sigAlgorithms[pub.Algorithm]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "signer", Key: keyRef, Msg: "no crypto.Signer for " + string(pub.Algorithm) + " keys"}
	}
	cpub, err := pub.CryptoPublicKey()
	if err != nil {
		return nil, err
	}
	return &keySigner{c: c, ctx: ctx, key: key, pub: pub, alg: alg, cpub: cpub}, nil
}

// keySigner signs through the daemon with one key version.
type keySigner struct {
	c    *Client
	ctx  context.Context // the Signer's context: crypto.Signer has no ctx argument
	key  string          // the key as the caller named it
	pub  PublicKey
	alg  sigAlgorithm
	cpub crypto.PublicKey
}

// Public returns the public key of the Signer's version.
func (s *keySigner) Public() crypto.PublicKey {
	switch k := s.cpub.(type) {
	case ed25519.PublicKey:
		return append(ed25519.PublicKey(nil), k...)
	case ed448.PublicKey:
		return append(ed448.PublicKey(nil), k...)
	}
	return s.cpub
}

// KeyVersion returns the key version the Signer is bound to.
func (s *keySigner) KeyVersion() PublicKey {
	p := s.pub
	p.Raw = append([]byte(nil), p.Raw...)
	return p
}

// Sign signs digest (a message, for the algorithms that sign messages)
// with the Signer's version, as opts asks (see Client.Signer).
func (s *keySigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	in, err := s.input(digest, opts)
	if err != nil {
		return nil, err
	}
	sig, err := s.c.SignWith(s.ctx, s.key, s.pub.Version, in)
	if err != nil {
		return nil, err
	}
	return sig.Signature, nil
}

// input turns Sign's arguments into what the daemon signs, or refuses
// them.
func (s *keySigner) input(digest []byte, opts crypto.SignerOpts) (SignInput, error) {
	var hash crypto.Hash
	var context string
	var pss *rsa.PSSOptions
	switch o := opts.(type) {
	case nil:
	case *ed25519.Options:
		if o != nil { // a typed nil would panic in HashFunc
			hash, context = o.Hash, o.Context
		}
	case *rsa.PSSOptions:
		if o == nil {
			return SignInput{}, s.refuse(provider.EINVAL, "nil *rsa.PSSOptions")
		}
		hash, pss = o.Hash, o
	case ed448.SignerOptions:
		if o.Scheme != ed448.ED448 {
			return SignInput{}, s.refuse(provider.ENOTSUP, "Ed448ph is not supported: the key makes pure Ed448 signatures")
		}
		hash, context = o.Hash, o.Context
	default:
		hash = opts.HashFunc()
	}
	if context != "" {
		return SignInput{}, s.refuse(provider.ENOTSUP, "Ed25519 and Ed448 contexts are not supported")
	}
	if pss != nil && s.alg.scheme != schemePSS {
		return SignInput{}, s.refuse(provider.EINVAL, "*rsa.PSSOptions asks for RSASSA-PSS, which a "+string(s.pub.Algorithm)+" key does not make")
	}
	switch s.alg.scheme {
	case schemeEd25519, schemeEd448, schemeMLDSA:
		if hash != 0 {
			msg := "a " + string(s.pub.Algorithm) + " key signs whole messages: opts.HashFunc() must be 0, not " + hash.String()
			if s.alg.scheme == schemeEd25519 && hash == crypto.SHA512 {
				msg += " (Ed25519ph needs an ed25519ph key)"
			}
			return SignInput{}, s.refuse(provider.ENOTSUP, msg)
		}
		return SignInput{Message: digest}, nil
	case schemeEd25519ph:
		if hash == 0 {
			return SignInput{}, s.refuse(provider.ENOTSUP, "an ed25519ph key makes Ed25519ph signatures only: pass &ed25519.Options{Hash: crypto.SHA512} and the SHA-512 digest")
		}
	case schemePSS:
		if pss == nil {
			return SignInput{}, s.refuse(provider.EINVAL, "a "+string(s.pub.Algorithm)+" key makes RSASSA-PSS signatures only: pass *rsa.PSSOptions (for x509, set the template's SignatureAlgorithm to x509.SHA256WithRSAPSS)")
		}
		switch pss.SaltLength {
		case rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, PSSSaltLength:
		default:
			return SignInput{}, s.refuse(provider.EINVAL, "the key signs with a 32-byte PSS salt: SaltLength must be PSSSaltLengthEqualsHash, 32 or PSSSaltLengthAuto")
		}
	}
	if hash != s.alg.hash {
		name, _ := provider.HashName(s.alg.hash)
		return SignInput{}, s.refuse(provider.EINVAL, "a "+string(s.pub.Algorithm)+" key signs "+name+" digests: opts.HashFunc() must be "+s.alg.hash.String()+", not "+hashString(hash))
	}
	return SignInput{Hash: hash, Digest: digest}, nil
}

func (s *keySigner) refuse(code provider.Code, msg string) error {
	return &provider.Error{Code: code, Op: "sign", Key: s.pub.Ref(), Msg: msg}
}

// hashString names a hash, 0 included.
func hashString(h crypto.Hash) string {
	if h == 0 {
		return "0 (a whole message)"
	}
	return h.String()
}
