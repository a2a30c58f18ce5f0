package main

import (
	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

func (a *app) storeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store put|get|list|delete",
		Short: "Your app's small value store (values of at most 64 KiB)",
		Long: `The value store keeps small values (at most 64 KiB each; names
[a-z0-9][a-z0-9._-]*, at most 64 bytes) for your app, e.g. a wrapped data
key or a configuration blob. Another app can never read them. Quotas bound
the number of values and their bytes (EDQUOT, exit 122).`,
		Args: exactArgs(0, "a subcommand: put, get, list or delete"),
	}
	cmd.AddCommand(a.storePutCommand(), a.storeGetCommand(), a.storeListCommand(), a.storeDeleteCommand())
	return cmd
}

func (a *app) storePutCommand() *cobra.Command {
	var in string
	cmd := &cobra.Command{
		Use:     "put NAME [--in FILE]",
		Short:   "Store a value (stdin or --in), replacing any previous one",
		Example: `  keystorectl store put db-password --in pw.txt`,
		Args:    exactArgs(1, "one NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			v, err := a.readInput(in, client.MaxValueSize, "value")
			if err != nil {
				return err
			}
			if err := c.PutValue(a.ctx, args[0], v); err != nil {
				return err
			}
			if a.json {
				return a.emit(struct {
					Name string `json:"name"`
					Size int    `json:"size"`
				}{args[0], len(v)})
			}
			return a.printf("stored %s (%d bytes)\n", args[0], len(v))
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read the value from FILE (default stdin)")
	return cmd
}

func (a *app) storeGetCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get NAME [--out FILE]",
		Short: "Print a value (stdout or --out)",
		Long: `Get writes the value stored under NAME to stdout or --out (created 0600),
byte for byte; a binary value is not written to a terminal. With --json
stdout gets {"name","value"} (value in base64).`,
		Args: exactArgs(1, "one NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			v, err := c.GetValue(a.ctx, args[0])
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.ENOENT {
					return withHint(err, "no value named "+args[0]+"; see: keystorectl store list")
				}
				return err
			}
			if err := a.refuseBinaryText(out, v, "value", "keystorectl store get"); err != nil {
				return err
			}
			if err := a.writeOutputUnlessJSON(out, v); err != nil {
				return err
			}
			if a.json {
				return a.emit(struct {
					Name  string `json:"name"`
					Value []byte `json:"value"`
				}{args[0], v})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the value to FILE (default stdout)")
	return cmd
}

func (a *app) storeListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List your app's value names",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			names := []string{}
			token := ""
			for {
				page, err := c.ListValues(a.ctx, 0, token)
				if err != nil {
					return err
				}
				names = append(names, page.Names...)
				if token = page.NextPageToken; token == "" {
					break
				}
			}
			if a.json {
				return a.emit(struct {
					Names []string `json:"names"`
				}{names})
			}
			for _, n := range names {
				if err := a.printf("%s\n", n); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) storeDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a value",
		Args:  exactArgs(1, "one NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			if err := c.DeleteValue(a.ctx, args[0]); err != nil {
				return err
			}
			if a.json {
				return a.emit(struct {
					Name    string `json:"name"`
					Deleted bool   `json:"deleted"`
				}{args[0], true})
			}
			return a.printf("deleted %s\n", args[0])
		},
	}
}
