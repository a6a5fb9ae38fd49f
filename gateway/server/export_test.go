package server

import "time"

// SetMediaStreamLimits shortens the media plane's stream idle limit and
// roster grace (callmedia.Plane.SetStreamLimits) for a test; a value <= 0
// keeps the current one.
func SetMediaStreamLimits(s *Server, idle, grace time.Duration) {
	s.media.SetStreamLimits(idle, grace)
}
