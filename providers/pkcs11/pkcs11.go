package pkcs11

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/importkey"
)

// DefaultName is the provider name when Config.Name is empty.
const DefaultName = "pkcs11"

// Version is the provider's version, as Info reports it.
const Version = "1"

// Bounds of the configuration.
const (
	// MaxPIN is the longest PIN accepted, in bytes.
	MaxPIN = 256
	// MaxPoolSize is the largest session pool.
	MaxPoolSize = 64
	// maxLabel is the length of a PKCS#11 token label field.
	maxLabel = 32
)

// Config configures New.
type Config struct {
	// Module is the absolute path of the token's PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel selects the token (CKA_LABEL of the token, at most 32
	// bytes). Exactly one initialized token must carry it.
	TokenLabel string
	// PIN is the token's user PIN. New keeps a copy (for logging in
	// again after a token reset) and Close wipes it; the caller keeps
	// ownership of this value.
	PIN secret.Bytes
	// PoolSize is the number of sessions kept open and logged in for
	// calls, which is also the number of calls that run in parallel.
	// Generate and Destroy use one more session of their own, and the
	// generation of RSA keys another, when the token's read/write session
	// limit leaves room for them, so a slow key generation (RSA-4096)
	// holds no session signing or other key generations need. 0 means the
	// default: min(the token's limit less those two, 2×GOMAXPROCS, 8).
	PoolSize int
	// Name is the provider name ([a-z0-9][a-z0-9._-]*), part of every
	// KeyRef; "" means DefaultName.
	Name string
	// SharedToken says that other applications create and destroy objects
	// on the same token. PKCS#11 lets a library give the handle of a
	// destroyed object to a new one, so the provider then confirms, before
	// every use, that a cached object handle still names the key's object
	// (one C_GetAttributeValue per call, about a third of a SoftHSM2
	// signature). By default the token is taken to be dedicated to
	// keystored: a cached handle is used as is, and dropped and found
	// again when the token calls it invalid.
	SharedToken bool
	// Algorithms, if not empty, limits what the provider offers to these
	// of the algorithms the token supports (a site's policy, say no
	// RSA PKCS#1 v1.5). New refuses a name the registry does not know or
	// given twice (EINVAL) and one the token does not support (ENOTSUP).
	Algorithms []provider.Algorithm
}

// Provider is a PKCS#11 provider: a provider.Provider that holds
// sessions with the token until Close.
type Provider interface {
	provider.Provider
	// Close ends every session, forgets the PIN and releases the PKCS#11
	// library (finalized once the last provider of the process using it
	// closes). It waits for calls in flight; later calls fail with
	// EUNAVAILABLE. Closing twice is harmless.
	Close() error
}

// tokenProvider is the implementation of Provider.
type tokenProvider struct {
	mod    *module
	label  string
	serial string
	slot   atomic.Uint64
	pool   *pool
	info   provider.Info
	reg    *alg.Registry
	objs   objCache

	// imports holds the one-time import wrapping keys (NewImportKey), in
	// this process's memory; nil once closed. caps is what the token can
	// import, as probeImport found at start.
	imports *importkey.Table
	caps    importCaps

	// mutating admits one Generate or Destroy at a time (see lockObjects).
	mutating chan struct{}

	// shared: confirm cached object handles before every use
	// (Config.SharedToken).
	shared bool

	// noModifiable is set once the token refused CKA_MODIFIABLE=false in
	// a key template; keys are then made without it.
	noModifiable atomic.Bool
	// noStaging is set once the token refused to copy a staged key pair
	// to the token (commit); RSA keys are then made on the token, in
	// turn.
	noStaging atomic.Bool
	// noUnwrapModifiable is set when the token refuses
	// CKA_MODIFIABLE=false in an unwrap template (probeImport, or an
	// import that found it out): keys unwrapped on the token directly
	// are then modifiable.
	noUnwrapModifiable atomic.Bool

	// testHooks are called around C_GenerateKeyPair; set only by tests.
	testHooks struct {
		beforeKeygen, afterKeygen func(provider.KeyRef)
	}

	life   sync.RWMutex // calls hold it shared, Close exclusively
	closed bool
}

