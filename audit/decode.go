package audit

import (
	"bytes"
	"math"
	"time"
	"unicode/utf8"

	"github.com/nexus-os/keystored/core/provider"
)

// ParseLine decodes one log line (without its newline) into a Record. It
// accepts exactly the canonical encoding (docs/audit.md): the fields in
// their fixed order, no spaces, strings escaping only `"` and `\`, numbers
// without leading zeros, the time in UTC RFC 3339 form, lower-case hex
// hashes. It checks the fields as Append does but not the chain: that the
// Hash matches the record and the Prev its predecessor is Verify's job.
//
// Errors wrap EINVAL and name what is wrong, never quoting the line.
func ParseLine(line []byte) (Record, error) {
	r, _, reason := parseRecord(line, nil)
	if reason != "" {
		return Record{}, provider.Errorf(provider.EINVAL, "audit line: %s", reason)
	}
	return r, nil
}

// parseRecord is ParseLine returning a reason instead of an error. It
// re-encodes the record into scratch for the canonical check and returns
// scratch for reuse.
func parseRecord(line, scratch []byte) (Record, []byte, string) {
	if len(line) > MaxLine {
		return Record{}, scratch, "line too long"
	}
	p := parser{b: line}
	var r Record
	p.lit(`{"seq":`)
	r.Seq = p.uint(math.MaxUint64)
	p.lit(`,"time":`)
	r.Time = p.time()
	p.lit(`,"caller":{"uid":`)
	r.Caller.UID = p.int()
	p.lit(`,"gid":`)
	r.Caller.GID = p.int()
	p.lit(`,"pid":`)
	r.Caller.PID = p.int()
	p.lit(`,"app":`)
	r.Caller.App = p.str()
	p.lit(`,"operator":`)
	r.Caller.Operator = p.bool()
	p.lit(`},"op":`)
	r.Op = p.str()
	p.lit(`,"key":`)
	r.Key = p.str()
	p.lit(`,"version":`)
	r.Version = uint32(p.uint(math.MaxUint32))
	if p.err == "" && bytes.HasPrefix(p.b[p.i:], []byte(`,"gen":`)) {
		p.lit(`,"gen":`)
		r.Gen = p.uint(math.MaxUint64)
	}
	p.lit(`,"result":`)
	r.Result = p.str()
	p.lit(`,"items":`)
	r.Items = p.count()
	p.lit(`,"failed":`)
	r.Failed = p.count()
	p.lit(`,"detail":`)
	r.Detail = p.str()
	p.lit(`,"prev":`)
	r.Prev = p.hex()
	p.lit(`,"hash":`)
	r.Hash = p.hex()
	p.lit(`}`)
	if p.err == "" && p.i != len(p.b) {
		p.fail("trailing bytes")
	}
	if p.err != "" {
		return Record{}, scratch, p.err
	}
	if r.Seq == 0 {
		return Record{}, scratch, "seq 0"
	}
	if msg := r.problem(); msg != "" {
		return Record{}, scratch, msg
	}
	// One encoding per record: anything the parser tolerated that the
	// encoder would write differently (a leading zero, "-0", a time
	// spelled another way) is refused here.
	scratch = appendCanonical(scratch[:0], &r)
	if !bytes.Equal(scratch, line) {
		return Record{}, scratch, "not in canonical form"
	}
	return r, scratch, ""
}

// appendCanonical appends the line of r with r.Hash as given, without the
// newline.
func appendCanonical(dst []byte, r *Record) []byte {
	dst = appendBody(dst, r)
	dst = append(dst, r.Hash...)
	return append(dst, bodyEnd...)
}

// parser reads the canonical line format. After the first failure every
// method returns a zero value and err keeps the first reason.
type parser struct {
	b   []byte
	i   int
	err string
}

func (p *parser) fail(reason string) {
	if p.err == "" {
		p.err = reason
	}
}

