package pkcs11

import (
	"context"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// session is a logged-in read/write session of the pool, with the
// generation of the pool it was opened in and, while it is borrowed, the
// semaphore its borrower holds.
type session struct {
	h   p11.SessionHandle
	gen uint64
	sem chan struct{}
}

// pool holds up to size logged-in sessions for calls and two more: the
// spare session, for Generate and Destroy, and the slow one, for the
// generation of RSA keys (which takes up to seconds). get borrows a
// session for a call (opening it if none is idle), waiting while size are
// borrowed; getSpare and getSlow borrow the other two, so that a long
// generation holds neither a session signing needs nor the one other
// keys are made and destroyed with; put returns a session; drop closes
// it. reset starts a new generation: idle sessions of older generations
// are closed instead of being lent.
type pool struct {
	ctx  *p11.Ctx
	slot func() uint // the token's current slot
	pin  secret.Bytes

	slots chan struct{} // one token per session calls may hold
	spare chan struct{} // the spare session's token; slots when the token leaves no room
	slow  chan struct{} // the slow session's token; spare when the token leaves no room
	idle  chan session
	gen   atomic.Uint64

	closeFailures atomic.Uint64 // sessions that were gone when closed
}

// newPool returns a pool of size sessions for calls and extra (0, 1 or 2)
// more: with 2, the spare and the slow sessions; with 1 the spare one,
// which slow generations then share; with 0 both share the calls'.
func newPool(ctx *p11.Ctx, slot func() uint, pin secret.Bytes, size, extra int) *pool {
	p := &pool{
		ctx:   ctx,
		slot:  slot,
		pin:   pin,
		slots: make(chan struct{}, size),
		idle:  make(chan session, size+extra),
	}
	p.spare, p.slow = p.slots, p.slots
	if extra >= 1 {
		p.spare = make(chan struct{}, 1)
		p.slow = p.spare
	}
	if extra >= 2 {
		p.slow = make(chan struct{}, 1)
	}
	return p
}

// get returns a session of the current generation for a call, waiting
// for one while every session of the calls is borrowed, until ctx is
// done.
func (p *pool) get(ctx context.Context) (session, error) { return p.acquire(ctx, p.slots) }

// getSpare returns the spare session, for Generate and Destroy, waiting
// for it until ctx is done.
func (p *pool) getSpare(ctx context.Context) (session, error) { return p.acquire(ctx, p.spare) }

// getSlow returns the slow session, for the generation of RSA keys,
// waiting for it until ctx is done.
func (p *pool) getSlow(ctx context.Context) (session, error) { return p.acquire(ctx, p.slow) }

// acquire takes a token of sem and returns an idle session of the current
// generation, or a new one.
func (p *pool) acquire(ctx context.Context, sem chan struct{}) (session, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return session{}, provider.CheckContext(ctx)
	}
	gen := p.gen.Load()
	for {
		var s session
		select {
		case s = <-p.idle:
		default:
			s, err := p.open(gen)
			if err != nil {
				<-sem
				return session{}, err
			}
			s.sem = sem
			return s, nil
		}
		if s.gen == gen {
			s.sem = sem
			return s, nil
		}
		p.close(s) // of an older generation: suspect
	}
}

// open opens a session in the token's slot and logs it in, unless the
// application is logged in already (login state is shared by all the
// sessions of a process).
func (p *pool) open(gen uint64) (session, error) {
	h, err := p.ctx.OpenSession(p.slot(), p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return session{}, call("C_OpenSession", err)
	}
	s := session{h: h, gen: gen}
	if si, err := p.ctx.GetSessionInfo(h); err == nil && si.State == p11.CKS_RW_USER_FUNCTIONS {
		return s, nil
	}
	if err := p.ctx.Login(h, p11.CKU_USER, string(p.pin.Reveal())); err != nil {
		if rv, _ := rvOf(err); rv != p11.CKR_USER_ALREADY_LOGGED_IN {
			p.close(s)
			return session{}, call("C_Login", err)
		}
	}
	return s, nil
}

// put returns a borrowed session to the pool.
func (p *pool) put(s session) {
	sem := s.sem
	s.sem = nil
	select {
	case p.idle <- s:
	default: // cannot happen: at most cap(idle) sessions exist
		p.close(s)
	}
	<-sem
}

// drop closes a borrowed session instead of returning it.
func (p *pool) drop(s session) {
	p.close(s)
	<-s.sem
}

// reset starts a new generation, unless a reset already happened since s
// was opened: the sessions of s's generation are then all suspect.
func (p *pool) reset(s session) {
	p.gen.CompareAndSwap(s.gen, s.gen+1)
}

// close closes a session. A failure (CKR_SESSION_HANDLE_INVALID, a
// removed token) means the session is gone already: it is only counted.
func (p *pool) close(s session) {
	if err := p.ctx.CloseSession(s.h); err != nil {
		p.closeFailures.Add(1)
	}
}

// drain closes every idle session. It is called by Close, once no call is
// in flight.
func (p *pool) drain() {
	for {
		select {
		case s := <-p.idle:
			p.close(s)
		default:
			return
		}
	}
}

// extraSessions is the number of sessions the pool keeps beside those of
// calls: the spare and the slow one.
const extraSessions = 2

// poolSize returns the default pool size for a token: at most 8 and at
// most 2×GOMAXPROCS (SoftHSM2 computes on the caller's thread, so more
// sessions than that only queue inside the library; a network HSM that
// benefits from more sets Config.PoolSize), and when the token states a
// read/write session limit, at most that limit less the extra sessions
// (at least 1).
func poolSize(maxRW uint, procs int) int {
	n := min(2*procs, 8)
	if limited(maxRW) && maxRW < uint(n+extraSessions) {
		n = int(maxRW) - extraSessions
	}
	return max(n, 1)
}

// extraRoom returns how many of the extra sessions a token with
// read/write session limit maxRW leaves room for beside size sessions
// for calls.
func extraRoom(maxRW uint, size int) int {
	if !limited(maxRW) {
		return extraSessions
	}
	if maxRW <= uint(size) {
		return 0
	}
	return int(min(maxRW-uint(size), extraSessions))
}

// limited reports whether a token's session count states a limit.
func limited(max uint) bool {
	return max != p11.CK_EFFECTIVELY_INFINITE && max != p11.CK_UNAVAILABLE_INFORMATION
}
