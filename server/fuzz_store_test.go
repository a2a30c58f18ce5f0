package server

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core/provider"
)

// FuzzValueFile: any bytes as a Store value file under any path either
// fail with EIO naming the path, or decode to a value within MaxValueSize
// whose encoding under that path is exactly the file (so an accepted file
// is bound to its path: the same bytes under another path are refused).
// Seeded with value files the store writes, and torn and moved copies.
func FuzzValueFile(f *testing.F) {
	type seed struct {
		path string
		data []byte
	}
	var seeds []seed
	for _, v := range []struct{ path, value string }{
		{"store/alice/config", "value"},
		{"store/alice/empty", ""},
		{"store/bob/token", strings.Repeat("t", 1000)},
	} {
		file := encodeValue(v.path, []byte(v.value))
		seeds = append(seeds,
			seed{v.path, file},
			seed{v.path, file[:len(file)-1]},
			seed{"store/mallory/" + v.path[len("store/alice/"):], file},
			seed{v.path, append(bytes.Clone(file), 0)})
	}
	seeds = append(seeds, seed{"store/a/b", encodeValue("store/a/b", make([]byte, MaxValueSize+1))})
	for _, s := range seeds {
		f.Add(s.path, s.data)
	}
	if len(seeds) == 0 {
		f.Fatal("empty seed set")
	}
	f.Fuzz(func(t *testing.T, path string, data []byte) {
		v, err := decodeValue(path, data)
		if err != nil {
			if c, ok := provider.CodeOf(err); !ok || c != provider.EIO {
				t.Fatalf("error %v is not EIO", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %q", err, path)
			}
			if v != nil {
				t.Fatal("a value returned with an error")
			}
			return
		}
		if len(v) > MaxValueSize {
			t.Fatalf("accepted a value of %d bytes", len(v))
		}
		if !bytes.Equal(encodeValue(path, v), data) {
			t.Fatal("accepted a file that is not the encoding of its value")
		}
		if _, err := decodeValue(path+"x", data); err == nil {
			t.Fatal("a value file was accepted under another path")
		}
		if cap(v) > 0 && &v[:1][0] == &data[valueHeaderLen] {
			t.Fatal("the value aliases the file's buffer")
		}
	})
}
