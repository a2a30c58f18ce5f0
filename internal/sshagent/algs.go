package sshagent

import (
	"crypto/ed25519"
	"encoding/asn1"
	"math/big"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
	"github.com/nexus-os/keystored/core/provider"
)

// sshAlgorithm is the ssh form of a keystored signing algorithm: its
// public key type and how a daemon signature becomes an ssh signature.
type sshAlgorithm struct {
	// KeyType is the ssh public key type ("ssh-ed25519").
	KeyType string
	// PublicKey turns the daemon's raw public key into an ssh public key.
	PublicKey func(raw []byte) (ssh.PublicKey, error)
	// Format returns the signature format for the agent's sign flags, or
	// an error for flags the key type cannot honour. Only RSA keys use
	// flags (PROTOCOL.agent 4.5.1: rsa-sha2-256 and rsa-sha2-512); the
	// other key types ignore them, as OpenSSH's agent does.
	Format func(flags agent.SignatureFlags) (string, error)
	// Blob turns the daemon's signature into the ssh signature blob.
	Blob func(sig []byte) ([]byte, error)
}

// algorithms maps keystored algorithms to their ssh forms (a static
// table: KeyTypes reads it). Algorithms
// without an entry are not offered by the agent: Ed448 (RFC 8709 names
// ssh-ed448, but OpenSSH does not implement it) and ML-DSA (no ssh key
// type in OpenSSH).
//
// ECDSA P-256 and P-384 keys are "ecdsa-sha2-nistp256" and
// "ecdsa-sha2-nistp384" (RFC 5656): the daemon hashes the data with the
// curve's hash, as RFC 5656 6.2.1 asks, and its DER signature is
// re-encoded as the two mpints r and s. RSA keys are not offered: a
// keystored RSA key signs SHA-256 only (rsa-sha2-256), while OpenSSH asks
// an agent for rsa-sha2-512 first and does not fall back to a weaker
// hash with the same key, so such a key would be listed and then fail.
var algorithms = map[client.Algorithm]sshAlgorithm{
	client.ECDSAP256: ecdsaAlgorithm(client.ECDSAP256, ssh.KeyAlgoECDSA256),
	client.ECDSAP384: ecdsaAlgorithm(client.ECDSAP384, ssh.KeyAlgoECDSA384),
	client.Ed25519: {
		KeyType: ssh.KeyAlgoED25519,
		PublicKey: func(raw []byte) (ssh.PublicKey, error) {
			// The authorized_keys form of keystorectl pubkey --format ssh.
			return keyfmt.SSHPublicKey(client.PublicKey{Algorithm: client.Ed25519, Raw: raw})
		},
		Format: func(agent.SignatureFlags) (string, error) { return ssh.KeyAlgoED25519, nil },
		// RFC 8709 section 6: the blob is the 64-byte RFC 8032 signature.
		Blob: func(sig []byte) ([]byte, error) {
			if len(sig) != ed25519.SignatureSize {
				return nil, provider.Errorf(provider.EIO, "ed25519 signature of %d bytes, want %d", len(sig), ed25519.SignatureSize)
			}
			return sig, nil
		},
	},
}

// KeyType returns the ssh public key type of a keystored algorithm, and
// false if the agent does not offer keys of that algorithm.
func KeyType(alg client.Algorithm) (string, bool) {
	a, ok := algorithms[alg]
	return a.KeyType, ok
}

// ecdsaAlgorithm is the ssh form of an ECDSA key of alg (RFC 5656).
func ecdsaAlgorithm(alg client.Algorithm, keyType string) sshAlgorithm {
	return sshAlgorithm{
		KeyType: keyType,
		PublicKey: func(raw []byte) (ssh.PublicKey, error) {
			return keyfmt.SSHPublicKey(client.PublicKey{Algorithm: alg, Raw: raw})
		},
		Format: func(agent.SignatureFlags) (string, error) { return keyType, nil },
		// RFC 5656 3.1.2: the blob is mpint r ‖ mpint s.
		Blob: func(sig []byte) ([]byte, error) {
			var rs struct{ R, S *big.Int }
			rest, err := asn1.Unmarshal(sig, &rs)
			if err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
				return nil, provider.Errorf(provider.EIO, "%s signature is not ASN.1 DER (r, s)", string(alg))
			}
			return ssh.Marshal(rs), nil
		},
	}
}
