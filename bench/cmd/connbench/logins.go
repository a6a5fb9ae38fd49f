package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/clients/parley"
)

// loginRun is one concurrency level of the logins scenario.
type loginRun struct {
	concurrency int
	logins      int
	errors      int
	firstErr    error
	elapsed     time.Duration
	p50, p99    time.Duration
	authCPU     float64 // auth's CPU seconds per wall second
	gatewayCPU  float64
}

// loginResult is the logins scenario.
type loginResult struct {
	users    int
	regRate  float64 // registrations/s with the default parameters
	regFail  int
	runs     []loginRun
	err      error
	argonMsg string
}

// runLogins measures password logins through a gateway with the SDK: each
// worker holds one connection and loops Login, Logout (the connection
// stays open and unauthenticated, ready for the next Login). Only the Login
// round trip is timed; logins/s counts logins over the whole run.
func runLogins(ctx context.Context, c *cluster, users int, levels []int, d time.Duration, logf func(string, ...any)) *loginResult {
	r := &loginResult{users: users}
	g, err := c.startGateway(ctx, "logins-gw1", false)
	if err != nil {
		r.err = err
		return r
	}
	defer g.Stop(15 * time.Second)

	reg := registerUsers(ctx, g.tcp, "login", users, 2, nil)
	if reg.ok == 0 {
		r.err = fmt.Errorf("no login user registered: %v", reg.firstErr)
		return r
	}
	r.regRate = float64(reg.ok) / reg.elapsed.Seconds()
	r.regFail = reg.fail
	var names []string
	for i, t := range reg.tokens {
		if t != "" {
			names = append(names, fmt.Sprintf("login%06d", i))
		}
	}
	logf("logins: %d users registered with the default argon2id parameters (%.1f/s)", len(names), r.regRate)

	for _, n := range levels {
		run, err := loginLevel(ctx, c, g, names, n, d)
		if err != nil {
			r.err = err
			return r
		}
		logf("logins: concurrency %d: %.1f logins/s, p50 %s, p99 %s, auth CPU %.2f cores",
			n, float64(run.logins)/run.elapsed.Seconds(), run.p50, run.p99, run.authCPU)
		r.runs = append(r.runs, run)
	}
	return r
}

func loginLevel(ctx context.Context, c *cluster, g *gateway, names []string, n int, d time.Duration) (loginRun, error) {
	run := loginRun{concurrency: n}
	clients := make([]*parley.Client, n)
	for i := range clients {
		cl, err := parley.Dial(ctx, g.tcp, parley.WithPresenceFeed(false), parley.WithDevice("connbench-login"))
		if err != nil {
			return run, err
		}
		defer cl.Close()
		clients[i] = cl
	}
	var (
		mu   sync.Mutex // guards lats, run.errors, run.firstErr
		lats []time.Duration
		wg   sync.WaitGroup
	)
	authCPU0, gwCPU0 := child.CPUSeconds(strconv.Itoa(c.auth.PID())), child.CPUSeconds(strconv.Itoa(g.PID()))
	start := time.Now()
	deadline := start.Add(d)
	for w, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline) && ctx.Err() == nil; i += n {
				name := names[i%len(names)]
				t0 := time.Now()
				_, err := cl.Login(ctx, name, benchPassword)
				lat := time.Since(t0)
				if err == nil {
					err = cl.Logout(ctx)
				}
				mu.Lock()
				if err != nil {
					run.errors++
					if run.firstErr == nil {
						run.firstErr = err
					}
				} else {
					lats = append(lats, lat)
				}
				mu.Unlock()
				if err != nil && errors.Is(err, parley.ErrClosed) {
					return
				}
			}
		}()
	}
	wg.Wait()
	run.elapsed = time.Since(start)
	run.authCPU = (child.CPUSeconds(strconv.Itoa(c.auth.PID())) - authCPU0) / run.elapsed.Seconds()
	run.gatewayCPU = (child.CPUSeconds(strconv.Itoa(g.PID())) - gwCPU0) / run.elapsed.Seconds()
	run.logins = len(lats)
	slices.Sort(lats)
	run.p50, run.p99 = percentile(lats, 0.50), percentile(lats, 0.99)
	return run, nil
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)].Round(100 * time.Microsecond)
}
