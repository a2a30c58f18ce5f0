package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/internal/keksource"
)

// Defaults of the state directory and the socket.
const (
	defaultState      = "keystore-state"
	socketFileName    = "keystored.sock"
	socketEnv         = "KEYSTORE_SOCKET"
	defaultMetricHost = "127.0.0.1"
)

// options are the command-line flags.
type options struct {
	// workers is the default number of provider workers
	// (reserveTransportProc); not a flag.
	workers int

	state        string
	socket       string
	config       string
	pluginPath   string
	pluginSHA256 string
	pluginArgs   []string
	pluginEnv    []string
	insecureSeed string
	insecureAck  bool
	metricsAddr  string
	logFormat    string
	logLevel     slog.Level
	version      bool

	// insecureCoreDumps keeps core dumps possible (debugging only).
	insecureCoreDumps bool

	// acceptLogChange and acceptCounterChange are the operator's
	// audited overrides of the start-up tamper checks
	// (docs/operations.md, "When the daemon refuses to start").
	acceptLogChange     bool
	acceptCounterChange bool

	// kek is the built-in software provider's KEK source from the
	// --kek-* flags (unset fields come from the config's [kek] table).
	kek keksource.Options
	// getenv reads the daemon's environment ($CREDENTIALS_DIRECTORY).
	getenv func(string) string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseFlags parses the command line. getenv supplies KEYSTORE_SOCKET.
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (*options, error) {
	o := &options{getenv: getenv, kek: keksource.Options{
		File:                 keksource.Setting{From: "--kek-file"},
		PassphraseFile:       keksource.Setting{From: "--kek-passphrase-file"},
		PassphraseCredential: keksource.Setting{From: "--kek-passphrase-credential"},
		ParamsFile:           keksource.Setting{From: "--kek-params-file"},
	}}
	fs := flag.NewFlagSet("keystored", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.state, "state", defaultState, "state `DIR` (keys, values, audit log, KEK)")
	fs.StringVar(&o.socket, "socket", "", "Unix socket `PATH` (default $"+socketEnv+", else DIR/"+socketFileName+")")
	fs.StringVar(&o.config, "config", "", "TOML config `FILE` (identity map, socket group, anchors, limits)")
	fs.StringVar(&o.pluginPath, "provider-plugin", "", "run the provider plugin binary at `PATH`")
	fs.StringVar(&o.pluginSHA256, "provider-sha256", "", "pinned SHA-256 `HEX` of the plugin binary (required with --provider-plugin)")
	fs.Var((*stringList)(&o.pluginArgs), "provider-arg", "argument `ARG` for the plugin (repeatable)")
	fs.Var((*stringList)(&o.pluginEnv), "provider-env", "pass the host variable `NAME` to the plugin (repeatable)")
	fs.StringVar(&o.insecureSeed, "insecure-test-seed", "", "INSECURE: derive every key from the seed `HEX` (tests only; needs --"+insecureAckFlag+")")
	fs.BoolVar(&o.acceptLogChange, "accept-audit-log-change", false, "start although the audit log is not the one the state directory last saw (deleted, replaced or cut): the change is accepted, audited, and the audit index rebuilt from the log as it is")
	fs.BoolVar(&o.acceptCounterChange, "accept-counter-change", false, "start although the external monotonic counter disagrees with the audit log (a restored backup, a replaced or reset counter): the change is accepted and audited, and the counter is set to follow the log")
	fs.BoolVar(&o.insecureCoreDumps, "insecure-allow-core-dumps", false, "INSECURE: do not turn core dumps off (they hold the KEK and key material); for debugging only")
	fs.BoolVar(&o.insecureAck, insecureAckFlag, false, "acknowledge that the provider is INSECURE (required with --insecure-test-seed or an insecure plugin)")
	fs.StringVar(&o.kek.File.Value, "kek-file", "", "software provider: KEK file `PATH`, 32 raw bytes (default DIR/kek)")
	fs.StringVar(&o.kek.PassphraseFile.Value, "kek-passphrase-file", "", "software provider: derive the KEK (Argon2id) from the passphrase in `FILE`")
	fs.StringVar(&o.kek.PassphraseCredential.Value, "kek-passphrase-credential", "", "software provider: derive the KEK from the systemd credential `NAME` ($CREDENTIALS_DIRECTORY/NAME)")
	fs.StringVar(&o.kek.ParamsFile.Value, "kek-params-file", "", "software provider: Argon2id parameters `FILE` of a passphrase KEK (default DIR/kek.params)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `ADDR` (host defaults to 127.0.0.1)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: keystored [flags]\n\nkeystored serves keys over a Unix socket (docs/operations.md).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (keystored takes flags only)", fs.Arg(0))
	}
	if o.version {
		return o, nil
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", *level)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("--log-format: %q is not text or json", o.logFormat)
	}
	if o.state == "" {
		return nil, errors.New("--state: empty directory name")
	}
	switch {
	case o.pluginPath != "" && o.insecureSeed != "":
		return nil, errors.New("--provider-plugin and --insecure-test-seed are mutually exclusive")
	case o.pluginPath == "" && (o.pluginSHA256 != "" || len(o.pluginArgs) > 0 || len(o.pluginEnv) > 0):
		return nil, errors.New("--provider-sha256, --provider-arg and --provider-env need --provider-plugin")
	case o.pluginPath != "" && o.pluginSHA256 == "":
		return nil, errors.New("--provider-plugin needs --provider-sha256 (the binary's SHA-256, as sha256sum prints it)")
	case o.insecureSeed != "" && !o.insecureAck:
		return nil, errors.New(insecureAckMissing("--insecure-test-seed"))
	case o.insecureAck && o.insecureSeed == "" && o.pluginPath == "":
		return nil, errors.New("--" + insecureAckFlag + " acknowledges an INSECURE provider, but none is selected " +
			"(--insecure-test-seed, or a --provider-plugin that announces itself insecure)")
	}
	if (o.pluginPath != "" || o.insecureSeed != "") && o.kek.Values() != ([4]string{}) {
		return nil, errors.New("the --kek-* flags set the built-in software provider's KEK; with --provider-plugin pass the plugin's own with --provider-arg, and --insecure-test-seed has no KEK")
	}
	// Conflicts among the flags; the rest (with the config's [kek]) is
	// checked at start.
	if err := keksource.CheckConflicts(o.kek); err != nil {
		return nil, err
	}
	for _, name := range o.pluginEnv {
		if strings.HasPrefix(name, keksource.StateEnvPrefix) {
			return nil, fmt.Errorf("--provider-env %s: the %s* variables are set by keystored itself (docs/providers.md)", name, keksource.StateEnvPrefix)
		}
	}
	if o.socket == "" {
		o.socket = getenv(socketEnv)
	}
	if o.socket == "" {
		o.socket = filepath.Join(o.state, socketFileName)
	}
	if o.metricsAddr != "" {
		addr, err := metricsAddr(o.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		o.metricsAddr = addr
	}
	return o, nil
}

// insecureAckFlag is the second acknowledgement an INSECURE provider
// needs: a flag with the word in its name, so a command line that runs
// one says so twice.
const insecureAckFlag = "i-understand-this-is-insecure"

// insecureAckMissing is the refusal of an INSECURE provider (named by
// what) without --i-understand-this-is-insecure.
func insecureAckMissing(what string) string {
	return what + " runs an INSECURE provider: every key derives from a seed, so anyone who knows the seed knows every key, " +
		"and it proves nothing about security; it is for tests only. Add --" + insecureAckFlag + " to run it anyway"
}

// metricsAddr completes a metrics address: "9464" and ":9464" listen on
// 127.0.0.1; a host given explicitly is kept.
func metricsAddr(s string) (string, error) {
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return "", fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		host = defaultMetricHost
	}
	return net.JoinHostPort(host, port), nil
}

// newLogger returns the slog logger of the options, writing to w.
func newLogger(o *options, w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
