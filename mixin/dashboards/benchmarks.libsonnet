local g = import '../lib/dashboard.libsonnet';
{
  grafanaDashboards+:: {
    local c = $._config,
    local cl = c.clusterLabel,
    // Results pushed by `etcd-monitor benchmark --pushgateway.url`; the cluster label comes from the
    // Pushgateway's scrape config (see docs/mixin.md).
    local b = '%s, %s="$cluster", workload=~"$workload"' % [c.benchmarkSelector, cl],
    local t = g.target,
    // Failed operations of each run over all gRPC codes; 0 when a run pushed no error series.
    local errors = '(sum without (instance, code) (etcd_benchmark_errors{%s}) or max without (instance) (etcd_benchmark_operations{%s}) * 0)' % [b, b],

    'etcd-benchmarks.json': g.dashboard(
      'etcd / Benchmarks',
      c.dashboardUIDPrefix + 'benchmarks',
      'Results of etcd-monitor benchmark runs pushed to a Pushgateway: throughput and latency percentiles per run, over time.',
      c.dashboardTags,
      [
        g.datasourceVariable(),
        g.queryVariable('cluster', 'cluster', 'label_values(etcd_monitor_up{%s}, %s)' % [c.exporterSelector, cl]),
        g.queryVariable('workload', 'workload', 'label_values(etcd_benchmark_operations{%s, %s="$cluster"}, workload)' % [c.benchmarkSelector, cl], multi=true, includeAll=true),
      ],
      [
        g.row('Latest runs'),
        g.table('Latest result per workload and run', 'The last pushed result of each run: operations, errors, throughput, p99 latency and when it last succeeded.',
                [
                  t('max without (instance) (etcd_benchmark_operations{%s})' % b, instant=true, format='table'),
                  t(errors, instant=true, format='table'),
                  t('max without (instance) (etcd_benchmark_throughput_ops_per_second{%s})' % b, instant=true, format='table'),
                  t('max without (instance) (etcd_benchmark_latency_seconds{%s, quantile="0.99"})' % b, instant=true, format='table'),
                  t('max without (instance) (etcd_benchmark_last_success_timestamp_seconds{%s}) * 1000' % b, instant=true, format='table'),
                ],
                exclude=['quantile'],
                rename={ 'Value #A': 'operations', 'Value #B': 'errors', 'Value #C': 'ops/s', 'Value #D': 'p99', 'Value #E': 'last success' },
                overrides=[
                  g.columnOverride('p99', { unit: 's' }),
                  g.columnOverride('last success', { unit: 'dateTimeAsIso' }),
                ]),

        g.row('Over time'),
        g.timeseries('Throughput', 'Operations per second of each run, as pushed.',
                     [t('max without (instance) (etcd_benchmark_throughput_ops_per_second{%s})' % b, '{{workload}} {{run}}')], unit='ops', min=0, points=true),
        g.timeseries('Latency p99', 'p99 latency of each run (from the scheduled start of each operation when a rate is set).',
                     [t('max without (instance) (etcd_benchmark_latency_seconds{%s, quantile="0.99"})' % b, '{{workload}} {{run}}')], unit='s', min=0, points=true),
        g.timeseries('Latency percentiles', 'Every pushed latency percentile of each run.',
                     [t('max without (instance) (etcd_benchmark_latency_seconds{%s})' % b, '{{workload}} {{run}} p{{quantile}}')], unit='s', min=0, points=true, w=24, legend='table'),
        g.timeseries('Errors', 'Failed operations per run (all gRPC codes), as a share of all operations.',
                     [t('%s / max without (instance) (etcd_benchmark_operations{%s} > 0)' % [errors, b], '{{workload}} {{run}}')], unit='percentunit', min=0, points=true),
        g.timeseries('Run duration', 'Wall-clock duration of each run.',
                     [t('max without (instance) (etcd_benchmark_duration_seconds{%s})' % b, '{{workload}} {{run}}')], unit='s', min=0, points=true),
      ],
      c,
    ),
  },
}
