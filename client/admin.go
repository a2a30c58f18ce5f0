package client

import (
	"context"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// KEKStatus describes the daemon's key-encryption keys (KEKs), by
// fingerprint (lowercase hex; never the keys).
type KEKStatus struct {
	// Current is the KEK the state's handles are wrapped under; empty for
	// a provider that wraps none under a KEK.
	Current string
	// Pending is the KEK an unfinished rotation rewraps them under; empty
	// when none is pending (RotateKEK resumes one).
	Pending string
	// ProviderKEKs are the KEKs the provider holds, the one new handles
	// are wrapped under first.
	ProviderKEKs []string
	// Rotatable reports whether the provider can rotate its KEK.
	Rotatable bool
}

// KEKRotation is what a KEK rotation did.
type KEKRotation struct {
	// From and To are the old and the new KEK.
	From, To string
	// Keys is the number of keys walked; Rewrapped the handles rewritten
	// under To; Unchanged those already under it; Missing the versions
	// whose handle file was already gone.
	Keys, Rewrapped, Unchanged, Missing int
}

// KEKStatus returns the daemon's KEKs. Operators only (ErrPermission
// otherwise).
func (c *Client) KEKStatus(ctx context.Context) (KEKStatus, error) {
	resp, _, err := call(ctx, c, c.admin.WrappingKeyStatus, &keystorev1.WrappingKeyStatusRequest{})
	if err != nil {
		return KEKStatus{}, err
	}
	s := KEKStatus{Current: resp.GetCurrent(), Pending: resp.GetPending(), Rotatable: resp.GetRotatable()}
	if len(resp.GetProviderWrappingKeys()) > provider.MaxKEKs {
		return KEKStatus{}, badKEKResponse("more than the most KEKs a provider holds")
	}
	for _, f := range append([]string{s.Current, s.Pending}, resp.GetProviderWrappingKeys()...) {
		if f != "" && provider.CheckKEKFingerprint(f) != nil {
			return KEKStatus{}, badKEKResponse("a malformed KEK fingerprint")
		}
	}
	if len(resp.GetProviderWrappingKeys()) > 0 {
		s.ProviderKEKs = append([]string(nil), resp.GetProviderWrappingKeys()...)
	}
	return s, nil
}

// RotateKEK rewraps every key's handles under a new KEK and drops the old
// one (docs/operations.md, KEK rotation). It may take long on a large
// state: give ctx a generous deadline; an interrupted rotation is resumed
// by calling RotateKEK again. Operators only (ErrPermission); a provider
// that cannot rotate gives ErrNotSupported.
func (c *Client) RotateKEK(ctx context.Context) (KEKRotation, error) {
	resp, _, err := call(ctx, c, c.admin.RotateWrappingKey, &keystorev1.RotateWrappingKeyRequest{})
	if err != nil {
		return KEKRotation{}, err
	}
	for _, f := range []string{resp.GetFrom(), resp.GetTo()} {
		if f != "" && provider.CheckKEKFingerprint(f) != nil {
			return KEKRotation{}, badKEKResponse("a malformed KEK fingerprint")
		}
	}
	return KEKRotation{From: resp.GetFrom(), To: resp.GetTo(), Keys: int(resp.GetKeys()), Rewrapped: int(resp.GetRewrapped()),
		Unchanged: int(resp.GetUnchanged()), Missing: int(resp.GetMissing())}, nil
}

func badKEKResponse(what string) error {
	return provider.Errorf(provider.EIO, "daemon answered with %s", what)
}
