package authsvc

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/protocol/errcode"
)

// metrics are the auth-specific series; request counts and latencies per
// subject come from libs/rpc (parley_rpc_*{service="auth"}).
type metrics struct {
	registrations *prometheus.CounterVec
	logins        *prometheus.CounterVec
	resumes       *prometheus.CounterVec
	verifies      *prometheus.CounterVec
	devices       *prometheus.CounterVec
	hashSeconds   *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_auth_registrations_total",
			Help: "Registration attempts by result (ok or a wire error code name).",
		}, []string{"result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_auth_logins_total",
			Help: "Login attempts by result (ok, bad_credentials, rate_limited, ...).",
		}, []string{"result"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_auth_resumes_total",
			Help: "Session resumes by result (ok, token_expired, session_revoked, ...).",
		}, []string{"result"}),
		verifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_auth_verifies_total",
			Help: "Token verifications (HTTP requests from gateways) by result (ok, token_expired, session_revoked, ...).",
		}, []string{"result"}),
		devices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_auth_device_registrations_total",
			Help: "Device key registrations (first ones and renames) by result (ok, invalid_argument, ...).",
		}, []string{"result"}),
		hashSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parley_auth_password_hash_seconds",
			Help: "Time to compute one argon2id hash (op=hash for new passwords, verify for logins), excluding the wait for a hashing slot.",
			// 1ms .. ~4s: tests use tiny parameters, production ~50ms.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 13),
		}, []string{"op"}),
	}
	for _, c := range []prometheus.Collector{m.registrations, m.logins, m.resumes, m.verifies, m.devices, m.hashSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeHash(op string, d time.Duration) {
	m.hashSeconds.WithLabelValues(op).Observe(d.Seconds())
}

// result is the metrics label for a handler outcome.
func result(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ToLower(errcode.ShortName(errcode.Code(err)))
}
