package crash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// onDiskKey is what the state directory holds for one key: its key file
// keystore/<app>/<purpose>/<name>~meta.json, or a legacy key directory
// keystore/<app>/<purpose>/<name>/ (meta.json, v<N>.handle files).
type onDiskKey struct {
	dir      string // the legacy key directory; "" for a key file
	file     string // the metadata file (key file or dir/meta.json), once found
	meta     *metaFile
	handles  map[uint32]bool // versions with a handle: inline in meta.json or a v<N>.handle file
	problems []string
}

// metaFile is the part of a meta.json body the checks compare.
type metaFile struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Current  uint32 `json:"current_version"`
	Versions []struct {
		Version uint32 `json:"version"`
		State   string `json:"state"`
		Handle  []byte `json:"handle"` // inline handle (base64); absent: in v<N>.handle
	} `json:"versions"`
}

// setMeta records k's meta.json and the versions whose handle it holds.
func (k *onDiskKey) setMeta(m *metaFile) {
	k.meta = m
	for _, v := range m.Versions {
		if len(v.Handle) > 0 {
			k.handles[v.Version] = true
		}
	}
}

var handleName = regexp.MustCompile(`^v([1-9][0-9]{0,9})\.handle$`)

// digest is the checksum of a checked file (docs/storage.md):
// SHA-256("keystored/<kind>/v1" ‖ 0x00 ‖ path ‖ 0x00 ‖ body).
func digest(kind, rel string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keystored/" + kind + "/v1\x00" + rel + "\x00"))
	h.Write(body)
	return h.Sum(nil)
}

// checkEnvelope checks a MANIFEST or meta.json read from rel and returns
// its body.
func checkEnvelope(kind, rel string, data []byte) (json.RawMessage, string) {
	var env struct {
		Kind   string          `json:"kind"`
		Format int             `json:"format"`
		Body   json.RawMessage `json:"body"`
		SHA256 string          `json:"sha256"`
	}
	if !bytes.HasSuffix(data, []byte("\n")) || bytes.Count(data, []byte("\n")) != 1 {
		return nil, "not one line ending in a newline (torn?)"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, "not a JSON envelope: " + err.Error()
	}
	if env.Kind != kind || env.Format != 1 {
		return nil, "kind " + env.Kind + " format " + strconv.Itoa(env.Format)
	}
	if env.SHA256 != hex.EncodeToString(digest(kind, rel, env.Body)) {
		return nil, "checksum mismatch"
	}
	return env.Body, ""
}

// checkHandle checks a v<N>.handle file read from rel.
func checkHandle(rel string, data []byte) string {
	const header = 4 + sha256.Size
	if len(data) <= header || !bytes.Equal(data[:4], []byte{'K', 'S', 'H', 1}) {
		return "not a handle file (torn?)"
	}
	if !bytes.Equal(data[4:header], digest("handle", rel, data[header:])) {
		return "checksum mismatch"
	}
	return ""
}

// stamp identifies one version of a file: every write replaces the file
// (a new inode), so an unchanged stamp means unchanged content.
type stamp struct {
	ino, size, mtime int64
}

// checked is a file found whole by an earlier scan.
type checked struct {
	st   stamp
	meta *metaFile // for meta.json
}

// scanner checks the state directory, reading again only the files that
// changed since its last scan.
type scanner struct {
	ok map[string]checked // by path relative to the state directory
}

func fileStamp(d fs.DirEntry) (stamp, bool) {
	fi, err := d.Info()
	if err != nil {
		return stamp{}, false
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return stamp{}, false
	}
	return stamp{ino: int64(sys.Ino), size: fi.Size(), mtime: fi.ModTime().UnixNano()}, true
}

