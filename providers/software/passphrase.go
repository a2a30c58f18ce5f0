package software

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/crypto/argon2"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/providers/internal/softkey"
)

// Passphrase and parameters file bounds.
const (
	// MaxPassphrase is the longest passphrase accepted, in bytes.
	MaxPassphrase = 1024
	// maxParamsFile bounds the size of a parameters file.
	maxParamsFile = 4096
	// saltSize is the Argon2id salt size.
	saltSize = 16
	// paramsVersion is the parameters file format version.
	paramsVersion = 1
	// verifierLabel is the message HMAC'd with the KEK to make the
	// verifier.
	verifierLabel = "keystored/kek-verifier/v1"

	// Upper bounds on parameters read from a file, so that a damaged
	// file cannot make New run for hours or exhaust memory.
	maxKDFTime   = 64
	maxKDFMemory = 4 << 20 // KiB: 4 GiB
)

// kdfParams are Argon2id's cost parameters.
type kdfParams struct {
	time    uint32 // passes
	memory  uint32 // KiB
	threads uint8
}

// defaultKDF is used for every new parameters file: time 3, 64 MiB,
// 4 threads (RFC 9106's second recommended option, with 3 passes).
var defaultKDF = kdfParams{time: 3, memory: 64 << 10, threads: 4}

// paramsFile is the JSON content of a parameters file.
type paramsFile struct {
	Version  int    `json:"version"`
	KDF      string `json:"kdf"`
	Salt     string `json:"salt"` // hex
	Time     uint32 `json:"time"`
	Memory   uint32 `json:"memory"` // KiB
	Threads  uint8  `json:"threads"`
	Verifier string `json:"verifier"` // hex HMAC-SHA256(KEK, verifierLabel)
}

// passphraseKEK derives the KEK from pass with the salt and parameters of
// the file at path, creating the file (with kdf and a new salt) if it does
// not exist and create is set (ENOENT otherwise). A wrong passphrase is
// EPERM.
func passphraseKEK(pass secret.Bytes, path string, kdf kdfParams, create bool) (secret.Bytes, error) {
	switch {
	case pass.IsZero():
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "a passphrase needs ParamsFile and a non-empty Passphrase")
	case path == "":
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "a passphrase needs ParamsFile, the file of its Argon2id salt and parameters")
	case pass.Len() > MaxPassphrase:
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "passphrase is longer than %d bytes", MaxPassphrase)
	}
	if !kdf.valid() {
		return secret.Bytes{}, provider.Errorf(provider.EINVAL, "%s", kdfRange)
	}
	q := "KEK parameters file " + strconv.Quote(path)
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return openParams(pass, path)
	case !errors.Is(err, fs.ErrNotExist):
		return secret.Bytes{}, fileError(q, err)
	case !create:
		return secret.Bytes{}, provider.Errorf(provider.ENOENT, "%s does not exist, and creating a KEK was not allowed", q)
	}
	salt := make([]byte, saltSize)
	if err := fill(salt); err != nil {
		return secret.Bytes{}, err
	}
	kek := deriveKEK(pass, salt, kdf)
	content, err := json.MarshalIndent(paramsFile{
		Version:  paramsVersion,
		KDF:      "argon2id",
		Salt:     hex.EncodeToString(salt),
		Time:     kdf.time,
		Memory:   kdf.memory,
		Threads:  kdf.threads,
		Verifier: hex.EncodeToString(verifier(kek)),
	}, "", "  ")
	if err != nil {
		kek.Wipe()
		return secret.Bytes{}, provider.Errorf(provider.EIO, "cannot encode %s: %w", q, err)
	}
	created, err := createExclusive(path, "KEK parameters file", append(content, '\n'))
	if err != nil || !created {
		kek.Wipe()
	}
	if err != nil {
		return secret.Bytes{}, err
	}
	if !created { // another process made it first: use theirs
		return openParams(pass, path)
	}
	return kek, nil
}

// openParams reads an existing parameters file and derives the KEK,
// checking it against the file's verifier.
func openParams(pass secret.Bytes, path string) (secret.Bytes, error) {
	q := "KEK parameters file " + strconv.Quote(path)
	b, err := readPrivateFile(path, "KEK parameters file", maxParamsFile)
	if err != nil {
		return secret.Bytes{}, err
	}
	p, salt, want, err := parseParams(q, b)
	if err != nil {
		return secret.Bytes{}, err
	}
	kek := deriveKEK(pass, salt, p)
	if !hmac.Equal(verifier(kek), want) {
		kek.Wipe()
		return secret.Bytes{}, provider.Errorf(provider.EPERM, "wrong passphrase: it does not match the verifier in %s", q)
	}
	return kek, nil
}

// parseParams decodes and checks a parameters file.
func parseParams(q string, b []byte) (kdfParams, []byte, []byte, error) {
	bad := func(what string) (kdfParams, []byte, []byte, error) {
		return kdfParams{}, nil, nil, provider.Errorf(provider.EIO, "%s is malformed: %s", q, what)
	}
	var f paramsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return bad("not the expected JSON object")
	}
	if dec.More() {
		return bad("data after the JSON object")
	}
	if f.Version != paramsVersion || f.KDF != "argon2id" {
		return bad("version must be " + strconv.Itoa(paramsVersion) + " and kdf \"argon2id\"")
	}
	salt, err := hex.DecodeString(f.Salt)
	if err != nil || len(salt) != saltSize {
		return bad("salt must be " + strconv.Itoa(saltSize) + " bytes in hex")
	}
	ver, err := hex.DecodeString(f.Verifier)
	if err != nil || len(ver) != sha256.Size {
		return bad("verifier must be " + strconv.Itoa(sha256.Size) + " bytes in hex")
	}
	p := kdfParams{time: f.Time, memory: f.Memory, threads: f.Threads}
	if !p.valid() {
		return bad(kdfRange)
	}
	return p, salt, ver, nil
}

// kdfRange describes the accepted Argon2id parameters.
const kdfRange = "Argon2id parameters out of range (time 1..64" +
	", threads 1..255, memory 8*threads..4194304 KiB)"

// valid reports whether p is within the accepted range.
func (p kdfParams) valid() bool {
	return p.time >= 1 && p.time <= maxKDFTime && p.threads >= 1 &&
		p.memory >= 8*uint32(p.threads) && p.memory <= maxKDFMemory
}

// deriveKEK runs Argon2id. Its parameters are checked by the caller
// (argon2 panics on time or threads of 0).
func deriveKEK(pass secret.Bytes, salt []byte, p kdfParams) secret.Bytes {
	return secret.Own(argon2.IDKey(pass.Reveal(), salt, p.time, p.memory, p.threads, softkey.KEKSize))
}

// verifier returns HMAC-SHA256(KEK, verifierLabel).
func verifier(kek secret.Bytes) []byte {
	m := hmac.New(sha256.New, kek.Reveal())
	_, _ = m.Write([]byte(verifierLabel)) // hash.Hash.Write never fails
	return m.Sum(nil)
}
