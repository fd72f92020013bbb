"""The console's stylesheet and its one script, served from /static/ (the page's
Content-Security-Policy allows scripts from the console itself only, never inline)."""

from __future__ import annotations

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { display: flex; gap: 1.2em; align-items: center; padding: .6em 1em;
  background: #23395d; color: #fff; }
header a { color: #fff; margin-right: 1em; }
header .who { margin-left: auto; }
header form.action { margin: 0; }
main { padding: 0 1em 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .5em; text-align: left;
  vertical-align: top; }
th { background: #eef1f6; }
pre { white-space: pre-wrap; word-break: break-all; background: #f4f4f4; padding: .5em;
  max-height: 30em; overflow: auto; }
dl#facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; }
dl#facts dt { font-weight: bold; } dl#facts dd { margin: 0; }
form.search label { margin-left: .6em; }
form.login { max-width: 22em; }
form.login input { width: 100%; }
form.action { display: inline; }
.note { background: #fff4ce; border-left: 4px solid #e0a800; padding: .5em 1em; margin: 0; }
.flash { background: #e7f5ea; border-left: 4px solid #2e7d32; padding: .5em 1em; margin: 0; }
.flash.refused { background: #fdecea; border-left-color: #c62828; }
.error { color: #b00020; }
.attention { color: #b00020; }
tr.kind-refused, tr.kind-deadletter { background: #fdecea; }
tr.kind-state { background: #eef6ee; }
tr.updated { outline: 2px solid #e0a800; }
.health.ok { color: #2e7d32; } .health.failing { color: #b00020; font-weight: bold; }
.health.degraded { color: #e08600; } .health.idle { color: #777; }
ul.states { display: flex; flex-wrap: wrap; gap: 1.5em; list-style: none; padding: 0; }
footer { position: fixed; bottom: 0; right: 0; padding: .2em .6em; background: #eee;
  font-size: 12px; }
#live-log { font-family: monospace; font-size: 12px; max-height: 15em; overflow: auto; }
"""

# Live updates (server-sent events from /live). Text goes in with textContent only, never as
# markup.
JS = """
(function () {
  "use strict";
  var body = document.body;
  var status = document.getElementById("live-status");
  if (!window.EventSource || !body.dataset.page || body.dataset.page === "login") { return; }
  var source = new EventSource("/live");
  function say(text) { if (status) { status.textContent = text; } }
  function cell(tag, value, className) {
    var element = document.createElement(tag);
    element.textContent = value === null || value === undefined ? "" : String(value);
    if (className) { element.className = className; }
    return element;
  }
  function log(line) {
    var list = document.getElementById("live-log");
    if (!list) { return; }
    list.insertBefore(cell("li", line), list.firstChild);
    while (list.children.length > 100) { list.removeChild(list.lastChild); }
  }
  source.onopen = function () { say("live: connected"); };
  source.onerror = function () { say("live: reconnecting"); };
  source.addEventListener("entry", function (message) {
    var e = JSON.parse(message.data);
    log(String(e.when).slice(11, 19) + "  " + e.transaction_id + "  " + e.summary);
    var rows = document.querySelectorAll("tr[data-txn]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].dataset.txn === e.transaction_id && e.state) {
        var state = rows[i].querySelector(".state");
        if (state) { state.textContent = e.state; }
        rows[i].classList.add("updated");
      }
    }
    if (body.dataset.page === "request" && body.dataset.txn === e.transaction_id) {
      var timeline = document.querySelector("#timeline tbody");
      if (timeline) {
        var row = document.createElement("tr");
        row.className = "live kind-" + String(e.kind).replace(/[^a-z]/g, "-");
        row.appendChild(cell("td", e.when));
        row.appendChild(cell("td", e.kind));
        row.appendChild(cell("td", e.summary));
        row.appendChild(cell("td", "(live: reload for the messages)"));
        timeline.appendChild(row);
      }
      var current = document.getElementById("state");
      if (current && e.state) { current.textContent = e.state; }
    }
  });
  source.addEventListener("deadletter", function (message) {
    var d = JSON.parse(message.data);
    log(String(d.when).slice(11, 19) + "  dead letter " + d.ref + " (" + d.stage + ", " +
        (d.partner || "-") + "): " + d.error);
    var listed = document.querySelector("table#deadletters tbody");
    if (listed && body.dataset.page === "deadletters") {
      var row = document.createElement("tr");
      row.className = "live kind-deadletter";
      [d.ref, d.when, d.stage, d.partner || "-", "", d.transaction_id || "-",
       d.error, "(reload to replay)"].forEach(function (value) {
        row.appendChild(cell("td", value));
      });
      listed.insertBefore(row, listed.firstChild);
    }
  });
})();
"""
