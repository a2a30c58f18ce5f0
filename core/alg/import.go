package alg

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"

	"github.com/nexus-os/keystored/core/provider"
)

// Importable reports whether key material of this algorithm can be
// imported (ImportMaterial): every AEAD and MAC algorithm, and the
// asymmetric algorithms with a standard PKCS #8 form that Go parses
// (Ed25519, Ed25519ph, ECDSA, RSA, and the DHKEM HPKE suites). Ed448,
// ML-DSA and the hybrid HPKE suite are not: ENOTSUP.
func (s *Spec) Importable() bool {
	return s.Use == provider.UseDecrypt || s.Use == provider.UseMAC || s.importKey != nil
}

// ImportMaterial turns imported key material into the private material a
// provider stores for this algorithm (what NewMaterial makes) and the
// public key Generate would return (empty for AEADs and MACs). The
// import format is the raw key for AEAD and MAC keys (exactly SecretSize
// bytes) and PKCS #8 DER for the others. Material of another algorithm,
// curve or size is EINVAL (the message names what was expected, never the
// material); an algorithm that cannot be imported is ENOTSUP. The caller
// clears both data and the returned material.
func (s *Spec) ImportMaterial(data []byte) (material, pub []byte, err error) {
	if !s.Importable() {
		return nil, nil, provider.Errorf(provider.ENOTSUP, "%s keys cannot be imported (no standard PKCS #8 form keystored parses)", string(s.Name))
	}
	if len(data) > provider.MaxImportMaterial {
		return nil, nil, provider.Errorf(provider.EMSGSIZE, "key material over %d bytes", provider.MaxImportMaterial)
	}
	if s.Use == provider.UseDecrypt || s.Use == provider.UseMAC {
		if len(data) != s.SecretSize {
			return nil, nil, provider.Errorf(provider.EINVAL, "a %s key is %d raw bytes, not %d", string(s.Name), s.SecretSize, len(data))
		}
		return append([]byte(nil), data...), nil, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(data)
	if err != nil {
		return nil, nil, provider.Errorf(provider.EINVAL, "%s key material is not a PKCS #8 DER private key", string(s.Name))
	}
	material, err = s.importKey(key)
	if err != nil {
		return nil, nil, err
	}
	if !s.SecretSizeOK(len(material)) {
		clear(material)
		return nil, nil, provider.Errorf(provider.EINVAL, "%s key material has the wrong size", string(s.Name))
	}
	switch s.Use {
	case provider.UseSign:
		k, err := s.NewSigner(material, false)
		if err != nil {
			clear(material)
			return nil, nil, provider.Errorf(provider.EINVAL, "%s key material is not a valid key", string(s.Name))
		}
		pub = k.PublicKey()
	case provider.UseAsymmetricDecrypt:
		d, err := s.NewDecrypter(material)
		if err != nil {
			clear(material)
			return nil, nil, provider.Errorf(provider.EINVAL, "%s key material is not a valid key", string(s.Name))
		}
		pub = d.PublicKey()
	}
	return material, pub, nil
}

// wrongKey is the EINVAL of a PKCS #8 key of another algorithm.
func wrongKey(name provider.Algorithm, want string) error {
	return provider.Errorf(provider.EINVAL, "%s needs a %s private key; the PKCS #8 material holds another kind", string(name), want)
}

// importEd25519 is the importKey of Ed25519 and Ed25519ph: the seed.
func importEd25519(name provider.Algorithm) func(any) ([]byte, error) {
	return func(key any) ([]byte, error) {
		k, ok := key.(ed25519.PrivateKey)
		if !ok || len(k) != ed25519.PrivateKeySize {
			return nil, wrongKey(name, "Ed25519")
		}
		return append([]byte(nil), k.Seed()...), nil
	}
}

// importECDSA is the importKey of ECDSA on curve: the scalar.
func importECDSA(name provider.Algorithm, curve string) func(any) ([]byte, error) {
	return func(key any) ([]byte, error) {
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok || k.Curve == nil || k.Curve.Params().Name != curve {
			return nil, wrongKey(name, "ECDSA "+curve)
		}
		b, err := k.Bytes()
		if err != nil {
			return nil, wrongKey(name, "ECDSA "+curve)
		}
		return b, nil
	}
}

// importRSA is the importKey of RSA of bits bits: the PKCS #1 private key,
// which must have exponent 65537 and pass crypto/rsa's validation.
func importRSA(name provider.Algorithm, bits int) func(any) ([]byte, error) {
	return func(key any) ([]byte, error) {
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, wrongKey(name, "RSA")
		}
		if k.N.BitLen() != bits || k.E != rsaExponent {
			return nil, provider.Errorf(provider.EINVAL, "%s needs an RSA key of %d bits with exponent 65537", string(name), bits)
		}
		if err := k.Validate(); err != nil {
			return nil, provider.Errorf(provider.EINVAL, "%s key material is not a valid RSA key", string(name))
		}
		return x509.MarshalPKCS1PrivateKey(k), nil
	}
}

// importDHKEM is the importKey of a DHKEM HPKE suite on curve: the
// serialized private key. A P-256 PKCS #8 key parses as ECDSA and is
// converted.
func importDHKEM(name provider.Algorithm, curve ecdh.Curve, want string) func(any) ([]byte, error) {
	return func(key any) ([]byte, error) {
		var k *ecdh.PrivateKey
		switch v := key.(type) {
		case *ecdh.PrivateKey:
			k = v
		case *ecdsa.PrivateKey:
			var err error
			if k, err = v.ECDH(); err != nil {
				return nil, wrongKey(name, want)
			}
		}
		if k == nil || k.Curve() != curve {
			return nil, wrongKey(name, want)
		}
		return k.Bytes(), nil
	}
}