// scan walks <state>/keystore and checks every file in it: no temporary
// file left after a restart (there, or in <state>/.tmp where writes make
// them), no symlink, no unknown file, no key stored twice (as a key file
// and as a legacy directory's meta.json), and every MANIFEST, key file,
// meta.json and handle file whole and with a valid checksum. It returns
// the keys found (key files, key directories) by full key ID and the
// problems found outside them.
func (sc *scanner) scan(state string) (map[string]*onDiskKey, []string) {
	if sc.ok == nil {
		sc.ok = map[string]checked{}
	}
	seen := map[string]checked{}
	defer func() { sc.ok = seen }()
	root := filepath.Join(state, "keystore")
	keys := map[string]*onDiskKey{}
	var problems []string
	tmps, err := os.ReadDir(filepath.Join(state, ".tmp"))
	if err != nil {
		problems = append(problems, "listing .tmp: "+err.Error())
	}
	for _, d := range tmps {
		if strings.HasPrefix(d.Name(), ".tmp-") {
			problems = append(problems, ".tmp/"+d.Name()+": temporary file left after a restart")
		}
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, err.Error())
			return nil
		}
		rel, rerr := filepath.Rel(state, path)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		// "keystore", app, purpose, name~meta.json; or a legacy key's
		// "keystore", app, purpose, name, file.
		segs := strings.Split(rel, "/")
		if d.Type()&fs.ModeSymlink != 0 {
			problems = append(problems, rel+": symlink")
			return nil
		}
		// key returns the entry of the key named by segs[1:4] (legacy
		// directory or key file), made on first sight.
		key := func(name string) *onDiskKey {
			id := segs[1] + "/" + segs[2] + "/" + name
			k := keys[id]
			if k == nil {
				k = &onDiskKey{handles: map[uint32]bool{}}
				keys[id] = k
			}
			return k
		}
		if d.IsDir() {
			if len(segs) > 4 {
				problems = append(problems, rel+": directory below a key directory")
				return fs.SkipDir
			}
			if len(segs) == 4 {
				key(segs[3]).dir = rel
			}
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, ".tmp-") {
			problems = append(problems, rel+": temporary file left after a restart")
			return nil
		}
		keyName, isKeyFile := strings.CutSuffix(name, "~meta.json")
		isKeyFile = isKeyFile && len(segs) == 4
		var k *onDiskKey
		switch {
		case isKeyFile:
			k = key(keyName)
		case len(segs) == 5:
			k = key(segs[3])
		}
		isMeta := isKeyFile || len(segs) == 5 && name == "meta.json"
		if isMeta && k.file != "" {
			k.problems = append(k.problems, rel+": the key is also stored as "+k.file)
		}
		if isMeta {
			k.file = rel
		}
		if k != nil {
			// Unchanged since the last scan, which found it whole.
			st, ok := fileStamp(d)
			if c, seenBefore := sc.ok[rel]; ok && seenBefore && c.st == st {
				if c.meta != nil {
					k.setMeta(c.meta)
				} else if m := handleName.FindStringSubmatch(name); m != nil {
					v, perr := strconv.ParseUint(m[1], 10, 32)
					if perr == nil {
						k.handles[uint32(v)] = true
					}
				}
				seen[rel] = c
				return nil
			}
			defer func() {
				if ok && len(k.problems) == 0 {
					c := checked{st: st}
					if isMeta {
						c.meta = k.meta
					}
					seen[rel] = c
				}
			}()
		}
		data, rerr := os.ReadFile(path)
		if rerr != nil {
			problems = append(problems, rel+": "+rerr.Error())
			return nil
		}
		if rel == "keystore/MANIFEST" {
			if _, why := checkEnvelope("manifest", rel, data); why != "" {
				problems = append(problems, rel+": "+why)
			}
			return nil
		}
		if k == nil {
			problems = append(problems, rel+": unexpected file")
			return nil
		}
		switch m := handleName.FindStringSubmatch(name); {
		case isMeta:
			body, why := checkEnvelope("meta", rel, data)
			if why != "" {
				k.problems = append(k.problems, rel+": "+why)
				return nil
			}
			var mf metaFile
			if err := json.Unmarshal(body, &mf); err != nil {
				k.problems = append(k.problems, rel+": body: "+err.Error())
				return nil
			}
			k.setMeta(&mf)
		case m != nil && !isKeyFile:
			v, perr := strconv.ParseUint(m[1], 10, 32)
			if perr != nil {
				k.problems = append(k.problems, rel+": version out of range")
				return nil
			}
			if why := checkHandle(rel, data); why != "" {
				k.problems = append(k.problems, rel+": "+why)
			}
			k.handles[uint32(v)] = true
		default:
			problems = append(problems, rel+": unexpected file")
		}
		return nil
	})
	if err != nil {
		problems = append(problems, "walking "+root+": "+err.Error())
	}
	return keys, problems
}
