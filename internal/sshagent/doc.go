// Package sshagent serves the ssh-agent protocol (OpenSSH's
// PROTOCOL.agent, through golang.org/x/crypto/ssh/agent) for keystored
// signing keys, so that ssh, ssh-keygen -Y and git sign with keys whose
// private bytes stay in the daemon. It is the body of `keystorectl
// ssh-agent`.
//
// The agent is a client of keystored like any other: it talks to the
// daemon through package client as the user who runs it, so the daemon
// takes the caller's identity from the kernel and audits every listing
// and signature under that user's app. It is read-only: adding, removing
// and exporting keys is refused; locking works (while locked it lists no
// key and signs nothing).
//
// [New] makes the agent ([agent.ExtendedAgent]) over a [Keystore] and a
// [Selection] of keys; [Listen] and [ListenTemp] make its socket (0600 in a
// 0700 directory of the caller's); [Serve] accepts connections on it
// until its context ends: at most [ServeConfig].MaxConnections at once,
// only from the socket's own uid (or root, as OpenSSH's ssh-agent), each
// connection's requests one after the other, each request at most
// [ServeConfig].MaxMessage bytes.
//
// Key types: one small table (algs.go) maps each keystored algorithm that
// has an ssh form to its key type and signature format ([KeyType]). Only Ed25519 has one today;
// Ed448 and ML-DSA keys are not offered (OpenSSH has no key type for
// them).
package sshagent
