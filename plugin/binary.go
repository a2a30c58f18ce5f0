package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// MaxBinary bounds the size of a plugin binary Launch will copy.
const MaxBinary = 1 << 30

// parsePin decodes a hex SHA-256 (either case) into its 32 bytes.
func parsePin(s string) ([]byte, error) {
	if len(s) != 2*sha256.Size {
		return nil, provider.Errorf(provider.EINVAL, "plugin SHA-256 must be %d hex digits, got %d characters", 2*sha256.Size, len(s))
	}
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "plugin SHA-256 is not hex")
	}
	return b, nil
}
