package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
)

// Control-plane commands: dns, group set-tier, allow-list, action.

func siteFlag(c *cobra.Command, v *string) {
	c.Flags().StringVar(v, "site", "", "site id")
	c.MarkFlagRequired("site")
}

// fqdn is how the server spells names: lower case with the trailing dot.
func fqdn(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

var dnsHeader = []string{"NAME", "TYPE", "TTL", "VALUES"}

func (a *app) printDNS(o adminapi.DNSOverrides) error {
	var rows [][]string
	for _, r := range o.Records {
		rows = append(rows, []string{r.Name, r.Type, fmt.Sprint(r.TTL), strings.Join(r.Values, ", ")})
	}
	return a.print(o, dnsHeader, rows)
}

func (a *app) dnsCmd() *cobra.Command {
	var tenant, site string
	var ttl uint32
	set := &cobra.Command{Use: "set --tenant T --site S NAME TYPE VALUE... [--ttl 60]",
		Short: "Set the values of one override (replacing that name and type); SRV values as \"prio weight port target\"",
		Args:  cobra.MinimumNArgs(3),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			rec := adminapi.DNSRecord{Name: args[0], Type: strings.ToUpper(args[1]), Values: args[2:], TTL: ttl}
			return a.editDNS(ctx, c, tenant, site, func(recs []adminapi.DNSRecord) ([]adminapi.DNSRecord, error) {
				out := []adminapi.DNSRecord{}
				for _, r := range recs {
					if !(r.Name == fqdn(rec.Name) && r.Type == rec.Type) {
						out = append(out, r)
					}
				}
				return append(out, rec), nil
			})
		})}
	tenantFlag(set, &tenant)
	siteFlag(set, &site)
	set.Flags().Uint32Var(&ttl, "ttl", 60, "TTL in seconds")
	var dtenant, dsite string
	del := &cobra.Command{Use: "delete --tenant T --site S NAME [TYPE]", Short: "Delete the overrides of a name (all types, or one)",
		Args: cobra.RangeArgs(1, 2),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			return a.editDNS(ctx, c, dtenant, dsite, func(recs []adminapi.DNSRecord) ([]adminapi.DNSRecord, error) {
				out := []adminapi.DNSRecord{}
				for _, r := range recs {
					if r.Name == fqdn(args[0]) && (len(args) == 1 || r.Type == strings.ToUpper(args[1])) {
						continue
					}
					out = append(out, r)
				}
				if len(out) == len(recs) {
					return nil, fmt.Errorf("no override %s", strings.Join(args, " "))
				}
				return out, nil
			})
		})}
	tenantFlag(del, &dtenant)
	siteFlag(del, &dsite)
	var ltenant, lsite string
	list := &cobra.Command{Use: "list --tenant T --site S", Short: "List a site's DNS overrides", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			o, err := c.GetDNSOverrides(ctx, ltenant, lsite)
			if err != nil {
				return err
			}
			return a.printDNS(o)
		})}
	tenantFlag(list, &ltenant)
	siteFlag(list, &lsite)
	return group("dns", "Manage a site's DNS overrides", set, del, list)
}

// editDNS reads a site's overrides, edits them and writes the whole set back.
func (a *app) editDNS(ctx context.Context, c *adminapi.Client, tenant, site string, edit func([]adminapi.DNSRecord) ([]adminapi.DNSRecord, error)) error {
	o, err := c.GetDNSOverrides(ctx, tenant, site)
	if err != nil {
		return err
	}
	recs, err := edit(o.Records)
	if err != nil {
		return err
	}
	if o, err = c.SetDNSOverrides(ctx, tenant, site, recs); err != nil {
		return err
	}
	return a.printDNS(o)
}

func (a *app) setTierCmd() *cobra.Command {
	var tenant string
	c := &cobra.Command{Use: "set-tier --tenant T GROUP TIER", Short: "Set a group's policy tier (server or workstation)", Args: cobra.ExactArgs(2),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			g, err := c.SetGroupTier(ctx, tenant, args[0], args[1])
			if err != nil {
				return err
			}
			return a.print(g, []string{"ID", "TENANT", "NAME", "CREATED", "TIER"}, [][]string{{g.ID, g.TenantID, g.Name, ts(g.CreatedAt), g.Tier}})
		})}
	tenantFlag(c, &tenant)
	return c
}

func (a *app) printAllowList(al adminapi.AllowList) error {
	var rows [][]string
	for _, c := range al.CIDRs {
		rows = append(rows, []string{"cidr", c})
	}
	for _, n := range al.Names {
		rows = append(rows, []string{"name", n})
	}
	return a.print(al, []string{"KIND", "ENTRY"}, rows)
}

