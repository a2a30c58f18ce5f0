package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
)

// The signed log of these tests: 18 records, a checkpoint every 5.
// Line (= seq) 1 start, 7, 13, 19 every, 23 stop: 23 lines.
const (
	signedRecords = 18
	signedEvery   = 5
	signedLines   = 23
)

// rechain re-encodes ls[from:] after edit (nil: none) with Prev and Hash
// recomputed, as a forger who knows the format but not the key can.
func rechain(t *testing.T, ls [][]byte, from int, edit func(i int, r *audit.Record)) [][]byte {
	t.Helper()
	out := append([][]byte(nil), ls...)
	prev := audit.Genesis
	if from > 0 {
		prev = parse(t, out[from-1]).Hash
	}
	for i := from; i < len(out); i++ {
		r := parse(t, out[i])
		if edit != nil {
			edit(i, &r)
		}
		r.Prev = prev
		r = audit.Rehash(r)
		prev = r.Hash
		out[i] = append(audit.EncodeLine(r), '\n')
	}
	return out
}

// wantVerifyError runs VerifyLogWith and requires a VerifyError at line,
// untrusted from `from`, whose reason contains reason.
func wantSignedError(t *testing.T, what, path string, o audit.VerifyOptions, line int, from uint64, reason string) *audit.VerifyError {
	t.Helper()
	res, err := audit.VerifyLogWith(path, o)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%s: VerifyLogWith = %+v, %v; want a VerifyError", what, res, err)
	}
	if ve.Line != line || ve.UntrustedFrom != from || !strings.Contains(ve.Reason, reason) {
		t.Fatalf("%s: %v (line %d, untrusted from %d); want line %d, untrusted from %d, reason with %q", what, ve, ve.Line, ve.UntrustedFrom, line, from, reason)
	}
	if code, _ := provider.CodeOf(err); code != provider.EIO {
		t.Fatalf("%s: code %v, want EIO", what, code)
	}
	return ve
}

func signedFixture(t *testing.T) (string, [][]byte, []audit.Record, *testSigner) {
	t.Helper()
	path, sink, s := signedLog(t, signedRecords, signedEvery)
	ls := readLines(t, path)
	if len(ls) != signedLines {
		t.Fatalf("fixture has %d lines, want %d", len(ls), signedLines)
	}
	shipped, err := audit.ParseShipped(bytes.NewReader(sink.data()))
	if err != nil {
		t.Fatal(err)
	}
	if len(shipped) != 5 {
		t.Fatalf("%d shipped checkpoints, want 5", len(shipped))
	}
	return path, ls, shipped, s
}

func TestSignedIntact(t *testing.T) {
	path, _, shipped, s := signedFixture(t)
	res, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: s.pub(), Shipped: shipped})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoints != 5 || res.Shipped != 5 || res.LastSigned != signedLines-1 || res.Unsigned != 0 || !res.EndsWithStop || res.LastSeq != signedLines {
		t.Fatalf("VerifyLogWith = %+v", res)
	}
}

