package presencesvc

import (
	"context"
	"time"
)

// sweepLoop removes gateways past their TTL every SweepInterval and refreshes
// the online-users gauge; it ends when ctx does. Every replica sweeps: the
// store removes each expired gateway in exactly one replica's script, and
// only that replica publishes the offline events.
func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sweepOnce(ctx)
	}
}

func (s *Service) sweepOnce(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.SweepInterval+5*time.Second)
	defer cancel()
	n, changes, err := s.store.Sweep(rctx)
	// Publish whatever was removed even when a later batch failed: those
	// removals are committed and no other replica will report them.
	s.publish(changes)
	if n > 0 {
		s.metrics.swept.Add(float64(n))
		s.log.Info("swept dead gateways", "gateways", n, "offline_users", len(changes))
	}
	if err == nil {
		err = s.refreshOnline(rctx)
	}
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		s.metrics.sweepErrs.Inc()
		if !s.sweepFail { // log transitions, not every tick of an outage
			s.log.Warn("presence sweep failed", "err", err)
		}
		s.sweepFail = true
	case s.sweepFail:
		s.log.Info("presence sweep recovered")
		s.sweepFail = false
	}
}

func (s *Service) refreshOnline(ctx context.Context) error {
	n, err := s.store.OnlineCount(ctx)
	if err != nil {
		return err
	}
	s.metrics.online.Set(float64(n))
	return nil
}
