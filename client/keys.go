package client

import (
	"context"
	"crypto"
	"strconv"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// Create creates key ("<purpose>/<name>", or "<app>/<purpose>/<name>" for
// operators) with version 1 as primary. Key IDs are never reused: an
// existing, revoked or destroyed key gives ErrAlready.
func (c *Client) Create(ctx context.Context, key string, opts CreateOptions) (KeyInfo, error) {
	use := ""
	if opts.Use != 0 {
		if !opts.Use.Valid() {
			return KeyInfo{}, &provider.Error{Code: provider.EINVAL, Op: "create", Key: key, Msg: "invalid use " + opts.Use.String()}
		}
		use = opts.Use.String()
	}
	resp, insec, err := callHeader(ctx, c, c.keys.Create, &keystorev1.CreateKeyRequest{
		Key:       key,
		Algorithm: string(opts.Algorithm),
		Policy:    policyProto(opts.Policy),
		Use:       use,
	})
	return keyResult(resp.GetKey(), insec, "create", key, err)
}

// Get returns key's metadata.
func (c *Client) Get(ctx context.Context, key string) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.Get, &keystorev1.GetKeyRequest{Key: key})
	return keyResult(resp.GetKey(), insec, "get", key, err)
}

// List returns one page of keys. Keys whose files are corrupted are
// listed in KeyPage.Unreadable and do not fail the listing.
func (c *Client) List(ctx context.Context, opts ListOptions) (KeyPage, error) {
	if opts.PageSize < 0 || opts.PageSize > maxPageSize {
		return KeyPage{}, provider.Errorf(provider.EINVAL, "page size %d is not 0 .. %d", opts.PageSize, maxPageSize)
	}
	resp, insec, err := callHeader(ctx, c, c.keys.List, &keystorev1.ListKeysRequest{
		App:       opts.App,
		PageSize:  int32(opts.PageSize),
		PageToken: opts.PageToken,
	})
	if err != nil {
		return KeyPage{}, err
	}
	page := KeyPage{NextPageToken: resp.GetNextPageToken()}
	for _, m := range resp.GetKeys() {
		page.Keys = append(page.Keys, keyInfo(m, insec))
	}
	for _, u := range resp.GetUnreadable() {
		var uerr error = provider.EIO
		if u.GetError() != nil {
			uerr = detailError(u.GetError())
		}
		page.Unreadable = append(page.Unreadable, UnreadableKey{ID: u.GetId(), Err: uerr})
	}
	return page, nil
}

// maxPageSize is the largest page the daemon serves.
const maxPageSize = 1000

// Rotate makes a new version of key the primary one; the old primary is
// retired (it still verifies and unseals). An imported key gives
// ErrPermission: import new material (Import, ImportKey), or switch it to
// generated material with RotateWith.
func (c *Client) Rotate(ctx context.Context, key string) (KeyInfo, error) {
	return c.RotateWith(ctx, key, RotateOptions{})
}

// Revoke revokes every version of key, irreversibly: every later use gives
// ErrKeyRevoked.
func (c *Client) Revoke(ctx context.Context, key string) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.Revoke, &keystorev1.RevokeKeyRequest{Key: key})
	return keyResult(resp.GetKey(), insec, "revoke", key, err)
}

// RevokeVersion revokes one version of key.
func (c *Client) RevokeVersion(ctx context.Context, key string, version uint32) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.RevokeVersion, &keystorev1.RevokeKeyVersionRequest{Key: key, Version: int64(version)})
	return keyResult(resp.GetKey(), insec, "revoke-version", key, err)
}

// Destroy erases a revoked key's material; its metadata stays as a
// tombstone. An active key gives ErrPermission (revoke it first).
func (c *Client) Destroy(ctx context.Context, key string) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.Destroy, &keystorev1.DestroyKeyRequest{Key: key})
	return keyResult(resp.GetKey(), insec, "destroy", key, err)
}

