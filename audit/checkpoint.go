package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// OpCheckpoint is the Op of a signed checkpoint record (docs/audit.md,
// "Signed checkpoints"). Its Key is the signing key's ref, its Detail
// "<reason> seq=<N> ed25519:<signature, standard base64>": the signature
// of CheckpointMessage over the record before it (seq N, whose hash is the
// checkpoint's Prev), the checkpoint's own Time, the key ref and the
// reason.
const OpCheckpoint = "audit.checkpoint"

// The reasons a checkpoint is made, the first word of its Detail.
const (
	reasonStart    = "start"    // SetSigner
	reasonEvery    = "every"    // after every N records
	reasonInterval = "interval" // after the interval, if records were added
	reasonStop     = "stop"     // Close
)

// checkpointDomain starts every CheckpointMessage.
const checkpointDomain = "keystored-audit-checkpoint-v1"

// signTimeout bounds one signature: Appends wait while a checkpoint is
// signed.
const signTimeout = 5 * time.Second

// Signer signs checkpoints. KeyRef names the key (e.g.
// "keystored/audit/checkpoint@1"; it must be a valid Key field); Sign
// returns the Ed25519 signature of msg.
type Signer interface {
	KeyRef() string
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

// CheckpointSink receives the line of every checkpoint record (the
// canonical log line, newline-terminated) once it is fsynced, to keep a
// copy where the host cannot rewrite it. A sink's error is counted
// (Stats.SinkErrors), never fails the log. WriteCheckpoint is called by
// one goroutine at a time.
type CheckpointSink interface {
	WriteCheckpoint(line []byte) error
	Close() error
}

// CheckpointMessage returns the bytes a checkpoint signs:
//
//	"keystored-audit-checkpoint-v1\n" + seq + "\n" + hash + "\n" +
//	time (RFC 3339 with nanoseconds, UTC) + "\n" + keyRef + "\n" + reason + "\n"
//
// where seq and hash are the record the checkpoint covers (the one before
// it) and time is the checkpoint record's own Time.
func CheckpointMessage(seq uint64, hash string, t time.Time, keyRef, reason string) []byte {
	b := make([]byte, 0, 160+len(keyRef)+len(reason))
	b = append(b, checkpointDomain+"\n"...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '\n')
	b = append(b, hash...)
	b = append(b, '\n')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '\n')
	b = append(b, keyRef...)
	b = append(b, '\n')
	b = append(b, reason...)
	return append(b, '\n')
}

// signerState is a Log's checkpointing (SetSigner). Its fields are
// guarded by the Log's mu.
type signerState struct {
	s        Signer
	keyRef   string
	every    uint64
	interval time.Duration
	sinks    []CheckpointSink
	timer    *time.Timer
	hold     bool   // a checkpoint is being signed: other Appends wait
	running  bool   // a checkpoint is being made (one at a time)
	lastCP   uint64 // Seq of the last checkpoint record
	lastTry  uint64 // the head when the last checkpoint was attempted
	stopped  bool
}

// claim reports whether the record just given seq makes an every-N
// checkpoint due, and if so marks it running. Called with the Log's mu
// held; c may be nil.
func (c *signerState) claim(seq uint64) bool {
	if c == nil || c.running || c.stopped || c.every == 0 || seq-c.lastTry < c.every {
		return false
	}
	c.running = true
	return true
}

// due is claim for the Append path (a method so that a nil cp is fine).
func (c *signerState) due(seq uint64) bool { return c.claim(seq) }

var errHeadMoved = errors.New("audit: the head moved")

