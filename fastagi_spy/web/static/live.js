// The Live Monitor table, fed by /api/stream (Server-Sent Events).
// Every value from the server is put in the page with textContent or setAttribute, never
// as HTML: customer names and numbers come from the phone network.
"use strict";
(function () {
  const table = document.getElementById("live");
  if (!table) return;
  const tbody = table.tBodies[0];
  const urlTemplate = table.dataset.customerUrl || "";
  const teamFilter = document.getElementById("filter-team");
  const statusFilter = document.getElementById("filter-status");
  const search = document.getElementById("filter-search");
  const banners = document.getElementById("banners");
  const streamState = document.getElementById("stream-state");
  const empty = document.getElementById("live-empty");
  const rows = new Map(); // "server|number" -> {row, tr}
  let offset = 0; // server clock minus ours, in seconds
  let servers = {};
  let snapshots = 0;

  const key = (r) => r.server + "|" + r.number;
  const serverNow = () => Date.now() / 1000 + offset;
  const DIRECTIONS = { incoming: "Incoming", outgoing: "Outgoing" };

  function elapsed(since) {
    const s = Math.max(0, Math.floor(serverNow() - since));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(sec) : m + ":" + two(sec);
  }

  function cell(tr, cls) {
    const td = document.createElement("td");
    td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function makeRow(r) {
    const tr = document.createElement("tr");
    for (const cls of ["col-agent", "col-status", "col-customer", "col-direction", "col-time"]) {
      cell(tr, cls);
    }
    // W3's buttons live in this cell: it is created once and never rewritten here.
    cell(tr, "controls");
    return tr;
  }

  function customerCell(td, r) {
    td.textContent = "";
    const shown = r.customer_name || r.customer_number;
    if (!shown) return;
    if (urlTemplate && r.customer_number) {
      const a = document.createElement("a");
      a.href = urlTemplate.split("{number}").join(encodeURIComponent(r.customer_number));
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.textContent = shown;
      td.appendChild(a);
    } else {
      td.textContent = shown;
    }
    if (r.customer_name && r.customer_number) {
      td.title = r.customer_number;
    }
  }

  function fill(tr, r) {
    tr.dataset.agent = r.number;
    tr.dataset.server = r.server;
    tr.dataset.team = r.team;
    tr.dataset.status = r.status;
    const [agent, status, customer, direction, time, controls] = tr.cells;
    agent.textContent = "";
    const name = document.createElement("span");
    name.className = "agent-name";
    name.textContent = r.name || r.number;
    const ext = document.createElement("span");
    ext.className = "agent-ext";
    ext.textContent = r.extension || r.number;
    agent.append(name, " ", ext);
    status.textContent = "";
    const badge = document.createElement("span");
    badge.className = "status status-" + r.status.toLowerCase();
    // textContent, never HTML: the reason is whatever the pauser typed.
    badge.textContent = r.status === "Paused" && r.pause_reason
      ? "Paused (" + r.pause_reason + ")" : r.status;
    badge.title = r.status === "Paused" ? r.pause_reason : "";
    status.appendChild(badge);
    customerCell(customer, r);
    direction.textContent = DIRECTIONS[r.direction] || "";
    time.dataset.since = String(r.since);
    time.textContent = elapsed(r.since);
    controls.dataset.agent = r.number;
    controls.dataset.server = r.server;
    controls.dataset.active = r.active ? "1" : "0";
    tr.hidden = !matches(r);
  }

  function matches(r) {
    if (teamFilter.value && r.team !== teamFilter.value) return false;
    if (statusFilter.value && r.status !== statusFilter.value) return false;
    const q = search.value.trim().toLowerCase();
    if (!q) return true;
    return [r.name, r.number, r.extension, r.customer_name, r.customer_number]
      .some((v) => v && String(v).toLowerCase().includes(q));
  }

  function order(a, b) {
    return a.number.localeCompare(b.number, undefined, { numeric: true }) ||
      a.server.localeCompare(b.server);
  }

  function put(r, inOrder) {
    const k = key(r);
    let entry = rows.get(k);
    if (!entry && inOrder) {
      // A snapshot comes sorted: append, no search.
      entry = { row: r, tr: makeRow(r) };
      rows.set(k, entry);
      tbody.appendChild(entry.tr);
    } else if (!entry) {
      entry = { row: r, tr: makeRow(r) };
      rows.set(k, entry);
      // Insert in agent order: find the first row that sorts after this one.
      let before = null;
      for (const other of rows.values()) {
        if (other !== entry && order(other.row, r) > 0 &&
            (!before || order(other.row, before.row) < 0)) before = other;
      }
      tbody.insertBefore(entry.tr, before ? before.tr : null);
    }
    entry.row = r;
    fill(entry.tr, r);
  }

  function drop(server, number) {
    const k = server + "|" + number;
    const entry = rows.get(k);
    if (entry) {
      entry.tr.remove();
      rows.delete(k);
    }
  }

  function summarise() {
    const counts = { Talking: 0, Ringing: 0, Idle: 0, Paused: 0 };
    let shown = 0;
    for (const { row, tr } of rows.values()) {
      if (!teamFilter.value || row.team === teamFilter.value) counts[row.status] += 1;
      if (!tr.hidden) shown += 1;
    }
    for (const [status, n] of Object.entries(counts)) {
      const el = document.querySelector('[data-count="' + status + '"]');
      if (el) el.textContent = String(n);
    }
    empty.hidden = shown > 0;
  }

  function showServers() {
    banners.textContent = "";
    for (const [name, s] of Object.entries(servers).sort()) {
      if (!s.stale) continue;
      const div = document.createElement("div");
      div.className = "banner banner-down";
      div.setAttribute("role", "alert");
      div.dataset.server = name;
      const since = s.stale_since ? " since " + new Date(s.stale_since * 1000).toLocaleTimeString() : "";
      div.textContent = "PBX " + name + ": link down" + since +
        ". Its rows may be out of date, and nobody can be monitored there until it is back.";
      banners.appendChild(div);
    }
  }

  function clock(now) {
    offset = now - Date.now() / 1000;
  }

  function announce(name, data) {
    // The queue strip (and anything else on the page) listens to the same stream.
    document.dispatchEvent(new CustomEvent("live:" + name, { detail: data }));
  }

  function onSnapshot(ev) {
    const data = JSON.parse(ev.data);
    clock(data.now);
    servers = data.servers || {};
    rows.clear();
    tbody.textContent = "";
    for (const r of data.agents.slice().sort(order)) put(r, true);
    showServers();
    summarise();
    snapshots += 1;
    table.dataset.snapshots = String(snapshots);
    announce("snapshot", data);
  }

  function onChange(ev) {
    const data = JSON.parse(ev.data);
    clock(data.now);
    for (const [server, number] of data.gone || []) drop(server, number);
    for (const r of data.agents || []) put(r);
    if (data.servers && Object.keys(data.servers).length) {
      Object.assign(servers, data.servers);
      showServers();
    }
    summarise();
    announce("change", data);
  }

  function setState(state, text) {
    table.dataset.stream = state;
    streamState.textContent = text;
    streamState.className = "stream-state stream-" + state;
  }

  let retry = 1000;
  function connect() {
    const source = new EventSource("/api/stream");
    source.addEventListener("snapshot", (ev) => {
      retry = 1000;
      setState("open", "Live");
      onSnapshot(ev);
    });
    source.addEventListener("change", onChange);
    source.onerror = () => {
      setState("reconnecting", "Connection lost, reconnecting\u2026");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an answer that was not a stream, e.g. the session ended):
        // try again ourselves, more slowly each time; the page's own load re-asks for login.
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      }
    };
  }

  function refilter() {
    for (const { row, tr } of rows.values()) tr.hidden = !matches(row);
    summarise();
  }
  for (const el of [teamFilter, statusFilter]) el.addEventListener("change", refilter);
  search.addEventListener("input", refilter);
  document.getElementById("filters").addEventListener("submit", (ev) => ev.preventDefault());

  setInterval(() => {
    for (const { tr } of rows.values()) {
      const td = tr.cells[4];
      td.textContent = elapsed(Number(td.dataset.since));
    }
  }, 1000);

  // The other listeners of the stream (queues.js, actions.js) are deferred scripts after
  // this one, and a snapshot can arrive between two of them: connect once they all ran
  // (DOMContentLoaded comes after every deferred script), or the queue strip misses the
  // snapshot and stays empty until a queue changes.
  if (document.readyState === "complete") connect();
  else document.addEventListener("DOMContentLoaded", connect, { once: true });
})();
