// The officer console's only script (served from /static: the CSP allows no inline script).
// Type a code and press Enter (a plain form submit); the code's DOF text shows as you type;
// the search box filters the code list; a placeholder page reloads until the image arrives.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("code-table");
  const texts = new Map();
  if (table) {
    for (const row of table.tBodies[0].rows) {
      texts.set(row.dataset.code, row.cells[1].textContent);
    }
  }
  const code = document.getElementById("code");
  const out = document.getElementById("code-text");
  const describe = () => {
    if (!code || !out) return;
    const v = code.value.trim();
    out.textContent = v === "" ? "" : (texts.get(String(Number(v))) || "not a DOF code");
  };
  if (code) {
    code.addEventListener("input", describe);
    describe();
  }
  const search = document.getElementById("code-search");
  if (search && table) {
    search.addEventListener("input", () => {
      const q = search.value.trim().toUpperCase();
      for (const row of table.tBodies[0].rows) {
        const hit = q === "" || row.dataset.code.startsWith(q) || row.cells[1].textContent.includes(q);
        row.hidden = !hit;
      }
    });
    search.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && code) code.focus();
    });
  }
  if (table) {
    table.addEventListener("click", (e) => {
      const row = e.target.closest("tr[data-code]");
      const target = code || document.querySelector("input.code");
      if (row && target) {
        target.value = row.dataset.code;
        target.focus();
        describe();
      }
    });
  }
  const img = document.getElementById("evidence");
  if (img) {
    img.addEventListener("error", () => {
      const div = document.createElement("div");
      div.className = "placeholder";
      div.id = "evidence-pending";
      div.textContent = "Evidence image not readable from the store yet; this page refreshes by itself.";
      img.replaceWith(div);
      scheduleReload();
    });
  }
  function scheduleReload() {
    setTimeout(() => {
      if (!code || code.value.trim() === "") location.reload();
      else scheduleReload();
    }, 5000);
  }
  if (document.getElementById("evidence-pending") || document.getElementById("empty")) scheduleReload();
});
