// Package keksource turns the KEK options that keystored and
// keystore-plugin-software share (a KEK file; or a passphrase, from a file
// or a systemd credential, with its Argon2id parameters file) into a
// software.Config: it checks that exactly one source is named, resolves
// the credential in $CREDENTIALS_DIRECTORY, and reads the passphrase with
// the same private-file checks as a KEK file, bounded, without its
// trailing newline, and wiped after use.
package keksource

import (
	"bytes"
	"path/filepath"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/internal/privfile"
	"github.com/nexus-os/keystored/providers/software"
)

// CredentialsEnv is the variable systemd sets to the directory of a
// unit's credentials (LoadCredential=NAME:PATH puts PATH's content in
// $CREDENTIALS_DIRECTORY/NAME).
const CredentialsEnv = "CREDENTIALS_DIRECTORY"

// Setting is one option as given: its value ("" when unset) and where it
// came from, for messages ("--kek-file", "[kek] file").
type Setting struct {
	Value string
	From  string
}

// Set reports whether the setting has a value.
func (s Setting) Set() bool { return s.Value != "" }

// Options are the KEK options as given, from flags or a config table.
type Options struct {
	File                 Setting // a file of the 32 raw KEK bytes
	PassphraseFile       Setting // a file holding the passphrase
	PassphraseCredential Setting // the name of a systemd credential holding the passphrase
	ParamsFile           Setting // the Argon2id salt, parameters and verifier (passphrase only)
}

// Over returns o with every unset field taken from base: flags over a
// config file.
func (o Options) Over(base Options) Options {
	pick := func(a, b Setting) Setting {
		if a.Set() {
			return a
		}
		return b
	}
	return Options{
		File:                 pick(o.File, base.File),
		PassphraseFile:       pick(o.PassphraseFile, base.PassphraseFile),
		PassphraseCredential: pick(o.PassphraseCredential, base.PassphraseCredential),
		ParamsFile:           pick(o.ParamsFile, base.ParamsFile),
	}
}

// Values returns the four values, for comparing two Options (a reload
// compares what the config file says).
func (o Options) Values() [4]string {
	return [4]string{o.File.Value, o.PassphraseFile.Value, o.PassphraseCredential.Value, o.ParamsFile.Value}
}

// Source is a checked KEK source: KEKFile, or a passphrase read from
// PassphraseFile (for a credential, the file in $CREDENTIALS_DIRECTORY)
// with ParamsFile.
type Source struct {
	KEKFile        string
	PassphraseFile string
	Credential     string // the credential's name, when the passphrase is one
	ParamsFile     string
}

// Passphrase reports whether the KEK is derived from a passphrase.
func (s Source) Passphrase() bool { return s.PassphraseFile != "" }

// String describes the source for a start line; it never holds a secret.
func (s Source) String() string {
	switch {
	case s.Credential != "":
		return "passphrase from credential " + s.Credential + ", parameters " + s.ParamsFile
	case s.Passphrase():
		return "passphrase from " + s.PassphraseFile + ", parameters " + s.ParamsFile
	}
	return "KEK file " + s.KEKFile
}

// Defaults are what Resolve uses for unset paths: DefaultFile when no
// passphrase is named, DefaultParams with a passphrase ("" means the
// option is required). Abs requires absolute paths (the plugin, which
// runs in a private working directory); otherwise a relative path is kept
// as given (relative to the working directory, like --state).
type Defaults struct {
	File, Params string
	Abs          bool
}

