package pkcs11

import (
	"github.com/nexus-os/keystored/core/provider"
)

// ed25519Point returns the 32-byte Ed25519 public key held in a
// CKA_EC_POINT value. PKCS#11 3.0 specifies the DER encoding of an OCTET
// STRING wrapping the 32 bytes (04 20 ‖ key), which SoftHSM2 returns; some
// tokens return the 32 bytes bare, which is accepted too. Anything else is
// refused (EIO); the parser reads only within v's bounds.
func ed25519Point(v []byte) ([]byte, error) {
	switch {
	case len(v) == ed25519PublicKeySize:
		return append([]byte(nil), v...), nil
	case len(v) == 2+ed25519PublicKeySize && v[0] == 0x04 && v[1] == ed25519PublicKeySize:
		return append([]byte(nil), v[2:]...), nil
	}
	return nil, provider.Errorf(provider.EIO, "token returned a %d-byte CKA_EC_POINT that is not a 32-byte Ed25519 public key", len(v))
}
