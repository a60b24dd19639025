// Documents: drag-and-drop upload (one request per file, so each has its own progress), the
// table of documents that follows indexing live, and delete with confirmation.
import * as api from "./api.js";
import { $, fileName, h, say, when } from "./dom.js";

const PAGE_SIZE = 100;
const BUSY_POLL_MS = 2000; // while something is queued or indexing (30 a minute: within any rate limit)
const IDLE_POLL_MS = 15000; // otherwise: uploads from elsewhere still show up
const PARALLEL_UPLOADS = 2;
const WORKING = new Set(["queued", "indexing", "deleting"]);

let offset = 0;
let timer = null;
let running = false;
let wired = false;
const waiting = []; // files not yet sent
let sending = 0;
const uploads = new Map(); // document id -> its row in the upload list

export function startDocuments() {
  if (!wired) wire();
  running = true;
  refresh();
}

export function stopDocuments() {
  running = false;
  clearTimeout(timer);
  waiting.length = 0;
  uploads.clear();
  $("#uploads").replaceChildren();
  $("#uploads-head").hidden = true;
  $("#doc-table tbody").replaceChildren();
  shown = "";
}

function wire() {
  wired = true;
  const zone = $("#dropzone");
  const input = $("#file-input");
  $("#choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    enqueue([...input.files]);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    enqueue([...(event.dataTransfer ? event.dataTransfer.files : [])]);
  });
  // A file dropped beside the zone would make the browser open it in place of the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("#clear-uploads").addEventListener("click", () => {
    for (const li of [...$("#uploads").children]) {
      if (li.classList.contains("done") || li.classList.contains("failed")) li.remove();
    }
    for (const [id, li] of uploads) if (!li.isConnected) uploads.delete(id);
    $("#uploads-head").hidden = !$("#uploads").children.length;
  });
  $("#doc-prev").addEventListener("click", () => page(-PAGE_SIZE));
  $("#doc-next").addEventListener("click", () => page(PAGE_SIZE));
  $("#confirm-delete").addEventListener("click", confirmDelete);
}

function page(delta) {
  offset = Math.max(0, offset + delta);
  refresh();
}

// -- uploads ---------------------------------------------------------------------------------

function enqueue(files) {
  if (!files.length) return;
  $("#uploads-head").hidden = false;
  for (const file of files) {
    const progress = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
    const state = h("span", { class: "state" }, "waiting to upload");
    const li = h("li", { dataset: { file: file.name } }, h("span", { class: "name" }, file.name), progress, state);
    $("#uploads").append(li);
    waiting.push({ file, li, progress, state });
  }
  pump();
}

function pump() {
  while (sending < PARALLEL_UPLOADS && waiting.length) {
    const item = waiting.shift();
    sending += 1;
    send(item).finally(() => {
      sending -= 1;
      pump();
    });
  }
}

async function send({ file, li, progress, state }) {
  state.textContent = "uploading…";
  try {
    const accepted = await api.upload(file, (fraction) => {
      progress.value = Math.round(fraction * 100);
      state.textContent = `uploading… ${Math.round(fraction * 100)}%`;
    });
    progress.value = 100;
    const doc = accepted.documents[0];
    li.dataset.documentId = doc.document_id;
    uploads.set(doc.document_id, li);
    showUploadState(li, "queued");
    refreshSoon();
  } catch (err) {
    li.classList.add("failed");
    state.textContent = `not uploaded: ${api.describe(err)}`;
  }
}

function showUploadState(li, status, doc) {
  const progress = li.querySelector("progress");
  const state = li.querySelector(".state");
  li.classList.toggle("done", status === "indexed");
  li.classList.toggle("failed", status === "failed");
  if (status === "indexed") {
    progress.value = 100;
    state.textContent = `indexed: ${doc.chunk_count} chunks`;
  } else if (status === "failed") {
    state.textContent = `failed: ${doc.error || doc.reason || "see the table"}`;
  } else {
    // Indexing has no byte count to follow: an indeterminate bar while it runs.
    progress.removeAttribute("value");
    state.textContent = status === "queued" ? "uploaded; waiting to be indexed" : "indexing…";
  }
}

// -- the table -------------------------------------------------------------------------------

function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 200);
}

