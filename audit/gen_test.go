package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
)

// TestGenField: "gen" is written only when non-zero, right after
// "version", and read back; a written `"gen":0` is not canonical.
func TestGenField(t *testing.T) {
	dir := t.TempDir()
	lg, err := audit.Open(dir + "/audit.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, g := range []uint64{0, 7} {
		if _, err := lg.Append(context.Background(), audit.Record{Time: at, Op: "keys.rotate", Key: "a/b/c", Version: 2, Gen: g, Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	var got []audit.Record
	if _, err := audit.WalkLog(dir+"/audit.jsonl", audit.Checkpoint{}, func(r audit.Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Gen != 0 || got[1].Gen != 7 {
		t.Fatalf("gens read back: %+v", got)
	}
	line := `{"seq":1,"time":"2026-01-02T03:04:05Z","caller":{"uid":0,"gid":0,"pid":0,"app":"","operator":false},"op":"keys.rotate","key":"a/b/c","version":2,"gen":7,"result":"ok","items":0,"failed":0,"detail":"","prev":"` + audit.Genesis + `","hash":"` + strings.Repeat("0", 64) + `"}`
	r, err := audit.ParseLine([]byte(line))
	if err != nil || r.Gen != 7 {
		t.Fatalf("ParseLine with gen: %+v, %v", r, err)
	}
	if _, err := audit.ParseLine([]byte(strings.Replace(line, `"gen":7`, `"gen":0`, 1))); err == nil {
		t.Fatal(`"gen":0 accepted`)
	}
}
