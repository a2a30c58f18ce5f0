package main

import (
	"context"
	"crypto"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) signCommand() *cobra.Command {
	var in, out, digest string
	cmd := &cobra.Command{
		Use:   "sign KEY [--digest sha256|sha384|sha512] [--in FILE] [--out FILE]",
		Short: "Sign a message (stdin or --in), or its digest, with the key's primary version",
		Long: `Sign reads a message (at most 64 KiB) from stdin or --in and writes the raw
signature to stdout or --out. The version that signed is printed on stderr
("signed by KEY@N"); verify needs it. With --json stdout gets
{"key","version","signature"} (signature in base64) instead.

--digest HASH hashes the input here, streaming it (any size), and sends only
the digest: for ECDSA, RSA and ed25519ph keys, with the key's own hash
(sha256: ecdsa-p256-sha256 and rsa-*; sha384: ecdsa-p384-sha384; sha512:
ed25519ph). The signature is the one the message itself would get.
ed25519, ed448 and ML-DSA keys sign whole messages only.

Signatures are standard: Ed25519 (RFC 8032), ECDSA as ASN.1 DER, RSA
PSS (salt 32) or PKCS #1 v1.5. They verify with OpenSSL, e.g.
  openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in msg -sigfile sig   (ed25519)
  openssl dgst -sha256 -verify key.pem -signature sig FILE                    (ecdsa, rsa-*-pkcs1)`,
		Example: `  keystorectl sign signing/release --digest sha256 --in release.tar --out release.sig
  echo -n hello | keystorectl --json sign signing/ed`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			hash, err := parseDigestFlag(digest, "keystorectl sign")
			if err != nil {
				return err
			}
			if err := a.refuseBinaryToTerminal(out, "signature", "keystorectl sign"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			input, err := a.signInput(in, hash)
			if err != nil {
				return err
			}
			sig, err := c.SignWith(a.ctx, args[0], 0, input)
			if err != nil {
				return signHint(err, "sign", hash)
			}
			if a.json {
				if err := a.writeOutputUnlessJSON(out, sig.Signature); err != nil {
					return err
				}
				return a.emit(struct {
					Key       string `json:"key"`
					Version   uint32 `json:"version"`
					Signature []byte `json:"signature"`
				}{sig.Key, sig.Version, sig.Signature})
			}
			if err := a.writeOutput(out, sig.Signature); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "keystorectl: signed by %s@%d\n", sig.Key, sig.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the message from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the signature to FILE (default stdout)")
	addDigestFlag(a, cmd, &digest)
	return cmd
}

func (a *app) verifyCommand() *cobra.Command {
	var in, sigFile, digest string
	cmd := &cobra.Command{
		Use:   "verify KEY@N --sig FILE [--digest sha256|sha384|sha512] [--in FILE]",
		Short: "Verify a signature (exit 0 if valid, 74 EBADMSG if not)",
		Long: `Verify checks the raw signature in --sig over the message from stdin or --in
against version N of KEY (the version sign reported). A retired version
still verifies; a revoked key gives EKEYREVOKED (exit 128). --digest HASH
hashes the input here (any size) and sends only the digest, as for sign;
a signature made with or without --digest verifies either way.`,
		Example:           `  keystorectl verify signing/release@1 --digest sha256 --sig release.sig --in release.tar`,
		Args:              exactArgs(1, "one KEY@N"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			key, version, err := client.ParseKeyRef(args[0])
			if err != nil {
				return err
			}
			if version == 0 {
				return usageError{fmt.Errorf("verify needs KEY@N, the version that signed (sign prints it; see also: keystorectl show %s)", key), "keystorectl verify"}
			}
			hash, err := parseDigestFlag(digest, "keystorectl verify")
			if err != nil {
				return err
			}
			if err := checkSigInputs(sigFile, in, "keystorectl verify"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			sig, err := a.readInput(sigFile, provider.MaxSignature, "signature")
			if err != nil {
				return err
			}
			input, err := a.signInput(in, hash)
			if err != nil {
				return err
			}
			ref := key + "@" + strconv.FormatUint(uint64(version), 10)
			if err := c.VerifyWith(a.ctx, key, version, input, sig); err != nil {
				if code, _ := client.CodeOf(err); code == provider.EBADMSG {
					return withHint(err, "the signature was not made by "+ref+" over this message (or the message or signature changed)")
				}
				return signHint(err, "verify", hash)
			}
			return a.printValid(key, version, "signature by "+ref)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the message from FILE (default stdin)")
	cmd.Flags().StringVar(&sigFile, "sig", "", "the raw signature FILE (required)")
	addDigestFlag(a, cmd, &digest)
	a.setup(cmd.MarkFlagRequired("sig"))
	return cmd
}

// digestHashes are the values of --digest.
var digestHashes = []string{"sha256", "sha384", "sha512"}

func addDigestFlag(a *app, cmd *cobra.Command, digest *string) {
	cmd.Flags().StringVar(digest, "digest", "", "hash the input here (streamed, any size) and send only its digest: sha256, sha384 or sha512, the key's own hash")
	a.setup(cmd.RegisterFlagCompletionFunc("digest", cobra.FixedCompletions(digestHashes, cobra.ShellCompDirectiveNoFileComp)))
}

// parseDigestFlag parses --digest: "" (none) or a hash name.
func parseDigestFlag(s, cmd string) (crypto.Hash, error) {
	if s == "" {
		return 0, nil
	}
	h, err := provider.ParseHash(s)
	if err != nil {
		return 0, usageError{fmt.Errorf("--digest %q is not one of %s", s, strings.Join(digestHashes, ", ")), cmd}
	}
	return h, nil
}

// signInput reads what sign and verify send: the message (at most 64
// KiB), or with a hash the digest of the whole input, streamed.
func (a *app) signInput(in string, hash crypto.Hash) (client.SignInput, error) {
	if hash == 0 {
		msg, err := a.readInput(in, provider.MaxSignMessage, "message")
		if code, _ := client.CodeOf(err); code == provider.EMSGSIZE {
			err = withHint(err, "a message may be at most "+sizeString(provider.MaxSignMessage)+
				"; for a larger input sign its digest: --digest sha256 (ECDSA and RSA keys; sha384 for ecdsa-p384-sha384, sha512 for ed25519ph)")
		}
		return client.SignInput{Message: msg}, err
	}
	digest, err := a.hashInput(in, hash, "message")
	if err != nil {
		return client.SignInput{}, err
	}
	return client.SignInput{Hash: hash, Digest: digest}, nil
}

// signHint gives the hints of a sign or verify error.
func signHint(err error, op string, hash crypto.Hash) error {
	code, _ := client.CodeOf(err)
	switch {
	case hash != 0 && code == provider.EPERM:
		return withHint(err, "--digest needs an ECDSA, RSA or ed25519ph key: ed25519, ed448 and ML-DSA keys sign whole messages only (of at most 64 KiB), or the key is not yours or not a signing key")
	case hash != 0 && code == provider.EINVAL:
		return withHint(err, "--digest must be the key's own hash: sha256 for ecdsa-p256-sha256 and rsa-*, sha384 for ecdsa-p384-sha384, sha512 for ed25519ph")
	}
	return useHint(err, op, provider.MaxSignMessage, "message")
}

func (a *app) macCommand() *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:   "mac KEY [--in FILE] [--out FILE]",
		Short: "Compute the HMAC tag of a message (stdin or --in) with the key's primary version",
		Long: `Mac reads a message (at most 1 MiB) from stdin or --in and writes its raw
HMAC tag (32, 48 or 64 bytes for hmac-sha256/384/512) to stdout or --out.
The version is printed on stderr ("tag by KEY@N"); verify-mac needs it.
With --json stdout gets {"key","version","tag"} (tag in base64) instead.`,
		Example: `  keystorectl create tokens/session --alg hmac-sha256
  keystorectl mac tokens/session --in token.json --out token.tag`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := a.refuseBinaryToTerminal(out, "tag", "keystorectl mac"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			msg, err := a.readInput(in, provider.MaxMACMessage, "message")
			if err != nil {
				return err
			}
			m, err := c.MAC(a.ctx, args[0], msg)
			if err != nil {
				return macHint(err, "mac")
			}
			if err := a.writeOutputUnlessJSON(out, m.Tag); err != nil {
				return err
			}
			if a.json {
				return a.emit(struct {
					Key     string `json:"key"`
					Version uint32 `json:"version"`
					Tag     []byte `json:"tag"`
				}{m.Key, m.Version, m.Tag})
			}
			fmt.Fprintf(a.stderr, "keystorectl: tag by %s@%d\n", m.Key, m.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the message from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the tag to FILE (default stdout)")
	return cmd
}

func (a *app) verifyMACCommand() *cobra.Command {
	var in, tagFile string
	cmd := &cobra.Command{
		Use:   "verify-mac KEY@N --tag FILE [--in FILE]",
		Short: "Check an HMAC tag (exit 0 if it matches, 74 EBADMSG if not)",
		Long: `Verify-mac checks the raw tag in --tag over the message from stdin or --in
against version N of KEY (the version mac reported), comparing in constant
time inside the daemon. A retired version still verifies; a truncated tag
does not match; a revoked key gives EKEYREVOKED (exit 128).`,
		Example:           `  keystorectl verify-mac tokens/session@1 --tag token.tag --in token.json`,
		Args:              exactArgs(1, "one KEY@N"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			key, version, err := client.ParseKeyRef(args[0])
			if err != nil {
				return err
			}
			if version == 0 {
				return usageError{fmt.Errorf("verify-mac needs KEY@N, the version that made the tag (mac prints it)"), "keystorectl verify-mac"}
			}
			if (tagFile == "" || tagFile == "-") && (in == "" || in == "-") {
				return usageError{fmt.Errorf("--tag and the message cannot both come from stdin"), "keystorectl verify-mac"}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			tag, err := a.readInput(tagFile, provider.MaxMAC, "tag")
			if err != nil {
				return err
			}
			msg, err := a.readInput(in, provider.MaxMACMessage, "message")
			if err != nil {
				return err
			}
			ref := key + "@" + strconv.FormatUint(uint64(version), 10)
			if err := c.VerifyMAC(a.ctx, key, version, msg, tag); err != nil {
				if code, _ := client.CodeOf(err); code == provider.EBADMSG {
					return withHint(err, "the tag was not made by "+ref+" over this message (or the message or tag changed)")
				}
				return macHint(err, "verify-mac")
			}
			return a.printValid(key, version, "tag by "+ref)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the message from FILE (default stdin)")
	cmd.Flags().StringVar(&tagFile, "tag", "", "the raw tag FILE (required)")
	a.setup(cmd.MarkFlagRequired("tag"))
	return cmd
}

// macHint gives the hints of a mac or verify-mac error.
func macHint(err error, op string) error {
	if code, _ := client.CodeOf(err); code == provider.EPERM {
		return withHint(err, "this key belongs to another app, or you are not allowed, or the key is not a mac key (create one with --alg hmac-sha256)")
	}
	return useHint(err, op, provider.MaxMACMessage, "message")
}

func (a *app) sealCommand() *cobra.Command {
	return a.sealingCommand(sealing{
		name: "seal", input: "plaintext", bound: provider.MaxSealPlaintext,
		short: "Encrypt data (stdin or --in) under the key's primary version",
		long: `Seal encrypts a plaintext (at most 1 MiB) from stdin or --in and writes the
sealed envelope (binary; it records the key version) to stdout or --out.
--aad (at most 64 KiB) is authenticated, not stored: unseal needs it again.
With --json stdout gets {"key","version","sealed"} (sealed in base64).`,
		example: `  keystorectl seal db/secrets --aad row-7 --in secret.txt --out secret.sealed`,
		aadHelp: "associated data, needed again to unseal",
		do:      (*client.Client).Seal,
	})
}

func (a *app) rewrapCommand() *cobra.Command {
	return a.sealingCommand(sealing{
		name: "rewrap", input: "sealed data", bound: provider.MaxSealed,
		short: "Re-seal sealed data under the key's primary version, inside the daemon",
		long: `Rewrap takes data sealed under an older version of KEY (stdin or --in) and
writes it sealed under the primary version (stdout or --out), without the
plaintext ever leaving the daemon: after a rotation, rewrap what you stored,
then set --min-decryption-version (set-policy) to retire the old versions.
The same --aad as for seal is needed, and stays the same. A wrong key, wrong
AAD or modified data give EBADMSG (exit 74) and no output. With --json
stdout gets {"key","version","sealed"} (sealed in base64).`,
		example: `  keystorectl rewrap db/secrets --aad row-7 --in secret.sealed --out secret.sealed.new`,
		aadHelp: "the associated data given to seal (kept)",
		do:      (*client.Client).Rewrap,
	})
}

// sealing describes a command that reads an input and writes sealed data:
// seal (from a plaintext) and rewrap (from sealed data).
type sealing struct {
	name, input          string
	bound                int
	short, long, example string
	aadHelp              string
	do                   func(c *client.Client, ctx context.Context, key string, in, aad []byte) (client.Sealed, error)
}

func (a *app) sealingCommand(o sealing) *cobra.Command {
	var in, out, aad string
	cmd := &cobra.Command{
		Use:               o.name + " KEY [--aad STRING] [--in FILE] [--out FILE]",
		Short:             o.short,
		Long:              o.long,
		Example:           o.example,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := checkAAD(aad); err != nil {
				return err
			}
			if err := a.refuseBinaryToTerminal(out, "sealed data", "keystorectl "+o.name); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			data, err := a.readInput(in, o.bound, o.input)
			if err != nil {
				return err
			}
			s, err := o.do(c, a.ctx, args[0], data, []byte(aad))
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EBADMSG {
					return withHint(err, "wrong key, wrong --aad, or the sealed data was modified or truncated")
				}
				return useHint(err, o.name, o.bound, o.input)
			}
			if err := a.writeOutputUnlessJSON(out, s.Data); err != nil {
				return err
			}
			if a.json {
				return a.emit(struct {
					Key     string `json:"key"`
					Version uint32 `json:"version"`
					Sealed  []byte `json:"sealed"`
				}{args[0], s.Version, s.Data})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the "+o.input+" from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the sealed data to FILE (default stdout)")
	cmd.Flags().StringVar(&aad, "aad", "", o.aadHelp)
	return cmd
}

func (a *app) unsealCommand() *cobra.Command {
	var in, out, aad string
	cmd := &cobra.Command{
		Use:   "unseal KEY [--aad STRING] [--in FILE] [--out FILE]",
		Short: "Decrypt sealed data (stdin or --in)",
		Long: `Unseal decrypts what seal wrote (from stdin or --in) and writes the
plaintext to stdout or --out (created 0600). The same --aad as for seal is
needed. A wrong key, wrong AAD or modified data give EBADMSG (exit 74) and
no output. With --json stdout gets {"key","version","plaintext"} (base64),
or {"key","version","out"} when --out is given.`,
		Example:           `  keystorectl unseal db/secrets --aad row-7 --in secret.sealed`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := checkAAD(aad); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			sealed, err := a.readInput(in, provider.MaxSealed, "sealed data")
			if err != nil {
				return err
			}
			u, err := c.Unseal(a.ctx, args[0], sealed, []byte(aad))
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EBADMSG {
					return withHint(err, "wrong key, wrong --aad, or the sealed data was modified or truncated")
				}
				return useHint(err, "unseal", provider.MaxSealed, "sealed data")
			}
			if err := a.refuseBinaryText(out, u.Plaintext, "plaintext", "keystorectl unseal"); err != nil {
				return err
			}
			if err := a.writeOutputUnlessJSON(out, u.Plaintext); err != nil {
				return err
			}
			if a.json {
				if out != "" && out != "-" {
					return a.emit(struct {
						Key     string `json:"key"`
						Version uint32 `json:"version"`
						Out     string `json:"out"`
					}{args[0], u.Version, out})
				}
				return a.emit(struct {
					Key       string `json:"key"`
					Version   uint32 `json:"version"`
					Plaintext []byte `json:"plaintext"`
				}{args[0], u.Version, u.Plaintext})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the sealed data from FILE (default stdin)")
	cmd.Flags().StringVar(&out, "out", "", "write the plaintext to FILE (default stdout)")
	cmd.Flags().StringVar(&aad, "aad", "", "the associated data given to seal")
	return cmd
}

// writeOutputUnlessJSON writes data to --out, or to stdout unless --json
// (whose object carries the data instead).
func (a *app) writeOutputUnlessJSON(out string, data []byte) error {
	if a.json && (out == "" || out == "-") {
		return nil
	}
	return a.writeOutput(out, data)
}

// checkAAD checks --aad against its bound before any work.
func checkAAD(aad string) error {
	if len(aad) > provider.MaxAAD {
		return withHint(provider.Errorf(provider.EMSGSIZE, "--aad is larger than %d bytes", provider.MaxAAD),
			"the AAD may be at most "+sizeString(provider.MaxAAD))
	}
	return nil
}

// useHint gives the usual hints of a key operation's errors.
func useHint(err error, op string, bound int, what string) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.EMSGSIZE:
		return withHint(err, op+" accepts a "+what+" of at most "+sizeString(bound))
	case provider.EPERM:
		return withHint(err, "this key belongs to another app, or you are not allowed, or the key is not for "+op+" (sign/verify need a signing key, seal/unseal a decrypt key, mac/verify-mac a mac key)")
	}
	return err
}

// checkSigInputs refuses, as a usage error of cmd, a signature and a
// message that would both come from stdin.
func checkSigInputs(sigFile, in, cmd string) error {
	if (sigFile == "" || sigFile == "-") && (in == "" || in == "-") {
		return usageError{fmt.Errorf("--sig and the message cannot both come from stdin"), cmd}
	}
	return nil
}

// readSigAndMessage reads a verify's signature (--sig) and message (--in
// or stdin), each within its bound.
func (a *app) readSigAndMessage(sigFile, in string) (sig, msg []byte, err error) {
	if sig, err = a.readInput(sigFile, provider.MaxSignature, "signature"); err != nil {
		return nil, nil, err
	}
	if msg, err = a.readInput(in, provider.MaxSignMessage, "message"); err != nil {
		return nil, nil, err
	}
	return sig, msg, nil
}

// printValid reports a signature or tag that verified: {"key","version",
// "valid":true} with --json, else "valid <what>".
func (a *app) printValid(key string, version uint32, what string) error {
	if a.json {
		return a.emit(struct {
			Key     string `json:"key"`
			Version uint32 `json:"version"`
			Valid   bool   `json:"valid"`
		}{key, version, true})
	}
	return a.printf("valid %s\n", what)
}
