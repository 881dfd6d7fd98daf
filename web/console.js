// casecast — the distribution center's console (/console?token=…). Plain ES module, no build
// step, no libraries.
// The API it speaks: server/src/openapi.json (events, invitations, audit, participants and
// their mute, distribution, the program's switches and layout), and the signaling
// WebSocket for the monitor.
//
//  1. Every request carries the page's ?token= as `Authorization: Bearer`. Errors (the
//     server's {"error": "…"}, or its plain text) go to the #error banner and to
//     window.casecastConsole.lastError; 401/403 add a hint about the token.
//  2. #event=<id> in the hash opens an event's live view (the token stays in the query).
//  3. Live updates over the event's WebSocket (participants, outputs, audit entries),
//     with polling as the fallback while it is down.
//  4. Polling: one Poller per resource, never overlapping (the next run is scheduled when
//     the previous one ends), paused while the page is hidden, stopped when the token is
//     refused (401; 403 stops until another event is opened). Switching events aborts the
//     old event's requests and ignores their late answers.
//  5. The program preview is the program monitor over WebRTC (./monitor.js: a
//     receive-only session in the event's room, a fraction of a second behind), with
//     the surgery feed and a tile per commentator (video, speaking, stats) beside it.
//  6. The event log merges the audit log with what this page observes between polls:
//     participants joining, leaving, media dropping, outputs going up or down, errors.
//  7. window.casecastConsole is kept up to date for the browser tests.

import { h } from "./dom.js";
import { RoomMonitor } from "./monitor.js";

const $ = (id) => document.getElementById(id);
const ui = {
  whoami: $("whoami"), home: $("home"),
  error: $("error"), errorText: $("error-text"), errorHint: $("error-hint"), errorClose: $("error-close"),
  events: $("events"), eventsBody: $("events").tBodies[0], eventsEmpty: $("events-empty"),
  eventsSummary: $("events-summary"), refreshEvents: $("refresh-events"),
  createForm: $("create-event"), createNote: $("create-note"), evSubmit: $("ev-submit"),
  evTitle: $("ev-title"), evId: $("ev-id"), evStart: $("ev-start"), evEnd: $("ev-end"),
  evUplink: $("ev-uplink"), evFps: $("ev-fps"), evBitrate: $("ev-bitrate"), evPreset: $("ev-preset"), evViewing: $("ev-viewing"),
  live: $("live"), liveTitle: $("live-title"), liveStatus: $("live-status"), liveInfo: $("live-info"),
  watchLink: $("watch-link"), onAir: $("on-air"), offAir: $("off-air"), labels: $("labels"), recording: $("recording"),
  endEvent: $("end-event"), deleteEvent: $("delete-event"), closeEvent: $("close-event"),
  preview: $("preview"), previewNote: $("preview-note"), previewState: $("preview-state"),
  sources: $("sources"), feedTile: $("feed-tile"), feedVideo: $("feed-video"), feedStats: $("feed-stats"),
  audioSink: $("audio-sink"), listen: $("listen"),
  layoutButtons: [...document.querySelectorAll("button[data-layout]")], feedMain: $("feed-main"), programState: $("program-state"),
  viewers: $("viewers"), hlsState: $("hls-state"), outputs: $("outputs"),
  aws: $("aws"), awsPhase: $("aws-phase"), awsChannel: $("aws-channel"), awsInput: $("aws-input"),
  awsViewer: $("aws-viewer"), awsNote: $("aws-note"), awsButtons: [$("aws-primary"), $("aws-backup")],
  participants: $("participants"), participantsBody: $("participants").tBodies[0],
  participantsEmpty: $("participants-empty"), participantsSummary: $("participants-summary"),
  invite: $("invite"), invName: $("inv-name"), invRole: $("inv-role"), invTtl: $("inv-ttl"), invSubmit: $("inv-submit"),
  newInvitation: $("new-invitation"), newInvTitle: $("new-inv-title"), newInvNote: $("new-inv-note"),
  newLinkLabel: $("new-link-label"), newLink: $("new-link"), copyLink: $("copy-link"),
  newTokenRow: $("new-token-row"), newToken: $("new-token"), copyToken: $("copy-token"),
  privatePlayback: $("private-playback"), playbackLink: $("playback-link"), playbackRow: $("playback-row"),
  playbackUrl: $("playback-url"), copyPlayback: $("copy-playback"),
  invitations: $("invitations"), invitationsBody: $("invitations").tBodies[0], invitationsEmpty: $("invitations-empty"),
  log: $("log"),
};

const token = new URLSearchParams(location.search).get("token") ?? "";
const enc = encodeURIComponent;
const LAYOUTS = ["pip", "surgery_only", "side_by_side", "grid"];
const LAYOUT_NAMES = { pip: "picture in picture", surgery_only: "surgery only", side_by_side: "side by side", grid: "grid" };
const EVERY = { events: 10_000, participants: 2_000, distribution: 2_000, audit: 5_000, invitations: 10_000 };
const LOG_MAX = 500;
const LOG_SHOWN = 200;

const hooks = {
  events: [], event: null, participants: [], invitations: [], distribution: null, log: [],
  lastError: null, lastInvitation: null, lastCopied: null, live: "closed",
  program: { layout: null, main: null }, switches: null, preview: "idle", polling: true,
};
window.casecastConsole = hooks;
/** The monitor session's inbound statistics per track (for the browser tests). */
hooks.monitorStats = () => preview.monitor?.stats() ?? Promise.resolve([]);

// ---------------------------------------------------------------- helpers


const nowSecs = () => Math.floor(Date.now() / 1000);
const fmtWhen = (secs) => (secs == null ? "—" : new Date(secs * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }));
const fmtKbps = (bps) => (Number.isFinite(bps) ? String(Math.round(bps / 1000)) : "—");
const fmtNum = (v, digits = 0) => (Number.isFinite(v) ? v.toFixed(digits) : "—");
const fmtPct = (fraction) => (Number.isFinite(fraction) ? (fraction * 100).toFixed(1) : "—");

