// Alerts of the consistency collector: the members' HashKV compared at one revision
// (docs/consistency.md). Imported by alerts.libsonnet; a group of its own.
local util = import 'lib/util.libsonnet';
{
  local c = $._config,
  local cluster = '{{ $labels.%s }}' % c.clusterLabel,
  local member = '{{ $labels.member }} ({{ $labels.member_id }})',

  local alert(name, severity, forDuration, expr, summary, description) = {
    alert: name,
    expr: expr,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: '%s#%s' % [c.runbookURL, util.anchor(name)],
    },
  } + (if forDuration == '0m' || forDuration == '0s' then {} else { 'for': forDuration }),

  local consistencyAlerts = [
    // One alert per member in the minority: a member whose hash differs from the majority's at
    // the compared revision. A member that could not be compared has no series, so unknown never
    // fires this (EtcdConsistencyCheckStale covers checks that compare nobody).
    alert(
      'EtcdDataInconsistent', 'critical', c.dataInconsistentFor,
      'etcd_monitor_member_data_consistent{%(exporterSelector)s} == 0' % c,
      'An etcd member holds data that differs from the rest of its cluster.',
      'Member %s of cluster %s answered a HashKV that differs from the majority of its peers at the same revision and compact revision: its data has diverged, and clients reading from it (serializable reads, watches it serves) get other data than from the others.' % [member, cluster],
    ),
    // check_success is the last check's outcome, served unchanged between checks: 0 at every
    // evaluation for the whole window means no check compared the members in it. Only while at
    // least two voting members answer, as fewer cannot be compared (a single-member cluster).
    alert(
      'EtcdConsistencyCheckStale', 'warning', c.consistencyStaleFor,
      |||
        etcd_monitor_consistency_check_success{%(exporterSelector)s} == 0
        and etcd_monitor_cluster_voting_members_up{%(exporterSelector)s} >= 2
      ||| % c,
      'The members of an etcd cluster have not been compared for a long time.',
      'No consistency check of cluster %s has compared its members for %s although at least two voting members are up: divergence of their data would go unseen. etcd_monitor_consistency_unknown_total says why (by reason).' % [cluster, c.consistencyStaleFor],
    ),
  ],

  prometheusAlerts+:: {
    groups+: [
      { name: 'etcd-monitor-consistency', rules: consistencyAlerts },
    ],
  },
}
