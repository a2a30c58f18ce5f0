package faults

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/internal/tpmcounter/swtpmtest"
)

// tpmConfig is an operator config whose [counter] is the TPM counter
// (default NV index) on s's data socket.
func tpmConfig(t *testing.T, s *swtpmtest.TPM) string {
	t.Helper()
	return operatorConfig(t, "[counter]\ntype = \"tpm\"\ndevice = \""+s.Sock()+"\"\n")
}

// auditOverrides counts the audit.override records of state's log.
func auditOverrides(t *testing.T, state string) int {
	t.Helper()
	return strings.Count(string(readFile(t, filepath.Join(state, "audit", "audit.jsonl"))), `"op":"audit.override"`)
}

// TestRollbackWholeStateTPMRealDaemon: TestRollbackWholeStateRealDaemon
// with the TPM counter (a swtpm on a Unix socket): the whole state
// directory, audit log included, restored from a backup taken before a
// revocation is refused at start ("older than the external counter")
// until the change is accepted (audited); the counter's value survives a
// TPM restart; a wiped TPM (swtpm's state removed) and a cleared one
// (TPM2_Clear) are refused ("behind") until accepted.
func TestRollbackWholeStateTPMRealDaemon(t *testing.T) {
	ctx := context.Background()
	s := swtpmtest.Start(t)
	config := tpmConfig(t, s)
	state, backup := revokedAfterBackup(t, config)
	restoreWhole(t, state, backup)
	startRefused(t, config, state, "older than the external counter")
	if n := auditOverrides(t, state); n != 0 {
		t.Fatalf("%d audit.override records before any override", n)
	}

	td := startTamper(t, config, state, "--accept-counter-change")
	td.stop()
	if n := auditOverrides(t, state); n != 1 {
		t.Fatalf("%d audit.override records after --accept-counter-change, want 1", n)
	}
	// Accepted once: the next start is a normal one, and the accepted
	// (restored) state serves: the key is active again.
	td = startTamper(t, config, state)
	if _, err := td.c.Sign(ctx, "p/k", []byte("m")); err != nil {
		t.Errorf("sign with the accepted restored key: %v", err)
	}
	td.stop()

	// A reboot: the TPM's counter is in its NV memory, the daemon starts
	// as usual (no override).
	s.Restart()
	startTamper(t, config, state).stop()
	if n := auditOverrides(t, state); n != 1 {
		t.Fatalf("%d audit.override records after a TPM restart, want still 1", n)
	}

	// A wiped TPM: the index is defined again and reads 0, behind the log.
	s.Reset()
	startRefused(t, config, state, "behind")
	td = startTamper(t, config, state, "--accept-counter-change")
	td.stop()
	if n := auditOverrides(t, state); n != 2 {
		t.Fatalf("%d audit.override records after accepting the wiped TPM, want 2", n)
	}
	startTamper(t, config, state).stop()

	// TPM2_Clear: the index is deleted, the TPM keeps the largest value
	// its counters had, and the index defined again at the next start
	// starts above it at its first increment (not at 1). Refused as
	// behind; accepted, the daemon starts and tracks from that value.
	s.Clear()
	startRefused(t, config, state, "behind")
	td = startTamper(t, config, state, "--accept-counter-change")
	if _, err := td.c.Revoke(ctx, "p/k"); err != nil {
		t.Fatal(err)
	}
	td.stop()
	if n := auditOverrides(t, state); n != 3 {
		t.Fatalf("%d audit.override records after accepting the cleared TPM, want 3", n)
	}
	startTamper(t, config, state).stop()
}
