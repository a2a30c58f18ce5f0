package main

import (
	"errors"
	"fmt"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// Exit statuses besides the errno values.
const (
	exitUsage       = 64 // a command line mistake: sysexits.h EX_USAGE, apart from every errno
	exitUnavailable = 69 // EUNAVAILABLE has no errno: sysexits.h EX_UNAVAILABLE
)

// exitCode returns the exit status for err: the Linux errno of its code,
// 69 for EUNAVAILABLE, 64 for a usage error (or an error without a code,
// which only cobra's own parsing produces).
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	code, ok := client.CodeOf(err)
	if !ok {
		return exitUsage
	}
	if code == provider.EUNAVAILABLE {
		return exitUnavailable
	}
	return int(code.Errno())
}

// hinted carries a hint line for the user.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

// withHint attaches hint to err (nil stays nil; "" adds nothing).
func withHint(err error, hint string) error {
	if err == nil || hint == "" {
		return err
	}
	return &hinted{err: err, hint: hint}
}

// detailed carries extra fields for the JSON error object.
type detailed struct {
	err    error
	fields map[string]any
}

func (d *detailed) Error() string { return d.err.Error() }
func (d *detailed) Unwrap() error { return d.err }

// hintFor returns the hint for err: one attached by the command, else the
// default for its code.
func hintFor(err error) string {
	var h *hinted
	if errors.As(err, &h) {
		return h.hint
	}
	var u usageError
	if errors.As(err, &u) {
		if u.cmd != "" {
			return "see: " + u.cmd + " --help"
		}
		return "see: keystorectl --help"
	}
	code, ok := client.CodeOf(err)
	if !ok {
		return "see: keystorectl --help"
	}
	switch code {
	case provider.EPERM:
		return "this key belongs to another app, or you are not allowed (destroy needs a revoked key; sign/seal need a key of that use)"
	case provider.ENOENT:
		return "no such key or version for your app; see: keystorectl list"
	case provider.EALREADY:
		return "it exists or it is already done; key IDs are never reused, pick another name"
	case provider.EKEYREVOKED:
		return "the key is revoked; create a new key"
	case provider.EINVAL:
		return "keys are <purpose>/<name> (operators: <app>/<purpose>/<name>), each part [a-z0-9][a-z0-9._-]*, at most 64 bytes; a version is KEY@N, N from 1"
	case provider.EMSGSIZE:
		return "an input is over its bound: messages 64 KiB, plaintexts 1 MiB, AAD 64 KiB"
	case provider.EBADMSG:
		return "wrong key, wrong AAD, or the data was modified"
	case provider.ENOTSUP:
		return "the daemon's provider does not support this algorithm or operation; see docs/cli.md"
	case provider.EIO:
		return "keystored hit a storage error; see its log"
	case provider.EUNAVAILABLE:
		return "keystored or its provider is unavailable; retry, or check the daemon's log"
	case provider.EDQUOT:
		return "your app's quota is used up (keys, versions per key, Store values or bytes, outstanding import tokens); delete Store values you no longer need, or ask the operator to raise [quotas] (docs/operations.md)"
	case provider.EKEYEXPIRED:
		return "the import parameters expired before the import; run keystorectl import again (it gets fresh ones)"
	}
	return ""
}

// dialHint is the hint when the daemon cannot be reached.
func dialHint(sock string, err error) string {
	if errors.Is(err, client.ErrPermission) {
		return "you may not open " + sock + ": the daemon's socket group (see docs/operations.md)"
	}
	return "is keystored running? start it with: go run ./cmd/keystored (socket " + sock + ", from --socket, $" + SocketEnv + " or the default)"
}

// fail prints err and returns the exit status: always on stderr as
// "keystorectl: error: <message> (CODE)" and a "hint:" line; with --json
// also as one JSON object on stdout.
func (a *app) fail(err error) int {
	code, hasCode := client.CodeOf(err)
	var u usageError
	isUsage := errors.As(err, &u) || !hasCode
	msg := err.Error()
	reason := "usage"
	if !isUsage {
		reason = code.String()
		msg += " (" + reason + ")"
	}
	hint := hintFor(err)
	fmt.Fprintf(a.stderr, "keystorectl: error: %s\n", msg)
	if hint != "" {
		fmt.Fprintf(a.stderr, "hint: %s\n", hint)
	}
	exit := exitCode(err)
	if a.json && !a.emitted {
		obj := map[string]any{"reason": reason, "message": msg, "exit": exit}
		if hint != "" {
			obj["hint"] = hint
		}
		var d *detailed
		if errors.As(err, &d) {
			for k, v := range d.fields {
				obj[k] = v
			}
		}
		if err := a.emit(map[string]any{"error": obj}); err != nil {
			fmt.Fprintf(a.stderr, "keystorectl: error: %v\n", err)
		}
	}
	return exit
}
