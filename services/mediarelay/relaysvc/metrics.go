package relaysvc

import "github.com/prometheus/client_golang/prometheus"

// Reasons an owner drops an Audio message (label of
// parley_relay_packets_dropped_total).
const (
	dropMalformed      = "malformed"       // not a mediabus message it can read
	dropNotParticipant = "not_participant" // no current participant has the stream
	dropMuted          = "muted"           // the participant muted
	dropNotLoudest     = "not_loudest"     // a big call, and not among the loudest
)

// metrics are the relay's own series (the rpc ones come from libs/rpc).
type metrics struct {
	active    prometheus.Gauge // calls this replica owns
	forwarded prometheus.Counter
	takeovers prometheus.Counter
	// Children of parley_relay_packets_dropped_total, resolved once: the
	// per-packet path must not look labels up.
	dropMalformed, dropNotParticipant, dropMuted, dropNotLoudest prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_relay_packets_dropped_total",
		Help: "Audio messages the owner did not forward, by reason (malformed, not_participant, muted, not_loudest).",
	}, []string{"reason"})
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_relay_calls_active",
			Help: "Calls whose media this replica forwards (it owns them).",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_relay_packets_forwarded_total",
			Help: "Audio messages the owner forwarded to the call's gateways.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_relay_takeovers_total",
			Help: "Calls this replica took over from a dead (or no) owner.",
		}),
		dropMalformed:      dropped.WithLabelValues(dropMalformed),
		dropNotParticipant: dropped.WithLabelValues(dropNotParticipant),
		dropMuted:          dropped.WithLabelValues(dropMuted),
		dropNotLoudest:     dropped.WithLabelValues(dropNotLoudest),
	}
	for _, c := range []prometheus.Collector{m.active, m.forwarded, m.takeovers, dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
