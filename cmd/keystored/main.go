// Command keystored is the keystore daemon: it serves keystore.v1 (Keys,
// Store, TrustAnchors) over a Unix socket to the applications of one host,
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
// --insecure-test-seed HEX (INSECURE, tests only), --metrics-addr ADDR,
// --log-format text|json, --log-level LEVEL, --version.
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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/server"
)

// version is the daemon's version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// auditFile is the audit log's path inside the state directory.
const auditFile = "audit/audit.jsonl"

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv, sig))
}

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
func run(args []string, stdout, stderr io.Writer, getenv func(string) string, sig <-chan os.Signal) int {
	o, err := parseFlags(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "keystored: error: %v\nhint: keystored -h lists the flags\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	logger := newLogger(o, stderr)
	if err := daemon(o, stdout, stderr, logger, sig); err != nil {
		fmt.Fprintf(stderr, "keystored: error: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) && ee.hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", ee.hint)
		}
		return 1
	}
	return 0
}

// versionString is "keystored <version> (<vcs revision>, <go version>)".
func versionString() string {
	rev := "unknown revision"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			}
		}
	}
	return "keystored " + version + " (" + rev + ", " + runtime.Version() + ")"
}

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

	if o.insecureSeed != "" {
		fmt.Fprintln(stderr, insecureWarning)
		logger.Warn(insecureWarning)
	}
	cfg := defaultSettings()
	if o.config != "" {
		if cfg, err = loadConfig(o.config); err != nil {
			return withHint(err, "docs/operations.md describes the config file")
		}
	}
	if o.metricsAddr == "" {
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

	alog, err := audit.Open(filepath.Join(o.state, auditFile), audit.WithSync(cfg.auditSync), audit.WithClock(clock.System{}),
		audit.WithSegmentSize(cfg.auditSegment), audit.WithMaxSegments(cfg.auditMaxSegs))
	if err != nil {
		return withHint(fmt.Errorf("audit log: %w", err), "keystorectl audit verify --state "+o.state+" shows the first bad record")
	}
	cl.add("audit log", alog.Close)

	prov, err := openProvider(ctx, o, logger)
	if err != nil {
		return err
	}
	if prov.closer != nil {
		cl.add("provider", prov.closer.Close)
	}

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
		CheckSignatures: prov.kind == kindPlugin,
		Quotas:          cfg.quotas,
	})
	if err != nil {
		if c, ok := provider.CodeOf(err); ok && c == provider.EPERM {
			return withHint(fmt.Errorf("opening the keystore in %s: %w", o.state, err),
				"a state directory belongs to the provider that made it; use another --state directory")
		}
		return fmt.Errorf("opening the keystore in %s: %w", o.state, err)
	}
	if err := srv.Registry().Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("metrics: %w", err)
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
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

	l, err := listenSocket(o.socket, cfg.socketGID, logger)
	if err != nil {
		return err
	}
	gs := srv.NewGRPCServer()

	logger.Info("keystored started", "version", version, "socket", o.socket, "state", o.state,
		"provider", prov.summary, "insecure", srv.Insecure(), "anchors", anchors.Len())
	fmt.Fprintf(stdout, "keystored: listening on %s (provider %s, state %s)\n", o.socket, prov.summary, o.state)
	fmt.Fprintf(stdout, "keystored: try: keystorectl --socket %s create app/demo --alg ed25519\n", o.socket)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(gs, l) }()

	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		gs.Stop()
		return fmt.Errorf("serving %s: %w", o.socket, err)
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

// stopGracefully stops accepting connections and waits for in-flight calls
// for at most timeout (a second signal cuts the wait short), then stops.
func stopGracefully(gs *grpc.Server, timeout time.Duration, sig <-chan os.Signal, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
		logger.Warn("in-flight calls did not finish in time; stopping now", "timeout", timeout.String())
	case s := <-sig:
		logger.Warn("second signal; stopping now", "signal", s.String())
	}
	gs.Stop()
	<-done
}
