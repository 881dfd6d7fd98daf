// casecast console — what every part of the console shares: the token and the API,
// notices (errors that go away by themselves), polling, the event log, and the
// state the browser tests read (window.casecastConsole).
//
//  - Every request carries the page's ?token= as `Authorization: Bearer`. A failed
//    action shows a notice in the corner (the server's words, a hint for 401/403),
//    gone after a while or when dismissed; it never covers the program. A failing
//    poll shows as the connection line in the header, cleared by the next success.
//  - Polling: one Poller per resource, never overlapping (the next run is scheduled
//    when the previous one ends), paused while the page is hidden, stopped when the
//    token is refused (401; 403 stops until another event is opened).

import { h } from "./dom.js";

export const $ = (id) => document.getElementById(id);
export const token = new URLSearchParams(location.search).get("token") ?? "";
export const enc = encodeURIComponent;

export const hooks = {
  events: [], event: null, participants: [], invitations: [], distribution: null, log: [],
  lastError: null, notices: [], lastInvitation: null, lastCopied: null, live: "closed",
  program: { layout: null, main: null }, next: { layout: "pip", main: null }, switches: null,
  preview: "idle", polling: true, polls: [], chat: [], hands: [],
};
window.casecastConsole = hooks;

/** What the parts share: the open event ({ id, ctrl: AbortController }) and its people. */
export const shared = { current: null, participantsById: new Map(), lastNames: new Map() };

// ---------------------------------------------------------------- formatting

export const nowSecs = () => Math.floor(Date.now() / 1000);
export const fmtWhen = (secs) => (secs == null ? "—" : new Date(secs * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }));
export const fmtKbps = (bps) => (Number.isFinite(bps) ? String(Math.round(bps / 1000)) : "—");
export const fmtNum = (v, digits = 0) => (Number.isFinite(v) ? v.toFixed(digits) : "—");
export const fmtPct = (fraction) => (Number.isFinite(fraction) ? (fraction * 100).toFixed(1) : "—");

export function fmtClock(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** The token's claims (room, role, name, exp), read for display only: the server decides. */
function tokenClaims(t) {
  try {
    const b64 = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}
export const claims = tokenClaims(token);

// ---------------------------------------------------------------- the API

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}
export const isAbort = (err) => err?.name === "AbortError";

/** JSON request with the token; a non-2xx answer throws an ApiError with the server's message. */
export async function api(method, path, { body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError("the server cannot be reached (network error)", 0);
  }
  let text = "";
  try {
    text = await res.text();
  } catch (err) {
    if (isAbort(err) || signal?.aborted) throw new DOMException("aborted", "AbortError");
  }
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { /* plain text (the rooms API answers errors so) */ }
  }
  if (!res.ok) {
    const msg = data && typeof data.error === "string" ? data.error : text.trim() || res.statusText || "request failed";
    throw new ApiError(msg, res.status);
  }
  return data;
}

function tokenHint(status) {
  if (status === 401) {
    return token
      ? "The token in this page's address was refused (bad, expired or revoked): open the console with a valid operator token (?token=…)."
      : "This page needs an operator token: open /console?token=<operator token> (casecast token --room '*' --role operator).";
  }
  if (status === 403) {
    return "This token may not do that: an event's operator token runs that event only; creating and deleting events needs an operator token for room \"*\".";
  }
  return "";
}

// ---------------------------------------------------------------- notices

const NOTICE_MS = 8000;
let lastLoggedError = { msg: "", at: 0 };

/** A notice in the corner: what failed, in the server's words; it goes by itself. */
export function notify(text, { level = "error", hint = "", ms = NOTICE_MS } = {}) {
  const close = h("button", { type: "button", class: "btn btn-small", "aria-label": "Dismiss" }, "×");
  const el = h("div", { class: `notice notice-${level}`, role: level === "error" ? "alert" : "status" },
    h("span", { class: "notice-text" }, text, hint ? h("span", { class: "notice-hint" }, ` ${hint}`) : null), close);
  const entry = { text, level, at: Date.now() };
  hooks.notices.push(entry);
  const remove = () => {
    el.remove();
    hooks.notices = hooks.notices.filter((n) => n !== entry);
  };
  close.addEventListener("click", remove);
  $("notices").append(el);
  // At most four at a time: the oldest goes first.
  while ($("notices").children.length > 4) $("notices").firstElementChild.remove();
  setTimeout(remove, hint ? ms * 2 : ms);
}

/** Shows what failed as a notice (and in the event log, not more than once in 30 s per message). */
export function showError(err) {
  if (isAbort(err)) return;
  const msg = typeof err === "string" ? err : err?.message || String(err);
  hooks.lastError = msg;
  notify(msg, { hint: tokenHint(err?.status) });
  if (msg !== lastLoggedError.msg || Date.now() - lastLoggedError.at > 30_000) {
    lastLoggedError = { msg, at: Date.now() };
    addLog({ source: "page", level: "error", text: `error: ${msg}` });
  }
}

/** The header's connection line: the server is reachable, or what polling meets. */
function connection(problem) {
  const el = $("connection");
  el.hidden = !problem;
  el.textContent = problem ? `⚠ ${problem}` : "";
  hooks.lastError = problem || hooks.lastError;
}

// Last line of defence: nothing may end as an unhandled rejection.
addEventListener("unhandledrejection", (ev) => { ev.preventDefault(); showError(ev.reason); });

