package plugin

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is hclog's Trace level in slog terms.
const levelTrace = slog.LevelDebug - 4

// slogAdapter is an hclog.Logger that writes to a *slog.Logger, so that
// go-plugin's own messages and the plugin's stderr lines (which go-plugin
// parses and re-logs) reach the host's log.
//
// go-plugin logs the plugin's stderr through the logger it gets Named
// after the plugin (stderrName), and logs a line that is not one of
// hclog's leveled JSON lines at Debug. While the plugin starts (starting
// is set), that logger raises such lines to Info: a plugin that refuses to
// start says why on stderr, in plain text (the testseed plugin without
// --insecure), and the daemon's own error points at those lines.
type slogAdapter struct {
	l    *slog.Logger
	name string
	args []interface{}

	stderrName string       // the name go-plugin gives the plugin's stderr logger
	starting   *atomic.Bool // set while the plugin starts; may be nil
	raise      *atomic.Bool // on the stderr logger: starting
}

var _ hclog.Logger = (*slogAdapter)(nil)

// newHCLogger returns an hclog.Logger writing to l; for a nil l, one
// whose level is Off (go-plugin then skips parsing the plugin's lines).
// The logger Named stderrName (go-plugin's logger of the plugin's stderr)
// logs lines below Info at Info while starting is set.
func newHCLogger(l *slog.Logger, stderrName string, starting *atomic.Bool) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &slogAdapter{l: l, stderrName: stderrName, starting: starting}
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *slogAdapter) enabled(level slog.Level) bool {
	return a.l.Enabled(context.Background(), level)
}

// Log implements hclog.Logger.
func (a *slogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off {
		return
	}
	sl := toSlog(level)
	if sl < slog.LevelInfo && a.raise != nil && a.raise.Load() {
		sl = slog.LevelInfo
	}
	if !a.enabled(sl) {
		return
	}
	attrs := make([]interface{}, 0, len(a.args)+len(args)+2)
	if a.name != "" {
		attrs = append(attrs, "logger", a.name)
	}
	attrs = append(attrs, a.args...)
	attrs = append(attrs, args...)
	a.l.Log(context.Background(), sl, msg, attrs...)
}

// Trace implements hclog.Logger.
func (a *slogAdapter) Trace(msg string, args ...interface{}) { a.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (a *slogAdapter) Debug(msg string, args ...interface{}) { a.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (a *slogAdapter) Info(msg string, args ...interface{}) { a.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (a *slogAdapter) Warn(msg string, args ...interface{}) { a.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (a *slogAdapter) Error(msg string, args ...interface{}) { a.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (a *slogAdapter) IsTrace() bool { return a.enabled(levelTrace) }

// IsDebug implements hclog.Logger.
func (a *slogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }

// IsInfo implements hclog.Logger.
func (a *slogAdapter) IsInfo() bool { return a.enabled(slog.LevelInfo) }

// IsWarn implements hclog.Logger.
func (a *slogAdapter) IsWarn() bool { return a.enabled(slog.LevelWarn) }

// IsError implements hclog.Logger.
func (a *slogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

// ImpliedArgs implements hclog.Logger.
func (a *slogAdapter) ImpliedArgs() []interface{} { return a.args }

// With implements hclog.Logger.
func (a *slogAdapter) With(args ...interface{}) hclog.Logger {
	c := *a
	c.args = append(append([]interface{}(nil), a.args...), args...)
	return &c
}

// Name implements hclog.Logger.
func (a *slogAdapter) Name() string { return a.name }

// Named implements hclog.Logger.
func (a *slogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "."
	}
	c.name += name
	if name == a.stderrName && a.stderrName != "" {
		c.raise = a.starting
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (a *slogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	c.raise = nil
	if name == a.stderrName && a.stderrName != "" {
		c.raise = a.starting
	}
	return &c
}

// SetLevel implements hclog.Logger; the level is the slog handler's.
func (a *slogAdapter) SetLevel(hclog.Level) {}

// GetLevel implements hclog.Logger: the lowest level the handler takes.
func (a *slogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(toSlog(l)) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (a *slogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (a *slogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineLogger{log: func(line string) { a.Info(line) }}
}

// maxLogLine bounds one forwarded line; longer lines are split.
const maxLogLine = 4 << 10

// lineLogger is an io.Writer that logs each line written to it.
type lineLogger struct {
	mu   sync.Mutex
	buf  []byte
	log  func(line string)
	copy io.Writer // also gets every byte; may be nil
}

// Write implements io.Writer.
func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.copy != nil {
		_, _ = w.copy.Write(p)
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf[:min(len(w.buf), maxLogLine+1)], '\n')
		if i < 0 {
			if len(w.buf) >= maxLogLine {
				w.log(string(w.buf[:maxLogLine]))
				w.buf = append(w.buf[:0], w.buf[maxLogLine:]...)
				continue
			}
			return len(p), nil
		}
		w.log(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	}
}

// stdioWriter returns the writer for one of the plugin's standard streams
// as go-plugin relays them after the handshake: every line is logged at
// Info with the stream's name.
func stdioWriter(l *slog.Logger, stream string, copy io.Writer) io.Writer {
	if l == nil {
		if copy != nil {
			return copy
		}
		return io.Discard
	}
	return &lineLogger{copy: copy, log: func(line string) {
		l.Info("plugin output", "stream", stream, "line", line)
	}}
}
