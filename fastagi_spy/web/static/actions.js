// Listen / Whisper / Barge buttons in the Live table's controls cells (/api/spy).
// The server says which modes this person may use (scope spy, their modes, a configured
// feature code): none means no buttons at all. It refuses with 403 whatever this page shows.
"use strict";
(function () {
  const table = document.getElementById("live");
  if (!table) return;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const LABELS = { listen: "Listen", whisper: "Whisper", barge: "Barge" };
  const SAID = {
    ringing: "Ringing your phone…", answered: "Answered, connecting…",
    connected: "Connected", ended: "Ended", "not answered": "Your phone was not answered",
  };
  let modes = [];
  let polling = null;

  // One line that says what the last button press led to; read out by screen readers.
  let status = document.getElementById("spy-status");
  if (!status) {
    status = document.createElement("p");
    status.id = "spy-status";
    status.className = "spy-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    const anchor = table.closest(".table-wrap") || table; // above the table's frame
    anchor.parentNode.insertBefore(status, anchor);
  }

  function say(text, state) {
    status.textContent = text;
    status.dataset.state = state || "";
  }

  function decorate(td) {
    const want = td.dataset.active === "1" ? modes : [];
    const have = Array.from(td.querySelectorAll("button.spy")).map((b) => b.dataset.mode);
    if (want.join() === have.join()) return;
    td.textContent = "";
    for (const mode of want) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "spy spy-" + mode;
      b.dataset.mode = mode;
      b.textContent = LABELS[mode];
      b.setAttribute("aria-label", LABELS[mode] + " to agent " + td.dataset.agent);
      b.addEventListener("click", () => press(td.dataset.agent, mode));
      td.appendChild(b);
    }
  }

  function decorateAll() {
    for (const td of table.querySelectorAll("td.controls")) decorate(td);
  }

  async function press(agent, mode) {
    clearTimeout(polling);
    say(LABELS[mode] + " " + agent + ": calling your phone…", "sending");
    let reply, body;
    try {
      reply = await fetch("/api/spy", {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ agent: agent, mode: mode }),
      });
      body = await reply.json();
    } catch (e) {
      say("Could not reach the server", "refused");
      return;
    }
    if (reply.status !== 202) {
      say("Refused: " + (body.reason || body.error || reply.status), "refused");
      return;
    }
    follow(body.id, LABELS[mode] + " " + agent);
  }

  async function follow(id, what) {
    let body;
    try {
      const reply = await fetch("/api/spy/" + encodeURIComponent(id),
        { credentials: "same-origin", cache: "no-store" });
      body = await reply.json();
    } catch (e) {
      body = { state: "unknown" };
    }
    if (body.state === "refused") {
      say(what + ": refused: " + body.reason, "refused");
      return;
    }
    say(what + ": " + (SAID[body.state] || body.state || body.error), body.state);
    if (["ringing", "answered", "connected", "unknown"].includes(body.state)) {
      polling = setTimeout(() => follow(id, what), 1000);
    }
  }

  fetch("/api/spy", { credentials: "same-origin", cache: "no-store" })
    .then((r) => (r.ok ? r.json() : { modes: [] }))
    .then((body) => {
      modes = body.modes || [];
      table.dataset.spyModes = modes.join(",");
      decorateAll();
      // live.js adds rows and flips data-active as calls come and go.
      new MutationObserver(decorateAll).observe(table.tBodies[0], {
        childList: true, subtree: true, attributes: true, attributeFilter: ["data-active"],
      });
    })
    .catch(() => { table.dataset.spyModes = ""; });
})();
