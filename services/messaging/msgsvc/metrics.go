package msgsvc

import "github.com/prometheus/client_golang/prometheus"

// metrics are messaging's own series; request counts and latencies per
// subject come from libs/rpc (parley_rpc_*{service="messaging"}).
type metrics struct {
	stored     *prometheus.CounterVec
	files      *prometheus.CounterVec
	duplicates prometheus.Counter
	conflicts  prometheus.Counter
	delivered  prometheus.Counter
	limited    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_messaging_messages_stored_total",
			Help: "Messages stored by this replica, by conversation kind (room, direct, group; system messages included).",
		}, []string{"kind"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_messaging_file_messages_stored_total",
			Help: "File offers stored as messages by this replica, by conversation kind (direct, group); also counted in messages_stored_total.",
		}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messaging_duplicate_sends_total",
			Help: "Sends recognised by client_key as re-sends of a stored message (nothing new stored).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messaging_seq_conflicts_total",
			Help: "Appends retried because another replica appended to the same conversation first.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messaging_events_published_total",
			Help: "MessageEvents published for live delivery (one per user subject or room).",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_messaging_limited_total",
			Help: "Requests refused by a per-user limit, by limit (send, friend_request, group_create, invite, lookup, typing: RATE_LIMITED; groups, pending_invites: QUOTA_EXCEEDED).",
		}, []string{"limit"}),
	}
	for _, c := range []prometheus.Collector{m.stored, m.files, m.duplicates, m.conflicts, m.delivered, m.limited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
