package presencesvc

import (
	"context"
	"fmt"
	"time"
)

// readyCacheFor is how long a Redis PING result answers readiness checks, so
// frequent probes do not each cost a round trip.
const readyCacheFor = time.Second

// Ready reports whether this replica can serve: handlers subscribed, NATS
// connected and Redis answering PING (checked at most once a second). It
// is the /readyz check.
func (s *Service) Ready() error {
	if err := s.run.Ready(); err != nil {
		return err
	}
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	now := time.Now()
	if !s.readyAt.IsZero() && now.Sub(s.readyAt) < readyCacheFor {
		return s.readyErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s.readyErr = nil
	if err := s.store.Ping(ctx); err != nil {
		s.readyErr = fmt.Errorf("redis: %w", err)
	}
	s.readyAt = time.Now()
	return s.readyErr
}