// SetPolicy replaces key's policy.
func (c *Client) SetPolicy(ctx context.Context, key string, p Policy) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.SetPolicy, &keystorev1.SetKeyPolicyRequest{Key: key, Policy: policyProto(p)})
	return keyResult(resp.GetKey(), insec, "set-policy", key, err)
}

// keyResult converts a response carrying KeyMetadata.
func keyResult(m *keystorev1.KeyMetadata, insec bool, op, key string, err error) (KeyInfo, error) {
	if err != nil {
		return KeyInfo{}, err
	}
	if m == nil {
		return KeyInfo{}, protocolError(op, key, "no key metadata in the response")
	}
	return keyInfo(m, insec), nil
}

// protocolError reports a response that breaks the API's promises.
func protocolError(op, key, what string) error {
	return &provider.Error{Code: provider.EIO, Op: op, Key: key, Msg: "keystored protocol error: " + what}
}

// PublicKey returns the public key of a version of a signing or
// asymmetric-decrypt key; version 0 means the current one. An HPKE key's
// comes with its suite (PublicKey.Suite), what senders need besides the
// key (HPKESeal).
func (c *Client) PublicKey(ctx context.Context, key string, version uint32) (PublicKey, error) {
	resp, _, err := call(ctx, c, c.keys.PublicKey, &keystorev1.PublicKeyRequest{Key: key, Version: int64(version)})
	if err != nil {
		return PublicKey{}, err
	}
	if len(resp.GetPublicKey()) == 0 || resp.GetVersion() == 0 {
		return PublicKey{}, protocolError("public-key", key, "empty public key or version 0")
	}
	if version != 0 && resp.GetVersion() != version {
		return PublicKey{}, protocolError("public-key", key, "the public key of another version than the one asked for")
	}
	suite, ok := wireSuite(resp.GetKemId(), resp.GetKdfId(), resp.GetAeadId())
	alg := Algorithm(resp.GetAlgorithm())
	if !ok || !checkSuite(alg, suite) {
		return PublicKey{}, protocolError("public-key", key, string(alg)+" with HPKE suite "+suite.String())
	}
	return PublicKey{
		Key:       resp.GetKey(),
		Version:   resp.GetVersion(),
		Algorithm: alg,
		Raw:       resp.GetPublicKey(),
		Suite:     suite,
	}, nil
}

// wireSuite reads the uint32 suite identifiers of the wire, each 16 bits
// in RFC 9180 (false otherwise).
func wireSuite(kem, kdf, aead uint32) (HPKESuite, bool) {
	if kem > 0xffff || kdf > 0xffff || aead > 0xffff {
		return HPKESuite{}, false
	}
	return HPKESuite{KEM: uint16(kem), KDF: uint16(kdf), AEAD: uint16(aead)}, true
}

// RotateOptions are the options of RotateWith.
type RotateOptions struct {
	// Generate rotates an imported key to generated material: the new
	// version is made by the daemon's provider, and from then on the key
	// is a generated one (KeyInfo.Origin). Without it, rotating an
	// imported key gives ErrPermission: its new versions come from
	// Import.
	Generate bool
}

// RotateWith is Rotate with options.
func (c *Client) RotateWith(ctx context.Context, key string, opts RotateOptions) (KeyInfo, error) {
	resp, insec, err := callHeader(ctx, c, c.keys.Rotate, &keystorev1.RotateKeyRequest{Key: key, Generate: opts.Generate})
	return keyResult(resp.GetKey(), insec, "rotate", key, err)
}

// Sign signs msg (at most 64 KiB) with the primary version of key. ECDSA,
// RSA and ed25519ph keys hash msg inside the daemon; for a longer message
// hash it yourself and use SignDigest.
func (c *Client) Sign(ctx context.Context, key string, msg []byte) (Signature, error) {
	return c.SignWith(ctx, key, 0, SignInput{Message: msg})
}

