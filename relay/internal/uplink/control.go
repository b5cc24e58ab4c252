package uplink

import (
	"context"
	"errors"
	"time"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
)

// pollLoop long-polls the control channel and caches the registration key
// hashes the relay needs to register agents while the cloud is away.
func (u *Uplink) pollLoop(ctx context.Context) {
	since := u.d.Site.ControlVersion()
	bo := backoff{min: u.o.MinBackoff, max: u.o.MaxBackoff}
	for ctx.Err() == nil {
		start := u.o.Clock.Now()
		resp, err := u.d.Client.Poll(ctx, &cloudv1.ControlPollRequest{SinceVersion: since, WaitMs: u.o.PollWait.Milliseconds()})
		if ctx.Err() != nil {
			return
		}
		u.callResult(err)
		if err != nil {
			d := max(bo.next(), cloudclient.RetryAfter(err))
			u.log.Warn("control poll failed", "err", err, "retry_in", d)
			if !u.sleep(ctx, d) {
				return
			}
			continue
		}
		bo.reset()
		changed := resp.GetVersion() != since
		if err := u.d.Site.ApplyControl(ctx, resp); err != nil {
			u.log.Warn("cloud control state not yet in the site state; the next poll brings it again", "err", err)
		} else if changed || since == 0 {
			since = resp.GetVersion()
			u.log.Debug("control state", "version", since, "registration_keys", len(resp.GetRegistrationKeys()))
		}
		// A cloud that answers at once with nothing new must not turn this
		// into a hot loop; an answer with a change is followed at once by the
		// next poll, so a burst of actions is not held back.
		if el := u.o.Clock.Now().Sub(start); el < time.Second && !changed {
			if !u.sleep(ctx, time.Second-el) {
				return
			}
		}
	}
}

// reconcile registers with the cloud every agent registered offline. It
// returns an error while the cloud is unreachable; a refused registration
// forgets the agent (its batches will then be rejected and counted).
func (u *Uplink) reconcile(ctx context.Context) error {
	for _, req := range u.d.Site.PendingRegistrations() {
		resp, err := u.d.Client.Register(ctx, req)
		u.callResult(err)
		if err != nil {
			var se *cloudclient.StatusError
			if cloudclient.Retryable(err) || !errors.As(err, &se) {
				return err
			}
			u.log.Error("cloud refused offline-registered agent, forgetting it", "agent_id", req.AgentId, "err", err)
			u.m.reconciled.WithLabelValues("refused").Inc()
			if err := u.d.Site.ReconcileDone(ctx, req.AgentId, nil); err != nil {
				return err
			}
			continue
		}
		if err := u.d.Site.ReconcileDone(ctx, req.AgentId, resp); err != nil {
			return err
		}
		u.m.reconciled.WithLabelValues("ok").Inc()
		u.log.Info("offline registration reconciled", "agent_id", req.AgentId, "tenant_id", resp.TenantId, "group_id", resp.GroupId)
	}
	return nil
}
