package targets

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// TestMain fails the package's tests when any goroutine is left running after them: a client,
// watcher or server that outlives its test is a leak the exporter would have too.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(etcdtest.Settled(m))
}
