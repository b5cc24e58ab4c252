package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/version"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
)

type app struct {
	out       io.Writer
	server    string
	token     string
	tokenFile string
	output    string
}

func (a *app) client() (*adminapi.Client, error) {
	tok := a.token
	if tok == "" && a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, errors.New("no admin token: use --token, --token-file or GATEHOUSE_TOKEN")
	}
	return adminapi.NewClient(a.server, tok), nil
}

// print writes v as JSON, or as a table of header + rows.
func (a *app) print(v any, header []string, rows [][]string) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newRootCommand(out io.Writer) *cobra.Command {
	a := &app{out: out}
	root := &cobra.Command{
		Use:           "gatehousectl",
		Short:         "Administer a Gatehouse cloud (tenants, sites, groups, keys, relays, agents, events)",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if a.output != "text" && a.output != "json" {
				return fmt.Errorf("-o %q: want text or json", a.output)
			}
			return nil
		},
	}
	server := os.Getenv("GATEHOUSE_SERVER")
	if server == "" {
		server = "http://127.0.0.1:9200"
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.server, "server", server, "admin API base URL (env GATEHOUSE_SERVER)")
	pf.StringVar(&a.token, "token", os.Getenv("GATEHOUSE_TOKEN"), "admin token (env GATEHOUSE_TOKEN)")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the admin token")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(a.tenantCmd(), a.siteCmd(), a.groupCmd(), a.keyCmd(), a.relayCmd(), a.agentCmd(), a.eventsCmd(), a.statsCmd(),
		a.dnsCmd(), a.allowListCmd(), a.actionCmd())
	return root
}

// run builds a RunE that gets a client first.
func (a *app) run(f func(ctx context.Context, c *adminapi.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return f(cmd.Context(), c, args)
	}
}

func group(use, short string, cmds ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.AddCommand(cmds...)
	return c
}

func tenantFlag(c *cobra.Command, v *string) {
	c.Flags().StringVar(v, "tenant", "", "tenant id")
	c.MarkFlagRequired("tenant")
}

func (a *app) tenantCmd() *cobra.Command {
	create := &cobra.Command{Use: "create NAME", Short: "Create a tenant", Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			t, err := c.CreateTenant(ctx, args[0])
			if err != nil {
				return err
			}
			return a.print(t, []string{"ID", "NAME", "CREATED"}, [][]string{{t.ID, t.Name, ts(t.CreatedAt)}})
		})}
	list := &cobra.Command{Use: "list", Short: "List tenants", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			ts_, err := c.ListTenants(ctx)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, t := range ts_ {
				rows = append(rows, []string{t.ID, t.Name, ts(t.CreatedAt)})
			}
			return a.print(ts_, []string{"ID", "NAME", "CREATED"}, rows)
		})}
	return group("tenant", "Manage tenants", create, list)
}

// namedCmd makes "X create --tenant T NAME" and "X list --tenant T" for sites and groups.
func (a *app) namedCmd(kind string,
	create func(context.Context, *adminapi.Client, string, string) (id, tenant, name string, at time.Time, v any, err error),
	list func(context.Context, *adminapi.Client, string) (rows [][]string, v any, err error)) *cobra.Command {
	var tenant string
	c := &cobra.Command{Use: "create --tenant T NAME", Short: "Create a " + kind, Args: cobra.ExactArgs(1),
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, args []string) error {
			id, tn, name, at, v, err := create(ctx, c, tenant, args[0])
			if err != nil {
				return err
			}
			return a.print(v, []string{"ID", "TENANT", "NAME", "CREATED"}, [][]string{{id, tn, name, ts(at)}})
		})}
	tenantFlag(c, &tenant)
	var ltenant string
	l := &cobra.Command{Use: "list --tenant T", Short: "List " + kind + "s", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			rows, v, err := list(ctx, c, ltenant)
			if err != nil {
				return err
			}
			header := []string{"ID", "TENANT", "NAME", "CREATED"}
			if kind == "group" {
				header = append(header, "TIER")
			}
			return a.print(v, header, rows)
		})}
	tenantFlag(l, &ltenant)
	return group(kind, "Manage "+kind+"s", c, l)
}

