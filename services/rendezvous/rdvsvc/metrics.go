package rdvsvc

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Reasons a STUN packet is dropped unanswered (label of
// parley_rdv_stun_dropped_total).
const (
	dropMalformed = "malformed"     // not a STUN message, or not a Binding request, or a bad FINGERPRINT
	dropLimited   = "rate_limited"  // its source (IPv4 address, IPv6 /64) sent more than -stun-rate
	dropBusy      = "busy"          // every registration worker busy, or the bucket not open yet
	dropStore     = "store"         // the registration's store work failed (the client retransmits)
	dropAmplify   = "amplification" // its answer would be over maxAmplification times its length
)

// metrics are the rendezvous's own series (the rpc ones come from libs/rpc).
type metrics struct {
	bindings, registrations prometheus.Counter // STUN requests answered with success
	// Children of parley_rdv_stun_dropped_total, resolved once: the
	// per-packet path must not look labels up.
	dropMalformed, dropLimited, dropBusy, dropStore, dropAmplify prometheus.Counter
	stunErrors                                                   *prometheus.CounterVec // by error code

	opened, accepted, intros prometheus.Counter
	closedBy                 *prometheus.CounterVec
	sessions                 prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	answered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_rdv_stun_answered_total",
		Help: "STUN Binding requests answered with success: plain bindings and session registrations.",
	}, []string{"kind"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_rdv_stun_dropped_total",
		Help: "STUN packets dropped unanswered, by reason (malformed, rate_limited, busy, store, amplification).",
	}, []string{"reason"})
	m := &metrics{
		bindings:      answered.WithLabelValues("binding"),
		registrations: answered.WithLabelValues("register"),
		dropMalformed: dropped.WithLabelValues(dropMalformed),
		dropLimited:   dropped.WithLabelValues(dropLimited),
		dropBusy:      dropped.WithLabelValues(dropBusy),
		dropStore:     dropped.WithLabelValues(dropStore),
		dropAmplify:   dropped.WithLabelValues(dropAmplify),
		stunErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rdv_stun_errors_total",
			Help: "STUN error responses sent, by code (400 bad request, 401 failed registration, 420 unknown attribute).",
		}, []string{"code"}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_rdv_sessions_opened_total",
			Help: "Direct sessions offered through this replica.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_rdv_sessions_accepted_total",
			Help: "Direct sessions accepted through this replica.",
		}),
		intros: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_rdv_intros_total",
			Help: "Introductions this replica published (each to both sides).",
		}),
		closedBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rdv_sessions_closed_total",
			Help: "Direct sessions this replica closed, by reason (closed, rejected, expired).",
		}, []string{"reason"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_rdv_sessions",
			Help: "Direct sessions in the store (offered or accepted), as this replica's watch sees them.",
		}),
	}
	for _, c := range []prometheus.Collector{answered, dropped, m.stunErrors, m.opened, m.accepted, m.intros, m.closedBy, m.sessions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// closed counts a session this replica closed.
func (m *metrics) closed(r parleyv1.P2PSession_CloseReason) {
	name := "closed"
	switch r {
	case reasonRejected:
		name = "rejected"
	case reasonExpired:
		name = "expired"
	}
	m.closedBy.WithLabelValues(name).Inc()
}

// stunError counts an error response.
func (m *metrics) stunError(code int) { m.stunErrors.WithLabelValues(strconv.Itoa(code)).Inc() }
