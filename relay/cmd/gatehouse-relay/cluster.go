package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/relay/internal/config"
)

// newClusterCmd is `gatehouse-relay cluster ...`. init and join prepare the
// data directory (the relay then runs as a member at its next start); the
// others ask the running relay over its admin address.
func newClusterCmd(load func(*cobra.Command) (config.Config, error)) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Make, join, leave and inspect the site's relay cluster"}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Start a new site cluster with this relay as its first member; prints the join token",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			solo := cluster.Solo(cfg.Cluster.DataDir)
			tok, err := cluster.Init(cfg.Cluster.DataDir, cfg.Cluster.NodeID)
			if err != nil {
				return err
			}
			if solo {
				// A relay that ran alone keeps its state: it is the site cluster's first member.
				fmt.Fprintf(c.OutOrStdout(), "this relay's cluster of one (node %s) keeps its state and opens its cluster port %s to other relays; restart the relay.\njoin token (keep it secret): %s\n", cfg.Cluster.NodeID, cfg.Cluster.Bind, tok)
				return nil
			}
			fmt.Fprintf(c.OutOrStdout(), "cluster initialized with node %s; start (or restart) the relay.\njoin token (keep it secret): %s\n", cfg.Cluster.NodeID, tok)
			return nil
		},
	})
	var token string
	join := &cobra.Command{
		Use:   "join ADDR",
		Short: "Join the cluster a member at ADDR (host:port of its cluster port) belongs to",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("GATEHOUSE_JOIN_TOKEN")
			}
			if token == "" {
				return fmt.Errorf("--token (or GATEHOUSE_JOIN_TOKEN) is required: `cluster init` or `cluster status` on a member prints it")
			}
			ctx, cancel := context.WithTimeout(c.Context(), 30*time.Second)
			defer cancel()
			solo := cluster.Solo(cfg.Cluster.DataDir)
			if err := cluster.Enroll(ctx, cfg.Cluster.DataDir, cfg.Cluster.NodeID, args[0], token); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "node %s enrolled; start (or restart) the relay to become a voter\n", cfg.Cluster.NodeID)
			if solo {
				fmt.Fprintln(c.OutOrStdout(), "this relay's own cluster of one was set aside in cluster.data_dir; agents it registered register again by themselves")
			}
			return nil
		},
	}
	join.Flags().StringVar(&token, "token", "", "join token from `cluster init`")
	cmd.AddCommand(join)

	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Members, their state, the leader and the last index, as the running relay sees them",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			body, err := adminCall(c.Context(), http.MethodGet, cfg.AdminListen, "/v1/cluster/status")
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := c.OutOrStdout().Write(body)
				return err
			}
			var st cluster.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "node\t%s (%s)\nleader\t%s %s\nterm\t%d\nlast index\t%d (commit %d, applied %d)\n\n",
				st.NodeID, st.State, st.LeaderID, st.LeaderAddr, st.Term, st.LastIndex, st.CommitIndex, st.AppliedIndex)
			fmt.Fprintln(w, "ID\tNAME\tSTATE\tSUFFRAGE\tRAFT\tAGENTS")
			for _, m := range st.Members {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Name, m.State, m.Suffrage, m.RaftAddr, m.AgentAddr)
			}
			return w.Flush()
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.AddCommand(status)
	cmd.AddCommand(&cobra.Command{
		Use:   "leave",
		Short: "Take this relay out of the cluster (it stops taking part in control writes)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			_, err = adminCall(c.Context(), http.MethodPost, cfg.AdminListen, "/v1/cluster/leave")
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NODE_ID",
		Short: "Remove a dead member from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := load(c)
			if err != nil {
				return err
			}
			_, err = adminCall(c.Context(), http.MethodPost, cfg.AdminListen, "/v1/cluster/remove/"+args[0])
			return err
		},
	})
	return cmd
}

// adminCall asks the running relay; its admin address is on loopback or a
// management network, so plain HTTP.
func adminCall(ctx context.Context, method, addr, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(nil))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("relay admin %s: %w (is the relay running?)", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("relay: %s", e.Error)
		}
		return nil, fmt.Errorf("relay: %s", resp.Status)
	}
	return body, nil
}
