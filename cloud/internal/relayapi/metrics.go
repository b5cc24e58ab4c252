package relayapi

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the relay API.
type Metrics struct {
	Uploads       prometheus.Counter
	Batches       *prometheus.CounterVec
	Events        prometheus.Counter
	UploadBytes   prometheus.Counter
	RequestErrors *prometheus.CounterVec
	// ActionsDelivered counts actions first handed to a relay by a poll.
	ActionsDelivered prometheus.Counter
	// ActionResults counts reported results by result (accepted, rejected).
	ActionResults *prometheus.CounterVec
}

// NewMetrics registers the relay API metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Uploads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cloud_uploads_total", Help: "Uploads stored and acknowledged.",
		}),
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cloud_batches_total", Help: "Uploaded batches by result.",
		}, []string{"result"}),
		Events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cloud_events_total", Help: "Events stored.",
		}),
		UploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cloud_upload_bytes_total", Help: "Upload request bytes received (as sent, compressed).",
		}),
		RequestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cloud_request_errors_total", Help: "Relay API requests answered with an error, by path and HTTP code.",
		}, []string{"path", "code"}),
		ActionsDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cloud_actions_delivered_total", Help: "Actions first handed to a relay by a control poll.",
		}),
		ActionResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cloud_action_results_total", Help: "Action results reported by relays, by result (accepted, rejected).",
		}, []string{"result"}),
	}
	for _, r := range []string{"accepted", "duplicate", "rejected"} {
		m.Batches.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "rejected"} {
		m.ActionResults.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Uploads, m.Batches, m.Events, m.UploadBytes, m.RequestErrors, m.ActionsDelivered, m.ActionResults)
	}
	return m
}
