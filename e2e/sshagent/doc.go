// Package sshagent holds the end-to-end proof of `keystorectl ssh-agent`
// with real OpenSSH and git: a real keystored, the real keystorectl
// binary serving the agent, and the real tools using it. ssh-add lists
// the keys and cannot add or remove any, ssh-add -x / -X lock and unlock
// the agent, ssh-keygen -Y signs and verifies, git commit -S with
// gpg.format=ssh makes a commit git verify-commit accepts, ssh logs in to
// a test sshd on a loopback port and fails once the key is revoked, and
// another uid cannot use the agent (neither through the socket's modes
// nor, with the modes opened, past the agent's peer-uid check).
//
// The tests skip, saying which, without the tools (Debian openssh-client,
// openssh-server and git; .ci/run installs them); the sshd login and the
// other-uid tests need root:
//
//	sudo go test -race ./e2e/sshagent/
package sshagent
