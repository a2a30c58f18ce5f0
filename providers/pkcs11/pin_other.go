//go:build !unix

package pkcs11

import "github.com/nexus-os/keystored/core/provider"

// readPrivateFile is not implemented off Unix: the permission checks
// ReadPINFile promises need Unix file modes and owners.
func readPrivateFile(_, q string, _ int) ([]byte, error) {
	return nil, provider.Errorf(provider.ENOTSUP, q+": PIN files are supported on Unix only; use KEYSTORE_PKCS11_PIN")
}
