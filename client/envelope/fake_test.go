package envelope_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// fakeKeys stands in for the daemon: its decrypt keys "box/k" and
// "box/other" (of app "app") seal data keys with XChaCha20-Poly1305 under
// a fixed key and a nonce counter, so that every test run makes the same
// sealed bytes; "sig/k" is a signing key. Data keys are the next bytes of
// a fixed stream. It records the data keys it handed out, to check that
// they are wiped.
type fakeKeys struct {
	mu      sync.Mutex
	version uint32
	nonce   uint64
	next    byte
	handed  [][]byte
	gets    int
	unseals int
}

const fakeApp = "app"

func newFake() *fakeKeys { return &fakeKeys{version: 1} }

var fakeAEAD = func() interface {
	Seal(dst, nonce, plaintext, aad []byte) []byte
	Open(dst, nonce, ciphertext, aad []byte) ([]byte, error)
} {
	a, _ := chacha20poly1305.NewX(bytes.Repeat([]byte{0x11}, 32)) // a 32-byte key: NewX cannot fail
	return a
}()

// full resolves a key name as the daemon does.
func full(key string) string {
	if bytes.Count([]byte(key), []byte("/")) == 1 {
		return fakeApp + "/" + key
	}
	return key
}

func (f *fakeKeys) Get(_ context.Context, key string) (client.KeyInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	switch id := full(key); id {
	case "app/box/k", "app/box/other":
		return client.KeyInfo{ID: id, Algorithm: client.XChaCha20Poly1305, Uses: []string{"decrypt"}, State: client.KeyActive, CurrentVersion: f.version}, nil
	case "app/sig/k":
		return client.KeyInfo{ID: id, Algorithm: client.Ed25519, Uses: []string{"sign"}, State: client.KeyActive, CurrentVersion: 1}, nil
	}
	return client.KeyInfo{}, provider.Errorf(provider.ENOENT, "no key %s", key)
}

// sealAAD binds a sealed data key to its key and version, as the daemon's
// envelope does.
func sealAAD(id string, version uint32, aad []byte) []byte {
	h := sha256.New()
	h.Write([]byte(id)) // a hash's Write never fails
	h.Write(binary.BigEndian.AppendUint32(nil, version))
	h.Write(aad)
	return h.Sum(nil)
}

func (f *fakeKeys) GenerateDataKey(ctx context.Context, key string, spec client.DataKeySpec, aad []byte) (client.DataKey, error) {
	if _, err := f.Get(ctx, key); err != nil {
		return client.DataKey{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if spec != (client.DataKeySpec{Spec: "aes-256-gcm"}) {
		return client.DataKey{}, provider.Errorf(provider.EINVAL, "the fake makes aes-256-gcm data keys only")
	}
	dk := make([]byte, 32)
	for i := range dk {
		f.next++
		dk[i] = f.next
	}
	f.handed = append(f.handed, dk)
	f.nonce++
	nonce := make([]byte, 24)
	binary.BigEndian.PutUint64(nonce, f.nonce)
	id := full(key)
	sealed := binary.BigEndian.AppendUint32(nil, f.version)
	sealed = append(sealed, nonce...)
	sealed = fakeAEAD.Seal(sealed, nonce, dk, sealAAD(id, f.version, aad))
	return client.DataKey{Key: id, Version: f.version, Plaintext: dk, Sealed: sealed}, nil
}

func (f *fakeKeys) Unseal(_ context.Context, key string, sealed, aad []byte) (client.Unsealed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unseals++
	if len(sealed) < 4+24+16 {
		return client.Unsealed{}, provider.Errorf(provider.EBADMSG, "unseal failed")
	}
	v := binary.BigEndian.Uint32(sealed)
	pt, err := fakeAEAD.Open(nil, sealed[4:28], sealed[28:], sealAAD(full(key), v, aad))
	if err != nil {
		return client.Unsealed{}, provider.Errorf(provider.EBADMSG, "unseal failed")
	}
	f.handed = append(f.handed, pt)
	return client.Unsealed{Plaintext: pt, Version: v}, nil
}

// allWiped reports whether every data key the fake handed out is zero.
func (f *fakeKeys) allWiped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.handed {
		if !bytes.Equal(k, make([]byte, len(k))) {
			return false
		}
	}
	return len(f.handed) > 0
}

// pattern is a deterministic stream of n bytes that does not repeat
// within a segment: any lost, duplicated or reordered piece changes it.
type pattern struct {
	n, off int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x ^ x>>8 ^ x>>16 ^ x>>24 ^ 0x5a)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternBytes(n int) []byte {
	b, _ := io.ReadAll(&pattern{n: int64(n)}) // a pattern never fails
	return b
}
