package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/envelope"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) encryptCommand() *cobra.Command {
	var in, out, aad string
	cmd := &cobra.Command{
		Use:   "encrypt KEY [--in FILE] [--out FILE] [--aad STRING]",
		Short: "Encrypt a file of any size with a new data key sealed by KEY (envelope encryption)",
		Long: `Encrypt streams a file of any size (stdin or --in) into an envelope file
(stdout or --out): the daemon makes a fresh 32-byte data key and seals it
under KEY, a decrypt key; the data is encrypted here, in 1 MiB segments,
with Tink's streaming AEAD AES-GCM-HKDF under the data key; the sealed data
key goes into the file's header (docs/envelope.md). Memory stays bounded
whatever the size, and only the data key crosses the socket.

--aad (at most 60 KiB) is authenticated, not stored: decrypt needs it again.
--out is written to a temporary file beside it and renamed when complete,
so FILE never holds a partial envelope. Progress is shown on stderr when it
is a terminal. The key version is printed on stderr ("encrypted with
KEY@N"); with --json (which needs --out) stdout gets {"key","version",
"bytes","out"}.`,
		Example: `  keystorectl encrypt backups/db --in dump.sql --out dump.sql.ksenv
  tar c photos | keystorectl encrypt backups/photos --out photos.tar.ksenv`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := a.checkStreamFlags("encrypt", out, aad); err != nil {
				return err
			}
			if err := a.refuseBinaryToTerminal(out, "envelope (binary)", "keystorectl encrypt"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			var res envelope.Result
			err = a.stream(in, out, "encrypting", func(dst io.Writer, src io.Reader) error {
				var err error
				res, err = envelope.Encrypt(a.ctx, c, args[0], dst, src, envelope.EncryptOptions{AAD: []byte(aad)})
				return err
			})
			if err != nil {
				return streamHint(err, "encrypt")
			}
			return a.streamDone("encrypted with", res, out)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the plaintext from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the envelope to FILE (default stdout)")
	cmd.Flags().StringVar(&aad, "aad", "", "associated data (at most 60 KiB), needed again to decrypt")
	return cmd
}

func (a *app) decryptCommand() *cobra.Command {
	var in, out, aad, key string
	cmd := &cobra.Command{
		Use:   "decrypt [--in FILE] [--out FILE] [--key KEY] [--aad STRING]",
		Short: "Decrypt an envelope file that encrypt wrote",
		Long: `Decrypt reads an envelope file (stdin or --in), has the daemon unseal its
data key with the key version named in its header, and streams the
plaintext out (stdout or --out, created 0600), each 1 MiB segment
authenticated before it is written. --key KEY refuses a file encrypted with
another key before anything is unsealed. The same --aad as for encrypt is
needed.

A file that is truncated, extended, reordered or modified anywhere, a wrong
--aad or another key's file give EBADMSG (exit 74). With --out the
plaintext goes to a temporary file beside FILE, renamed only once the whole
file has authenticated and removed otherwise: FILE is never a partial or
unauthenticated plaintext. On stdout the segments before a bad one have
already been written when it fails: when the exit status is not 0, discard
what was read. Writing to a terminal is refused. Progress is shown on
stderr when it is a terminal. With --json (which needs --out) stdout gets
{"key","version","bytes","out"}.`,
		Example: `  keystorectl decrypt --in dump.sql.ksenv --out dump.sql --key backups/db
  keystorectl decrypt --in photos.tar.ksenv | tar x   # check the exit status`,
		Args: exactArgs(0, "no arguments (the key is in the file's header; --key checks it)"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := a.checkStreamFlags("decrypt", out, aad); err != nil {
				return err
			}
			if (out == "" || out == "-") && isTerminal(a.stdout) {
				return withHint(usageError{errors.New("refusing to write the plaintext to the terminal: it is written before the whole file has authenticated"), "keystorectl decrypt"},
					"write it to a file with --out FILE (renamed only once it authenticated), or pipe it and check the exit status")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			var res envelope.Result
			err = a.stream(in, out, "decrypting", func(dst io.Writer, src io.Reader) error {
				var err error
				res, err = envelope.Decrypt(a.ctx, c, dst, src, envelope.DecryptOptions{ExpectKey: key, AAD: []byte(aad)})
				return err
			})
			if err != nil {
				return streamHint(err, "decrypt")
			}
			return a.streamDone("decrypted; encrypted with", res, out)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the envelope from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the plaintext to FILE (default stdout; not a terminal)")
	cmd.Flags().StringVar(&aad, "aad", "", "the associated data given to encrypt")
	cmd.Flags().StringVar(&key, "key", "", "refuse a file not encrypted with KEY")
	a.setup(cmd.RegisterFlagCompletionFunc("key", a.completeKeys))
	return cmd
}

// checkStreamFlags checks what encrypt and decrypt check before any work.
func (a *app) checkStreamFlags(name, out, aad string) error {
	if len(aad) > envelope.MaxAAD {
		return withHint(provider.Errorf(provider.EMSGSIZE, "--aad is larger than %d bytes", envelope.MaxAAD),
			"an envelope's AAD may be at most "+sizeString(envelope.MaxAAD))
	}
	if a.json && (out == "" || out == "-") {
		return usageError{fmt.Errorf("--json needs --out FILE: the %s output is a stream", name), "keystorectl " + name}
	}
	return nil
}

// stream runs do from the input (--in, or stdin) to the output (--out,
// or stdout), with progress on a terminal. A file output is written to a
// temporary file in its directory, synced and renamed over it when do
// succeeds, and removed when it fails: the named file is whole or
// untouched.
func (a *app) stream(in, out, verb string, do func(dst io.Writer, src io.Reader) error) error {
	var src io.Reader = a.stdin
	var total int64 = -1
	if in != "" && in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return fileError("open", in, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			total = st.Size()
		}
		src = f
	} else if isTerminal(a.stdin) {
		fmt.Fprintf(a.stderr, "keystorectl: reading the input from the terminal; end it with Ctrl-D\n")
	}
	if isTerminal(a.stderr) {
		p := &progress{w: a.stderr, verb: verb, total: total}
		defer p.finish()
		src = &countingReader{r: src, p: p}
	}
	if out == "" || out == "-" {
		return do(a.stdout, src)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".keystorectl-*")
	if err != nil {
		return fileError("create a temporary file beside", out, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()           // the operation's error is the one to report
			_ = os.Remove(tmp.Name()) // best effort: it holds no complete output
		}
	}()
	if err := do(tmp, src); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fileError("sync", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fileError("close", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fileError("rename the temporary file to", out, err)
	}
	done = true
	return nil
}

// streamDone reports a finished encrypt or decrypt.
func (a *app) streamDone(what string, res envelope.Result, out string) error {
	if a.json {
		return a.emit(struct {
			Key     string `json:"key"`
			Version uint32 `json:"version"`
			Bytes   int64  `json:"bytes"`
			Out     string `json:"out"`
		}{res.Key, res.Version, res.Plaintext, out})
	}
	fmt.Fprintf(a.stderr, "keystorectl: %s %s@%d (%s of plaintext)\n", what, res.Key, res.Version, byteSize(res.Plaintext))
	return nil
}

// streamHint gives the hints of an encrypt or decrypt error.
func streamHint(err error, op string) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.EBADMSG:
		if op == "decrypt" {
			return withHint(err, "the file is truncated or modified, the --aad differs, or it is not an envelope of that key; no output file was written")
		}
	case provider.EPERM:
		return withHint(err, "encrypt needs a decrypt key of your app (aes-256-gcm, xchacha20-poly1305, chacha20-poly1305): keystorectl create KEY")
	case provider.ENOTSUP:
		if op == "decrypt" {
			return withHint(err, "the file was written by a newer keystorectl; upgrade it")
		}
	}
	return err
}

// progress shows how far a stream is, on a terminal: one line, rewritten
// at every MiB read.
type progress struct {
	w            io.Writer
	verb         string
	total        int64 // -1: unknown
	done, shown  int64
	printedAtAll bool
}

const progressStep = 1 << 20

func (p *progress) add(n int) {
	p.done += int64(n)
	if p.done-p.shown >= progressStep {
		p.show()
	}
}

func (p *progress) show() {
	p.shown = p.done
	p.printedAtAll = true
	if p.total > 0 {
		fmt.Fprintf(p.w, "\rkeystorectl: %s %s of %s (%d%%)", p.verb, byteSize(p.done), byteSize(p.total), p.done*100/p.total)
		return
	}
	fmt.Fprintf(p.w, "\rkeystorectl: %s %s", p.verb, byteSize(p.done))
}

// finish ends the progress line.
func (p *progress) finish() {
	if p.printedAtAll {
		p.show()
		fmt.Fprintln(p.w)
	}
}

// countingReader counts what it reads into a progress.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(n)
	return n, err
}

// byteSize prints a size for people: "812 B", "3.4 MiB", "1.0 GiB".
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}
