// Lockstep dashboard: draws the plotly figures the server built, and keeps a live run's
// page current. Everything from the server is set as text (textContent) or handed to
// plotly as data; nothing is inserted as HTML.
"use strict";

function drawFigures() {
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var data = document.getElementById(el.dataset.figure);
    if (!data || typeof Plotly === "undefined") { return; }
    var fig = JSON.parse(data.textContent);
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true});
  });
}

function pick(obj, path) {
  return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
}

function showLive(update) {
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var value = pick(update, el.dataset.live);
    if (value === undefined) { return; }
    if (el.dataset.live === "agents_by_state") {
      value = Object.keys(value).sort().map(function (k) { return k + " " + value[k]; }).join(", ");
    } else if (el.dataset.live === "idle") {
      value = value ? "idle" : "running";
    } else if (typeof value === "number") {
      value = value.toLocaleString("en-US");
    }
    el.textContent = String(value);
  });
}

function extendTimeline(rows) {
  var el = document.getElementById("timeline");
  if (!el || !rows.length || typeof Plotly === "undefined") { return; }
  var fields = el.dataset.fields.split(",");
  var xs = fields.map(function () { return rows.map(function (r) { return r.tick; }); });
  var ys = fields.map(function (f) { return rows.map(function (r) { return r[f]; }); });
  Plotly.extendTraces(el, {x: xs, y: ys}, fields.map(function (_f, i) { return i; }));
}

// Polls the run's live endpoint and redraws at most once per render interval (Mesa's
// render interval): however fast ticks are committed, the page redraws every N ms.
function startLive() {
  var summary = document.getElementById("summary");
  if (!summary || !summary.dataset.liveUrl) { return; }
  var interval = Math.max(100, parseInt(summary.dataset.renderInterval, 10) || 1000);
  var after = parseInt(summary.dataset.after, 10) || 0;
  var badge = document.getElementById("live-badge");
  function poll() {
    if (document.hidden) { setTimeout(poll, interval); return; }
    fetch(summary.dataset.liveUrl + "?after=" + after, {cache: "no-store"})
      .then(function (resp) { return resp.json(); })
      .then(function (update) {
        if (update.error && badge) { badge.textContent = "orchestrator not answering"; }
        if (update.rows.length) {
          after = update.rows[update.rows.length - 1].tick;
          extendTimeline(update.rows);
        }
        if (!update.current) {
          if (badge && !update.error) { badge.textContent = "ended"; badge.className = "badge"; }
          return;
        }
        if (badge) { badge.textContent = "current"; }
        showLive(update);
        summary.dataset.after = String(after);
        setTimeout(poll, interval);
      })
      .catch(function () {
        if (badge) { badge.textContent = "dashboard not answering"; }
        setTimeout(poll, interval * 2);
      });
  }
  setTimeout(poll, interval);
}

document.addEventListener("DOMContentLoaded", function () {
  drawFigures();
  startLive();
});
