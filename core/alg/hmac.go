package alg

import (
	"crypto/hmac"
	"hash"

	"github.com/nexus-os/keystored/core/provider"
)

// hmacSpec is the spec of HMAC over newHash (RFC 2104): the key is as long
// as the hash output, and so is the tag (never truncated).
func hmacSpec(name provider.Algorithm, id uint8, newHash func() hash.Hash, cost, costPerMiB float64) Spec {
	size := newHash().Size()
	return Spec{
		Name: name, ID: id, Use: provider.UseMAC,
		SecretSize: size, MACSize: size,
		Cost: cost, GenerateCost: 0.05, CostPerMiB: costPerMiB,
		newMAC: func(key []byte) (macFunc, error) {
			k := append([]byte(nil), key...)
			return func(msg []byte) []byte {
				m := hmac.New(newHash, k)
				_, _ = m.Write(msg) // hash.Hash.Write never fails
				return m.Sum(nil)
			}, nil
		},
	}
}
