package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"google.golang.org/grpc/grpclog"
)

// Logs. With --log-format json every line the daemon writes to stderr is
// a JSON object: its own logs, the usage and start-up errors (which come
// before the logger exists, so run looks for --log-format in the
// arguments first), the INSECURE warnings, and what gRPC, net/http and
// the log package would print (routed to the logger by
// installProcessLogs). stdout keeps its few human lines ("listening on
// ..."), which the JSON "keystored started" record repeats.

// logFormatOf returns the value of the last --log-format in args ("" if
// none), as the flag package will read it; it lets run report a usage
// error in JSON when the flags do not parse.
func logFormatOf(args []string) string {
	format := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			break // the flag package stops here too
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if hasVal || boolFlags[name] {
			if name == "log-format" {
				format = val
			}
			continue
		}
		if i+1 >= len(args) {
			break
		}
		i++ // the flag's value
		if name == "log-format" {
			format = args[i]
		}
	}
	return format
}

// boolFlags are the flags that take no value (parseFlags), -h included.
var boolFlags = map[string]bool{"insecure-allow-core-dumps": true, "accept-audit-log-change": true, "accept-counter-change": true, insecureAckFlag: true, "version": true, "h": true, "help": true}

// warnLine prints an INSECURE warning: a plain line on stderr beside the
// text logs (so that it stands out), or only the log record in JSON.
func warnLine(o *options, stderr io.Writer, logger *slog.Logger, msg string, args ...any) {
	if o.logFormat != "json" {
		fmt.Fprintln(stderr, msg)
	}
	logger.Warn(msg, args...)
}

// installProcessLogs makes logger the destination of the process-wide
// loggers: slog's and the log package's default, and gRPC's (whose
// messages would otherwise be plain lines on stderr). gRPC's info and
// warning messages go to Debug (gRPC itself prints only errors by
// default), its errors to Error. main calls it; tests that call run do
// not, as the globals are shared.
func installProcessLogs(logger *slog.Logger) {
	slog.SetDefault(logger)
	grpclog.SetLoggerV2(grpcLogger{l: logger})
}

// grpcLogger is a grpclog.LoggerV2 over slog.
type grpcLogger struct{ l *slog.Logger }

func (g grpcLogger) log(level slog.Level, msg string) {
	g.l.Log(context.Background(), level, strings.TrimSpace(msg), "component", "grpc")
}

func sprintln(args ...any) string {
	var b bytes.Buffer
	fmt.Fprintln(&b, args...)
	return b.String()
}

func (g grpcLogger) Info(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.log(slog.LevelDebug, sprintln(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.log(slog.LevelDebug, sprintln(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, sprintln(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalln(args ...any) { g.log(slog.LevelError, sprintln(args...)); os.Exit(1) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// V reports whether verbosity level l is on: gRPC's verbose logs are off.
func (g grpcLogger) V(l int) bool { return l <= 0 }
