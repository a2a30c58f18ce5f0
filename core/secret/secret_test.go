package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestBytesNeverPrints(t *testing.T) {
	key := []byte("super-secret-key-material-0123456789")
	s := New(key)
	type holder struct {
		Name string
		Key  Bytes
		ptr  *Bytes
	}
	h := holder{Name: "x", Key: s, ptr: &s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &s))
	}
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(js))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", "key", s, "holder", h)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("msg", "key", s)
	outs = append(outs, buf.String())
	for _, o := range outs {
		for _, form := range []string{string(key), fmt.Sprintf("%x", key), "super-secret"} {
			if strings.Contains(strings.ToLower(o), strings.ToLower(form)) {
				t.Errorf("output %q contains the secret", o)
			}
		}
	}
	if !bytes.Equal(s.Reveal(), key) {
		t.Fatal("Reveal does not return the material")
	}
	key[0] = 'X'
	if s.Reveal()[0] == 'X' {
		t.Fatal("New did not copy")
	}
	s.Wipe()
	if !bytes.Equal(s.Reveal(), make([]byte, len(key))) {
		t.Fatal("Wipe did not zero")
	}
}
