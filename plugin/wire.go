package plugin

import (
	"crypto"
	"slices"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// maxRequest bounds one request message on the wire: the largest of Open
// (a sealed blob, the provider AAD) and Decrypt (an enc, a ciphertext, an
// info and an AAD), with a handle, a key reference and framing.
const maxRequest = max(provider.MaxSealed+provider.MaxProviderAAD,
	provider.MaxHPKEEnc+provider.MaxHPKECiphertext+provider.MaxHPKEInfo+provider.MaxAAD) + provider.MaxHandle + 4096

// hpkeTagSize is the AEAD tag of every HPKE suite keystored has (AES-GCM
// and ChaCha20-Poly1305: core/alg Spec.Overhead): a Decrypt reply's
// plaintext is exactly the ciphertext less it.
const hpkeTagSize = 16

// DefaultMaxReply is the default bound on one reply from a plugin: the
// largest reply is a sealed blob (Seal) or a plaintext (Open).
const DefaultMaxReply = provider.MaxSealed + 64<<10

// refToWire converts a KeyRef to its wire form.
func refToWire(r provider.KeyRef) *providerpb.KeyRef {
	return &providerpb.KeyRef{
		KeyId:     r.ID.String(),
		Version:   uint32(r.Version),
		Algorithm: string(r.Algorithm),
		Use:       providerpb.Use(r.Use),
		Provider:  r.Provider,
	}
}

// refFromWire rebuilds a KeyRef from the wire, trusting nothing: the key ID
// is parsed, every field bounded, and the result must pass KeyRef.Check.
func refFromWire(w *providerpb.KeyRef) (provider.KeyRef, error) {
	if w == nil {
		return provider.KeyRef{}, provider.Errorf(provider.EINVAL, "request has no key ref")
	}
	if len(w.GetAlgorithm()) > provider.MaxSegment {
		return provider.KeyRef{}, provider.Errorf(provider.EINVAL, "key ref algorithm is longer than %d bytes", provider.MaxSegment)
	}
	if len(w.GetProvider()) > provider.MaxProviderName {
		return provider.KeyRef{}, provider.Errorf(provider.EINVAL, "key ref provider name is longer than %d bytes", provider.MaxProviderName)
	}
	u := w.GetUse()
	if u < 0 || u > 255 {
		return provider.KeyRef{}, provider.Errorf(provider.EINVAL, "key ref use %d is not sign, decrypt, mac or asymmetric-decrypt", int(u))
	}
	ref := provider.KeyRef{
		Version:   provider.Version(w.GetVersion()),
		Algorithm: provider.Algorithm(w.GetAlgorithm()),
		Use:       provider.Use(u),
		Provider:  w.GetProvider(),
	}
	if w.GetKeyId() != "" {
		id, err := provider.ParseKeyID(w.GetKeyId())
		if err != nil {
			return provider.KeyRef{}, err
		}
		ref.ID = id
	}
	if err := ref.Check(); err != nil {
		return provider.KeyRef{}, err
	}
	return ref, nil
}

// infoToWire converts an Info to its wire form.
func infoToWire(i provider.Info) *providerpb.InfoResponse {
	algs := make([]string, len(i.Algorithms))
	for n, a := range i.Algorithms {
		algs[n] = string(a)
	}
	return &providerpb.InfoResponse{
		Name:          i.Name,
		Version:       i.Version,
		Secure:        i.Secure,
		Deterministic: i.Deterministic,
		Algorithms:    algs,
		Keks:          append([]string(nil), i.KEKs...),
	}
}

// infoFromWire rebuilds an Info from the wire and checks it (Info.Check:
// a segment as name, bounded version, at most MaxAlgorithms distinct
// algorithm names).
func infoFromWire(w *providerpb.InfoResponse) (provider.Info, error) {
	if len(w.GetAlgorithms()) > provider.MaxAlgorithms {
		return provider.Info{}, provider.Errorf(provider.EIO, "plugin announces more than %d algorithms", provider.MaxAlgorithms)
	}
	if len(w.GetKeks()) > provider.MaxKEKs {
		return provider.Info{}, provider.Errorf(provider.EIO, "plugin announces more than %d KEKs", provider.MaxKEKs)
	}
	i := provider.Info{
		Name:          w.GetName(),
		Version:       w.GetVersion(),
		Secure:        w.GetSecure(),
		Deterministic: w.GetDeterministic(),
		Algorithms:    make([]provider.Algorithm, len(w.GetAlgorithms())),
	}
	for n, a := range w.GetAlgorithms() {
		i.Algorithms[n] = provider.Algorithm(a)
	}
	if len(w.GetKeks()) > 0 {
		i.KEKs = append([]string(nil), w.GetKeks()...)
	}
	if err := i.Check(); err != nil {
		return provider.Info{}, provider.Errorf(provider.EIO, "plugin announced an invalid Info: %w", err)
	}
	return i, nil
}

// sameInfo reports whether two Infos are identical.
func sameInfo(a, b provider.Info) bool {
	return sameDescription(a, b) && slices.Equal(a.KEKs, b.KEKs)
}

// sameDescription reports whether two Infos are identical but for their
// KEKs, which a KEK rotation changes.
func sameDescription(a, b provider.Info) bool {
	return a.Name == b.Name && a.Version == b.Version && a.Secure == b.Secure &&
		a.Deterministic == b.Deterministic && slices.Equal(a.Algorithms, b.Algorithms)
}

// checkRestarted says why a restarted plugin that announces now (and
// nowRot, InfoResponse.kek_rotation) may not take the place of one that
// last announced was (and wasRot), or returns nil. Everything but the
// KEKs must be as before. The KEK list may differ, since a rotation
// changes it and the plugin may have died before the daemon re-read it
// (after a Begin it did not answer: [next, current] where the daemon
// knew [current]; after a Commit: [next] where it knew [next, current]),
// but must share a KEK with the last list (or both be empty): a plugin
// holding none of the KEKs the handles were wrapped under cannot be the
// same one.
func checkRestarted(was, now provider.Info, wasRot, nowRot bool) error {
	switch {
	case !sameDescription(was, now):
		return provider.Errorf(provider.EUNAVAILABLE, "it describes itself differently (provider %q %q, secure %s; was %q %q, secure %s)",
			now.Name, now.Version, strconv.FormatBool(now.Secure), was.Name, was.Version, strconv.FormatBool(was.Secure))
	case wasRot != nowRot:
		return provider.Errorf(provider.EUNAVAILABLE, "it announces KEK rotation %s; it did %s", strconv.FormatBool(nowRot), strconv.FormatBool(wasRot))
	case !keksOverlap(was.KEKs, now.KEKs):
		return provider.Errorf(provider.EUNAVAILABLE, "it holds KEKs [%s], none of the KEKs [%s] it held before",
			strings.Join(now.KEKs, " "), strings.Join(was.KEKs, " "))
	}
	return nil
}

// keksOverlap reports whether two KEK lists share a KEK, or are both
// empty.
func keksOverlap(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	for _, k := range a {
		if slices.Contains(b, k) {
			return true
		}
	}
	return false
}

// Request checks shared by both sides of the wire: the client checks
// before sending, the server again before its provider sees anything.

func checkHandle(op string, ref provider.KeyRef, h []byte) error {
	if len(h) > provider.MaxHandle {
		return provider.WithOp(op, ref.String(), provider.Errorf(provider.EINVAL, "handle is over %d bytes", provider.MaxHandle))
	}
	return nil
}

func checkSign(ref provider.KeyRef, h, msg []byte) error {
	if err := provider.CheckSign(msg); err != nil {
		return provider.WithOp("sign", ref.String(), err)
	}
	return checkHandle("sign", ref, h)
}

// checkSignDigest checks a SignDigest request and returns the wire name
// of its hash: SHA-256, SHA-384 or SHA-512, with a digest of exactly its
// size (provider.CheckDigest, EINVAL; so never over MaxDigest).
func checkSignDigest(ref provider.KeyRef, h []byte, hash crypto.Hash, digest []byte) (string, error) {
	if err := provider.CheckDigest(hash, digest); err != nil {
		return "", provider.WithOp("sign digest", ref.String(), err)
	}
	name, _ := provider.HashName(hash) // CheckDigest accepted hash: it has a name
	return name, checkHandle("sign digest", ref, h)
}

// checkMAC checks a MAC request: the message against MaxMACMessage.
func checkMAC(ref provider.KeyRef, h, msg []byte) error {
	if err := provider.CheckMAC(msg); err != nil {
		return provider.WithOp("mac", ref.String(), err)
	}
	return checkHandle("mac", ref, h)
}

func checkSeal(ref provider.KeyRef, h, plaintext, aad []byte) error {
	if err := provider.CheckSeal(plaintext, aad); err != nil {
		return provider.WithOp("seal", ref.String(), err)
	}
	return checkHandle("seal", ref, h)
}

// checkReturnedHandle checks a handle a provider returned: 1 to MaxHandle
// bytes.
func checkReturnedHandle(h []byte) error {
	if len(h) == 0 || len(h) > provider.MaxHandle {
		return provider.Errorf(provider.EIO, "a handle of %d bytes (want 1 to %d)", len(h), provider.MaxHandle)
	}
	return nil
}

func checkOpen(ref provider.KeyRef, h, sealed, aad []byte) error {
	if err := provider.CheckOpen(sealed, aad); err != nil {
		return provider.WithOp("open", ref.String(), err)
	}
	return checkHandle("open", ref, h)
}

// checkDecrypt checks a Decrypt request: enc, ciphertext, info and aad
// against MaxHPKEEnc, MaxHPKECiphertext, MaxHPKEInfo and MaxAAD
// (EMSGSIZE), the handle against MaxHandle. The sizes the suite fixes
// (enc, the tag) are the provider's to check (alg.Spec.CheckHPKE:
// EBADMSG), after the key's use.
func checkDecrypt(ref provider.KeyRef, h, enc, ciphertext, info, aad []byte) error {
	const op = "decrypt"
	if err := provider.CheckDecrypt(enc, ciphertext, info, aad); err != nil {
		return provider.WithOp(op, ref.String(), err)
	}
	return checkHandle(op, ref, h)
}

// checkWrapRef checks the reference of an import wrapping key: well
// formed (KeyRef.Check). Its algorithm need not be one the plugin offers
// for keys, so it is not checked against Info.
func checkWrapRef(op string, wrap provider.KeyRef) error {
	if err := wrap.Check(); err != nil {
		return provider.WithOp(op, "", provider.Errorf(provider.EINVAL, "import wrapping key ref: %w", err))
	}
	return nil
}

// checkImport checks an Import request: the wrapping key's ref and
// handle, enc against MaxHPKEEnc and wrapped against MaxImportWrapped
// (EMSGSIZE).
func checkImport(ref, wrap provider.KeyRef, wh, enc, wrapped []byte) error {
	const op = "import"
	if err := checkWrapRef(op, wrap); err != nil {
		return err
	}
	if err := provider.CheckImport(enc, wrapped); err != nil {
		return provider.WithOp(op, ref.String(), err)
	}
	return checkHandle(op, ref, wh)
}
