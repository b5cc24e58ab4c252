package cluster

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	applies   *prometheus.CounterVec
	forwarded prometheus.Counter
	noQuorum  prometheus.Counter
	rpcErrors prometheus.Counter
	applyTime prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cluster_applies_total", Help: "Control writes committed through Raft, by command.",
		}, []string{"command"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cluster_forwarded_total", Help: "Control writes forwarded from this follower to the leader.",
		}),
		noQuorum: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cluster_no_quorum_total", Help: "Control writes refused for lack of a cluster quorum.",
		}),
		rpcErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cluster_rpc_errors_total", Help: "Cluster RPCs answered with an error (bad request, refused join, ...).",
		}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_cluster_apply_seconds", Help: "Time to commit a control write.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applies, m.forwarded, m.noQuorum, m.rpcErrors, m.applyTime)
	}
	return m
}