function fmtClock(ms) {
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
const claims = tokenClaims(token);

const randomHex = (n) => [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0")).join("");

/** Runs fn with the buttons disabled, so that a click cannot start the same request twice. */
async function busy(buttons, fn) {
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
    refreshButtons();
  }
}

// ---------------------------------------------------------------- errors and API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}
const isAbort = (err) => err?.name === "AbortError";

/** JSON request with the token; a non-2xx answer throws an ApiError with the server's message. */
async function api(method, path, { body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(`network error: ${err?.message ?? err}`, 0);
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
    throw new ApiError(`${msg} (HTTP ${res.status})`, res.status);
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

let lastLoggedError = { msg: "", at: 0 };
/** Shows an error in the banner (and the event log, not more than once in 30 s per message). */
function showError(err, { fromPoll = false } = {}) {
  if (isAbort(err)) return;
  const msg = typeof err === "string" ? err : err?.message || String(err);
  const hint = tokenHint(err?.status);
  hooks.lastError = msg;
  ui.errorText.textContent = msg;
  ui.errorHint.textContent = hint;
  ui.errorHint.hidden = !hint;
  ui.error.dataset.source = fromPoll ? "poll" : "action";
  ui.error.dataset.status = String(err?.status ?? "");
  ui.error.hidden = false;
  if (msg !== lastLoggedError.msg || Date.now() - lastLoggedError.at > 30_000) {
    lastLoggedError = { msg, at: Date.now() };
    addLog({ source: "page", level: "error", text: `error: ${msg}` });
  }
}
function clearPollError() {
  if (!ui.error.hidden && ui.error.dataset.source === "poll") ui.error.hidden = true;
}
ui.errorClose.addEventListener("click", () => { ui.error.hidden = true; });
// Last line of defence: nothing may end as an unhandled rejection.
addEventListener("unhandledrejection", (ev) => { ev.preventDefault(); showError(ev.reason); });

// ---------------------------------------------------------------- polling

let refused = null; // null, or the status (401/403) that stopped polling
const pollers = new Set();
const failing = new Set(); // pollers whose last run failed: the banner stays while there are some

/** Runs fn every `ms` after the previous run ended; never two at once. */
class Poller {
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
      if (!failing.size) clearPollError();
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

function pollFailed(err) {
  showError(err, { fromPoll: true });
  if (err?.status === 401 || err?.status === 403) {
    refused = err.status;
    hooks.polling = false;
    for (const p of pollers) p.stop();
  }
}

/** Restarts polling after a 403 (another event is opened); a refused token (401) stays refused. */
function resumePolling() {
  if (refused !== 403) return;
  refused = null;
  hooks.polling = true;
  eventsPoller.start();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  for (const p of pollers) if (p.active) p.kick();
});

// ---------------------------------------------------------------- event log

let logSeq = 0;
const logKeys = new Set();

/** Adds an entry {at (ms), source: "audit"|"page", level, text}; entries with a key once only. */
function addLog({ at = Date.now(), source, level = "info", text, key = null, action = null }) {
  if (key) {
    if (logKeys.has(key)) return;
    logKeys.add(key);
  }
  hooks.log.push({ at, time: new Date(at).toISOString(), source, level, text, action, seq: logSeq++ });
  hooks.log.sort((a, b) => b.at - a.at || b.seq - a.seq);
  if (hooks.log.length > LOG_MAX) hooks.log.length = LOG_MAX;
  renderLogSoon();
}

let logFrame = 0;
function renderLogSoon() {
  if (logFrame) return;
  logFrame = requestAnimationFrame(() => { logFrame = 0; renderLog(); });
  // A hidden page gets no animation frames: render anyway, shortly.
  setTimeout(() => { if (logFrame) { cancelAnimationFrame(logFrame); logFrame = 0; renderLog(); } }, 250);
}
function renderLog() {
  ui.log.replaceChildren(...hooks.log.slice(0, LOG_SHOWN).map((e) => h("li", { class: `log-entry log-${e.level}`, dataset: { source: e.source } },
    h("time", { datetime: e.time, class: "log-time" }, fmtClock(e.at)),
    h("span", { class: "log-source" }, e.source),
    h("span", { class: "log-text" }, e.text))));
}

function describeAudit(e) {
  const d = e.detail && typeof e.detail === "object" ? e.detail : {};
  const who = `${e.actor} (${e.actor_role}${e.actor_scope === "*" ? ", all events" : `, ${e.actor_scope}`})`;
  const participantName = (pid) => participantsById.get(pid)?.name ?? lastNames.get(pid) ?? pid;
  const what = {
    "event.create": () => `created the event${d.title ? ` “${d.title}”` : ""}`,
    "event.update": () => `changed the event (${Object.keys(d).join(", ") || "no fields"})`,
    "event.end": () => "ended the event",
    "event.delete": () => "deleted the event",
    "invitation.create": () => `invited ${d.name ?? "someone"} as ${d.role ?? "?"}`,
    "invitation.revoke": () => `revoked the invitation ${invitationName(d.invitation)}`,
    "participant.remove": () => `removed ${participantName(d.participant)}`,
    "playback_token.create": () => `made a playback token${d.viewer ? ` for ${d.viewer}` : ""}`,
    "program.on_air": () => "put the program on air",
    "program.off_air": () => "took the program off air",
  }[e.action];
  return `${who} ${what ? what() : `${e.action}${e.detail != null ? ` ${JSON.stringify(e.detail)}` : ""}`}`;
}

function invitationName(id) {
  const inv = hooks.invitations.find((i) => i.id === id);
  return inv ? `of ${inv.name} (${inv.role})` : String(id ?? "");
}

// ---------------------------------------------------------------- events list

let eventsJson = "";

const eventsPoller = new Poller("events", async () => {
  const list = await api("GET", "/api/events");
  setEvents(Array.isArray(list) ? list : []);
}, EVERY.events);

function setEvents(list) {
  hooks.events = list;
  if (current) {
    const mine = list.find((e) => e.id === current.id);
    if (mine) setCurrentEvent(mine);
    else if (hooks.event?.created_at != null) {
      // It was there and is gone: deleted (here or elsewhere).
      showError(`the event ${current.id} no longer exists (deleted)`);
      closeEvent();
    }
  }
  const json = JSON.stringify(list) + (current?.id ?? "");
  if (json === eventsJson) return;
  eventsJson = json;
  renderEvents();
}

function policySummary(p = {}) {
  return [
    p.commentator_uplink === "audio" ? "audio uplink" : `video ≤${p.commentator_max_fps ?? "?"} fps, ${Math.round((p.commentator_max_bitrate ?? 0) / 1000)} kbit/s`,
    p.latency_preset, p.viewing,
  ].filter(Boolean).join(" · ");
}

function renderEvents() {
  const list = [...hooks.events].sort((a, b) => (a.status === b.status ? 0 : a.status === "ended" ? 1 : -1)
    || (a.starts_at ?? Infinity) - (b.starts_at ?? Infinity) || a.title.localeCompare(b.title));
  ui.eventsBody.replaceChildren(...list.map((e) => {
    const open = () => selectEvent(e.id);
    return h("tr", {
      dataset: { event: e.id, status: e.status }, class: `event-row${current?.id === e.id ? " selected" : ""}`, tabindex: 0,
      "aria-current": current?.id === e.id ? "true" : null, title: "Open the live view",
      onclick: (ev) => { if (!ev.target.closest("button, a")) open(); },
      onkeydown: (ev) => { if ((ev.key === "Enter" || ev.key === " ") && ev.target === ev.currentTarget) { ev.preventDefault(); open(); } },
    },
    h("td", { class: "event-title" }, e.title),
    h("td", { class: "mono" }, e.id),
    h("td", {}, h("span", { class: "status-pill", dataset: { status: e.status } }, e.status)),
    h("td", { class: "nowrap" }, fmtWhen(e.starts_at)),
    h("td", { class: "nowrap" }, fmtWhen(e.ends_at)),
    h("td", { class: "small muted" }, policySummary(e.policy)),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "btn btn-small", "data-action": "open", onclick: open }, "Open"),
      h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "end", disabled: e.status === "ended", onclick: (ev) => endEvent(e.id, ev.currentTarget) }, "End"),
      h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "delete", onclick: (ev) => deleteEvent(e.id, ev.currentTarget) }, "Delete")));
  }));
  ui.eventsEmpty.hidden = list.length > 0;
  const live = list.filter((e) => e.status !== "ended").length;
  ui.eventsSummary.textContent = list.length ? `${list.length} event${list.length === 1 ? "" : "s"}, ${live} not ended` : "";
}

