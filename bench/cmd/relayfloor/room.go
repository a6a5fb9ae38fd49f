package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"
)

// roomBatch is how long posted messages collect before they are written to
// every member.
const roomBatch = 20 * time.Millisecond

// roomSenders is how many connections post into the room (msgbench's 4).
const roomSenders = 4

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
				n, err := readFrame(r, buf)
				if err != nil {
					return
				}
				mu.Lock()
				pending = append(pending, buf[:n]...)
				mu.Unlock()
			}
		}()
	}
}

// runRoomLoad measures the room relay with members connected.
func runRoomLoad(members int, rateList string, dur time.Duration, size int) error {
	srv, err := startServer("-room-serve")
	if err != nil {
		return err
	}
	defer srv.stop()
	lat := &latencies{start: time.Now()}
	for range members {
		c, err := srv.dial([]byte{0})
		if err != nil {
			return err
		}
		go func() {
			r := bufio.NewReaderSize(c, 32<<10)
			buf := make([]byte, 64<<10)
			var mine []time.Duration // added once per read, not per frame
			for {
				if _, err := readFrame(r, buf); err != nil {
					return
				}
				mine = append(mine, lat.of(buf))
				if r.Buffered() == 0 {
					lat.add(mine...)
					mine = mine[:0]
				}
			}
		}()
	}
	conns := make([]net.Conn, roomSenders)
	for i := range conns {
		if conns[i], err = srv.dial([]byte{1}); err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("relayfloor: room, %d members, %d senders, %d-byte texts, %v per level, writes every %v\n",
		members, roomSenders, size, dur, roomBatch)
	fmt.Printf("%10s %12s %10s %10s %10s %8s %8s %8s\n", "posted/s", "deliveries/s", "p50", "p99", "max", "server", "loadgen", "machine")
	meter := &cpuMeter{pids: []int{srv.cmd.Process.Pid}}
	return levels(rateList, func(rate float64) {
		lat.reset()
		meter.begin()
		openLoop(conns, rate, dur, lat.start, func(int) []byte {
			f := make([]byte, 4+header+size)
			binary.BigEndian.PutUint32(f, uint32(header+size))
			return f
		})
		time.Sleep(time.Second) // drain
		cpu := meter.end()
		q := lat.quantiles(0.50, 0.99, 1)
		fmt.Printf("%10.0f %12.0f %10s %10s %10s %8.2f %8.2f %8.2f\n", rate, float64(lat.n.Load())/dur.Seconds(),
			q[0], q[1], q[2], cpu[0], cpu[1], cpu[2])
	})
}
