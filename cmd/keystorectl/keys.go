package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// algorithms lists the algorithm names for help and completion, in
// docs/api.md's order (client.Algorithms).
var algorithms = func() []string {
	var names []string
	for _, alg := range client.Algorithms() {
		names = append(names, string(alg))
	}
	return names
}()

// uses are the values of create --use.
var uses = []string{"sign", "decrypt", "mac", "asymmetric-decrypt"}

// algorithmsOf returns the algorithm names of a use, for help.
func algorithmsOf(use string) string {
	var names []string
	for _, alg := range algorithms {
		if useOf(client.Algorithm(alg)) == use {
			names = append(names, alg)
		}
	}
	return strings.Join(names, ", ")
}

// useOf returns the use of a known algorithm ("sign", "decrypt", "mac",
// "asymmetric-decrypt").
func useOf(alg client.Algorithm) string { return client.AlgorithmUse(alg).String() }

func (a *app) createCommand() *cobra.Command {
	var alg, use string
	var rotation time.Duration
	cmd := &cobra.Command{
		Use:   "create <purpose>/<name> [--alg ALG | --use sign|decrypt|mac|asymmetric-decrypt]",
		Short: "Create a key (version 1)",
		Long: `Create a key of your app, <purpose>/<name>; operators may name any app's
key as <app>/<purpose>/<name>. Segments are [a-z0-9][a-z0-9._-]*, at most 64
bytes. Key IDs are never reused (EALREADY).

Algorithms:
  sign and verify:  ` + algorithmsOf("sign") + `
  seal and unseal, datakey, encrypt and decrypt:
                    ` + algorithmsOf("decrypt") + `
  mac, verify-mac:  ` + algorithmsOf("mac") + `
  hpke-decrypt (asymmetric-decrypt; senders encrypt to pubkey):
                    ` + algorithmsOf("asymmetric-decrypt") + `
Without --alg the daemon's provider picks its first algorithm of --use in
this order (sign: ed25519, decrypt: xchacha20-poly1305, mac: hmac-sha256,
asymmetric-decrypt: hpke-mlkem768x25519-sha256-aes256gcm on the software
provider); without either, a decrypt key. With both, --use must be the
algorithm's (EINVAL).`,
		Example: `  keystorectl create signing/release --alg ecdsa-p256-sha256
  keystorectl create db/secrets
  keystorectl create tokens/session --use mac
  keystorectl create inbox/orders --use asymmetric-decrypt`,
		Args: exactArgs(1, "one key name"),
		RunE: func(_ *cobra.Command, args []string) error {
			if rotation < 0 {
				return usageError{fmt.Errorf("--rotation-period must not be negative"), "keystorectl create"}
			}
			var u client.Use
			if use != "" {
				var err error
				if u, err = provider.ParseUse(use); err != nil {
					return usageError{fmt.Errorf("--use %q is not one of %s", use, strings.Join(uses, ", ")), "keystorectl create"}
				}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			k, err := c.Create(a.ctx, args[0], client.CreateOptions{
				Algorithm: client.Algorithm(alg),
				Use:       u,
				Policy:    client.Policy{RotationPeriod: rotation},
			})
			if err != nil {
				return createHint(err, alg, use)
			}
			if a.json {
				return a.emit(toKeyJSON(k))
			}
			return a.printf("created %s (%s, version %d)\n", k.ID, k.Algorithm, k.CurrentVersion)
		},
	}
	cmd.Flags().StringVar(&alg, "alg", "", "algorithm: "+strings.Join(algorithms, ", ")+" (default: the provider's first of --use)")
	cmd.Flags().StringVar(&use, "use", "", "sign, decrypt, mac or asymmetric-decrypt: what the key is for, when --alg is not given (default decrypt)")
	cmd.Flags().DurationVar(&rotation, "rotation-period", 0, "rotate automatically this often (0: never; at least 1m)")
	a.setup(cmd.RegisterFlagCompletionFunc("alg", cobra.FixedCompletions(algorithms, cobra.ShellCompDirectiveNoFileComp)))
	a.setup(cmd.RegisterFlagCompletionFunc("use", cobra.FixedCompletions(uses, cobra.ShellCompDirectiveNoFileComp)))
	return cmd
}

func createHint(err error, alg, use string) error {
	switch code, _ := client.CodeOf(err); code {
	case provider.EALREADY:
		return withHint(err, "key IDs are never reused, even after destroy; pick another name")
	case provider.ENOTSUP:
		if alg == "" {
			return withHint(err, "the daemon's provider offers no algorithm for --use "+use+"; name one with --alg")
		}
		if !slices.Contains(algorithms, alg) {
			return withHint(err, alg+" is not an algorithm keystored knows; algorithms: "+strings.Join(algorithms, ", "))
		}
		return withHint(err, "the daemon's provider does not offer "+alg+": name one it offers (listed above) with --alg, or leave --alg out for its default")
	case provider.EINVAL:
		if alg != "" && use != "" {
			return withHint(err, alg+" is a "+useOf(client.Algorithm(alg))+" algorithm: leave out --use, or give it --use "+useOf(client.Algorithm(alg)))
		}
	}
	return err
}

func (a *app) listCommand() *cobra.Command {
	var appID string
	var onlyUnreadable bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys (your app's; every app's for operators)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			var keys []client.KeyInfo
			var unreadable []client.UnreadableKey
			opts := client.ListOptions{App: appID, PageSize: 1000}
			seen := map[string]bool{}
			for {
				page, err := c.List(a.ctx, opts)
				if err != nil {
					return err
				}
				keys = append(keys, page.Keys...)
				unreadable = append(unreadable, page.Unreadable...)
				if page.NextPageToken == "" {
					break
				}
				if seen[page.NextPageToken] {
					return provider.Errorf(provider.EIO, "keystored repeated a page token while listing")
				}
				seen[page.NextPageToken] = true
				opts.PageToken = page.NextPageToken
			}
			if onlyUnreadable {
				keys = nil
			}
			if a.json {
				out := struct {
					Keys       []keyJSON        `json:"keys"`
					Unreadable []unreadableJSON `json:"unreadable"`
				}{Keys: []keyJSON{}, Unreadable: []unreadableJSON{}}
				for _, k := range keys {
					out.Keys = append(out.Keys, toKeyJSON(k))
				}
				for _, u := range unreadable {
					out.Unreadable = append(out.Unreadable, toUnreadableJSON(u))
				}
				return a.emit(out)
			}
			if onlyUnreadable {
				return a.printUnreadable(unreadable)
			}
			if len(keys) == 0 && len(unreadable) == 0 {
				fmt.Fprintln(a.stderr, "keystorectl: no keys; create one with: keystorectl create <purpose>/<name> --alg ed25519")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tALGORITHM\tSTATE\tVERSION")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", k.ID, k.Algorithm, k.State, k.CurrentVersion)
			}
			for _, u := range unreadable {
				fmt.Fprintf(tw, "%s\t-\tunreadable\t-\n", u.ID)
			}
			if err := tw.Flush(); err != nil {
				return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
			}
			for _, u := range unreadable {
				fmt.Fprintf(a.stderr, "keystorectl: warning: %s is unreadable: %v\n", u.ID, u.Err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&appID, "app", "", "list this app's keys (operators)")
	cmd.Flags().BoolVar(&onlyUnreadable, "unreadable", false, "list only the keys keystored refuses to read (corrupted files, or rolled back: older than the audit log says), with the reason")
	return cmd
}

// printUnreadable prints list --unreadable: one line per refused key and
// its reason, or a note on stderr that there are none.
func (a *app) printUnreadable(unreadable []client.UnreadableKey) error {
	if len(unreadable) == 0 {
		fmt.Fprintln(a.stderr, "keystorectl: no unreadable keys")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tREASON")
	for _, u := range unreadable {
		fmt.Fprintf(tw, "%s\t%v\n", u.ID, u.Err)
	}
	if err := tw.Flush(); err != nil {
		return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
	}
	return nil
}

type unreadableJSON struct {
	ID    string    `json:"id"`
	Error errorJSON `json:"error"`
}

type errorJSON struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func toUnreadableJSON(u client.UnreadableKey) unreadableJSON {
	code, ok := client.CodeOf(u.Err)
	if !ok {
		code = provider.EIO
	}
	return unreadableJSON{ID: u.ID, Error: errorJSON{Reason: code.String(), Message: u.Err.Error()}}
}

// keyCommand builds a "<verb> KEY" command that prints the key.
func (a *app) keyCommand(use, short, long string, do func(c *client.Client, key string) (client.KeyInfo, string, error)) *cobra.Command {
	return &cobra.Command{
		Use:               use + " KEY",
		Short:             short,
		Long:              long,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			k, line, err := do(c, args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.emit(toKeyJSON(k))
			}
			if line == "" {
				return printKey(a.stdout, k)
			}
			return a.printf("%s\n", line)
		},
	}
}

func (a *app) showCommand() *cobra.Command {
	return a.keyCommand("show", "Show a key's metadata and versions", "", func(c *client.Client, key string) (client.KeyInfo, string, error) {
		k, err := c.Get(a.ctx, key)
		return k, "", err
	})
}

func (a *app) rotateCommand() *cobra.Command {
	var generate bool
	cmd := a.keyCommand("rotate", "Make a new version the primary one",
		`Rotate makes a new version of KEY the primary one: new signatures and sealed
data use it. The old primary is retired: it still verifies and unseals.

An imported key (show: origin imported) is not rotated to generated
material silently: rotate refuses it (EPERM); give it a new version with
keystorectl import, or switch it to generated material with --generate
(the new version is made by the daemon's provider, and from then on the key
is a generated one; its imported versions stay as they are).`,
		func(c *client.Client, key string) (client.KeyInfo, string, error) {
			k, err := c.RotateWith(a.ctx, key, client.RotateOptions{Generate: generate})
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EPERM && !generate {
					err = withHint(err, "an imported key gets new versions from import (keystorectl import "+key+" --alg ALG --in FILE), or is switched to generated material with: keystorectl rotate "+key+" --generate (or the key is not yours)")
				}
				return k, "", err
			}
			line := fmt.Sprintf("rotated %s: version %d is primary", k.ID, k.CurrentVersion)
			if generate {
				line += " (generated; the key is a generated one from now on)"
			}
			return k, line, nil
		})
	cmd.Use = "rotate KEY [--generate]"
	cmd.Flags().BoolVar(&generate, "generate", false, "switch an imported key to generated material (its new version is made by the daemon)")
	return cmd
}