// SetSigner starts signed checkpoints: a checkpoint record is appended
// now ("start"), then after every `every` records (0: never for that
// reason) and every `interval` if records were appended since the last
// one (0: no timer), and by Close ("stop"). Each checkpoint is fsynced,
// then its line is given to each sink. Signing failures never fail the
// log: they are counted in Stats.CheckpointErrors and the checkpoint is
// retried at the next trigger.
//
// SetSigner refuses (EINVAL) a nil signer, negative every or interval, or
// a key ref that is not a valid Key field; (EALREADY) a second call; and
// fails as Append does on a closed or failed log. If the start checkpoint
// cannot be made it returns that error, but the signer stays installed
// and the log usable.
func (l *Log) SetSigner(s Signer, every int, interval time.Duration, sinks ...CheckpointSink) error {
	if s == nil {
		return provider.Errorf(provider.EINVAL, "audit signer: nil")
	}
	if every < 0 || interval < 0 {
		return provider.Errorf(provider.EINVAL, "audit checkpoints: every %d, interval %v: want >= 0", every, interval)
	}
	ref := s.KeyRef()
	if msg := checkField(ref, true); msg != "" {
		return provider.Errorf(provider.EINVAL, "audit signer key ref: %s", msg)
	}
	for i, k := range sinks {
		if k == nil {
			return provider.Errorf(provider.EINVAL, "audit checkpoint sink %d: nil", i)
		}
	}
	l.mu.Lock()
	if err := l.unusable(); err != nil {
		l.mu.Unlock()
		return err
	}
	if l.cp != nil {
		l.mu.Unlock()
		return provider.Errorf(provider.EALREADY, "audit log %s already has a signer", l.path)
	}
	c := &signerState{s: s, keyRef: ref, every: uint64(every), interval: interval,
		sinks: append([]CheckpointSink(nil), sinks...), running: true}
	l.cp = c
	l.mu.Unlock()

	err := l.checkpoint(reasonStart)
	if interval > 0 {
		l.mu.Lock()
		if !c.stopped {
			c.timer = time.AfterFunc(interval, l.intervalCheckpoint)
		}
		l.mu.Unlock()
	}
	if err != nil {
		return provider.Errorf(codeOr(err, provider.EIO), "audit start checkpoint: %w", err)
	}
	return nil
}

// intervalCheckpoint is the timer's: a checkpoint if records were
// appended since the last one and none is being made.
func (l *Log) intervalCheckpoint() {
	l.mu.Lock()
	c := l.cp
	if c.stopped {
		l.mu.Unlock()
		return
	}
	run := !c.running && l.seq > c.lastCP && l.unusable() == nil
	if run {
		c.running = true
	}
	c.timer.Reset(c.interval)
	l.mu.Unlock()
	if run {
		// A failure is counted in Stats; the next tick retries.
		_ = l.checkpoint(reasonInterval)
	}
}

// stopCheckpoints ends checkpointing for Close: it waits for a checkpoint
// being made, makes the "stop" one (unless the log failed) and returns the
// sinks for Close to close. Called with l.mu held and l.closing set; it
// releases mu while it waits and signs.
func (l *Log) stopCheckpoints() []CheckpointSink {
	c := l.cp
	if c == nil {
		return nil
	}
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	for c.running {
		l.syncCond.Wait()
	}
	if l.failure == nil {
		c.running = true
		l.mu.Unlock()
		// A failure is counted in Stats; Close goes on.
		_ = l.checkpoint(reasonStop)
		l.mu.Lock()
	}
	return c.sinks
}

