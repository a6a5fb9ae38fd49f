package authsvc_test

import (
	"testing"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/services/auth/authsvc"
)

// BenchmarkLogin measures password logins per second through NATS with the
// production (OWASP) argon2id parameters, as many in flight as the
// benchmark's parallelism allows. Hashing dominates: expect roughly
// GOMAXPROCS / (time of one hash) logins per second per replica.
func BenchmarkLogin(b *testing.B) {
	ns := testenv.NATS(b)
	startAuth(b, ns.ClientURL(), authsvc.DefaultConfig())
	nc := testenv.Connect(b, ns)
	mustRegister(b, nc, "bench", "benchmark password")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := login(nc, clientAddr, "bench", "benchmark password"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}
