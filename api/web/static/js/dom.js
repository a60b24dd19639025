// Building elements without innerHTML: every text from docqa (file names, answers, passages)
// goes into the page as text nodes, never as markup.

/** h("button", {class: "quiet", onclick: fn}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** "3 May 2026, 14:05" in the reader's own locale and time zone. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** The last part of a path: what a person calls the file. */
export function fileName(source) {
  const parts = String(source).split(/[\\/]/);
  return parts[parts.length - 1] || String(source);
}

const notice = () => document.getElementById("notice");
let noticeTimer = null;

/** A short message at the top of the page, read out by screen readers. */
export function say(message, { bad = false, keep = false } = {}) {
  const el = notice();
  el.textContent = message;
  el.classList.toggle("bad", bad);
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (!keep) noticeTimer = setTimeout(() => (el.hidden = true), bad ? 12000 : 6000);
}

export function unsay() {
  notice().hidden = true;
}

/** Close buttons of every dialog (Escape closes them natively). */
export function wireDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target !== dialog) return;
      const box = dialog.getBoundingClientRect();
      const inside =
        event.clientX >= box.left && event.clientX <= box.right &&
        event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) dialog.close();
    });
  }
}
