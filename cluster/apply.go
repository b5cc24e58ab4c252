package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// retryPause is how long a write waits before trying again while there is
// no reachable leader.
const retryPause = 25 * time.Millisecond

// Apply commits cmd through Raft and returns its log index once it is
// applied on the leader. A follower forwards the write to the leader. When
// no leader can be reached within the apply timeout (or ctx), the error
// wraps ErrNoQuorum. Commands are idempotent, so a write retried after a
// lost leadership never does harm.
func (n *Node) Apply(ctx context.Context, cmd Command) (uint64, error) {
	data, err := cmd.Encode()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	idx, err := n.retryLeader(ctx, func(ctx context.Context, r *raft.Raft, leaderAddr string) (uint64, error) {
		if r.State() == raft.Leader {
			return n.applyLeader(data, time.Until(deadlineOf(ctx)))
		}
		n.metrics.forwarded.Inc()
		resp, err := n.call(ctx, leaderAddr, &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_Apply{Apply: &clusterv1.ApplyCall{
			CommandType: uint32(cmd.Type), Body: data[1:],
		}}})
		if err != nil {
			return 0, err
		}
		return resp.Index, nil
	})
	if err != nil {
		return 0, fmt.Errorf("apply %s: %w", cmd.Type, err)
	}
	n.metrics.applies.WithLabelValues(cmd.Type.String()).Inc()
	n.metrics.applyTime.Observe(time.Since(start).Seconds())
	return idx, nil
}

// retriable errors mean "try again, maybe with another leader"; anything
// else (the FSM refused the command, bad request) is final.
func retriable(err error) bool {
	var re *rpcError
	if errors.As(err, &re) {
		return re.code == clusterv1.RpcCode_RPC_CODE_NOT_LEADER || re.code == clusterv1.RpcCode_RPC_CODE_NO_QUORUM
	}
	return errors.Is(err, errNotLeader) || errors.Is(err, ErrNoQuorum) ||
		errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrEnqueueTimeout) ||
		errors.Is(err, raft.ErrAbortedByRestore) || isNetErr(err)
}

type netErr struct{ err error }

func (e *netErr) Error() string { return e.err.Error() }
func (e *netErr) Unwrap() error { return e.err }

func isNetErr(err error) bool {
	var ne *netErr
	return errors.As(err, &ne)
}

func deadlineOf(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

// retryLeader runs f against the current leader until it succeeds, fails
// for good, or the apply timeout passes (then ErrNoQuorum).
func (n *Node) retryLeader(parent context.Context, f func(ctx context.Context, r *raft.Raft, leaderAddr string) (uint64, error)) (uint64, error) {
	r := n.r()
	if r == nil {
		return 0, fmt.Errorf("cluster node not running: %w", ErrNoQuorum)
	}
	ctx, cancel := context.WithTimeout(parent, n.cfg.ApplyTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-n.done:
			return 0, ErrClosed
		default:
		}
		addr, _ := r.LeaderWithID()
		if r.State() == raft.Leader || addr != "" {
			idx, err := f(ctx, r, string(addr))
			if err == nil {
				return idx, nil
			}
			if !retriable(err) {
				return 0, err
			}
			last = err
		} else {
			last = errors.New("no leader known")
		}
		if !sleepCtx(ctx, retryPause) {
			if errors.Is(parent.Err(), context.Canceled) {
				return 0, parent.Err()
			}
			n.metrics.noQuorum.Inc()
			return 0, fmt.Errorf("%w (last: %v)", ErrNoQuorum, last)
		}
	}
}

// applyLeader applies data on this node, which must be the leader.
func (n *Node) applyLeader(data []byte, timeout time.Duration) (uint64, error) {
	r := n.r()
	if r == nil || r.State() != raft.Leader {
		return 0, errNotLeader
	}
	if timeout <= 0 {
		timeout = n.cfg.ApplyTimeout
	}
	// A write forwarded by a newer node must not reach the log unless this
	// leader can apply it (or it may be skipped): every node of this
	// version would stop at it.
	if len(data) == 0 {
		return 0, errors.New("empty command")
	}
	if t := CommandType(data[0]); !t.Known() && !t.Ignorable() {
		return 0, fmt.Errorf("command type %d is unknown to the leader %s: upgrade it first: %w", t.Number(), n.cfg.NodeID, ErrUnknownCommand)
	}
	f := r.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("%w: %w", errNotLeader, err)
		}
		return 0, err
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return 0, err
	}
	return f.Index(), nil
}

// call sends an RPC to a peer over mutual TLS.
func (n *Node) call(ctx context.Context, addr string, req *clusterv1.RpcRequest) (*clusterv1.RpcResponse, error) {
	n.mu.Lock()
	sl, p := n.sl, n.pki
	n.mu.Unlock()
	c, err := sl.dialKind(ctx, addr, connRPC, p.clientTLS())
	if err != nil {
		return nil, &netErr{err}
	}
	resp, err := callRPC(ctx, c, req)
	var re *rpcError
	if err != nil && !errors.As(err, &re) {
		return nil, &netErr{err}
	}
	return resp, err
}

// forward sends a membership RPC to addr (any member: it forwards to its leader).
func (n *Node) forward(ctx context.Context, addr string, req *clusterv1.RpcRequest) error {
	_, err := n.call(ctx, addr, req)
	return err
}

