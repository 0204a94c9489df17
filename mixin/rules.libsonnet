// Recording rules shared by the alerts and the dashboards.
// Names follow level:metric:operations (https://prometheus.io/docs/practices/rules/).
local util = import 'lib/util.libsonnet';
{
  prometheusRules+:: {
    local c = $._config,
    local v = c { cl: c.clusterLabel },
    local etcdBy(extra) = util.by([c.clusterLabel, 'job', 'instance'] + extra),
    groups+: [
      {
        name: 'etcd-monitor.rules',
        rules: [
          {
            // The quota a member runs with; etcd 3.5 does not report it, so its default stands in.
            record: 'cluster_member:etcd_monitor_db_quota:bytes',
            expr: |||
              etcd_monitor_member_db_quota_bytes{%(exporterSelector)s} > 0
              or
              etcd_monitor_member_db_size_bytes{%(exporterSelector)s} * 0 + %(defaultQuotaBytes)d
            ||| % c,
          },
          {
            record: 'cluster_member:etcd_monitor_db_quota_usage:ratio',
            expr: |||
              etcd_monitor_member_db_size_bytes{%(exporterSelector)s}
              / cluster_member:etcd_monitor_db_quota:bytes{%(exporterSelector)s}
            ||| % c,
          },
          {
            // Share of the database file that defragmentation would give back.
            record: 'cluster_member:etcd_monitor_db_fragmentation:ratio',
            expr: |||
              (
                etcd_monitor_member_db_size_bytes{%(exporterSelector)s}
                - etcd_monitor_member_db_size_in_use_bytes{%(exporterSelector)s}
              )
              / (etcd_monitor_member_db_size_bytes{%(exporterSelector)s} > 0)
            ||| % c,
          },
          {
            record: 'cluster_member:etcd_monitor_db_fragmentation:bytes',
            expr: |||
              etcd_monitor_member_db_size_bytes{%(exporterSelector)s}
              - etcd_monitor_member_db_size_in_use_bytes{%(exporterSelector)s}
            ||| % c,
          },
          {
            // Entries the cluster has committed (highest committed index any member reports)
            // that this member has not applied yet: apply backlog plus replication lag.
            record: 'cluster_member:etcd_monitor_raft_apply_lag:sub',
            expr: |||
              max by (%(cl)s) (etcd_monitor_member_raft_index{%(exporterSelector)s})
              - on (%(cl)s) group_right ()
              etcd_monitor_member_raft_applied_index{%(exporterSelector)s}
            ||| % v,
          },
        ] + [
          {
            // The exporter keeps no histogram: percentiles of its probe come from the samples
            // Prometheus stored (one per scrape).
            record: 'cluster_member_probe:etcd_monitor_probe_duration_seconds:quantile_over_time',
            expr: 'quantile_over_time(%(q)s, etcd_monitor_member_probe_duration_seconds{%(exporterSelector)s}[%(probeWindow)s])' % (c { q: q }),
            labels: { quantile: q },
          }
          for q in ['0.5', '0.95', '0.99']
        ],
      },
      {
        name: 'etcd.rules',
        rules: [
          {
            record: 'cluster_instance:%s:histogram_quantile' % h.metric,
            expr: 'histogram_quantile(0.99, sum by (%s) (rate(%s_bucket{%s}[%s])))'
                  % [etcdBy(h.extra + ['le']), h.metric, c.etcdSelector, c.rateWindow],
            labels: { quantile: '0.99' },
          }
          for h in [
            { metric: 'etcd_disk_wal_fsync_duration_seconds', extra: [] },
            { metric: 'etcd_disk_backend_commit_duration_seconds', extra: [] },
            { metric: 'etcd_network_peer_round_trip_time_seconds', extra: ['To'] },
          ]
        ],
      },
    ],
  },
}