func (a *app) revokeCommand() *cobra.Command {
	cmd := a.keyCommand("revoke", "Revoke a key (irreversible), or one version with KEY@N",
		`Revoke KEY: every version, irreversibly. Every later use of the key fails
with EKEYREVOKED (exit 128). With KEY@N only version N is revoked.`,
		func(c *client.Client, ref string) (client.KeyInfo, string, error) {
			key, version, err := client.ParseKeyRef(ref)
			if err != nil {
				return client.KeyInfo{}, "", err
			}
			if version != 0 {
				k, err := c.RevokeVersion(a.ctx, key, version)
				if err != nil {
					if code, _ := client.CodeOf(err); code == provider.EPERM {
						err = withHint(err, "the primary version cannot be revoked alone: rotate first, or revoke the whole key (or the key is not yours)")
					}
					return k, "", err
				}
				return k, fmt.Sprintf("revoked %s@%d", k.ID, version), nil
			}
			k, err := c.Revoke(a.ctx, key)
			if err != nil {
				return k, "", err
			}
			return k, fmt.Sprintf("revoked %s (every version); erase its material with: keystorectl destroy %s", k.ID, k.ID), nil
		})
	cmd.Use = "revoke KEY[@N]"
	return cmd
}

func (a *app) destroyCommand() *cobra.Command {
	return a.keyCommand("destroy", "Erase a revoked key's material (the ID stays taken)",
		`Destroy erases a revoked key's material; its metadata stays as a tombstone
and its ID is never reused. An active key must be revoked first (EPERM).`,
		func(c *client.Client, key string) (client.KeyInfo, string, error) {
			k, err := c.Destroy(a.ctx, key)
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EPERM {
					err = withHint(err, "only a revoked key can be destroyed: keystorectl revoke "+key+" (or the key is not yours)")
				}
				return k, "", err
			}
			return k, fmt.Sprintf("destroyed %s", k.ID), nil
		})
}

