package main

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// Batch bounds: a call carries at most client.MaxBatch items and about
// batchBytes of payload (under the daemon's 8 MiB batch limit with room
// for framing); one input line is at most maxBatchLine bytes (the base64
// of the largest sealed envelope, with its key, AAD and JSON).
const (
	batchBytes   = 6 << 20
	maxBatchLine = 2*provider.MaxSealed + 2*provider.MaxAAD + 4096
)

// batchItem is one parsed input line: its key, its payload (message,
// plaintext or sealed data) and its AAD; err is set for a line that did
// not parse (it is answered without asking the daemon).
type batchItem struct {
	line    int // the input line it came from
	key     string
	payload []byte
	aad     []byte
	// sign only: a digest instead of the message, and a version.
	digest  []byte
	hash    crypto.Hash
	version uint32
	err     error
}

// batchOp is what differs between batch sign, seal and unseal.
type batchOp struct {
	name    string // "sign"
	field   string // the payload's JSON field in the input: "message"
	out     string // the result's JSON field: "signature"
	bound   int    // the payload's bound
	withAAD bool
	// withDigest accepts "digest" and "digest_hash" instead of the
	// payload, and "version".
	withDigest bool
	// run calls the daemon for items (all parsed) and returns, per item,
	// the key version and the output bytes, or the item's error.
	run func(a *app, c *client.Client, items []batchItem) ([]batchResult, error)
}

type batchResult struct {
	version uint32
	data    []byte
	err     error
}

var batchOps = []batchOp{
	{name: "sign", field: "message", out: "signature", bound: provider.MaxSignMessage, withDigest: true,
		run: func(a *app, c *client.Client, items []batchItem) ([]batchResult, error) {
			in := make([]client.SignItem, len(items))
			for i, it := range items {
				in[i] = client.SignItem{Key: it.key, Message: it.payload, Version: it.version, Hash: it.hash, Digest: it.digest}
			}
			res, err := c.SignBatch(a.ctx, in)
			out := make([]batchResult, len(res))
			for i, r := range res {
				out[i] = batchResult{r.Version, r.Signature.Signature, r.Err}
			}
			return out, err
		}},
	{name: "mac", field: "message", out: "tag", bound: provider.MaxMACMessage,
		run: func(a *app, c *client.Client, items []batchItem) ([]batchResult, error) {
			in := make([]client.MACItem, len(items))
			for i, it := range items {
				in[i] = client.MACItem{Key: it.key, Message: it.payload}
			}
			res, err := c.MACBatch(a.ctx, in)
			out := make([]batchResult, len(res))
			for i, r := range res {
				out[i] = batchResult{r.Version, r.Tag, r.Err}
			}
			return out, err
		}},
	{name: "seal", field: "plaintext", out: "sealed", bound: provider.MaxSealPlaintext, withAAD: true,
		run: func(a *app, c *client.Client, items []batchItem) ([]batchResult, error) {
			in := make([]client.SealItem, len(items))
			for i, it := range items {
				in[i] = client.SealItem{Key: it.key, Plaintext: it.payload, AAD: it.aad}
			}
			res, err := c.SealBatch(a.ctx, in)
			out := make([]batchResult, len(res))
			for i, r := range res {
				out[i] = batchResult{r.Version, r.Data, r.Err}
			}
			return out, err
		}},
	{name: "unseal", field: "sealed", out: "plaintext", bound: provider.MaxSealed, withAAD: true,
		run: func(a *app, c *client.Client, items []batchItem) ([]batchResult, error) {
			in := make([]client.UnsealItem, len(items))
			for i, it := range items {
				in[i] = client.UnsealItem{Key: it.key, Sealed: it.payload, AAD: it.aad}
			}
			res, err := c.UnsealBatch(a.ctx, in)
			out := make([]batchResult, len(res))
			for i, r := range res {
				out[i] = batchResult{r.Version, r.Plaintext, r.Err}
			}
			return out, err
		}},
}