// New opens a session with the token cfg names, logs in, and returns a
// provider of the algorithms the token supports. Every field of cfg is
// checked first: a missing module file, a module that is not a PKCS#11
// library and a token label no initialized token carries (the error lists
// the labels present) are EINVAL; a wrong or locked PIN is EPERM.
//
// PKCS#11 login state is per process: when another provider of this
// process is already logged in to the same token, the token does not check
// this provider's PIN again.
func New(cfg Config) (Provider, error) {
	name := cfg.Name
	if name == "" {
		name = DefaultName
	}
	if err := provider.CheckSegment("provider name", name); err != nil {
		return nil, err
	}
	if err := checkModule(cfg.Module); err != nil {
		return nil, err
	}
	switch {
	case cfg.TokenLabel == "":
		return nil, provider.Errorf(provider.EINVAL, "a token label is required")
	case len(cfg.TokenLabel) > maxLabel:
		return nil, provider.Errorf(provider.EINVAL, "token label is longer than %d bytes", maxLabel)
	case cfg.PIN.IsZero():
		return nil, provider.Errorf(provider.EINVAL, "a PIN is required")
	case cfg.PIN.Len() > MaxPIN:
		return nil, provider.Errorf(provider.EINVAL, "PIN is longer than %d bytes", MaxPIN)
	case cfg.PoolSize < 0 || cfg.PoolSize > MaxPoolSize:
		return nil, provider.Errorf(provider.EINVAL, "pool size must be 0 (default) to %d", MaxPoolSize)
	}
	mod, err := openModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	p, err := newTokenProvider(mod, cfg, name)
	if err != nil {
		if rerr := mod.release(); rerr != nil {
			return nil, fmt.Errorf("%w (and releasing the module: %v)", err, rerr)
		}
		return nil, err
	}
	return p, nil
}

