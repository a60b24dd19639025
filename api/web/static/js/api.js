// Every request the page makes to docqa goes through this module, so what all of them share
// lives in one place: the API key and the collection (tenant) the page works in.

const KEY_ITEM = "docqa.apiKey";
const COLLECTION_ITEM = "docqa.collection";

// Routes that name the collection in their JSON body; the others take `?collection=`.
const BODY_ROUTES = new Set(["/v1/ask", "/v1/search", "/v1/feedback"]);
const QUERY_ROUTES = ["/v1/documents", "/v1/passages/"];

/** The collection the page works in; "" lets docqa choose (the key's own, or default). */
export function getCollection() {
  return sessionStorage.getItem(COLLECTION_ITEM) || "";
}

export function setCollection(name) {
  if (name) sessionStorage.setItem(COLLECTION_ITEM, name);
  else sessionStorage.removeItem(COLLECTION_ITEM);
}

function scoped(path, json, query) {
  const collection = getCollection();
  if (!collection) return { json, query };
  if (BODY_ROUTES.has(path) && json && typeof json === "object") {
    return { json: { ...json, collection }, query };
  }
  if (QUERY_ROUTES.some((prefix) => path.startsWith(prefix))) {
    return { json, query: { ...(query || {}), collection } };
  }
  return { json, query };
}

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** A refused or failed request, in docqa's error shape. */
export class ApiError extends Error {
  constructor(status, error, retryAfter = null) {
    super((error && error.message) || (status ? `HTTP ${status}` : "no answer from docqa"));
    this.status = status;
    this.type = error && error.type;
    this.requestId = error && error.request_id;
    this.retryAfter = retryAfter;
  }
}

/** What to tell a person about a failed request, in plain words. */
export function describe(err) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong in the page: ${err && err.message ? err.message : err}`;
  }
  switch (err.status) {
    case 0:
      return "docqa did not answer. Is the server running? Try again in a moment.";
    case 401:
      return "docqa refused this key (wrong, revoked or missing). Paste a valid API key.";
    case 403:
      return `This key may not do that. ${err.message}`;
    case 429: {
      const wait = err.retryAfter != null ? `${err.retryAfter} seconds` : "a little while";
      return `Too many requests with this key: try again in ${wait}.`;
    }
    default:
      return err.requestId ? `${err.message} (request id ${err.requestId})` : err.message;
  }
}

// A 401 means the key no longer works: the page goes back to asking for one.
function refused(error) {
  if (error.status === 401) {
    window.dispatchEvent(new CustomEvent("docqa:unauthorized", { detail: error }));
  }
  return error;
}

function headers(extra = {}) {
  const all = { ...extra };
  const key = getKey();
  if (key) all.Authorization = `Bearer ${key}`;
  return all;
}

function seconds(value) {
  const n = Number.parseInt(value || "", 10);
  return Number.isFinite(n) ? n : null;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  return refused(
    new ApiError(response.status, body && body.error, seconds(response.headers.get("Retry-After"))),
  );
}

async function send(method, path, options = {}) {
  const { accept } = options;
  const { json, query } = scoped(path, options.json, options.query);
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value != null) url.searchParams.set(name, value);
  }
  const extra = {};
  if (json !== undefined) extra["Content-Type"] = "application/json";
  if (accept) extra.Accept = accept;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: headers(extra),
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** A JSON call: resolves to the parsed body, rejects with an ApiError. */
export async function call(method, path, options = {}) {
  const response = await send(method, path, options);
  return response.status === 204 ? null : response.json();
}

/** A call whose answer is text (an eval report's HTML). */
export async function text(path) {
  const response = await send("GET", path, { accept: "text/html" });
  return response.text();
}

/**
 * Upload one file in its own request, so each file has its own progress.
 * onProgress(fraction) follows the bytes sent; resolves to the 202 body (job and document ids).
 */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const url = new URL("/v1/documents", window.location.origin);
    if (getCollection()) url.searchParams.set("collection", getCollection());
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
      } else {
        reject(refused(new ApiError(xhr.status, body && body.error, seconds(xhr.getResponseHeader("Retry-After")))));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, null)));
    const form = new FormData();
    form.append("files", file, file.name);
    xhr.send(form);
  });
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

/**
 * Ask with `"stream": true`: yields the Server-Sent Events of /v1/ask as {event, data}
 * (delta, final, error). A failure before the stream begins rejects with an ApiError.
 */
export async function* askStream(question, signal) {
  let response;
  try {
    response = await fetch("/v1/ask", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(scoped("/v1/ask", { question, stream: true }).json),
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, null);
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) yield event;
    }
  }
  const last = parseEvent(buffer.trim());
  if (last) yield last;
}
