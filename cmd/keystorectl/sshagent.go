package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/sshagent"
)

func (a *app) sshAgentCommand() *cobra.Command {
	var (
		sock, appID    string
		purposes, keys []string
		maxConnections int
	)
	cmd := &cobra.Command{
		Use:   "ssh-agent [-a PATH] [--app APP] [--purpose PURPOSE]... [--key KEY]...",
		Short: "Serve the ssh-agent protocol with your signing keys (read-only)",
		Long: `Serve the ssh-agent protocol (ssh, ssh-add, ssh-keygen -Y, git commit -S
with gpg.format=ssh) with your keystored signing keys, until SIGINT,
SIGTERM or SIGHUP. It connects to keystored as you, so the daemon knows
the caller from the kernel and audits every signature under your app.
The private keys stay in keystored.

Keys: the current version of every active ed25519 signing key of your app
(operators too; another app's with --app), or of the given purposes, or
exactly the named keys. Each request asks the daemon again: a new,
rotated or revoked key shows at once. Ed448 and ML-DSA keys are not
offered: OpenSSH has no key type for them.

The agent is read-only: ssh-add (adding keys), ssh-add -d/-D (removing)
are refused. ssh-add -x / -X lock and unlock it: while locked it lists no
key and signs nothing.

The socket (-a, --agent-socket; --socket is keystored's) is created 0600
in a directory of yours that no one else can write; a missing directory
is created 0700. Without -a: a new directory below $TMPDIR. Stdout gets
the shell lines of ssh-agent, or with --json one object:
  SSH_AUTH_SOCK=/tmp/keystore-ssh-123/agent.sock; export SSH_AUTH_SOCK;
  SSH_AGENT_PID=4242; export SSH_AGENT_PID;
  echo Agent pid 4242;`,
		Example: `  keystorectl create ssh/laptop --alg ed25519
  keystorectl ssh-agent -a ~/.keystore-agent/agent.sock --purpose ssh &
  export SSH_AUTH_SOCK=~/.keystore-agent/agent.sock
  ssh-add -L          # ssh-ed25519 AAAA... uid-1000/ssh/laptop@1
  keystorectl --json ssh-agent --key ssh/laptop   # {"socket":...,"pid":...,"keys":[...]}`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			if len(keys) > 0 && (appID != "" || len(purposes) > 0) {
				return usageError{fmt.Errorf("--key names the keys exactly; it cannot be combined with --app or --purpose"), "keystorectl ssh-agent"}
			}
			if maxConnections < 1 {
				return usageError{fmt.Errorf("--max-connections must be at least 1"), "keystorectl ssh-agent"}
			}
			return a.runSSHAgent(sock, sshagent.Selection{App: appID, Purposes: purposes, Keys: keys}, maxConnections)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&sock, "agent-socket", "a", "", "the agent's socket (default: agent.sock in a new directory below $TMPDIR)")
	fl.StringVar(&appID, "app", "", "offer this app's keys (operators; default: your own app's)")
	fl.StringArrayVar(&purposes, "purpose", nil, "offer only keys of this purpose (repeatable)")
	fl.StringArrayVar(&keys, "key", nil, "offer exactly this key, <purpose>/<name> or <app>/<purpose>/<name> (repeatable)")
	fl.IntVar(&maxConnections, "max-connections", sshagent.DefaultMaxConnections, "clients served at once; more are closed at once")
	a.setup(cmd.RegisterFlagCompletionFunc("key", a.completeKeys))
	return cmd
}

// sshAgentJSON is ssh-agent's --json output, printed once it serves.
type sshAgentJSON struct {
	Socket string   `json:"socket"`
	PID    int      `json:"pid"`
	Keys   []string `json:"keys"`
}

func (a *app) runSSHAgent(sock string, sel sshagent.Selection, maxConnections int) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	// SIGHUP too: a terminal that closes stops the agent cleanly, as
	// OpenSSH's ssh-agent.
	ctx, stop := signal.NotifyContext(a.ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if sel.App == "" && len(sel.Keys) == 0 {
		// Your own app's keys, also for an operator (whose listing holds
		// every app's): GetUsage names the caller's app.
		u, err := c.Usage(ctx, "")
		if err != nil {
			return err
		}
		sel.App = u.App
	}
	ag, err := sshagent.New(ctx, sshagent.Config{Keystore: c, Select: sel})
	if err != nil {
		return err
	}
	offers, err := ag.Offers()
	if err != nil {
		return sshAgentHint(err)
	}
	a.warnInsecure()
	var s *sshagent.Socket
	if sock == "" {
		s, err = sshagent.ListenTemp()
	} else {
		if sock, err = filepath.Abs(sock); err != nil {
			return provider.Errorf(provider.EINVAL, "ssh-agent: --agent-socket: %w", err)
		}
		s, err = sshagent.Listen(sock)
	}
	if err != nil {
		return err
	}
	serveErr := a.announceAndServe(ctx, s, ag, offers, maxConnections)
	if err := s.Close(); err != nil {
		fmt.Fprintf(a.stderr, "keystorectl: warning: %v\n", err)
	}
	if serveErr != nil {
		return serveErr
	}
	fmt.Fprintf(a.stderr, "keystorectl: ssh-agent: stopped; removed %s\n", s.Path)
	return nil
}

// announceAndServe prints the agent's socket (the shell lines of
// ssh-agent, or the JSON object) and the keys it offers, then serves until
// ctx ends.
func (a *app) announceAndServe(ctx context.Context, s *sshagent.Socket, ag *sshagent.Agent, offers []sshagent.Offered, maxConnections int) error {
	pid := os.Getpid()
	refs := make([]string, 0, len(offers))
	for _, o := range offers {
		refs = append(refs, o.Ref)
	}
	if a.json {
		if err := a.emit(sshAgentJSON{Socket: s.Path, PID: pid, Keys: refs}); err != nil {
			return err
		}
		a.emitted = true // errors from here on go to stderr only: one JSON object per run
	} else if err := a.printf("SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\nSSH_AGENT_PID=%d; export SSH_AGENT_PID;\necho Agent pid %d;\n", shellQuote(s.Path), pid, pid); err != nil {
		return err
	}
	if len(offers) == 0 {
		fmt.Fprintln(a.stderr, "keystorectl: ssh-agent: no key to offer yet (new keys show at once); create one with: keystorectl create ssh/NAME --alg ed25519")
	} else {
		fmt.Fprintf(a.stderr, "keystorectl: ssh-agent: offering %s\n", strings.Join(refs, ", "))
	}
	fmt.Fprintf(a.stderr, "keystorectl: ssh-agent: serving on %s until SIGINT, SIGTERM or SIGHUP (kill %d)\n", s.Path, pid)
	return sshagent.Serve(ctx, s, ag, sshagent.ServeConfig{
		MaxConnections: maxConnections,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(a.stderr, "keystorectl: "+format+"\n", args...)
		},
	})
}

// sshAgentHint adds hints to the start-up errors of ssh-agent.
func sshAgentHint(err error) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.ENOTSUP:
		return withHint(err, "the agent offers ed25519 keys (OpenSSH has no ed448 or ML-DSA key type); create one with: keystorectl create ssh/NAME --alg ed25519")
	case provider.EPERM:
		return withHint(err, "the agent offers signing keys of your own app (operators: any app's, with --app)")
	}
	return err
}

// shellQuote quotes s for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
