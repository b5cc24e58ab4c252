package uplink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	uploads     *prometheus.CounterVec
	uploadBytes *prometheus.CounterVec
	batches     *prometheus.CounterVec
	rejected    prometheus.Counter
	backoff     prometheus.Gauge
	reachable   prometheus.Gauge
	reconciled  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_uploads_total", Help: "Upload attempts by result (ok, error).",
		}, []string{"result"}),
		uploadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_upload_bytes_total", Help: "Upload body bytes acked by the cloud, raw (protobuf) and compressed (zstd).",
		}, []string{"kind"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_batches_total", Help: "Batches the cloud acked, by outcome (accepted, duplicate, rejected).",
		}, []string{"result"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_rejected_total", Help: "Batches the cloud rejected for good; dropped from the spool.",
		}),
		backoff: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_relay_uplink_backoff_seconds", Help: "Current wait before retrying the cloud (0 when healthy).",
		}),
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_relay_cloud_reachable", Help: "1 when the last call to the cloud got an answer.",
		}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_reconciled_total", Help: "Offline agent registrations told to the cloud, by result (ok, refused).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.uploads, m.uploadBytes, m.batches, m.rejected, m.backoff, m.reachable, m.reconciled)
	}
	return m
}
