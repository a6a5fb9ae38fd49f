package e2e

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// A gateway that does not run for longer than its idle timeout (stopped
// here; starved of CPU or paused by its host in life) must not close the
// clients that kept sending heartbeats meanwhile: their pings waited in
// the sockets, and the stall was the gateway's. Before the fix, every
// connection was closed IDLE_TIMEOUT the moment the gateway ran again (the
// expired deadlines fired before the sockets were polled), a reconnect
// storm out of one pause. A client that really sent nothing is still
// closed for idleness.
func TestGatewayStallKeepsLiveClients(t *testing.T) {
	c := newCluster(t, 0, clusterOpts{})
	g := c.addGatewayWith("gw-stall", func(g *gatewayProc) {
		g.env = []string{"PARLEY_IDLE_TIMEOUT=2s", "PARLEY_HEARTBEAT_INTERVAL=400ms", "PARLEY_LOG_LEVEL=debug"}
	})
	// The clients ping every 400 ms (the server's interval) but give the
	// server a minute of silence before they give up on it, and do not
	// reconnect: a closed connection stays closed and says why.
	live := []parley.Option{parley.WithReconnect(false), parley.WithHeartbeat(0, time.Minute)}
	// Over both kinds of transport: a stream (TCP) and WebSocket.
	alice, _ := registered(t, g.tcp, "alice", live...)
	bob, bs := registered(t, "ws://"+g.http, "bob", live...)
	// silent never pings: after the stall it is idle for real.
	silent, _ := registered(t, g.tcp, "silent", parley.WithReconnect(false), parley.WithHeartbeat(time.Hour, time.Hour))

	pause(t, g.proc)
	time.Sleep(4 * time.Second) // twice the idle timeout, pings queued in the sockets
	resume(t, g.proc)

	// silent's deadline passed long ago and nothing waits in its socket.
	deadline := time.Now().Add(10 * time.Second)
	for silent.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := silent.Err(); !errors.Is(err, parley.ErrIdleTimeout) {
		t.Fatalf("the client that sent nothing: %v, want IDLE_TIMEOUT", err)
	}
	// Well past the idle timeout after the resume, the pinging clients
	// are still connected and a message goes through.
	time.Sleep(3 * time.Second)
	for name, cl := range map[string]*parley.Client{"alice": alice, "bob": bob} {
		if err := cl.Err(); err != nil {
			t.Fatalf("%s was closed after the gateway's stall: %v\n%s", name, err, g.proc.out.String())
		}
	}
	sent, err := alice.SendTo(ctxT(t, 10*time.Second), bs.Username, "still here")
	if err != nil {
		t.Fatalf("send after the stall: %v", err)
	}
	waitEvent(t, bob, 10*time.Second, "alice's message", func(ev parley.Event) bool {
		m, ok := ev.(parley.MessageEvent)
		return ok && m.Message.ID == sent.ID
	})
}
