package provider

import (
	"encoding/binary"
	"strconv"
)

// parseKeyRef decodes the canonical binary encoding made by AppendBinary.
// Nothing outside the tests decodes a KeyRef (providers bind handles to
// the encoding, never parse it back); the decoder is here to show the
// encoding is injective: what decodes re-encodes to the same bytes.
func parseKeyRef(b []byte) (KeyRef, error) {
	bad := func(what string) (KeyRef, error) {
		return KeyRef{}, Errorf(EINVAL, "malformed key ref encoding: %s", what)
	}
	if len(b) < len(refMagic) || string(b[:len(refMagic)]) != refMagic {
		return bad("magic")
	}
	b = b[len(refMagic):]
	var s [5]string
	for i := range s {
		if len(b) < 2 {
			return bad("truncated")
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > MaxSegment || len(b) < n {
			return bad("field " + strconv.Itoa(i) + " length")
		}
		s[i], b = string(b[:n]), b[n:]
	}
	if len(b) != 5 {
		return bad("trailer length")
	}
	id, err := NewKeyID(s[0], s[1], s[2])
	if err != nil {
		return KeyRef{}, err
	}
	r := KeyRef{
		ID:        id,
		Algorithm: Algorithm(s[3]),
		Provider:  s[4],
		Version:   Version(binary.BigEndian.Uint32(b)),
		Use:       Use(b[4]),
	}
	if err := r.Check(); err != nil {
		return KeyRef{}, err
	}
	return r, nil
}
