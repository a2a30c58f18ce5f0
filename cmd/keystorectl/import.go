package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// importFormats are the values of import --format.
var importFormats = []string{"pem", "der", "raw", "hex"}

// maxImportInput bounds what import reads: a PEM of the largest PKCS #8
// material, with room for comments and other blocks.
const maxImportInput = 64 << 10

func (a *app) importCommand() *cobra.Command {
	var alg, in, format, wrapping string
	cmd := &cobra.Command{
		Use:   "import KEY --alg ALG [--in FILE|-] [--format pem|der|raw|hex] [--wrapping-alg ALG]",
		Short: "Import existing key material into a new key, or as a new version of an imported key",
		Long: `Import brings key material made elsewhere into keystored (BYOK). It reads the
material (--in FILE, or stdin) into memory, gets one-time import parameters
from the daemon (an HPKE wrapping public key made for this import inside
the provider, valid one minute), wraps the material here to that key with
HPKE, and sends only the wrapped form; the material is wiped from memory
and never written anywhere. The key is created (origin "imported"), or an
existing imported key gets a new primary version.

Formats (--format; the default is pem for asymmetric algorithms and raw
for decrypt and mac ones):
  pem  a PEM PKCS #8 "PRIVATE KEY" (openssl genpkey), or a traditional
       "EC PRIVATE KEY" / "RSA PRIVATE KEY", converted to PKCS #8 here;
       an encrypted PEM must be decrypted first (openssl pkey ... | import)
  der  PKCS #8 DER
  raw  the raw key bytes, exactly the key's size (32 for aes-256-gcm,
       chacha20-poly1305, xchacha20-poly1305 and hmac-sha256, 48 for
       hmac-sha384, 64 for hmac-sha512); no trailing newline
  hex  the same bytes in hex (whitespace ignored), e.g. openssl rand -hex 32
Importable: every decrypt and mac algorithm, ed25519, ed25519ph, ecdsa-*,
rsa-* (the size must match, exponent 65537), hpke-x25519 and hpke-p256
(X25519 and P-256 private keys). Not importable (ENOTSUP): ed448, ml-dsa-*,
hpke-mlkem768x25519.

Errors: material of another algorithm or size EINVAL (exit 22); an
existing generated key EPERM (exit 1); import parameters that expired
EKEYEXPIRED (exit 127). --wrapping-alg picks the wrapping suite
(hpke-mlkem768x25519-sha256-aes256gcm, the post-quantum default;
hpke-x25519-sha256-chacha20poly1305; hpke-p256-sha256-aes128gcm).`,
		Example: `  openssl genpkey -algorithm ed25519 | keystorectl import signing/legacy --alg ed25519 --in -
  keystorectl import signing/tls --alg ecdsa-p256-sha256 --in tls-key.pem
  openssl rand -hex 32 | keystorectl import db/legacy --alg aes-256-gcm --format hex`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			asymmetric := true
			switch client.AlgorithmUse(client.Algorithm(alg)) {
			case client.UseDecrypt, client.UseMAC:
				asymmetric = false
			}
			if format == "" {
				format = "pem"
				if !asymmetric {
					format = "raw"
				}
			}
			if !slices.Contains(importFormats, format) {
				return usageError{fmt.Errorf("--format %q is not one of %s", format, strings.Join(importFormats, ", ")), "keystorectl import"}
			}
			if raw := format == "raw" || format == "hex"; raw == asymmetric {
				if asymmetric {
					return withHint(usageError{fmt.Errorf("--format %s is for decrypt and mac keys; %s material is PKCS #8", format, alg), "keystorectl import"}, "use --format pem (or der)")
				}
				return withHint(usageError{fmt.Errorf("--format %s is for asymmetric keys; %s material is the raw key", format, alg), "keystorectl import"}, "use --format raw (or hex)")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			input, err := a.readInput(in, maxImportInput, "key material")
			if err != nil {
				return err
			}
			defer clear(input)
			material, err := importMaterial(input, format)
			if err != nil {
				return err
			}
			defer clear(material)
			k, err := a.importKey(c, args[0], client.Algorithm(alg), client.Algorithm(wrapping), material)
			if err != nil {
				return importHint(err, args[0], format)
			}
			if a.json {
				return a.emit(toKeyJSON(k))
			}
			return a.printf("imported %s (%s, version %d, origin %s)\n", k.ID, k.Algorithm, k.CurrentVersion, k.Origin)
		},
	}
	cmd.Flags().StringVar(&alg, "alg", "", "the material's algorithm (required): "+strings.Join(algorithms, ", "))
	cmd.Flags().StringVar(&in, "in", "", "read the material from FILE (default stdin, also -)")
	cmd.Flags().StringVar(&format, "format", "", "pem, der, raw or hex (default pem for asymmetric keys, raw for decrypt and mac keys)")
	cmd.Flags().StringVar(&wrapping, "wrapping-alg", "", "the HPKE suite the material is wrapped with (default the daemon's, hpke-mlkem768x25519-sha256-aes256gcm)")
	a.setup(cmd.MarkFlagRequired("alg"))
	a.setup(cmd.RegisterFlagCompletionFunc("alg", cobra.FixedCompletions(algorithms, cobra.ShellCompDirectiveNoFileComp)))
	a.setup(cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(importFormats, cobra.ShellCompDirectiveNoFileComp)))
	a.setup(cmd.RegisterFlagCompletionFunc("wrapping-alg", cobra.FixedCompletions([]string{
		string(client.HPKEMLKEM768X25519), string(client.HPKEX25519), string(client.HPKEP256)}, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
}

// importKey gets parameters valid one minute, wraps material here and
// imports it.
func (a *app) importKey(c *client.Client, key string, alg, wrapping client.Algorithm, material []byte) (client.KeyInfo, error) {
	params, err := c.GetImportParameters(a.ctx, key, alg, client.ImportOptions{WrappingAlgorithm: wrapping, TTL: client.MinImportTTL})
	if err != nil {
		return client.KeyInfo{}, err
	}
	enc, wrapped, err := client.WrapForImport(params, material)
	if err != nil {
		return client.KeyInfo{}, err
	}
	return c.Import(a.ctx, key, params.Token, enc, wrapped, client.Policy{})
}

// importMaterial converts the input to the import format: PKCS #8 DER for
// pem and der, the raw key for raw and hex. The result is a new buffer
// (the caller clears both); errors never quote the material.
func importMaterial(input []byte, format string) ([]byte, error) {
	switch format {
	case "der", "raw":
		if len(input) == 0 {
			return nil, provider.Errorf(provider.EINVAL, "no key material in the input")
		}
		return bytes.Clone(input), nil
	case "hex":
		text := bytes.Join(bytes.Fields(input), nil)
		defer clear(text)
		out := make([]byte, hex.DecodedLen(len(text)))
		if _, err := hex.Decode(out, text); err != nil || len(out) == 0 {
			clear(out)
			return nil, provider.Errorf(provider.EINVAL, "the input is not the key in hex (an even number of 0-9a-f digits)")
		}
		return out, nil
	}
	return pemPKCS8(input)
}

// pemPKCS8 finds the one private key of a PEM input and returns it as
// PKCS #8 DER: "PRIVATE KEY" as it is, "EC PRIVATE KEY" (SEC 1) and "RSA
// PRIVATE KEY" (PKCS #1) converted. Other blocks ("EC PARAMETERS", a
// certificate) are skipped; an encrypted key is refused.
func pemPKCS8(input []byte) ([]byte, error) {
	var der []byte
	var found []string
	rest := input
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var key []byte
		switch block.Type {
		case "PRIVATE KEY":
			key = bytes.Clone(block.Bytes)
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				clear(block.Bytes)
				return nil, provider.Errorf(provider.EINVAL, "the EC PRIVATE KEY block does not parse as a SEC 1 private key")
			}
			if key, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
				return nil, provider.Errorf(provider.EINVAL, "the EC PRIVATE KEY cannot be converted to PKCS #8 (its curve: %s)", k.Curve.Params().Name)
			}
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				clear(block.Bytes)
				return nil, provider.Errorf(provider.EINVAL, "the RSA PRIVATE KEY block does not parse as a PKCS #1 private key")
			}
			if key, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
				return nil, provider.Errorf(provider.EINVAL, "the RSA PRIVATE KEY cannot be converted to PKCS #8")
			}
		case "ENCRYPTED PRIVATE KEY":
			clear(der)
			return nil, withHint(provider.Errorf(provider.ENOTSUP, "the PEM holds an encrypted private key"),
				"decrypt it into the pipe, never to disk: openssl pkey -in KEY.pem | keystorectl import KEY --alg ALG --in -")
		}
		clear(block.Bytes)
		found = append(found, block.Type)
		if key == nil {
			continue
		}
		if der != nil {
			clear(key)
			clear(der)
			return nil, provider.Errorf(provider.EINVAL, "the PEM holds more than one private key; give one")
		}
		der = key
	}
	if der == nil {
		what := "no PEM block"
		if len(found) > 0 {
			what = "only " + strings.Join(found, ", ")
		}
		return nil, withHint(provider.Errorf(provider.EINVAL, "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block in the input (%s)", what),
			"give a PEM private key (openssl genpkey writes one), or --format der/raw/hex")
	}
	return der, nil
}

// importHint gives the hints of import errors.
func importHint(err error, key, format string) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.EPERM:
		return withHint(err, key+" exists and is a generated key: material is imported into a new key or an imported one (or the key is not yours)")
	case provider.EINVAL:
		if format == "raw" {
			return withHint(err, "raw material is exactly the key's size with nothing after it (no newline); --format hex reads hex")
		}
		return withHint(err, "the material is not a private key of --alg (or its size or curve differs)")
	case provider.ENOTSUP:
		return withHint(err, "the daemon's provider cannot import this algorithm (ed448, ml-dsa-* and hpke-mlkem768x25519 have no import form)")
	}
	return err
}
