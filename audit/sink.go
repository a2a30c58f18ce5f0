package audit

import (
	"errors"
	"log/syslog"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nexus-os/keystored/core/provider"
)

// fileSink appends checkpoint lines to a file or a named pipe.
type fileSink struct {
	path string
	mu   sync.Mutex
	fd   int // -1 while not open (a FIFO without a reader)
}

// NewFileSink returns a sink that appends each checkpoint line to the file
// at path with one write(2): a regular file (created 0600 if missing) that
// a log shipper tails, or a named pipe (FIFO) a shipper reads. The file is
// opened O_WRONLY|O_APPEND|O_CREAT|O_NONBLOCK: a FIFO with no reader yet
// (ENXIO) is opened again at each write until one is there, and a line a
// full pipe cannot take (EAGAIN) is dropped; both are errors of that write
// (counted by the Log, Stats.SinkErrors), never a blocked Log. A reader
// that goes away (EPIPE) makes the next write reopen the FIFO. Other open
// errors are returned (EIO, EINVAL for a bad path).
func NewFileSink(path string) (CheckpointSink, error) {
	if path == "" {
		return nil, provider.Errorf(provider.EINVAL, "audit checkpoint sink: empty path")
	}
	s := &fileSink{path: path, fd: -1}
	if err := s.open(); err != nil && !errors.Is(err, unix.ENXIO) {
		return nil, err
	}
	return s, nil
}

// open opens the file if it is not open. Called with s.mu held (or
// before s is shared).
func (s *fileSink) open() error {
	if s.fd >= 0 {
		return nil
	}
	fd, err := unix.Open(s.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o600)
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Open(s.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0o600)
	}
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			return provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint sink %s: no reader on the pipe: %w", s.path, err)
		}
		return provider.Errorf(provider.EIO, "audit checkpoint sink %s: open: %w", s.path, err)
	}
	s.fd = fd
	return nil
}

func (s *fileSink) WriteCheckpoint(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(); err != nil {
		return err
	}
	n, err := unix.Write(s.fd, line)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Write(s.fd, line)
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		return provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint sink %s: the pipe is full; line dropped", s.path)
	case errors.Is(err, unix.EPIPE):
		s.closeFD()
		return provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint sink %s: the reader went away; line dropped", s.path)
	case err != nil:
		return provider.Errorf(provider.EIO, "audit checkpoint sink %s: write: %w", s.path, err)
	case n != len(line):
		return provider.Errorf(provider.EIO, "audit checkpoint sink %s: short write (%d of %d bytes)", s.path, n, len(line))
	}
	return nil
}

// closeFD forgets the descriptor after EPIPE: the write already failed,
// and closing a pipe's write end loses nothing.
func (s *fileSink) closeFD() {
	_ = unix.Close(s.fd)
	s.fd = -1
}

func (s *fileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return provider.Errorf(provider.EIO, "audit checkpoint sink %s: close: %w", s.path, err)
	}
	return nil
}

// syslogSink sends checkpoint lines to syslog.
type syslogSink struct {
	w *syslog.Writer
}

// NewSyslogSink returns a sink that sends each checkpoint line to syslog
// (facility daemon, severity notice) with tag: network and addr as for
// log/syslog.Dial ("udp", "loghost:514"; "unixgram", a socket path), or
// both empty for the local syslog (/dev/log, which is journald's on a
// systemd host). The connection is made now (EUNAVAILABLE if it cannot
// be) and remade by log/syslog after a failed write.
func NewSyslogSink(network, addr, tag string) (CheckpointSink, error) {
	w, err := syslog.Dial(network, addr, syslog.LOG_NOTICE|syslog.LOG_DAEMON, tag)
	if err != nil {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint sink syslog %s %s: %w", network, addr, err)
	}
	return &syslogSink{w: w}, nil
}

func (s *syslogSink) WriteCheckpoint(line []byte) error {
	if _, err := s.w.Write(line); err != nil {
		return provider.Errorf(provider.EUNAVAILABLE, "audit checkpoint sink syslog: %w", err)
	}
	return nil
}

func (s *syslogSink) Close() error {
	if err := s.w.Close(); err != nil {
		return provider.Errorf(provider.EIO, "audit checkpoint sink syslog: close: %w", err)
	}
	return nil
}
