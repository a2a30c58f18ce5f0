package main

import (
	"github.com/spf13/cobra"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// auditKey is the daemon's audit checkpoint key (core.AuditKeyID).
const auditKey = "keystored/audit/checkpoint"

// auditPubkeyCommand is "audit pubkey": the public key that verifies the
// audit log's signed checkpoints, for keystorectl audit verify --pubkey.
func (a *app) auditPubkeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pubkey",
		Short: "Print the public key of the daemon's audit checkpoint key (PEM), for audit verify --pubkey",
		Long: `Print the SubjectPublicKeyInfo PEM of ` + auditKey + `, the Ed25519 key the
daemon signs its audit checkpoints with (docs/audit.md, "Signed
checkpoints"). Operators only. Keep a copy off the host: with it,
keystorectl audit verify --pubkey detects forged appends, rewrites and a
cut tail without any other input. Same as: keystorectl pubkey ` + auditKey,
		Example: `  keystorectl audit pubkey > keystored-audit.pem
  keystorectl audit verify --state /var/lib/keystored --pubkey keystored-audit.pem`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			pub, err := c.PublicKey(a.ctx, auditKey, 0)
			if err != nil {
				if code, _ := client.CodeOf(err); code == provider.EPERM || code == provider.ENOENT {
					return withHint(err, "only operators may read it ([operators] in the daemon's config), and a daemon makes it at its first start with audit checkpoints")
				}
				return err
			}
			return a.printPublicKey(pub, "pem")
		},
	}
}
