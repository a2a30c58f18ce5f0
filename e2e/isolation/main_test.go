package isolation

import (
	"os"
	"testing"

	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// TestMain also makes the test binary a probe: the isolation test runs
// copies of it under other uids (see package probe).
func TestMain(m *testing.M) {
	if probe.Enabled() {
		os.Exit(probe.Main(os.Stdin, os.Stdout))
	}
	os.Exit(daemontest.Main(m))
}
