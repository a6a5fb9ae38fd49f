// Package metrics defines the gateway's Prometheus metrics (parley_gateway_*).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's instruments. All are safe for concurrent use.
type Metrics struct {
	// Connections open now, by transport (tcp, tls, ws).
	Connections *prometheus.GaugeVec
	// Authenticated connections open now (with a session).
	Authenticated prometheus.Gauge
	// FramesIn counts frames received, by body type ("login", "ping", ...,
	// "invalid" for undecodable ones).
	FramesIn *prometheus.CounterVec
	// FramesOut counts frames queued for clients.
	FramesOut prometheus.Counter
	// ErrorsSent counts Error frames sent, by code ("BAD_FRAME", ...).
	ErrorsSent *prometheus.CounterVec
	// RequestDuration is the time to answer a request, by request type.
	RequestDuration *prometheus.HistogramVec
	// RequestsInFlight is the client requests being handled now.
	RequestsInFlight prometheus.Gauge
	// SlowConsumers counts connections closed because their send queue
	// overflowed.
	SlowConsumers prometheus.Counter
	// HandshakeFailures counts connections that ended before a Welcome, by
	// error code ("TLS": the TLS handshake failed or timed out).
	HandshakeFailures *prometheus.CounterVec
	// TLSRecords counts TLS handshakes that completed, by who protects the
	// connection's records ("gateway": the TLS 1.3 record layer of
	// gateway/internal/transport; "crypto_tls": TLS 1.2, -tls-records=go,
	// or a TLS 1.3 connection the gateway could not take over).
	TLSRecords *prometheus.CounterVec
	// Refused counts connections refused by a connection cap before their
	// first frame, by cap ("total", "per_addr", "unauth_per_addr").
	Refused *prometheus.CounterVec
	// RoomWrites counts room batches queued to every connection;
	// RoomBatched counts the room messages in them (their ratio is the
	// batching factor, see -room-batch).
	RoomWrites  prometheus.Counter
	RoomBatched prometheus.Counter
	// EventsShed counts sheddable events (message events of rooms and
	// groups, docs/protocol.md §11) not delivered to a connection, one per
	// event and connection, by reason: "queue" (the connection's queue
	// passed its high-water mark), "make_room" (dropped for a reply or
	// another frame that is never shed), "gateway_behind" (the room
	// fan-out fell behind: the oldest waiting events were dropped for
	// every connection).
	EventsShed *prometheus.CounterVec

	// MediaIn counts media packets received from clients, by transport
	// ("udp", "frame"), whatever became of them.
	MediaIn *prometheus.CounterVec
	// MediaOut counts media packets sent to clients, by transport.
	MediaOut *prometheus.CounterVec
	// MediaDrops counts media packets and bus messages dropped, by reason
	// (callmedia's drop reasons: "malformed", "unknown_stream", "auth",
	// "replay", ...).
	MediaDrops *prometheus.CounterVec
	// MediaStreams is the call participants' streams served here now.
	MediaStreams prometheus.Gauge
	// MediaPaths counts UDP path validations (docs/protocol.md §19.3): by
	// event, "challenged" (a path token sent to an address a stream's
	// packet came from, not yet proven) and "proven" (the address echoed
	// it and became the stream's media address).
	MediaPaths *prometheus.CounterVec

	// P2PRelayPackets and P2PRelayBytes count direct sessions' packets
	// relayed (gateway/internal/p2prelay), by direction: "up" from a
	// client to the bus, "down" from the bus to a client.
	P2PRelayPackets *prometheus.CounterVec
	P2PRelayBytes   *prometheus.CounterVec
	// P2PRelayDrops counts relayed packets dropped, by reason
	// ("unattached", "size", "rate", "queue", ...).
	P2PRelayDrops *prometheus.CounterVec
	// P2PRelaySessions is the direct sessions attached to connections
	// here now (one NATS subscription each).
	P2PRelaySessions prometheus.Gauge
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_gateway_connections",
			Help: "Client connections open now, by transport.",
		}, []string{"transport"}),
		Authenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_gateway_authenticated_connections",
			Help: "Client connections with a session.",
		}),
		FramesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_frames_received_total",
			Help: "Frames received from clients, by body type (invalid: undecodable).",
		}, []string{"type"}),
		FramesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gateway_frames_sent_total",
			Help: "Frames queued for clients.",
		}),
		ErrorsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_errors_sent_total",
			Help: "Error frames sent to clients, by code.",
		}, []string{"code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_gateway_request_duration_seconds",
			Help:    "Time to answer a client request, by request type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"request"}),
		RequestsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_gateway_requests_in_flight",
			Help: "Client requests being handled now (waiting for their service, or for room to queue the reply).",
		}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gateway_slow_consumer_disconnects_total",
			Help: "Connections closed because the client did not read fast enough.",
		}),
		HandshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_handshake_failures_total",
			Help: "Connections that ended before completing the handshake, by error code (TLS: the TLS handshake failed or took longer than -handshake-timeout).",
		}, []string{"code"}),
		TLSRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_tls_connections_total",
			Help: "TLS handshakes completed on the TCP listener, by who protects the records: gateway (its TLS 1.3 record layer, which keeps an idle connection small) or crypto_tls (TLS 1.2, -tls-records=go, or a TLS 1.3 connection it could not take over).",
		}, []string{"records"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_connections_refused_total",
			Help: "Connections refused by a cap (-max-conns, -max-conns-per-addr, -max-unauth-conns-per-addr), by cap.",
		}, []string{"cap"}),
		RoomWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gateway_room_batches_total",
			Help: "Room event batches queued to every connection (see -room-batch).",
		}),
		RoomBatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_gateway_room_messages_total",
			Help: "Room messages fanned out to the connections, in batches.",
		}),
		EventsShed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_events_shed_total",
			Help: "Room and group message events not delivered to a connection because it (or the gateway) was behind; clients read them from history. One per event and connection, by reason (queue, make_room, gateway_behind).",
		}, []string{"reason"}),
		MediaIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_media_packets_received_total",
			Help: "Media packets received from clients, by transport (udp, frame).",
		}, []string{"transport"}),
		MediaOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_media_packets_sent_total",
			Help: "Media packets sent to clients, by transport (udp, frame).",
		}, []string{"transport"}),
		MediaDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_media_drops_total",
			Help: "Media packets (and media bus messages) dropped, by reason.",
		}, []string{"reason"}),
		MediaStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_gateway_media_streams",
			Help: "Call participants' media streams served by this gateway now.",
		}),
		MediaPaths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_media_paths_total",
			Help: "UDP path validations of call media streams, by event (challenged: a path token sent to an unproven address; proven: the address echoed it and now gets the stream's media).",
		}, []string{"event"}),
		P2PRelayPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_p2p_relay_packets_total",
			Help: "Direct sessions' packets relayed, by direction (up: from a client, down: to a client).",
		}, []string{"direction"}),
		P2PRelayBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_p2p_relay_bytes_total",
			Help: "Bytes of direct sessions' packets relayed (the packets alone), by direction (up, down).",
		}, []string{"direction"}),
		P2PRelayDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_gateway_p2p_relay_drops_total",
			Help: "Direct sessions' packets dropped, by reason (unattached, size, rate, queue, disabled, bus).",
		}, []string{"reason"}),
		P2PRelaySessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_gateway_p2p_relay_sessions",
			Help: "Direct sessions attached to this gateway's connections now (their relay subscriptions).",
		}),
	}
	reg.MustRegister(m.MediaIn, m.MediaOut, m.MediaDrops, m.MediaStreams, m.MediaPaths)
	reg.MustRegister(m.P2PRelayPackets, m.P2PRelayBytes, m.P2PRelayDrops, m.P2PRelaySessions)
	reg.MustRegister(m.Connections, m.Authenticated, m.FramesIn, m.FramesOut, m.ErrorsSent,
		m.RequestDuration, m.RequestsInFlight, m.SlowConsumers, m.HandshakeFailures, m.TLSRecords, m.Refused, m.RoomWrites, m.RoomBatched, m.EventsShed)
	return m
}
