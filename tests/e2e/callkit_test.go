package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// What the call tests share beyond testenv's audio kit (Mouth, Ear,
// Listen, RequireHeard): waiting for call events, and reading metrics.

// ringing waits for c's next ringing call.
func ringing(t *testing.T, c *parley.Client) parley.Call {
	t.Helper()
	ev := waitEvent(t, c, 15*time.Second, "a ringing call", func(ev parley.Event) bool {
		_, ok := ev.(parley.CallRingingEvent)
		return ok
	})
	return ev.(parley.CallRingingEvent).Call
}

// onTransport waits until s carries its media over transport.
func onTransport(t *testing.T, s *parley.CallSession, transport string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "media over "+transport, func() bool { return s.Stats().Transport == transport })
}

// callEnded waits for c's CallEndedEvent of call id and returns it.
func callEnded(t *testing.T, c *parley.Client, id string, within time.Duration) parley.Call {
	t.Helper()
	ev := waitEvent(t, c, within, "the call's end", func(ev parley.Event) bool {
		e, ok := ev.(parley.CallEndedEvent)
		return ok && e.Call.ID == id
	})
	return ev.(parley.CallEndedEvent).Call
}

// metric reads the sum of a Prometheus counter or gauge (every series of
// name whose labels contain each of labels, e.g. `reason="auth"`) from an
// admin port's /metrics.
func metric(t *testing.T, admin, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