// checkpoint makes one checkpoint; the caller has set c.running, which
// it clears. Failures are counted and returned.
func (l *Log) checkpoint(reason string) (err error) {
	c := l.cpState()
	defer func() {
		l.mu.Lock()
		c.running = false
		if c.hold {
			c.hold = false
		}
		l.syncCond.Broadcast()
		l.mu.Unlock()
		if err != nil {
			l.statCheckpointErrors.Add(1)
		}
	}()
	var rec Record
	for attempt := 0; ; attempt++ {
		l.mu.Lock()
		c.hold = true
		c.lastTry = l.seq
		head := Checkpoint{Seq: l.seq, Hash: l.prev}
		l.mu.Unlock()

		rec = l.ownRecord(OpCheckpoint, c.keyRef, "")
		rec.Time = rec.Time.UTC()
		ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
		sig, serr := c.s.Sign(ctx, CheckpointMessage(head.Seq, head.Hash, rec.Time, c.keyRef, reason))
		cancel()
		if serr != nil {
			return provider.Errorf(codeOr(serr, provider.EIO), "audit checkpoint: sign: %w", serr)
		}
		if len(sig) != ed25519.SignatureSize {
			return provider.Errorf(provider.EIO, "audit checkpoint: the signer returned %d bytes, not an Ed25519 signature", len(sig))
		}
		rec.Detail = reason + " seq=" + strconv.FormatUint(head.Seq, 10) + " ed25519:" + base64.StdEncoding.EncodeToString(sig)
		rec, err = l.append(context.Background(), rec, true, &head)
		if errors.Is(err, errHeadMoved) && attempt < 3 {
			// The Log's own segment-pruned records came in between.
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if err := l.syncThrough(rec.Seq, false); err != nil {
		return err
	}
	l.statCheckpoints.Add(1)
	l.mu.Lock()
	c.lastCP = rec.Seq
	c.lastTry = max(c.lastTry, rec.Seq) // every N records after this one
	l.mu.Unlock()
	line := append(appendCanonical(nil, &rec), '\n')
	for _, s := range c.sinks {
		if err := s.WriteCheckpoint(line); err != nil {
			l.statSinkErrors.Add(1)
		}
	}
	return nil
}

func (l *Log) cpState() *signerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cp
}

// signedCheckpoint is what a checkpoint record's Detail says.
type signedCheckpoint struct {
	reason string
	seq    uint64
	sig    []byte
}

// parseCheckpointDetail reads "<reason> seq=<N> ed25519:<base64>".
func parseCheckpointDetail(d string) (signedCheckpoint, string) {
	reason, rest, ok := strings.Cut(d, " seq=")
	if !ok || reason == "" || strings.ContainsRune(reason, ' ') {
		return signedCheckpoint{}, "detail is not \"<reason> seq=<N> ed25519:<signature>\""
	}
	num, sig, ok := strings.Cut(rest, " ed25519:")
	n, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil || strconv.FormatUint(n, 10) != num {
		return signedCheckpoint{}, "detail is not \"<reason> seq=<N> ed25519:<signature>\""
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return signedCheckpoint{}, "the signature is not 64 bytes of standard base64"
	}
	return signedCheckpoint{reason: reason, seq: n, sig: raw}, ""
}

// checkSigned checks a checkpoint record against key: its Detail, that
// it covers the record before it (seq, and Prev is that record's hash by
// the chain), and its signature. It returns "" or what is wrong.
func checkSigned(r Record, key ed25519.PublicKey) (signedCheckpoint, string) {
	sc, problem := parseCheckpointDetail(r.Detail)
	if problem != "" {
		return sc, "checkpoint record malformed: " + problem
	}
	if sc.seq+1 != r.Seq {
		return sc, "checkpoint signature invalid: it says it covers seq " + strconv.FormatUint(sc.seq, 10) + ", not the record before it"
	}
	if !ed25519.Verify(key, CheckpointMessage(sc.seq, r.Prev, r.Time, r.Key, sc.reason), sc.sig) {
		return sc, "checkpoint signature invalid"
	}
	return sc, ""
}

// codeOr returns err's code, or def if it carries none.
func codeOr(err error, def provider.Code) provider.Code {
	if c, ok := provider.CodeOf(err); ok {
		return c
	}
	return def
}

// VerifyCheckpoint checks one checkpoint record r, as read from a chain
// that verified (so r.Prev is the hash of the record before it), against
// key: its detail's form, that it covers the record right before it, and
// its Ed25519 signature. The error wraps EBADMSG and says what is wrong.
func VerifyCheckpoint(r Record, key ed25519.PublicKey) error {
	if r.Op != OpCheckpoint {
		return provider.Errorf(provider.EINVAL, "audit record seq %d is not a checkpoint (%s)", r.Seq, r.Op)
	}
	if len(key) != ed25519.PublicKeySize {
		return provider.Errorf(provider.EINVAL, "checkpoint key is %d bytes, not an Ed25519 public key", len(key))
	}
	if _, problem := checkSigned(r, key); problem != "" {
		return provider.Errorf(provider.EBADMSG, "audit record seq %d: %s", r.Seq, problem)
	}
	return nil
}

// reasonCounter is the reason of a checkpoint made for the external
// counter (CheckpointNow).
const reasonCounter = "counter"

// CheckpointNow makes a signed checkpoint of the log's head now, durably,
// waiting for one being made; it returns its error (EUNAVAILABLE without a
// signer). The daemon uses it to sign an external counter's record
// before the counter moves (internal/tamper), so that the log's counter
// value at a later start is one the key vouches for.
func (l *Log) CheckpointNow(ctx context.Context) error {
	l.mu.Lock()
	c := l.cp
	if c == nil {
		l.mu.Unlock()
		return provider.Errorf(provider.EUNAVAILABLE, "audit log %s: no checkpoint signer", l.path)
	}
	for c.running && !c.stopped && ctx.Err() == nil {
		l.syncCond.Wait()
	}
	switch {
	case c.stopped:
		l.mu.Unlock()
		return errClosed(l.path)
	case ctx.Err() != nil:
		l.mu.Unlock()
		return provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint: %w", ctx.Err())
	}
	if err := l.unusable(); err != nil {
		l.mu.Unlock()
		return err
	}
	c.running = true
	l.mu.Unlock()
	return l.checkpoint(reasonCounter)
}
