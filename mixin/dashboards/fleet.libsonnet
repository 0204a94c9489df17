local g = import '../lib/dashboard.libsonnet';
{
  grafanaDashboards+:: {
    local c = $._config,
    local cl = c.clusterLabel,
    // Many clusters at once: the cluster variable is multi-select, every query takes its regex.
    local e = '%s, %s=~"$cluster"' % [c.exporterSelector, cl],
    local t = g.target,
    // 0 healthy, 1 degraded, 2 critical, as the status API's verdict (snapshot.Health): each part
    // carries its own `part` label so that `or` keeps them all and max takes the worst.
    local verdict = |||
      max by (%(cl)s) (
          label_replace(2 * (1 - etcd_monitor_up{%(e)s}), "part", "up", "", "")
        or label_replace(2 * (1 - etcd_monitor_cluster_has_quorum{%(e)s}), "part", "quorum", "", "")
        or label_replace(etcd_monitor_cluster_members{%(e)s} - etcd_monitor_cluster_members_up{%(e)s} > bool 0, "part", "down", "", "")
        or label_replace(etcd_monitor_cluster_leaders{%(e)s} > bool 1, "part", "leaders", "", "")
        or label_replace(max by (%(cl)s, job, instance) (etcd_monitor_member_alarm{%(e)s}), "part", "alarms", "", "")
      )
    ||| % { cl: cl, e: e },
    local verdictMapping = [{
      type: 'value',
      options: {
        '0': { text: 'healthy', color: 'green', index: 0 },
        '1': { text: 'degraded', color: 'orange', index: 1 },
        '2': { text: 'critical', color: 'red', index: 2 },
      },
    }],
    local firing = 'count by (%s) (ALERTS{alertstate="firing", %s=~"$cluster"})' % [cl, cl],

    'etcd-fleet.json': g.dashboard(
      'etcd / Fleet',
      c.dashboardUIDPrefix + 'fleet',
      'Every etcd cluster one etcd-monitor watches (--config.file) or many exporters report: one row per cluster with its verdict, members up, leader, quota used and alerts firing.',
      c.dashboardTags,
      [
        g.datasourceVariable(),
        g.queryVariable('cluster', 'cluster', 'label_values(etcd_monitor_up{%s}, %s)' % [c.exporterSelector, cl], multi=true, includeAll=true),
      ],
      [
        g.row('Fleet'),
        g.stat('Clusters', 'Clusters reporting etcd_monitor_up.',
               [t('count(etcd_monitor_up{%s})' % e, instant=true)], w=6),
        g.stat('Unreachable', 'Clusters where no member answered the last scrape.',
               [t('count(etcd_monitor_up{%s} == 0) or vector(0)' % e, instant=true)],
               thresholds=[{ color: 'green', value: null }, { color: 'red', value: 1 }], colorMode='background', w=6),
        g.stat('Without quorum', 'Reachable clusters whose voting members up do not make a quorum naming one leader.',
               [t('count(etcd_monitor_cluster_has_quorum{%s} == 0) or vector(0)' % e, instant=true)],
               thresholds=[{ color: 'green', value: null }, { color: 'red', value: 1 }], colorMode='background', w=6),
        g.stat('Alerts firing', 'Alerts firing for the selected clusters.',
               [t('sum(%s) or vector(0)' % firing, instant=true)],
               thresholds=[{ color: 'green', value: null }, { color: 'red', value: 1 }], colorMode='background', w=6),
        g.table('Clusters', 'One row per cluster: the verdict (critical: unreachable or no quorum; degraded: a member down, several leaders or an alarm), members up, the leader, the highest quota use of its members, alerts firing.',
                [
                  t(verdict, instant=true, format='table'),
                  t('max by (%s) (etcd_monitor_cluster_members_up{%s})' % [cl, e], instant=true, format='table'),
                  t('max by (%s) (etcd_monitor_cluster_members{%s})' % [cl, e], instant=true, format='table'),
                  t('max by (%s, member) (etcd_monitor_member_is_leader{%s} == 1)' % [cl, e], instant=true, format='table'),
                  t('max by (%s) (cluster_member:etcd_monitor_db_quota_usage:ratio{%s})' % [cl, e], instant=true, format='table'),
                  t('%s or 0 * max by (%s) (etcd_monitor_up{%s})' % [firing, cl, e], instant=true, format='table'),
                ],
                exclude=['Value #D'],
                rename={ 'Value #A': 'verdict', 'Value #B': 'members up', 'Value #C': 'members', member: 'leader', 'Value #E': 'quota used', 'Value #F': 'alerts firing' },
                overrides=[
                  g.columnOverride('verdict', { mappings: verdictMapping, custom: { cellOptions: { type: 'color-background' } } }),
                  g.columnOverride('quota used', { unit: 'percentunit' }),
                ], h=12),
        g.timeseries('Verdict over time', 'Each cluster\'s verdict: 0 healthy, 1 degraded, 2 critical.',
                     [t(verdict, '{{%s}}' % cl)], min=0, max=2, w=12),
        g.timeseries('Members up', 'Members that answered Status, per cluster.',
                     [t('max by (%s) (etcd_monitor_cluster_members_up{%s})' % [cl, e], '{{%s}}' % cl)], min=0, w=12),
      ],
      c,
    ),
  },
}