// lit consumes the literal s.
func (p *parser) lit(s string) {
	if p.err != "" {
		return
	}
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.fail("expected " + s)
		return
	}
	p.i += len(s)
}

// digits consumes a run of decimal digits and returns it.
func (p *parser) digits() []byte {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == start {
		p.fail("expected a number")
	}
	return p.b[start:p.i]
}

// uint consumes an unsigned decimal of at most limit.
func (p *parser) uint(limit uint64) uint64 {
	if p.err != "" {
		return 0
	}
	var v uint64
	for _, c := range p.digits() {
		d := uint64(c - '0')
		if v > (limit-d)/10 {
			p.fail("number out of range")
			return 0
		}
		v = v*10 + d
	}
	return v
}

// int consumes a signed decimal int64.
func (p *parser) int() int64 {
	if p.err != "" {
		return 0
	}
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
		v := p.uint(math.MaxInt64 + 1)
		return int64(-v) // two's complement: -(2^63) wraps to MinInt64
	}
	return int64(p.uint(math.MaxInt64))
}

// count consumes a non-negative int.
func (p *parser) count() int {
	return int(p.uint(math.MaxInt))
}

func (p *parser) bool() bool {
	if p.err != "" {
		return false
	}
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false
	}
	p.fail("expected true or false")
	return false
}

// str consumes a JSON string whose only escapes are \" and \\, holding no
// control bytes and valid UTF-8, of at most MaxField bytes decoded.
func (p *parser) str() string {
	if p.err != "" {
		return ""
	}
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		p.fail("expected a string")
		return ""
	}
	p.i++
	var out []byte
	escaped := false
	start := p.i
	for {
		if p.i >= len(p.b) {
			p.fail("unterminated string")
			return ""
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			if escaped {
				s = out
			}
			p.i++
			if len(s) > MaxField {
				p.fail("string over the bound")
				return ""
			}
			if !utf8.Valid(s) {
				p.fail("invalid UTF-8 in a string")
				return ""
			}
			return string(s)
		case c == '\\':
			if p.i+1 >= len(p.b) || (p.b[p.i+1] != '"' && p.b[p.i+1] != '\\') {
				p.fail("escape other than \\\" or \\\\ in a string")
				return ""
			}
			if !escaped {
				escaped = true
				out = append(out, p.b[start:p.i]...)
			}
			out = append(out, p.b[p.i+1])
			p.i += 2
		case c < 0x20:
			p.fail("control byte in a string")
			return ""
		default:
			if escaped {
				out = append(out, c)
			}
			p.i++
		}
	}
}

// hex consumes a quoted 64-digit lower-case hex value.
func (p *parser) hex() string {
	if p.err != "" {
		return ""
	}
	if len(p.b)-p.i < hashLen+2 || p.b[p.i] != '"' || p.b[p.i+hashLen+1] != '"' {
		p.fail("expected a 64-digit hex hash")
		return ""
	}
	h := p.b[p.i+1 : p.i+1+hashLen]
	bad := false
	for _, c := range h {
		bad = bad || !isHex[c]
	}
	if bad {
		p.fail("expected a 64-digit lower-case hex hash")
		return ""
	}
	p.i += hashLen + 2
	return string(h)
}

// time consumes a quoted RFC 3339 time in UTC ("Z").
func (p *parser) time() time.Time {
	if p.err != "" {
		return time.Time{}
	}
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		p.fail("expected a time string")
		return time.Time{}
	}
	end := bytes.IndexByte(p.b[p.i+1:], '"')
	if end < 0 || end > len("2006-01-02T15:04:05.999999999Z") {
		p.fail("expected a time string")
		return time.Time{}
	}
	s := p.b[p.i+1 : p.i+1+end]
	if len(s) == 0 || s[len(s)-1] != 'Z' {
		p.fail("time not in UTC")
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		p.fail("malformed time")
		return time.Time{}
	}
	p.i += end + 2
	return t
}

// isHex marks the lower-case hex digits.
var isHex = [256]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true,
	'8': true, '9': true, 'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true,
}