// Barrier waits until this node has applied every write committed before
// the call: use it before a read that must not be stale. On a follower it
// asks the leader for its applied index and waits to catch up.
func (n *Node) Barrier(ctx context.Context) error {
	idx, err := n.retryLeader(ctx, func(ctx context.Context, r *raft.Raft, leaderAddr string) (uint64, error) {
		if r.State() == raft.Leader {
			return n.barrierLeader()
		}
		resp, err := n.call(ctx, leaderAddr, &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_Barrier{Barrier: &clusterv1.BarrierCall{}}})
		if err != nil {
			return 0, err
		}
		return resp.Index, nil
	})
	if err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	r := n.r()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	for r.AppliedIndex() < idx {
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return fmt.Errorf("barrier: catching up to index %d: %w", idx, ErrNoQuorum)
		}
	}
	return nil
}

func (n *Node) barrierLeader() (uint64, error) {
	r := n.r()
	if r == nil || r.State() != raft.Leader {
		return 0, errNotLeader
	}
	if err := r.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("%w: %w", errNotLeader, err)
		}
		return 0, err
	}
	return r.AppliedIndex(), nil
}

func (n *Node) addVoterLeader(id, addr string) error {
	r := n.r()
	if r == nil {
		return errNotLeader
	}
	if r.State() != raft.Leader {
		leader, _ := r.LeaderWithID()
		if leader == "" {
			return ErrNoQuorum
		}
		// A member that is not the leader passes the request on.
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		defer cancel()
		return n.forward(ctx, string(leader), &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_AddVoter{AddVoter: &clusterv1.AddVoterCall{NodeId: id, RaftAddr: addr}}})
	}
	if err := r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("add voter %s at %s: %w", id, addr, err)
	}
	n.log.Info("cluster: voter added", "node", id, "addr", addr)
	return nil
}

// Remove takes a (dead or leaving) node out of the cluster: its membership
// info, then its Raft vote. Any member may call it; it runs on the leader.
func (n *Node) Remove(ctx context.Context, nodeID string) error {
	_, err := n.retryLeader(ctx, func(ctx context.Context, r *raft.Raft, leaderAddr string) (uint64, error) {
		if r.State() == raft.Leader {
			return 0, n.removeLeader(ctx, nodeID)
		}
		return 0, n.forward(ctx, leaderAddr, &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_RemoveServer{RemoveServer: &clusterv1.RemoveServerCall{NodeId: nodeID}}})
	})
	if err != nil {
		return fmt.Errorf("remove node %s: %w", nodeID, err)
	}
	return nil
}

// Leave removes this node from the cluster; then Close it.
func (n *Node) Leave(ctx context.Context) error { return n.Remove(ctx, n.cfg.NodeID) }

func (n *Node) removeLeader(ctx context.Context, nodeID string) error {
	r := n.r()
	if r == nil || r.State() != raft.Leader {
		return errNotLeader
	}
	data, err := Command{Type: CmdRemoveMember, Body: &clusterv1.MemberRef{NodeId: nodeID}}.Encode()
	if err != nil {
		return err
	}
	if _, err := n.applyLeader(data, n.cfg.ApplyTimeout); err != nil {
		return err
	}
	if err := r.RemoveServer(raft.ServerID(nodeID), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %w", errNotLeader, err)
		}
		return err
	}
	n.log.Info("cluster: node removed", "node", nodeID)
	return nil
}

// MemberStatus is one server of the Raft configuration.
type MemberStatus struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	RaftAddr  string `json:"raft_addr"`
	AgentAddr string `json:"agent_addr,omitempty"`
	Suffrage  string `json:"suffrage"`
	// State is "leader", "follower" or, for this node, its own raft state.
	State string `json:"state"`
}

// Status is what `cluster status` shows.
type Status struct {
	NodeID       string         `json:"node_id"`
	State        string         `json:"state"`
	LeaderID     string         `json:"leader_id"`
	LeaderAddr   string         `json:"leader_addr"`
	Term         uint64         `json:"term"`
	LastIndex    uint64         `json:"last_index"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LastContact  string         `json:"last_contact,omitempty"`
	Members      []MemberStatus `json:"members"`
}

// Status reports this node's view of the cluster.
func (n *Node) Status() (Status, error) {
	r := n.r()
	if r == nil {
		return Status{}, errors.New("cluster node not running")
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return Status{}, fmt.Errorf("cluster status: %w", err)
	}
	laddr, lid := r.LeaderWithID()
	stats := r.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(stats[k], 10, 64); return v }
	st := Status{
		NodeID: n.cfg.NodeID, State: r.State().String(), LeaderID: string(lid), LeaderAddr: string(laddr),
		Term: u("term"), LastIndex: r.LastIndex(), CommitIndex: u("commit_index"), AppliedIndex: r.AppliedIndex(),
		LastContact: stats["last_contact"],
	}
	info := map[string]*clusterv1.Member{}
	for _, m := range n.store.Members() {
		info[m.NodeId] = m
	}
	for _, s := range f.Configuration().Servers {
		ms := MemberStatus{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: s.Suffrage.String(), State: "follower"}
		switch {
		case s.ID == lid:
			ms.State = "leader"
		case string(s.ID) == n.cfg.NodeID:
			ms.State = strings.ToLower(st.State)
		}
		if m := info[ms.ID]; m != nil {
			ms.Name, ms.AgentAddr = m.Name, m.AgentAddr
		}
		st.Members = append(st.Members, ms)
	}
	return st, nil
}
