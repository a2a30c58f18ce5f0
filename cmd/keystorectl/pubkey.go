package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// The public key formats of pubkey.
var pubkeyFormats = []string{"pem", "raw", "ssh", "jwk"}

func (a *app) pubkeyCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "pubkey KEY[@N] [--format pem|raw|ssh|jwk]",
		Short: "Print the public key of a signing key (current version, or @N)",
		Long: `Print the public key of a signing key's current version, or of version N.

  pem  SubjectPublicKeyInfo PEM ("PUBLIC KEY"): ed25519, ed448, ml-dsa-44/65/87
       (OpenSSL 3.0 reads ed25519 and ed448; ML-DSA needs OpenSSL 3.5)
  raw  the raw public key bytes
  ssh  an authorized_keys line, "ssh-ed25519 AAAA... KEY@N" (ed25519 only)
  jwk  an RFC 8037 JWK: {"kty":"OKP","crv":"Ed25519","x":...,"kid":"KEY@N"}
       (ed25519 and ed448)`,
		Example: `  keystorectl pubkey signing/release > release.pem
  openssl pkey -pubin -in release.pem -noout -text
  keystorectl pubkey signing/release@1 --format ssh`,
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
			c, err := a.dial()
			if err != nil {
				return err
			}
			pub, err := c.PublicKey(a.ctx, key, version)
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EPERM {
					err = withHint(err, "only signing keys have a public key, and only your app's keys are visible to you")
				}
				return err
			}
			return a.printPublicKey(pub, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "pem", "pem, raw, ssh or jwk")
	a.setup(cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(pubkeyFormats, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
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
		text, err = publicKeyPEM(pub)
	case "raw":
		text = pub.Raw
	case "ssh":
		text, err = publicKeySSH(pub)
	case "jwk":
		text, err = publicKeyJWK(pub)
		if err == nil {
			text = append(text, '\n')
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

// Object identifiers of the SubjectPublicKeyInfo algorithms: RFC 8410
// (Ed25519 1.3.101.112, Ed448 1.3.101.113) and the NIST / IETF LAMPS
// ML-DSA profile (ML-DSA-44/65/87 2.16.840.1.101.3.4.3.17/18/19), all
// without parameters; the BIT STRING holds the raw public key.
var spkiOIDs = map[client.Algorithm]struct {
	oid  asn1.ObjectIdentifier
	size int
}{
	client.Ed25519: {asn1.ObjectIdentifier{1, 3, 101, 112}, ed25519.PublicKeySize},
	client.Ed448:   {asn1.ObjectIdentifier{1, 3, 101, 113}, 57},
	client.MLDSA44: {asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 17}, 1312},
	client.MLDSA65: {asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 18}, 1952},
	client.MLDSA87: {asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 19}, 2592},
}

// spki is the ASN.1 SubjectPublicKeyInfo.
type spki struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// marshalSPKI returns the DER SubjectPublicKeyInfo of pub.
func marshalSPKI(pub client.PublicKey) ([]byte, error) {
	info, ok := spkiOIDs[pub.Algorithm]
	if !ok {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "pubkey", Key: pub.Ref(), Msg: "no SubjectPublicKeyInfo encoding for " + string(pub.Algorithm)}
	}
	if len(pub.Raw) != info.size {
		return nil, &provider.Error{Code: provider.EIO, Op: "pubkey", Key: pub.Ref(), Msg: string(pub.Algorithm) + " public key of " + strconv.Itoa(len(pub.Raw)) + " bytes, want " + strconv.Itoa(info.size)}
	}
	if pub.Algorithm == client.Ed25519 {
		der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(pub.Raw))
		if err != nil {
			return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
		}
		return der, nil
	}
	der, err := asn1.Marshal(spki{
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: info.oid},
		PublicKey: asn1.BitString{Bytes: pub.Raw, BitLength: 8 * len(pub.Raw)},
	})
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
	}
	return der, nil
}

// publicKeyPEM returns the SubjectPublicKeyInfo as a "PUBLIC KEY" PEM block.
func publicKeyPEM(pub client.PublicKey) ([]byte, error) {
	der, err := marshalSPKI(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// publicKeySSH returns an authorized_keys line with KEY@N as the comment.
func publicKeySSH(pub client.PublicKey) ([]byte, error) {
	if pub.Algorithm != client.Ed25519 || len(pub.Raw) != ed25519.PublicKeySize {
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "pubkey", Key: pub.Ref(), Msg: "the ssh format is for ed25519 keys only, not " + string(pub.Algorithm)}
	}
	sk, err := ssh.NewPublicKey(ed25519.PublicKey(pub.Raw))
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding the public key of %s: %w", pub.Ref(), err)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sk)), "\n")
	return []byte(line + " " + pub.Ref() + "\n"), nil
}

// jwk is an RFC 8037 OKP JSON Web Key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
}

// publicKeyJWK returns the key as a compact JWK (no newline).
func publicKeyJWK(pub client.PublicKey) ([]byte, error) {
	var crv string
	switch {
	case pub.Algorithm == client.Ed25519 && len(pub.Raw) == ed25519.PublicKeySize:
		crv = "Ed25519"
	case pub.Algorithm == client.Ed448 && len(pub.Raw) == 57:
		crv = "Ed448"
	default:
		return nil, &provider.Error{Code: provider.ENOTSUP, Op: "pubkey", Key: pub.Ref(), Msg: "the jwk format is for ed25519 and ed448 keys only, not " + string(pub.Algorithm)}
	}
	b, err := json.Marshal(jwk{Kty: "OKP", Crv: crv, X: base64.RawURLEncoding.EncodeToString(pub.Raw), Kid: pub.Ref()})
	if err != nil {
		return nil, provider.Errorf(provider.EIO, "encoding the JWK of %s: %w", pub.Ref(), err)
	}
	return b, nil
}
