package spool

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	full         prometheus.Gauge
	rejectedFull prometheus.Counter
	duplicates   prometheus.Counter
	commitSize   prometheus.Histogram
	syncSeconds  prometheus.Histogram
	delivered    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Spool) *metrics {
	m := &metrics{
		full: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_full", Help: "1 while the spool refuses batches because it is full.",
		}),
		rejectedFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_spool_rejected_full_total", Help: "Batches refused with SPOOL_FULL.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_batches_duplicate_total", Help: "Batches already spooled or delivered (acked DUPLICATE).",
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
	reg.MustRegister(m.full, m.rejectedFull, m.duplicates, m.commitSize, m.syncSeconds, m.delivered,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_bytes", Help: "Bytes of batches held in the spool.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_spool_batches", Help: "Batches held in the spool.",
		}, func() float64 { return float64(s.Stats().Batches) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_receipts_pending", Help: "Delivered receipts not yet acknowledged by their agents.",
		}, func() float64 { return float64(s.Stats().Receipts) }),
	)
	return m
}
