package core

import "time"

// Clock gives the keystore the time. It is injected so that tests never
// read the wall clock; package clock has the system clock and a fake.
type Clock interface {
	Now() time.Time
}
