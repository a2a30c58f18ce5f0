// Command keystored is the keystore daemon: it serves keystore.v1 (Keys,
// Store, TrustAnchors, Admin; health and reflection) over a Unix socket to the applications of one host,
// taking each caller's identity from the kernel (SO_PEERCRED).
//
// With no flags it runs on the secure software provider, keeps its state
// in ./keystore-state (KEK file keystore-state/kek, created 0600 on first
// start) and listens on keystore-state/keystored.sock:
//
//	go run ./cmd/keystored
//	keystorectl --socket keystore-state/keystored.sock create app/demo --alg ed25519
//
// Flags (keystored -h lists them all): --state DIR, --socket PATH (or
// $KEYSTORE_SOCKET), --config FILE (TOML: identity map, socket group,
// trust anchors, audit sync, limits), --provider-plugin PATH
// --provider-sha256 HEX [--provider-arg ARG]... [--provider-env NAME]...,
// --insecure-test-seed HEX --i-understand-this-is-insecure (INSECURE,
// tests only: both flags are required), --metrics-addr ADDR,
// --log-format text|json, --log-level LEVEL, --version; the software
// provider's KEK: --kek-file PATH, or --kek-passphrase-file FILE |
// --kek-passphrase-credential NAME with --kek-params-file PATH (or the
// config's [kek] table). A KEK is created only for a state with no keys;
// a missing one stops the start.
//
// At start it turns core dumps off (RLIMIT_CORE 0, PR_SET_DUMPABLE 0);
// --insecure-allow-core-dumps keeps them, for debugging only.
//
// Tamper evidence (docs/security.md): before serving it checks the audit
// log against the state's signed audit index (<state>/audit-index) and
// the external counter ([counter]: a file elsewhere or a TPM NV index),
// verifies the checkpoints after the index's head with its own audit key
// (keystored/audit/checkpoint, made at the first start), then signs
// checkpoints ([audit] checkpoint_every, checkpoint_interval; copies to
// checkpoint_file and checkpoint_syslog), checks every key the log knows
// in the background, snapshots the index every minute, and at a clean
// stop writes the signed stop checkpoint and marks the stop in the index.
// A start refused for what it found (--accept-audit-log-change and
// --accept-counter-change override, audited) writes nothing.
//
// Every [rotation] sweep_interval (default 10m) it sweeps: it rotates
// the keys past their rotation period, audited as "daemon.sweep".
//
// SIGHUP reloads the config file: the identity map (apps, operators,
// unmapped), the trust anchors and the sweep interval are validated whole
// and swapped in at once, or, on any error, left as they were; every
// reload is logged and audited ("daemon.reload"). Other settings need a
// restart.
//
// Under systemd (dist/systemd: Type=notify) it reports READY=1 once its
// socket listens, RELOADING=1/READY=1 around a reload and STOPPING=1;
// started by socket activation (LISTEN_FDS, keystored.socket) it serves
// on the socket it inherits and leaves that socket to the service
// manager.
//
// SIGTERM or SIGINT stops it gracefully: no new connections, in-flight
// calls finish (bounded), the audit log is flushed and closed, the state
// lock released, exit status 0. docs/operations.md is the operator's guide.
//
// The daemon parses its flags with the standard flag package: it has no
// subcommands, and the standard package keeps the daemon's dependencies
// and its -h output small (keystorectl, which has many commands, uses
// cobra).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/internal/buildinfo"
	"github.com/nexus-os/keystored/internal/coredump"
	"github.com/nexus-os/keystored/internal/tamper"
	"github.com/nexus-os/keystored/server"
)

// version is the daemon's version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// auditFile is the audit log's path inside the state directory.
const auditFile = "audit/audit.jsonl"

func main() {
	sig := make(chan os.Signal, 4)
	// SIGHUP reloads the configuration; without a handler it would kill
	// the daemon with no graceful stop (and systemd's Restart=on-failure
	// would not restart it).
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	processLogs = true
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv, sig))
}

// processLogs makes run install its logger as the process's (logs.go):
// main sets it; tests that call run leave the globals alone.
var processLogs = false

// exitError is a failure with a hint for the operator.
type exitError struct {
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &exitError{err: err, hint: hint} }