// Resolve checks o (exactly one source; the parameters file only with a
// passphrase; a credential name that is a plain file name, with
// $CREDENTIALS_DIRECTORY set and absolute) and applies d. getenv reads
// $CREDENTIALS_DIRECTORY. Errors are EINVAL and name the options at
// fault.
func Resolve(o Options, d Defaults, getenv func(string) string) (Source, error) {
	bad := func(format string, args ...any) (Source, error) {
		return Source{}, provider.Errorf(provider.EINVAL, format, args...)
	}
	pass := o.PassphraseFile.Set() || o.PassphraseCredential.Set()
	switch {
	case o.PassphraseFile.Set() && o.PassphraseCredential.Set():
		return bad("%s and %s both name the KEK passphrase; name one", o.PassphraseFile.From, o.PassphraseCredential.From)
	case o.File.Set() && pass:
		other := o.PassphraseFile
		if !other.Set() {
			other = o.PassphraseCredential
		}
		return bad("%s and %s both name a KEK source; name exactly one: a KEK file, or a passphrase (with its parameters file)", o.File.From, other.From)
	case o.ParamsFile.Set() && !pass:
		return bad("%s is the parameters file of a passphrase-derived KEK: it needs a passphrase (a passphrase file or credential)", o.ParamsFile.From)
	}
	var s Source
	path := func(set Setting, def, what string) (string, error) {
		v := set.Value
		from := set.From
		if v == "" {
			v, from = def, what
		}
		if v == "" {
			return "", provider.Errorf(provider.EINVAL, "%s is required", what)
		}
		if d.Abs && !filepath.IsAbs(v) {
			return "", provider.Errorf(provider.EINVAL, "%s %q must be an absolute path", from, v)
		}
		return filepath.Clean(v), nil
	}
	var err error
	if !pass {
		s.KEKFile, err = path(o.File, d.File, o.File.From)
		return s, err
	}
	if s.ParamsFile, err = path(o.ParamsFile, d.Params, o.ParamsFile.From); err != nil {
		return Source{}, err
	}
	if o.PassphraseFile.Set() {
		s.PassphraseFile, err = path(o.PassphraseFile, "", o.PassphraseFile.From)
		return s, err
	}
	name := o.PassphraseCredential.Value
	if !plainName(name) {
		return bad("%s %q is not a credential name (a plain file name in $%s: no slash, not . or ..)", o.PassphraseCredential.From, name, CredentialsEnv)
	}
	dir := getenv(CredentialsEnv)
	if dir == "" || !filepath.IsAbs(dir) {
		return bad("%s %s: $%s is not set to an absolute directory (systemd sets it for a unit with LoadCredential=%s:PATH)",
			o.PassphraseCredential.From, name, CredentialsEnv, name)
	}
	s.PassphraseFile, s.Credential = filepath.Join(dir, name), name
	return s, nil
}

// CheckConflicts reports what Resolve would refuse in o whatever the other
// half of the options says (flags, before the config is read; a config
// table, whatever the flags say): two sources, two passphrases, a
// credential name that is not a plain file name.
func CheckConflicts(o Options) error {
	o.ParamsFile = Setting{}
	_, err := Resolve(o, Defaults{File: "kek", Params: "kek.params"}, func(string) string { return "/" })
	return err
}

// plainName reports whether n is a file name without directories.
func plainName(n string) bool {
	return n != "" && n != "." && n != ".." && len(n) <= 255 && !strings.ContainsAny(n, "/\x00")
}

// Config returns the software.Config of s, reading the passphrase if there
// is one; create is Config.Create. The caller calls wipe once software.New
// has returned (it clears the passphrase).
func (s Source) Config(create bool) (cfg software.Config, wipe func(), err error) {
	if !s.Passphrase() {
		return software.Config{KEKFile: s.KEKFile, Create: create}, func() {}, nil
	}
	pass, err := ReadPassphrase(s.PassphraseFile, s.what())
	if err != nil {
		return software.Config{}, nil, err
	}
	return software.Config{Passphrase: pass, ParamsFile: s.ParamsFile, Create: create}, pass.Wipe, nil
}

func (s Source) what() string {
	if s.Credential != "" {
		return "KEK passphrase credential " + s.Credential
	}
	return "KEK passphrase file"
}

// ReadPassphrase reads a passphrase from the private file at path (a
// regular file of this user, no group or other permission, no symlink —
// as a KEK file), strips one trailing newline ("\n" or "\r\n"), and
// refuses an empty passphrase or one longer than software.MaxPassphrase
// bytes (EINVAL). what names the file in errors, which never quote its
// content.
func ReadPassphrase(path, what string) (secret.Bytes, error) {
	b, err := privfile.Read(path, what, software.MaxPassphrase+2)
	if c, _ := provider.CodeOf(err); c == provider.EMSGSIZE {
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s %q: the passphrase is longer than %d bytes", what, path, software.MaxPassphrase)
	}
	if err != nil {
		return secret.Bytes{}, err
	}
	n := len(b)
	if bytes.HasSuffix(b[:n], []byte("\n")) {
		n--
		if bytes.HasSuffix(b[:n], []byte("\r")) {
			n--
		}
	}
	switch {
	case n == 0:
		clear(b)
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s %q is empty", what, path)
	case n > software.MaxPassphrase:
		clear(b)
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s %q: the passphrase is longer than %d bytes", what, path, software.MaxPassphrase)
	}
	clear(b[n:])
	return secret.Own(b[:n]), nil
}
