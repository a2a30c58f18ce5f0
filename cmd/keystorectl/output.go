package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// emit writes v as one line of JSON on stdout.
func (a *app) emit(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return provider.Errorf(provider.EIO, "writing JSON to stdout: %w", err)
	}
	return nil
}

// printf writes human output on stdout.
func (a *app) printf(format string, args ...any) error {
	if _, err := fmt.Fprintf(a.stdout, format, args...); err != nil {
		return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
	}
	return nil
}

// keyJSON is a key in --json output.
type keyJSON struct {
	ID             string        `json:"id"`
	Algorithm      string        `json:"algorithm"`
	Uses           []string      `json:"uses"`
	State          string        `json:"state"`
	CurrentVersion uint32        `json:"current_version"`
	Versions       []versionJSON `json:"versions"`
	Policy         policyJSON    `json:"policy"`
	Provider       string        `json:"provider"`
	Insecure       bool          `json:"insecure"`
	Created        *time.Time    `json:"created,omitempty"`
	Revoked        *time.Time    `json:"revoked,omitempty"`
	Destroyed      *time.Time    `json:"destroyed,omitempty"`
	// RotationDue and RotationOverdue are set for a key with a rotation
	// period only.
	RotationDue     *time.Time `json:"rotation_due,omitempty"`
	RotationOverdue bool       `json:"rotation_overdue,omitempty"`
	// Origin is "generated" or "imported".
	Origin string `json:"origin"`
}

type versionJSON struct {
	Version   uint32     `json:"version"`
	State     string     `json:"state"`
	PublicKey []byte     `json:"public_key,omitempty"` // base64
	Created   *time.Time `json:"created,omitempty"`
	Retired   *time.Time `json:"retired,omitempty"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	Destroyed *time.Time `json:"destroyed,omitempty"`
	// Seals and SealLimit: decrypt keys only.
	Seals     *uint64 `json:"seals,omitempty"`
	SealLimit *uint64 `json:"seal_limit,omitempty"`
	// Origin is "generated" or "imported".
	Origin string `json:"origin"`
}

type policyJSON struct {
	MinDecryptionVersion  uint32 `json:"min_decryption_version"`
	RotationPeriodSeconds int64  `json:"rotation_period_seconds"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toKeyJSON(k client.KeyInfo) keyJSON {
	j := keyJSON{
		ID:             k.ID,
		Algorithm:      string(k.Algorithm),
		Uses:           k.Uses,
		State:          k.State.String(),
		CurrentVersion: k.CurrentVersion,
		Versions:       []versionJSON{},
		Policy: policyJSON{
			MinDecryptionVersion:  k.Policy.MinDecryptionVersion,
			RotationPeriodSeconds: int64(k.Policy.RotationPeriod / time.Second),
		},
		Provider:  k.Provider,
		Insecure:  k.Insecure,
		Created:   timePtr(k.Created),
		Revoked:   timePtr(k.Revoked),
		Destroyed: timePtr(k.Destroyed),

		RotationDue:     timePtr(k.RotationDue),
		RotationOverdue: k.RotationOverdue,
		Origin:          string(k.Origin),
	}
	if j.Uses == nil {
		j.Uses = []string{}
	}
	for _, v := range k.Versions {
		vj := versionJSON{
			Version:   v.Version,
			State:     v.State.String(),
			PublicKey: v.PublicKey,
			Created:   timePtr(v.Created),
			Retired:   timePtr(v.Retired),
			Revoked:   timePtr(v.Revoked),
			Destroyed: timePtr(v.Destroyed),
			Origin:    string(v.Origin),
		}
		if v.SealLimit > 0 {
			seals, limit := v.Seals, v.SealLimit
			vj.Seals, vj.SealLimit = &seals, &limit
		}
		j.Versions = append(j.Versions, vj)
	}
	return j
}

// printKey writes a key for people: one "field value" line each, then the
// versions.
func printKey(w io.Writer, k client.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	row("key", k.ID)
	row("algorithm", string(k.Algorithm))
	row("uses", strings.Join(k.Uses, ","))
	row("state", k.State.String())
	row("version", strconv.FormatUint(uint64(k.CurrentVersion), 10))
	row("provider", k.Provider)
	origin := string(k.Origin)
	if k.Origin == client.OriginImported {
		origin += " (new versions come from import; rotate --generate switches it to generated)"
	}
	row("origin", origin)
	if k.Insecure {
		row("insecure", "true (INSECURE test provider: not secret)")
	}
	if k.Policy.MinDecryptionVersion != 0 {
		row("min decryption version", strconv.FormatUint(uint64(k.Policy.MinDecryptionVersion), 10))
	}
	if k.Policy.RotationPeriod != 0 {
		row("rotation period", k.Policy.RotationPeriod.String())
	}
	if !k.RotationDue.IsZero() {
		due := stamp(k.RotationDue)
		if k.RotationOverdue {
			due += " (overdue: rotates on the next sign or seal, or the daemon's next sweep)"
		}
		row("rotation due", due)
	}
	row("created", stamp(k.Created))
	if !k.Revoked.IsZero() {
		row("revoked", stamp(k.Revoked))
	}
	if !k.Destroyed.IsZero() {
		row("destroyed", stamp(k.Destroyed))
	}
	for _, v := range k.Versions {
		line := v.State.String() + "\tcreated " + stamp(v.Created) + "\t" + string(v.Origin)
		if v.SealLimit > 0 {
			line += "\t" + sealBudget(v)
		}
		row("version "+strconv.FormatUint(uint64(v.Version), 10), line)
	}
	if err := tw.Flush(); err != nil {
		return provider.Errorf(provider.EIO, "writing to stdout: %w", err)
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// sealBudget describes a decrypt key version's seal budget: "seals 3 of
// 4294967296 (4294967293 left)".
func sealBudget(v client.KeyVersion) string {
	return "seals " + strconv.FormatUint(v.Seals, 10) + " of " + strconv.FormatUint(v.SealLimit, 10) +
		" (" + strconv.FormatUint(v.SealsLeft(), 10) + " left)"
}
