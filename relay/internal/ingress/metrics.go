package ingress

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connected     *prometheus.GaugeVec
	batches       *prometheus.CounterVec
	ackSeconds    prometheus.Histogram
	bytesIn       prometheus.Counter
	rejects       *prometheus.CounterVec
	registrations *prometheus.CounterVec
	receiptsSent  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_relay_agents_connected", Help: "Agents with an admitted connection, by transport (quic, tcp).",
		}, []string{"transport"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_batches_total", Help: "Event batches received, by ack (spooled, duplicate, full, rejected).",
		}, []string{"result"}),
		ackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_relay_batch_ack_seconds", Help: "Time from reading a batch to sending its ack (includes the group fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_batch_bytes_in_total", Help: "Event payload bytes received in batches.",
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_rejects_total", Help: "Connections or batches refused, by reason.",
		}, []string{"reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_registrations_total", Help: "Agent registrations, by path (cloud, offline).",
		}, []string{"path"}),
		receiptsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_receipts_sent_total", Help: "Delivered receipts (seqs) sent to agents.",
		}),
	}
	for _, t := range []string{TransportQUIC, TransportTCP} {
		m.connected.WithLabelValues(t)
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.batches, m.ackSeconds, m.bytesIn, m.rejects, m.registrations, m.receiptsSent)
	}
	return m
}
