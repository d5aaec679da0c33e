// The pages' live updates: every few seconds, fetch this page as JSON
// (`?format=json`, same session cookie, read-only) and refresh each live
// cell (`data-cell`) in place. The address keeps the page's filters and
// page number, so the server sends only the rows on screen. The server
// renders the cells, so this script holds no rendering logic; the page
// works without it. A hidden tab does not poll: it catches up when shown.
"use strict";

(function () {
  const note = document.querySelector("[data-live]");
  if (!note) {
    return;
  }
  const PERIOD_MS = 3000;
  const url = new URL(window.location.href);
  url.searchParams.set("format", "json");
  url.searchParams.delete("pinned");

  function liveCells() {
    const cells = new Map();
    document.querySelectorAll("[data-cell]").forEach(function (el) {
      cells.set(el.getAttribute("data-cell"), el);
    });
    return cells;
  }

  function shownRows() {
    return new Set(Array.from(document.querySelectorAll("[data-row]"), function (el) {
      return el.getAttribute("data-row");
    }));
  }

  let timer = null;

  function schedule(delay) {
    window.clearTimeout(timer);
    timer = document.hidden ? null : window.setTimeout(tick, delay);
  }

  async function tick() {
    timer = null;
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (answer.status === 401) {
        window.location.assign("/login");
        return;
      }
      if (!answer.ok) {
        throw new Error("the server answered " + answer.status);
      }
      const data = await answer.json();
      const cells = liveCells();
      Object.entries(data.cells).forEach(function ([id, cell]) {
        const el = cells.get(id);
        if (!el) {
          return;
        }
        if (el.innerHTML !== cell.html) {
          el.innerHTML = cell.html; // escaped by the server
        }
        if (el.className !== cell.class) {
          el.className = cell.class;
        }
      });
      const shown = shownRows();
      const changed = data.rows.length !== shown.size || data.rows.some(function (key) { return !shown.has(key); });
      if (changed && note.dataset.reload === "1") {
        // A page without inputs to lose (a campaign's rollback waves
        // appeared): show the new rows at once.
        window.location.reload();
        return;
      }
      note.textContent = changed
        ? "Rows came or went: reload the page to see them."
        : "Live · updated " + new Date().toLocaleTimeString();
      note.dataset.updates = String(Number(note.dataset.updates || "0") + 1);
    } catch (err) {
      note.textContent = "Live updates paused: " + err.message;
    }
    schedule(PERIOD_MS);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      window.clearTimeout(timer);
      timer = null;
      note.textContent = "Live updates paused while the tab is hidden.";
    } else {
      schedule(0);
    }
  });

  schedule(PERIOD_MS);
})();

// "Copy" next to a secret shown once (a new API token): the button is
// hidden in the HTML and shown only where the clipboard can be written,
// so without JavaScript the page simply says to copy it by hand.
(function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(
        function () { button.textContent = "Copied"; },
        function () { button.textContent = "Copy failed: select the text and copy it"; }
      );
    });
  });
})();
