//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-monitor/etcd-monitor/mixin"
)

// Scenario 6 of the End-to-end issue: one member's peer traffic is cut while the exporter still
// reaches its client port. The member runs in a network namespace with two veth pairs to the
// host: one carries its peer traffic (the other members listen for peers on the host end's
// address), the other its client and metrics traffic. Taking the peer link down makes the
// kernel drop every peer packet in both directions; the client link stays up.
//
// The cut-off member loses its leader (has_leader 0) while it still answers, its raft index
// stalls while the others commit the test's writes, EtcdMemberPartitioned reaches the webhook
// through Alertmanager, and after the link comes back the member rejoins and catches up.
func TestExporterNetworkPartition(t *testing.T) {
	env := NewEnv(t)
	ns := env.NewNetns()
	peerLink := ns.AddVeth()
	clientLink := ns.AddVeth()

	files, err := mixin.Render(`{ partitionedFor: '3s' }`)
	if err != nil {
		t.Fatalf("rendering mixin: %v", err)
	}
	rules := env.WriteFile("etcd-monitor.rules.yml", files["alerts/etcd-monitor.rules.yml"])
	onHost := MemberOptions{PeerHost: peerLink.HostAddr}
	s := startStackIn(t, env, StackOptions{
		Etcd: EtcdOptions{PerMember: []MemberOptions{onHost, onHost, {
			Prefix:     ns.Exec(),
			ClientHost: clientLink.NsAddr,
			PeerHost:   peerLink.NsAddr,
		}}},
		Exporter:           true,
		AlertmanagerConfig: filepath.Join(RepoRoot(t), "alerts", "alertmanager.yml"),
		Prometheus:         PrometheusOptions{RuleFiles: []string{rules}},
	})
	p := s.Prometheus
	cut := s.Etcd.Members[2]
	healthy := s.Etcd.Members[0].Name + "|" + s.Etcd.Members[1].Name
	t.Logf("%s in namespace %s: client %s, peer %s (link %s)", cut.Name, ns.Name, cut.ClientURL, cut.PeerURL, peerLink.HostIf)

	p.WaitQuery(waitFor, `etcd_monitor_member_up{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_member_has_leader{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `up{job="etcd",instance="`+cut.MetricsAddr()+`"}`, AllEqual(1, 1))

	// Cut the peer link. The member keeps answering on its client link but knows no leader; if
	// it was the leader, check-quorum deposes it within an election timeout.
	peerLink.Down()
	healed := false
	defer func() {
		if !healed {
			peerLink.Up()
		}
	}()
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_has_leader", cut.Name), AllEqual(1, 0))
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_up", cut.Name), AllEqual(1, 1))
	p.WaitQuery(waitFor, `up{job="etcd",instance="`+cut.MetricsAddr()+`"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_probe_success{job="etcd-monitor",member=%q,probe="read_serializable"}`, cut.Name), AllEqual(1, 1))
	p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_probe_success{job="etcd-monitor",member=%q,probe="read_linearizable"}`, cut.Name), AllEqual(1, 0))
	// The other two keep a leader and the quorum.
	p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_has_leader{job="etcd-monitor",member=~%q}`, healthy), AllEqual(2, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_has_quorum{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_members_up{job="etcd-monitor"}`, AllEqual(1, 3))

	stalled := p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_raft_index", cut.Name), func(s []Sample) bool { return len(s) == 1 })[0].Value

	// Writes through a healthy member commit on the other two and never reach the cut-off one.
	const puts = 20
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Etcd.Members[0].ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	for i := range puts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/e2e-partition/%02d", i), "v")
		cancel()
		if err != nil {
			t.Fatalf("put %d through %s during the partition: %v", i, s.Etcd.Members[0].Name, err)
		}
	}
	ahead := p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_raft_index{job="etcd-monitor",member=~%q}`, healthy), func(s []Sample) bool {
		if len(s) != 2 {
			return false
		}
		for _, x := range s {
			if x.Value < stalled+puts {
				return false
			}
		}
		return true
	})
	// The cut-off member's index has not moved since the partition was seen (three more scrapes
	// of it at least, so this is not the value of a single stale scrape).
	p.WaitQuery(waitFor, fmt.Sprintf(`count_over_time(%s[4s])`, memberQuery("etcd_monitor_member_raft_index", cut.Name)), func(s []Sample) bool {
		return len(s) == 1 && s[0].Value >= 3
	})
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_raft_index", cut.Name), AllEqual(1, stalled))
	t.Logf("during the partition: %s stalled at raft index %v, others at %v", cut.Name, stalled, ahead)

	_, a := s.Alertmanager.Webhook.WaitAlertLabels(60*time.Second, "", "EtcdMemberPartitioned", "firing", map[string]string{"member": cut.Name})
	if a.Labels["cluster"] != ClusterLabel || a.Labels["severity"] != "warning" {
		t.Errorf("EtcdMemberPartitioned labels = %v", a.Labels)
	}
	for _, m := range s.Alertmanager.Webhook.Messages() {
		for _, x := range m.Alerts {
			if x.Labels["alertname"] == "EtcdMemberPartitioned" && x.Labels["member"] != cut.Name {
				t.Errorf("EtcdMemberPartitioned for a member that was not cut off: %v", x.Labels)
			}
		}
	}

	// Heal: the member finds the leader again, catches up with the writes, and the alert resolves.
	peerLink.Up()
	healed = true
	p.WaitQuery(waitFor, `etcd_monitor_member_has_leader{job="etcd-monitor"}`, AllEqual(3, 1))
	p.WaitQuery(waitFor, `etcd_monitor_cluster_leaders{job="etcd-monitor"}`, AllEqual(1, 1))
	p.WaitQuery(waitFor, fmt.Sprintf(`etcd_monitor_member_probe_success{job="etcd-monitor",member=%q}`, cut.Name), AllEqual(2, 1))
	p.WaitQuery(waitFor, memberQuery("etcd_monitor_member_raft_index", cut.Name), func(s []Sample) bool {
		return len(s) == 1 && s[0].Value >= stalled+puts
	})
	s.Alertmanager.Webhook.WaitAlertLabels(60*time.Second, "", "EtcdMemberPartitioned", "resolved", map[string]string{"member": cut.Name})
}
