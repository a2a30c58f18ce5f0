package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
	"github.com/nexus-os/keystored/core/provider"
)

// The public key formats of pubkey.
var pubkeyFormats = []string{"pem", "raw", "ssh", "jwk", "jwks"}

func (a *app) pubkeyCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "pubkey KEY[@N] [--format pem|raw|ssh|jwk|jwks]",
		Short: "Print the public key of a signing key (current version, or @N)",
		Long: `Print the public key of a signing key's current version, or of version N.

  pem   SubjectPublicKeyInfo PEM ("PUBLIC KEY"): every signing algorithm
        (OpenSSL 3.0 reads all but ML-DSA, which needs OpenSSL 3.5)
  raw   the raw public key bytes (32 for ed25519, the SEC 1 point for
        ECDSA, the PKCS #1 RSAPublicKey DER for RSA)
  ssh   an authorized_keys line, "TYPE AAAA... KEY@N": ed25519 (ssh-ed25519),
        ecdsa-p256/p384 (ecdsa-sha2-nistp256/384), rsa-*-pkcs1-sha256 (ssh-rsa)
  jwk   a JSON Web Key with kty, use "sig", alg (EdDSA, ES256, ES384, PS256,
        RS256) and kid, the key's RFC 7638 thumbprint: ed25519, ed448,
        ECDSA, RSA
  jwks  the JSON Web Key Set of every active version of KEY (primary first,
        then retired ones, newest first; not below --min-decryption-version)`,
		Example: `  keystorectl pubkey signing/release > release.pem
  openssl pkey -pubin -in release.pem -noout -text
  keystorectl pubkey ssh/laptop@1 --format ssh
  keystorectl pubkey jwt/issuer --format jwks > jwks.json`,
		Args:              exactArgs(1, "one KEY[@N]"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			if !slices.Contains(pubkeyFormats, format) {
				return usageError{fmt.Errorf("--format %q is not one of %s", format, strings.Join(pubkeyFormats, ", ")), "keystorectl pubkey"}
			}
			key, version, err := client.ParseKeyRef(args[0])
			if err != nil {
				return err
			}
			if format == "jwks" && version != 0 {
				return usageError{fmt.Errorf("--format jwks holds every active version: name KEY without @N"), "keystorectl pubkey"}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			if format == "jwks" {
				return a.printJWKS(c, key)
			}
			pub, err := c.PublicKey(a.ctx, key, version)
			if err != nil {
				return pubkeyHint(err)
			}
			return a.printPublicKey(pub, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "pem", strings.Join(pubkeyFormats, ", "))
	a.setup(cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(pubkeyFormats, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
}

func pubkeyHint(err error) error {
	if code, _ := client.CodeOf(err); code == provider.EPERM {
		return withHint(err, "only signing keys have a public key, and only your app's keys are visible to you")
	}
	return err
}

// pubkeyJSON is pubkey's --json output: the raw key in base64 and, for the
// chosen format, its encoding.
type pubkeyJSON struct {
	Key       string          `json:"key"`
	Version   uint32          `json:"version"`
	Algorithm string          `json:"algorithm"`
	Format    string          `json:"format"`
	PublicKey []byte          `json:"public_key"` // base64 of the raw key
	PEM       string          `json:"pem,omitempty"`
	SSH       string          `json:"ssh,omitempty"`
	JWK       json.RawMessage `json:"jwk,omitempty"`
}

func (a *app) printPublicKey(pub client.PublicKey, format string) error {
	var text []byte
	var err error
	switch format {
	case "pem":
		text, err = keyfmt.PEM(pub)
	case "raw":
		text = pub.Raw
	case "ssh":
		text, err = keyfmt.AuthorizedKey(pub)
	case "jwk":
		var j keyfmt.JWK
		if j, err = keyfmt.NewJWK(pub); err == nil {
			text, err = marshalLine(j)
		}
	}
	if err != nil {
		return err
	}
	if !a.json {
		return a.writeOutput("", text)
	}
	out := pubkeyJSON{Key: pub.Key, Version: pub.Version, Algorithm: string(pub.Algorithm), Format: format, PublicKey: pub.Raw}
	switch format {
	case "pem":
		out.PEM = string(text)
	case "ssh":
		out.SSH = strings.TrimSuffix(string(text), "\n")
	case "jwk":
		out.JWK = json.RawMessage(text[:len(text)-1])
	}
	return a.emit(out)
}

// printJWKS prints the key set of key's active versions.
func (a *app) printJWKS(c *client.Client, key string) error {
	info, err := c.Get(a.ctx, key)
	if err != nil {
		return err
	}
	set, err := keyfmt.NewJWKS(info)
	if err != nil {
		return pubkeyHint(err)
	}
	if !a.json {
		text, err := marshalLine(set)
		if err != nil {
			return err
		}
		return a.writeOutput("", text)
	}
	return a.emit(struct {
		Key       string      `json:"key"`
		Algorithm string      `json:"algorithm"`
		Format    string      `json:"format"`
		JWKS      keyfmt.JWKS `json:"jwks"`
	}{info.ID, string(info.Algorithm), "jwks", set})
}

// marshalLine returns v as compact JSON and a newline.
func marshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding JSON: %w", err)
	}
	return append(b, '\n'), nil
}
