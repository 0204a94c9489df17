package backup

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/etcd-monitor/etcd-monitor/internal/etcdtest"
)

// TestMain fails the package's tests when any goroutine is left running after them: a client to a
// member that a save or a verification did not close is a leak every cron run would repeat.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(etcdtest.Settled(m))
}
