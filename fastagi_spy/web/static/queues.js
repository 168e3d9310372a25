// The queue strip above the Live Monitor table: per queue, calls waiting and the longest
// wait (ticking), agents available / on calls / paused, and calls answered and abandoned
// since the server's midnight. Fed by live.js's "live:snapshot" / "live:change" events:
// data.servers[<server>].queues is that server's whole queue list. Every value goes into
// the page with textContent, never as HTML: a queue name comes from a dialplan.
"use strict";
(function () {
  const strip = document.getElementById("queue-strip");
  if (!strip) return;
  strip.setAttribute("aria-label", "Queues");
  const queues = new Map(); // "server|queue" -> payload
  let offset = 0; // server clock minus ours, in seconds

  const serverNow = () => Date.now() / 1000 + offset;
  const two = (n) => String(n).padStart(2, "0");

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + ":" + two(m) + ":" + two(s % 60) : m + ":" + two(s % 60);
  }

  function waitOf(q) {
    return q.longest_since === null ? 0 : serverNow() - q.longest_since;
  }

  // Past the server's midnight the day's counts start again, even before the next event.
  const today = (q, n) => (serverNow() >= q.day_end ? 0 : n);

  function figure(label, value, cls) {
    const div = document.createElement("div");
    div.className = "queue-figure " + cls;
    const strong = document.createElement("strong");
    strong.textContent = String(value);
    const span = document.createElement("span");
    span.textContent = label;
    div.append(strong, " ", span);
    return div;
  }

  function card(server, q, servers) {
    const li = document.createElement("li");
    li.className = "queue" + (q.waiting ? " queue-waiting" : "");
    li.dataset.queue = q.queue;
    li.dataset.server = server;
    li.dataset.waiting = String(q.waiting);
    li.dataset.abandoned = String(today(q, q.abandoned));
    li.dataset.answered = String(today(q, q.answered));
    const h = document.createElement("h2");
    h.className = "queue-name";
    h.textContent = q.queue + (servers > 1 ? " (" + server + ")" : "");
    const wait = figure("longest wait", q.waiting ? duration(waitOf(q)) : "\u2013", "queue-wait");
    wait.dataset.since = q.longest_since === null ? "" : String(q.longest_since);
    li.append(
      h,
      figure("waiting", q.waiting, "queue-count"),
      wait,
      figure("available", q.available, "queue-available"),
      figure("on calls", q.on_calls, "queue-oncall"),
      figure("paused", q.paused, "queue-paused"),
      figure("answered today", today(q, q.answered), "queue-answered"),
      figure("abandoned today", today(q, q.abandoned), "queue-abandoned"),
    );
    li.title = "Today: since the server's midnight";
    return li;
  }

  function render() {
    const names = new Set([...queues.keys()].map((k) => k.split("|")[0]));
    const list = document.createElement("ul");
    list.className = "queue-list";
    const keys = [...queues.keys()].sort((a, b) => a.localeCompare(b));
    for (const k of keys) {
      const server = k.slice(0, k.indexOf("|"));
      list.appendChild(card(server, queues.get(k), names.size));
    }
    strip.textContent = "";
    strip.hidden = keys.length === 0;
    if (keys.length) strip.appendChild(list);
  }

  function take(data, replaceAll) {
    if (typeof data.now === "number") offset = data.now - Date.now() / 1000;
    const servers = data.servers || {};
    if (replaceAll) queues.clear();
    for (const [server, s] of Object.entries(servers)) {
      if (!s || !Array.isArray(s.queues)) continue;
      for (const k of [...queues.keys()]) if (k.startsWith(server + "|")) queues.delete(k);
      for (const q of s.queues) queues.set(server + "|" + q.queue, q);
    }
    render();
  }

  document.addEventListener("live:snapshot", (ev) => take(ev.detail, true));
  document.addEventListener("live:change", (ev) => take(ev.detail, false));

  setInterval(() => {
    for (const el of strip.querySelectorAll(".queue-wait")) {
      const since = el.dataset.since;
      if (since) el.firstChild.textContent = duration(serverNow() - Number(since));
    }
  }, 1000);
  render();
})();
