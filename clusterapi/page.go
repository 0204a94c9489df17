package clusterapi

import "github.com/prometheus/exporter-toolkit/web"

// pageHTML goes into the exporter-toolkit landing page (LandingConfig.ExtraHTML). The script reads
// /api/v1/cluster/status (relative, so a route prefix keeps working) and builds the table with
// textContent only: member names come from etcd and are never parsed as HTML.
const pageHTML = `<section id="etcd-status">
<h3>Cluster <span id="etcd-verdict" data-verdict="loading">loading…</span></h3>
<ul id="etcd-reasons"></ul>
<p id="etcd-error" hidden></p>
<table id="etcd-members">
<thead><tr><th>Name</th><th>ID</th><th>State</th><th>Leader</th><th>Raft term</th><th>Raft index</th><th>DB size</th><th>Alarms</th><th>Linearizable read</th></tr></thead>
<tbody></tbody>
</table>
<p class="etcd-updated">Updated <span id="etcd-updated">never</span>; refreshed every 5 s from <a href="api/v1/cluster/status">api/v1/cluster/status</a>.</p>
</section>
<script>
(function () {
  "use strict";
  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
    return td;
  }
  function render(d) {
    var v = document.getElementById("etcd-verdict");
    v.textContent = d.cluster.health.verdict;
    v.setAttribute("data-verdict", d.cluster.health.verdict);
    var reasons = document.getElementById("etcd-reasons");
    reasons.textContent = "";
    d.cluster.health.reasons.forEach(function (r) {
      var li = document.createElement("li");
      li.textContent = r;
      reasons.appendChild(li);
    });
    var body = document.querySelector("#etcd-members tbody");
    body.textContent = "";
    d.members.forEach(function (m) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-member", m.name || m.id);
      tr.setAttribute("data-state", m.up ? "up" : "down");
      var st = m.status;
      cell(tr, (m.name || "-") + (m.is_learner ? " (learner)" : ""));
      cell(tr, m.id);
      cell(tr, m.up ? "up" : "down", m.up ? "etcd-up" : "etcd-down").title = m.error || "";
      cell(tr, !st ? "-" : st.is_leader ? "leader" : st.has_leader ? "follower" : "no leader");
      cell(tr, st ? String(st.raft_term) : "-");
      cell(tr, st ? String(st.raft_index) : "-");
      cell(tr, st ? bytes(st.db_size_bytes) : "-");
      cell(tr, m.alarms.length ? m.alarms.join(", ") : "-", m.alarms.length ? "etcd-down" : "");
      var lin = "-";
      m.probes.forEach(function (p) {
        if (p.kind === "read_linearizable") {
          lin = p.success ? (p.duration_seconds * 1000).toFixed(1) + " ms" : "failed";
        }
      });
      cell(tr, lin);
      body.appendChild(tr);
    });
  }
  function refresh() {
    var err = document.getElementById("etcd-error");
    fetch("api/v1/cluster/status", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.status !== "success") { throw new Error(j.error || "request failed"); }
        render(j.data);
        err.hidden = true;
      })
      .catch(function (e) {
        var v = document.getElementById("etcd-verdict");
        v.textContent = "unknown";
        v.setAttribute("data-verdict", "unknown");
        // Rows from an earlier answer would claim members are up that nobody has heard from.
        document.querySelector("#etcd-members tbody").textContent = "";
        document.getElementById("etcd-reasons").textContent = "";
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

const pageCSS = `
#etcd-status table { border-collapse: collapse; margin: 0.5em 0; }
#etcd-status th, #etcd-status td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
#etcd-status .etcd-up { color: #1a7f37; font-weight: bold; }
#etcd-status .etcd-down { color: #cf222e; font-weight: bold; }
#etcd-verdict[data-verdict="healthy"] { color: #1a7f37; }
#etcd-verdict[data-verdict="degraded"] { color: #9a6700; }
#etcd-verdict[data-verdict="critical"], #etcd-verdict[data-verdict="unknown"] { color: #cf222e; }
#etcd-error { color: #cf222e; }
`

// Landing adds the live status table and the API's links to a landing page configuration.
func Landing(c web.LandingConfig) web.LandingConfig {
	c.ExtraHTML += pageHTML
	c.ExtraCSS += pageCSS
	c.Links = append(c.Links,
		web.LandingLinks{Address: PathStatus, Text: "Cluster status", Description: "members, leader, raft, DB size, alarms, probes and the verdict (JSON)"},
		web.LandingLinks{Address: PathLeader, Text: "Leader", Description: "the member a quorum names as leader (JSON)"},
		web.LandingLinks{Address: PathLatency, Text: "Probe latency", Description: "the latest probe of each kind per member (JSON)"},
	)
	return c
}