func (a *app) allowListCmd() *cobra.Command {
	var tenant string
	var cidrs, names []string
	set := &cobra.Command{Use: "set --tenant T [--cidr C]... [--name N]...", Short: "Replace the tenant's isolation allow-list", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			al, err := c.SetAllowList(ctx, tenant, cidrs, names)
			if err != nil {
				return err
			}
			return a.printAllowList(al)
		})}
	tenantFlag(set, &tenant)
	set.Flags().StringSliceVar(&cidrs, "cidr", nil, "allowed CIDR or address (repeat or comma-separate)")
	set.Flags().StringSliceVar(&names, "name", nil, "allowed DNS name (repeat or comma-separate)")
	var gtenant string
	get := &cobra.Command{Use: "get --tenant T", Short: "Show the tenant's isolation allow-list", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			al, err := c.GetAllowList(ctx, gtenant)
			if err != nil {
				return err
			}
			return a.printAllowList(al)
		})}
	tenantFlag(get, &gtenant)
	return group("allow-list", "Manage the tenant's isolation allow-list", set, get)
}

var actionHeader = []string{"ID", "AGENT", "TYPE", "STATE", "CREATED", "RESULT"}

func actionRow(x adminapi.Action) []string {
	res := "-"
	if x.Result != nil {
		res = "ok"
		if !x.Result.OK {
			res = "failed: " + x.Result.Reason
		}
		if len(x.Result.Output) > 0 {
			res += fmt.Sprintf(" (%d bytes output)", len(x.Result.Output))
		}
	}
	return []string{x.ID, x.AgentID, x.Type, x.State, ts(x.CreatedAt), res}
}

func (a *app) printActions(v any, acts ...adminapi.Action) error {
	rows := make([][]string, len(acts))
	for i, x := range acts {
		rows[i] = actionRow(x)
	}
	return a.print(v, actionHeader, rows)
}

func payloadFlag(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("--payload %q: not JSON", s)
	}
	return json.RawMessage(s), nil
}

func (a *app) actionCmd() *cobra.Command {
	types := "isolate, cancel_isolation, quarantine_file {path}, restore_file {quarantine_id}, terminate_process {pid}, " +
		"retrieve_file {path}, retrieve_support_bundle, set_proxy {url}, clear_proxy, heartbeat_now"
	var tenant, agent, payload string
	create := &cobra.Command{Use: "create --tenant T --agent A TYPE [--payload JSON]", Short: "Queue an action for an agent",
		Long: "Queue an action for an agent. Types (payload fields): " + types + ".", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			p, err := payloadFlag(payload)
			if err != nil {
				return err
			}
			x, err := c.CreateAction(ctx, tenant, agent, args[0], p)
			if err != nil {
				return err
			}
			return a.printActions(x, x)
		})}
	tenantFlag(create, &tenant)
	create.Flags().StringVar(&agent, "agent", "", "agent id")
	create.MarkFlagRequired("agent")
	create.Flags().StringVar(&payload, "payload", "", `payload JSON object, e.g. '{"path":"/tmp/x"}'`)

	var btenant, bgroup, bpayload string
	var bagents []string
	bulk := &cobra.Command{Use: "bulk --tenant T (--agent A... | --group G) TYPE [--payload JSON]", Short: "Queue an action for several agents or a group",
		Long: "Queue an action for several agents or every agent of a group. Types: " + types + ".", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			p, err := payloadFlag(bpayload)
			if err != nil {
				return err
			}
			xs, err := c.CreateBulkActions(ctx, btenant, adminapi.BulkActionRequest{AgentIDs: bagents, GroupID: bgroup, Type: args[0], Payload: p})
			if err != nil {
				return err
			}
			return a.printActions(adminapi.BulkActions{Actions: xs}, xs...)
		})}
	tenantFlag(bulk, &btenant)
	bulk.Flags().StringSliceVar(&bagents, "agent", nil, "agent id (repeat or comma-separate)")
	bulk.Flags().StringVar(&bgroup, "group", "", "group id")
	bulk.Flags().StringVar(&bpayload, "payload", "", "payload JSON object")

	var ltenant, lagent, lstate string
	list := &cobra.Command{Use: "list --tenant T [--agent A] [--state S]", Short: "List actions, oldest first", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			xs, err := c.ListActions(ctx, ltenant, lagent, lstate)
			if err != nil {
				return err
			}
			return a.printActions(xs, xs...)
		})}
	tenantFlag(list, &ltenant)
	list.Flags().StringVar(&lagent, "agent", "", "agent id")
	list.Flags().StringVar(&lstate, "state", "", "pending, delivered_to_relay, done or failed")

	var gtenant string
	get := &cobra.Command{Use: "get --tenant T ID", Short: "Show an action", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			x, err := c.GetAction(ctx, gtenant, args[0])
			if err != nil {
				return err
			}
			return a.printActions(x, x)
		})}
	tenantFlag(get, &gtenant)

	var wtenant string
	var timeout, interval time.Duration
	wait := &cobra.Command{Use: "wait --tenant T ID [--timeout 30s]", Short: "Wait until an action is done or failed (exit status 1 if it failed)", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			x, err := c.WaitAction(ctx, wtenant, args[0], interval)
			if err != nil {
				return err
			}
			if err := a.printActions(x, x); err != nil {
				return err
			}
			if x.State == adminapi.ActionFailed {
				return fmt.Errorf("action %s failed: %s", x.ID, x.Result.Reason)
			}
			return nil
		})}
	tenantFlag(wait, &wtenant)
	wait.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait")
	wait.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "poll interval")
	return group("action", "Queue and follow actions on agents", create, bulk, list, get, wait)
}
