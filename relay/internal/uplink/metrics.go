package uplink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	uploads     *prometheus.CounterVec
	uploadBytes *prometheus.CounterVec
	batches     *prometheus.CounterVec
	rejected    prometheus.Counter
	backoff     prometheus.Gauge
	reachable   prometheus.GaugeFunc
	lastContact prometheus.GaugeFunc
	reconciled  *prometheus.CounterVec
}

// newMetrics: reachable and lastContact are read at scrape time, so the
// gauges age like the status does.
func newMetrics(reg prometheus.Registerer, reachable func() bool, lastContact func() time.Time) *metrics {
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
		reachable: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_cloud_reachable", Help: "1 when the cloud answered within two long polls and no call failed to reach it since.",
		}, func() float64 {
			if reachable() {
				return 1
			}
			return 0
		}),
		lastContact: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_relay_cloud_last_contact_timestamp_seconds", Help: "Unix time the cloud last answered a call; 0: not since start.",
		}, func() float64 {
			t := lastContact()
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_relay_uplink_reconciled_total", Help: "Offline agent registrations told to the cloud, by result (ok, refused).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.uploads, m.uploadBytes, m.batches, m.rejected, m.backoff, m.reachable, m.lastContact, m.reconciled)
	}
	return m
}
