// Package buildinfo formats the version line that keystored's commands
// print for --version: the program, its release version (set at link
// time), the VCS revision Go recorded in the binary and the Go version.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// String returns "<prog> <version> (<revision>, <go version>)", the
// revision shortened to 12 hex digits, or "unknown revision" for a
// binary built outside a VCS checkout.
func String(prog, version string) string {
	return prog + " " + version + " (" + Revision() + ", " + runtime.Version() + ")"
}

// Revision returns the VCS revision recorded in the binary (12 digits),
// or "unknown revision".
func Revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown revision"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			return s.Value[:min(12, len(s.Value))]
		}
	}
	return "unknown revision"
}