/** Runs fn with the buttons disabled, so that a click cannot start the same request twice. */
export async function busy(buttons, fn, after = () => {}) {
  const list = [buttons].flat().filter(Boolean);
  if (list.some((b) => b.disabled && b.dataset.busy === "1")) return undefined;
  for (const b of list) { b.disabled = true; b.dataset.busy = "1"; }
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    for (const b of list) { delete b.dataset.busy; b.disabled = false; }
    after();
  }
}

// ---------------------------------------------------------------- polling

let refused = null; // null, or the status (401/403) that stopped polling
const pollers = new Set();
const failing = new Set(); // pollers whose last run failed: the line stays while there are some

/** Runs fn every `ms` after the previous run ended; never two at once. */
export class Poller {
  constructor(name, fn, ms) {
    Object.assign(this, { name, fn, ms, active: false, running: false, again: false, timer: null });
    pollers.add(this);
  }
  start() {
    this.active = true;
    this.again = false;
    this.kick();
  }
  stop() {
    this.active = false;
    failing.delete(this);
    if (!failing.size) connection(null);
    clearTimeout(this.timer);
    this.timer = null;
  }
  /** Runs now (or right after the run in flight), then on schedule. */
  async kick() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.running) { this.again = true; return; }
    if (!this.active || document.hidden || refused) return;
    this.running = true;
    try {
      await this.fn();
      failing.delete(this);
      if (!failing.size) connection(null);
    } catch (err) {
      if (!isAbort(err)) { failing.add(this); pollFailed(err); }
    } finally {
      this.running = false;
    }
    if (!this.active || document.hidden || refused) return;
    const delay = this.again ? 0 : this.ms;
    this.again = false;
    this.timer = setTimeout(() => this.kick(), delay);
  }
}

/** Polls for the open event: load(id, signal) → data, applied only if still open. */
export function eventPoller(name, ms, load, apply) {
  return new Poller(name, async () => {
    if (!shared.current) return;
    const { id, ctrl } = shared.current;
    const data = await load(id, ctrl.signal);
    if (shared.current?.id === id) apply(data);
  }, ms);
}

function pollFailed(err) {
  if (err?.status === 401 || err?.status === 403) {
    showError(err);
    refused = err.status;
    hooks.polling = false;
    for (const p of pollers) p.stop();
    connection(err.status === 401 ? "this page's token was refused: updates stopped" : null);
    return;
  }
  connection(err?.status === 0 ? "the server cannot be reached — retrying" : `updates failing: ${err?.message ?? err}`);
}

/** Restarts polling after a 403 (another event is opened); a refused token (401) stays refused. */
export function resumePolling(start) {
  if (refused !== 403) return;
  refused = null;
  hooks.polling = true;
  start();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  for (const p of pollers) if (p.active) p.kick();
});

// ---------------------------------------------------------------- event log

const LOG_MAX = 500;
const LOG_SHOWN = 200;
let logSeq = 0;
const logKeys = new Set();

/** Adds an entry {at (ms), source: "audit"|"page", level, text}; entries with a key once only. */
export function addLog({ at = Date.now(), source, level = "info", text, key = null, action = null }) {
  if (key) {
    if (logKeys.has(key)) return;
    logKeys.add(key);
  }
  hooks.log.push({ at, time: new Date(at).toISOString(), source, level, text, action, seq: logSeq++ });
  hooks.log.sort((a, b) => b.at - a.at || b.seq - a.seq);
  if (hooks.log.length > LOG_MAX) hooks.log.length = LOG_MAX;
  renderLogSoon();
}

/** Empties the log (another event is opened). */
export function clearLog() {
  logKeys.clear();
  hooks.log = [];
  $("log").replaceChildren();
}

let logFrame = 0;
function renderLogSoon() {
  if (logFrame) return;
  logFrame = requestAnimationFrame(() => { logFrame = 0; renderLog(); });
  // A hidden page gets no animation frames: render anyway, shortly.
  setTimeout(() => { if (logFrame) { cancelAnimationFrame(logFrame); logFrame = 0; renderLog(); } }, 250);
}
function renderLog() {
  $("log").replaceChildren(...hooks.log.slice(0, LOG_SHOWN).map((e) => h("li", { class: `log-entry log-${e.level}`, dataset: { source: e.source } },
    h("time", { datetime: e.time, class: "log-time" }, fmtClock(e.at)),
    h("span", { class: "log-source" }, e.source),
    h("span", { class: "log-text" }, e.text))));
}

/** Copies text (the Clipboard API needs a secure context; otherwise the old way). */
export async function copy(text, button, input) {
  if (!text) return;
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch { /* fall back below */ }
  if (!ok) {
    const field = input ?? h("textarea", { class: "visually-hidden", readonly: true });
    if (!input) { field.value = text; document.body.append(field); }
    field.select();
    try { ok = document.execCommand("copy"); } catch { ok = false; }
    if (!input) field.remove();
  }
  hooks.lastCopied = text;
  if (!ok && input) { input.focus(); input.select(); } // the browser refused: the text is selected for Ctrl+C
  if (button) {
    const label = button.dataset.label ?? button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : input ? "Press Ctrl+C" : "Copy failed";
    if (!ok) button.title = `The browser refused to copy: ${text}`;
    setTimeout(() => { button.textContent = label; delete button.dataset.label; }, ok ? 1500 : 4000);
  }
}
