package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) usageCommand() *cobra.Command {
	var appID string
	cmd := &cobra.Command{
		Use:   "usage [--app APP]",
		Short: "Show your app's use of its quotas: keys, Store values and bytes",
		Long: `Usage prints what your app holds against its quotas (docs/operations.md,
Quotas): its keys in any state (revoked and destroyed keys count: key IDs
are never reused), the most versions one key may have, and its Store values
and bytes. Operators may name another app with --app.

The seal budget of each version of a decrypt key is in keystorectl show.`,
		Example: `  keystorectl usage
  keystorectl usage --app billing     # operators`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			u, err := c.Usage(a.ctx, appID)
			if err != nil {
				return err
			}
			if a.json {
				return a.emit(usageJSON{App: u.App, Keys: u.Keys, KeysLimit: u.KeysLimit, VersionsPerKeyLimit: u.VersionsPerKeyLimit,
					StoreValues: u.StoreValues, StoreValuesLimit: u.StoreValuesLimit, StoreBytes: u.StoreBytes, StoreBytesLimit: u.StoreBytesLimit})
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "app\t%s\n", u.App)
			fmt.Fprintf(tw, "keys\t%d of %d\t(%d left; revoked and destroyed keys count)\n", u.Keys, u.KeysLimit, max(u.KeysLimit-u.Keys, 0))
			fmt.Fprintf(tw, "versions per key\tat most %d\t(a rotation adds one; seal budgets per version: keystorectl show KEY)\n", u.VersionsPerKeyLimit)
			fmt.Fprintf(tw, "store values\t%d of %d\t(%d left)\n", u.StoreValues, u.StoreValuesLimit, max(u.StoreValuesLimit-u.StoreValues, 0))
			fmt.Fprintf(tw, "store bytes\t%d of %d\t(%d left)\n", u.StoreBytes, u.StoreBytesLimit, max(u.StoreBytesLimit-u.StoreBytes, 0))
			if err := tw.Flush(); err != nil {
				return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&appID, "app", "", "another app's usage (operators)")
	return cmd
}

type usageJSON struct {
	App                 string `json:"app"`
	Keys                int64  `json:"keys"`
	KeysLimit           int64  `json:"keys_limit"`
	VersionsPerKeyLimit int64  `json:"versions_per_key_limit"`
	StoreValues         int64  `json:"store_values"`
	StoreValuesLimit    int64  `json:"store_values_limit"`
	StoreBytes          int64  `json:"store_bytes"`
	StoreBytesLimit     int64  `json:"store_bytes_limit"`
}