func (a *app) batchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch sign|mac|seal|unseal [--in FILE] [--out FILE]",
		Short: "Sign, MAC, seal or unseal many items: JSON Lines in, JSON Lines out",
		Long: `Batch reads one JSON object per line (stdin or --in) and writes one JSON
object per line (stdout or --out), in the same order, sending the items to
the daemon in batch calls (at most 1,024 items or about 6 MiB each). Bytes
are base64 (standard, with padding), as in every --json output.

  sign:   {"key":"p/k","message":"..."}               -> {"line","key","version","signature"}
  mac:    {"key":"p/k","message":"..."}               -> {"line","key","version","tag"}
  seal:   {"key":"p/k","plaintext":"...","aad":"..."} -> {"line","key","version","sealed"}
  unseal: {"key":"p/k","sealed":"...","aad":"..."}    -> {"line","key","version","plaintext"}

"aad" may be left out (empty). A sign item may carry "digest" (base64) and
"digest_hash" ("sha256", "sha384" or "sha512") instead of "message", and
"version" (a number: sign with that version, primary or retired). An item that fails (or a line that is not
such an object) gives {"line":N,"key":...,"error":{"reason","message"}} and
the others go on. The exit status is 0 when every item succeeded, else that
of the first failed item (its errno, as for a single call); a failure of a
whole call (the daemon gone) stops at once with its own status.`,
		Example: `  printf '{"key":"signing/release","message":"aGVsbG8="}\n' | keystorectl batch sign`,
		Args:    exactArgs(0, "a subcommand: sign, mac, seal or unseal"),
	}
	for _, op := range batchOps {
		cmd.AddCommand(a.batchOpCommand(op))
	}
	return cmd
}

func (a *app) batchOpCommand(op batchOp) *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:   op.name + " [--in FILE] [--out FILE]",
		Short: "Batch " + op.name + ": JSON Lines in, JSON Lines out",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			r, closeIn, err := a.openBatchInput(in)
			if err != nil {
				return err
			}
			defer closeIn()
			w, closeOut, err := a.openBatchOutput(out)
			if err != nil {
				return err
			}
			err = a.runBatch(op, r, w)
			if cerr := closeOut(); err == nil {
				err = cerr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read JSON Lines from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write JSON Lines to FILE (default stdout; a file is created 0600)")
	return cmd
}

func (a *app) openBatchInput(path string) (io.Reader, func(), error) {
	if path == "" || path == "-" {
		return a.stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fileError("open", path, err)
	}
	return f, func() { _ = f.Close() }, nil // read-only: a close error loses nothing
}

func (a *app) openBatchOutput(path string) (*bufio.Writer, func() error, error) {
	if path == "" || path == "-" {
		w := bufio.NewWriter(a.stdout)
		return w, func() error {
			if err := w.Flush(); err != nil {
				return fileError("write", "stdout", err)
			}
			return nil
		}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fileError("create", path, err)
	}
	w := bufio.NewWriter(f)
	return w, func() error {
		werr := w.Flush()
		cerr := f.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return fileError("write", path, err)
		}
		return nil
	}, nil
}

// batchFailed is the error runBatch returns when items failed: its code
// is the first failed item's, for the exit status; the items' errors are
// in the output already.
type batchFailed struct {
	first error
	n     int
}

func (e *batchFailed) Error() string {
	return fmt.Sprintf("%d batch item(s) failed; the first: %v", e.n, e.first)
}
func (e *batchFailed) Unwrap() error { return e.first }

