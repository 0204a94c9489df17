package etcdtest

import (
	"net"
	"strconv"
	"testing"

	"github.com/etcd-monitor/etcd-monitor/internal/freeport"
)

// Ports from the kernel's ephemeral range can be taken as a source port by any outgoing
// connection between the probe and etcd's bind; CI saw "address already in use" from that.
func TestFreePortStaysBelowTheEphemeralRange(t *testing.T) {
	low := freeport.EphemeralLow()
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if p >= low {
			t.Fatalf("FreePort gave %d, inside the ephemeral range starting at %d", p, low)
		}
		if seen[p] {
			t.Fatalf("FreePort gave %d twice", p)
		}
		seen[p] = true
	}
	for p := range seen {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d handed out but not bindable: %v", p, err)
		}
		l.Close()
	}
}