// SignDigest signs the caller's digest of a message with the primary
// version of key: an ECDSA, RSA or ed25519ph key, whose own hash hash must
// be (DigestHash; ErrInvalid otherwise, and for a digest of the wrong
// size). Keys that sign whole messages only (ed25519, ed448, ML-DSA) give
// ErrPermission. The signature is the one Sign would make over the
// message, so Verify checks it too.
func (c *Client) SignDigest(ctx context.Context, key string, hash crypto.Hash, digest []byte) (Signature, error) {
	return c.SignWith(ctx, key, 0, SignInput{Hash: hash, Digest: digest})
}

// SignWith signs a message or a digest (see SignInput) with version of
// key: 0 is the primary version (rotated first when it is due); any other
// version signs while it is primary or retired, and gives ErrKeyRevoked
// once it is revoked or destroyed (ErrNotFound if the key never had it).
// Naming the version keeps long-lived users (a TLS server, a JWT issuer)
// signing with the key whose public key they published across a rotate.
// A daemon that signed with another version than the one asked for (one
// older than API v1.3, which ignores the field) gives ErrVersionMismatch.
func (c *Client) SignWith(ctx context.Context, key string, version uint32, in SignInput) (Signature, error) {
	req := &keystorev1.SignRequest{Key: key, Version: int64(version)}
	if err := in.check("sign", key); err != nil {
		return Signature{}, err
	}
	if in.Hash != 0 {
		req.DigestHash, _ = provider.HashName(in.Hash) // checked above
		req.Digest = in.Digest
	} else {
		req.Message = in.Message
	}
	resp, _, err := call(ctx, c, c.keys.Sign, req)
	if err != nil {
		return Signature{}, err
	}
	sig, err := signature(resp, key)
	if err != nil {
		return Signature{}, err
	}
	if version != 0 && sig.Version != version {
		return Signature{}, versionMismatch("sign", key, version, sig.Version)
	}
	return sig, nil
}

// check refuses a SignInput that is neither a message nor a well-formed
// digest, before anything is sent.
func (in SignInput) check(op, key string) error {
	switch {
	case in.Hash == 0 && len(in.Digest) > 0:
		return &provider.Error{Code: provider.EINVAL, Op: op, Key: key, Msg: "a digest needs its Hash"}
	case in.Hash != 0 && len(in.Message) > 0:
		return &provider.Error{Code: provider.EINVAL, Op: op, Key: key, Msg: "give a message or a digest, not both"}
	case in.Hash != 0:
		if err := provider.CheckDigest(in.Hash, in.Digest); err != nil {
			return &provider.Error{Code: provider.EINVAL, Op: op, Key: key, Err: err}
		}
	}
	return nil
}

// versionMismatch is the error for a daemon that answered with another
// version than the one asked for.
func versionMismatch(op, key string, want, got uint32) error {
	return &provider.Error{Code: provider.EINVAL, Op: op, Key: key + "@" + strconv.FormatUint(uint64(want), 10),
		Msg: "daemon signed with version " + strconv.FormatUint(uint64(got), 10) + " (a daemon older than API v1.3 ignores the version)",
		Err: ErrVersionMismatch}
}

func signature(resp *keystorev1.SignResponse, key string) (Signature, error) {
	if len(resp.GetSignature()) == 0 || resp.GetVersion() == 0 {
		return Signature{}, protocolError("sign", key, "empty signature or version 0")
	}
	return Signature{Key: resp.GetKey(), Version: resp.GetVersion(), Signature: resp.GetSignature()}, nil
}

// Verify checks sig over msg against the given version of key (the one
// Sign returned). It returns nil if the signature is valid and an error
// wrapping ErrBadMessage if it is not; other errors mean the check could
// not be made (ErrKeyRevoked, ErrNotFound, ...).
func (c *Client) Verify(ctx context.Context, key string, version uint32, msg, sig []byte) error {
	return c.VerifyWith(ctx, key, version, SignInput{Message: msg}, sig)
}