async function refresh() {
  clearTimeout(timer);
  if (!running) return;
  let busy = sending > 0 || waiting.length > 0;
  try {
    const list = await api.call("GET", "/v1/documents", { query: { limit: PAGE_SIZE, offset } });
    if (!running) return;
    render(list);
    busy = busy || list.documents.some((d) => WORKING.has(d.status));
    for (const doc of list.documents) {
      const li = uploads.get(doc.document_id);
      if (li) showUploadState(li, doc.status, doc);
    }
    // Uploads still waiting may be on another page of the table: keep polling for them.
    busy = busy || [...uploads.values()].some((li) => !li.classList.contains("done") && !li.classList.contains("failed"));
  } catch (err) {
    if (err.status === 401) return;
    say(`The document list could not be loaded: ${api.describe(err)}`, { bad: true });
    if (err.status === 403) return;
  }
  if (running) timer = setTimeout(refresh, busy ? BUSY_POLL_MS : IDLE_POLL_MS);
}

let shown = "";

function render(list) {
  // Redrawn only when something changed, and a focused Delete button keeps the focus: a
  // keyboard user is not thrown back to the top every second while files index.
  const signature = JSON.stringify(list);
  if (signature === shown) return;
  shown = signature;
  const body = $("#doc-table tbody");
  const focused = document.activeElement && document.activeElement.closest("#doc-table tr");
  const focusedId = focused ? focused.dataset.documentId : null;
  const rows = list.documents.map(row);
  body.replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No documents yet: upload some above."))]),
  );
  if (focusedId) {
    const again = body.querySelector(`tr[data-document-id="${CSS.escape(focusedId)}"] button`);
    if (again) again.focus();
  }
  const first = list.total ? list.offset + 1 : 0;
  const last = list.offset + list.documents.length;
  const counts = {};
  for (const d of list.documents) counts[d.status] = (counts[d.status] || 0) + 1;
  const working = (counts.queued || 0) + (counts.indexing || 0);
  $("#doc-summary").textContent =
    list.total > list.limit
      ? `${first}–${last} of ${list.total} documents`
      : `${list.total} document${list.total === 1 ? "" : "s"}` +
        (working ? `, ${working} being indexed` : "") +
        (counts.failed ? `, ${counts.failed} failed` : "");
  $("#doc-pager").hidden = list.total <= list.limit;
  $("#doc-prev").disabled = list.offset === 0;
  $("#doc-next").disabled = last >= list.total;
}

function row(doc) {
  const status = h("td", { "data-label": "Status" }, h("span", { class: `badge ${doc.status}` }, doc.status));
  if (doc.status === "failed" || (doc.error && doc.status !== "indexed")) {
    status.append(h("span", { class: "why" }, [doc.reason ? `${doc.reason}: ` : "", doc.error || ""]));
  } else if (doc.error) {
    // An older version still serves while the newest failed.
    status.append(h("span", { class: "why" }, `latest version failed: ${doc.error}`));
  }
  for (const warning of doc.warnings || []) status.append(h("span", { class: "warn" }, `⚠ ${warning}`));
  const name = fileName(doc.source);
  return h(
    "tr",
    { dataset: { documentId: doc.document_id } },
    h("td", { class: "source", "data-label": "Document", title: doc.source }, name),
    status,
    h("td", { class: "num", "data-label": "Chunks" }, String(doc.chunk_count)),
    h("td", { "data-label": "Last indexed" }, doc.indexed_at ? when(doc.indexed_at) : "never"),
    h(
      "td",
      { class: "actions" },
      h(
        "button",
        {
          type: "button",
          class: "quiet small",
          "aria-label": `Delete ${name}`,
          disabled: doc.status === "deleting",
          onclick: () => askDelete(doc),
        },
        "Delete",
      ),
    ),
  );
}

// -- delete ----------------------------------------------------------------------------------

let toDelete = null;

function askDelete(doc) {
  toDelete = doc;
  const name = fileName(doc.source);
  $("#confirm-title").textContent = `Delete ${name}?`;
  $("#confirm-text").textContent =
    `${name} and its ${doc.chunk_count} chunks leave the index: answers will no longer find or cite it. ` +
    "This cannot be undone (upload the file again to bring it back).";
  $("#confirm-dialog").showModal();
  $("#confirm-dialog [data-close]").focus();
}

async function confirmDelete() {
  const doc = toDelete;
  $("#confirm-dialog").close();
  if (!doc) return;
  toDelete = null;
  try {
    const deleted = await api.call("DELETE", `/v1/documents/${encodeURIComponent(doc.document_id)}`);
    say(`Deleted ${fileName(doc.source)} (${deleted.chunks_removed} chunks removed).`);
    const li = uploads.get(doc.document_id);
    if (li) {
      li.remove();
      uploads.delete(doc.document_id);
    }
  } catch (err) {
    say(`${fileName(doc.source)} was not deleted: ${api.describe(err)}`, { bad: true });
  }
  refresh();
}