ui.refreshEvents.addEventListener("click", () => { resumePolling(); eventsPoller.start(); });

/** "2025-05-01T14:00" (local time) → Unix seconds, or undefined when empty. */
function localToUnix(value) {
  if (!value) return undefined;
  const ms = new Date(value).getTime();
  if (!Number.isFinite(ms)) throw new ApiError(`not a date: ${value}`, 0);
  return Math.floor(ms / 1000);
}

ui.createForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy(ui.evSubmit, async () => {
    const body = {
      title: ui.evTitle.value.trim(),
      policy: {
        commentator_uplink: ui.evUplink.value,
        commentator_max_fps: Number.parseInt(ui.evFps.value, 10),
        commentator_max_bitrate: Math.round(Number(ui.evBitrate.value) * 1000),
        latency_preset: ui.evPreset.value,
        viewing: ui.evViewing.value,
      },
    };
    const id = ui.evId.value.trim();
    if (id) body.id = id;
    const starts = localToUnix(ui.evStart.value);
    const ends = localToUnix(ui.evEnd.value);
    if (starts !== undefined) body.starts_at = starts;
    if (ends !== undefined) body.ends_at = ends;
    if (starts !== undefined && ends !== undefined && ends <= starts) throw new ApiError("the event must end after it starts", 0);
    const created = await api("POST", "/api/events", { body });
    ui.createNote.textContent = `Created “${created.title}” (${created.id}).`;
    ui.createForm.reset();
    setEvents([...hooks.events.filter((e) => e.id !== created.id), created]);
    eventsPoller.kick();
    selectEvent(created.id);
  });
});

async function endEvent(id, button) {
  const e = hooks.events.find((x) => x.id === id);
  if (!confirm(`End the event “${e?.title ?? id}”? Nobody will be able to join it any more.`)) return;
  await busy([button, ui.endEvent], async () => {
    const ended = await api("POST", `/api/events/${enc(id)}/end`);
    setEvents(hooks.events.map((x) => (x.id === id ? ended : x)));
    if (current?.id === id) auditPoller.kick();
  });
}

async function deleteEvent(id, button) {
  const e = hooks.events.find((x) => x.id === id);
  if (!confirm(`Delete the event “${e?.title ?? id}”? Its invitations stop working. This cannot be undone.`)) return;
  await busy([button, ui.deleteEvent], async () => {
    await api("DELETE", `/api/events/${enc(id)}`);
    if (current?.id === id) closeEvent();
    setEvents(hooks.events.filter((x) => x.id !== id));
    eventsPoller.kick();
  });
}

// ---------------------------------------------------------------- the live view

let current = null; // { id, ctrl: AbortController }
let participantsById = new Map();
const lastNames = new Map(); // participant id → name, kept after they leave (for the log)
let seenParticipants = null; // the previous poll's participants, to tell what changed
let seenOutputs = null;
const removedHere = new Set();
const issued = new Map(); // invitation id → the issued invitation (with its token), this page's only

function hashEvent() {
  return new URLSearchParams(location.hash.slice(1)).get("event");
}

/** Opens an event: through the hash, so that the link can be shared and reloaded. */
function selectEvent(id) {
  if (hashEvent() === id) openEvent(id);
  else location.hash = `event=${enc(id)}`;
}

function route() {
  const id = hashEvent();
  if (id) openEvent(id);
  else if (current) closeEvent({ keepHash: true });
}
addEventListener("hashchange", route);

function openEvent(id) {
  if (current?.id === id) return;
  closeEvent({ keepHash: true });
  resumePolling();
  current = { id, ctrl: new AbortController() };
  hooks.event = hooks.events.find((e) => e.id === id) ?? { id, title: id };
  hooks.participants = [];
  hooks.invitations = [];
  hooks.distribution = null;
  hooks.log = [];
  hooks.program = { layout: null, main: null };
  hooks.switches = null;
  for (const b of [ui.onAir, ui.offAir, ui.labels, ui.recording]) b.setAttribute("aria-pressed", "false");
  ui.labels.textContent = "Labels";
  ui.recording.textContent = "Recording";
  logKeys.clear();
  ui.log.replaceChildren();
  ui.participantsBody.replaceChildren();
  rows.clear();
  ui.invitationsBody.replaceChildren();
  invitationsJson = "";
  ui.newInvitation.hidden = true;
  ui.playbackRow.hidden = true;
  ui.outputs.replaceChildren();
  ui.viewers.textContent = "–";
  ui.hlsState.textContent = "–";
  ui.programState.textContent = "Layout and main source: not changed from this page yet.";
  ui.live.hidden = false;
  document.body.dataset.view = "event";
  renderHead();
  renderProgramButtons();
  eventsJson = "";
  renderEvents();
  addLog({ source: "page", text: `opened the console for ${id}` });
  preview.open(id);
  if (!hooks.events.some((e) => e.id === id)) {
    // Not listed (yet): ask for it, which also says whether it exists.
    api("GET", `/api/events/${enc(id)}`, { signal: current.ctrl.signal })
      .then((e) => { if (current?.id === id) setCurrentEvent(e); })
      .catch((err) => {
        if (isAbort(err)) return;
        showError(err);
        if (err?.status === 404 && current?.id === id) closeEvent();
      });
  }
  for (const p of [participantsPoller, distributionPoller, auditPoller, invitationsPoller]) p.start();
  openLive(id);
}

