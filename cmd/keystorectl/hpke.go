package main

import (
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) datakeyCommand() *cobra.Command {
	var spec, aad string
	var bytes int
	var noPlaintext bool
	cmd := &cobra.Command{
		Use:   "datakey KEY [--spec SPEC | --bytes N] [--aad STRING] [--no-plaintext]",
		Short: "Make a data key: a fresh random key, and the same key sealed under KEY",
		Long: `Datakey asks the daemon for a fresh random data key and the same key sealed
under the primary version of KEY, a decrypt key, with --aad (at most 64 KiB)
as associated data: encrypt with the plaintext key yourself, forget it,
store the sealed one beside the data; unseal (with the same --aad) gives
the key back. encrypt does all of this for a file.

--spec is the cipher the key is for: aes-256-gcm (the default, 32 bytes),
aes-128-gcm (16), chacha20-poly1305 or xchacha20-poly1305 (32); --bytes N a
size of 16 to 64 bytes instead. --no-plaintext returns the sealed key only,
for a service that stores it now and unseals it later.

Output: "key KEY@N", then "plaintext BASE64" (unless --no-plaintext) and
"sealed BASE64", one per line; with --json {"key","version","plaintext",
"sealed"} (plaintext absent with --no-plaintext). The plaintext data key is
a secret: it is printed because that is what was asked for.`,
		Example: `  keystorectl --json datakey db/files --aad invoice-7
  keystorectl datakey db/files --no-plaintext`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAAD(aad); err != nil {
				return err
			}
			if spec != "" && cmd.Flags().Changed("bytes") {
				return usageError{fmt.Errorf("give --spec or --bytes, not both"), "keystorectl datakey"}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			s := client.DataKeySpec{Spec: spec, Bytes: bytes}
			var d client.DataKey
			if noPlaintext {
				d, err = c.GenerateDataKeyWithoutPlaintext(a.ctx, args[0], s, []byte(aad))
			} else {
				d, err = c.GenerateDataKey(a.ctx, args[0], s, []byte(aad))
			}
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EINVAL {
					return withHint(err, "--spec is aes-256-gcm, aes-128-gcm, chacha20-poly1305 or xchacha20-poly1305; --bytes is 16 to 64")
				}
				return useHint(err, "datakey", provider.MaxAAD, "AAD")
			}
			defer d.Wipe()
			if a.json {
				return a.emit(struct {
					Key       string `json:"key"`
					Version   uint32 `json:"version"`
					Plaintext []byte `json:"plaintext,omitempty"`
					Sealed    []byte `json:"sealed"`
				}{d.Key, d.Version, d.Plaintext, d.Sealed})
			}
			text := "key " + d.Key + "@" + strconv.FormatUint(uint64(d.Version), 10) + "\n"
			if !noPlaintext {
				text += "plaintext " + b64(d.Plaintext) + "\n"
			}
			text += "sealed " + b64(d.Sealed) + "\n"
			return a.printf("%s", text)
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "aes-256-gcm (default), aes-128-gcm, chacha20-poly1305 or xchacha20-poly1305")
	cmd.Flags().IntVar(&bytes, "bytes", 0, "a data key of N bytes (16 .. 64) instead of --spec")
	cmd.Flags().StringVar(&aad, "aad", "", "associated data, needed again to unseal the sealed key")
	cmd.Flags().BoolVar(&noPlaintext, "no-plaintext", false, "return the sealed data key only")
	a.setup(cmd.RegisterFlagCompletionFunc("spec", cobra.FixedCompletions([]string{"aes-256-gcm", "aes-128-gcm", "chacha20-poly1305", "xchacha20-poly1305"}, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
}

func (a *app) hpkeEncryptCommand() *cobra.Command {
	var in, out, info, aad string
	cmd := &cobra.Command{
		Use:   "hpke-encrypt KEY[@N] [--in FILE] [--out FILE] [--info STRING] [--aad STRING]",
		Short: "Encrypt data to an asymmetric-decrypt key's public key (HPKE, here)",
		Long: `Hpke-encrypt encrypts a message (at most 1 MiB + 240 bytes; stdin or --in) to
the public key of KEY's current version, or version N, with HPKE (RFC 9180,
base mode) here, as any sender holding the public key could with any RFC
9180 implementation: the daemon only hands out the public key. It writes
enc ‖ ciphertext (the KEM's encapsulated key, then the AEAD output) to
stdout or --out, and the version on stderr ("encrypted to KEY@N"):
hpke-decrypt needs it. --info (at most 4 KiB) and --aad (at most 64 KiB)
must be given again to decrypt. With --json stdout gets {"key","version",
"algorithm","enc","ciphertext"} (base64).`,
		Example:           `  keystorectl hpke-encrypt inbox/orders --info orders-v1 --in order.json --out order.hpke`,
		Args:              exactArgs(1, "one KEY[@N]"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			key, version, err := client.ParseKeyRef(args[0])
			if err != nil {
				return err
			}
			if err := checkHPKEFlags(info, aad); err != nil {
				return err
			}
			if err := a.refuseBinaryToTerminal(out, "HPKE message", "keystorectl hpke-encrypt"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			pub, err := c.PublicKey(a.ctx, key, version)
			if err != nil {
				return hpkeHint(err)
			}
			msg, err := a.readInput(in, client.MaxHPKEPlaintext, "plaintext")
			if err != nil {
				return err
			}
			enc, ct, err := client.HPKESeal(pub, []byte(info), []byte(aad), msg)
			if err != nil {
				return hpkeHint(err)
			}
			if a.json {
				if err := a.writeOutputUnlessJSON(out, append(enc, ct...)); err != nil {
					return err
				}
				return a.emit(struct {
					Key        string `json:"key"`
					Version    uint32 `json:"version"`
					Algorithm  string `json:"algorithm"`
					Enc        []byte `json:"enc"`
					Ciphertext []byte `json:"ciphertext"`
				}{pub.Key, pub.Version, string(pub.Algorithm), enc, ct})
			}
			if err := a.writeOutput(out, append(enc, ct...)); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "keystorectl: encrypted to %s@%d (%s)\n", pub.Key, pub.Version, pub.Algorithm)
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the plaintext from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write enc ‖ ciphertext to FILE (default stdout)")
	cmd.Flags().StringVar(&info, "info", "", "HPKE info (at most 4 KiB), needed again to decrypt")
	cmd.Flags().StringVar(&aad, "aad", "", "HPKE aad (at most 64 KiB), needed again to decrypt")
	return cmd
}

func (a *app) hpkeDecryptCommand() *cobra.Command {
	var in, out, info, aad string
	cmd := &cobra.Command{
		Use:   "hpke-decrypt KEY@N [--in FILE] [--out FILE] [--info STRING] [--aad STRING]",
		Short: "Decrypt an HPKE message (enc ‖ ciphertext) with version N of KEY, in the daemon",
		Long: `Hpke-decrypt reads enc ‖ ciphertext (what hpke-encrypt writes; stdin or --in),
has the daemon decrypt it with version N of KEY (the version the sender
encrypted to; retired versions decrypt too) and writes the plaintext to
stdout or --out (created 0600). The size of enc comes from the key's suite:
32 bytes for hpke-x25519, 65 for hpke-p256, 1120 for hpke-mlkem768x25519.
--info and --aad must be the sender's. A message that does not open
(tampered, another key's, another info or aad) gives EBADMSG (exit 74) and
no output. With --json stdout gets {"key","version","plaintext"} (base64),
or {"key","version","out"} with --out.`,
		Example:           `  keystorectl hpke-decrypt inbox/orders@1 --info orders-v1 --in order.hpke --out order.json`,
		Args:              exactArgs(1, "one KEY@N"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			key, version, err := client.ParseKeyRef(args[0])
			if err != nil {
				return err
			}
			if version == 0 {
				return usageError{fmt.Errorf("hpke-decrypt needs KEY@N, the version the sender encrypted to (hpke-encrypt prints it)"), "keystorectl hpke-decrypt"}
			}
			if err := checkHPKEFlags(info, aad); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			k, err := c.Get(a.ctx, key)
			if err != nil {
				return err
			}
			suite, ok := client.HPKESuiteOf(k.Algorithm)
			if !ok || suite.EncSize() == 0 {
				return withHint(&provider.Error{Code: provider.EPERM, Op: "hpke-decrypt", Key: k.ID, Msg: "not an HPKE (asymmetric-decrypt) key: " + string(k.Algorithm)},
					"hpke-decrypt needs a key made with --use asymmetric-decrypt")
			}
			data, err := a.readInput(in, suite.EncSize()+provider.MaxHPKECiphertext, "HPKE message")
			if err != nil {
				return err
			}
			if len(data) < suite.EncSize()+16 {
				return withHint(provider.Errorf(provider.EBADMSG, "an HPKE message of %d bytes: %s needs %d bytes of enc and a 16-byte tag at least", len(data), k.Algorithm, suite.EncSize()),
					"the input must be enc ‖ ciphertext, as hpke-encrypt writes it")
			}
			d, err := c.Decrypt(a.ctx, key, version, client.HPKEMessage{
				Enc: data[:suite.EncSize()], Ciphertext: data[suite.EncSize():], Info: []byte(info), AAD: []byte(aad),
			})
			if err != nil {
				return hpkeHint(err)
			}
			defer clear(d.Plaintext)
			if err := a.refuseBinaryText(out, d.Plaintext, "plaintext", "keystorectl hpke-decrypt"); err != nil {
				return err
			}
			if err := a.writeOutputUnlessJSON(out, d.Plaintext); err != nil {
				return err
			}
			if a.json {
				if out != "" && out != "-" {
					return a.emit(struct {
						Key     string `json:"key"`
						Version uint32 `json:"version"`
						Out     string `json:"out"`
					}{d.Key, d.Version, out})
				}
				return a.emit(struct {
					Key       string `json:"key"`
					Version   uint32 `json:"version"`
					Plaintext []byte `json:"plaintext"`
				}{d.Key, d.Version, d.Plaintext})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read enc ‖ ciphertext from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the plaintext to FILE (default stdout)")
	cmd.Flags().StringVar(&info, "info", "", "the sender's HPKE info")
	cmd.Flags().StringVar(&aad, "aad", "", "the sender's HPKE aad")
	return cmd
}

// checkHPKEFlags checks --info and --aad against their bounds.
func checkHPKEFlags(info, aad string) error {
	if len(info) > provider.MaxHPKEInfo {
		return withHint(provider.Errorf(provider.EMSGSIZE, "--info is larger than %d bytes", provider.MaxHPKEInfo),
			"the HPKE info may be at most "+sizeString(provider.MaxHPKEInfo))
	}
	return checkAAD(aad)
}

// hpkeHint gives the hints of hpke-encrypt and hpke-decrypt errors.
func hpkeHint(err error) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.EBADMSG:
		return withHint(err, "wrong key or version, another --info or --aad, or the message was modified or truncated")
	case provider.EPERM:
		return withHint(err, "HPKE needs an asymmetric-decrypt key of your app: keystorectl create KEY --use asymmetric-decrypt")
	case provider.EMSGSIZE:
		return withHint(err, "an HPKE message's plaintext may be at most "+sizeString(client.MaxHPKEPlaintext)+"; for more, encrypt a data key to it, or use keystorectl encrypt")
	}
	return err
}

// b64 is the standard base64 of the text outputs, as --json's.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
