package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/tap"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// Defaults of the admission limits (Limits).
const (
	// DefaultInFlightBytes and DefaultInFlightBytesPerUID bound the memory
	// reserved by requests being received (see flow.go).
	DefaultInFlightBytes       = 96 << 20
	DefaultInFlightBytesPerUID = 32 << 20
	// DefaultRatePerUID and DefaultBurstPerUID: the token bucket of every
	// uid the identity map admits (above the daemon's measured peak of
	// about 15 k requests/s, so they bind only a flood).
	DefaultRatePerUID  = 20000
	DefaultBurstPerUID = 4000
	// DefaultDeniedRate and DefaultDeniedBurst: the token bucket of a uid
	// the identity map denies; its requests are refused anyway, each with
	// its own audit record while within the rate.
	DefaultDeniedRate  = 20
	DefaultDeniedBurst = 40
	// DefaultRefusalInterval: requests refused for their rate or the
	// budget are audited as one record per uid, operation and result per
	// interval, with their count.
	DefaultRefusalInterval = time.Second
)

// framing is the room a request needs beyond its payload fields (key
// name, version, tags and lengths).
const framing = 1 << 10

// smallRequest is the receive limit of the methods that carry no payload
// (names, versions, options, page tokens).
const smallRequest = 16 << 10

// receiveLimits are the largest request messages the methods accept,
// sized to each method's real bound; a larger one is refused (EMSGSIZE)
// before its body is read.
var receiveLimits = map[string]int64{
	"keys.sign":             provider.MaxSignMessage + framing,
	"keys.verify":           provider.MaxSignMessage + provider.MaxSignature + framing,
	"keys.seal":             provider.MaxSealPlaintext + provider.MaxAAD + framing,
	"keys.unseal":           provider.MaxSealed + provider.MaxAAD + framing,
	"keys.rewrap":           provider.MaxSealed + provider.MaxAAD + framing,
	"keys.sign-batch":       MaxBatchBytes + framing,
	"keys.seal-batch":       MaxBatchBytes + framing,
	"keys.unseal-batch":     MaxBatchBytes + framing,
	"keys.mac":              provider.MaxMACMessage + framing,
	"keys.verify-mac":       provider.MaxMACMessage + provider.MaxMAC + framing,
	"keys.mac-batch":        MaxBatchBytes + framing,
	"keys.verify-mac-batch": MaxBatchBytes + framing,

	// v1.4: a data key's AAD; an HPKE message; wrapped import material.
	"keys.generate-data-key":                   provider.MaxAAD + framing,
	"keys.generate-data-key-without-plaintext": provider.MaxAAD + framing,
	"keys.decrypt":                             provider.MaxHPKEEnc + provider.MaxHPKECiphertext + provider.MaxHPKEInfo + provider.MaxAAD + framing,
	"keys.import":                              provider.MaxHPKEEnc + provider.MaxImportWrapped + framing,

	"store.put":      MaxValueSize + framing,
	"anchors.verify": provider.MaxSignMessage + provider.MaxSignature + framing,
	// Probes (probe.go): a service name, a symbol or file name.
	"health.check":    probeRequest,
	"health.watch":    probeRequest,
	"health.list":     probeRequest,
	"reflection.info": probeRequest,
	// The Admin methods' requests are empty.
	"admin.kek-status": framing,
	"admin.kek-rotate": framing,
	// A page token (a key ID) and a limit; an app ID.
	"keys.sweep":     smallRequest,
	"keys.get-usage": smallRequest,
}

// ReceiveLimit returns the largest request message (bytes, gRPC framing
// excluded) that the operation op accepts.
func ReceiveLimit(op string) int64 {
	if n, ok := receiveLimits[op]; ok {
		return n
	}
	return smallRequest
}

// Refusal reasons, the label of keystored_requests_refused_total.
const (
	refusedRate   = "rate"
	refusedBudget = "budget"
	refusedSize   = "size"
	refusedDenied = "denied"
	// refusedOverrun counts connections closed because a stream sent
	// more than it reserved.
	refusedOverrun = "overrun"
)

// admission holds the per-uid rate limiters and the refused requests not
// yet audited.
type admission struct {
	s *Server

	mu       sync.Mutex
	limiters map[uint32]*rate.Limiter
	pending  map[refusalKey]*refusals
	closed   bool
}

type refusalKey struct {
	uid  uint32
	op   string
	code provider.Code
}

// refusals are the refused requests of one key in the current interval.
type refusals struct {
	caller Caller
	count  int
	why    string
	timer  *time.Timer
}

// maxLimiters bounds the rate limiter table; past it, limiters of idle
// uids (whose bucket is full again) are dropped.
const maxLimiters = 4096

// allow takes a token from the caller's bucket.
func (a *admission) allow(c Caller) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.limiters[c.UID]
	if l == nil {
		if len(a.limiters) >= maxLimiters {
			now := time.Now()
			for uid, l := range a.limiters {
				if l.TokensAt(now) >= float64(l.Burst()) {
					delete(a.limiters, uid)
				}
			}
		}
		lim := a.s.limits
		if c.Denied {
			l = rate.NewLimiter(rate.Limit(lim.DeniedRate), lim.DeniedBurst)
		} else {
			l = rate.NewLimiter(rate.Limit(lim.RatePerUID), lim.BurstPerUID)
		}
		a.limiters[c.UID] = l
	}
	return l.Allow()
}

// coalesce counts a refused request; the first of its key in an interval
// starts the interval, at whose end one record with the count is written.
func (a *admission) coalesce(c *call, code provider.Code, why string) {
	k := refusalKey{uid: c.caller.UID, op: c.op, code: code}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.pending[k]; r != nil {
		r.count++
		return
	}
	r := &refusals{caller: c.caller, count: 1, why: why}
	a.pending[k] = r
	if !a.closed {
		r.timer = time.AfterFunc(a.s.limits.RefusalInterval, func() { a.flush(k) })
	}
}