func (a *app) siteCmd() *cobra.Command {
	return a.namedCmd("site",
		func(ctx context.Context, c *adminapi.Client, t, n string) (string, string, string, time.Time, any, error) {
			s, err := c.CreateSite(ctx, t, n)
			return s.ID, s.TenantID, s.Name, s.CreatedAt, s, err
		},
		func(ctx context.Context, c *adminapi.Client, t string) ([][]string, any, error) {
			ss, err := c.ListSites(ctx, t)
			var rows [][]string
			for _, s := range ss {
				rows = append(rows, []string{s.ID, s.TenantID, s.Name, ts(s.CreatedAt)})
			}
			return rows, ss, err
		})
}

func (a *app) groupCmd() *cobra.Command {
	c := a.namedCmdGroup()
	c.AddCommand(a.setTierCmd())
	return c
}

func (a *app) namedCmdGroup() *cobra.Command {
	return a.namedCmd("group",
		func(ctx context.Context, c *adminapi.Client, t, n string) (string, string, string, time.Time, any, error) {
			g, err := c.CreateGroup(ctx, t, n)
			return g.ID, g.TenantID, g.Name, g.CreatedAt, g, err
		},
		func(ctx context.Context, c *adminapi.Client, t string) ([][]string, any, error) {
			gs, err := c.ListGroups(ctx, t)
			var rows [][]string
			for _, g := range gs {
				rows = append(rows, []string{g.ID, g.TenantID, g.Name, ts(g.CreatedAt), g.Tier})
			}
			return rows, gs, err
		})
}

var keyHeader = []string{"ID", "GROUP", "KEY", "CREATED", "EXPIRES", "SUCCESSOR_OF"}

func keyRow(k adminapi.RegistrationKey) []string {
	so := k.SuccessorOf
	if so == "" {
		so = "-"
	}
	return []string{k.ID, k.GroupID, k.Key, ts(k.CreatedAt), ts(k.ExpiresAt), so}
}

func (a *app) keyCmd() *cobra.Command {
	var tenant, grp string
	var validFor time.Duration
	create := &cobra.Command{Use: "create --tenant T --group G [--valid-for 8760h]", Short: "Create a registration key", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			k, err := c.CreateRegistrationKey(ctx, tenant, grp, validFor)
			if err != nil {
				return err
			}
			return a.print(k, keyHeader, [][]string{keyRow(k)})
		})}
	tenantFlag(create, &tenant)
	create.Flags().StringVar(&grp, "group", "", "group id")
	create.MarkFlagRequired("group")
	create.Flags().DurationVar(&validFor, "valid-for", 0, "validity (default 8760h, one year)")
	var ltenant string
	list := &cobra.Command{Use: "list --tenant T", Short: "List registration keys", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			ks, err := c.ListRegistrationKeys(ctx, ltenant)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, k := range ks {
				rows = append(rows, keyRow(k))
			}
			return a.print(ks, keyHeader, rows)
		})}
	tenantFlag(list, &ltenant)
	return group("key", "Manage registration keys", create, list)
}