// newTokenProvider finishes New once the module is loaded.
func newTokenProvider(mod *module, cfg Config, name string) (*tokenProvider, error) {
	tok, err := findToken(mod.ctx, cfg.TokenLabel, "")
	if err != nil {
		return nil, err
	}
	quoted := strconv.Quote(tok.label)
	switch {
	case tok.info.Flags&p11.CKF_USER_PIN_LOCKED != 0:
		return nil, provider.Errorf(provider.EPERM, "the user PIN of token %s is locked", quoted)
	case tok.info.Flags&p11.CKF_USER_PIN_INITIALIZED == 0:
		return nil, provider.Errorf(provider.EPERM, "token %s has no user PIN; initialize it first", quoted)
	}
	infos, err := mechanisms(mod.ctx, tok.slot)
	if err != nil {
		return nil, err
	}
	maxRW := tok.info.MaxRwSessionCount
	size := cfg.PoolSize
	if size == 0 {
		size = poolSize(maxRW, runtime.GOMAXPROCS(0))
	} else if limited(maxRW) && uint(size) > maxRW {
		return nil, provider.Errorf(provider.EINVAL, "pool size %d is over token %s's limit of %d read/write sessions", size, quoted, uint64(maxRW))
	}
	reg := alg.Default()
	p := &tokenProvider{
		mod:    mod,
		shared: cfg.SharedToken,
		label:  tok.label,
		serial: tok.serial,
		reg:    reg,
		info: provider.Info{
			Name:          name,
			Version:       Version,
			Secure:        true,
			Deterministic: false,
		},
	}
	p.mutating = make(chan struct{}, 1)
	p.slot.Store(uint64(tok.slot))
	p.pool = newPool(mod.ctx, p.currentSlot, secret.New(cfg.PIN.Reveal()), size, extraRoom(maxRW, size))
	// Log in now, so a wrong PIN fails here and not at the first call.
	s, err := p.pool.get(context.Background())
	if err != nil {
		p.pool.pin.Wipe()
		if rv, ok := rvOf(err); ok && (rv == p11.CKR_PIN_INCORRECT || rv == p11.CKR_PIN_LEN_RANGE) {
			return nil, provider.Errorf(provider.EPERM, "wrong PIN for token %s: %w", quoted, err)
		}
		return nil, mapErr("logging in to token "+quoted, err)
	}
	names := reg.Names()
	ph := false
	if slices.Contains(algorithmsFrom(infos, names, false), provider.Ed25519) {
		ph, err = probeEd25519ph(mod.ctx, s.h, reg)
		if err != nil {
			p.pool.drop(s)
			p.pool.drain()
			p.pool.pin.Wipe()
			return nil, mapErr("probing token "+quoted+" for Ed25519ph", err)
		}
	}
	p.info.Algorithms = algorithmsFrom(infos, names, ph)
	if len(cfg.Algorithms) > 0 {
		if p.info.Algorithms, err = p.limitTo(cfg.Algorithms); err != nil {
			p.pool.put(s)
			p.pool.drain()
			p.pool.pin.Wipe()
			return nil, err
		}
	}
	if p.caps, err = probeImport(mod.ctx, s.h, infos, p.info.Algorithms); err != nil {
		p.pool.drop(s)
		p.pool.drain()
		p.pool.pin.Wipe()
		return nil, mapErr("probing token "+quoted+" for key import", err)
	}
	p.noUnwrapModifiable.Store(p.caps.noUnwrapModifiable)
	// Closed, not kept: a refused unwrap template may have left a stray
	// session object in it (probeUnwrap). The pool opens sessions again
	// as calls need them.
	p.pool.drop(s)
	p.imports = importkey.New(reg, randomFill)
	return p, nil
}

// limitTo returns the algorithms of want (Config.Algorithms) in the
// registry's order, once each checked to be known and offered.
func (p *tokenProvider) limitTo(want []provider.Algorithm) ([]provider.Algorithm, error) {
	for i, a := range want {
		if _, err := p.reg.Lookup(a); err != nil {
			return nil, provider.Errorf(provider.EINVAL, "configured algorithms: %w", err)
		}
		if slices.Contains(want[:i], a) {
			return nil, provider.Errorf(provider.EINVAL, "configured algorithms: %q given twice", string(a))
		}
		if !p.info.Supports(a) {
			return nil, p.unsupported(a)
		}
	}
	return slices.DeleteFunc(slices.Clone(p.info.Algorithms), func(a provider.Algorithm) bool { return !slices.Contains(want, a) }), nil
}