// run is the daemon; it returns the exit status: 0 after a clean stop, 1
// on a failure, 2 on a usage error.
//
// With --log-format json (found in args before they are parsed, so that
// a usage error is reported in JSON too) every line on stderr is JSON:
// the flag package's messages are held back, a usage error or a failure
// is one Error record with "err" and "hint", and -h prints the usage on
// stdout.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string, sig <-chan os.Signal) int {
	jsonLogs := logFormatOf(args) == "json"
	flagOut := stderr
	var held bytes.Buffer
	if jsonLogs {
		flagOut = &held
	}
	o, err := parseFlags(args, flagOut, getenv)
	if errors.Is(err, flag.ErrHelp) {
		if jsonLogs {
			// Asked for, and not a log line: the usage goes to stdout.
			if _, werr := stdout.Write(held.Bytes()); werr != nil {
				return 1
			}
		}
		return 0
	}
	if err != nil {
		const hint = "keystored -h lists the flags"
		if jsonLogs {
			slog.New(slog.NewJSONHandler(stderr, nil)).Error("usage error", "err", err.Error(), "hint", hint)
			return 2
		}
		fmt.Fprintf(stderr, "keystored: error: %v\nhint: %s\n", err, hint)
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	logger := newLogger(o, stderr)
	o.workers = reserveTransportProc(getenv("GOMAXPROCS") != "")
	if getenv("GOGC") == "" {
		startGCFloor(gcFloor)
		startIdleRelease()
	}
	if processLogs {
		installProcessLogs(logger)
	}
	if err := daemon(o, stdout, stderr, logger, sig); err != nil {
		var hint string
		var ee *exitError
		if errors.As(err, &ee) {
			hint = ee.hint
		}
		if o.logFormat == "json" {
			args := []any{"err", err.Error()}
			if hint != "" {
				args = append(args, "hint", hint)
			}
			logger.Error("keystored failed", args...)
			return 1
		}
		fmt.Fprintf(stderr, "keystored: error: %v\n", err)
		if hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", hint)
		}
		return 1
	}
	return 0
}

// startProcs is GOMAXPROCS as the runtime chose it at start: the CPUs the
// daemon may use (cgroup limits included).
var startProcs = runtime.GOMAXPROCS(0)

// reserveTransportProc gives the Go runtime one processor (P) more than
// the provider workers, unless $GOMAXPROCS is set, and returns the
// default number of workers: the CPUs (startProcs), or GOMAXPROCS - 1
// (at least 1) when the environment chose it. While the workers are busy
// with a flood of expensive signatures, the spare P is the one that reads
// requests and runs the other apps' calls: a runtime whose every P is
// busy looks at the network only every 10 ms (sysmon), which put 25 ms on
// another app's p50 in the fairness measurement (docs/performance.md).
func reserveTransportProc(fromEnv bool) int {
	if fromEnv {
		return max(1, runtime.GOMAXPROCS(0)-1)
	}
	runtime.GOMAXPROCS(startProcs + 1)
	return startProcs
}

// versionString is "keystored <version> (<vcs revision>, <go version>)".
func versionString() string { return buildinfo.String("keystored", version) }

// closers releases what the daemon opened, last opened first.
type closers struct {
	log *slog.Logger
	fns []func() error
	err error
}

func (c *closers) add(what string, f func() error) {
	c.fns = append(c.fns, func() error {
		if err := f(); err != nil {
			c.log.Error("closing "+what, "err", err)
			return fmt.Errorf("closing %s: %w", what, err)
		}
		return nil
	})
}

func (c *closers) closeAll() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.fns = nil
	return errors.Join(errs...)
}

