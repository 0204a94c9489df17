// Service level objectives from etcd-monitor's own series: availability (a quorum is up and a
// linearizable read succeeds through at least one member) and read latency (linearizable probes
// under a threshold), per cluster, with the multiwindow, multi-burn-rate alerts of the Google SRE
// workbook (chapter "Alerting on SLOs"). See docs/mixin.md#service-level-objectives.
local util = import 'lib/util.libsonnet';
{
  _config+:: {
    // Objectives over sloPeriod: the share of time the cluster is available, and the share of
    // linearizable probes answered within sloLatencyThresholdSeconds.
    sloPeriod: '30d',
    sloAvailabilityObjective: 0.999,
    sloLatencyObjective: 0.99,
    sloLatencyThresholdSeconds: 0.1,
    // Each rule evaluation records the share of good scrapes over this window; keep it at least
    // as long as the scrape and the evaluation intervals (a window with no scrape counts as bad).
    sloSampleWindow: '5m',
    // A cluster whose exporter series vanished (target gone from service discovery) still counts
    // as unavailable for this long after its last sample.
    sloMissingLookback: '1d',
    // (long window, short window, burn rate): the alert fires when the error ratio over both
    // windows exceeds rate * (1 - objective). The pairs of the workbook for a 30-day objective.
    sloBurnRates: [
      { severity: 'critical', long: '1h', short: '5m', rate: 14.4 },
      { severity: 'critical', long: '6h', short: '30m', rate: 6 },
      { severity: 'warning', long: '1d', short: '2h', rate: 3 },
      { severity: 'warning', long: '3d', short: '6h', rate: 1 },
    ],
    sloCriticalFor: '2m',
    sloWarningFor: '15m',
  },

  local c = $._config,
  local cl = c.clusterLabel,
  local v = c { cl: cl },

  // Seconds in a Prometheus duration of one unit ('5m', '1d'), to sort the windows.
  local seconds(d) =
    local unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[d[std.length(d) - 1]];
    std.parseInt(std.substr(d, 0, std.length(d) - 1)) * unit,
  // The alerts' windows, and those the period's ratio (5m) and the dashboard (5m, 1h, 1d) read.
  local windows = std.set(std.flattenArrays([[b.long, b.short] for b in c.sloBurnRates]) + ['5m', '1h', '1d'], seconds),
  local errorsRecord(slo, w) = 'cluster:etcd_monitor_slo_%s_errors:ratio_%s' % [slo, w],

  local slos = [
    {
      name: 'availability',
      title: 'Availability',
      objective: c.sloAvailabilityObjective,
      // 1 minus the mean of the per-evaluation good share.
      errors(w):: '1 - avg_over_time(cluster:etcd_monitor_slo_availability_good:ratio[%s])' % w,
      meaning: 'is unavailable (no quorum, no linearizable read through any member, or no exporter data)',
    },
    {
      name: 'latency',
      title: 'Latency',
      objective: c.sloLatencyObjective,
      errors(w):: |||
        1 - (
          sum_over_time(cluster:etcd_monitor_slo_latency_probes_fast:count[%(w)s])
          / sum_over_time(cluster:etcd_monitor_slo_latency_probes:count[%(w)s])
        )
      ||| % { w: w },
      meaning: 'answers linearizable reads slower than %s' % util.ms(c.sloLatencyThresholdSeconds),
    },
  ],

  local sliRules = [
    {
      // The share of this sample window's scrapes in which the cluster was available. A quorum
      // share and the best member's linearizable read share are combined with min (a read cannot
      // succeed without quorum, so they fail together). It counts only while the exporter's last
      // scrape succeeded (a failed or vanished scrape leaves etcd_monitor_up stale); otherwise, and
      // when the exporter answers without these series, a cluster whose probe collector reported
      // within sloMissingLookback records 0: missing data is never counted as good. An exporter
      // run without the probe collector records nothing (no SLO rather than a permanent page).
      record: 'cluster:etcd_monitor_slo_availability_good:ratio',
      expr: |||
        (
          (
            max by (%(cl)s) (avg_over_time(etcd_monitor_cluster_has_quorum{%(exporterSelector)s}[%(sloSampleWindow)s]))
            < on (%(cl)s)
            max by (%(cl)s) (avg_over_time(etcd_monitor_member_probe_success{%(exporterSelector)s, probe="read_linearizable"}[%(sloSampleWindow)s]))
          )
          or on (%(cl)s)
          max by (%(cl)s) (avg_over_time(etcd_monitor_member_probe_success{%(exporterSelector)s, probe="read_linearizable"}[%(sloSampleWindow)s]))
        )
        and on (%(cl)s)
        max by (%(cl)s) (etcd_monitor_up{%(exporterSelector)s})
        or on (%(cl)s)
        max by (%(cl)s) (last_over_time(etcd_monitor_scrape_collector_success{%(exporterSelector)s, collector="probe"}[%(sloMissingLookback)s])) * 0
      ||| % v,
    },
    {
      // One sample per member and rule evaluation: linearizable probes that succeeded...
      record: 'cluster:etcd_monitor_slo_latency_probes:count',
      expr: 'count by (%(cl)s) (etcd_monitor_member_probe_duration_seconds{%(exporterSelector)s, probe="read_linearizable"})' % v,
    },
    {
      // ...and those of them within the threshold (0, not absent, when none is).
      record: 'cluster:etcd_monitor_slo_latency_probes_fast:count',
      expr: |||
        count by (%(cl)s) (etcd_monitor_member_probe_duration_seconds{%(exporterSelector)s, probe="read_linearizable"} <= %(threshold)s)
        or on (%(cl)s)
        cluster:etcd_monitor_slo_latency_probes:count * 0
      ||| % (v { threshold: util.num(c.sloLatencyThresholdSeconds) }),
    },
  ],

  // The period's ratio is the mean of the 5-minute ratios, one every 5 minutes (8640 points for 30
  // days, not one per evaluation): the same figure for availability, and for latency as long as each
  // 5 minutes hold about as many probes as the next. Until the first 5-minute step has a ratio, all
  // the data there is lies within the last 5 minutes.
  local periodErrors(s) = 'avg_over_time(%(r)s[%(p)s:5m])\nor on (%(cl)s)\n%(r)s\n' % { r: errorsRecord(s.name, '5m'), p: c.sloPeriod, cl: cl },
  local ratioRules = [
    { record: errorsRecord(s.name, w), expr: s.errors(w) }
    for s in slos
    for w in windows
    if w != c.sloPeriod
  ] + [
    { record: errorsRecord(s.name, c.sloPeriod), expr: periodErrors(s) }
    for s in slos
  ] + [
    {
      // 1 is the whole budget left, 0 none, below 0 the objective is missed.
      record: 'cluster:etcd_monitor_slo_%s_budget_remaining:ratio' % s.name,
      expr: '1 - %s / %s' % [errorsRecord(s.name, c.sloPeriod), util.num(1 - s.objective)],
    }
    for s in slos
  ],

  local burnAlert(s, severity) =
    local pairs = [b for b in c.sloBurnRates if b.severity == severity];
    local cond(b) = |||
      (
        %(long)s / %(budget)s > %(rate)s
        and
        %(short)s / %(budget)s > %(rate)s
      )
    ||| % { long: errorsRecord(s.name, b.long), short: errorsRecord(s.name, b.short), budget: util.num(1 - s.objective), rate: util.num(b.rate) };
    local name = 'Etcd%sErrorBudgetBurn' % s.title;
    {
      alert: name,
      expr: std.join('or\n', [cond(b) for b in pairs]),
      'for': if severity == 'critical' then c.sloCriticalFor else c.sloWarningFor,
      labels: { severity: severity },
      annotations: {
        summary: 'An etcd cluster burns its %s error budget %s.' % [s.name, if severity == 'critical' then 'fast' else 'steadily'],
        description: 'Cluster {{ $labels.%s }} %s often enough to spend its %s error budget (objective %s%% over %s) {{ $value | printf "%%.1f" }} times as fast as allowed (thresholds: %s).'
                     % [cl, s.meaning, s.name, util.num(s.objective * 100), c.sloPeriod,
                        std.join('; ', ['%sx over %s and %s' % [util.num(b.rate), b.long, b.short] for b in pairs])],
        runbook_url: '%s#%s' % [c.runbookURL, util.anchor(name)],
      },
    },

  prometheusRules+:: {
    groups+: [
      { name: 'etcd-monitor-slo.rules', rules: sliRules + ratioRules },
    ],
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'etcd-monitor-slo',
        rules: [burnAlert(s, sev) for s in slos for sev in ['critical', 'warning']],
      },
    ],
  },
}
