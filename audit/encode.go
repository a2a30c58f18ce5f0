package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"time"
)

// Domain-separation strings of the chain (docs/audit.md, "Chain").
const (
	hashDomain    = "keystored/audit/v1"
	genesisDomain = "keystored/audit/genesis/v1"
)

// Genesis is the Prev of the first record of a log file:
// hex(SHA-256("keystored/audit/genesis/v1")).
var Genesis = func() string {
	sum := sha256.Sum256([]byte(genesisDomain))
	return hex.EncodeToString(sum[:])
}()

var (
	hashPrefix = []byte(hashDomain + "\x00")
	bodyEnd    = []byte(`"}`)
)

// hashLen is the length of a hex SHA-256 value.
const hashLen = 2 * sha256.Size

// appendBody appends the canonical encoding of r up to and including the
// opening quote of the hash value:
//
//	{"seq":1,"time":"…","caller":{…},…,"prev":"<hex>","hash":"
//
// The hash preimage is this body followed by `"}`; the line is this body
// followed by the hash, `"}` and a newline. Strings are written as is
// except for `"` and `\`, which are escaped; validated fields hold no
// control characters and only valid UTF-8.
func appendBody(dst []byte, r *Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = r.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","caller":{"uid":`...)
	dst = strconv.AppendInt(dst, r.Caller.UID, 10)
	dst = append(dst, `,"gid":`...)
	dst = strconv.AppendInt(dst, r.Caller.GID, 10)
	dst = append(dst, `,"pid":`...)
	dst = strconv.AppendInt(dst, r.Caller.PID, 10)
	dst = append(dst, `,"app":`...)
	dst = appendString(dst, r.Caller.App)
	dst = append(dst, `,"operator":`...)
	dst = strconv.AppendBool(dst, r.Caller.Operator)
	dst = append(dst, `},"op":`...)
	dst = appendString(dst, r.Op)
	dst = append(dst, `,"key":`...)
	dst = appendString(dst, r.Key)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(r.Version), 10)
	if r.Gen > 0 {
		dst = append(dst, `,"gen":`...)
		dst = strconv.AppendUint(dst, r.Gen, 10)
	}
	dst = append(dst, `,"result":`...)
	dst = appendString(dst, r.Result)
	dst = append(dst, `,"items":`...)
	dst = strconv.AppendInt(dst, int64(r.Items), 10)
	dst = append(dst, `,"failed":`...)
	dst = strconv.AppendInt(dst, int64(r.Failed), 10)
	dst = append(dst, `,"detail":`...)
	dst = appendString(dst, r.Detail)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, r.Prev...)
	dst = append(dst, `","hash":"`...)
	return dst
}

// appendString appends s as a JSON string, escaping only `"` and `\`.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// hasher computes chain values; it is not safe for concurrent use.
type hasher struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newHasher() *hasher { return &hasher{h: sha256.New()} }

// chain returns SHA-256("keystored/audit/v1" ‖ 0x00 ‖ body ‖ `"}`), the
// chain value of the record whose body (see appendBody) is given. The
// result is valid until the next call.
func (x *hasher) chain(body []byte) []byte {
	x.h.Reset()
	// hash.Hash.Write never returns an error.
	_, _ = x.h.Write(hashPrefix)
	_, _ = x.h.Write(body)
	_, _ = x.h.Write(bodyEnd)
	return x.h.Sum(x.sum[:0])
}

// appendLine appends the complete line of r, newline included, with r.Hash
// ignored and recomputed; it returns the line and the hash it wrote.
func appendLine(x *hasher, dst []byte, r *Record) ([]byte, string) {
	start := len(dst)
	dst = appendBody(dst, r)
	sum := x.chain(dst[start:])
	n := len(dst)
	dst = hex.AppendEncode(dst, sum)
	hash := string(dst[n:])
	return append(dst, `"}`+"\n"...), hash
}
