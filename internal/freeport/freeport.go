// Package freeport hands out loopback TCP ports for servers that must know their address before
// they listen: etcd's peer URLs go into every member's initial cluster, Prometheus and Mimir take
// their listen address as a flag.
//
// A port found by binding 127.0.0.1:0 comes from the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999 by default), the range every outgoing connection
// draws its source port from. Between closing that probe listener and the server binding the
// port, any client in any process may take it ("bind: address already in use", seen in CI under
// load). Ports here come from below the ephemeral range, where the kernel never picks source
// ports, at random so that test binaries running in parallel rarely try the same one, checked
// free by binding, and never handed out twice by one process.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the first port handed out: below it live well-known and registered services'
// defaults (etcd 2379, Prometheus 9090, ...) that a developer's machine may be running.
const lowest = 10000

// attempts bounds the search; with the range mostly free, a handful of draws suffice.
const attempts = 1000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// EphemeralLow is the first port of the kernel's ephemeral range (32768 when it cannot be read).
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowest {
		return 32768
	}
	return lo
}

// Get returns n distinct ports, each free on 127.0.0.1 a moment ago and below the ephemeral range.
func Get(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	top := EphemeralLow()
	if top <= lowest {
		return nil, fmt.Errorf("freeport: no ports between %d and the ephemeral range at %d", lowest, top)
	}
	ports := make([]int, 0, n)
	for try := 0; len(ports) < n; try++ {
		if try >= attempts*n {
			return nil, errors.New("freeport: no free loopback port found below the ephemeral range")
		}
		p := lowest + rand.IntN(top-lowest)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// Take is Get for tests: it fails the test when no port is found.
func Take(t testing.TB, n int) []int {
	t.Helper()
	ports, err := Get(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
