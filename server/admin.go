package server

import (
	"context"
	"math"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// adminService implements keystorev1.AdminServer: operator-only
// maintenance (the core refuses other callers with EPERM).
type adminService struct {
	keystorev1.UnimplementedAdminServer
	s *Server
}

func (a *adminService) WrappingKeyStatus(ctx context.Context, _ *keystorev1.WrappingKeyStatusRequest) (*keystorev1.WrappingKeyStatusResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	st, err := a.s.ks.KEKStatus(ctx, c.coreCaller())
	if err != nil {
		return nil, err
	}
	return &keystorev1.WrappingKeyStatusResponse{Current: st.Current, Pending: st.Pending,
		ProviderWrappingKeys: st.ProviderKEKs, Rotatable: st.Rotatable}, nil
}

func (a *adminService) RotateWrappingKey(ctx context.Context, _ *keystorev1.RotateWrappingKeyRequest) (*keystorev1.RotateWrappingKeyResponse, error) {
	c := callerOf(ctx)
	if c == nil {
		return nil, errNoCaller
	}
	r, err := a.s.ks.RotateKEK(ctx, c.coreCaller())
	if err != nil {
		return nil, err
	}
	return &keystorev1.RotateWrappingKeyResponse{From: r.From, To: r.To, Keys: count32(r.Keys),
		Rewrapped: count32(r.Rewrapped), Unchanged: count32(r.Unchanged), Missing: count32(r.Missing)}, nil
}

// count32 returns n as a uint32, saturating.
func count32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}
