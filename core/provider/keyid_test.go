package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseKeyID(t *testing.T) {
	long := strings.Repeat("a", MaxSegment)
	good := []string{"a/b/c", "app-1/sign.v2/key_x", "0/0/0", long + "/" + long + "/" + long}
	for _, s := range good {
		id, err := ParseKeyID(s)
		if err != nil {
			t.Errorf("ParseKeyID(%q): %v", s, err)
			continue
		}
		if id.String() != s {
			t.Errorf("round trip %q -> %q", s, id.String())
		}
	}
	bad := []string{
		"", "a/b", "a/b/c/d", "/a/b", "a//c", "a/b/", "../b/c", "a/../c", "a/b/..", "./b/c",
		".a/b/c", "-a/b/c", "_a/b/c", "A/b/c", "a/B/c", "a/b/c\x00", "a/b/c\n", "a b/c/d",
		"a/b/c@1", "a\\b/c/d", "é/b/c", "a/b/ｃ", "a%2fb/c/d", "a/b/%2e%2e",
		long + "a/b/c", "a/b/" + long + "a", strings.Repeat("x", 10000),
	}
	for _, s := range bad {
		if _, err := ParseKeyID(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseKeyID(%q) = %v, want EINVAL", s, err)
		}
	}
}

func TestKeyIDText(t *testing.T) {
	id, err := NewKeyID("app", "p", "n")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(struct{ ID KeyID }{id})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"ID":"app/p/n"}` {
		t.Fatalf("json = %s", b)
	}
	var back struct{ ID KeyID }
	if err := json.Unmarshal(b, &back); err != nil || back.ID != id {
		t.Fatalf("unmarshal = %v, %v", back.ID, err)
	}
	if err := json.Unmarshal([]byte(`{"ID":"../x/y"}`), &back); err == nil {
		t.Fatal("unmarshal accepted a bad ID")
	}
}

func testRef(t testing.TB) KeyRef {
	id, err := NewKeyID("app", "purpose", "name")
	if err != nil {
		t.Fatal(err)
	}
	return KeyRef{ID: id, Version: 7, Algorithm: Ed25519, Use: UseSign, Provider: "software"}
}

func TestKeyRefBinary(t *testing.T) {
	r := testRef(t)
	b, err := r.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseKeyRef(b)
	if err != nil || back != r {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	// Every field change changes the encoding.
	id2, _ := NewKeyID("app", "purpose", "name2")
	variants := []KeyRef{r, r, r, r, r}
	variants[0].ID = id2
	variants[1].Version = 8
	variants[2].Algorithm = Ed448
	variants[3].Use = UseDecrypt
	variants[4].Provider = "testseed"
	for i, v := range variants {
		vb, err := v.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(vb, b) {
			t.Errorf("variant %d encodes like the original", i)
		}
	}
	// Field boundaries are length-prefixed: ("ab","c") != ("a","bc").
	x1, _ := NewKeyID("ab", "c", "d")
	x2, _ := NewKeyID("a", "bc", "d")
	e1, _ := KeyRef{ID: x1, Version: 1, Algorithm: Ed25519, Use: UseSign, Provider: "p"}.AppendBinary(nil)
	e2, _ := KeyRef{ID: x2, Version: 1, Algorithm: Ed25519, Use: UseSign, Provider: "p"}.AppendBinary(nil)
	if bytes.Equal(e1, e2) {
		t.Error("length prefixes missing")
	}
	for n := 0; n < len(b); n++ {
		if _, err := parseKeyRef(b[:n]); err == nil {
			t.Errorf("truncated to %d parsed", n)
		}
	}
	if _, err := (KeyRef{}).AppendBinary(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero ref encoded: %v", err)
	}
}

func TestInfoCheck(t *testing.T) {
	ok := Info{Name: "software", Algorithms: []Algorithm{Ed25519}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	withKEKs := Info{Name: "software", KEKs: []string{"0123456789abcdef", strings.Repeat("f", MaxKEKFingerprint), "a", "b"}}
	if err := withKEKs.Check(); err != nil {
		t.Fatalf("%d valid KEKs (one at the length bound): %v", MaxKEKs, err)
	}
	bad := []Info{
		{Name: ""}, {Name: "Bad Name"}, {Name: "x", Version: strings.Repeat("v", MaxInfoString+1)},
		{Name: "x", Algorithms: []Algorithm{Ed25519, Ed25519}}, {Name: "x", Algorithms: []Algorithm{""}},
		{Name: "x", Algorithms: make([]Algorithm, MaxAlgorithms+1)},
		{Name: "x", KEKs: []string{""}},
		{Name: "x", KEKs: []string{"0123456789ABCDEF"}},
		{Name: "x", KEKs: []string{"0123456789abcdeg"}},
		{Name: "x", KEKs: []string{strings.Repeat("a", MaxKEKFingerprint+1)}},
		{Name: "x", KEKs: []string{"ab", "ab"}},
		{Name: "x", KEKs: []string{"a", "b", "c", "d", "e"}},
	}
	for i, b := range bad {
		if err := b.Check(); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad info %d: %v", i, err)
		}
	}
	if !ok.Supports(Ed25519) || ok.Supports(Ed448) {
		t.Error("Supports is wrong")
	}
}

func TestHandlePrintsLengthOnly(t *testing.T) {
	h := Handle("secret-looking-bytes")
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		if got := sprintf(f, h); got != "handle(20 bytes)" {
			t.Errorf("%s -> %q", f, got)
		}
	}
}
