// Maps each rendered file (relative to the repository root) to its content as data.
// render.go turns .yml/.yaml values into YAML and .json values into indented JSON.
// `overrides` (a jsonnet object, external code) is merged into _config.
local mixin = (import 'mixin.libsonnet') + { _config+:: std.extVar('overrides') };
local ruleGroups = mixin.prometheusAlerts.groups + mixin.prometheusRules.groups;
{
  'alerts/etcd-monitor.rules.yml': { groups: ruleGroups },
  'alerts/prometheusrule.yaml': {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'etcd-monitor',
      labels: { 'app.kubernetes.io/name': 'etcd-monitor', 'app.kubernetes.io/component': 'alert-rules' },
    },
    spec: { groups: ruleGroups },
  },
  'alerts/alertmanager.yml': mixin.alertmanagerConfig,
} + {
  ['dashboards/' + name]: mixin.grafanaDashboards[name]
  for name in std.objectFields(mixin.grafanaDashboards)
}
