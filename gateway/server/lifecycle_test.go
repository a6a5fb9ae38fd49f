package server_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestHeartbeatResync(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.PresenceHeartbeat = 50 * time.Millisecond })
	var want []string
	for _, name := range []string{"alice", "bob", "carol"} {
		c := dialTCP(t, e)
		s := c.login(name, &parleyv1.ClientOptions{SkipPresenceFeed: true})
		want = append(want, e.presence.connOf(s.GetSessionId()).GetConnId())
	}
	anon := dialTCP(t, e) // handshaken but not logged in: not counted
	anon.hello()
	slices.Sort(want)

	testenv.Eventually(t, 5*time.Second, "a heartbeat counting 3 connections", func() bool {
		hbs := e.presence.Heartbeats()
		return len(hbs) > 0 && hbs[len(hbs)-1].GetConns() == 3 && hbs[len(hbs)-1].GetGatewayId() == "gw-test"
	})
	if len(e.presence.Resyncs()) != 0 {
		t.Fatal("resync sent without being asked")
	}

	// Presence lost its state (say, Redis restarted) and asks for a resync.
	e.presence.setResync(true)
	testenv.Eventually(t, 5*time.Second, "a complete resync", func() bool {
		for _, r := range e.presence.Resyncs() {
			if r.GetLast() {
				return true
			}
		}
		return false
	})
	e.presence.setResync(false)
	rs := e.presence.Resyncs()
	id := rs[0].GetResyncId()
	var got []string
	for _, r := range rs {
		if r.GetResyncId() != id {
			break // a later resync
		}
		if r.GetGatewayId() != "gw-test" {
			t.Errorf("resync gateway id %q", r.GetGatewayId())
		}
		for _, c := range r.GetConns() {
			got = append(got, c.GetConnId())
			if c.GetUserId() == "" || c.GetSessionId() == "" || c.GetGatewayId() != "gw-test" {
				t.Errorf("incomplete conn record %v", c)
			}
		}
		if r.GetLast() {
			if r.GetChunks() != 1 {
				t.Errorf("last chunk says %d chunks, want 1", r.GetChunks())
			}
			break
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("resync conns %v, want %v", got, want)
	}
}

func TestShutdown(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	s := alice.login("alice", nil)
	alice.snapshot()
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()
	ws := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
	ws.hello()
	idle := dialTCP(t, e) // not even handshaken

	e.stop()
	alice.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	alice.expectClosed()
	ws.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	ws.expectClosed()
	idle.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	if !e.presence.Disconnected(connID) {
		t.Error("no PresenceDisconnect for alice by the end of shutdown")
	}
	if e.srv.Ready() == nil {
		t.Error("still ready after shutdown")
	}
}