func (a *app) relayCmd() *cobra.Command {
	var tenant, site string
	var validFor time.Duration
	tok := &cobra.Command{Use: "enroll-token --tenant T --site S", Short: "Make a relay enrollment token (prints it)", Args: cobra.NoArgs,
		Long: `Make a relay enrollment token for a site and print it; put it in the
relay's cloud.enrollment_token. The token is valid for 24h (--valid-for) and
enrolls one relay: the relay that used it may present it again while it is
valid (it stopped before saving its credentials); another relay is refused.`,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			t, err := c.CreateEnrollmentToken(ctx, tenant, site, validFor)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.print(t, nil, nil)
			}
			_, err = fmt.Fprintln(a.out, t.Token)
			return err
		})}
	tenantFlag(tok, &tenant)
	tok.Flags().StringVar(&site, "site", "", "site id")
	tok.MarkFlagRequired("site")
	tok.Flags().DurationVar(&validFor, "valid-for", 0, "how long the token can enroll a relay (default 24h)")
	var ltenant string
	list := &cobra.Command{Use: "list --tenant T", Short: "List relays", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			rs, err := c.ListRelays(ctx, ltenant)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range rs {
				rows = append(rows, []string{r.ID, r.SiteID, r.Name, r.Hostname, ts(r.EnrolledAt), ts(r.LastSeen)})
			}
			return a.print(rs, []string{"ID", "SITE", "NAME", "HOSTNAME", "ENROLLED", "LAST_SEEN"}, rows)
		})}
	tenantFlag(list, &ltenant)
	return group("relay", "Manage relays", tok, list)
}

func (a *app) agentCmd() *cobra.Command {
	var tenant string
	list := &cobra.Command{Use: "list --tenant T", Short: "List agents", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			as, err := c.ListAgents(ctx, tenant)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, g := range as {
				rows = append(rows, []string{g.ID, g.GroupID, g.Tier, fmt.Sprint(g.Isolated), g.Hostname, g.AgentVersion, g.OS, g.RelayID, ts(g.RegisteredAt),
					ts(g.LastSeenAt), ts(g.LastEventAt)})
			}
			return a.print(as, []string{"ID", "GROUP", "TIER", "ISOLATED", "HOSTNAME", "VERSION", "OS", "RELAY", "REGISTERED", "LAST_SEEN", "LAST_EVENT"}, rows)
		})}
	tenantFlag(list, &tenant)
	return group("agent", "List agents", list)
}

func (a *app) eventsCmd() *cobra.Command {
	var tenant, agent string
	count := &cobra.Command{Use: "count --tenant T [--agent A]", Short: "Count stored events", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			n, err := c.CountEvents(ctx, tenant, agent)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.print(adminapi.Count{Count: n}, nil, nil)
			}
			_, err = fmt.Fprintln(a.out, n)
			return err
		})}
	tenantFlag(count, &tenant)
	count.Flags().StringVar(&agent, "agent", "", "agent id")
	var qtenant, qagent string
	var after uint64
	var limit int
	query := &cobra.Command{Use: "query --tenant T [--agent A] [--after C] [--limit N]", Short: "Query stored events", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			p, err := c.QueryEvents(ctx, qtenant, qagent, after, limit)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, e := range p.Events {
				rows = append(rows, []string{fmt.Sprint(e.Cursor), e.AgentID, fmt.Sprint(e.Seq), ts(e.ReceivedAt), string(e.Event)})
			}
			if err := a.print(p, []string{"CURSOR", "AGENT", "SEQ", "RECEIVED", "EVENT"}, rows); err != nil {
				return err
			}
			if a.output == "text" {
				fmt.Fprintf(a.out, "next: %d\n", p.Next)
			}
			return nil
		})}
	tenantFlag(query, &qtenant)
	query.Flags().StringVar(&qagent, "agent", "", "agent id")
	query.Flags().Uint64Var(&after, "after", 0, "return events after this cursor")
	query.Flags().IntVar(&limit, "limit", 100, "page size (max 10000)")
	return group("events", "Count and query events", count, query)
}

func (a *app) statsCmd() *cobra.Command {
	return &cobra.Command{Use: "stats", Short: "Fleet-wide totals", Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, c *adminapi.Client, _ []string) error {
			s, err := c.Stats(ctx)
			if err != nil {
				return err
			}
			return a.print(s, []string{"TENANTS", "AGENTS", "EVENTS", "BATCHES", "DUPLICATE_BATCHES"},
				[][]string{{fmt.Sprint(s.Tenants), fmt.Sprint(s.Agents), fmt.Sprint(s.Events), fmt.Sprint(s.Batches), fmt.Sprint(s.DuplicateBatches)}})
		})}
}
