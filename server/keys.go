package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// keysService implements keystorev1.KeysServer over the core. Handlers
// return keystored errors; serve turns them into statuses.
type keysService struct {
	keystorev1.UnimplementedKeysServer
	s *Server
}

var errNoCaller = provider.Errorf(provider.EPERM, "no caller identity")

// target resolves the caller and the key a request names.
func target(ctx context.Context, key string) (*Caller, core.KeyID, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, core.KeyID{}, errNoCaller
	}
	id, err := parseKeyName(c, key)
	if err != nil {
		return nil, core.KeyID{}, err
	}
	return c, id, nil
}

func (k *keysService) Create(ctx context.Context, req *keystorev1.CreateKeyRequest) (*keystorev1.CreateKeyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	pol, err := policyFrom(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	var use provider.Use
	if u := req.GetUse(); u != "" {
		if use, err = provider.ParseUse(u); err != nil {
			return nil, err
		}
	}
	m, err := k.s.ks.Create(ctx, c.coreCaller(), id, core.CreateOptions{Algorithm: provider.Algorithm(req.GetAlgorithm()), Use: use, Policy: pol})
	if err != nil {
		return nil, err
	}
	return &keystorev1.CreateKeyResponse{Key: keyMetadata(&m, k.s.clock.Now())}, nil
}

func (k *keysService) Get(ctx context.Context, req *keystorev1.GetKeyRequest) (*keystorev1.GetKeyResponse, error) {
	m, err := k.keyOp(ctx, req.GetKey(), k.s.ks.Get)
	if err != nil {
		return nil, err
	}
	return &keystorev1.GetKeyResponse{Key: m}, nil
}

func (k *keysService) List(ctx context.Context, req *keystorev1.ListKeysRequest) (*keystorev1.ListKeysResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	page, err := k.s.ks.List(ctx, c.coreCaller(), core.ListOptions{App: req.GetApp(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	return listResponse(page, k.s.clock.Now()), nil
}

// keyOp runs one metadata-returning core operation on the key a request
// names.
func (k *keysService) keyOp(ctx context.Context, key string, op func(context.Context, core.Caller, core.KeyID) (core.Metadata, error)) (*keystorev1.KeyMetadata, error) {
	c, id, err := target(ctx, key)
	if err != nil {
		return nil, err
	}
	m, err := op(ctx, c.coreCaller(), id)
	if err != nil {
		return nil, err
	}
	return keyMetadata(&m, k.s.clock.Now()), nil
}

// Rotate adds a new primary version; generate (v1.4) switches an
// imported key to generated material (without it, an imported key is
// EPERM: its new versions come from Import).
func (k *keysService) Rotate(ctx context.Context, req *keystorev1.RotateKeyRequest) (*keystorev1.RotateKeyResponse, error) {
	m, err := k.keyOp(ctx, req.GetKey(), func(ctx context.Context, c core.Caller, id core.KeyID) (core.Metadata, error) {
		return k.s.ks.RotateWith(ctx, c, id, core.RotateOptions{Generate: req.GetGenerate()})
	})
	if err != nil {
		return nil, err
	}
	return &keystorev1.RotateKeyResponse{Key: m}, nil
}

func (k *keysService) Revoke(ctx context.Context, req *keystorev1.RevokeKeyRequest) (*keystorev1.RevokeKeyResponse, error) {
	m, err := k.keyOp(ctx, req.GetKey(), k.s.ks.Revoke)
	if err != nil {
		return nil, err
	}
	return &keystorev1.RevokeKeyResponse{Key: m}, nil
}

func (k *keysService) RevokeVersion(ctx context.Context, req *keystorev1.RevokeKeyVersionRequest) (*keystorev1.RevokeKeyVersionResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	v, err := parseVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	m, err := k.s.ks.RevokeVersion(ctx, c.coreCaller(), id, v)
	if err != nil {
		return nil, err
	}
	return &keystorev1.RevokeKeyVersionResponse{Key: keyMetadata(&m, k.s.clock.Now())}, nil
}

func (k *keysService) Destroy(ctx context.Context, req *keystorev1.DestroyKeyRequest) (*keystorev1.DestroyKeyResponse, error) {
	m, err := k.keyOp(ctx, req.GetKey(), k.s.ks.Destroy)
	if err != nil {
		return nil, err
	}
	return &keystorev1.DestroyKeyResponse{Key: m}, nil
}

func (k *keysService) SetPolicy(ctx context.Context, req *keystorev1.SetKeyPolicyRequest) (*keystorev1.SetKeyPolicyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	pol, err := policyFrom(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	m, err := k.s.ks.SetPolicy(ctx, c.coreCaller(), id, pol)
	if err != nil {
		return nil, err
	}
	return &keystorev1.SetKeyPolicyResponse{Key: keyMetadata(&m, k.s.clock.Now())}, nil
}

func (k *keysService) PublicKey(ctx context.Context, req *keystorev1.PublicKeyRequest) (*keystorev1.PublicKeyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	v, err := parseOptionalVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	pk, err := k.s.ks.PublicKey(ctx, c.coreCaller(), id, v)
	if err != nil {
		return nil, err
	}
	out := &keystorev1.PublicKeyResponse{Key: pk.ID.String(), Version: uint32(pk.Version), Algorithm: string(pk.Algorithm), PublicKey: pk.Key}
	// An HPKE key's public key comes with its RFC 9180 suite, so that a
	// sender needs nothing else (docs/api.md, HPKE public keys).
	if spec, err := k.s.reg.Lookup(pk.Algorithm); err == nil && spec.Use == provider.UseAsymmetricDecrypt {
		out.KemId, out.KdfId, out.AeadId = uint32(spec.KEMID), uint32(spec.KDFID), uint32(spec.AEADID)
	}
	return out, nil
}

func (k *keysService) Sign(ctx context.Context, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return k.sign(ctx, c, id, req)
}

func (k *keysService) sign(ctx context.Context, c *Caller, id core.KeyID, req *keystorev1.SignRequest) (*keystorev1.SignResponse, error) {
	v, err := parseOptionalVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	in, err := signInput(req.GetMessage(), req.GetDigest(), req.GetDigestHash())
	if err != nil {
		return nil, err
	}
	sig, err := k.s.ks.SignWith(ctx, c.coreCaller(), id, v, in)
	if err != nil {
		return nil, err
	}
	return &keystorev1.SignResponse{Key: id.String(), Version: uint32(sig.Version), Signature: sig.Signature}, nil
}

// signInput is what a Sign or Verify request names: its message, or its
// digest under the hash digest_hash names. A request naming both (a
// message with a digest or a digest hash) is EINVAL; a digest of the
// wrong size for its hash is EINVAL from the core.
func signInput(msg, digest []byte, hash string) (core.SignInput, error) {
	if len(digest) == 0 && hash == "" {
		return core.SignInput{Message: msg}, nil
	}
	if len(msg) > 0 {
		return core.SignInput{}, provider.Errorf(provider.EINVAL, "give a message or a digest, not both")
	}
	h, err := provider.ParseHash(hash)
	if err != nil {
		return core.SignInput{}, err
	}
	return core.SignInput{Digest: digest, Hash: h}, nil
}

// The audit details of a verify whose signature, or a verify-mac whose
// tag, is invalid.
const (
	noteInvalid    = "signature invalid"
	noteInvalidTag = "tag invalid"
)

// invalid reports whether err is the core's EBADMSG: a signature or tag
// that does not verify, answered valid=false.
func invalid(err error) bool {
	code, ok := provider.CodeOf(err)
	return ok && code == provider.EBADMSG
}

// Verify answers valid=false, with an OK status, for a signature that does
// not verify (the core's EBADMSG); every other error stays an error.
func (k *keysService) Verify(ctx context.Context, req *keystorev1.VerifyRequest) (*keystorev1.VerifyResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	v, err := parseVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	in, err := signInput(req.GetMessage(), req.GetDigest(), req.GetDigestHash())
	if err != nil {
		return nil, err
	}
	err = k.s.ks.VerifyWith(ctx, c.coreCaller(), id, v, in, req.GetSignature())
	if err != nil {
		if invalid(err) {
			if sum := callFrom(ctx); sum != nil {
				sum.setNote(noteInvalid)
			}
			return &keystorev1.VerifyResponse{Valid: false}, nil
		}
		return nil, err
	}
	return &keystorev1.VerifyResponse{Valid: true}, nil
}

func (k *keysService) Mac(ctx context.Context, req *keystorev1.MacRequest) (*keystorev1.MacResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return k.mac(ctx, c, id, req)
}

func (k *keysService) mac(ctx context.Context, c *Caller, id core.KeyID, req *keystorev1.MacRequest) (*keystorev1.MacResponse, error) {
	m, err := k.s.ks.MAC(ctx, c.coreCaller(), id, req.GetMessage())
	if err != nil {
		return nil, err
	}
	return &keystorev1.MacResponse{Key: id.String(), Version: uint32(m.Version), Tag: m.Tag}, nil
}

// VerifyMac answers valid=false, with an OK status, for a tag that does
// not match (the core's EBADMSG), as Verify does for a signature.
func (k *keysService) VerifyMac(ctx context.Context, req *keystorev1.VerifyMacRequest) (*keystorev1.VerifyMacResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	resp, err := k.verifyMac(ctx, c, id, req)
	if err == nil && !resp.GetValid() {
		if sum := callFrom(ctx); sum != nil {
			sum.setNote(noteInvalidTag)
		}
	}
	return resp, err
}

func (k *keysService) verifyMac(ctx context.Context, c *Caller, id core.KeyID, req *keystorev1.VerifyMacRequest) (*keystorev1.VerifyMacResponse, error) {
	v, err := parseVersion(req.GetVersion())
	if err != nil {
		return nil, err
	}
	err = k.s.ks.VerifyMAC(ctx, c.coreCaller(), id, v, req.GetMessage(), req.GetTag())
	if err != nil {
		if invalid(err) {
			return &keystorev1.VerifyMacResponse{Valid: false}, nil
		}
		return nil, err
	}
	return &keystorev1.VerifyMacResponse{Valid: true}, nil
}

func (k *keysService) Seal(ctx context.Context, req *keystorev1.SealRequest) (*keystorev1.SealResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return k.seal(ctx, c, id, req)
}

func (k *keysService) seal(ctx context.Context, c *Caller, id core.KeyID, req *keystorev1.SealRequest) (*keystorev1.SealResponse, error) {
	s, err := k.s.ks.Seal(ctx, c.coreCaller(), id, req.GetPlaintext(), req.GetAad())
	if err != nil {
		return nil, err
	}
	return &keystorev1.SealResponse{Sealed: s.Data, Version: uint32(s.Version)}, nil
}

func (k *keysService) Unseal(ctx context.Context, req *keystorev1.UnsealRequest) (*keystorev1.UnsealResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return k.unseal(ctx, c, id, req)
}

func (k *keysService) unseal(ctx context.Context, c *Caller, id core.KeyID, req *keystorev1.UnsealRequest) (*keystorev1.UnsealResponse, error) {
	u, err := k.s.ks.Unseal(ctx, c.coreCaller(), id, req.GetSealed(), req.GetAad())
	if err != nil {
		return nil, err
	}
	return &keystorev1.UnsealResponse{Plaintext: u.Plaintext, Version: uint32(u.Version)}, nil
}

func (k *keysService) Rewrap(ctx context.Context, req *keystorev1.RewrapRequest) (*keystorev1.RewrapResponse, error) {
	c, id, err := target(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	s, err := k.s.ks.Rewrap(ctx, c.coreCaller(), id, req.GetSealed(), req.GetAad())
	if err != nil {
		return nil, err
	}
	return &keystorev1.RewrapResponse{Sealed: s.Data, Version: uint32(s.Version)}, nil
}

// MaxListBytes bounds the encoded keys of one List response. A page whose
// keys would exceed it (many keys with many versions of a large public key)
// is cut short and continued on the next page, so a response always fits
// MaxResponseBytes.
const MaxListBytes = 4 << 20

// listResponse converts a core page, cutting it after MaxListBytes of
// keys. Page tokens are the last key ID returned, so a cut page continues
// right after its last key.
func listResponse(page core.ListPage, now time.Time) *keystorev1.ListKeysResponse {
	out := &keystorev1.ListKeysResponse{NextPageToken: page.NextPageToken, Keys: make([]*keystorev1.KeyMetadata, 0, len(page.Keys))}
	size := 0
	for i := range page.Keys {
		m := keyMetadata(&page.Keys[i], now)
		size += proto.Size(m)
		if size > MaxListBytes && len(out.Keys) > 0 {
			out.NextPageToken = page.Keys[i-1].ID.String()
			// Unreadable keys after the cut are reported on the next page.
			cut := page.Keys[i-1].ID
			for _, u := range page.Unreadable {
				if u.ID.Compare(cut) <= 0 {
					out.Unreadable = append(out.Unreadable, &keystorev1.UnreadableKey{Id: u.ID.String(), Error: errorDetail(u.Err)})
				}
			}
			return out
		}
		out.Keys = append(out.Keys, m)
	}
	for _, u := range page.Unreadable {
		out.Unreadable = append(out.Unreadable, &keystorev1.UnreadableKey{Id: u.ID.String(), Error: errorDetail(u.Err)})
	}
	return out
}

// Sweep runs one bounded sweep (core.Keystore.Sweep) for an operator. The
// request's audit record carries the counts in its detail ("swept:
// examined N, rotated R, failed F"); items and failed stay the batches'.
func (k *keysService) Sweep(ctx context.Context, req *keystorev1.SweepKeysRequest) (*keystorev1.SweepKeysResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	res, err := k.s.ks.Sweep(ctx, c.coreCaller(), core.SweepOptions{PageToken: req.GetPageToken(), Limit: int(req.GetLimit())})
	if call := callFrom(ctx); call != nil {
		call.setNote(sweepNote(res))
	}
	if err != nil {
		return nil, err
	}
	out := &keystorev1.SweepKeysResponse{Examined: int32(res.Examined), NextPageToken: res.NextPageToken}
	for _, r := range res.Rotated {
		out.Rotated = append(out.Rotated, &keystorev1.RotatedKey{Key: r.ID.String(), Version: uint32(r.Version)})
	}
	for _, f := range res.Failed {
		out.Failed = append(out.Failed, &keystorev1.SweepFailure{Key: f.ID.String(), Error: errorDetail(f.Err)})
	}
	return out, nil
}

// sweepNote is the audit detail of a sweep.
func sweepNote(res core.SweepResult) string {
	return fmt.Sprintf("swept: examined %d, rotated %d, failed %d", res.Examined, len(res.Rotated), len(res.Failed))
}

// GetUsage reports what an app (empty: the caller's) holds against its
// quotas (Server.Usage).
func (k *keysService) GetUsage(ctx context.Context, req *keystorev1.GetUsageRequest) (*keystorev1.GetUsageResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	app := req.GetApp()
	if app == "" {
		app = c.App
	}
	u, err := k.s.Usage(ctx, c.coreCaller(), app)
	if err != nil {
		return nil, err
	}
	if call := callFrom(ctx); call != nil {
		call.setNote("app " + u.App) // a valid app ID: Usage checked it
	}
	return &keystorev1.GetUsageResponse{
		App:                 u.App,
		Keys:                int64(u.Keys),
		KeysLimit:           int64(u.Quota.Keys),
		VersionsPerKeyLimit: int64(u.Quota.VersionsPerKey),
		StoreValues:         int64(u.StoreValues),
		StoreValuesLimit:    int64(u.Quota.StoreValues),
		StoreBytes:          u.StoreBytes,
		StoreBytesLimit:     u.Quota.StoreBytes,
	}, nil
}
