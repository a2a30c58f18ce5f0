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
var pubkeyFormats = []string{"pem", "raw", "ssh", "jwk", "jwks", "hpke"}

func (a *app) pubkeyCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "pubkey KEY[@N] [--format pem|raw|ssh|jwk|jwks|hpke]",
		Short: "Print the public key of a signing or asymmetric-decrypt key (current version, or @N)",
		Long: `Print the public key of a signing or asymmetric-decrypt (HPKE) key's current
version, or of version N.

  pem   SubjectPublicKeyInfo PEM ("PUBLIC KEY"): every signing algorithm
        (OpenSSL 3.0 reads all but ML-DSA, which needs OpenSSL 3.5), and
        the HPKE X25519 and P-256 keys (id-X25519, id-ecPublicKey)
  raw   the raw public key bytes (32 for ed25519, the SEC 1 point for
        ECDSA, the PKCS #1 RSAPublicKey DER for RSA; the KEM's serialized
        public key for HPKE: 32, 65 or 1216 bytes)
  ssh   an authorized_keys line, "TYPE AAAA... KEY@N": ed25519 (ssh-ed25519),
        ecdsa-p256/p384 (ecdsa-sha2-nistp256/384), rsa-*-pkcs1-sha256 (ssh-rsa)
  jwk   a JSON Web Key with kty, use "sig", alg (EdDSA, ES256, ES384, PS256,
        RS256) and kid, the key's RFC 7638 thumbprint: ed25519, ed448,
        ECDSA, RSA; for HPKE X25519 (OKP) and P-256 (EC) keys use "enc" and
        no alg (JOSE has no registered HPKE algorithm yet)
  jwks  the JSON Web Key Set of every active version of KEY (primary first,
        then retired ones, newest first; not below --min-decryption-version)
  hpke  HPKE keys: one line of JSON, {"key","version","algorithm","kem_id",
        "kdf_id","aead_id","public_key"} (RFC 9180 suite IDs as numbers,
        the raw key in base64): what any RFC 9180 sender needs; the only
        form of the post-quantum hybrid hpke-mlkem768x25519 key besides raw

An HPKE key's pem, raw and jwk carry the key only: a sender must also use
its suite (the algorithm's name says it; hpke spells it out).`,
		Example: `  keystorectl pubkey signing/release > release.pem
  openssl pkey -pubin -in release.pem -noout -text
  keystorectl pubkey ssh/laptop@1 --format ssh
  keystorectl pubkey jwt/issuer --format jwks > jwks.json
  keystorectl pubkey inbox/orders --format hpke > orders.hpke.json`,
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
	switch code, _ := client.CodeOf(err); code {
	case provider.EPERM:
		return withHint(err, "only signing and asymmetric-decrypt keys have a public key, and only your app's keys are visible to you")
	case provider.ENOTSUP:
		return withHint(err, "try another --format: "+strings.Join(pubkeyFormats, ", ")+" (raw and hpke hold every HPKE key)")
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
	// KEMID, KDFID and AEADID: the suite of an HPKE key, in every format.
	KEMID  uint16          `json:"kem_id,omitempty"`
	KDFID  uint16          `json:"kdf_id,omitempty"`
	AEADID uint16          `json:"aead_id,omitempty"`
	HPKE   *keyfmt.HPKEKey `json:"hpke,omitempty"`
}

func (a *app) printPublicKey(pub client.PublicKey, format string) error {
	var text []byte
	var hpkeKey keyfmt.HPKEKey
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
	case "hpke":
		if hpkeKey, err = keyfmt.NewHPKEKey(pub); err == nil {
			text, err = marshalLine(hpkeKey)
		}
	}
	if err != nil {
		return pubkeyHint(err)
	}
	if !a.json {
		return a.writeOutput("", text)
	}
	out := pubkeyJSON{Key: pub.Key, Version: pub.Version, Algorithm: string(pub.Algorithm), Format: format, PublicKey: pub.Raw,
		KEMID: pub.Suite.KEM, KDFID: pub.Suite.KDF, AEADID: pub.Suite.AEAD}
	switch format {
	case "pem":
		out.PEM = string(text)
	case "ssh":
		out.SSH = strings.TrimSuffix(string(text), "\n")
	case "jwk":
		out.JWK = json.RawMessage(text[:len(text)-1])
	case "hpke":
		out.HPKE = &hpkeKey
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
