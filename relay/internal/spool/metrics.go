package spool

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	full         prometheus.Gauge
	rejectedFull prometheus.Counter
	commitSize   prometheus.Histogram
	syncSeconds  prometheus.Histogram
	delivered    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Spool) *metrics {
	m := &metrics{
		full: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_full", Help: "1 while the spool refuses batches: at max_bytes, or its filesystem at min_free_bytes.",
		}),
		rejectedFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_spool_rejected_full_total", Help: "Batches refused with SPOOL_FULL.",
		}),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_relay_spool_group_commit_batches", Help: "Batches made durable by one fsync.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_relay_spool_commit_seconds", Help: "Time to write and fsync one commit group.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_spool_delivered_total", Help: "Batches removed from the spool after the cloud's ack.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.full, m.rejectedFull, m.commitSize, m.syncSeconds, m.delivered,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_bytes", Help: "Bytes of batches held in the spool.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_batches", Help: "Batches held in the spool.",
		}, func() float64 { return float64(s.Stats().Batches) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_disk_bytes", Help: "What the spool's directory takes on disk: segments, index, reserve file.",
		}, func() float64 { return float64(s.Stats().DiskBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_fs_free_bytes", Help: "Free space of the spool's filesystem (as unprivileged writers see it).",
		}, func() float64 { return float64(s.Stats().FsFreeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_fs_used_bytes", Help: "Used space of the spool's filesystem (size minus free).",
		}, func() float64 { st := s.Stats(); return float64(st.FsSizeBytes - st.FsFreeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_fs_size_bytes", Help: "Size of the spool's filesystem.",
		}, func() float64 { return float64(s.Stats().FsSizeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_oldest_batch_age_seconds", Help: "How long the oldest undelivered batch has waited in the spool (0: empty).",
		}, func() float64 {
			age, err := s.OldestAge()
			if err != nil {
				return math.NaN()
			}
			return age.Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_backlog_agents", Help: "Agents with batches waiting in the spool (per agent: /v1/status spool.backlog).",
		}, func() float64 { return float64(s.backlogAgents()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_backlog_max_agent_bytes", Help: "Bytes waiting in the spool for the agent with the most.",
		}, func() float64 {
			top, _ := s.BacklogTop(1)
			if len(top) == 0 {
				return 0
			}
			return float64(top[0].Bytes)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_receipts_pending", Help: "Delivered receipts not yet acknowledged by their agents.",
		}, func() float64 { return float64(s.Stats().Receipts) }),
	)
	return m
}
