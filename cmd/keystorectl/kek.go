package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
)

// kekCommand is "keystorectl kek": the daemon's key-encryption key.
func (a *app) kekCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kek",
		Short: "Show or rotate the daemon's key-encryption key (operators)",
		Long: `The key-encryption key (KEK) wraps every key handle the software provider
stores. Keys are named by fingerprint (16 hex characters), never shown.
Operators only. See docs/operations.md (KEK rotation).`,
		Args: exactArgs(0, "a subcommand (status, rotate)"),
	}
	cmd.AddCommand(a.kekStatusCommand(), a.kekRotateCommand())
	return cmd
}

type kekStatusJSON struct {
	Current      string   `json:"current"`
	Pending      string   `json:"pending"`
	ProviderKEKs []string `json:"provider_keks"`
	Rotatable    bool     `json:"rotatable"`
}

func (a *app) kekStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the KEK the state is wrapped under, and any unfinished rotation",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			s, err := c.KEKStatus(a.ctx)
			if err != nil {
				return withHint(err, operatorHint(err))
			}
			if a.json {
				out := kekStatusJSON{Current: s.Current, Pending: s.Pending, ProviderKEKs: s.ProviderKEKs, Rotatable: s.Rotatable}
				if out.ProviderKEKs == nil {
					out.ProviderKEKs = []string{}
				}
				return a.emit(out)
			}
			current, pending := s.Current, s.Pending
			if current == "" {
				current = "(none: the provider wraps no handle under a KEK)"
			}
			if pending == "" {
				pending = "(none)"
			} else {
				pending += " (an unfinished rotation: run keystorectl kek rotate to finish it)"
			}
			return a.printf("current:   %s\npending:   %s\nprovider:  %s\nrotatable: %t\n",
				current, pending, strings.Join(s.ProviderKEKs, ", "), s.Rotatable)
		},
	}
}

type kekRotationJSON struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Keys      int    `json:"keys"`
	Rewrapped int    `json:"rewrapped"`
	Unchanged int    `json:"unchanged"`
	Missing   int    `json:"missing"`
}

func (a *app) kekRotateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Rewrap every key under a new KEK, then drop the old one",
		Long: `Rewraps the handle of every key version of every app under a new KEK,
then makes it the only one. Crash-safe: if it is interrupted (or the daemon
stops), every key works under the old or the new KEK; run it again to finish.
Back up the new KEK file afterwards: backups of the state made before need
the old one (docs/operations.md, KEK rotation).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			r, err := c.RotateKEK(a.ctx)
			if err != nil {
				hint := operatorHint(err)
				switch {
				case errors.Is(err, client.ErrNotSupported):
					hint = "the provider cannot rotate its KEK: only the software provider with a KEK file can (docs/operations.md)"
				case errors.Is(err, client.ErrIO):
					hint = "the rotation is not finished; every key still works. Fix the cause, then run keystorectl kek rotate again to resume"
				}
				return withHint(err, hint)
			}
			if a.json {
				return a.emit(kekRotationJSON{From: r.From, To: r.To, Keys: r.Keys, Rewrapped: r.Rewrapped, Unchanged: r.Unchanged, Missing: r.Missing})
			}
			if err := a.printf("rotated KEK %s -> %s: %d keys, %d handles rewrapped, %d already under the new KEK\n",
				r.From, r.To, r.Keys, r.Rewrapped, r.Unchanged); err != nil {
				return err
			}
			if r.Missing > 0 {
				fmt.Fprintf(a.stderr, "keystorectl: warning: %d key versions had no handle file (already unusable); left as they were\n", r.Missing)
			}
			fmt.Fprintln(a.stderr, "keystorectl: back up the new KEK file now; state backups made before this need the old KEK")
			return nil
		},
	}
}

// operatorHint is the hint of a refusal by the daemon of a non-operator.
func operatorHint(err error) string {
	if errors.Is(err, client.ErrPermission) {
		return "only an operator may do this: run it as a uid listed in the daemon's operators setting (docs/operations.md)"
	}
	return ""
}
