package parley

// SetWhoPageLimit lets tests make Who walk several small pages.
func SetWhoPageLimit(n uint32) (restore func()) {
	old := whoPageLimit
	whoPageLimit = n
	return func() { whoPageLimit = old }
}
