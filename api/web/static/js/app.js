// The page's entry point: the key, what it may do, and the three parts (ask, documents,
// evaluation). With authentication on, nothing but the key form shows until a key works.
import * as api from "./api.js";
import { clearAnswers, initAsk, stopAsking } from "./ask.js";
import { $, h, say, unsay, wireDialogs } from "./dom.js";
import { startDocuments, stopDocuments } from "./documents.js";
import { clearRuns, loadRuns } from "./evals.js";

const RANK = { ask: 1, write: 2, admin: 3 };
const WHAT = {
  ask: "This key may ask questions and give feedback. Uploading and deleting documents need a write key; evaluation needs an admin key.",
  write: "This key may ask, upload and delete documents. Evaluation runs need an admin key.",
  admin: "This key may do everything: ask, manage documents and see evaluation runs.",
};

function showSignin(message) {
  stopAsking();
  stopDocuments();
  clearAnswers();
  clearRuns();
  $("#app").hidden = true;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  $("#signin").hidden = false;
  const error = $("#key-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("#key-input").value = "";
  $("#key-input").focus();
}

async function showApp(me) {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#nav").hidden = false;
  const rank = RANK[me.scope] || 0;
  for (const el of document.querySelectorAll("[data-needs]")) {
    el.hidden = rank < RANK[el.dataset.needs];
  }
  $("#who").hidden = false;
  $("#who-text").textContent = me.authentication
    ? `Key “${me.name}” · ${me.scope}`
    : "Authentication is off (no API keys exist yet)";
  $("#forget-key").hidden = !me.authentication;
  $("#scope-note").replaceChildren(
    ...(me.authentication
      ? [WHAT[me.scope]]
      : ["Anyone who reaches this address may do everything: ", h("code", {}, "docqa keys create"), " makes a key and from then on one is needed."]),
  );
  await showCollections(me, rank);
  if (rank >= RANK.write) startDocuments();
  if (rank >= RANK.admin) loadRuns();
  $("#question").focus();
}

// The collections this key may use, as /v1/models names them (docqa:<name>); a choice only
// when there is more than one. Switching starts the page over in the chosen collection.
async function showCollections(me, rank) {
  let names = me.collections;
  if (!names) {
    try {
      const { data } = await api.call("GET", "/v1/models");
      names = ["default", ...data.map((m) => m.id).filter((id) => id.startsWith("docqa:")).map((id) => id.slice(6))];
    } catch {
      names = [];
    }
  }
  const pick = $("#collection");
  const current = api.getCollection() || (me.collections && me.collections.length === 1 ? me.collections[0] : "default");
  pick.replaceChildren(...names.map((name) => h("option", { value: name }, name)));
  pick.value = names.includes(current) ? current : names[0] || "";
  // Named on every request from now on (a key limited to several has no default).
  if (pick.value) api.setCollection(pick.value);
  $("#collection-pick").hidden = names.length < 2;
  pick.onchange = () => {
    api.setCollection(pick.value);
    stopAsking();
    clearAnswers();
    stopDocuments();
    if (rank >= RANK.write) startDocuments();
    say(`Now working in the collection “${pick.value}”.`);
  };
}

async function start() {
  unsay();
  let me;
  try {
    me = await api.call("GET", "/v1/me");
  } catch (err) {
    if (err.status === 401) return; // the sign-in form is shown by the listener below
    say(`docqa cannot be reached: ${api.describe(err)}`, { bad: true, keep: true });
    return;
  }
  showApp(me);
}

// Any 401 (no key yet, a wrong one, one revoked while the page is open): back to the form,
// with nothing of the documents left on screen. No key yet is no error; a refused key is.
window.addEventListener("docqa:unauthorized", (event) => {
  const hadKey = Boolean(api.getKey());
  api.forgetKey();
  api.setCollection("");
  showSignin(hadKey ? api.describe(event.detail) : "");
});

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#key-input").value.trim();
  if (!key) {
    showSignin("Paste a key first.");
    return;
  }
  api.setKey(key);
  start();
});

$("#forget-key").addEventListener("click", () => {
  api.forgetKey();
  api.setCollection("");
  showSignin("");
});

wireDialogs();
initAsk();
start();
