local g = import '../lib/dashboard.libsonnet';
local util = import '../lib/util.libsonnet';
{
  grafanaDashboards+:: {
    local c = $._config,
    local cl = c.clusterLabel,
    local sel = '%s="$cluster"' % cl,
    local t = g.target,
    local slos = [
      { name: 'availability', title: 'Availability', objective: c.sloAvailabilityObjective },
      { name: 'latency', title: 'Latency', objective: c.sloLatencyObjective },
    ],
    local record(slo, w) = 'cluster:etcd_monitor_slo_%s_errors:ratio_%s{%s}' % [slo, w, sel],
    local windows = std.set(std.flattenArrays([[b.long, b.short] for b in c.sloBurnRates])),
    local burnThresholds = [{ color: 'green', value: null }] + [
      { color: if b.severity == 'critical' then 'red' else 'orange', value: b.rate }
      for b in std.sort(c.sloBurnRates, function(b) b.rate)
    ],
    local budgetThresholds = [{ color: 'red', value: null }, { color: 'orange', value: 0 }, { color: 'green', value: 0.25 }],
    local percent(x) = util.num(x * 100) + '%',

    'etcd-slo.json': g.dashboard(
      'etcd / SLO',
      c.dashboardUIDPrefix + 'slo',
      'Service level objectives of one etcd cluster from etcd-monitor\'s probes: availability %s and linearizable reads within %s for %s of probes, over %s. See docs/mixin.md#service-level-objectives.'
      % [percent(c.sloAvailabilityObjective), util.ms(c.sloLatencyThresholdSeconds), percent(c.sloLatencyObjective), c.sloPeriod],
      c.dashboardTags,
      [
        g.datasourceVariable(),
        g.queryVariable('cluster', 'cluster', 'label_values(etcd_monitor_up{%s}, %s)' % [c.exporterSelector, cl]),
      ],
      [g.row('Error budget over %s' % c.sloPeriod)] + std.flattenArrays([
        [
          g.stat('%s budget remaining' % s.title,
                 'Share of the %s error budget (%s of the %s) left: 1 untouched, 0 spent, negative when the objective is missed.' % [s.name, percent(1 - s.objective), c.sloPeriod],
                 [t('cluster:etcd_monitor_slo_%s_budget_remaining:ratio{%s}' % [s.name, sel], instant=true)],
                 unit='percentunit', w=6, thresholds=budgetThresholds, colorMode='background'),
          g.stat('%s SLI' % s.title,
                 '%s over the %s, against the objective of %s.' % [s.title, c.sloPeriod, percent(s.objective)],
                 [t('1 - %s' % record(s.name, c.sloPeriod), instant=true)],
                 unit='percentunit', w=6,
                 thresholds=[{ color: 'red', value: null }, { color: 'green', value: s.objective }]),
        ]
        for s in slos
      ]) + [
        g.row('Burn rate'),
      ] + [
        g.timeseries('%s burn rate' % s.title,
                     'How many times faster than the objective allows the %s budget burns, per window. The alerts fire when both windows of a pair exceed its rate (drawn as thresholds): %s.'
                     % [s.name, std.join('; ', ['%s: %sx over %s and %s' % [b.severity, util.num(b.rate), b.long, b.short] for b in c.sloBurnRates])],
                     [t('%s / %s' % [record(s.name, w), util.num(1 - s.objective)], w) for w in windows],
                     min=0, w=12, thresholds=burnThresholds)
        for s in slos
      ] + [
        g.row('SLI over time'),
        g.timeseries('Availability',
                     'Share of good scrapes in each evaluation\'s sample window (quorum up and a linearizable read through at least one member; missing exporter data counts as bad), and the availability over 1h and 1d.',
                     [t('cluster:etcd_monitor_slo_availability_good:ratio{%s}' % sel, 'per evaluation'),
                      t('1 - %s' % record('availability', '1h'), '1h'),
                      t('1 - %s' % record('availability', '1d'), '1d')],
                     unit='percentunit', max=1, w=12,
                     thresholds=[{ color: 'red', value: null }, { color: 'transparent', value: c.sloAvailabilityObjective }]),
        g.timeseries('Reads within %s' % util.ms(c.sloLatencyThresholdSeconds),
                     'Share of linearizable probes answered within the threshold, over 5m, 1h and 1d.',
                     [t('1 - %s' % record('latency', w), w) for w in ['5m', '1h', '1d']],
                     unit='percentunit', max=1, w=12,
                     thresholds=[{ color: 'red', value: null }, { color: 'transparent', value: c.sloLatencyObjective }]),
        g.timeseries('Probes counted',
                     'Linearizable probes that succeeded and those within the threshold, per rule evaluation (one per member that answered).',
                     [t('cluster:etcd_monitor_slo_latency_probes:count{%s}' % sel, 'succeeded'),
                      t('cluster:etcd_monitor_slo_latency_probes_fast:count{%s}' % sel, 'within %s' % util.ms(c.sloLatencyThresholdSeconds))],
                     min=0, w=24),
      ],
      c,
    ),
  },
}
