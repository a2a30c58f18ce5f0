package server

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/fairsched"
)

// Config configures New. Storage, Provider, Clock and Audit are required.
type Config struct {
	// Storage holds the keystore ("keystore/...") and the Store service's
	// values ("store/<app>/<name>"): one storage.Dir in the daemon.
	Storage core.Storage
	// Provider performs the cryptography.
	Provider provider.Provider
	// Clock gives the time of audit records and key metadata.
	Clock core.Clock
	// Audit receives exactly one record per request.
	Audit AuditLog
	// Identity maps kernel uids to apps and operators. The zero Identity
	// means DefaultIdentity().
	Identity Identity
	// Anchors are the trust anchors of the TrustAnchors service; nil means
	// none.
	Anchors *Anchors
	// Logger receives the server's structured logs; nil discards them.
	// Payloads are never logged.
	Logger *slog.Logger
	// Limits bound connections, streams and messages.
	Limits Limits
	// CheckSignatures makes the core verify every signature a provider
	// returns before releasing it (for out-of-process providers).
	CheckSignatures bool
	// Quotas bound each app's keys, versions per key and Store values
	// and bytes (zero: core.DefaultQuota for every app).
	Quotas core.Quotas
	// Scheduler shares the provider's workers fairly among apps.
	Scheduler Scheduler
	// Generations is what the audit log says each key's generation is
	// (internal/tamper's index): the core refuses a key record older or
	// newer than it (docs/security.md, "Rollback detection"). nil: no
	// check.
	Generations core.Generations
	// Advance, when set, is called after a lifecycle change was made and
	// its keys.applied record written, before the reply: the daemon
	// advances its external monotonic counter there. An error fails the
	// call with EIO (the change stays, as when the applied record fails).
	Advance func(ctx context.Context) error
	// CacheSize bounds the keys core keeps in memory (core.Config's
	// CacheSize; 0: core.DefaultCacheSize).
	CacheSize int
}

// Scheduler configures the fair scheduling of provider work
// (docs/architecture.md, "Fair scheduling"): every Generate, Sign,
// SignDigest, MAC, Seal and Open the core asks of the provider, each batch
// item on its own, waits in its app's queue for one of Workers slots,
// weighted by its algorithm's cost. Zero fields take the defaults.
type Scheduler struct {
	// Workers is the number of provider calls that run at once (default
	// runtime.GOMAXPROCS(0): the cores the daemon may use).
	Workers int
	// MaxQueuedPerApp bounds the provider calls one app may have waiting
	// for a worker (default fairsched.DefaultMaxQueued, 1024); a call over
	// it fails at once with EUNAVAILABLE.
	MaxQueuedPerApp int
	// Nice is how much (1 to 19) the threads that run expensive provider
	// calls (fairsched.HeavyCost and more: Ed448, ML-DSA, large seals)
	// raise their nice value over the daemon's; 0 means
	// fairsched.DefaultNice (2), -1 runs them at the daemon's priority.
	Nice int
}

// Limits bound what one client can hold. Zero fields take the defaults.
type Limits struct {
	// MaxConnections and MaxConnectionsPerUID bound open connections.
	MaxConnections       int
	MaxConnectionsPerUID int
	// MaxConcurrentStreams bounds the calls in flight on one connection
	// (default DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
	// IdleTimeout closes a connection without calls for that long
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the time a new connection has to send its
	// HTTP/2 preface (default DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// InFlightBytes and InFlightBytesPerUID bound the memory that requests
	// being received may reserve, in all and per uid (defaults
	// DefaultInFlightBytes, DefaultInFlightBytesPerUID; see flow.go).
	InFlightBytes, InFlightBytesPerUID int64
	// RatePerUID and BurstPerUID are the token bucket (requests per
	// second, bucket size) of each admitted uid; DeniedRate and
	// DeniedBurst those of each uid the identity map denies.
	RatePerUID  float64
	BurstPerUID int
	DeniedRate  float64
	DeniedBurst int
	// RefusalInterval is the period over which requests refused for their
	// rate or the budget are audited as one record with a count (default
	// DefaultRefusalInterval).
	RefusalInterval time.Duration
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.InFlightBytes <= 0 {
		l.InFlightBytes = DefaultInFlightBytes
	}
	if l.InFlightBytesPerUID <= 0 {
		l.InFlightBytesPerUID = DefaultInFlightBytesPerUID
	}
	if l.RatePerUID <= 0 {
		l.RatePerUID = DefaultRatePerUID
	}
	if l.BurstPerUID <= 0 {
		l.BurstPerUID = DefaultBurstPerUID
	}
	if l.DeniedRate <= 0 {
		l.DeniedRate = DefaultDeniedRate
	}
	if l.DeniedBurst <= 0 {
		l.DeniedBurst = DefaultDeniedBurst
	}
	if l.RefusalInterval <= 0 {
		l.RefusalInterval = DefaultRefusalInterval
	}
	return l
}

