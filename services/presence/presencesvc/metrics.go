package presencesvc

import "github.com/prometheus/client_golang/prometheus"

// metrics are presence's own series (the rpc ones come from libs/rpc).
type metrics struct {
	online    prometheus.Gauge
	events    *prometheus.CounterVec
	swept     prometheus.Counter
	sweepErrs prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		online: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_presence_online_users",
			Help: "Users with at least one live connection, as last read from Redis (every replica reports the same global number).",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_presence_events_published_total",
			Help: "PresenceChange events published by this replica, by direction.",
		}, []string{"online"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_presence_gateways_swept_total",
			Help: "Gateways whose liveness expired and whose connections this replica removed.",
		}),
		sweepErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_presence_sweep_errors_total",
			Help: "Sweeps that failed (Redis unreachable).",
		}),
	}
	for _, c := range []prometheus.Collector{m.online, m.events, m.swept, m.sweepErrs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