// Every attack of issue 14, each run against a fresh copy of the signed
// fixture, detected by VerifyLogWith with the public key (and, where the
// chain alone cannot, the difference noted).
func TestSignedTamper(t *testing.T) {
	key := func(s *testSigner) audit.VerifyOptions { return audit.VerifyOptions{PublicKey: s.pub()} }
	t.Run("flip a byte", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		ls[4] = bytes.Replace(ls[4], []byte(`"result":"`), []byte(`"result":"X`), 1)
		writeLines(t, path, ls)
		// The hint names the edited record: line 5, seq 5.
		ve := wantSignedError(t, "flip", path, key(s), 5, 5, "")
		if ve.Seq != 5 {
			t.Fatalf("seq %d, want 5", ve.Seq)
		}
	})
	t.Run("delete a record", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		writeLines(t, path, append(ls[:3:3], ls[4:]...))
		wantSignedError(t, "delete", path, key(s), 4, 4, "seq is 5")
	})
	t.Run("reorder two", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		ls[2], ls[3] = ls[3], ls[2]
		writeLines(t, path, ls)
		wantSignedError(t, "reorder", path, key(s), 3, 3, "seq is 4")
	})
	t.Run("insert one", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		ins := append(append(append([][]byte(nil), ls[:3]...), ls[1]), ls[3:]...)
		writeLines(t, path, ins)
		wantSignedError(t, "insert", path, key(s), 4, 4, "seq is 2")
	})
	t.Run("append forged records with recomputed hashes", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		forged := append(ls, ls[1], ls[2])
		forged = rechain(t, forged, signedLines, func(i int, r *audit.Record) { r.Seq = uint64(i + 1) })
		writeLines(t, path, forged)
		if _, err := audit.VerifyLog(path); err != nil {
			t.Fatalf("the chain alone should not see a forged append: %v", err)
		}
		wantSignedError(t, "forged append", path, key(s), signedLines+1, signedLines+1, "2 records after the last signed checkpoint (seq 23)")
	})
	t.Run("append a forged checkpoint", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		forged := rechain(t, append(ls, ls[1], ls[len(ls)-1]), signedLines, func(i int, r *audit.Record) {
			r.Seq = uint64(i + 1)
			if r.Op == audit.OpCheckpoint {
				r.Detail = "stop seq=24 ed25519:" + b64(ed25519.Sign(testKey(9), []byte("x")))
			}
		})
		writeLines(t, path, forged)
		wantSignedError(t, "forged checkpoint", path, key(s), signedLines+2, signedLines+1, "checkpoint signature invalid")
	})
	t.Run("full rewrite with recomputed chain", func(t *testing.T) {
		path, ls, shipped, s := signedFixture(t)
		orig3, orig10 := parse(t, ls[2]), parse(t, ls[9])
		writeLines(t, path, rechain(t, ls, 4, func(i int, r *audit.Record) {
			if i == 4 {
				r.Key = "rewritten"
			}
		}))
		if _, err := audit.VerifyLog(path); err != nil {
			t.Fatalf("the chain alone should not see a rewrite: %v", err)
		}
		// The first checkpoint after the edit no longer verifies; the
		// start checkpoint (seq 1) still does.
		wantSignedError(t, "rewrite, key", path, key(s), 7, 2, "checkpoint signature invalid")
		// Without the key, a checkpoint noted elsewhere: untrusted after the
		// last one that matched, not "intact before line N".
		cp := func(r audit.Record) audit.Checkpoint { return audit.Checkpoint{Seq: r.Seq, Hash: r.Hash} }
		wantSignedError(t, "rewrite, checkpoints", path, audit.VerifyOptions{Checkpoints: []audit.Checkpoint{cp(orig3), cp(orig10)}}, 10, 4,
			"the log was rewritten; every record after the last matching checkpoint (seq 3) is untrusted")
		wantSignedError(t, "rewrite, one checkpoint", path, audit.VerifyOptions{Checkpoints: []audit.Checkpoint{cp(orig10)}}, 10, 1,
			"every record is untrusted")
		// Shipped checkpoints, without the key: the first after the edit
		// (seq 7) differs; the shipped start (seq 1) matched.
		wantSignedError(t, "rewrite, shipped", path, audit.VerifyOptions{Shipped: shipped}, 7, 2,
			"the shipped checkpoint at line 2 of the shipped file: the log was rewritten; every record after the last matching checkpoint (seq 1)")
	})
	t.Run("full rewrite re-signed with another key", func(t *testing.T) {
		path, ls, shipped, s := signedFixture(t)
		other := testKey(7)
		writeLines(t, path, resign(t, ls, other))
		wantSignedError(t, "re-signed", path, key(s), 1, 1, "checkpoint signature invalid")
		// It verifies with the forger's key, but not against what was shipped.
		if _, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: other.Public().(ed25519.PublicKey)}); err != nil {
			t.Fatalf("re-signed log with its own key: %v", err)
		}
		wantSignedError(t, "re-signed, shipped", path, audit.VerifyOptions{Shipped: shipped}, 1, 1, "the log was rewritten")
	})
	t.Run("tail cut after the last checkpoint", func(t *testing.T) {
		path, ls, shipped, s := signedFixture(t)
		writeLines(t, path, ls[:signedLines-1]) // the stop checkpoint gone
		wantSignedError(t, "cut stop", path, key(s), 20, 20, "3 records after the last signed checkpoint (seq 19)")
		o := key(s)
		o.AllowUnsignedTail = true
		res, err := audit.VerifyLogWith(path, o)
		if err != nil || res.Unsigned != 3 || res.LastSigned != 18 || res.EndsWithStop {
			t.Fatalf("live log: %+v, %v", res, err)
		}
		o.Shipped = shipped
		wantSignedError(t, "cut, shipped", path, o, 23, 20, "log truncated: shipped checkpoint seq 23 is beyond the log's end (seq 22)")
	})
	t.Run("tail cut at a checkpoint", func(t *testing.T) {
		path, ls, shipped, s := signedFixture(t)
		writeLines(t, path, ls[:13])
		wantSignedError(t, "cut at 13", path, key(s), 13, 14, `the last signed checkpoint (seq 13) is "every", not "stop"`)
		o := key(s)
		o.AllowUnsignedTail = true
		if _, err := audit.VerifyLogWith(path, o); err != nil {
			t.Fatal(err)
		}
		o.Shipped = shipped
		wantSignedError(t, "cut at 13, shipped", path, o, 14, 14, "shipped checkpoint seq 19 is beyond the log's end (seq 13)")
	})
	t.Run("tail cut before the last checkpoint", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		writeLines(t, path, ls[:16])
		wantSignedError(t, "cut at 16", path, key(s), 14, 14, "3 records after the last signed checkpoint (seq 13)")
	})
	t.Run("bad signature", func(t *testing.T) {
		path, ls, _, s := signedFixture(t)
		writeLines(t, path, rechain(t, ls, 12, func(i int, r *audit.Record) {
			if i == 12 {
				f := strings.Fields(r.Detail)
				sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f[2], "ed25519:"))
				if err != nil {
					t.Fatal(err)
				}
				sig[10] ^= 1
				r.Detail = f[0] + " " + f[1] + " ed25519:" + b64(sig)
			}
		}))
		wantSignedError(t, "bad signature", path, key(s), 13, 8, "checkpoint signature invalid")
	})
	t.Run("wrong key", func(t *testing.T) {
		path, _, shipped, _ := signedFixture(t)
		wrong := audit.VerifyOptions{PublicKey: testKey(2).Public().(ed25519.PublicKey)}
		wantSignedError(t, "wrong key", path, wrong, 1, 1, "checkpoint signature invalid")
		wrong.Shipped = shipped
		ve := wantSignedError(t, "wrong key, shipped", path, wrong, 1, 0, "shipped checkpoint signature invalid")
		if ve.File != audit.ShippedFile {
			t.Fatalf("file %q", ve.File)
		}
	})
	t.Run("shipped checkpoint altered", func(t *testing.T) {
		path, _, shipped, s := signedFixture(t)
		shipped[2].Detail = strings.Replace(shipped[2].Detail, "every", "stop", 1)
		shipped[2] = audit.Rehash(shipped[2])
		o := key(s)
		o.Shipped = shipped
		ve := wantSignedError(t, "altered shipped", path, o, 3, 0, "shipped checkpoint signature invalid")
		if ve.File != audit.ShippedFile {
			t.Fatalf("file %q", ve.File)
		}
	})
	t.Run("log replaced by a fresh unsigned chain", func(t *testing.T) {
		path, _, shipped, s := signedFixture(t)
		writeRecords(t, path+".new", 30)
		ls := readLines(t, path+".new")
		writeLines(t, path, ls)
		wantSignedError(t, "fresh chain", path, key(s), 1, 1, "no signed checkpoint in 30 records")
		wantSignedError(t, "fresh chain, shipped", path, audit.VerifyOptions{Shipped: shipped}, 1, 1, "the log was rewritten")
	})
}

