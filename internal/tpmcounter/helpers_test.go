package tpmcounter

import (
	"context"
	"testing"
	"time"

	"github.com/nexus-os/keystored/internal/tpmcounter/swtpmtest"
)

// open opens a Counter on s with o (o.Path set to s's socket), closed
// when t ends.
func open(t *testing.T, s *swtpmtest.TPM, o Options) (*Counter, error) {
	t.Helper()
	o.Path = s.Sock()
	c, err := Open(testContext(t), o)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c, nil
}

// testContext is bounded by the test's deadline, or a minute.
func testContext(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
