// tureen console: live parts over Server-Sent Events, copy buttons. No framework, no build.
// Every value from the server goes in with textContent, never as HTML — except the charts,
// which are SVG the server drew (every string in them escaped there).
"use strict";

function get(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function fmtMs(s) { return (Number(s) * 1000).toFixed(2); }

function watchStatus(el) {
  const src = new EventSource(el.dataset.sseStatus);
  src.addEventListener("status", (ev) => {
    const data = JSON.parse(ev.data);
    document.querySelectorAll("[data-bind]").forEach((node) => {
      let v = get(data, node.dataset.bind);
      if (Array.isArray(v)) v = v.length ? v.join(", ") : "none";
      if (v !== undefined && String(v) !== node.textContent) node.textContent = String(v);
    });
    document.querySelectorAll("[data-bind-table]").forEach((tbody) => {
      const rows = get(data, tbody.dataset.bindTable) || {};
      tbody.replaceChildren(...Object.entries(rows).map(([version, s]) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = version;
        tr.append(th);
        for (const v of [Math.trunc(s.requests), Math.trunc(s.errors), fmtMs(s.p50_seconds), fmtMs(s.p99_seconds)]) {
          const td = document.createElement("td");
          td.className = "num";
          td.textContent = String(v);
          tr.append(td);
        }
        return tr;
      }));
    });
    document.querySelectorAll("[data-chart]").forEach((fig) => {
      const svg = data[fig.dataset.chart];
      if (typeof svg === "string" && svg.startsWith("<svg")) fig.innerHTML = svg;
    });
  });
}

function watchLogs(tbody) {
  const src = new EventSource(tbody.dataset.sseLogs);
  const state = document.querySelector("[data-sse-state]");
  src.onopen = () => { if (state) state.textContent = "Live: new lines appear below as they are written."; };
  src.onerror = () => { if (state) state.textContent = "Reconnecting to the log stream…"; };
  src.addEventListener("log", (ev) => {
    for (const line of JSON.parse(ev.data)) {
      const tr = document.createElement("tr");
      tr.className = "level-" + String(line.level).toLowerCase();
      for (const v of [line.at, line.level, line.component, line.request_id, line.message]) {
        const td = document.createElement("td");
        td.textContent = v == null ? "" : String(v);
        tr.append(td);
      }
      tbody.append(tr);
    }
    while (tbody.rows.length > 2000) tbody.deleteRow(0);
  });
}

function watchRun(el) {
  const src = new EventSource(el.dataset.sseRun);
  src.addEventListener("run", (ev) => {
    const run = JSON.parse(ev.data);
    const fig = document.querySelector("[data-run-dag]");
    if (fig && run.dag_svg.startsWith("<svg")) fig.innerHTML = run.dag_svg;
    const tbody = document.querySelector("[data-run-tasks]");
    if (tbody) {
      tbody.replaceChildren(...run.tasks.map((t) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = t.name;
        tr.append(th);
        const cache = t.cache ? (t.cache.hit ? "hit" : "miss") : "";
        const dur = t.duration_seconds == null ? "" : Number(t.duration_seconds).toFixed(2) + " s";
        for (const v of [t.state, cache, t.cache ? t.cache.reason : "", dur]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        return tr;
      }));
    }
    el.textContent = "Run " + run.status.toLowerCase() + ".";
  });
  src.addEventListener("end", () => { src.close(); });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-sse-run]").forEach(watchRun);
  document.querySelectorAll("[data-sse-status]").forEach(watchStatus);
  document.querySelectorAll("[data-sse-logs]").forEach(watchLogs);
  document.querySelectorAll("[data-copy]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const text = document.getElementById(btn.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); btn.textContent = "Copied"; }
      catch (e) { btn.textContent = "Select the text and copy it"; }
    });
  });
});
