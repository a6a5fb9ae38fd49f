package parley

import "time"

// CatchUpGrace is how long a gap waits for late live events.
func CatchUpGrace() time.Duration { return catchUpGrace }
