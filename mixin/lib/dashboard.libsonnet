// Minimal helpers that produce Grafana dashboard JSON (schemaVersion 39, Grafana 10+).
// They replace grafonnet, which cannot be fetched here; only the fields used are modelled.
{
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  dashboard(title, uid, description, tags, variables, panels, config):: {
    uid: uid,
    title: title,
    description: description,
    tags: tags,
    timezone: config.dashboardTimezone,
    editable: true,
    graphTooltip: 1,
    refresh: config.dashboardRefresh,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-6h', to: 'now' },
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    links: [{
      title: 'etcd dashboards',
      type: 'dashboards',
      tags: config.dashboardTags,
      asDropdown: true,
      includeVars: true,
      keepTime: true,
      icon: 'external link',
      tooltip: '',
      targetBlank: false,
    }],
    templating: { list: variables },
    panels: $.layout(panels),
  },

  // Places panels left to right in rows of 24 columns; a row panel starts a new line.
  layout(panels)::
    local step(acc, p) =
      local w = p.gridPos.w;
      local h = p.gridPos.h;
      local isRow = p.type == 'row';
      local wrap = isRow || acc.x + w > 24;
      local y = if wrap then acc.y + acc.lineH else acc.y;
      local x = if wrap then 0 else acc.x;
      {
        x: if isRow then 0 else x + w,
        y: if isRow then y + 1 else y,
        lineH: if isRow then 0 else if wrap then h else std.max(acc.lineH, h),
        id: acc.id + 1,
        out: acc.out + [p { id: acc.id, gridPos: { x: x, y: y, w: w, h: h } }],
      };
    std.foldl(step, panels, { x: 0, y: 0, lineH: 0, id: 1, out: [] }).out,

  datasourceVariable():: {
    type: 'datasource',
    name: 'datasource',
    label: 'Data source',
    query: 'prometheus',
    regex: '',
    hide: 0,
    refresh: 1,
  },

  queryVariable(name, label, query, multi=false, includeAll=false, hide=0):: {
    type: 'query',
    name: name,
    label: label,
    datasource: $.datasource,
    query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery', qryType: 1 },
    definition: query,
    refresh: 2,
    sort: 1,
    hide: hide,
    multi: multi,
    includeAll: includeAll,
    options: [],
  },

  target(expr, legend='', instant=false, format='time_series'):: {
    datasource: $.datasource,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
  },

  local withRefIds(targets) = [
    targets[i] { refId: std.char(std.codepoint('A') + i) }
    for i in std.range(0, std.length(targets) - 1)
  ],

  local thresholdSteps(steps) = { mode: 'absolute', steps: steps },

  row(title):: {
    type: 'row',
    title: title,
    collapsed: false,
    panels: [],
    gridPos: { w: 24, h: 1 },
  },

  timeseries(title, description, targets, unit='short', w=12, h=8, min=null, max=null, stack=false, thresholds=null, legend='list', points=false):: {
    type: 'timeseries',
    title: title,
    description: description,
    datasource: $.datasource,
    targets: withRefIds(targets),
    gridPos: { w: w, h: h },
    options: {
      legend: { showLegend: true, displayMode: legend, placement: 'bottom', calcs: if legend == 'table' then ['lastNotNull', 'max'] else [] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
    fieldConfig: {
      defaults: {
        unit: unit,
        custom: {
          drawStyle: if points then 'points' else 'line',
          lineWidth: 1,
          fillOpacity: if stack then 30 else 10,
          showPoints: if points then 'always' else 'never',
          pointSize: 5,
          spanNulls: false,
          stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
          thresholdsStyle: { mode: if thresholds == null then 'off' else 'line+area' },
        },
        thresholds: thresholdSteps(if thresholds == null then [{ color: 'green', value: null }] else thresholds),
        color: { mode: 'palette-classic' },
      } + (if min != null then { min: min } else {}) + (if max != null then { max: max } else {}),
      overrides: [],
    },
  },

  stat(title, description, targets, unit='short', w=4, h=4, thresholds=null, mappings=[], colorMode='value', graph=false):: {
    type: 'stat',
    title: title,
    description: description,
    datasource: $.datasource,
    targets: withRefIds(targets),
    gridPos: { w: w, h: h },
    options: {
      graphMode: if graph then 'area' else 'none',
      colorMode: colorMode,
      justifyMode: 'auto',
      textMode: 'auto',
      wideLayout: true,
      showPercentChange: false,
      percentChangeColorMode: 'standard',
      orientation: 'auto',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
    },
    fieldConfig: {
      defaults: {
        unit: unit,
        mappings: mappings,
        thresholds: thresholdSteps(if thresholds == null then [{ color: 'green', value: null }] else thresholds),
        color: { mode: 'thresholds' },
      },
      overrides: [],
    },
  },

  // A table of instant queries merged on their common labels.
  table(title, description, targets, w=24, h=8, rename={}, exclude=[], overrides=[]):: {
    type: 'table',
    title: title,
    description: description,
    datasource: $.datasource,
    targets: withRefIds(targets),
    gridPos: { w: w, h: h },
    options: { showHeader: true, cellHeight: 'sm', frameIndex: 0 },
    fieldConfig: {
      defaults: { custom: { align: 'auto', filterable: false, inspect: false } },
      overrides: overrides,
    },
    transformations: [
      { id: 'merge', options: {} },
      {
        id: 'organize',
        options: {
          excludeByName: { [f]: true for f in ['Time', '__name__', 'job'] + exclude },
          renameByName: rename,
        },
      },
    ],
  },

  // Value mappings for 0/1 gauges.
  boolMapping(zero, one, zeroColor='red', oneColor='green'):: [{
    type: 'value',
    options: {
      '0': { text: zero, color: zeroColor, index: 0 },
      '1': { text: one, color: oneColor, index: 1 },
    },
  }],

  // A field override giving one column of a table a unit or mapping.
  columnOverride(name, props):: {
    matcher: { id: 'byName', options: name },
    properties: [{ id: k, value: props[k] } for k in std.objectFields(props)],
  },
}