// daemon opens everything, serves until a signal, and stops gracefully.
func daemon(o *options, stdout, stderr io.Writer, logger *slog.Logger, sig <-chan os.Signal) (err error) {
	ctx := context.Background()
	cl := &closers{log: logger}
	defer func() {
		if cerr := cl.closeAll(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	// Before any secret is read: the KEK and key material must never reach
	// a core file or a same-uid debugger.
	if o.insecureCoreDumps {
		warnLine(o, stderr, logger, coreDumpWarning)
	} else if err := coredump.Disable(); err != nil {
		return withHint(err, "keystored turns core dumps off at start; --insecure-allow-core-dumps skips this, for debugging only")
	}
	if o.insecureSeed != "" {
		warnLine(o, stderr, logger, insecureWarning)
	}
	cfg := defaultSettings()
	if o.config != "" {
		if cfg, err = loadConfig(o.config); err != nil {
			return withHint(err, "docs/operations.md describes the config file")
		}
	}
	metricsFlag := o.metricsAddr != ""
	if !metricsFlag {
		o.metricsAddr = cfg.metricsAddr
	}

	dir, err := storage.OpenDir(o.state)
	if err != nil {
		if c, ok := provider.CodeOf(err); ok && c == provider.EUNAVAILABLE {
			return withHint(fmt.Errorf("state directory %s: %w", o.state, err), "another keystored is running on this state directory")
		}
		return fmt.Errorf("state directory %s: %w", o.state, err)
	}
	cl.add("state directory", dir.Close)

	// What the state holds decides whether a missing KEK may be made:
	// only for a state without keys (and without a recorded KEK). The
	// provider opens before the audit log so that it is still there
	// when the log signs its last checkpoint at stop.
	state, err := core.Inspect(ctx, dir)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", o.state, err)
	}
	checkSigs, err := checkSignatures(o, cfg.provider)
	if err != nil {
		return err
	}
	prov, err := openProvider(ctx, o, cfg.kek, cfg.cache.unwrapped, state, logger)
	if err != nil {
		return err
	}
	if prov.kind == kindPlugin && !checkSigs {
		logger.Warn("the plugin's signatures are not verified (provider.verify_signatures = false for this pinned binary)", "sha256", strings.ToLower(o.pluginSHA256))
	}
	if prov.closer != nil {
		cl.add("provider", prov.closer.Close)
	}
	if err := checkInsecureAck(ctx, o, prov, stderr, logger); err != nil {
		return err
	}

	// The audit log, checked against what the state directory remembers
	// of it (the audit index) and against the external counter, before
	// anything is served (docs/security.md, "Rollback detection").
	counter, err := openCounter(ctx, cfg.counter, o.state)
	if err != nil {
		return err
	}
	if counter != nil {
		cl.add("external counter", counter.Close)
	}
	auditSyncs := newAuditSyncHistogram()
	auditPath := filepath.Join(o.state, auditFile)
	var alog *audit.Log
	tr, err := tamper.Open(ctx, tamper.Options{
		StateDir: o.state,
		LogPath:  auditPath,
		OpenLog: func() (tamper.Log, error) {
			l, err := audit.Open(auditPath, audit.WithSync(cfg.auditSync), audit.WithClock(clock.System{}),
				audit.WithSegmentSize(cfg.auditSegment), audit.WithMaxSegments(cfg.auditMaxSegs), audit.WithSyncObserver(observeSeconds(auditSyncs)))
			if err != nil {
				return nil, err
			}
			alog = l
			return l, nil
		},
		Counter:             counter,
		AcceptLogChange:     o.acceptLogChange,
		AcceptCounterChange: o.acceptCounterChange,
		Clock:               time.Now,
		HoldsAppKeys:        state.HoldsAppKeys,
	})
	if err != nil {
		return auditRefused(err, o.state) // tamper.Open closed the log
	}
	// At stop: the log's last record (the stop checkpoint, signed while
	// the provider is still open), then the index snapshot that marks the
	// stop as clean — only if the log closed cleanly.
	// A start refused for what it found writes no snapshot and no stop
	// mark: the tampered state stays as it was found.
	started := false
	cl.add("audit log", func() error {
		if !started {
			return alog.Close()
		}
		serr := tr.SnapshotNow()
		if err := alog.Close(); err != nil {
			return errors.Join(serr, err)
		}
		if serr != nil {
			return serr
		}
		return tr.Stopped(alog.Checkpoint())
	})
	alog.SetPruneGuard(tr.SnapshotThrough)

	var anchors *server.Anchors
	if cfg.anchorsDir != "" {
		if anchors, err = server.LoadAnchors(cfg.anchorsDir); err != nil {
			return err
		}
	}

	srv, err := server.New(ctx, server.Config{
		Storage:         dir,
		Provider:        prov.p,
		Clock:           clock.System{},
		Audit:           alog,
		Identity:        cfg.identity,
		Anchors:         anchors,
		Logger:          logger,
		Limits:          cfg.limits,
		CheckSignatures: prov.kind == kindPlugin && checkSigs,
		Quotas:          cfg.quotas,
		Scheduler:       withWorkers(cfg.scheduler, defaultWorkers(prov.kind, o.workers)),
		Generations:     tr.Index(),
		Advance:         tr.Advance,
		CacheSize:       cfg.cache.keys,
	})
	if err != nil {
		return stateRefused(o.state, err)
	}
	ownKey := func(id string) bool { return strings.HasPrefix(id, core.ReservedApp+"/") }
	if o.acceptLogChange {
		// The accepted log may lack the history of the daemon's own audit
		// key, which the checks below need: it is taken in first.
		if _, err := srv.Keystore().AdoptGenerations(ctx, ownKey); err != nil {
			return fmt.Errorf("accepting the audit log change: %w", err)
		}
	}
	sinks, err := openSinks(cfg.checkpoints, o.state)
	if err != nil {
		return err
	}
	if err := startSigning(ctx, srv.Keystore(), alog, tr, o.state, cfg.checkpoints, sinks, logger); err != nil {
		return err
	}
	started = true
	if o.acceptLogChange {
		// Then the callers' keys newer than the accepted log, those the
		// verified old index did not know (tamper.Tracker.Adoptable):
		// keys.adopted records, before anything is served.
		adopted, err := srv.Keystore().AdoptGenerations(ctx, func(id string) bool { return !ownKey(id) && tr.Adoptable(id) })
		if err != nil {
			return fmt.Errorf("accepting the audit log change: %w", err)
		}
		logger.Warn("audit log change accepted; key generations the log lacked are taken into it", "keys", len(adopted))
	}
	bgCtx, stopBackground := context.WithCancel(ctx)
	bgDone := make(chan struct{}, 2)
	go func() {
		defer func() { bgDone <- struct{}{} }()
		scanKeys(bgCtx, srv.Keystore(), tr.Index().Keys(), logger)
	}()
	go func() {
		defer func() { bgDone <- struct{}{} }()
		snapshotLoop(bgCtx, tr, logger)
	}()
	cl.add("start scan and index snapshots", func() error {
		stopBackground()
		<-bgDone
		<-bgDone
		return nil
	})
	if err := srv.Registry().Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	for _, c := range daemonCollectors(alog, auditSyncs, prov.plugin) {
		if err := srv.Registry().Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if err := srv.Registry().Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	if o.metricsAddr != "" {
		ml, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(srv.Registry(), promhttp.HandlerOpts{}))
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go func() {
			if err := metricsSrv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server stopped", "err", err)
			}
		}()
		cl.add("metrics server", func() error {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return metricsSrv.Shutdown(sctx)
		})
		fmt.Fprintf(stdout, "keystored: metrics on http://%s/metrics\n", ml.Addr())
	}

	sweeper, err := srv.NewSweeper(cfg.sweepInterval)
	if err != nil {
		return err
	}
	sweepCtx, stopSweeps := context.WithCancel(ctx)
	sweepsDone := make(chan struct{})
	go func() {
		defer close(sweepsDone)
		sweeper.Run(sweepCtx)
	}()
	cl.add("scheduled sweep", func() error {
		stopSweeps()
		<-sweepsDone // before the audit log closes: a sweep in progress is audited
		return nil
	})

	l, socket, err := openListener(o, cfg, logger)
	if err != nil {
		return err
	}
	gs := srv.NewGRPCServer()

	logger.Info("keystored started", "version", version, "socket", socket, "state", o.state,
		"provider", prov.summary, "insecure", srv.Insecure(), "anchors", anchors.Len(), "sweep_interval", cfg.sweepInterval.String())
	fmt.Fprintf(stdout, "keystored: listening on %s (provider %s, state %s)\n", socket, prov.summary, o.state)
	fmt.Fprintf(stdout, "keystored: try: keystorectl --socket %s create app/demo --alg ed25519\n", socket)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(gs, l) }()
	sd := notifier{log: logger}
	sd.ready()

	rl := &reloader{o: o, srv: srv, sweeper: sweeper, alog: alog, logger: logger, running: cfg, metricsFlag: metricsFlag}
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				sd.reloading()
				rl.reload(ctx)
				sd.ready()
				continue
			}
			logger.Info("shutting down", "signal", s.String())
			sd.stopping()
			srv.Shutdown()
			break wait
		case err := <-serveErr:
			sd.stopping()
			gs.Stop()
			return fmt.Errorf("serving %s: %w", socket, err)
		}
	}
	stopGracefully(gs, cfg.shutdownTimeout, sig, logger)
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		logger.Error("serve", "err", err)
	}
	srv.FlushRefusals()
	if err := cl.closeAll(); err != nil {
		return err
	}
	logger.Info("keystored stopped")
	return nil
}

