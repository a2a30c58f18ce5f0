package sshagent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"testing"
	"testing/iotest"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// memKeystore is one Ed25519 key in memory (a fixed test seed), for the
// fuzz target: no daemon, so every input runs in microseconds.
type memKeystore struct{ priv ed25519.PrivateKey }

func newMemKeystore() memKeystore {
	return memKeystore{priv: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}
}

func (m memKeystore) info() client.KeyInfo {
	return client.KeyInfo{ID: "app/ssh/k", Algorithm: client.Ed25519, Uses: []string{"sign"}, State: client.KeyActive, CurrentVersion: 1,
		Versions: []client.KeyVersion{{Version: 1, State: client.VersionPrimary, PublicKey: m.priv.Public().(ed25519.PublicKey)}}}
}

func (m memKeystore) Get(_ context.Context, key string) (client.KeyInfo, error) {
	if key != "ssh/k" && key != "app/ssh/k" {
		return client.KeyInfo{}, provider.ErrNotFound
	}
	return m.info(), nil
}

func (m memKeystore) List(context.Context, client.ListOptions) (client.KeyPage, error) {
	return client.KeyPage{Keys: []client.KeyInfo{m.info()}}, nil
}

func (m memKeystore) Sign(_ context.Context, key string, msg []byte) (client.Signature, error) {
	if key != "app/ssh/k" {
		return client.Signature{}, provider.ErrNotFound
	}
	return client.Signature{Key: key, Version: 1, Signature: ed25519.Sign(m.priv, msg)}, nil
}

// frame is one agent message: length prefix and body.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// fuzzSeeds are valid and near-valid requests of every kind the protocol
// has, one per seed, and some sequences.
func fuzzSeeds(pub ssh.PublicKey) [][]byte {
	blob := pub.Marshal()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	addEd25519 := append([]byte{17}, ssh.Marshal(struct {
		Type     string
		Pub      []byte
		Priv     []byte
		Comments string
	}{ssh.KeyAlgoED25519, priv.Public().(ed25519.PublicKey), priv, "smuggled"})...)
	sign := append([]byte{13}, ssh.Marshal(struct {
		Blob  []byte
		Data  []byte
		Flags uint32
	}{blob, []byte("data"), 0})...)
	lock := append([]byte{22}, ssh.Marshal(struct{ P []byte }{[]byte("pw")})...)
	unlock := append([]byte{23}, ssh.Marshal(struct{ P []byte }{[]byte("pw")})...)
	remove := append([]byte{18}, ssh.Marshal(struct{ Blob []byte }{blob})...)
	ext := append([]byte{27}, ssh.Marshal(struct {
		Name string
		Rest []byte `ssh:"rest"`
	}{"session-bind@openssh.com", []byte{0, 0, 0, 1, 'x'}})...)
	constrained := append(bytes.Clone(addEd25519), 1, 0, 0, 0, 60) // lifetime 60 s
	constrained[0] = 25
	seeds := [][]byte{
		frame([]byte{11}), frame([]byte{1}), frame([]byte{9}), frame([]byte{19}), frame(sign),
		frame(lock), frame(unlock), frame(remove), frame(ext), frame(addEd25519), frame(constrained),
		frame([]byte{20}), frame([]byte{26}), frame([]byte{99}), frame(nil), {0xff, 0xff, 0xff, 0xff},
		append(frame(lock), append(frame(sign), append(frame([]byte{11}), frame(unlock)...)...)...),
		append(frame(addEd25519), frame([]byte{11})...),
		frame(sign[:len(sign)-3]),
	}
	return seeds
}

// FuzzServe feeds any bytes to the agent's server, as a client on its
// socket can: it never panics, never holds a key it was sent, answers
// with well-formed frames, and the frame limiter hands ServeAgent the
// bytes unchanged.
func FuzzServe(f *testing.F) {
	ks := newMemKeystore()
	pub, err := ssh.NewPublicKey(ks.priv.Public())
	if err != nil {
		f.Fatal(err)
	}
	seeds := fuzzSeeds(pub)
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, s := range seeds {
		f.Add(s)
	}
	// agent.ServeAgent logs every refused request with the log package.
	log.SetOutput(io.Discard)
	f.Cleanup(func() { log.SetOutput(defaultLogOutput) })
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := New(context.Background(), Config{Keystore: ks})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{iotest.HalfReader(bytes.NewReader(in)), &out}
		if err := agent.ServeAgent(a, &frameLimiter{rw: rw, max: 4096}); err == nil {
			t.Fatal("ServeAgent returned nil at the end of its input")
		}
		for rest := out.Bytes(); len(rest) > 0; {
			if len(rest) < 5 {
				t.Fatalf("torn reply frame %x", rest)
			}
			n := binary.BigEndian.Uint32(rest)
			if n == 0 || int(n) > len(rest)-4 {
				t.Fatalf("reply frame of %d bytes with %d left", n, len(rest)-4)
			}
			rest = rest[4+n:]
		}
		if a.isLocked() {
			if err := a.Unlock([]byte("pw")); err != nil {
				return // locked with another passphrase: nothing to list
			}
		}
		keys, err := a.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !bytes.Equal(keys[0].Blob, pub.Marshal()) {
			t.Fatalf("after the input the agent offers %d keys, want only the keystore's", len(keys))
		}
	})
}

var defaultLogOutput = log.Writer()

// The limiter hands on the stream unchanged, however it is split, and
// stops at the first request over the limit before its body.
func TestFrameLimiter(t *testing.T) {
	var in []byte
	for _, n := range []int{1, 5, 4096, 0, 4095} {
		in = append(in, frame(bytes.Repeat([]byte{byte(n)}, n))...)
	}
	over := binary.BigEndian.AppendUint32(nil, 4097)
	src := append(bytes.Clone(in), over...)
	src = append(src, make([]byte, 4097)...)
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(src),
		"one byte": iotest.OneByteReader(bytes.NewReader(src)),
		"half":     iotest.HalfReader(bytes.NewReader(src)),
	} {
		t.Run(name, func(t *testing.T) {
			f := &frameLimiter{rw: struct {
				io.Reader
				io.Writer
			}{r, io.Discard}, max: 4096}
			got, err := io.ReadAll(f)
			if !errors.Is(err, ErrMessageTooLarge) {
				t.Fatalf("ReadAll: %v, want ErrMessageTooLarge", err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("read %d bytes, want the %d before the oversized request, unchanged", len(got), len(in))
			}
		})
	}
}