// runBatch reads r line by line, sends the items in batches and writes
// one result line per input line to w.
func (a *app) runBatch(op batchOp, r io.Reader, w *bufio.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBatchLine)
	var c *client.Client
	var pending []batchItem
	size, line := 0, 0
	failed := &batchFailed{}
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		var res []batchResult
		var send []batchItem
		var idx []int
		for i, it := range pending {
			if it.err == nil {
				send = append(send, it)
				idx = append(idx, i)
			}
		}
		results := make([]batchResult, len(pending))
		for i, it := range pending {
			results[i].err = it.err
		}
		if len(send) > 0 {
			if c == nil {
				var err error
				if c, err = a.dial(); err != nil {
					return err
				}
			}
			var err error
			if res, err = op.run(a, c, send); err != nil {
				return err
			}
			for j, i := range idx {
				results[i] = res[j]
			}
		}
		for i, res := range results {
			if err := writeBatchLine(w, op, pending[i].line, pending[i].key, res, failed); err != nil {
				return err
			}
		}
		pending, size = pending[:0], 0
		return nil
	}
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		it := parseBatchLine(op, b, line)
		if len(pending) == client.MaxBatch || size+len(it.payload)+len(it.aad)+len(it.key) > batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		pending = append(pending, it)
		size += len(it.payload) + len(it.aad) + len(it.key) + len(it.digest)
	}
	if err := sc.Err(); err != nil {
		if ferr := flush(); ferr != nil {
			return ferr
		}
		if errors.Is(err, bufio.ErrTooLong) {
			return provider.Errorf(provider.EMSGSIZE, "input line %d is longer than %d bytes", line+1, maxBatchLine)
		}
		return fileError("read", "the input", err)
	}
	if err := flush(); err != nil {
		return err
	}
	if failed.n > 0 {
		return failed
	}
	return nil
}

// parseBatchLine decodes one input line of op; a line that is not a
// valid item gives an item with err set (EINVAL, or EMSGSIZE for a
// payload over its bound).
func parseBatchLine(op batchOp, b []byte, line int) batchItem {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return batchItem{line: line, err: provider.Errorf(provider.EINVAL, "line %d is not a JSON object: %v", line, err)}
	}
	it := batchItem{line: line}
	for name, raw := range obj {
		var err error
		switch {
		case name == "key":
			err = json.Unmarshal(raw, &it.key)
		case name == op.field:
			err = json.Unmarshal(raw, &it.payload)
		case name == "aad" && op.withAAD:
			err = json.Unmarshal(raw, &it.aad)
		case name == "digest" && op.withDigest:
			err = json.Unmarshal(raw, &it.digest)
		case name == "digest_hash" && op.withDigest:
			var h string
			if err = json.Unmarshal(raw, &h); err == nil {
				it.hash, err = provider.ParseHash(h)
			}
		case name == "version" && op.withDigest:
			err = json.Unmarshal(raw, &it.version)
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return batchItem{line: line, key: it.key, err: provider.Errorf(provider.EINVAL, "line %d: field %q: %v", line, name, err)}
		}
	}
	switch {
	case it.key == "":
		it.err = provider.Errorf(provider.EINVAL, "line %d has no \"key\"", line)
	case len(it.payload) > op.bound:
		it.err = provider.Errorf(provider.EMSGSIZE, "line %d: %s is larger than %d bytes", line, op.field, op.bound)
	case len(it.aad) > provider.MaxAAD:
		it.err = provider.Errorf(provider.EMSGSIZE, "line %d: aad is larger than %d bytes", line, provider.MaxAAD)
	case (it.hash != 0) != (it.digest != nil):
		it.err = provider.Errorf(provider.EINVAL, "line %d: \"digest\" and \"digest_hash\" go together", line)
	case it.hash != 0 && it.payload != nil:
		it.err = provider.Errorf(provider.EINVAL, "line %d: \"digest\" replaces %q: give one", line, op.field)
	}
	return it
}

// writeBatchLine writes one result line and counts a failure.
func writeBatchLine(w *bufio.Writer, op batchOp, line int, key string, res batchResult, failed *batchFailed) error {
	obj := map[string]any{"line": line, "key": key}
	if res.err != nil {
		reason := "EIO"
		if code, ok := client.CodeOf(res.err); ok {
			reason = code.String()
		}
		obj["error"] = map[string]string{"reason": reason, "message": res.err.Error()}
		if failed.n == 0 {
			failed.first = res.err
		}
		failed.n++
	} else {
		obj["version"] = res.version
		obj[op.out] = res.data
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return provider.Errorf(provider.EIO, "writing a result line: %w", err)
	}
	return nil
}
