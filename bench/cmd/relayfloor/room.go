package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// roomBatch is how long posted messages collect before they are written to
// every member.
const roomBatch = 20 * time.Millisecond

// runRoomServer reads frames from any connection (a first byte 1 marks a
// sender, 0 a member) and writes every 20 ms what was posted meanwhile to
// every member, one write per member.
func runRoomServer(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var (
		mu      sync.Mutex
		pending []byte
		members []net.Conn
	)
	go func() {
		for range time.Tick(roomBatch) {
			mu.Lock()
			b, ms := pending, members
			pending = nil
			mu.Unlock()
			if len(b) == 0 {
				continue
			}
			for _, m := range ms {
				_, _ = m.Write(b)
			}
		}
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			r := bufio.NewReader(nc)
			kind, err := r.ReadByte()
			if err != nil {
				nc.Close()
				return
			}
			if kind == 0 {
				mu.Lock()
				members = append(members, nc)
				mu.Unlock()
				return
			}
			defer nc.Close()
			buf := make([]byte, 64<<10)
			for {
				if _, err := io.ReadFull(r, buf[:4]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(buf[:4]))
				if n < header || n > len(buf)-4 {
					return
				}
				if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
					return
				}
				mu.Lock()
				pending = append(pending, buf[:4+n]...)
				mu.Unlock()
			}
		}()
	}
}

func runRoomLoad(members int, rateList string, dur time.Duration, size int) error {
	addr, err := child.FreeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(self, "-serve", addr, "-room-serve")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Process.Kill()
	dial := func(kind byte) (net.Conn, error) {
		for i := 0; ; i++ {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				_, err = c.Write([]byte{kind})
				return c, err
			}
			if i > 100 {
				return nil, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := time.Now()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		got  atomic.Int64
		done sync.WaitGroup
	)
	for range members {
		c, err := dial(0)
		if err != nil {
			return err
		}
		go func() {
			r := bufio.NewReaderSize(c, 32<<10)
			buf := make([]byte, 64<<10)
			var mine []time.Duration
			for {
				if _, err := io.ReadFull(r, buf[:4]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(buf[:4]))
				if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
					return
				}
				mine = append(mine, time.Since(start)-time.Duration(binary.BigEndian.Uint64(buf[4:12])))
				got.Add(1)
				if r.Buffered() == 0 {
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
					mine = mine[:0]
				}
			}
		}()
	}
	const senders = 4
	conns := make([]net.Conn, senders)
	for i := range conns {
		if conns[i], err = dial(1); err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("relayfloor: room, %d members, %d senders, %d-byte texts, %v per level, writes every %v\n",
		members, senders, size, dur, roomBatch)
	fmt.Printf("%10s %12s %10s %10s %10s %8s %8s %8s\n", "posted/s", "deliveries/s", "p50", "p99", "max", "server", "loadgen", "machine")
	for _, f := range strings.Split(rateList, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		got.Store(0)
		cs, cl, cm, t0 := child.CPUSeconds(strconv.Itoa(srv.Process.Pid)), child.CPUSeconds("self"), child.MachineBusySeconds(), time.Now()
		interval := time.Duration(float64(time.Second) * senders / rate)
		for i, c := range conns {
			done.Add(1)
			go func() {
				defer done.Done()
				frame := make([]byte, 4+header+size)
				binary.BigEndian.PutUint32(frame, uint32(header+size))
				due := time.Now().Add(interval * time.Duration(i) / senders)
				for end := t0.Add(dur); due.Before(end); due = due.Add(interval) {
					time.Sleep(time.Until(due))
					binary.BigEndian.PutUint64(frame[4:], uint64(due.Sub(start)))
					if _, err := c.Write(frame); err != nil {
						return
					}
				}
			}()
		}
		done.Wait()
		time.Sleep(time.Second)
		wall := time.Since(t0).Seconds()
		mu.Lock()
		l := slices.Clone(lat)
		mu.Unlock()
		slices.Sort(l)
		q := func(p float64) time.Duration {
			if len(l) == 0 {
				return 0
			}
			return l[min(len(l)-1, int(p*float64(len(l))))]
		}
		fmt.Printf("%10.0f %12.0f %10s %10s %10s %8.2f %8.2f %8.2f\n", rate, float64(got.Load())/dur.Seconds(),
			q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(1).Round(10*time.Microsecond),
			(child.CPUSeconds(strconv.Itoa(srv.Process.Pid))-cs)/wall, (child.CPUSeconds("self")-cl)/wall,
			(child.MachineBusySeconds()-cm)/wall)
	}
	return nil
}
