// The settings form: saved with the CSRF header, then each server's AMI link state is
// polled so that a wrong password shows as "link down" and a right one as "link up".
"use strict";
(function () {
  const form = document.getElementById("settings-form");
  if (!form) return;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const result = document.getElementById("settings-result");

  function show(text, kind) {
    result.textContent = text;
    result.className = "status " + kind;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show("Saving…", "pending");
    try {
      const reply = await fetch("/settings", {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(new FormData(form)),
      });
      const body = await reply.json();
      if (!reply.ok) {
        show("Not saved: " + (body.error || reply.status), "error");
        return;
      }
      // The password is never shown again: its field goes back to empty.
      for (const p of form.querySelectorAll('input[type="password"]')) p.value = "";
      show(body.saved.length ? "Saved: " + body.saved.join(", ") : "Nothing changed", "ok");
    } catch (e) {
      show("Could not reach the server", "error");
    }
  });

  async function links() {
    try {
      const reply = await fetch("/settings/status", { credentials: "same-origin",
                                                      cache: "no-store" });
      if (reply.ok) {
        const up = await reply.json();
        for (const span of document.querySelectorAll("[data-link]")) {
          const on = up[span.dataset.link] === true;
          span.textContent = on ? "link up" : "link down";
          span.className = "link " + (on ? "up" : "down");
        }
      }
    } finally {
      setTimeout(links, 1000);
    }
  }
  links();
})();
