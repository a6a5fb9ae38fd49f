package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// cpuLimit is a CPU cgroup whose processes together get at most a share of
// one core: -member-gateway-cpu puts the room members' gateways in one, so
// the gateway, not the message store, is what falls behind (the overload
// check). It needs root and a cgroup v1 cpu controller or cgroup v2.
type cpuLimit struct {
	dir string
}

const cfsPeriod = 100000 // µs

// newCPULimit creates the cgroup (named after this process) limited to
// cores (e.g. 0.05: 5 ms of CPU every 100 ms).
func newCPULimit(cores float64) (*cpuLimit, error) {
	if cores <= 0 {
		return nil, errors.New("cpu limit must be positive")
	}
	quota := strconv.Itoa(max(1000, int(cores*cfsPeriod)))
	name := fmt.Sprintf("parley-msgbench-%d", os.Getpid())
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		dir := filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w (needs root)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(quota+" "+strconv.Itoa(cfsPeriod)), 0o644); err != nil {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("cgroup v2 cpu.max: %w", err)
		}
		return &cpuLimit{dir: dir}, nil
	}
	dir := filepath.Join("/sys/fs/cgroup/cpu", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v1 cpu controller: %w (needs root)", err)
	}
	for file, v := range map[string]string{"cpu.cfs_period_us": strconv.Itoa(cfsPeriod), "cpu.cfs_quota_us": quota} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("cgroup v1 %s: %w", file, err)
		}
	}
	return &cpuLimit{dir: dir}, nil
}

// add moves process pid (and the threads it starts later) into the cgroup.
func (l *cpuLimit) add(pid int) error {
	return os.WriteFile(filepath.Join(l.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// remove deletes the cgroup once its processes have exited.
func (l *cpuLimit) remove() error { return os.Remove(l.dir) }
