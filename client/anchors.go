package client

import (
	"context"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// Anchor is a trust anchor: a public key the daemon's operator configured.
type Anchor struct {
	// Name is the PEM file's name without ".pem".
	Name      string
	Algorithm Algorithm
	// PublicKey is the raw public key.
	PublicKey []byte
	// Fingerprint is "sha256:" and the hex SHA-256 of the DER
	// SubjectPublicKeyInfo.
	Fingerprint string
}

// ListAnchors lists the daemon's trust anchors.
func (c *Client) ListAnchors(ctx context.Context) ([]Anchor, error) {
	resp, _, err := call(ctx, c, c.anchors.ListAnchors, &keystorev1.ListAnchorsRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]Anchor, 0, len(resp.GetAnchors()))
	for _, a := range resp.GetAnchors() {
		out = append(out, Anchor{
			Name:        a.GetName(),
			Algorithm:   Algorithm(a.GetAlgorithm()),
			PublicKey:   a.GetPublicKey(),
			Fingerprint: a.GetFingerprint(),
		})
	}
	return out, nil
}

// VerifyAnchor checks sig over msg against the named trust anchor. It
// returns nil if the signature is valid and an error wrapping
// ErrBadMessage if it is not.
func (c *Client) VerifyAnchor(ctx context.Context, anchor string, msg, sig []byte) error {
	resp, _, err := call(ctx, c, c.anchors.Verify, &keystorev1.VerifyAnchorRequest{Anchor: anchor, Message: msg, Signature: sig})
	if err != nil {
		return err
	}
	if !resp.GetValid() {
		return &provider.Error{Code: provider.EBADMSG, Op: "verify-anchor", Key: anchor, Msg: "signature does not verify"}
	}
	return nil
}
