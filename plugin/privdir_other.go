//go:build !linux

package plugin

import (
	"os"

	"github.com/nexus-os/keystored/core/provider"
)

// privateDir: the private directory's checks (descriptor-relative opens,
// executing the verified descriptor) are implemented on Linux only, so
// Launch refuses elsewhere.
type privateDir struct{ path string }

func errNotLinux() error {
	return provider.Errorf(provider.ENOTSUP, "provider plugins are supported on Linux only")
}

func openPrivateDir(string) (*privateDir, error)                { return nil, errNotLinux() }
func (d *privateDir) check() error                              { return errNotLinux() }
func (d *privateDir) close() error                              { return nil }
func (d *privateDir) clear() ([]string, error)                  { return nil, errNotLinux() }
func (d *privateDir) mkdir(string) (string, error)              { return "", errNotLinux() }
func (d *privateDir) copyIn(*os.File, string, []byte) error     { return errNotLinux() }
func (d *privateDir) openCopy(string, []byte) (*os.File, error) { return nil, errNotLinux() }
