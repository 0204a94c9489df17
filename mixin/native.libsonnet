// The native fallback: for a cluster whose etcd-monitor series are absent (no exporter, or its
// scrapes failing), the symptoms etcd's own /metrics show still alert, under the names of the
// exporter's alerts (same runbooks, same Alertmanager routes and inhibitions). Each expression ends
// with `unless on (cluster) etcd_monitor_up`, so a cluster that has both sources is alerted once,
// from etcd-monitor's cross-member view.
local util = import 'lib/util.libsonnet';
{
  local c = $._config,
  local cl = c.clusterLabel,
  local cluster = '{{ $labels.%s }}' % cl,
  local instance = '{{ $labels.instance }}',
  local noExporter = 'unless on (%s) etcd_monitor_up{%s}' % [cl, c.exporterSelector],

  local alert(name, severity, forDuration, expr, summary, description) = {
    alert: name,
    expr: '%s\n%s\n' % [std.rstripChars(expr, '\n'), noExporter],
    labels: { severity: severity, source: 'etcd' },
    annotations: {
      summary: summary,
      description: description + ' (From etcd\'s own metrics: etcd-monitor has no series for this cluster.)',
      runbook_url: '%s#%s' % [c.runbookURL, util.anchor(name)],
    },
  } + (if forDuration == '0m' || forDuration == '0s' then {} else { 'for': forDuration }),

  local rules = [
    alert(
      'EtcdMemberDown', 'warning', c.memberDownFor,
      'up{%(etcdSelector)s} == 0' % c,
      'An etcd member does not answer.',
      'Prometheus has not scraped member %s of cluster %s for %s.' % [instance, cluster, c.memberDownFor],
    ),
    alert(
      'EtcdNoLeader', 'critical', c.noLeaderFor,
      'etcd_server_has_leader{%(etcdSelector)s} == 0' % c,
      'An etcd member knows no leader.',
      'Member %s of cluster %s has known no leader for %s: it cannot serve writes or linearizable reads.' % [instance, cluster, c.noLeaderFor],
    ),
    alert(
      'EtcdFrequentLeaderChanges', 'warning', c.leaderChangesFor,
      'increase(etcd_server_leader_changes_seen_total{%(etcdSelector)s}[%(leaderChangesWindow)s]) > %(leaderChangesThreshold)s' % c,
      'etcd keeps electing leaders.',
      'Member %s of cluster %s saw {{ $value | humanize }} leader changes in the last %s: check disk and network latency of the members.' % [instance, cluster, c.leaderChangesWindow],
    ),
  ] + [
    alert(
      'EtcdDatabaseQuotaUsageHigh', t.severity, c.dbQuotaFor,
      |||
        etcd_mvcc_db_total_size_in_bytes{%(etcdSelector)s}
        / (etcd_server_quota_backend_bytes{%(etcdSelector)s} > 0)
        > %(ratio)s
      ||| % (c { ratio: util.num(t.ratio) }),
      'An etcd database is filling its quota.',
      'The database of member %s of cluster %s uses {{ $value | humanizePercentage }} of its quota (threshold %d%%); at 100%% etcd raises NOSPACE and refuses writes.' % [instance, cluster, std.round(t.ratio * 100)],
    )
    for t in [
      { severity: 'info', ratio: c.dbQuotaInfoRatio },
      { severity: 'warning', ratio: c.dbQuotaWarningRatio },
      { severity: 'critical', ratio: c.dbQuotaCriticalRatio },
    ]
  ],

  prometheusAlerts+:: {
    groups+: [{ name: 'etcd-native-fallback', rules: rules }],
  },
}
