package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/convid"
)

// benchPassword is every benchmark user's password.
const benchPassword = "messaging-benchmark-pw"

// account is a registered user. client is its connection when kept (the
// session lives on it), nil otherwise (then token resumes the session).
type account struct {
	name    string
	session *parley.Session
	client  *parley.Client
}

// register registers n users named prefix+number through the gateway
// addr(i) picks, parallel at a time. With keep, each user's connection
// stays open (logged in, presence feed off) and is returned; otherwise it
// is closed without logging out, so the token stays valid.
func register(ctx context.Context, addr func(i int) string, prefix string, n, parallel int, keep bool) ([]account, error) {
	out := make([]account, n)
	var (
		next     atomic.Int64
		mu       sync.Mutex // guards firstErr
		firstErr error
		wg       sync.WaitGroup
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				name := fmt.Sprintf("%s%05d", prefix, i)
				a, err := registerOne(ctx, addr(i), name, keep)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				out[i] = a
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		for _, a := range out {
			if a.client != nil {
				a.client.Close()
			}
		}
		return nil, firstErr
	}
	return out, nil
}

// registerOne registers one user, retrying a failed dial or lost
// connection a few times.
func registerOne(ctx context.Context, addr, name string, keep bool) (account, error) {
	var err error
	for attempt := range 3 {
		var a account
		if a, err = tryRegister(ctx, addr, name, keep); err == nil {
			return a, nil
		}
		var perr *parley.Error
		if errors.As(err, &perr) && !parley.Retryable(err) {
			break
		}
		if child.Sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond) != nil {
			break
		}
	}
	return account{}, fmt.Errorf("register %s: %w", name, err)
}

func tryRegister(ctx context.Context, addr, name string, keep bool) (account, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := parley.Dial(ctx, addr, parley.WithPresenceFeed(false), parley.WithDevice("msgbench"))
	if err != nil {
		return account{}, err
	}
	s, err := c.Register(ctx, name, benchPassword)
	if err != nil {
		c.Close()
		return account{}, err
	}
	a := account{name: name, session: s}
	if keep {
		a.client = c
	} else {
		c.Close()
	}
	return a, nil
}

// directID is the id of the private conversation of two users (distinct
// users auth issued: always a valid id).
func directID(a, b string) string {
	id, _ := convid.DM(a, b)
	return id.String()
}
