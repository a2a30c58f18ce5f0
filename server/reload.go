package server

import "github.com/nexus-os/keystored/core/provider"

// liveConfig is what Reload can change while the server runs: the
// identity map and the trust anchors. The server holds one behind an
// atomic pointer, so every request sees either the old or the new
// configuration, whole.
type liveConfig struct {
	identity Identity
	anchors  *Anchors
}

// newLiveConfig fills in the defaults: the zero Identity means
// DefaultIdentity(), nil anchors none.
func newLiveConfig(id Identity, anchors *Anchors) *liveConfig {
	if id.unmapped == 0 {
		id = DefaultIdentity()
	}
	if anchors == nil {
		anchors = &Anchors{}
	}
	return &liveConfig{identity: id, anchors: anchors}
}

// Reload replaces the identity map and the trust anchors at once, for the
// requests that start after it returns (a request in flight keeps the
// caller it was given). The zero Identity is refused (EINVAL) and changes
// nothing: a reload never falls back to DefaultIdentity, which would
// let every uid in. nil anchors means none. Connection and message
// limits are fixed at New.
func (s *Server) Reload(id Identity, anchors *Anchors) error {
	if id.unmapped == 0 {
		return provider.Errorf(provider.EINVAL, "reload: no identity map (use DefaultIdentity or NewIdentity)")
	}
	s.live.Store(newLiveConfig(id, anchors))
	return nil
}

// Identity returns the identity map requests are resolved with now.
func (s *Server) Identity() Identity { return s.live.Load().identity }

// Anchors returns the trust anchors served now.
func (s *Server) Anchors() *Anchors { return s.live.Load().anchors }
