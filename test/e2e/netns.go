//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Network namespaces joined to the host by veth pairs, for faults loopback cannot produce: a
// link that really drops every packet. Everything created carries the test binary's pid in its
// name so a later run can remove what a killed run (`go test -timeout`) left behind:
//
//	namespace       etcdmon-e2e-<pid>-<n>
//	veth, host end  e2em<pid in base 36, 5 chars><n><link>h   (ns end: ...n; 12 of the 15 chars allowed)
//
// Addresses are private, only on these interfaces: 10.213.<x>.1 (host end) and 10.213.<x>.2
// (namespace end), x derived from the pid, the namespace and the link.
const (
	netnsPrefix = "etcdmon-e2e-"
	vethPrefix  = "e2em"
	cmdTimeout  = 10 * time.Second
)

var (
	netnsSeq        atomic.Int32
	removeStaleNets sync.Once
)

// Netns is a network namespace created for one test; it is removed at cleanup, pass or fail,
// after the test's processes are killed.
type Netns struct {
	Name string
	env  *Env
	n    int
	mu   sync.Mutex
	veth []*Veth
}

// Veth is a veth pair between the host and a namespace, each end with its own address in a /24.
type Veth struct {
	HostIf, NsIf     string
	HostAddr, NsAddr string
	ns               *Netns
}

func ipCmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NewNetns creates a namespace with its loopback up. A machine that cannot (not root, no `ip`,
// namespaces not permitted) skips the test with the reason: it never passes without the fault.
func (e *Env) NewNetns() *Netns {
	e.t.Helper()
	if os.Geteuid() != 0 {
		e.t.Skipf("e2e: network namespaces need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		e.t.Skipf("e2e: network namespaces need iproute2's `ip`: %v", err)
	}
	removeStaleNets.Do(removeStaleNetns)
	// Names and addresses reuse the index modulo 4: the namespace of an earlier test of this
	// binary is gone by then, and one test never needs more than a few.
	n := int(netnsSeq.Add(1)-1) % 4
	ns := &Netns{Name: fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), n), env: e, n: n}
	if _, err := ipCmd("netns", "add", ns.Name); err != nil {
		e.t.Skipf("e2e: cannot create a network namespace: %v", err)
	}
	e.t.Cleanup(ns.remove)
	if _, err := ipCmd("netns", "exec", ns.Name, "ip", "link", "set", "lo", "up"); err != nil {
		e.t.Skipf("e2e: cannot run a command in a network namespace: %v", err)
	}
	return ns
}

// Exec is the command prefix that runs a program inside the namespace (`ip netns exec` execs
// it, so the pid is the program's).
func (ns *Netns) Exec() []string { return []string{"ip", "netns", "exec", ns.Name} }

// AddVeth creates a veth pair, moves one end into the namespace and brings both up with their
// addresses.
func (ns *Netns) AddVeth() *Veth {
	t := ns.env.t
	t.Helper()
	ns.mu.Lock()
	link := len(ns.veth)
	ns.mu.Unlock()
	if link > 1 {
		t.Fatalf("e2e: at most 2 veth pairs per namespace")
	}
	pid36 := strconv.FormatInt(int64(os.Getpid()), 36) // Linux pids are < 36^5
	base := fmt.Sprintf("%s%s%s%d%d", vethPrefix, strings.Repeat("0", max(0, 5-len(pid36))), pid36, ns.n, link)
	x := (os.Getpid()%32)*8 + ns.n*2 + link
	v := &Veth{
		HostIf: base + "h", NsIf: base + "n",
		HostAddr: fmt.Sprintf("10.213.%d.1", x), NsAddr: fmt.Sprintf("10.213.%d.2", x),
		ns: ns,
	}
	ns.mu.Lock()
	ns.veth = append(ns.veth, v)
	ns.mu.Unlock()
	for _, args := range [][]string{
		{"link", "add", v.HostIf, "type", "veth", "peer", "name", v.NsIf},
		{"link", "set", v.NsIf, "netns", ns.Name},
		{"addr", "add", v.HostAddr + "/24", "dev", v.HostIf},
		{"link", "set", v.HostIf, "up"},
		{"netns", "exec", ns.Name, "ip", "addr", "add", v.NsAddr + "/24", "dev", v.NsIf},
		{"netns", "exec", ns.Name, "ip", "link", "set", v.NsIf, "up"},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("e2e: %v", err)
		}
	}
	return v
}

// Down takes the host end down: the namespace end loses its carrier and the kernel drops every
// packet in both directions (the processes keep running and their sockets stay open).
func (v *Veth) Down() {
	v.ns.env.t.Helper()
	if _, err := ipCmd("link", "set", v.HostIf, "down"); err != nil {
		v.ns.env.t.Fatalf("e2e: %v", err)
	}
}

// Up brings the host end back.
func (v *Veth) Up() {
	v.ns.env.t.Helper()
	if _, err := ipCmd("link", "set", v.HostIf, "up"); err != nil {
		v.ns.env.t.Fatalf("e2e: %v", err)
	}
}

// remove kills the test's processes first (a namespace lives on while a process is in it),
// then deletes the veth pairs and the namespace, and checks that nothing is left.
func (ns *Netns) remove() {
	ns.env.killAll()
	ns.mu.Lock()
	veths := append([]*Veth(nil), ns.veth...)
	ns.mu.Unlock()
	for _, v := range veths {
		if linkExists(v.HostIf) {
			if _, err := ipCmd("link", "del", v.HostIf); err != nil {
				ns.env.t.Errorf("e2e: %v", err)
			}
		}
	}
	if _, err := ipCmd("netns", "del", ns.Name); err != nil {
		ns.env.t.Errorf("e2e: %v", err)
	}
	for _, v := range veths {
		if linkExists(v.HostIf) || linkExists(v.NsIf) {
			ns.env.t.Errorf("e2e: veth %s/%s still exists after cleanup", v.HostIf, v.NsIf)
		}
	}
}

func linkExists(name string) bool {
	_, err := ipCmd("link", "show", "dev", name)
	return err == nil
}

// removeStaleNetns deletes the namespaces and host-side veths of test binaries that are gone.
func removeStaleNetns() {
	gone := func(pid int) bool { return pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH }
	if out, err := ipCmd("netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], netnsPrefix) {
				continue
			}
			rest := strings.SplitN(strings.TrimPrefix(f[0], netnsPrefix), "-", 2)
			if pid, err := strconv.Atoi(rest[0]); err == nil && gone(pid) {
				_, _ = ipCmd("netns", "del", f[0])
			}
		}
	}
	if out, err := ipCmd("-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			// "12: e2em00ya2001h@if11: <BROADCAST,..."
			f := strings.SplitN(line, ": ", 3)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(f[1], "@")
			if !strings.HasPrefix(name, vethPrefix) || len(name) != len(vethPrefix)+8 {
				continue
			}
			pid36 := strings.TrimLeft(name[len(vethPrefix):len(vethPrefix)+5], "0")
			if pid, err := strconv.ParseInt(pid36, 36, 64); err == nil && gone(int(pid)) {
				_, _ = ipCmd("link", "del", name)
			}
		}
	}
}
