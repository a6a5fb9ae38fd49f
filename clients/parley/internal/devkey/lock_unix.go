//go:build unix

package devkey

import (
	"os"
	"syscall"
)

// lockPath takes an exclusive advisory lock on the file at path (created
// if missing), waiting for other processes to release it. The kernel
// releases it when the process dies, so a crash never leaves it held.
func lockPath(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}
