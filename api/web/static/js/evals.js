// Evaluation: the stored benchmark runs and their reports (admin keys only).
import * as api from "./api.js";
import { $, h, say, when } from "./dom.js";

export async function loadRuns() {
  const body = $("#run-table tbody");
  try {
    const { runs } = await api.call("GET", "/v1/eval/runs", { query: { limit: 50 } });
    body.replaceChildren(...(runs.length ? runs.map(row) : [empty()]));
  } catch (err) {
    if (err.status === 401) return;
    body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "empty error" }, api.describe(err))));
  }
}

export function clearRuns() {
  $("#run-table tbody").replaceChildren();
}

function empty() {
  return h(
    "tr",
    {},
    h("td", { colspan: 8, class: "empty" }, "No evaluation runs yet: run ", h("code", {}, "docqa eval run --benchmark FILE"), " on the server."),
  );
}

function metric(run, name, percent = false) {
  const value = run.metrics[name];
  if (value == null) return "–";
  return percent ? `${(value * 100).toFixed(1)}%` : value.toFixed(3);
}

function row(run) {
  const note = run.is_baseline ? "baseline" : run.label || "";
  return h(
    "tr",
    {},
    h("td", { "data-label": "When" }, when(run.created_at)),
    h("td", { "data-label": "Benchmark" }, run.benchmark),
    h("td", { class: "num", "data-label": "Questions" }, String(run.questions)),
    h("td", { class: "num", "data-label": "Hit@5" }, metric(run, "hit@5")),
    h("td", { class: "num", "data-label": "F1" }, metric(run, "f1")),
    h("td", { class: "num", "data-label": "Not found" }, metric(run, "not_found_rate", true)),
    h("td", { "data-label": "Note" }, note, run.warnings.length ? h("span", { class: "warn" }, `⚠ ${run.warnings.length} warnings`) : null),
    h(
      "td",
      { class: "actions" },
      h("button", { type: "button", class: "quiet small", "aria-label": `Report of run ${run.run_id}`, onclick: () => openReport(run) }, "Report"),
    ),
  );
}

async function openReport(run) {
  const dialog = $("#report-dialog");
  const frame = $("#report-frame");
  $("#report-title").textContent = `Report: ${run.benchmark}, ${when(run.created_at)}`;
  frame.srcdoc = "<p style='font-family:sans-serif'>Loading the report…</p>";
  dialog.showModal();
  try {
    // Fetched with the key (a plain link would carry none) and shown in a sandboxed frame:
    // the report is docqa's own self-contained HTML, and runs no script here.
    frame.srcdoc = await api.text(run.report_url);
  } catch (err) {
    frame.srcdoc = "";
    dialog.close();
    say(`The report could not be opened: ${api.describe(err)}`, { bad: true });
  }
}