// checkModule checks that path is an absolute path naming a regular file
// (through symlinks).
func checkModule(path string) error {
	switch {
	case path == "":
		return provider.Errorf(provider.EINVAL, "the path of the PKCS#11 module is required")
	case !filepath.IsAbs(path):
		return provider.Errorf(provider.EINVAL, "PKCS#11 module path %q is not absolute", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return provider.Errorf(provider.EINVAL, "PKCS#11 module %q cannot be used: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return provider.Errorf(provider.EINVAL, "PKCS#11 module %q is not a regular file", path)
	}
	return nil
}

// currentSlot returns the token's slot as last found.
func (p *tokenProvider) currentSlot() uint { return uint(p.slot.Load()) }

// Info describes the provider; it never changes.
func (p *tokenProvider) Info(context.Context) (provider.Info, error) {
	info := p.info
	info.Algorithms = append([]provider.Algorithm(nil), p.info.Algorithms...)
	return info, nil
}

// String describes the provider without any secret.
func (p *tokenProvider) String() string {
	return "pkcs11(" + p.info.Name + ", token " + strconv.Quote(p.label) + ")"
}

// Format prints String under every verb, so %+v and %#v show no field.
func (p *tokenProvider) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// Close implements Provider.
func (p *tokenProvider) Close() error {
	p.life.Lock()
	defer p.life.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.imports = nil // the wrapping keys die with the provider
	p.pool.drain()
	p.pool.pin.Wipe()
	return p.mod.release()
}

// enter admits a call unless the provider is closed; the caller must call
// the returned function when done.
func (p *tokenProvider) enter() (func(), error) {
	p.life.RLock()
	if p.closed {
		p.life.RUnlock()
		return nil, provider.Errorf(provider.EUNAVAILABLE, "provider %s is closed", p.info.Name)
	}
	return p.life.RUnlock, nil
}

// lockObjects waits, until ctx is done, to be the one call of this
// provider that creates or destroys token objects, and returns the unlock
// function. Key generation and destruction are rare, and SoftHSM2 (through
// at least 2.6.1) fails now and then with CKR_GENERAL_ERROR when threads
// create and destroy token objects at once (SoftHSMv2 issues #485, #573:
// its object files). It is taken by a caller that holds a session, which
// asks for no other session while it holds it, so the two never wait for
// each other in a cycle.
func (p *tokenProvider) lockObjects(ctx context.Context) (func(), error) {
	select {
	case p.mutating <- struct{}{}:
		return func() { <-p.mutating }, nil
	case <-ctx.Done():
		return nil, provider.CheckContext(ctx)
	}
}

// run calls fn with a pooled session. When the token reports that the
// session or the login is gone (isReset), it discards the session (and
// every session of its generation, and the object cache), recovers
// (reinitializing the library, finding the token's slot again) and runs
// fn once more with a new, logged-in session. fn must be safe to repeat.
func (p *tokenProvider) run(ctx context.Context, fn func(sh p11.SessionHandle) error) error {
	return p.runWith(ctx, p.pool.get, fn)
}

// runSpare is run with the pool's spare session, for Generate and
// Destroy.
func (p *tokenProvider) runSpare(ctx context.Context, fn func(sh p11.SessionHandle) error) error {
	return p.runWith(ctx, p.pool.getSpare, fn)
}

// runSlow is run with the pool's slow session, for the generation of RSA
// keys.
func (p *tokenProvider) runSlow(ctx context.Context, fn func(sh p11.SessionHandle) error) error {
	return p.runWith(ctx, p.pool.getSlow, fn)
}

// runWith is run taking sessions from get.
func (p *tokenProvider) runWith(ctx context.Context, get func(context.Context) (session, error), fn func(sh p11.SessionHandle) error) error {
	for attempt := 0; ; attempt++ {
		if err := provider.CheckContext(ctx); err != nil {
			return err
		}
		s, err := get(ctx)
		got := err == nil
		if got {
			err = fn(s.h)
		}
		rv, isCKR := rvOf(err)
		if !isCKR || !isReset(rv) {
			if got {
				p.pool.put(s)
			}
			return err
		}
		if got {
			p.pool.drop(s)
		} else {
			s.gen = p.pool.gen.Load()
		}
		if rv != p11.CKR_OPERATION_ACTIVE {
			p.pool.reset(s)
			p.objs.clear()
		}
		if attempt > 0 {
			return err
		}
		if rerr := p.recover(rv); rerr != nil {
			return rerr
		}
	}
}

// recover prepares a retry after rv: it reinitializes the library when it
// was finalized and finds the token's slot again when the token may have
// moved.
func (p *tokenProvider) recover(rv uint) error {
	if rv == p11.CKR_CRYPTOKI_NOT_INITIALIZED {
		if err := p.mod.reinit(); err != nil {
			return mapErr("token "+strconv.Quote(p.label)+": reinitializing the PKCS#11 module", err)
		}
	}
	if needsSlot(rv) {
		tok, err := findToken(p.mod.ctx, p.label, p.serial)
		if err != nil {
			return err
		}
		p.slot.Store(uint64(tok.slot))
	}
	return nil
}
