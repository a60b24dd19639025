// Ask: the question box, the streamed answer with its [n] citations, the cited passage with
// the quote highlighted, and a thumbs up or down (with a comment) on each answer.
import * as api from "./api.js";
import { $, fileName, h } from "./dom.js";

// How the extractive answerer joins the sentences it quotes from one passage.
const QUOTE_SEPARATOR = " … ";
let asking = null;

export function initAsk() {
  const form = $("#ask-form");
  const question = $("#question");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || asking) return;
    ask(text);
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

/** Stop an answer in flight (the key was forgotten). */
export function stopAsking() {
  if (asking) asking.abort();
}

export function clearAnswers() {
  $("#answers").replaceChildren();
}

async function ask(question) {
  const button = $("#ask-button");
  const card = h("article", { class: "answer", "aria-busy": "true", "aria-label": `Answer to: ${question}` });
  const text = h("p", { class: "text" });
  card.append(h("p", { class: "q" }, question), text);
  $("#answers").prepend(card);
  button.disabled = true;
  button.textContent = "Asking…";
  asking = new AbortController();
  let streamed = "";
  let final = null;
  try {
    for await (const { event, data } of api.askStream(question, asking.signal)) {
      if (event === "delta") {
        streamed += data.text;
        text.textContent = streamed;
      } else if (event === "final") {
        final = data;
      } else if (event === "error") {
        throw new api.ApiError(data.error.code, data.error);
      }
    }
    if (!final) throw new api.ApiError(0, { message: "the answer stream ended before its end" });
    renderAnswer(card, question, final);
  } catch (err) {
    if (err && err.name === "AbortError") {
      card.remove();
    } else {
      card.classList.add("failed");
      card.append(h("p", { class: "error", role: "alert" }, api.describe(err)));
    }
  } finally {
    card.setAttribute("aria-busy", "false");
    button.disabled = false;
    button.textContent = "Ask";
    asking = null;
  }
}

function renderAnswer(card, question, answer) {
  card.replaceChildren(h("p", { class: "q" }, question));
  if (!answer.found) {
    card.classList.add("notfound");
    card.append(h("p", { class: "flag notfound" }, "Not found in the documents"));
  }
  if (answer.degraded) {
    card.classList.add("degraded");
    card.append(
      h("p", { class: "flag degraded" }, "Degraded answer: the language model did not write all of it"),
    );
  }
  if (answer.warnings && answer.warnings.length) {
    card.append(h("ul", { class: "warnings" }, answer.warnings.map((w) => h("li", {}, w))));
  }
  card.append(h("p", { class: "text" }, withCitationLinks(answer.answer, answer.citations)));
  if (answer.citations.length) {
    card.append(
      h("p", { class: "hint" }, "Sources (select one to read the passage):"),
      h(
        "ol",
        { class: "sources" },
        answer.citations.map((c, i) =>
          h(
            "li",
            {},
            h(
              "button",
              { type: "button", onclick: () => openPassage(c, i + 1) },
              `[${i + 1}] ${citationLabel(c)}`,
            ),
          ),
        ),
      ),
    );
  }
  card.append(timings(answer), feedbackForm(question, answer));
}

function citationLabel(c) {
  const parts = [fileName(c.source)];
  if (c.page != null) parts.push(`page ${c.page}`);
  if (c.section) parts.push(c.section);
  return parts.join(" · ");
}

/** The answer's text with each [n] a link to citation n (unknown numbers stay text). */
function withCitationLinks(text, citations) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    const citation = citations[n - 1];
    if (!citation) continue;
    out.push(text.slice(last, match.index));
    out.push(
      h(
        "a",
        {
          href: "#",
          class: "cite",
          "aria-label": `source ${n}: ${citationLabel(citation)}`,
          onclick: (event) => {
            event.preventDefault();
            openPassage(citation, n);
          },
        },
        `[${n}]`,
      ),
    );
    last = match.index + match[0].length;
  }
  out.push(text.slice(last));
  return out;
}

function timings(answer) {
  const rows = Object.entries(answer.timings_ms || {}).map(([stage, ms]) => [
    h("dt", {}, stage),
    h("dd", {}, `${Math.round(ms).toLocaleString()} ms`),
  ]);
  if (answer.cached) rows.push([h("dt", {}, "cache"), h("dd", {}, "answered from the cache")]);
  return h(
    "details",
    { class: "timings" },
    h("summary", {}, "Timings"),
    h("dl", {}, rows),
  );
}