// VerifyDigest checks sig over the caller's digest of a message against
// the given version of key, as Verify does over the message; hash and
// digest as for SignDigest.
func (c *Client) VerifyDigest(ctx context.Context, key string, version uint32, hash crypto.Hash, digest, sig []byte) error {
	return c.VerifyWith(ctx, key, version, SignInput{Hash: hash, Digest: digest}, sig)
}

// VerifyWith checks sig over a message or a digest (see SignInput)
// against the given version of key; results as for Verify.
func (c *Client) VerifyWith(ctx context.Context, key string, version uint32, in SignInput, sig []byte) error {
	if err := in.check("verify", key); err != nil {
		return err
	}
	req := &keystorev1.VerifyRequest{Key: key, Version: int64(version), Signature: sig}
	if in.Hash != 0 {
		req.DigestHash, _ = provider.HashName(in.Hash) // checked above
		req.Digest = in.Digest
	} else {
		req.Message = in.Message
	}
	resp, _, err := call(ctx, c, c.keys.Verify, req)
	if err != nil {
		return err
	}
	if !resp.GetValid() {
		return &provider.Error{Code: provider.EBADMSG, Op: "verify", Key: key + "@" + strconv.FormatUint(uint64(version), 10), Msg: "signature does not verify"}
	}
	return nil
}

// MAC returns the HMAC tag of msg (at most 1 MiB) under the primary
// version of key, a mac key (hmac-sha256/384/512; ErrPermission for
// others). Keep MACTag.Version with the tag: VerifyMAC needs it.
func (c *Client) MAC(ctx context.Context, key string, msg []byte) (MACTag, error) {
	resp, _, err := call(ctx, c, c.keys.Mac, &keystorev1.MacRequest{Key: key, Message: msg})
	if err != nil {
		return MACTag{}, err
	}
	return macTag(resp, "mac", key)
}

func macTag(resp *keystorev1.MacResponse, op, key string) (MACTag, error) {
	if len(resp.GetTag()) == 0 || resp.GetVersion() == 0 {
		return MACTag{}, protocolError(op, key, "empty tag or version 0")
	}
	return MACTag{Key: resp.GetKey(), Version: resp.GetVersion(), Tag: resp.GetTag()}, nil
}

// VerifyMAC checks tag over msg against the given version of key (the one
// MAC returned; a retired version still verifies), comparing in constant
// time inside the daemon. It returns nil if the tag matches and an error
// wrapping ErrBadMessage if it does not (a truncated tag does not match);
// other errors mean the check could not be made.
func (c *Client) VerifyMAC(ctx context.Context, key string, version uint32, msg, tag []byte) error {
	resp, _, err := call(ctx, c, c.keys.VerifyMac, &keystorev1.VerifyMacRequest{Key: key, Version: int64(version), Message: msg, Tag: tag})
	if err != nil {
		return err
	}
	if !resp.GetValid() {
		return badTag(key, version)
	}
	return nil
}

func badTag(key string, version uint32) error {
	return &provider.Error{Code: provider.EBADMSG, Op: "verify-mac", Key: key + "@" + strconv.FormatUint(uint64(version), 10), Msg: "tag does not match"}
}

// Seal encrypts plaintext (at most 1 MiB) under the primary version of key
// with aad (at most 64 KiB) as associated data, which Unseal needs again.
func (c *Client) Seal(ctx context.Context, key string, plaintext, aad []byte) (Sealed, error) {
	resp, _, err := call(ctx, c, c.keys.Seal, &keystorev1.SealRequest{Key: key, Plaintext: plaintext, Aad: aad})
	if err != nil {
		return Sealed{}, err
	}
	return sealed(resp.GetSealed(), resp.GetVersion(), "seal", key)
}

func sealed(data []byte, version uint32, op, key string) (Sealed, error) {
	if len(data) == 0 || version == 0 {
		return Sealed{}, protocolError(op, key, "empty sealed data or version 0")
	}
	return Sealed{Data: data, Version: version}, nil
}

