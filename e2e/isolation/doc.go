// Package isolation holds the end-to-end proof that apps are isolated
// from each other: eight apps run as eight real uids against one real
// keystored, and every caller tries every RPC of Keys and Store on every
// key of every app (and on keys that do not exist). Only the owner and the
// operator succeed; every other caller gets EPERM, "not yours" and "does
// not exist" look the same byte for byte, the state directory does not
// change, and each refused call leaves exactly one audit record.
//
// The tests need root (to run clients under other uids) and skip, saying
// so, otherwise:
//
//	sudo go test -race ./e2e/isolation/
package isolation
