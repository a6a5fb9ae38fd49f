package relaysvc

import "context"

// SetTickWorkHook makes f run before each of a tick's per-call work, with
// the context bounding that work. Call before Run.
func SetTickWorkHook(s *Service, f func(ctx context.Context, id string)) { s.hooks.tickWork = f }

// SetBeforeSaveHook makes f run before every compare-and-set of a call
// record. Call before Run.
func SetBeforeSaveHook(s *Service, f func(ctx context.Context, id string)) { s.hooks.beforeSave = f }