// openListener returns the socket to serve on and its name for messages:
// the one the service manager passed (socket activation), which the
// daemon uses as it is, or else --socket, which listenSocket prepares and
// binds.
func openListener(o *options, cfg settings, logger *slog.Logger) (*net.UnixListener, string, error) {
	l, err := activatedListener()
	if err != nil {
		return nil, "", err
	}
	if l == nil {
		l, err := listenSocket(o.socket, cfg.socketGID, logger)
		return l, o.socket, err
	}
	name := l.Addr().String()
	logger.Info("serving on the socket the service manager passed; its mode, group and path are the service manager's", "socket", name)
	if name != o.socket {
		logger.Warn("the inherited socket is not --socket; serving on the inherited one", "socket", name, "flag", o.socket)
	}
	if cfg.socketGID >= 0 {
		logger.Info("socket_group does not apply to an inherited socket (set SocketGroup= in keystored.socket)")
	}
	return l, name, nil
}

// stateRefused is the error of a state that the provider may not open.
func stateRefused(state string, err error) error {
	if c, ok := provider.CodeOf(err); ok && c == provider.EPERM {
		return withHint(fmt.Errorf("opening the keystore in %s: %w", state, err),
			"a state directory belongs to the provider that made it; use another --state directory")
	}
	return fmt.Errorf("opening the keystore in %s: %w", state, err)
}