func (a *app) setPolicyCommand() *cobra.Command {
	var minVersion uint32
	var rotation time.Duration
	cmd := &cobra.Command{
		Use:   "set-policy KEY [--min-decryption-version N] [--rotation-period DURATION]",
		Short: "Change a key's policy: oldest version that verifies/unseals, rotation period",
		Long: `Set-policy changes the policy of KEY and keeps what is not given: it reads the
key's policy, changes the flags given and writes it back (if two run at
once on one key, the last one wins).

--min-decryption-version N: verify, unseal and rewrap refuse versions older
than N (0 allows all; N may not be above the primary version). Rewrap what
you stored first.
--rotation-period DURATION: rotate automatically when the primary version is
this old (0 turns it off; at least 1m).`,
		Example: `  keystorectl set-policy db/secrets --min-decryption-version 3
  keystorectl set-policy signing/release --rotation-period 720h`,
		Args:              exactArgs(1, "one KEY"),
		ValidArgsFunction: a.completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			setMin, setRot := cmd.Flags().Changed("min-decryption-version"), cmd.Flags().Changed("rotation-period")
			if !setMin && !setRot {
				return usageError{fmt.Errorf("set-policy needs --min-decryption-version or --rotation-period"), "keystorectl set-policy"}
			}
			if rotation < 0 {
				return usageError{fmt.Errorf("--rotation-period must not be negative"), "keystorectl set-policy"}
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			k, err := c.Get(a.ctx, args[0])
			if err != nil {
				return err
			}
			p := k.Policy
			if setMin {
				p.MinDecryptionVersion = minVersion
			}
			if setRot {
				p.RotationPeriod = rotation
			}
			k, err = c.SetPolicy(a.ctx, args[0], p)
			if err != nil {
				return err
			}
			if a.json {
				return a.emit(toKeyJSON(k))
			}
			return a.printf("policy of %s: min decryption version %d, rotation period %s\n",
				k.ID, k.Policy.MinDecryptionVersion, periodString(k.Policy.RotationPeriod))
		},
	}
	cmd.Flags().Uint32Var(&minVersion, "min-decryption-version", 0, "refuse versions older than N for verify, unseal and rewrap (0: allow all)")
	cmd.Flags().DurationVar(&rotation, "rotation-period", 0, "rotate automatically this often (0: never; at least 1m)")
	return cmd
}

// periodString prints a rotation period, "off" for 0.
func periodString(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}