// resign rewrites a log with every checkpoint signed by key.
func resign(t *testing.T, ls [][]byte, key ed25519.PrivateKey) [][]byte {
	t.Helper()
	out := append([][]byte(nil), ls...)
	prev := audit.Genesis
	for i := range out {
		r := parse(t, out[i])
		r.Prev = prev
		if r.Op == audit.OpCheckpoint {
			f := strings.Fields(r.Detail)
			msg := audit.CheckpointMessage(r.Seq-1, prev, r.Time, r.Key, f[0])
			r.Detail = f[0] + " " + f[1] + " ed25519:" + b64(ed25519.Sign(key, msg))
		}
		r = audit.Rehash(r)
		prev = r.Hash
		out[i] = append(audit.EncodeLine(r), '\n')
	}
	return out
}

func TestParseShipped(t *testing.T) {
	path, sink, _ := signedLog(t, 3, 0)
	good := sink.data()
	if rs, err := audit.ParseShipped(bytes.NewReader(good)); err != nil || len(rs) != 2 {
		t.Fatalf("ParseShipped = %d records, %v", len(rs), err)
	}
	ls := readLines(t, path)
	for _, c := range []struct {
		name string
		data []byte
		line string
	}{
		{"junk", append(append([]byte(nil), good...), "hello\n"...), "line 3"},
		{"empty line", append([]byte("\n"), good...), "line 1"},
		{"not a checkpoint", append(append([]byte(nil), good...), ls[1]...), "line 3"},
		{"hash wrong", bytes.Replace(good, []byte(`"op"`), []byte(`"op" `), 1), "line 1"},
	} {
		_, err := audit.ParseShipped(bytes.NewReader(c.data))
		wantCode(t, err, provider.EINVAL)
		if !strings.Contains(err.Error(), c.line) {
			t.Errorf("%s: %v does not name %s", c.name, err, c.line)
		}
	}
}

func TestVerifyLogWithOptions(t *testing.T) {
	path, _, _ := signedLog(t, 3, 0)
	_, err := audit.VerifyLogWith(path, audit.VerifyOptions{PublicKey: ed25519.PublicKey{1, 2}})
	wantCode(t, err, provider.EINVAL)
	// A log of only start/stop verifies; chain-only mode ignores signatures.
	if _, err := audit.VerifyLogWith(path, audit.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}