// Unseal decrypts what Seal returned. A wrong key, wrong AAD or modified
// data give an error wrapping ErrBadMessage and no plaintext.
func (c *Client) Unseal(ctx context.Context, key string, sealedData, aad []byte) (Unsealed, error) {
	resp, _, err := call(ctx, c, c.keys.Unseal, &keystorev1.UnsealRequest{Key: key, Sealed: sealedData, Aad: aad})
	if err != nil {
		return Unsealed{}, err
	}
	if resp.GetVersion() == 0 {
		return Unsealed{}, protocolError("unseal", key, "version 0")
	}
	pt := resp.GetPlaintext()
	if pt == nil {
		pt = []byte{}
	}
	return Unsealed{Plaintext: pt, Version: resp.GetVersion()}, nil
}

// Rewrap re-seals sealed data under the primary version of key inside the
// daemon, without returning the plaintext.
func (c *Client) Rewrap(ctx context.Context, key string, sealedData, aad []byte) (Sealed, error) {
	resp, _, err := call(ctx, c, c.keys.Rewrap, &keystorev1.RewrapRequest{Key: key, Sealed: sealedData, Aad: aad})
	if err != nil {
		return Sealed{}, err
	}
	return sealed(resp.GetSealed(), resp.GetVersion(), "rewrap", key)
}

// Sweep rotates the keys due for automatic rotation among the next
// opts.Limit keys of every app (operators only: ErrPermission otherwise).
// It examines at most 1000 keys per call: sweep every key by calling again
// with SweepResult.NextPageToken until it is empty. A key that fails to
// rotate is listed in SweepResult.Failed and does not fail the call.
func (c *Client) Sweep(ctx context.Context, opts SweepOptions) (SweepResult, error) {
	if opts.Limit < 0 || opts.Limit > maxSweepLimit {
		return SweepResult{}, provider.Errorf(provider.EINVAL, "sweep limit %d is not 0 .. %d", opts.Limit, maxSweepLimit)
	}
	resp, _, err := call(ctx, c, c.keys.Sweep, &keystorev1.SweepKeysRequest{PageToken: opts.PageToken, Limit: int32(opts.Limit)})
	if err != nil {
		return SweepResult{}, err
	}
	res := SweepResult{Examined: int(resp.GetExamined()), NextPageToken: resp.GetNextPageToken()}
	for _, r := range resp.GetRotated() {
		res.Rotated = append(res.Rotated, RotatedKey{Key: r.GetKey(), Version: r.GetVersion()})
	}
	for _, f := range resp.GetFailed() {
		var ferr error = provider.EIO
		if f.GetError() != nil {
			ferr = detailError(f.GetError())
		}
		res.Failed = append(res.Failed, SweepFailure{Key: f.GetKey(), Err: ferr})
	}
	return res, nil
}

// maxSweepLimit is the most keys one sweep call examines.
const maxSweepLimit = 1000

// Usage returns what app holds against its quotas: its keys and its Store
// values and bytes, with the limits. An empty app means the caller's own;
// another app's needs an operator (ErrPermission otherwise).
func (c *Client) Usage(ctx context.Context, app string) (Usage, error) {
	resp, _, err := call(ctx, c, c.keys.GetUsage, &keystorev1.GetUsageRequest{App: app})
	if err != nil {
		return Usage{}, err
	}
	if resp.GetApp() == "" {
		return Usage{}, protocolError("get-usage", app, "no app in the response")
	}
	return Usage{
		App:                 resp.GetApp(),
		Keys:                resp.GetKeys(),
		KeysLimit:           resp.GetKeysLimit(),
		VersionsPerKeyLimit: resp.GetVersionsPerKeyLimit(),
		StoreValues:         resp.GetStoreValues(),
		StoreValuesLimit:    resp.GetStoreValuesLimit(),
		StoreBytes:          resp.GetStoreBytes(),
		StoreBytesLimit:     resp.GetStoreBytesLimit(),
	}, nil
}