// Defaults of Limits and the message bounds.
const (
	DefaultMaxConcurrentStreams = 64
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultHandshakeTimeout     = 5 * time.Second

	// MaxBatchItems is the most items in one batch request.
	MaxBatchItems = 1024
	// MaxBatchBytes bounds the encoded size of one batch request.
	MaxBatchBytes = 8 << 20
	// MaxRequestBytes is the largest request message the transport reads:
	// the batch bound plus a margin, so that a batch over MaxBatchBytes is
	// refused by the handler (EMSGSIZE, audited) rather than the transport.
	MaxRequestBytes = MaxBatchBytes + 1<<20
	// MaxResponseBytes bounds one response (a batch of 1024 sealed items
	// of 1 MiB is refused before it is built: see MaxBatchBytes).
	MaxResponseBytes = 2 * MaxBatchBytes
)

// InsecureHeader is the response header metadata key set to "true" on every
// response when the daemon runs on the INSECURE test provider.
const InsecureHeader = "keystored-insecure"

// Server serves keystore.v1 (Keys, Store, TrustAnchors, Admin) over one
// core.Keystore. It is safe for concurrent use.
type Server struct {
	ks       *core.Keystore
	reg      *alg.Registry // the keystore's algorithms (HPKE suite IDs of PublicKey)
	st       core.Storage
	clock    core.Clock
	audit    AuditLog
	advance  func(context.Context) error // Config.Advance
	live     atomic.Pointer[liveConfig]  // identity map and anchors; Reload swaps them
	log      *slog.Logger
	limits   Limits
	creds    *peerCreds
	metrics  *metrics
	store    *valueStore
	inflight *budget
	adm      *admission
	health   *health.Server
	stopping context.Context // cancelled by Shutdown (probe.go)
	stop     context.CancelFunc
	sched    *fairsched.Scheduler
	insecure bool
}

// New opens the keystore over cfg's storage and provider, with an audit
// sink that folds the core's events into the request's one audit record.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Storage == nil || cfg.Provider == nil || cfg.Clock == nil || cfg.Audit == nil {
		return nil, provider.Errorf(provider.EINVAL, "server.New needs Storage, Provider, Clock and Audit")
	}
	if protoCodec == nil {
		return nil, provider.Errorf(provider.EIO, "gRPC's proto codec is not registered")
	}
	s := &Server{st: cfg.Storage, clock: cfg.Clock, audit: cfg.Audit, advance: cfg.Advance,
		log: cfg.Logger, limits: cfg.Limits, health: newHealth()}
	s.live.Store(newLiveConfig(cfg.Identity, cfg.Anchors))
	s.stopping, s.stop = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.limits = s.limits.withDefaults()
	s.inflight = newBudget(s.limits.InFlightBytes, s.limits.InFlightBytesPerUID)
	s.adm = &admission{s: s, limiters: map[uint32]*rate.Limiter{}, pending: map[refusalKey]*refusals{}}
	sched, err := fairsched.New(fairsched.Config{Workers: cfg.Scheduler.Workers, MaxQueued: cfg.Scheduler.MaxQueuedPerApp, Nice: cfg.Scheduler.Nice})
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "[scheduler] (set nice = 0 to run provider work at the daemon's own priority): %w", err)
	}
	s.sched = sched
	s.reg = alg.Default()
	ks, err := core.Open(ctx, core.Config{
		Storage:         cfg.Storage,
		Provider:        sched.Wrap(cfg.Provider, s.reg, tenantOf),
		Algorithms:      s.reg,
		Clock:           cfg.Clock,
		Audit:           &coreSink{s: s},
		Generations:     cfg.Generations,
		CheckSignatures: cfg.CheckSignatures,
		Quotas:          cfg.Quotas,
		CacheSize:       cfg.CacheSize,
	})
	if err != nil {
		return nil, err
	}
	s.ks = ks
	s.insecure = ks.Insecure()
	s.creds = newPeerCreds(ConnLimits{Total: s.limits.MaxConnections, PerUID: s.limits.MaxConnectionsPerUID})
	if s.metrics, err = newMetrics(s.creds.open, s.inflight.inUse); err != nil {
		return nil, provider.Errorf(provider.EIO, "registering metrics: %w", err)
	}
	if err := s.metrics.reg.Register(&censusCollector{s: s}); err != nil {
		return nil, provider.Errorf(provider.EIO, "registering metrics: %w", err)
	}
	s.store = &valueStore{st: cfg.Storage, quota: ks.Quota}
	return s, nil
}

