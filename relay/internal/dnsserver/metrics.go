package dnsserver

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for refused_total.
const (
	refusedNetwork  = "network"  // client outside allow_networks
	refusedUnknown  = "unknown"  // not local and forwarding is off
	refusedOverload = "overload" // too many upstream queries in flight
	refusedOpcode   = "opcode"   // not a standard query
	refusedClass    = "class"    // not class IN
)

// counted qtypes: the rest are "other", to keep the label set small.
var metricTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSRV, dns.TypeTXT,
	dns.TypeMX, dns.TypeNS, dns.TypePTR, dns.TypeSOA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY}

type metrics struct {
	queries    [2][]prometheus.Counter // [proto][index in metricTypes, then other]
	answers    [numSources]prometheus.Counter
	refused    *prometheus.CounterVec
	rateLim    prometheus.Counter
	upFail     *prometheus.CounterVec
	malformed  prometheus.Counter
	panics     prometheus.Counter
	inflight   prometheus.Gauge
	cacheItems prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, cacheLen func() float64) *metrics {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_dns_queries_total", Help: "DNS queries received, by transport and type.",
	}, []string{"proto", "qtype"})
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_dns_answers_total", Help: "DNS answers sent, by where they came from.",
	}, []string{"source"})
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_dns_refused_total", Help: "DNS queries answered REFUSED, by reason.",
		}, []string{"reason"}),
		rateLim: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_dns_rate_limited_total", Help: "DNS queries dropped (UDP) or refused (TCP) over a client's rate limit.",
		}),
		upFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_dns_upstream_failures_total", Help: "Failed exchanges with an upstream resolver.",
		}, []string{"upstream"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_dns_malformed_total", Help: "DNS packets that could not be parsed (dropped or FORMERR).",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_dns_panics_total", Help: "Packets whose handling panicked (recovered, dropped): a bug.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_dns_upstream_inflight", Help: "Upstream queries in flight.",
		}),
		cacheItems: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_dns_cache_entries", Help: "Upstream answers in the cache.",
		}, cacheLen),
	}
	for p, pn := range []string{"udp", "tcp"} {
		for _, t := range metricTypes {
			m.queries[p] = append(m.queries[p], queries.WithLabelValues(pn, dns.TypeToString[t]))
		}
		m.queries[p] = append(m.queries[p], queries.WithLabelValues(pn, "other"))
	}
	for i, n := range sourceNames {
		m.answers[i] = answers.WithLabelValues(n)
	}
	for _, r := range []string{refusedNetwork, refusedUnknown, refusedOverload, refusedOpcode, refusedClass} {
		m.refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(queries, answers, m.refused, m.rateLim, m.upFail, m.malformed, m.panics, m.inflight, m.cacheItems)
	}
	return m
}

func (m *metrics) query(proto int, qtype uint16) {
	c := m.queries[proto]
	for i, t := range metricTypes {
		if t == qtype {
			c[i].Inc()
			return
		}
	}
	c[len(c)-1].Inc()
}
