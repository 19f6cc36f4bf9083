// Sortable tables for the static report site: click a column's header to sort by it,
// again to reverse. Cells sort by their data-sort value (the number behind the text),
// else by their text; empty values go last either way. No dependencies, no network.
"use strict";

function sortKey(cell) {
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  const number = parseFloat(raw);
  if (raw === "" || raw === "–") return { empty: true };
  return Number.isNaN(number) ? { text: raw.toLowerCase() } : { number: number };
}

function compare(a, b) {
  if (a.empty || b.empty) return (a.empty ? 1 : 0) - (b.empty ? 1 : 0);
  if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
  const x = a.number !== undefined ? String(a.number) : a.text;
  const y = b.number !== undefined ? String(b.number) : b.text;
  return x < y ? -1 : x > y ? 1 : 0;
}

function sortBy(table, index, button) {
  const header = button.closest("th");
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).map((row, i) => ({ row, i, key: sortKey(row.cells[index]) }));
  rows.sort((p, q) => {
    const empty = (p.key.empty ? 1 : 0) - (q.key.empty ? 1 : 0);
    if (empty) return empty;
    return (ascending ? 1 : -1) * compare(p.key, q.key) || p.i - q.i;
  });
  for (const { row } of rows) body.appendChild(row);
}

function makeSortable(table) {
  const cells = table.tHead ? table.tHead.rows[0].cells : [];
  Array.from(cells).forEach((th, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.title = "sort by this column";
    while (th.firstChild) button.appendChild(th.firstChild);
    th.appendChild(button);
    button.addEventListener("click", () => sortBy(table, index, button));
  });
}

document.querySelectorAll("table.sortable").forEach(makeSortable);
