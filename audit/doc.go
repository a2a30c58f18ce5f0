// Package audit is keystored's persistent, tamper-evident audit log: one
// JSON line per request, in a canonical encoding, each line carrying the
// SHA-256 chain value of the line before it.
//
// A Log appends records with group commit: concurrent Appends are encoded
// in order under a mutex and written together by a single write(2) to an
// O_APPEND file; Append returns once its line is written (and, with
// SyncEveryRecord, fsynced). A failed write puts the Log in a failed state
// in which Ready and Append return EIO until the log is reopened: the
// daemon refuses requests it cannot audit (fail closed).
//
// Verify and VerifyFile check a log offline and report the first bad
// record as a *VerifyError. A chain cannot reveal the loss of its own tail;
// compare with a Checkpoint kept elsewhere for that. The format, the chain
// and the limits are specified in docs/audit.md.
package audit
