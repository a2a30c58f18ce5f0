//go:build !linux

package fairsched

import "errors"

// setThreadNice is implemented on Linux only.
func setThreadNice(int) error {
	return errors.New("per-thread nice values are implemented on Linux only; set the scheduler's nice to 0")
}
