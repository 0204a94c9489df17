// etcd-monitor mixin: alerts, recording rules and dashboards for etcd clusters monitored by
// etcd-monitor (and etcd's own /metrics). Follows the monitoring-mixins convention:
// _config, prometheusAlerts, prometheusRules, grafanaDashboards.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'alerts_backup.libsonnet') +
(import 'slo.libsonnet') +
(import 'native.libsonnet') +
(import 'rules.libsonnet') +
(import 'alertmanager.libsonnet') +
(import 'dashboards/overview.libsonnet') +
(import 'dashboards/slo.libsonnet') +
(import 'dashboards/member.libsonnet') +
(import 'dashboards/internals.libsonnet') +
(import 'dashboards/benchmarks.libsonnet') +
(import 'dashboards/fleet.libsonnet') +
// Keep last: it filters what the files above add.
(import 'profile.libsonnet')
