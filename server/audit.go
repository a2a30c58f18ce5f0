package server

import (
	"context"
	"sync"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// AuditLog is where the daemon writes its audit records: *audit.Log in the
// daemon, a fake in tests. Append must be safe for concurrent use; an
// error from Append or Ready makes the request fail (fail closed).
type AuditLog interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
	Ready(ctx context.Context) error
}

// summary gathers the core events of one request: the daemon writes one
// audit record per request, however many core calls (a batch) it made.
type summary struct {
	mu      sync.Mutex
	events  int
	key     string
	version core.Version
	multi   bool // events named different keys or versions
	detail  string

	// Set by handlers: batch counts and a note that replaces the detail.
	items, failed int
	note          string

	// commitAhead, set by the interceptor, writes the request's record
	// before its first change is made durable (write-ahead); written holds
	// what it wrote and commits counts the changes committed.
	commitAhead func(ctx context.Context) (audit.Record, error)
	written     *audit.Record
	commits     int
	// commitMu serializes commits: the items of a batch run in parallel,
	// and only the first change may write the record ahead.
	commitMu sync.Mutex
}

// commit is called right before the request changes state durably. The
// first change of a request that writes ahead writes the request's record
// now (with result "ok") so that no change ever exists without its
// record; an error refuses the change. A later change of the same request
// (another key auto-rotated in a batch) only checks that the log is
// writable; the request's final record then reports the outcome (see
// settled).
func (s *summary) commit(ctx context.Context, log AuditLog) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	ahead := s.commitAhead
	already := s.written != nil
	s.mu.Unlock()
	var err error
	if ahead == nil || already {
		err = log.Ready(ctx)
	} else {
		var r audit.Record
		if r, err = ahead(ctx); err == nil {
			s.mu.Lock()
			s.written = &r
			s.mu.Unlock()
		}
	}
	if err == nil {
		s.mu.Lock()
		s.commits++
		s.mu.Unlock()
	}
	return err
}

// writtenAhead returns the record written ahead, if any.
func (s *summary) writtenAhead() (audit.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		return audit.Record{}, false
	}
	return *s.written, true
}

// settled reports whether the record written ahead, r, still tells the
// whole story of a successful request: no change was committed after it
// and a batch's counts are those it recorded.
func (s *summary) settled(r audit.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commits == 1 && s.items == r.Items && s.failed == r.Failed
}

// setKey records the key (or store or anchor name) of a request that
// makes no core call.
func (s *summary) setKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = key
}

// setBatch records a batch's item and failure counts.
func (s *summary) setBatch(items, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items, s.failed = items, failed
}

// setNote records a machine-made note for the audit detail.
func (s *summary) setNote(note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note = note
}

// batch returns the batch counts and the note.
func (s *summary) batch() (items, failed int, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items, s.failed, s.note
}

// add folds one core event into the summary.
func (s *summary) add(e core.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events++
	if e.Detail != "" && s.detail == "" {
		s.detail = e.Detail
	}
	switch {
	case s.events == 1:
		s.key, s.version = e.Key, e.Version
	case e.Key != s.key:
		s.multi = true
		s.key, s.version = "", 0
	case e.Version != s.version:
		s.version = 0
	}
}

// snapshot returns the key, version and detail to record.
func (s *summary) snapshot() (key string, v core.Version, detail string, multi bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key, s.version, s.detail, s.multi
}

type summaryKey struct{}

func withSummary(ctx context.Context, s *summary) context.Context {
	return context.WithValue(ctx, summaryKey{}, s)
}

func summaryFrom(ctx context.Context) *summary {
	s, _ := ctx.Value(summaryKey{}).(*summary)
	return s
}

// coreSink is the core.AuditSink the server installs: inside a request it
// adds the core's events to the request's summary (the interceptor writes
// the one record); outside a request (a daemon-initiated call such as a
// sweep) it writes each event as its own record.
type coreSink struct {
	log   AuditLog
	clock core.Clock
}

// Ready forwards to the audit log, so that a state change is refused
// before it happens when the log cannot be written.
func (s *coreSink) Ready(ctx context.Context) error { return s.log.Ready(ctx) }

// Commit implements core.AuditSink: inside a request, the change's event
// joins the request's summary and the request's record is written ahead
// (see summary.commit); outside a request it checks the log is writable
// (Record then writes the event).
func (s *coreSink) Commit(ctx context.Context, e core.Event) error {
	sum := summaryFrom(ctx)
	if sum == nil {
		return s.log.Ready(ctx)
	}
	sum.add(e)
	return sum.commit(ctx, s.log)
}

// Record implements core.AuditSink.
func (s *coreSink) Record(ctx context.Context, e core.Event) error {
	if sum := summaryFrom(ctx); sum != nil {
		sum.add(e)
		return nil
	}
	r := audit.Record{
		Time:    e.Time,
		Caller:  audit.Caller{UID: e.Caller.UID, PID: e.Caller.PID, App: e.Caller.App, Operator: e.Caller.Operator},
		Op:      "keys." + e.Op.String(),
		Key:     e.Key,
		Version: uint32(e.Version),
		Result:  resultName(e.Result),
		Detail:  e.Detail,
	}
	if r.Time.IsZero() {
		r.Time = s.clock.Now()
	}
	_, err := s.log.Append(ctx, r)
	return err
}

// resultName is "ok" for the zero code, else the code's name.
func resultName(c provider.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}
