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
)

// benchPassword is every benchmark user's password (long enough, not on
// the common-password list, unrelated to the usernames).
const benchPassword = "idle-connection-benchmark"

// regResult is the outcome of registering users through the SDK.
type regResult struct {
	tokens   []string // one per user, index = user number; "" if it failed
	ok, fail int
	firstErr error
	elapsed  time.Duration
}

// registerUsers registers n users named prefix+number through the gateway
// at addr with the Go SDK, parallel at a time. Each user gets its own
// connection (a session lives on the connection it started on), closed
// without logging out so the token stays valid for connload's Resume.
func registerUsers(ctx context.Context, addr, prefix string, n, parallel int, progress func(done int)) regResult {
	res := regResult{tokens: make([]string, n)}
	var (
		next, done, failed atomic.Int64
		mu                 sync.Mutex // guards res.firstErr
		wg                 sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				tok, err := registerOne(ctx, addr, fmt.Sprintf("%s%06d", prefix, i))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
				}
				res.tokens[i] = tok
				if d := done.Add(1); progress != nil && d%10000 == 0 {
					progress(int(d))
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.fail = int(failed.Load())
	res.ok = int(done.Load()) - res.fail
	return res
}

// registerOne registers one user, retrying transient failures (a
// connection that could not be set up, a timeout) a few times.
func registerOne(ctx context.Context, addr, username string) (string, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var tok string
		tok, err = tryRegister(ctx, addr, username)
		if err == nil {
			return tok, nil
		}
		// A refusal by the server (other than busy or rate limiting) will
		// not change; a failed dial or a lost connection may.
		var perr *parley.Error
		if errors.As(err, &perr) && !parley.Retryable(err) {
			return "", fmt.Errorf("register %s: %w", username, err)
		}
		if child.Sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond) != nil {
			break
		}
	}
	return "", fmt.Errorf("register %s: %w", username, err)
}

func tryRegister(ctx context.Context, addr, username string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := parley.Dial(ctx, addr, parley.WithPresenceFeed(false), parley.WithReconnect(false),
		parley.WithDevice("connbench"))
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.Register(ctx, username, benchPassword)
	if err != nil {
		return "", err
	}
	return s.Token, nil
}
