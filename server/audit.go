package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
)

// AuditLog is where the daemon writes its audit records: *audit.Log in the
// daemon, a fake in tests. Append must be safe for concurrent use; an
// error from Append or Ready makes the request fail (fail closed).
type AuditLog interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
	// AppendSync is Append returning once the record is on disk
	// (fsynced): the intent record of every lifecycle change is written
	// with it, so that no acknowledged change exists without its record.
	AppendSync(ctx context.Context, r audit.Record) (audit.Record, error)
	Ready(ctx context.Context) error
}

// call is one request, from the moment the transport sees it to its audit
// record: who asked for which operation, and what the core did on its
// behalf. The daemon writes one record per call, however many core calls
// (a batch) it made; a call that changes state writes that record ahead,
// before the change, and then a correction if the outcome differs.
//
// Every field after mu is guarded by it. The items of a batch run in
// parallel, so add and commit may be called concurrently; commit holds mu
// while it writes the record ahead, so that only the first change writes
// it and later ones see it written.
type call struct {
	s      *Server
	op     string
	start  time.Time
	caller Caller

	mu sync.Mutex
	// What the record names, folded from the core's events: the key and
	// version of the first event (cleared when events disagree), its
	// detail, and whether several keys were involved.
	key     string
	version core.Version
	detail  string
	events  int
	multi   bool
	// Set by handlers: a batch's counts and a note that replaces the
	// detail.
	items, failed int
	note          string
	// ahead is the record written ahead (nil if none); commits counts the
	// changes committed after it was written.
	ahead   *audit.Record
	commits int
	// done is set once the request's final record is written.
	done bool
	// entered is set when a handler takes the call (enter), abandoned
	// when the transport finished it first (abandon): exactly one of the
	// two ever finishes a call that no handler answered.
	entered, abandoned bool
	// probe marks a health or reflection call: counted, never audited
	// (probe.go).
	probe bool
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// callFrom returns the request of ctx, or nil outside a request.
func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// newCall starts the state of one request of op by caller.
func (s *Server) newCall(op string, caller Caller) *call {
	return &call{s: s, op: op, start: time.Now(), caller: caller, probe: isProbe(op)}
}

// enter marks the call as taken by its handler; false if the transport
// finished it already (abandon): the handler must then do nothing, the
// request having been recorded as ended by its client.
func (c *call) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.abandoned {
		return false
	}
	c.entered = true
	return true
}

// abandon finishes, on a goroutine of its own, a call that no handler
// took (enter) and that its client ended (a reset stream, a closed
// connection): gRPC will not run a handler for it, or one that starts
// now finds it abandoned and does nothing. A call a handler took is that
// handler's to finish.
func (c *call) abandon() {
	c.mu.Lock()
	take := !c.done && !c.entered && !c.abandoned
	if take {
		c.abandoned = true
		c.note = "ended by the client before it was handled"
	}
	c.mu.Unlock()
	if take {
		go c.finish(context.Background(), provider.EUNAVAILABLE)
	}
}

// setKey records the key (or store or anchor name) of a request that
// makes no core call.
func (c *call) setKey(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key = key
}

// setBatch records a batch's item and failure counts.
func (c *call) setBatch(items, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items, c.failed = items, failed
}

// setNote records a machine-made note for the audit detail.
func (c *call) setNote(note string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.note = note
}

// add folds one core event into the request.
func (c *call) add(e core.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	if e.Detail != "" && c.detail == "" {
		c.detail = e.Detail
	}
	switch {
	case c.events == 1:
		c.key, c.version = e.Key, e.Version
	case e.Key != c.key:
		c.multi = true
		c.key, c.version = "", 0
	case e.Version != c.version:
		c.version = 0
	}
}

// commitChange is called right before the request changes a key durably, with
// the change's event (e.Gen: the key's generation after it). The change's
// intent record is made durable first, so that no change ever exists
// without its record; an error refuses the change. The first change of a
// request on the key the request names writes the request's own record
// now, with result ok and the generation; any other change (another key
// auto-rotated in a batch) gets an intent record of its own, "during" the
// request. The final record then reports the outcome (see finish).
func (c *call) commitChange(ctx context.Context, e core.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ahead != nil || c.key != e.Key || c.multi {
		r := intentRecord(e, c.s.clock)
		r.Caller = auditCaller(c.caller)
		r.Detail = strings.TrimPrefix(e.Detail+" during "+c.op, " ")
		if c.ahead != nil {
			r.Detail += " seq " + strconv.FormatUint(c.ahead.Seq, 10)
		}
		if len(r.Detail) > audit.MaxField {
			r.Detail = r.Detail[:audit.MaxField]
		}
		if _, err := c.s.appendAhead(ctx, r); err != nil {
			return err
		}
		c.commits++
		return nil
	}
	rec := c.recordLocked(0, "")
	rec.Gen = e.Gen
	r, err := c.s.appendAhead(ctx, rec)
	if err != nil {
		return err
	}
	c.ahead = &r
	c.commits = 1
	return nil
}

