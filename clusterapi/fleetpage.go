package clusterapi

import "github.com/prometheus/exporter-toolkit/web"

// fleetPageHTML is the landing page's table when the exporter watches many clusters: one row per
// cluster of /api/v1/clusters (relative, so a route prefix keeps working), built with textContent
// only, as the single-cluster table is: names and reasons are never parsed as HTML.
const fleetPageHTML = `<section id="etcd-fleet">
<h3>Clusters <span id="etcd-fleet-state" data-state="loading">loading…</span></h3>
<p id="etcd-error" hidden></p>
<table id="etcd-clusters">
<thead><tr><th>Cluster</th><th>Verdict</th><th>Members up</th><th>Quorum</th><th>Leader</th><th>Reasons</th></tr></thead>
<tbody></tbody>
</table>
<p class="etcd-updated">Updated <span id="etcd-updated">never</span>; refreshed every 5 s from <a href="api/v1/clusters">api/v1/clusters</a>.</p>
</section>
<script>
(function () {
  "use strict";
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function render(list) {
    var body = document.querySelector("#etcd-clusters tbody");
    body.textContent = "";
    list.forEach(function (c) {
      var h = c.cluster.health, tr = document.createElement("tr");
      tr.setAttribute("data-cluster", c.name);
      tr.setAttribute("data-verdict", h.verdict);
      cell(tr, c.name);
      cell(tr, h.verdict, "etcd-" + h.verdict);
      cell(tr, c.up ? c.cluster.members_up + " of " + c.cluster.members : "-");
      cell(tr, c.up ? (c.cluster.has_quorum ? "yes" : "no") : "-");
      cell(tr, c.cluster.leader || "-");
      cell(tr, h.reasons.length ? h.reasons.join("; ") : "-");
      body.appendChild(tr);
    });
    var s = document.getElementById("etcd-fleet-state");
    s.textContent = list.length + " configured";
    s.setAttribute("data-state", "loaded");
  }
  function refresh() {
    var err = document.getElementById("etcd-error");
    fetch("api/v1/clusters", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.status !== "success") { throw new Error(j.error || "request failed"); }
        render(j.data);
        err.hidden = true;
      })
      .catch(function (e) {
        document.querySelector("#etcd-clusters tbody").textContent = "";
        var s = document.getElementById("etcd-fleet-state");
        s.textContent = "unknown";
        s.setAttribute("data-state", "unknown");
        err.textContent = "Status unavailable: " + e.message;
        err.hidden = false;
      })
      .finally(function () {
        document.getElementById("etcd-updated").textContent = new Date().toLocaleTimeString();
      });
  }
  refresh();
  setInterval(refresh, 5000);
})();
</script>`

const fleetPageCSS = `
#etcd-fleet table { border-collapse: collapse; margin: 0.5em 0; }
#etcd-fleet th, #etcd-fleet td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
#etcd-fleet .etcd-healthy { color: #1a7f37; font-weight: bold; }
#etcd-fleet .etcd-degraded { color: #9a6700; font-weight: bold; }
#etcd-fleet .etcd-critical { color: #cf222e; font-weight: bold; }
#etcd-error { color: #cf222e; }
`

// FleetLanding adds the clusters table to a landing page configuration, for an exporter that
// serves many clusters at /api/v1/clusters.
func FleetLanding(c web.LandingConfig) web.LandingConfig {
	c.ExtraHTML += fleetPageHTML
	c.ExtraCSS += fleetPageCSS
	return c
}