// Live updates: the event's WebSocket pushes participants and outputs every second
// (and new audit entries). While it is open, those two are not polled; if it drops,
// polling takes over and the socket is tried again.
let live = null;
function openLive(id) {
  closeLive();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/events/${enc(id)}/live?token=${encodeURIComponent(token ?? "")}`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    return;
  }
  live = { ws, id, retry: null };
  ws.onopen = () => {
    if (live?.ws !== ws) return;
    hooks.live = "open";
    participantsPoller.stop();
    distributionPoller.stop();
  };
  ws.onmessage = (ev) => {
    if (live?.ws !== ws || current?.id !== id) return;
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === "snapshot") {
      setParticipants(Array.isArray(m.participants) ? m.participants : []);
      if (m.distribution) setDistribution(m.distribution);
    } else if (m.type === "audit" && !m.backlog) {
      auditPoller.kick();
    }
  };
  ws.onclose = () => {
    if (live?.ws !== ws) return;
    hooks.live = "closed";
    if (current?.id === id) {
      participantsPoller.start();
      distributionPoller.start();
      live.retry = setTimeout(() => { if (current?.id === id) openLive(id); }, 5000);
    }
  };
}

function closeLive() {
  if (!live) return;
  const { ws, retry } = live;
  live = null;
  clearTimeout(retry);
  try { ws.close(); } catch { /* closing anyway */ }
  hooks.live = "closed";
}

function closeEvent({ keepHash = false } = {}) {
  if (!current) return;
  current.ctrl.abort();
  current = null;
  closeLive();
  for (const p of [participantsPoller, distributionPoller, auditPoller, invitationsPoller]) p.stop();
  preview.stop();
  participantsById = new Map();
  seenParticipants = null;
  seenOutputs = null;
  hooks.event = null;
  ui.live.hidden = true;
  document.body.dataset.view = "events";
  if (!keepHash && hashEvent()) history.replaceState(null, "", location.pathname + location.search);
  eventsJson = "";
  renderEvents();
}
ui.closeEvent.addEventListener("click", () => closeEvent());
ui.home.addEventListener("click", (ev) => { ev.preventDefault(); closeEvent(); });

function setCurrentEvent(e) {
  hooks.event = e;
  renderHead();
}

function renderHead() {
  const e = hooks.event;
  if (!e) return;
  ui.liveTitle.textContent = e.title ?? e.id;
  ui.liveStatus.textContent = e.status ?? "";
  ui.liveStatus.dataset.status = e.status ?? "";
  const when = e.starts_at != null || e.ends_at != null ? `${fmtWhen(e.starts_at)} → ${fmtWhen(e.ends_at)}` : "no schedule";
  ui.liveInfo.textContent = `${e.id} · ${when}${e.policy ? ` · ${policySummary(e.policy)}` : ""}`;
  ui.watchLink.href = `/watch/${enc(e.id)}`;
  ui.privatePlayback.hidden = e.policy?.viewing !== "private";
  document.title = `casecast — console — ${e.title ?? e.id}`;
  refreshButtons();
}

function refreshButtons() {
  const ended = hooks.event?.status === "ended";
  if (!ui.endEvent.dataset.busy) ui.endEvent.disabled = ended;
  if (!ui.invSubmit.dataset.busy) ui.invSubmit.disabled = ended;
}

ui.endEvent.addEventListener("click", () => { if (current) endEvent(current.id, ui.endEvent); });
ui.deleteEvent.addEventListener("click", () => { if (current) deleteEvent(current.id, ui.deleteEvent); });

/** Sets program switches (on_air, labels, recording) and shows them at once; the
 * distribution then reports them as the compositor has them. */
function setSwitches(change, buttons) {
  if (!current) return;
  const id = current.id;
  busy(buttons, async () => {
    await api("POST", `/api/events/${enc(id)}/program`, { body: change });
    if (current?.id !== id) return;
    hooks.switches = { ...hooks.switches, ...change };
    renderSwitches(hooks.switches);
    auditPoller.kick();
  });
}

function renderSwitches(sw) {
  if (!sw) return;
  hooks.switches = sw;
  if (typeof sw.on_air === "boolean") {
    ui.onAir.setAttribute("aria-pressed", String(sw.on_air));
    ui.offAir.setAttribute("aria-pressed", String(!sw.on_air));
  }
  for (const b of [ui.labels, ui.recording]) {
    const on = sw[b.dataset.switch];
    if (typeof on !== "boolean") continue;
    b.setAttribute("aria-pressed", String(on));
    b.textContent = `${b.dataset.switch === "labels" ? "Labels" : "Recording"}: ${on ? "on" : "off"}`;
  }
}

for (const button of [ui.onAir, ui.offAir]) {
  button.addEventListener("click", () => setSwitches({ on_air: button.dataset.onAir === "true" }, [ui.onAir, ui.offAir]));
}
for (const button of [ui.labels, ui.recording]) {
  button.addEventListener("click", () => {
    const name = button.dataset.switch;
    setSwitches({ [name]: !(hooks.switches?.[name] ?? true) }, button);
  });
}

// ---------------------------------------------------------------- program layout

function renderProgramButtons() {
  const { layout, main } = hooks.program;
  for (const b of ui.layoutButtons) b.setAttribute("aria-pressed", String(b.dataset.layout === layout));
  ui.feedMain.setAttribute("aria-pressed", String(layout != null && main == null));
  for (const [pid, row] of rows) row.tr.classList.toggle("is-main", main === pid);
  for (const [pid, row] of rows) row.mainButton?.setAttribute("aria-pressed", String(main === pid));
}

async function setProgram(layout, main, button) {
  if (!current) return;
  const id = current.id;
  await busy([button, ...ui.layoutButtons, ui.feedMain], async () => {
    const answer = await api("POST", `/api/events/${enc(id)}/program`, { body: { layout, main } });
    if (current?.id !== id) return;
    hooks.program = { layout: answer?.layout ?? layout, main: answer?.main ?? main ?? null };
    const who = hooks.program.main == null ? "the surgery feed" : (participantsById.get(hooks.program.main)?.name ?? hooks.program.main);
    ui.programState.textContent = `Layout: ${LAYOUT_NAMES[hooks.program.layout] ?? hooks.program.layout}; main source: ${who}.`;
    addLog({ source: "page", text: `program: layout ${hooks.program.layout}, main source ${who}` });
    renderProgramButtons();
  });
}

for (const b of ui.layoutButtons) {
  b.addEventListener("click", () => setProgram(b.dataset.layout, hooks.program.main ?? null, b));
}
ui.feedMain.addEventListener("click", () => setProgram(hooks.program.layout ?? "pip", null, ui.feedMain));

// ---------------------------------------------------------------- participants

/** Polls for the current event: fn(id, signal) → data, applied only if still current. */
function eventPoller(name, ms, load, apply) {
  return new Poller(name, async () => {
    if (!current) return;
    const { id, ctrl } = current;
    const data = await load(id, ctrl.signal);
    if (current?.id === id) apply(data);
  }, ms);
}

const participantsPoller = eventPoller("participants", EVERY.participants,
  (id, signal) => api("GET", `/api/events/${enc(id)}/participants`, { signal }),
  (list) => setParticipants(Array.isArray(list) ? list : []));

const rows = new Map(); // participant id → { tr, cells, mainButton, removeButton }
const COLS = ["name", "role", "media", "in", "out", "fps", "rtt", "lossIn", "lossOut", "jitter", "layer", "muted"];

function setParticipants(list) {
  observeParticipants(list);
  hooks.participants = list;
  participantsById = new Map(list.map((p) => [p.id, p]));
  for (const p of list) lastNames.set(p.id, p.name);
  for (const [pid, row] of rows) {
    if (!participantsById.has(pid)) { row.tr.remove(); rows.delete(pid); }
  }
  const order = [...list].sort((a, b) => roleRank(a.role) - roleRank(b.role) || a.name.localeCompare(b.name));
  for (const p of order) {
    const row = rows.get(p.id) ?? makeRow(p);
    updateRow(row, p);
    ui.participantsBody.append(row.tr); // moves it into sorted place
  }
  syncTiles(list);
  ui.participantsEmpty.hidden = list.length > 0;
  const media = list.filter((p) => p.connected).length;
  ui.participantsSummary.textContent = list.length ? `${list.length} in the room, ${media} with media` : "";
  renderProgramButtons();
}

const roleRank = (role) => ({ encoder: 0, commentator: 1, operator: 2, viewer: 3 }[role] ?? 4);
const canBeMain = (role) => role === "commentator" || role === "encoder";

function makeRow(p) {
  const cells = Object.fromEntries(COLS.map((c) => [c, h("td", { class: `col-${c}` })]));
  for (const c of ["in", "out", "fps", "rtt", "lossIn", "lossOut", "jitter"]) cells[c].classList.add("num");
  const dot = h("span", { class: "speak-dot", title: "speaking", "aria-label": "speaking", dataset: { speaking: "false" } });
  const name = h("span", { class: "participant-name" });
  cells.name.append(dot, name);
  const mainButton = canBeMain(p.role)
    ? h("button", { type: "button", class: "btn btn-small", "data-action": "main", "aria-pressed": "false",
      onclick: (ev) => setProgram(hooks.program.layout ?? "pip", p.id, ev.currentTarget) }, "Make main")
    : null;
  const muteButton = (kind) => h("button", { type: "button", class: "btn btn-small", "data-action": `mute-${kind}`, "aria-pressed": "false",
    onclick: (ev) => muteParticipant(p.id, kind, ev.currentTarget) }, kind === "audio" ? "Mute mic" : "Mute cam");
  const mute = { audio: muteButton("audio"), video: muteButton("video") };
  const removeButton = h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "remove",
    onclick: (ev) => removeParticipant(p.id, ev.currentTarget) }, "Remove");
  const tr = h("tr", { dataset: { participant: p.id } }, ...COLS.map((c) => cells[c]),
    h("td", { class: "actions" }, mainButton, mute.audio, mute.video, removeButton));
  const row = { tr, cells, dot, name, mainButton, mute, removeButton };
  rows.set(p.id, row);
  return row;
}

function updateRow(row, p) {
  const set = (cell, text) => { if (row.cells[cell].textContent !== text) row.cells[cell].textContent = text; };
  if (row.name.textContent !== p.name) row.name.textContent = p.name;
  row.dot.dataset.speaking = String(Boolean(p.speaking));
  row.tr.classList.toggle("speaking", Boolean(p.speaking));
  row.tr.dataset.connected = String(Boolean(p.connected));
  set("role", p.role);
  set("media", p.connected ? "connected" : "not connected");
  set("in", fmtKbps(p.bitrate_in));
  set("out", fmtKbps(p.bitrate_out));
  set("fps", fmtNum(p.fps_in, 1));
  set("rtt", fmtNum(p.rtt_ms));
  set("lossIn", fmtPct(p.loss_in));
  set("lossOut", fmtPct(p.loss_out));
  set("jitter", fmtNum(p.jitter_ms, 1));
  set("layer", p.layer ?? "—");
  for (const kind of ["audio", "video"]) {
    const b = row.mute[kind];
    const held = Boolean(p[`${kind}_muted_by_operator`]);
    // The program's monitor (an operator's) is not muted from here.
    b.hidden = !canBeMain(p.role) || !(p.publishing ?? []).includes(kind);
    b.setAttribute("aria-pressed", String(held));
    b.dataset.held = String(held);
    b.textContent = `${held ? "Unmute" : "Mute"} ${kind === "audio" ? "mic" : "cam"}`;
  }
  const muted = [
    p.audio_muted_by_operator ? "mic (by operator)" : p.audio_muted && "mic",
    p.video_muted_by_operator ? "camera (by operator)" : p.video_muted && "camera",
  ].filter(Boolean);
  set("muted", muted.length ? muted.join(", ") : "—");
  row.cells.muted.dataset.muted = String(muted.length > 0);
  const publishing = Array.isArray(p.publishing) && p.publishing.length ? `publishes ${p.publishing.join(", ")}` : "publishes nothing";
  row.tr.title = `${p.name} (${p.id}) — ${publishing}${Number.isFinite(p.audio_level) ? `, audio level ${p.audio_level.toFixed(2)}` : ""}`;
}

function observeParticipants(list) {
  const next = new Map(list.map((p) => [p.id, p]));
  const label = (p) => `${p.name} (${p.role})`;
  if (!seenParticipants) {
    if (list.length) addLog({ source: "page", text: `in the room: ${list.map(label).join(", ")}` });
  } else {
    for (const p of list) {
      const old = seenParticipants.get(p.id);
      if (!old) addLog({ source: "page", level: "join", text: `${label(p)} joined` });
      else if (old.connected && !p.connected) addLog({ source: "page", level: "warn", text: `${label(p)}: media dropped` });
      else if (!old.connected && p.connected) addLog({ source: "page", text: `${label(p)}: media connected` });
    }
    for (const [pid, old] of seenParticipants) {
      if (next.has(pid)) continue;
      const how = removedHere.delete(pid) ? "was removed" : old.connected ? "left (or dropped)" : "left";
      addLog({ source: "page", level: "leave", text: `${label(old)} ${how}` });
    }
  }
  seenParticipants = next;
}

/** Mutes (or unmutes) what a participant sends of one kind: the server drops it. */
async function muteParticipant(pid, kind, button) {
  if (!current) return;
  const id = current.id;
  const muted = button.dataset.held !== "true";
  await busy(button, async () => {
    await api("POST", `/api/events/${enc(id)}/participants/${enc(pid)}/mute`, { body: { kind, muted } });
    if (current?.id !== id) return;
    button.dataset.held = String(muted);
    button.textContent = `${muted ? "Unmute" : "Mute"} ${kind === "audio" ? "mic" : "cam"}`;
    participantsPoller.kick();
    auditPoller.kick();
  });
}

async function removeParticipant(pid, button) {
  if (!current) return;
  const id = current.id;
  const p = participantsById.get(pid);
  if (!confirm(`Remove ${p?.name ?? pid} from the event? Their session ends (their invitation stays valid unless revoked).`)) return;
  await busy(button, async () => {
    await api("POST", `/api/events/${enc(id)}/participants/${enc(pid)}/remove`);
    removedHere.add(pid);
    if (current?.id === id) { participantsPoller.kick(); auditPoller.kick(); }
  });
}

// ---------------------------------------------------------------- distribution

const distributionPoller = eventPoller("distribution", EVERY.distribution,
  (id, signal) => api("GET", `/api/events/${enc(id)}/distribution`, { signal }),
  (d) => setDistribution(d));

function setDistribution(d) {
  const before = hooks.distribution;
  hooks.distribution = d;
  const playlist = Boolean(d?.hls?.playlist);
  ui.viewers.textContent = String(d?.viewers ?? 0);
  ui.hlsState.textContent = playlist ? "present" : "not yet";
  ui.hlsState.dataset.up = String(playlist);
  const outputs = Array.isArray(d?.outputs) ? d.outputs : [];
  ui.outputs.replaceChildren(...(outputs.length
    ? outputs.map((o) => h("li", { class: "output", dataset: { output: o.output, up: String(Boolean(o.up)) } },
      h("span", { class: "output-dot", "aria-hidden": "true" }),
      h("span", { class: "output-name mono" }, o.output),
      h("span", { class: "output-state" }, o.up ? "up" : "down")))
    : [h("li", { class: "empty" }, "No outputs reported (no compositor in the room yet).")]));
  // What changed since the last poll, for the log.
  if (before && Boolean(before.hls?.playlist) !== playlist) {
    addLog({ source: "page", level: playlist ? "info" : "warn", text: playlist ? "the program's HLS playlist appeared" : "the program's HLS playlist is gone" });
  }
  const now = new Map(outputs.map((o) => [o.output, Boolean(o.up)]));
  if (seenOutputs) {
    for (const [name, up] of now) {
      if (seenOutputs.get(name) !== up) addLog({ source: "page", level: up ? "info" : "warn", text: `output ${name} is ${up ? "up" : "down"}` });
    }
    for (const name of seenOutputs.keys()) if (!now.has(name)) addLog({ source: "page", level: "warn", text: `output ${name} is no longer reported` });
  }
  seenOutputs = now;
  renderSwitches(d?.program ?? null);
  renderAws(d?.aws ?? null, before?.aws ?? null);
}

/** The AWS distribution: the channel's phase and state, its input, alerts, errors. */
function renderAws(a, before) {
  ui.aws.hidden = !a;
  if (!a) return;
  const c = a.channel;
  ui.awsPhase.textContent = a.phase || "not on air yet";
  ui.awsPhase.dataset.phase = a.phase || "";
  ui.awsChannel.textContent = c ? `${c.state} · ${c.pipelines_running} pipeline(s)` : "none";
  ui.awsInput.textContent = c?.active_input ?? "–";
  ui.awsViewer.textContent = a.viewer_url ?? "";
  ui.awsViewer.href = a.viewer_url ?? "#";
  const notes = [
    a.error && `Error: ${a.error}`,
    a.auto_stopped_at && `The channel ran with no live event and was stopped at ${fmtClock(a.auto_stopped_at * 1000)}.`,
    ...(c?.alerts ?? []).map((t) => `Alert: ${t}`),
  ].filter(Boolean);
  ui.awsNote.textContent = notes.join(" ");
  ui.awsNote.hidden = notes.length === 0;
  ui.awsNote.dataset.level = a.error || c?.alerts?.length ? "warn" : "info";
  for (const b of ui.awsButtons) b.disabled = !a.resources;
  if (before && before.phase !== a.phase) addLog({ source: "page", level: a.phase === "failed" ? "error" : "info", text: `AWS channel: ${a.phase}${a.error ? ` (${a.error})` : ""}` });
  if (a.auto_stopped_at && a.auto_stopped_at !== before?.auto_stopped_at) addLog({ source: "page", level: "warn", text: "AWS channel stopped: it ran with no live event" });
}

for (const b of ui.awsButtons ?? []) {
  b.addEventListener("click", () => {
    if (!current) return;
    const id = current.id;
    busy(ui.awsButtons, async () => {
      await api("POST", `/api/events/${enc(id)}/distribution/input`, { body: { input: b.dataset.input } });
      addLog({ source: "page", text: `input switch to ${b.dataset.input} sent` });
    });
  });
}

// ---------------------------------------------------------------- audit log

const auditPoller = eventPoller("audit", EVERY.audit,
  (id, signal) => api("GET", `/api/audit?event=${enc(id)}&limit=100`, { signal }),
  (list) => {
    for (const e of Array.isArray(list) ? list : []) {
      addLog({ at: e.at * 1000, source: "audit", level: "audit", text: describeAudit(e), key: `audit:${JSON.stringify(e)}`, action: e.action });
    }
  });

// ---------------------------------------------------------------- invitations

let invitationsJson = "";

const invitationsPoller = eventPoller("invitations", EVERY.invitations,
  (id, signal) => api("GET", `/api/events/${enc(id)}/invitations`, { signal }),
  (list) => setInvitations(Array.isArray(list) ? list : []));

function invitationState(inv) {
  if (inv.revoked_at != null) return "revoked";
  if (inv.expires_at <= nowSecs()) return "expired";
  return "active";
}

/** The absolute link to hand out, when this page knows it (tokens are only known when created here). */
function invitationLink(inv) {
  const mine = issued.get(inv.id);
  if (mine) return location.origin + mine.url;
  if (inv.role === "viewer") return `${location.origin}/watch/${enc(inv.event_id)}`;
  if (inv.role === "encoder") return `${location.origin}/whip/${enc(inv.event_id)}`;
  return null;
}

function setInvitations(list) {
  const withState = list.map((inv) => ({ ...inv, state: invitationState(inv) }));
  hooks.invitations = withState;
  const json = JSON.stringify(withState);
  if (json === invitationsJson) return;
  invitationsJson = json;
  const ordered = [...withState].sort((a, b) => b.created_at - a.created_at);
  ui.invitationsBody.replaceChildren(...ordered.map((inv) => {
    const link = invitationLink(inv);
    const mine = issued.get(inv.id);
    return h("tr", { dataset: { invitation: inv.id, state: inv.state, role: inv.role } },
      h("td", {}, inv.name),
      h("td", {}, inv.role),
      h("td", {}, h("span", { class: "status-pill", dataset: { status: inv.state } }, inv.state)),
      h("td", { class: "nowrap" }, fmtWhen(inv.expires_at)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn btn-small", "data-action": "copy", disabled: !link || inv.state !== "active",
          title: link ? link : "The link carries the token, known only to the page that created the invitation",
          onclick: (ev) => copy(link, ev.currentTarget) }, inv.role === "encoder" ? "Copy WHIP URL" : "Copy link"),
        inv.role === "encoder" && mine
          ? h("button", { type: "button", class: "btn btn-small", "data-action": "copy-token", disabled: inv.state !== "active",
            onclick: (ev) => copy(mine.token, ev.currentTarget) }, "Copy token")
          : null,
        h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "revoke", disabled: inv.state !== "active",
          onclick: (ev) => revokeInvitation(inv, ev.currentTarget) }, "Revoke")));
  }));
  ui.invitationsEmpty.hidden = list.length > 0;
}

ui.invite.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!current) return;
  const id = current.id;
  busy(ui.invSubmit, async () => {
    const body = { name: ui.invName.value.trim(), role: ui.invRole.value };
    const ttl = Number.parseInt(ui.invTtl.value, 10);
    if (Number.isFinite(ttl)) body.ttl_hours = ttl;
    const inv = await api("POST", `/api/events/${enc(id)}/invitations`, { body });
    issued.set(inv.id, inv);
    hooks.lastInvitation = inv;
    if (current?.id !== id) return;
    showNewInvitation(inv);
    ui.invName.value = "";
    invitationsJson = "";
    setInvitations([...hooks.invitations.filter((i) => i.id !== inv.id), inv]);
    invitationsPoller.kick();
    auditPoller.kick();
  });
});

// Timed metadata: a message or a poll, carried to viewers inside the HLS stream.
function sendMetadata(form, button, body, reset) {
  if (!current) return;
  const id = current.id;
  busy(button, async () => {
    const sent = await api("POST", `/api/events/${enc(id)}/metadata`, { body });
    hooks.lastMetadata = sent;
    addLog({ source: "page", text: sent.type === "poll" ? `poll sent: ${sent.question}` : `message sent: ${sent.text}` });
    reset();
    auditPoller.kick();
  });
}

$("send-message").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("msg-text");
  sendMetadata(ev.target, $("msg-submit"), { text: input.value.trim() }, () => { input.value = ""; });
});

$("send-poll").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("poll-question");
  const o = $("poll-options");
  const options = o.value.split(",").map((s) => s.trim()).filter(Boolean);
  sendMetadata(ev.target, $("poll-submit"), { poll: { question: q.value.trim(), options } }, () => { q.value = ""; o.value = ""; });
});

function showNewInvitation(inv) {
  const encoder = inv.role === "encoder";
  ui.newInvTitle.textContent = `Invitation for ${inv.name} (${inv.role})`;
  ui.newInvNote.textContent = encoder
    ? `— the encoder publishes to the WHIP URL with Authorization: Bearer <token>; valid until ${fmtWhen(inv.expires_at)}`
    : inv.role === "viewer" && hooks.event?.policy?.viewing === "private"
      ? "— this event is private: viewers also need a playback link (below)"
      : `— valid until ${fmtWhen(inv.expires_at)}`;
  ui.newLinkLabel.textContent = encoder ? "WHIP URL" : "Link";
  ui.newLink.value = location.origin + inv.url;
  ui.copyLink.textContent = encoder ? "Copy WHIP URL" : "Copy link";
  ui.newTokenRow.hidden = !encoder;
  ui.newToken.value = encoder ? inv.token : "";
  ui.newInvitation.hidden = false;
}

ui.copyLink.addEventListener("click", () => copy(ui.newLink.value, ui.copyLink, ui.newLink));
ui.copyToken.addEventListener("click", () => copy(ui.newToken.value, ui.copyToken, ui.newToken));
ui.copyPlayback.addEventListener("click", () => copy(ui.playbackUrl.value, ui.copyPlayback, ui.playbackUrl));
for (const input of [ui.newLink, ui.newToken, ui.playbackUrl]) input.addEventListener("focus", () => input.select());

async function revokeInvitation(inv, button) {
  if (!current) return;
  const id = current.id;
  if (!confirm(`Revoke the invitation of ${inv.name} (${inv.role})? Their token stops working everywhere.`)) return;
  await busy(button, async () => {
    await api("DELETE", `/api/events/${enc(id)}/invitations/${enc(inv.id)}`);
    if (current?.id !== id) return;
    setInvitations(hooks.invitations.map((i) => (i.id === inv.id ? { ...i, revoked_at: nowSecs() } : i)));
    invitationsPoller.kick();
    auditPoller.kick();
  });
}

ui.playbackLink.addEventListener("click", () => {
  if (!current) return;
  const id = current.id;
  busy(ui.playbackLink, async () => {
    const t = await api("POST", `/api/events/${enc(id)}/playback-tokens`, { body: { viewer: "shared from the console" } });
    if (current?.id !== id) return;
    ui.playbackUrl.value = location.origin + t.url;
    ui.playbackRow.hidden = false;
    auditPoller.kick();
  });
});

/** Copies text (the Clipboard API needs a secure context; otherwise the old way). */
async function copy(text, button, input) {
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

// ---------------------------------------------------------------- program preview and sources

// The program monitor, the surgery feed and the commentators, received over WebRTC in
// a receive-only session of the event's room. Audio plays only after "Listen".
const preview = {
  monitor: null,
  audio: new Map(), // track id → <audio>
  listening: false,

  say(state, note) {
    hooks.preview = state;
    ui.previewState.textContent = { idle: "", connecting: "connecting…", waiting: "waiting for the program", playing: "live (WebRTC)", retrying: "reconnecting…", refused: "refused" }[state] ?? state;
    ui.previewNote.textContent = note ?? "";
    ui.previewNote.hidden = !note;
  },

  open(id) {
    this.stop();
    this.say("connecting", "Connecting to the event's room…");
    this.monitor = new RoomMonitor({
      room: id, token, name: `console (${claims?.name ?? "operator"})`,
      onTrack: (info, track) => this.show(info, track),
      onGone: (info) => this.hide(info),
      onState: (state, detail) => {
        if (state === "live") {
          if (!ui.preview.srcObject) this.say("waiting", "In the room; the program monitor is not there yet (no compositor, or its monitor is off).");
        } else if (state === "retrying") this.say("retrying", `Reconnecting: ${detail}`);
        else if (state === "refused") { this.say("refused", `The room refused the console: ${detail}`); addLog({ source: "page", level: "error", text: `monitor refused: ${detail}` }); }
      },
    });
    this.monitor.start();
  },

  stop() {
    this.monitor?.stop();
    this.monitor = null;
    for (const el of [ui.preview, ui.feedVideo]) el.srcObject = null;
    ui.feedTile.dataset.video = "off";
    for (const el of this.audio.values()) el.remove();
    this.audio.clear();
    for (const tile of tiles.values()) { tile.video.srcObject = null; tile.fig.dataset.video = "off"; }
    this.say("idle", "The program has not started yet.");
  },

  show(info, track) {
    const stream = new MediaStream([track]);
    if (track.kind === "audio") {
      if (info.source === "program") return;
      const el = h("audio", { autoplay: true, dataset: { participant: info.participant_id } });
      el.muted = !this.listening;
      el.srcObject = stream;
      ui.audioSink.append(el);
      this.audio.set(track.id, el);
      return;
    }
    let el;
    if (info.source === "program") el = ui.preview;
    else if (info.source === "feed") { el = ui.feedVideo; ui.feedTile.dataset.video = "on"; }
    else {
      const tile = tileFor({ id: info.participant_id, name: info.name });
      tile.fig.dataset.video = "on";
      el = tile.video;
    }
    el.srcObject = stream;
    el.play().catch(() => {});
  },

  hide(info) {
    for (const [id, el] of this.audio) {
      if (el.dataset.participant === info.participant_id && info.kind === "audio") { el.remove(); this.audio.delete(id); }
    }
    if (info.kind !== "video") return;
    if (info.source === "program") { ui.preview.srcObject = null; this.say("waiting", "The program monitor stopped; waiting for it to come back."); }
    else if (info.source === "feed") { ui.feedVideo.srcObject = null; ui.feedTile.dataset.video = "off"; }
    else {
      const tile = tiles.get(info.participant_id);
      if (tile) { tile.video.srcObject = null; tile.fig.dataset.video = "off"; }
    }
  },

  listen(on) {
    this.listening = on;
    for (const el of this.audio.values()) { el.muted = !on; if (on) el.play().catch(() => {}); }
    ui.listen.setAttribute("aria-pressed", String(on));
  },
};

ui.preview.addEventListener("playing", () => { if (preview.monitor) preview.say("playing", null); });
ui.listen.addEventListener("click", () => preview.listen(!preview.listening));
preview.say("idle", null);

// One tile per commentator: their camera (from the monitor session), name, speaking,
// mute state and the stats the server measures.
const tiles = new Map(); // participant id → { fig, video, name, dot, stats, badges }

function tileFor(p) {
  let t = tiles.get(p.id);
  if (!t) {
    const video = h("video", { autoplay: true, muted: true, playsinline: true });
    video.muted = true;
    const dot = h("span", { class: "speak-dot", title: "speaking", dataset: { speaking: "false" } });
    const name = h("span", { class: "source-name" });
    const badges = h("span", { class: "source-badges" });
    const stats = h("span", { class: "source-stats muted small" });
    const fig = h("figure", { class: "source", dataset: { participant: p.id, video: "off" } },
      video, h("figcaption", {}, dot, name, badges, stats));
    ui.sources.append(fig);
    t = { fig, video, name, dot, stats, badges };
    tiles.set(p.id, t);
  }
  if (t.name.textContent !== p.name) t.name.textContent = p.name;
  return t;
}

/** Tiles follow the participants list: commentators get one, leavers lose theirs. */
function syncTiles(list) {
  const commentators = list.filter((p) => p.role === "commentator");
  const ids = new Set(commentators.map((p) => p.id));
  for (const [id, t] of tiles) if (!ids.has(id)) { t.fig.remove(); tiles.delete(id); }
  for (const p of commentators) {
    const t = tileFor(p);
    t.dot.dataset.speaking = String(Boolean(p.speaking));
    t.fig.classList.toggle("speaking", Boolean(p.speaking));
    const muted = [
      (p.audio_muted || p.audio_muted_by_operator) && (p.audio_muted_by_operator ? "mic muted by operator" : "mic off"),
      (p.video_muted || p.video_muted_by_operator) && (p.video_muted_by_operator ? "cam muted by operator" : "cam off"),
    ].filter(Boolean);
    t.badges.textContent = muted.join(" · ");
    t.stats.textContent = `${fmtKbps(p.bitrate_in)} kbit/s · ${fmtNum(p.fps_in, 1)} fps · RTT ${fmtNum(p.rtt_ms)} ms · loss ${fmtPct(p.loss_in)} %`;
  }
  const feed = list.find((p) => p.role === "encoder");
  ui.feedStats.textContent = feed ? `${fmtKbps(feed.bitrate_in)} kbit/s · ${fmtNum(feed.fps_in, 1)} fps${feed.width ? ` · ${feed.width}×${feed.height}` : ""}` : "no encoder";
}

// ---------------------------------------------------------------- start

function showWho() {
  if (!claims) {
    ui.whoami.textContent = token ? "token not readable" : "no token";
    return;
  }
  const scope = claims.room === "*" ? "all events" : `event ${claims.room}`;
  const expires = Number.isFinite(claims.exp) ? ` · token valid until ${fmtWhen(claims.exp)}` : "";
  ui.whoami.textContent = `${claims.name ?? "?"} · ${claims.role ?? "?"} · ${scope}${expires}`;
  if (claims.room !== "*") {
    ui.createNote.textContent = "Creating and deleting events needs an operator token for room \"*\".";
  }
}

showWho();
if (!token) showError(new ApiError("no token in this page's address", 401));
eventsPoller.start();
// An event's operator has one event: open it when the hash names none.
if (!hashEvent() && claims?.room && claims.room !== "*" && token) selectEvent(claims.room);
else route();
