package softkey

import (
	"bytes"
	"encoding/hex"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Handle layout.
const (
	// HandleMagic starts every handle of this format.
	HandleMagic = "KSW1"
	// HandleAADLabel starts the associated data of the wrap; the KeyRef's
	// canonical binary encoding follows it.
	HandleAADLabel = "keystored/softkey/handle/v1"

	wrapNonceSize = chacha20poly1305.NonceSizeX
	headerSize    = len(HandleMagic) + KEKIDSize + wrapNonceSize
	// HandleOverhead is what a handle adds to the private material: magic,
	// KEK ID, nonce and tag.
	HandleOverhead = headerSize + chacha20poly1305.Overhead
)

// wrapAAD returns HandleAADLabel ‖ ref.AppendBinary.
func wrapAAD(ref provider.KeyRef) ([]byte, error) {
	b := make([]byte, 0, len(HandleAADLabel)+128)
	b = append(b, HandleAADLabel...)
	return ref.AppendBinary(b)
}

// wrap seals material into a handle bound to ref, under the KEK new
// handles are wrapped under.
func (e *Engine) wrap(ref provider.KeyRef, material []byte) (provider.Handle, error) {
	return e.wrapWith(e.ring.load().wrapper(), ref, material)
}

// wrapWith seals material into a handle bound to ref under kek, with a
// wrap nonce from Source.WrapNonce.
func (e *Engine) wrapWith(kek *kekSlot, ref provider.KeyRef, material []byte) (provider.Handle, error) {
	return e.wrapWithNonce(kek, ref, material, func(nonce []byte) error {
		if err := e.src.WrapNonce(ref, nonce); err != nil {
			return provider.Errorf(provider.EIO, "wrap nonce for %s unavailable: %w", ref, err)
		}
		return nil
	})
}

// wrapWithNonce seals material into a handle bound to ref under kek, with
// the wrap nonce fill makes.
func (e *Engine) wrapWithNonce(kek *kekSlot, ref provider.KeyRef, material []byte, fill func(nonce []byte) error) (provider.Handle, error) {
	aad, err := wrapAAD(ref)
	if err != nil {
		return nil, err
	}
	h := make([]byte, headerSize, headerSize+len(material)+chacha20poly1305.Overhead)
	copy(h, HandleMagic)
	copy(h[len(HandleMagic):], kek.id[:])
	nonce := h[len(HandleMagic)+KEKIDSize : headerSize]
	if err := fill(nonce); err != nil {
		return nil, err
	}
	return kek.aead.Seal(h, nonce, material, aad), nil
}

// unwrap authenticates h under ref and returns the private material. The
// caller must clear it after use.
func (e *Engine) unwrap(ref provider.KeyRef, spec *alg.Spec, h provider.Handle) ([]byte, error) {
	if len(h) < HandleOverhead || !spec.SecretSizeOK(len(h)-HandleOverhead) || !bytes.HasPrefix(h, []byte(HandleMagic)) {
		return nil, provider.Errorf(provider.EIO, "corrupt key handle for %s", ref)
	}
	keys := e.ring.load()
	id := h[len(HandleMagic) : len(HandleMagic)+KEKIDSize]
	kek := keys.find(id)
	if kek == nil {
		return nil, provider.Errorf(provider.EIO, "key handle for %s was wrapped under KEK %s, this provider holds KEK %s: wrong KEK", ref, hex.EncodeToString(id), strings.Join(keys.fingerprints(), ", "))
	}
	aad, err := wrapAAD(ref)
	if err != nil {
		return nil, err
	}
	nonce := h[len(HandleMagic)+KEKIDSize : headerSize]
	material, err := kek.aead.Open(make([]byte, 0, len(h)-HandleOverhead), nonce, h[headerSize:], aad)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "key handle for %s failed authentication (corrupted, or moved from another key/version)", ref)
	}
	return material, nil
}
