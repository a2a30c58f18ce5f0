package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) anchorsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "anchors list|verify",
		Short: "The operator's trust anchors: list them, verify a signature against one",
		Long: `Trust anchors are public keys the operator configured in the daemon (a
directory of PEM files, docs/operations.md). Any app may list them and
verify signatures against them; no private key is involved.`,
		Args: exactArgs(0, "a subcommand: list or verify"),
	}
	cmd.AddCommand(a.anchorsListCommand(), a.anchorsVerifyCommand())
	return cmd
}

func (a *app) anchorsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the trust anchors: name, algorithm, fingerprint",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			anchors, err := c.ListAnchors(a.ctx)
			if err != nil {
				return err
			}
			if a.json {
				type anchorJSON struct {
					Name        string `json:"name"`
					Algorithm   string `json:"algorithm"`
					PublicKey   []byte `json:"public_key"`
					Fingerprint string `json:"fingerprint"`
				}
				out := make([]anchorJSON, 0, len(anchors))
				for _, an := range anchors {
					out = append(out, anchorJSON{an.Name, string(an.Algorithm), an.PublicKey, an.Fingerprint})
				}
				return a.emit(struct {
					Anchors []anchorJSON `json:"anchors"`
				}{out})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tALGORITHM\tFINGERPRINT")
			for _, an := range anchors {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", an.Name, an.Algorithm, an.Fingerprint)
			}
			if err := tw.Flush(); err != nil {
				return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
			}
			return nil
		},
	}
}

func (a *app) anchorsVerifyCommand() *cobra.Command {
	var in, sigFile string
	cmd := &cobra.Command{
		Use:   "verify ANCHOR --sig FILE [--in FILE]",
		Short: "Verify a signature over a message (stdin or --in) against a trust anchor",
		Long: `Verify checks the raw signature in --sig over the message (stdin or --in,
at most 64 KiB) against the named trust anchor. It exits 0 and prints
"valid" if the signature verifies, and fails with EBADMSG (exit 74) if not.`,
		Example: `  keystorectl anchors verify release-ca --in release.tar.sha256 --sig release.sig`,
		Args:    exactArgs(1, "one ANCHOR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := checkSigInputs(sigFile, in, "keystorectl anchors verify"); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			sig, msg, err := a.readSigAndMessage(sigFile, in)
			if err != nil {
				return err
			}
			if err := c.VerifyAnchor(a.ctx, args[0], msg, sig); err != nil {
				switch code, _ := client.CodeOf(err); code {
				case provider.EBADMSG:
					return withHint(err, "the signature was not made by anchor "+args[0]+" over this message (or the message or signature changed)")
				case provider.ENOENT:
					return withHint(err, "no trust anchor named "+args[0]+"; see: keystorectl anchors list")
				}
				return err
			}
			if a.json {
				return a.emit(struct {
					Anchor string `json:"anchor"`
					Valid  bool   `json:"valid"`
				}{args[0], true})
			}
			return a.printf("valid signature by anchor %s\n", args[0])
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the message from FILE (default stdin)")
	cmd.Flags().StringVar(&sigFile, "sig", "", "the raw signature FILE (required)")
	a.setup(cmd.MarkFlagRequired("sig"))
	return cmd
}
