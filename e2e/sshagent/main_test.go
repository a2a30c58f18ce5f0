package sshagent

import (
	"os"
	"testing"

	"github.com/nexus-os/keystored/internal/daemontest"
)

func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }
