package core_test

import (
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/storage"
)

// Both adapters satisfy core.Storage (core itself does not import them).
var (
	_ core.Storage = (*storage.Dir)(nil)
	_ core.Storage = (*storage.Memory)(nil)
)