// commit is called right before a Store request changes a value: the
// request's record is written ahead, durably (a value change is not a key
// change: no generation, no counter); a second change only checks that
// the log is writable.
func (c *call) commit(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ahead != nil {
		if err := c.s.audit.Ready(ctx); err != nil {
			return err
		}
		c.commits++
		return nil
	}
	r, err := c.s.appendAhead(ctx, c.recordLocked(0, ""))
	if err != nil {
		return err
	}
	c.ahead = &r
	c.commits = 1
	return nil
}

// intentRecord is the write-ahead record of a lifecycle change made on
// no request's behalf, or a request's change other than its first.
func intentRecord(e core.Event, clk core.Clock) audit.Record {
	r := audit.Record{
		Time:    e.Time,
		Caller:  audit.Caller{UID: e.Caller.UID, PID: e.Caller.PID, App: e.Caller.App, Operator: e.Caller.Operator},
		Op:      "keys." + e.Op.String(),
		Key:     e.Key,
		Version: uint32(e.Version),
		Gen:     e.Gen,
		Result:  resultName(e.Result),
		Detail:  e.Detail,
	}
	if r.Time.IsZero() {
		r.Time = clk.Now()
	}
	return r
}

// finish writes the request's final record once its result is known, and
// reports whether it was written (false: the audit log failed, and the
// request must fail with EIO). A request whose record was written ahead
// needs a second record, marked as the outcome of the first, unless the
// first still tells the whole story: a success with no change after it,
// the batch counts and the detail it recorded (a KEK rotation or a sweep
// learns its counts after its record was written ahead). finish is idempotent: the transport's
// end of the request calls it again for requests the handlers never saw.
func (c *call) finish(ctx context.Context, code provider.Code) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return true
	}
	c.done = true
	if c.probe {
		c.s.metrics.probes.WithLabelValues(c.op, resultName(code)).Inc()
		return true
	}
	var err error
	switch a := c.ahead; {
	case a == nil:
		_, err = c.s.appendRecord(ctx, c.recordLocked(code, ""))
	case code == 0 && c.commits == 1 && c.items == a.Items && c.failed == a.Failed && c.recordLocked(0, "").Detail == a.Detail:
	default:
		detail := "outcome of seq " + strconv.FormatUint(a.Seq, 10)
		if d := c.recordLocked(code, "").Detail; d != "" && d != a.Detail {
			detail += ": " + d
		}
		if len(detail) > audit.MaxField {
			detail = detail[:audit.MaxField]
		}
		_, err = c.s.appendRecord(ctx, c.recordLocked(code, detail))
	}
	ok := err == nil
	if !ok {
		code = provider.EIO
	}
	result := resultName(code)
	c.s.metrics.observe(c.op, result, time.Since(c.start))
	if c.s.log.Enabled(ctx, slog.LevelDebug) {
		// Guarded: the arguments would be boxed (allocated) even with
		// debug off.
		c.s.log.Debug("request", "op", c.op, "uid", c.caller.UID, "app", c.caller.App, "result", result)
	}
	return ok
}

// recordLocked builds the request's record with result code; detail, when
// given, replaces the one the request gathered. c.mu must be held.
func (c *call) recordLocked(code provider.Code, detail string) audit.Record {
	switch {
	case detail != "":
	case c.note != "":
		detail = c.note
	case c.multi && c.detail == "":
		detail = "several keys"
	default:
		detail = c.detail
	}
	return audit.Record{
		Time:    c.s.clock.Now(),
		Caller:  auditCaller(c.caller),
		Op:      c.op,
		Key:     c.key,
		Version: uint32(c.version),
		Result:  resultName(code),
		Items:   c.items,
		Failed:  c.failed,
		Detail:  detail,
	}
}

