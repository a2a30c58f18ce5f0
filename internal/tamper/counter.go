package tamper

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/privfile"
)

// Counter is an external monotonic counter: something outside the state
// directory and its audit log that the daemon advances with its state
// changes and checks at start, so that restoring both from a backup is
// seen. FileCounter and internal/tpmcounter implement it.
type Counter interface {
	// Read returns the counter's value.
	Read(ctx context.Context) (uint64, error)
	// Increment adds one and returns the new value.
	Increment(ctx context.Context) (uint64, error)
	// Describe names the counter for records and messages: "file
	// /var/lib/x/counter", "tpm nv 0x01500016".
	Describe() string
	Close() error
}

// creator is the optional capability of a counter that does not exist
// yet and can be made (FileCounter at 0; the daemon's TPM counter by its
// first increment, which starts wherever the TPM says). Open uses it
// only when the start rules allow it, and reads the value it starts at.
type creator interface {
	Create(ctx context.Context) error
}

// ErrCounterMissing is wrapped by a counter's Read and Increment when the
// counter does not exist (a FileCounter whose file is absent).
var ErrCounterMissing = errors.New("external counter does not exist")

// maxCounterFile bounds a counter file.
const maxCounterFile = 128

// FileCounter is a Counter in a small checked file — a line
// "keystored-counter v1 <value> <sha256>", the checksum being SHA-256 of
// "keystored/counter/v1" ‖ 0 ‖ value in decimal — replaced atomically and
// durably at each increment. Put it on another device or a path the state
// directory's backups do not include: a copy restored with them defeats
// it.
type FileCounter struct {
	path string
	mu   sync.Mutex
}

// OpenFileCounter returns the counter kept in the file at path. Its
// directory must exist. A missing file is not an error here: Read then
// returns ErrCounterMissing, and the counter is made (at 0) only by Create,
// which tamper.Open calls when the start rules allow it.
func OpenFileCounter(path string) (*FileCounter, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, provider.Errorf(provider.EINVAL, "counter file %q: want an absolute path", path)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return nil, privfile.Error("directory of the counter file", err)
	}
	if !fi.IsDir() {
		return nil, provider.Errorf(provider.EINVAL, "counter file %q: %s is not a directory", path, filepath.Dir(path))
	}
	// Temporary files a crash left beside it (an increment cut short).
	if err := removeTemps(filepath.Clean(path)); err != nil {
		return nil, err
	}
	return &FileCounter{path: filepath.Clean(path)}, nil
}

func counterSum(v string) string {
	h := sha256.New()
	h.Write([]byte("keystored/counter/v1"))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return hex.EncodeToString(h.Sum(nil))
}

func encodeCounter(v uint64) []byte {
	s := strconv.FormatUint(v, 10)
	return []byte("keystored-counter v1 " + s + " " + counterSum(s) + "\n")
}

func decodeCounter(data []byte) (uint64, bool) {
	f := strings.Split(string(data), " ")
	if len(f) != 4 || f[0] != "keystored-counter" || f[1] != "v1" {
		return 0, false
	}
	v, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil || string(encodeCounter(v)) != string(data) {
		return 0, false
	}
	return v, true
}

// Describe returns "file <path>".
func (c *FileCounter) Describe() string { return "file " + c.path }

func (c *FileCounter) read() (uint64, error) {
	data, err := privfile.Read(c.path, "counter file", maxCounterFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, provider.Errorf(provider.ENOENT, "counter file %s: %w", c.path, ErrCounterMissing)
		}
		return 0, err
	}
	v, ok := decodeCounter(data)
	if !ok {
		return 0, provider.Errorf(provider.EIO, "counter file %s is corrupt (torn or edited)", c.path)
	}
	return v, nil
}

// Read returns the value in the file; ErrCounterMissing (ENOENT) if it
// does not exist, EIO if it is corrupt.
func (c *FileCounter) Read(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read()
}

// Increment writes value+1 and returns it.
func (c *FileCounter) Increment(context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.read()
	if err != nil {
		return 0, err
	}
	if v == ^uint64(0) {
		return 0, provider.Errorf(provider.EIO, "counter file %s is at its maximum", c.path)
	}
	if err := writeDurable(c.path, "counter file", encodeCounter(v+1)); err != nil {
		return 0, err
	}
	return v + 1, nil
}

// Create makes the file at 0; EALREADY if it exists.
func (c *FileCounter) Create(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return createDurable(c.path, "counter file", encodeCounter(0))
}

// Close does nothing: the file is opened at each use.
func (c *FileCounter) Close() error { return nil }