// coreDumpWarning is printed at every start with --insecure-allow-core-dumps.
const coreDumpWarning = "WARNING: INSECURE: core dumps are allowed (--insecure-allow-core-dumps): a core file of this process holds the KEK and key material; debugging only"

// checkInsecureAck refuses a provider that announces itself INSECURE
// (Info.Secure false: the testseed plugin) without
// --i-understand-this-is-insecure, before the state is opened with it;
// with the acknowledgement, an insecure plugin gets the same warning as
// --insecure-test-seed. (--insecure-test-seed without it is a usage
// error, refused before anything starts.)
func checkInsecureAck(ctx context.Context, o *options, prov *selectedProvider, stderr io.Writer, logger *slog.Logger) error {
	info, err := prov.p.Info(ctx)
	if err != nil {
		return fmt.Errorf("provider %s: Info: %w", prov.summary, err)
	}
	if info.Secure || prov.kind == kindInsecureSeed {
		return nil
	}
	if !o.insecureAck {
		return withHint(fmt.Errorf("provider %s (%q) announces itself insecure; refusing to start: %s", prov.summary, info.Name,
			insecureAckMissing("it")), "an insecure provider is for tests only; never give it real keys")
	}
	warnLine(o, stderr, logger, insecurePluginWarning, "provider", info.Name)
	return nil
}

// insecurePluginWarning is printed at every start on an insecure plugin.
const insecurePluginWarning = "WARNING: INSECURE: the provider plugin announces itself insecure; never use it for real keys"

// stopGracefully stops accepting connections and waits for in-flight calls
// for at most timeout (a second SIGTERM or SIGINT cuts the wait short; a
// SIGHUP meanwhile is ignored), then stops.
func stopGracefully(gs *grpc.Server, timeout time.Duration, sig <-chan os.Signal, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-timer.C:
			logger.Warn("in-flight calls did not finish in time; stopping now", "timeout", timeout.String())
		case s := <-sig:
			if s == syscall.SIGHUP {
				logger.Info("SIGHUP while stopping: ignored")
				continue
			}
			logger.Warn("second signal; stopping now", "signal", s.String())
		}
		break
	}
	gs.Stop()
	<-done
}

// pluginWorkers is the default number of scheduler workers with a plugin
// provider: its calls mostly wait for the plugin process, and the plugin
// client batches concurrent ones on its call stream, so as many as this
// run at once (with the CPUs' number, two calls in flight left the plugin
// idle between them: 0.26-0.32x of the daemon in process at 64 callers,
// against 0.54x with 64; docs/performance.md).
const pluginWorkers = 64

// defaultWorkers is the default number of scheduler workers: cpu (the
// CPUs the daemon may use) for an in-process provider, pluginWorkers for
// a plugin.
func defaultWorkers(kind providerKind, cpu int) int {
	if kind == kindPlugin {
		return max(cpu, pluginWorkers)
	}
	return cpu
}

// withWorkers is sc with its default number of workers (0) replaced by
// workers.
func withWorkers(sc server.Scheduler, workers int) server.Scheduler {
	if sc.Workers == 0 {
		sc.Workers = workers
	}
	return sc
}
