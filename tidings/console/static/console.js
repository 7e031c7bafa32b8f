// tidings console: refreshes a run's node counts while it moves. Part of tidings (Apache-2.0);
// no library, no build step.
"use strict";
(function () {
  var svg = document.querySelector("svg[data-counts-url]");
  var status = document.getElementById("run-status");
  if (!svg || !status || status.textContent.trim() !== "running") return;
  var url = svg.getAttribute("data-counts-url");
  function show(counts) {
    Object.keys(counts.nodes).forEach(function (id) {
      var text = svg.querySelector('[data-counts-for="' + CSS.escape(id) + '"]');
      if (!text) return;
      var parts = Object.keys(counts.nodes[id]).map(function (k) { return k + " " + counts.nodes[id][k]; });
      text.textContent = parts.join(" · ");
    });
    status.textContent = counts.status;
    status.className = "status status-" + counts.status;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (counts) {
        if (!counts) return;
        show(counts);
        if (counts.status === "running") setTimeout(poll, 2000);
        else location.reload();  // the run ended: the funnel and chart are final now
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
