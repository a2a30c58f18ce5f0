package core

import (
	"context"
	"strconv"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// Op is a keystore operation. The zero value is invalid.
type Op uint8

// Operations.
const (
	_                                 Op = iota
	OpCreate                             // create
	OpGet                                // get
	OpList                               // list
	OpRotate                             // rotate
	OpRevoke                             // revoke
	OpRevokeVersion                      // revoke-version
	OpDestroy                            // destroy
	OpSetPolicy                          // set-policy
	OpSign                               // sign
	OpVerify                             // verify
	OpSeal                               // seal
	OpUnseal                             // unseal
	OpRewrap                             // rewrap
	OpPublicKey                          // public-key
	OpSweep                              // sweep
	OpKEKStatus                          // kek-status
	OpKEKRotate                          // kek-rotate
	OpMAC                                // mac
	OpVerifyMAC                          // verify-mac
	OpGenerateDataKey                    // generate-data-key
	OpGenerateDataKeyWithoutPlaintext    // generate-data-key-without-plaintext
	OpDecrypt                            // decrypt
	OpImportParameters                   // import-parameters
	OpImport                             // import
	// Notes: not calls, but records the core writes on its own
	// (AuditSink.Note).
	OpApplied          // applied
	OpRollbackDetected // rollback-detected
	OpAdopted          // adopted
	opEnd
)

var opNames = [opEnd]string{
	OpCreate: "create", OpGet: "get", OpList: "list", OpRotate: "rotate", OpRevoke: "revoke",
	OpRevokeVersion: "revoke-version", OpDestroy: "destroy", OpSetPolicy: "set-policy",
	OpSign: "sign", OpVerify: "verify", OpSeal: "seal", OpUnseal: "unseal", OpRewrap: "rewrap",
	OpPublicKey: "public-key", OpSweep: "sweep", OpKEKStatus: "kek-status", OpKEKRotate: "kek-rotate",
	OpMAC: "mac", OpVerifyMAC: "verify-mac",
	OpGenerateDataKey: "generate-data-key", OpGenerateDataKeyWithoutPlaintext: "generate-data-key-without-plaintext",
	OpDecrypt: "decrypt", OpImportParameters: "import-parameters", OpImport: "import",
	OpApplied: "applied", OpRollbackDetected: "rollback-detected", OpAdopted: "adopted",
}

// String returns the operation's name, e.g. "revoke-version".
func (o Op) String() string {
	if o > 0 && o < opEnd {
		return opNames[o]
	}
	return "invalid-op(" + strconv.Itoa(int(o)) + ")"
}

// Event is one audit record of one keystore call. It holds identifiers and
// outcomes only: never messages, plaintext, AAD, signatures or key bytes.
type Event struct {
	Time   time.Time // from the keystore's Clock
	Caller Caller
	Op     Op
	// Key is the key ID the call named ("" for list and sweep, or when the
	// ID did not parse), Version the version it used or named (0 if none).
	Key     string
	Version Version
	// Result is 0 on success, else the error's code.
	Result provider.Code
	// Detail is a short machine-made note (e.g. "auto-rotated to v3",
	// "rotated 2 keys"); never caller-supplied text.
	Detail string
	// Gen is the key's generation after a lifecycle change (set on the
	// Commit event and the Record event of the change, and on its
	// OpApplied note); 0 otherwise.
	Gen uint64
}

// OK reports whether the call succeeded.
func (e Event) OK() bool { return e.Result == 0 }

// AuditSink receives audit events. The keystore fails closed: an error
// from any method fails the operation (EIO) and withholds its output, and
// a state change is never made unless Commit accepted it first.
//
// Implementations must be safe for concurrent use.
type AuditSink interface {
	// Ready reports whether records can be written now. The keystore asks
	// before starting work that would change state, and before durable
	// bookkeeping (a seal-budget reservation), so that a broken log stops
	// an operation early.
	Ready(ctx context.Context) error
	// Commit is called immediately before a lifecycle change (create,
	// rotate, revoke, revoke-version, destroy, set-policy, automatic
	// rotation) is made durable, with the event as it will be recorded if
	// the change succeeds. An error refuses the change. A sink may write
	// its record here (write-ahead): then the change is on record before
	// it exists, and the Record call that follows tells it whether the
	// change went through.
	Commit(ctx context.Context, e Event) error
	// Record writes one event: the final outcome of every call.
	Record(ctx context.Context, e Event) error
	// Note writes e as a record of its own, never folded into the record
	// of the request that caused it. The core writes two notes:
	//   - OpApplied (Key, Version, Gen): a lifecycle change with
	//     generation Gen is durable (written after its persist; an error
	//     fails the call with EIO, the change stays);
	//   - OpRollbackDetected (Key, Result EIO, Detail the reason): a key
	//     read from storage disagrees with the audit log's generation
	//     (Config.Generations), written once per key per process;
	//   - OpAdopted (Key, Version, Gen, Result ok): AdoptGenerations took
	//     the key's stored generation into the log after an operator
	//     accepted a log that lacks it.
	Note(ctx context.Context, e Event) error
}

// DiscardAudit is an AuditSink that drops every event. It is meant for
// tests and benchmarks; a daemon must use a real sink.
type DiscardAudit struct{}

// Ready implements AuditSink.
func (DiscardAudit) Ready(context.Context) error { return nil }

// Commit implements AuditSink.
func (DiscardAudit) Commit(context.Context, Event) error { return nil }

// Record implements AuditSink.
func (DiscardAudit) Record(context.Context, Event) error { return nil }

// Note implements AuditSink.
func (DiscardAudit) Note(context.Context, Event) error { return nil }
