package parley_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// Connect, log in and print who is online.
func Example() {
	ctx := context.Background()
	c, err := parley.Dial(ctx, "tcp://127.0.0.1:7420")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sess, err := c.Login(ctx, "alice", os.Getenv("PARLEY_PASSWORD"))
	switch {
	case errors.Is(err, parley.ErrBadCredentials):
		log.Fatal("wrong username or password")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("logged in as", sess.Username)

	users, err := c.Who(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range users {
		fmt.Println(u.Username)
	}
}

// Follow presence: the first PresenceSnapshotEvent carries the whole list,
// then changes arrive one by one. Client.Online gives the same view at any
// moment. Reconnects are automatic and show up as events.
func ExampleClient_Events() {
	ctx := context.Background()
	c, err := parley.Dial(ctx, "tcp://127.0.0.1:7420")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx, "alice", os.Getenv("PARLEY_PASSWORD")); err != nil {
		log.Fatal(err)
	}
	for ev := range c.Events() {
		switch ev := ev.(type) {
		case parley.PresenceSnapshotEvent:
			fmt.Println(len(ev.Users), "online")
		case parley.UserOnlineEvent:
			fmt.Println(ev.User.Username, "came online")
		case parley.UserOfflineEvent:
			fmt.Println(ev.User.Username, "went offline")
		case parley.DisconnectedEvent:
			fmt.Println("connection lost, reconnecting:", ev.Err)
		case parley.ReconnectedEvent:
			fmt.Println("back, same session")
		case parley.SessionEndedEvent:
			fmt.Println("session over:", ev.Message) // the last event
		}
	}
}

// Keep the token of a session and resume it later without the password,
// for example in the next run of a program.
func ExampleClient_Resume() {
	ctx := context.Background()
	c, err := parley.Dial(ctx, "tcp://127.0.0.1:7420", parley.WithPresenceFeed(false))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	token := os.Getenv("PARLEY_TOKEN") // saved from an earlier Session.Token
	sess, err := c.Resume(ctx, token)
	if errors.Is(err, parley.ErrTokenExpired) || errors.Is(err, parley.ErrSessionRevoked) {
		log.Fatal("log in again")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("resumed", sess.Username, "- save the refreshed token:", sess.Token != "")
}

// Connect over TLS with a private CA, or over WebSocket.
func ExampleDial_tls() {
	pem, err := os.ReadFile("ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := parley.Dial(ctx, "tls://chat.example.org:7420", parley.WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("connected to", c.Welcome().Server)

	ws, err := parley.Dial(ctx, "wss://chat.example.org/v1/ws", parley.WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		log.Fatal(err)
	}
	defer ws.Close()
}

// Many connections from one machine, for a load test: spread them over
// loopback source addresses, and skip the presence feed.
func ExampleWithDialer() {
	ctx := context.Background()
	for i := range 10 {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%200))}}
		c, err := parley.Dial(ctx, "127.0.0.1:7420",
			parley.WithDialer(d),
			parley.WithPresenceFeed(false),
			parley.WithReconnect(false))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
	}
}

// Retry what is worth retrying, honouring the server's RetryAfter.
func ExampleRetryable() {
	ctx := context.Background()
	c, err := parley.Dial(ctx, "127.0.0.1:7420")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for {
		_, err := c.Login(ctx, "alice", os.Getenv("PARLEY_PASSWORD"))
		if err == nil || !parley.Retryable(err) {
			break
		}
		wait := time.Second
		var pe *parley.Error
		if errors.As(err, &pe) && pe.RetryAfter > 0 {
			wait = pe.RetryAfter
		}
		time.Sleep(wait)
	}
}