// appendAhead writes the record of a change before the change, durably
// (fsynced before it returns): a key change's intent record, a Store
// request's record. A cancelled request is still audited.
func (s *Server) appendAhead(ctx context.Context, rec audit.Record) (audit.Record, error) {
	r, err := s.audit.AppendSync(context.WithoutCancel(ctx), rec)
	if err != nil {
		s.log.Error("audit record not written; change refused", "op", rec.Op, "key", rec.Key, "uid", rec.Caller.UID, "err", err)
		return audit.Record{}, err
	}
	return r, nil
}

// appendRecord writes one record. A cancelled request is still audited.
func (s *Server) appendRecord(ctx context.Context, rec audit.Record) (audit.Record, error) {
	r, err := s.audit.Append(context.WithoutCancel(ctx), rec)
	if err != nil {
		s.log.Error("audit record not written; request refused", "op", rec.Op, "uid", rec.Caller.UID, "err", err)
		return audit.Record{}, err
	}
	return r, nil
}

// codeOf is the code an error is reported with: 0 for nil, err's code,
// EUNAVAILABLE for a context error and EIO for any other error, as
// rpcerr.ToStatus reports it.
func codeOf(err error) provider.Code {
	if err == nil {
		return 0
	}
	if c, ok := provider.CodeOf(err); ok {
		return c
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return provider.EUNAVAILABLE
	}
	return provider.EIO
}

// resultName is the audit record's and the metrics' name of a result:
// "ok" for the zero code, else the code's name.
func resultName(c provider.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

// coreSink is the core.AuditSink the server installs: inside a request it
// adds the core's events to the request (which writes the one record);
// outside a request (a daemon-initiated call such as a sweep) it writes
// each event as its own record. Either way a change's intent record is
// durable before the change (call.commit, Server.appendAhead), and
// notes (a change applied, a rollback found) are records of their own.
type coreSink struct{ s *Server }

// Ready forwards to the audit log, so that a state change is refused
// before it happens when the log cannot be written.
func (s *coreSink) Ready(ctx context.Context) error { return s.s.audit.Ready(ctx) }

// Commit implements core.AuditSink: it writes the change's intent record
// durably before the change (inside a request: see call.commit).
func (s *coreSink) Commit(ctx context.Context, e core.Event) error {
	c := callFrom(ctx)
	if c == nil {
		_, err := s.s.appendAhead(ctx, intentRecord(e, s.s.clock))
		return err
	}
	c.add(e)
	return c.commitChange(ctx, e)
}

// Record implements core.AuditSink.
func (s *coreSink) Record(ctx context.Context, e core.Event) error {
	if c := callFrom(ctx); c != nil {
		c.add(e)
		return nil
	}
	if e.OK() && e.Gen > 0 {
		// A change that went through: its intent record (Commit) said
		// so already, with this op, key and generation.
		return nil
	}
	r := intentRecord(e, s.s.clock)
	r.Gen = 0 // an outcome; only intent records carry a generation
	_, err := s.s.audit.Append(ctx, r)
	return err
}

// Note implements core.AuditSink: a record of its own ("keys.applied",
// "keys.rollback-detected", with the key's generation), never folded into
// the request's. A cancelled request's note is still written.
//
// After a change's keys.applied note the external counter, if any,
// advances (Config.Advance): its signed record then covers the note, so
// a log cut back to before the note no longer matches the counter.
//
// A keys.adopted note is written durably (appendAhead): it takes a stored
// generation into the log, and the key is served right after, so a power
// cut must not lose it (the next start would refuse the key as not in the
// log). keys.applied and keys.rollback-detected follow the interval: a
// lost applied note leaves the intent, which the generation check
// accepts; a lost refusal is found again.
func (s *coreSink) Note(ctx context.Context, e core.Event) error {
	if e.Op == core.OpAdopted {
		if _, err := s.s.appendAhead(ctx, intentRecord(e, s.s.clock)); err != nil {
			return err
		}
		return nil
	}
	if _, err := s.s.audit.Append(context.WithoutCancel(ctx), intentRecord(e, s.s.clock)); err != nil {
		return err
	}
	if e.Op == core.OpApplied && s.s.advance != nil {
		if err := s.s.advance(context.WithoutCancel(ctx)); err != nil {
			s.s.log.Error("external counter not advanced after a change", "key", e.Key, "gen", e.Gen, "err", err)
			return err
		}
	}
	return nil
}
