package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nexus-os/keystored/audit"
)

func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit", "audit.jsonl")

	l, err := audit.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	rec, err := l.Append(context.Background(), audit.Record{
		Time:   time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Caller: audit.Caller{UID: 1000, GID: 1000, PID: 4242, App: "web"},
		Op:     "keys.sign",
		Key:    "web/tls/server",
		Result: "ok",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := l.Close(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("appended seq", rec.Seq)

	res, err := audit.VerifyFile(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("records:", res.Records, "checkpoint:", res.Checkpoint())
	// Output:
	// appended seq 1
	// records: 1 checkpoint: 1:0d88e816cb8df5f7726f7c7ba6a5cea5a1d6e596f96b261ba2a618ff1bfba001
}
