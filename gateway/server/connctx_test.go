package server_test

import (
	"crypto/tls"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// The tests below give requests a minute (-request-timeout) and wait at most
// ten seconds for what they expect: a gateway that kept waiting for the
// service on behalf of a connection that has ended fails them.
const patientRequests = time.Minute

// TestRequestEndsWithConnection: a request still waiting for its service
// when its connection ends is abandoned there and then, whether the client
// closed the connection (over each transport) or the gateway did (its
// shutdown, the session kicked): the gateway stops waiting on its behalf,
// the connection is gone, and the late answer is sent to nobody.
func TestRequestEndsWithConnection(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	withTLS := func(c *server.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }
	tests := []struct {
		name   string
		kind   string // the transport, as the connections gauge labels it
		mutate func(*server.Config)
		dial   func(t *testing.T, e *env) *client
		end    func(t *testing.T, e *env, c *client)
	}{
		{"tcp client closes", "tcp", nil, func(t *testing.T, e *env) *client { return dialTCP(t, e) }, closeClient},
		{"tls client closes", "tls", withTLS, func(t *testing.T, e *env) *client {
			return dialTLS(t, e, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		}, closeClient},
		{"websocket client closes", "ws", nil, func(t *testing.T, e *env) *client {
			return dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
		}, closeClient},
		{"gateway shuts down", "tcp", nil, func(t *testing.T, e *env) *client { return dialTCP(t, e) }, func(t *testing.T, e *env, c *client) {
			e.stop() // fails the test if Run has not returned within 15 s
			c.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
			c.expectClosed()
		}},
		{"session kicked", "tcp", nil, func(t *testing.T, e *env) *client { return dialTCP(t, e) }, func(t *testing.T, e *env, c *client) {
			other := dialTCP(t, e)
			other.hello()
			// Resuming the session under takeover kicks its other
			// connections.
			e.auth.setTakeover(true)
			other.nextID++
			other.send(&parleyv1.Frame{RequestId: other.nextID, Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
				Token: "tok-alice", Options: &parleyv1.ClientOptions{SkipPresenceFeed: true}}}})
			c.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
			c.expectClosed()
			other.close() // the gauge below then counts no connection
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startGateway(t, func(c *server.Config) {
				c.RequestTimeout = patientRequests
				if tt.mutate != nil {
					tt.mutate(c)
				}
			})
			received := blockingResponder(t, e.nc, subject.MsgHistory)
			c := tt.dial(t, e)
			c.login("alice", &parleyv1.ClientOptions{SkipPresenceFeed: true})
			c.nextID++
			c.send(&parleyv1.Frame{RequestId: c.nextID, Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{Conversation: "room.lobby"}}})
			select {
			case <-received:
			case <-time.After(10 * time.Second):
				t.Fatal("the history request did not reach the service")
			}
			if n := e.metric("parley_gateway_requests_in_flight", nil); n != 1 {
				t.Fatalf("%v requests in flight, want 1", n)
			}

			tt.end(t, e, c)
			testenv.Eventually(t, 10*time.Second, "the request abandoned and the connection gone", func() bool {
				return e.metric("parley_gateway_requests_in_flight", nil) == 0 &&
					e.metric("parley_gateway_connections", map[string]string{"transport": tt.kind}) == 0
			})
		})
	}
}

func closeClient(_ *testing.T, _ *env, c *client) { c.close() }

// blockingResponder answers subj (in the messaging queue group) only when
// the test ends; each request it receives is signalled on the channel.
func blockingResponder(t *testing.T, nc *nats.Conn, subj string) <-chan struct{} {
	t.Helper()
	received := make(chan struct{}, 16)
	release := make(chan struct{})
	sub, err := nc.QueueSubscribe(subj, subject.QueueMessaging, func(m *nats.Msg) {
		received <- struct{}{}
		<-release
		_ = rpc.Respond(m, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(release)
		_ = sub.Unsubscribe()
	})
	return received
}

// TestFeedEndsWithConnection: a client that closes while its presence
// snapshot is still being read leaves nothing behind: the snapshot stops,
// the connection is gone and so is the gateway's subscription to the
// user's subjects.
func TestFeedEndsWithConnection(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.RequestTimeout = patientRequests })
	p := e.presence
	listed := make(chan struct{}, 16)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	p.mu.Lock()
	p.afterPage = func(int) {
		listed <- struct{}{}
		<-release
	}
	p.mu.Unlock()

	c := dialTCP(t, e)
	s := c.login("alice", nil) // with the presence feed
	select {
	case <-listed:
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot's first page was not asked for")
	}
	if n := e.userSubscriptions(t, s.GetUserId()); n != 1 {
		t.Fatalf("%d subscriptions to alice's subjects while she is connected, want 1", n)
	}

	c.close()
	testenv.Eventually(t, 10*time.Second, "the connection and alice's subscription gone", func() bool {
		return e.metric("parley_gateway_connections", nil) == 0 && e.userSubscriptions(t, s.GetUserId()) == 0
	})
}

// userSubscriptions counts the subscriptions on the NATS server that
// receive the user's session kicks: the gateway's per-user subscription.
func (e *env) userSubscriptions(t *testing.T, userID string) int {
	t.Helper()
	sz, err := e.ns.Subsz(&natsserver.SubszOptions{Subscriptions: true, Test: subject.SessionKick(userID)})
	if err != nil {
		t.Fatal(err)
	}
	return sz.Total
}
