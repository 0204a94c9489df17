// The exporter-only profile: with _config.etcdMetrics false, every alert, recording rule, dashboard
// variable and panel that reads etcd's own /metrics is dropped, for setups that reach only etcd's
// client port (kubeadm binds /metrics to 127.0.0.1:2381). Imported last, so that it filters what
// every other file of the mixin added.
local g = import 'lib/dashboard.libsonnet';
{
  _config+:: {
    etcdMetrics: true,
  },

  local c = $._config,
  // Metric families of etcd's own /metrics (etcd_monitor_* is none of them); also anything selected
  // with etcdSelector, unless it is the exporter's selector too (clusterLabel 'job' setups).
  local etcdFamilies = ['etcd_server_', 'etcd_disk_', 'etcd_network_', 'etcd_mvcc_', 'etcd_debugging_', 'etcd_snap_', 'etcd_cluster_', 'grpc_server_'],
  // std.strReplace is native in go-jsonnet; std.findSubstr is jsonnet that filters every offset
  // and took most of a render's 45 s.
  local has(s, sub) = std.strReplace(s, sub, '') != s,
  local needsEtcd(s) =
    std.length([f for f in etcdFamilies if has(s, f)]) > 0
    || (c.etcdSelector != c.exporterSelector && has(s, c.etcdSelector)),

  local filterGroups(groups) = [
    gr { rules: [r for r in gr.rules if !needsEtcd(r.expr)] }
    for gr in groups
    if std.length([r for r in gr.rules if !needsEtcd(r.expr)]) > 0
  ],

  local panelNeedsEtcd(p) = std.length([t for t in std.get(p, 'targets', []) if needsEtcd(t.expr)]) > 0,
  // Rows left without a panel go too.
  local dropEmptyRows(panels) = [
    panels[i]
    for i in std.range(0, std.length(panels) - 1)
    if panels[i].type != 'row' || (i + 1 < std.length(panels) && panels[i + 1].type != 'row')
  ],
  local filterDashboard(d) =
    local panels = [p for p in d.panels if p.type == 'row' || !panelNeedsEtcd(p)];
    d {
      title: super.title + ' (exporter only)',
      templating: { list: [v for v in d.templating.list if !needsEtcd(std.manifestJson(std.get(v, 'query', '')))] },
      panels: g.layout(if std.length(panels) == 0 then [] else dropEmptyRows(panels)),
    },

  prometheusAlerts+:: if c.etcdMetrics then {} else { groups: filterGroups(super.groups) },
  prometheusRules+:: if c.etcdMetrics then {} else { groups: filterGroups(super.groups) },
  grafanaDashboards::
    local ds = super.grafanaDashboards;
    if c.etcdMetrics then ds else {
      [name]: filterDashboard(ds[name])
      for name in std.objectFields(ds)
      if std.length([p for p in ds[name].panels if p.type != 'row' && !panelNeedsEtcd(p)]) > 0
    },
}