// -- the cited passage ---------------------------------------------------------------------

async function openPassage(citation, n) {
  const dialog = $("#passage-dialog");
  $("#passage-title").textContent = `[${n}] ${fileName(citation.source)}`;
  const meta = [["Document", citation.source]];
  meta.push(["Page", citation.page != null ? String(citation.page) : "–"]);
  meta.push(["Section", citation.section || "–"]);
  $("#passage-meta").replaceChildren(...meta.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const note = $("#passage-note");
  const body = $("#passage-text");
  note.hidden = true;
  body.replaceChildren(h("mark", {}, citation.text));
  if (!dialog.open) dialog.showModal();
  if (!citation.chunk_id) return;
  try {
    const passage = await api.call("GET", `/v1/passages/${encodeURIComponent(citation.chunk_id)}`);
    body.replaceChildren(...highlighted(passage.text, citation.text));
  } catch (err) {
    note.textContent =
      err.status === 404
        ? "This passage is no longer in the index (its document changed since the answer); the quoted text is shown."
        : api.describe(err);
    note.hidden = false;
  }
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The passage as text nodes with every quoted piece in a <mark>. */
export function highlighted(passage, quote) {
  const ranges = [];
  for (const piece of quote.split(QUOTE_SEPARATOR)) {
    const words = piece.trim().split(/\s+/).filter(Boolean).map(escapeRegExp);
    if (!words.length) continue;
    const match = new RegExp(words.join("\\s+")).exec(passage);
    if (match) ranges.push([match.index, match.index + match[0].length]);
  }
  if (!ranges.length) {
    // The quote is not found word for word (an LLM may paraphrase): show it apart.
    return [passage, "\n\nQuoted: ", h("mark", {}, quote)];
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const out = [];
  let at = 0;
  for (const [start, end] of ranges) {
    if (end <= at) continue;
    out.push(passage.slice(at, Math.max(at, start)));
    out.push(h("mark", {}, passage.slice(Math.max(at, start), end)));
    at = end;
  }
  out.push(passage.slice(at));
  return out;
}

// -- feedback ------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

/** A thumb drawn in SVG (an emoji needs a font the reader may not have); CSS turns it down. */
function thumb() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "thumb");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute(
    "d",
    "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 7.9 6 8.4 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z",
  );
  svg.append(path);
  return svg;
}

function feedbackForm(question, answer) {
  let rating = null;
  const id = `c${Math.random().toString(36).slice(2, 10)}`;
  const up = h("button", { type: "button", "aria-pressed": "false", class: "up" }, thumb(), "Helpful");
  const down = h("button", { type: "button", "aria-pressed": "false", class: "down" }, thumb(), "Not helpful");
  const comment = h("textarea", { id, rows: 2, maxlength: 4000 });
  const send = h("button", { type: "submit", class: "small", disabled: true }, "Send feedback");
  const status = h("p", { class: "done", role: "status" });
  status.hidden = true;
  const choose = (value) => {
    rating = value;
    up.setAttribute("aria-pressed", String(value === "up"));
    down.setAttribute("aria-pressed", String(value === "down"));
    send.disabled = false;
  };
  up.addEventListener("click", () => choose("up"));
  down.addEventListener("click", () => choose("down"));
  const form = h(
    "form",
    {},
    h(
      "fieldset",
      { class: "feedback" },
      h("legend", {}, "Was this answer helpful?"),
      h("div", { class: "thumbs" }, up, down),
      h("label", { for: id }, "Comment (optional)"),
      comment,
      h("div", { class: "row" }, send),
      status,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!rating) return;
    send.disabled = true;
    try {
      const stored = await api.call("POST", "/v1/feedback", {
        json: {
          rating,
          question,
          answer: answer.answer,
          citations: answer.citations,
          comment: comment.value.trim() || null,
          found: answer.found,
          degraded: answer.degraded,
        },
      });
      for (const el of [up, down, comment]) el.disabled = true;
      send.hidden = true;
      status.className = "done";
      status.textContent = `Thank you: feedback recorded (${rating === "up" ? "helpful" : "not helpful"}).`;
      status.dataset.feedbackId = stored.feedback_id;
      status.hidden = false;
    } catch (err) {
      send.disabled = false;
      status.textContent = api.describe(err);
      status.className = "error";
      status.hidden = false;
    }
  });
  return form;
}
