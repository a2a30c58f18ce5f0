package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/internal/buildinfo"
)

// DefaultSocket is the socket used when neither --socket nor
// $KEYSTORE_SOCKET is given: the development daemon's default (a system
// install's is client.SystemSocket).
const DefaultSocket = client.DefaultSocket

// version is keystorectl's version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// SocketEnv is the environment variable naming the socket.
const SocketEnv = client.SocketEnv

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "keystorectl",
		Short: "Manage and use keystored keys",
		Long: `keystorectl talks to keystored, the host key store daemon, over its Unix
socket. Keys are <purpose>/<name> (a key of your app) or
<app>/<purpose>/<name> (operators); a version is KEY@N.

Socket: --socket, else $KEYSTORE_SOCKET, else ` + DefaultSocket + `.
Data: stdin/stdout by default (binary-safe), or --in/--out FILE.
Exit status: 0, the errno of the error (EPERM 1, ENOENT 2, EINVAL 22,
EBADMSG 74, EMSGSIZE 90, EALREADY 114, EKEYEXPIRED 127, EKEYREVOKED 128,
...; EUNAVAILABLE 69), or 64 (EX_USAGE) for a usage error. See docs/cli.md.`,
		Example: `  keystorectl create signing/release --alg ecdsa-p256-sha256
  keystorectl sign signing/release --digest sha256 --in release.tar --out release.sig
  keystorectl verify signing/release@1 --digest sha256 --sig release.sig --in release.tar`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       buildinfo.String("keystorectl", version),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err, cmd.CommandPath()} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", "", "keystored socket (default $"+SocketEnv+", else "+DefaultSocket+")")
	pf.BoolVar(&a.json, "json", false, "print one JSON object (errors too, also on stdout)")
	root.AddCommand(
		a.createCommand(),
		a.listCommand(),
		a.showCommand(),
		a.rotateCommand(),
		a.revokeCommand(),
		a.destroyCommand(),
		a.pubkeyCommand(),
		a.signCommand(),
		a.verifyCommand(),
		a.macCommand(),
		a.verifyMACCommand(),
		a.sealCommand(),
		a.unsealCommand(),
		a.rewrapCommand(),
		a.datakeyCommand(),
		a.encryptCommand(),
		a.decryptCommand(),
		a.hpkeEncryptCommand(),
		a.hpkeDecryptCommand(),
		a.importCommand(),
		a.batchCommand(),
		a.setPolicyCommand(),
		a.sweepCommand(),
		a.usageCommand(),
		a.storeCommand(),
		a.anchorsCommand(),
		a.auditCommand(),
		a.sshAgentCommand(),
		a.kekCommand(),
	)
	return root
}

// socketPath resolves the socket: --socket, $KEYSTORE_SOCKET, the default.
func (a *app) socketPath() string {
	if a.socket != "" {
		return a.socket
	}
	if s := a.getenv(SocketEnv); s != "" {
		return s
	}
	return DefaultSocket
}

// dial connects to the daemon once per run.
func (a *app) dial() (*client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	sock := a.socketPath()
	c, err := client.Dial(a.ctx, sock)
	if err != nil {
		return nil, withHint(err, dialHint(sock, err))
	}
	a.client = c
	return c, nil
}

// warnInsecure tells the user, once, that the daemon is insecure.
func (a *app) warnInsecure() {
	if a.client != nil && a.client.Insecure() && !a.insecure {
		a.insecure = true
		fmt.Fprintln(a.stderr, "keystorectl: warning: keystored runs the INSECURE test provider: its keys derive from a known seed and are not secret")
	}
}

// usageError is a command line mistake: exit status 64 (EX_USAGE). cmd is the
// command's path, for the hint.
type usageError struct {
	err error
	cmd string
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %s, got %d arguments", cmd.Name(), names, len(args)), cmd.CommandPath()}
		}
		return nil
	}
}

// completeKeys completes a KEY argument from the daemon's listing (first
// page, short timeout; nothing if the daemon is not there).
func (a *app) completeKeys(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, a.socketPath(), client.WithDialTimeout(time.Second))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	page, err := c.List(ctx, client.ListOptions{PageSize: 1000})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	own := ownApp(ctx, c)
	out := make([]cobra.Completion, 0, 2*len(page.Keys))
	for _, k := range page.Keys {
		desc := k.Algorithm.String() + " " + k.State.String()
		out = append(out, cobra.CompletionWithDesc(k.ID, desc))
		if app, short, ok := strings.Cut(k.ID, "/"); ok && app == own {
			out = append(out, cobra.CompletionWithDesc(short, desc))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// ownApp returns the caller's own app ("" if the daemon does not say):
// GetUsage without an app names it.
func ownApp(ctx context.Context, c *client.Client) string {
	u, err := c.Usage(ctx, "")
	if err != nil {
		return ""
	}
	return u.App
}