// Usage returns what app holds against its quota: its keys (from the
// core) and its Store values and bytes. The caller must be the app or an
// operator (EPERM).
func (s *Server) Usage(ctx context.Context, c core.Caller, app string) (core.Usage, error) {
	u, err := s.ks.Usage(ctx, c, app)
	if err != nil {
		return core.Usage{}, err
	}
	su, err := s.store.usageOf(app)
	if err != nil {
		return core.Usage{}, err
	}
	u.StoreValues, u.StoreBytes = su.values, su.bytes
	return u, nil
}

// Keystore returns the core keystore the server serves.
func (s *Server) Keystore() *core.Keystore { return s.ks }

// Insecure reports whether the provider is the INSECURE test provider.
func (s *Server) Insecure() bool { return s.insecure }

// Registry returns the server's own Prometheus registry (never the global
// default one): requests, durations, connections, refusals, memory in
// flight, probes (metrics.go) and the census of keys and quota use
// (census.go). The daemon adds its own collectors to it.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// StreamWorkers is the number of long-lived goroutines that serve
// requests; more concurrent requests than this get goroutines of their own.
const StreamWorkers = 64

// ServerOptions returns the grpc.ServerOptions the services need: peer
// credentials, the tap that starts every call (and admits or refuses
// it), the request codec, message and stream bounds and keepalive enforcement.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(s.creds),
		grpc.InTapHandle(s.admit),
		// Frame by frame (the tap learns a new stream's ID from the last
		// frame read: flow.go), static windows that bound what a stream
		// sends before its request is read, no idle write buffers.
		grpc.ReadBufferSize(0),
		grpc.InitialWindowSize(InitialWindowSize),
		grpc.InitialConnWindowSize(InitialWindowSize),
		grpc.SharedWriteBuffer(true),
		grpc.ForceServerCodecV2(requestCodec{}),
		grpc.UnknownServiceHandler(s.unknown),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxSendMsgSize(MaxResponseBytes),
		grpc.MaxConcurrentStreams(s.limits.MaxConcurrentStreams),
		// Long-lived workers keep their grown stacks: a fresh goroutine per
		// request would grow (copy) its stack on every signature.
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.ConnectionTimeout(s.limits.HandshakeTimeout),
		grpc.MaxHeaderListSize(16 << 10),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: s.limits.IdleTimeout,
			Time:              2 * time.Minute,
			Timeout:           20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	}
}

// Register registers the four services, gRPC health and server
// reflection (probe.go) on g, a grpc.Server made with ServerOptions (or a
// registrar in front of one).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	g.RegisterService(s.wrapService(&keystorev1.Keys_ServiceDesc), &keysService{s: s})
	g.RegisterService(s.wrapService(&keystorev1.Store_ServiceDesc), &storeService{s: s})
	g.RegisterService(s.wrapService(&keystorev1.TrustAnchors_ServiceDesc), &anchorsService{s: s})
	g.RegisterService(s.wrapService(&keystorev1.Admin_ServiceDesc), &adminService{s: s})
	s.registerProbes(g)
}

// Listener wraps l (a Unix socket listener) so that every accepted
// connection has its peer credentials read and is counted against the
// connection limits; connections over a limit are closed at once. Serve
// uses it; a grpc.Server serving another listener still gets the peer
// credentials, but no limits.
func (s *Server) Listener(l net.Listener) net.Listener {
	return &limitListener{Listener: l, creds: s.creds, budget: s.inflight, refused: func(reason string) {
		s.metrics.refused.Inc()
		s.log.Debug("connection refused", "reason", reason)
	}, overrun: func() {
		s.metrics.refusedRequests.WithLabelValues(refusedOverrun).Inc()
		s.log.Warn("connection closed: a stream sent more than its request declared")
	}}
}

// Serve serves g (from NewGRPCServer) on l through Listener until g stops.
func (s *Server) Serve(g *grpc.Server, l net.Listener) error { return g.Serve(s.Listener(l)) }

// NewGRPCServer returns a grpc.Server with ServerOptions and the services
// registered.
func (s *Server) NewGRPCServer() *grpc.Server {
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	return g
}
