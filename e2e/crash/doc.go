// Package crash holds keystored's crash-consistency test: the real daemon
// (built and started by internal/daemontest), driven through the typed
// client by a few concurrent workers doing random create / rotate / revoke
// / revoke-version / destroy / seal / sign, is killed with SIGKILL at
// random instants and restarted on the same state directory, again and
// again. After every restart the test checks that every acknowledged
// operation is still there, that no file is torn, that every active key
// has exactly one primary version, that everything sealed or signed still
// opens or verifies (EKEYREVOKED once revoked), and that the audit chain
// verifies.
//
//	go test -race ./e2e/crash/                                  # 100 kills
//	KEYSTORED_CRASH_KILLS=1000 go test -timeout 60m ./e2e/crash/ # 1,000 kills
//	KEYSTORED_CRASH_SEED=42 go test ./e2e/crash/                 # another seed
//
// The seed (logged) fixes the operations each worker picks and the kill
// delays; the interleaving with the daemon is the scheduler's, so a
// replay explores the same neighbourhood rather than the same instants.
package crash
