// Maps each rendered file (relative to the repository root) to its content as data.
// render.go turns .yml/.yaml values into YAML and .json values into indented JSON.
// `overrides` (a jsonnet object, external code) is merged into _config.
local mixin = (import 'mixin.libsonnet') + { _config+:: std.extVar('overrides') };
// The exporter-only profile (see profile.libsonnet): its own files, dashboards with their own uids.
local exporterOnly = mixin + { _config+:: { etcdMetrics: false, dashboardUIDPrefix: super.dashboardUIDPrefix + 'exporter-only-' } };
local ruleGroups(m) = m.prometheusAlerts.groups + m.prometheusRules.groups;
local prometheusRule(name, m) = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: {
    name: name,
    labels: { 'app.kubernetes.io/name': 'etcd-monitor', 'app.kubernetes.io/component': 'alert-rules' },
  },
  spec: { groups: ruleGroups(m) },
};
{
  'alerts/etcd-monitor.rules.yml': { groups: ruleGroups(mixin) },
  'alerts/prometheusrule.yaml': prometheusRule('etcd-monitor', mixin),
  'alerts/etcd-monitor-exporter-only.rules.yml': { groups: ruleGroups(exporterOnly) },
  'alerts/prometheusrule-exporter-only.yaml': prometheusRule('etcd-monitor-exporter-only', exporterOnly),
  'alerts/alertmanager.yml': mixin.alertmanagerConfig,
} + {
  ['dashboards/' + name]: mixin.grafanaDashboards[name]
  for name in std.objectFields(mixin.grafanaDashboards)
} + {
  ['dashboards/exporter-only/' + name]: exporterOnly.grafanaDashboards[name]
  for name in std.objectFields(exporterOnly.grafanaDashboards)
}
