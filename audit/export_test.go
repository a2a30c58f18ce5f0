package audit

// File is the file interface a Log writes to, for fault-injecting tests.
type File = file

// WithFileWrapper makes Open wrap the opened file with w.
func WithFileWrapper(w func(File) File) Option {
	return func(c *config) { c.wrap = w }
}

// EncodeLine returns the canonical line of r with r.Hash as given, without
// the newline.
func EncodeLine(r Record) []byte { return appendCanonical(nil, &r) }

// Rehash returns r with Hash recomputed from its other fields (Prev as
// given), as a forger who knows the format could.
func Rehash(r Record) Record {
	_, r.Hash = appendLine(newHasher(), nil, &r)
	return r
}

// WithRotationFault makes a rotation call f before each of its steps
// (RotationSteps) and stop there, failing the log, if f returns an error.
func WithRotationFault(f func(step string) error) Option {
	return func(c *config) { c.fault = f }
}

// RotationSteps are the steps WithRotationFault's function is called
// with, in order.
var RotationSteps = rotationSteps

// WaitCheckpoints waits until no checkpoint is being made (an every-N
// checkpoint is claimed by the Append that makes it due, before that
// Append returns, and made on its own goroutine).
func WaitCheckpoints(l *Log) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.cp != nil && l.cp.running {
		l.syncCond.Wait()
	}
}

// TickCheckpoint runs the interval timer's function now.
func TickCheckpoint(l *Log) { l.intervalCheckpoint() }