// flush writes the record of one key's refusals.
func (a *admission) flush(k refusalKey) {
	a.mu.Lock()
	r := a.pending[k]
	delete(a.pending, k)
	a.mu.Unlock()
	if r != nil {
		a.write(k, r)
	}
}

func (a *admission) write(k refusalKey, r *refusals) {
	detail := fmt.Sprintf("%d requests refused: %s", r.count, r.why)
	if len(detail) > audit.MaxField {
		detail = detail[:audit.MaxField]
	}
	rec := audit.Record{Time: a.s.clock.Now(), Caller: auditCaller(r.caller), Op: k.op,
		Result: resultName(k.code), Items: r.count, Failed: r.count, Detail: detail}
	if _, err := a.s.appendRecord(context.Background(), rec); err != nil {
		a.s.log.Error("refused requests not audited", "uid", k.uid, "op", k.op, "count", r.count, "err", err)
	}
}

// close writes every pending record now; later refusals are written at
// once (each interval then holds one refusal).
func (a *admission) close() {
	a.mu.Lock()
	a.closed = true
	pending := a.pending
	a.pending = map[refusalKey]*refusals{}
	a.mu.Unlock()
	for k, r := range pending {
		if r.timer != nil {
			r.timer.Stop()
		}
		a.write(k, r)
	}
}

// FlushRefusals writes the audit records of refused requests still being
// counted (the daemon calls it when it stops, before closing the log).
func (s *Server) FlushRefusals() { s.adm.close() }

// deniedMayCall reports whether a caller the identity map denies may call
// op: the unary health probes only. Watch and reflection are streams a
// denied uid could hold open (memory in flight) or use to make the daemon
// encode descriptors; they need an app.
func deniedMayCall(op string) bool { return op == "health.check" || op == "health.list" }

// admit is the transport's tap (grpc.InTapHandle): it runs when a new
// stream's headers have been read, before any of its body, on the
// connection's reader goroutine. It starts the request's call state and
// refuses, with a status and an audit record, a request over its uid's
// rate, of a denied caller, over its method's receive limit, or whose
// memory does not fit in the budget of bytes in flight; an admitted
// request reserves its memory (flow.go).
func (s *Server) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	c := s.newCall(OpName(info.FullMethodName), s.caller(ctx))
	if !s.adm.allow(c.caller) {
		lim := s.limits.RatePerUID
		if c.caller.Denied {
			lim = s.limits.DeniedRate
		}
		return nil, s.refuse(ctx, c, refusedRate, true, provider.Errorf(provider.EUNAVAILABLE,
			"uid %d is over its rate limit of %g requests/s; retry later", uint64(c.caller.UID), lim))
	}
	if c.caller.Denied && !deniedMayCall(c.op) {
		return nil, s.refuse(ctx, c, refusedDenied, false, provider.Errorf(provider.EPERM,
			"uid %d is not mapped to an app", uint64(c.caller.UID)))
	}
	if err := ctx.Err(); err != nil {
		// A deadline already passed (grpc-timeout 0): gRPC would refuse
		// it after the tap, without a handler to audit it.
		return nil, s.refuse(ctx, c, "", false, provider.Errorf(provider.EUNAVAILABLE, "request deadline passed before it was read: %w", err))
	}
	if !validMethodName(info.FullMethodName) {
		// gRPC would refuse it without ending the call: no record.
		return nil, s.refuse(ctx, c, "", false, provider.Errorf(provider.ENOTSUP, "unknown method"))
	}
	if mc := connOf(ctx); mc != nil {
		id, declared := mc.admitStream()
		limit := ReceiveLimit(c.op)
		if declared > limit {
			return nil, s.refuse(ctx, c, refusedSize, false, provider.Errorf(provider.EMSGSIZE,
				"request of %d bytes is over the %d-byte limit of %s", declared, limit, c.op))
		}
		checked := declared >= 0
		if !checked {
			declared = limit
		}
		need := reserveFor(declared)
		if !s.inflight.reserveWithin(c.caller.UID, need, releaseWait) {
			return nil, s.refuse(ctx, c, refusedBudget, true, provider.Errorf(provider.EUNAVAILABLE,
				"uid %d has its limit of requests in flight; retry later", uint64(c.caller.UID)))
		}
		if !mc.register(id, need, limit, checked, c) {
			s.inflight.release(c.caller.UID, need)
		}
	}
	return withCall(ctx, c), nil
}

// refuse ends a request the tap refuses: audited at once, or counted into
// the interval's record when coalesced. It returns the status to answer.
func (s *Server) refuse(ctx context.Context, c *call, reason string, coalesced bool, err error) error {
	code := codeOf(err)
	if reason != "" {
		s.metrics.refusedRequests.WithLabelValues(reason).Inc()
	}
	if coalesced && !c.probe {
		c.done = true
		s.adm.coalesce(c, code, reason)
		s.metrics.observe(c.op, resultName(code), time.Since(c.start))
	} else if !c.finish(ctx, code) {
		err = provider.Errorf(provider.EIO, "audit log unavailable; request refused")
	}
	return rpcerr.ToStatus(err)
}

// validMethodName reports whether gRPC can route a method name
// ("/service/method"); it answers any other without ending the call.
func validMethodName(m string) bool {
	rest, ok := strings.CutPrefix(m, "/")
	return ok && strings.Contains(rest, "/")
}

// connOf returns the metered connection of a request, or nil for a
// connection Listener did not accept.
func connOf(ctx context.Context) *meteredConn {
	if p, ok := peerInfo(ctx); ok {
		return p.conn
	}
	return nil
}
