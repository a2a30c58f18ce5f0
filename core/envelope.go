package core

import (
	"encoding/binary"

	"github.com/nexus-os/keystored/core/provider"
)

// The sealed envelope (docs/storage.md has the byte-by-byte table):
//
//	offset  size  field
//	0       2     magic "KS"
//	2       1     format version, 0x01
//	3       1     algorithm ID (core/alg Spec.ID)
//	4       4     key version, big-endian
//	8       ...   provider output: nonce ‖ ciphertext ‖ tag
//
// The provider is given as associated data
//
//	header (8 bytes) ‖ u16be(len(keyID)) ‖ keyID ‖ u32be(len(aad)) ‖ aad
//
// so the header, the key ID and the caller's AAD are all authenticated,
// and the length prefixes make ("ab","c") and ("a","bc") differ.
const (
	envelopeFormat    = 1
	envelopeHeaderLen = 8
)

type envelopeHeader struct {
	algID   uint8
	version Version
}

func (h envelopeHeader) appendTo(b []byte) []byte {
	b = append(b, 'K', 'S', envelopeFormat, h.algID)
	return binary.BigEndian.AppendUint32(b, uint32(h.version))
}

// parseEnvelope splits a sealed blob into header and provider body. Every
// malformation is EBADMSG.
func parseEnvelope(sealed []byte) (envelopeHeader, []byte, error) {
	if len(sealed) < envelopeHeaderLen || sealed[0] != 'K' || sealed[1] != 'S' {
		return envelopeHeader{}, nil, provider.Errorf(provider.EBADMSG, "not a keystored sealed envelope")
	}
	if sealed[2] != envelopeFormat {
		return envelopeHeader{}, nil, provider.Errorf(provider.EBADMSG, "unsupported sealed envelope format")
	}
	h := envelopeHeader{algID: sealed[3], version: Version(binary.BigEndian.Uint32(sealed[4:8]))}
	if h.version == 0 {
		return envelopeHeader{}, nil, provider.Errorf(provider.EBADMSG, "sealed envelope names version 0")
	}
	return h, sealed[envelopeHeaderLen:], nil
}

// appendProviderAAD appends the associated data the provider authenticates.
func appendProviderAAD(b []byte, h envelopeHeader, keyID string, aad []byte) []byte {
	b = h.appendTo(b)
	b = binary.BigEndian.AppendUint16(b, uint16(len(keyID)))
	b = append(b, keyID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(aad)))
	return append(b, aad...)
}
