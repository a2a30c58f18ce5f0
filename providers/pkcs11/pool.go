package pkcs11

import (
	"context"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// session is a logged-in read/write session of the pool, with the
// generation of the pool it was opened in.
type session struct {
	h   p11.SessionHandle
	gen uint64
}

// pool holds up to size logged-in sessions. get borrows one (opening it
// if none is idle), waiting while size are borrowed; put returns it; drop
// closes it. reset starts a new generation: idle sessions of older
// generations are closed instead of being lent.
type pool struct {
	ctx  *p11.Ctx
	slot func() uint // the token's current slot
	pin  secret.Bytes

	slots chan struct{} // one token per session that may exist
	idle  chan session
	gen   atomic.Uint64

	closeFailures atomic.Uint64 // sessions that were gone when closed
}

func newPool(ctx *p11.Ctx, slot func() uint, pin secret.Bytes, size int) *pool {
	return &pool{
		ctx:   ctx,
		slot:  slot,
		pin:   pin,
		slots: make(chan struct{}, size),
		idle:  make(chan session, size),
	}
}

// get returns a session of the current generation, waiting for one while
// every session is borrowed, until ctx is done.
func (p *pool) get(ctx context.Context) (session, error) {
	select {
	case p.slots <- struct{}{}:
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
				<-p.slots
				return session{}, err
			}
			return s, nil
		}
		if s.gen == gen {
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
	select {
	case p.idle <- s:
	default: // cannot happen: at most cap(idle) sessions exist
		p.close(s)
	}
	<-p.slots
}

// drop closes a borrowed session instead of returning it.
func (p *pool) drop(s session) {
	p.close(s)
	<-p.slots
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

// poolSize returns the default pool size for a token: at most 8 and at
// most 2×GOMAXPROCS (SoftHSM2 computes on the caller's thread, so more
// sessions than that only queue inside the library; a network HSM that
// benefits from more sets Config.PoolSize), and never more than the
// token's own read/write session limit when it states one.
func poolSize(maxRW uint, procs int) int {
	n := min(2*procs, 8)
	if maxRW != p11.CK_EFFECTIVELY_INFINITE && maxRW != p11.CK_UNAVAILABLE_INFORMATION && maxRW < uint(n) {
		n = int(maxRW)
	}
	return max(n, 1)
}
