package server

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Bounds of a trust anchor directory.
const (
	// MaxAnchors is the most anchors a directory may hold.
	MaxAnchors = 1024
	// MaxAnchorFile is the largest anchor PEM file.
	MaxAnchorFile = 64 << 10
)

// Anchor is one trust anchor: a public key the operator configured.
type Anchor struct {
	// Name is the PEM file's name without ".pem".
	Name      string
	Algorithm provider.Algorithm
	PublicKey []byte
	// Fingerprint is "sha256:" and the hex SHA-256 of the DER
	// SubjectPublicKeyInfo.
	Fingerprint string
	spec        *alg.Spec
}

// Anchors is a set of trust anchors, read once at start. The zero value
// (or nil) holds none.
type Anchors struct {
	list   []*Anchor
	byName map[string]*Anchor
}

// Len returns the number of anchors.
func (a *Anchors) Len() int {
	if a == nil {
		return 0
	}
	return len(a.list)
}

// Lookup returns the anchor called name.
func (a *Anchors) Lookup(name string) (*Anchor, bool) {
	if a == nil {
		return nil, false
	}
	an, ok := a.byName[name]
	return an, ok
}

// LoadAnchors reads every "<name>.pem" file of dir: each holds one PEM
// "PUBLIC KEY" block (a DER SubjectPublicKeyInfo) of an Ed25519 key, and
// name must be a key ID segment. Other files are ignored. It refuses (with
// an error naming the file) a directory or file that is a symlink or
// writable by group or others or owned by another user than the daemon's
// or root, a file that is not a regular file, over
// MaxAnchorFile bytes, not one PEM public key, or of another algorithm.
func LoadAnchors(dir string) (*Anchors, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("trust anchors: %s is not a directory (or is a symlink)", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("trust anchors: directory %s is writable by group or others (mode %04o)", dir, fi.Mode().Perm())
	}
	if err := checkOwner(fi); err != nil {
		return nil, fmt.Errorf("trust anchors: directory %s %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	reg := alg.Default()
	out := &Anchors{byName: make(map[string]*Anchor)}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".pem")
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := provider.CheckSegment("anchor name", name); err != nil {
			return nil, fmt.Errorf("trust anchor %s: file name must be <name>.pem with name matching [a-z0-9][a-z0-9._-]* (at most %d bytes)", path, provider.MaxSegment)
		}
		if len(out.list) == MaxAnchors {
			return nil, fmt.Errorf("trust anchors: %s holds more than %d anchors", dir, MaxAnchors)
		}
		an, err := loadAnchor(path, name, reg)
		if err != nil {
			return nil, err
		}
		out.list = append(out.list, an)
		out.byName[name] = an
	}
	sort.Slice(out.list, func(i, j int) bool { return out.list[i].Name < out.list[j].Name })
	return out, nil
}

func loadAnchor(path, name string, reg *alg.Registry) (*Anchor, error) {
	fail := func(why string) (*Anchor, error) { return nil, fmt.Errorf("trust anchor %s: %s", path, why) }
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("trust anchor %s: %w", path, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return fail("not a regular file (symlinks are refused)")
	case fi.Mode().Perm()&0o022 != 0:
		return fail(fmt.Sprintf("writable by group or others (mode %04o)", fi.Mode().Perm()))
	case fi.Size() > MaxAnchorFile:
		return fail("larger than " + strconv.Itoa(MaxAnchorFile) + " bytes")
	}
	if err := checkOwner(fi); err != nil {
		return fail(err.Error())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trust anchor %s: %w", path, err)
	}
	data, rerr := io.ReadAll(io.LimitReader(f, MaxAnchorFile+1))
	if cerr := f.Close(); rerr == nil {
		rerr = cerr
	}
	if rerr != nil {
		return nil, fmt.Errorf("trust anchor %s: %w", path, rerr)
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return fail("no PEM block")
	case block.Type != "PUBLIC KEY":
		return fail("PEM block is " + strconv.Quote(block.Type) + ", want \"PUBLIC KEY\" (SubjectPublicKeyInfo)")
	case len(strings.TrimSpace(string(rest))) != 0:
		return fail("data after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fail("not a SubjectPublicKeyInfo: " + err.Error())
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return fail(fmt.Sprintf("%T keys are not supported; only ed25519 anchors are", pub))
	}
	spec, err := reg.Lookup(provider.Ed25519)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(block.Bytes)
	return &Anchor{Name: name, Algorithm: provider.Ed25519, PublicKey: append([]byte(nil), edPub...),
		Fingerprint: "sha256:" + hex.EncodeToString(sum[:]), spec: spec}, nil
}

// checkOwner refuses a file or directory owned by someone other than this
// process's user or root: its owner could rewrite it whatever its mode.
func checkOwner(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := uint32(os.Geteuid()); st.Uid != euid && st.Uid != 0 {
		return fmt.Errorf("is owned by uid %d, not by the daemon's user (uid %d) or root", st.Uid, euid)
	}
	return nil
}

// anchorsService implements keystorev1.TrustAnchorsServer.
type anchorsService struct {
	keystorev1.UnimplementedTrustAnchorsServer
	s *Server
}

func (a *anchorsService) ListAnchors(ctx context.Context, _ *keystorev1.ListAnchorsRequest) (*keystorev1.ListAnchorsResponse, error) {
	if callerOf(ctx) == nil {
		return nil, errNoCaller
	}
	out := &keystorev1.ListAnchorsResponse{Anchors: make([]*keystorev1.TrustAnchor, 0, a.s.anchors.Len())}
	for _, an := range a.s.anchors.list {
		out.Anchors = append(out.Anchors, &keystorev1.TrustAnchor{Name: an.Name, Algorithm: string(an.Algorithm),
			PublicKey: append([]byte(nil), an.PublicKey...), Fingerprint: an.Fingerprint})
	}
	return out, nil
}

// Verify answers valid=false (OK status) for a signature that does not
// verify; an unknown anchor is ENOENT.
func (a *anchorsService) Verify(ctx context.Context, req *keystorev1.VerifyAnchorRequest) (*keystorev1.VerifyAnchorResponse, error) {
	if callerOf(ctx) == nil {
		return nil, errNoCaller
	}
	name := req.GetAnchor()
	if len(name) > provider.MaxSegment || provider.CheckSegment("anchor name", name) != nil {
		return nil, provider.Errorf(provider.EINVAL, "anchor name must match [a-z0-9][a-z0-9._-]* (at most %d bytes)", provider.MaxSegment)
	}
	sum := callFrom(ctx)
	if sum != nil {
		sum.setKey(name)
	}
	switch {
	case len(req.GetMessage()) > provider.MaxSignMessage:
		return nil, provider.Errorf(provider.EMSGSIZE, "message over %d bytes", provider.MaxSignMessage)
	case len(req.GetSignature()) > provider.MaxSignature:
		return nil, provider.Errorf(provider.EMSGSIZE, "signature over %d bytes", provider.MaxSignature)
	}
	an, ok := a.s.anchors.Lookup(name)
	if !ok {
		return nil, provider.Errorf(provider.ENOENT, "trust anchor %s not found", name)
	}
	valid := an.spec.Verify(an.PublicKey, req.GetMessage(), req.GetSignature())
	if !valid && sum != nil {
		sum.setNote(noteInvalid)
	}
	return &keystorev1.VerifyAnchorResponse{Valid: valid}, nil
}
