// casecast — the distribution center's console (/console?token=…). Plain ES modules,
// no build step, no libraries. The API it speaks: server/src/openapi.json.
//
// This module runs the page: the events (create, start, end, delete), the open
// event's view (#event=<id> in the hash, so a link can be shared and reloaded), and
// its live updates. The parts of the open event live beside it:
//   console-core.js     the token and the API, notices, polling, the event log
//   console-people.js   participants (quality, mute, remove), invitations, hands, chat
//   console-program.js  the on-air state, switches and slates, monitor and studio
//                       preview (Take), outputs, messages and polls to viewers
//   console-library.js  the recordings of past and live events, with thumbnails
//                       and chapters, played on the watch page
//
// Live updates come over the event's WebSocket every second (participants, outputs,
// the event's state, the polls' counts, audit entries); while it is down the page
// polls the same and tries the socket again. window.casecastConsole is kept up to
// date for the browser tests.

import { h } from "./dom.js";
import {
  $, ApiError, addLog, api, busy, claims, clearLog, enc, eventPoller, fmtWhen, hooks, isAbort, Poller,
  resumePolling, shared, showError, token,
} from "./console-core.js";
import {
  invitationsPoller, invite, participantsPoller, resetPeople, setParticipants,
} from "./console-people.js";
import {
  distributionPoller, pollsPoller, preview, renderState, resetProgram, setDistribution, setPolls,
} from "./console-program.js";
import { loadLibrary } from "./console-library.js";

const EVERY = { events: 10_000, audit: 5_000 };

// ---------------------------------------------------------------- the event log

function describeAudit(e) {
  const d = e.detail && typeof e.detail === "object" ? e.detail : {};
  const who = `${e.actor} (${e.actor_role}${e.actor_scope === "*" ? ", all events" : `, ${e.actor_scope}`})`;
  const participantName = (pid) => shared.participantsById.get(pid)?.name ?? shared.lastNames.get(pid) ?? pid;
  const inv = hooks.invitations.find((i) => i.id === d.invitation);
  const what = {
    "event.create": () => `created the event${d.title ? ` “${d.title}”` : ""}`,
    "event.update": () => `changed the event (${Object.keys(d).join(", ") || "no fields"})`,
    "event.start": () => "started the event (its program runs)",
    "event.end": () => "ended the event",
    "event.delete": () => "deleted the event",
    "invitation.create": () => `invited ${d.name ?? "someone"} as ${d.role ?? "?"}`,
    "invitation.revoke": () => `revoked the invitation ${inv ? `of ${inv.name} (${inv.role})` : String(d.invitation ?? "")}`,
    "participant.remove": () => `removed ${participantName(d.participant)}`,
    "participant.mute": () => `muted the ${d.kind === "audio" ? "microphone" : "camera"} of ${participantName(d.participant)}`,
    "participant.unmute": () => `unmuted the ${d.kind === "audio" ? "microphone" : "camera"} of ${participantName(d.participant)}`,
    "playback_token.create": () => `made a playback token${d.viewer ? ` for ${d.viewer}` : ""}`,
    "program.on_air": () => "put the program on air",
    "program.off_air": () => "took the program off air",
    "program.slate": () => (d.slate && d.slate !== "off" ? `put the slate “${d.slate}” on the program` : "took the slate off the program"),
    "program.layout": () => `took the layout ${d.layout} live${d.main ? ` with ${participantName(d.main)} as main` : ""}`,
    "metadata.send": () => (d.type === "poll" ? `sent the poll “${d.question}”` : `sent the message “${d.text}”`),
  }[e.action];
  return `${who} ${what ? what() : `${e.action}${e.detail != null ? ` ${JSON.stringify(e.detail)}` : ""}`}`;
}

const auditPoller = eventPoller("audit", EVERY.audit,
  (id, signal) => api("GET", `/api/audit?event=${enc(id)}&limit=100`, { signal }),
  (list) => {
    for (const e of Array.isArray(list) ? list : []) {
      addLog({ at: e.at * 1000, source: "audit", level: "audit", text: describeAudit(e), key: `audit:${JSON.stringify(e)}`, action: e.action });
    }
  });

// ---------------------------------------------------------------- events list

let eventsJson = "";

const eventsPoller = new Poller("events", async () => {
  const list = await api("GET", "/api/events");
  setEvents(Array.isArray(list) ? list : []);
}, EVERY.events);

function setEvents(list) {
  hooks.events = list;
  const current = shared.current;
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

const STATE_WORDS = { scheduled: "scheduled", starting: "starting", on_air: "on air", off_air: "off air", ended: "ended" };

function renderEvents() {
  const rank = (e) => ({ on_air: 0, off_air: 0, starting: 0, scheduled: 1, ended: 2 }[e.state] ?? 1);
  const list = [...hooks.events].sort((a, b) => rank(a) - rank(b) || (a.starts_at ?? Infinity) - (b.starts_at ?? Infinity) || a.title.localeCompare(b.title));
  $("events").tBodies[0].replaceChildren(...list.map((e) => {
    const open = () => selectEvent(e.id);
    const state = e.state || e.status;
    return h("tr", {
      dataset: { event: e.id, status: e.status, state }, class: `event-row${shared.current?.id === e.id ? " selected" : ""}`, tabindex: 0,
      "aria-current": shared.current?.id === e.id ? "true" : null, title: "Open the event",
      onclick: (ev) => { if (!ev.target.closest("button, a")) open(); },
      onkeydown: (ev) => { if ((ev.key === "Enter" || ev.key === " ") && ev.target === ev.currentTarget) { ev.preventDefault(); open(); } },
    },
    h("td", { class: "event-title" }, e.title, h("div", { class: "mono small muted" }, e.id)),
    h("td", {}, h("span", { class: "status-pill", dataset: { status: state } }, STATE_WORDS[state] ?? state)),
    h("td", { class: "nowrap" }, fmtWhen(e.starts_at)),
    h("td", { class: "small muted col-policy" }, policySummary(e.policy)),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "btn btn-small", "data-action": "open", onclick: open }, "Open"),
      state === "scheduled"
        ? h("button", { type: "button", class: "btn btn-small btn-go", "data-action": "start", onclick: (ev) => startEvent(e.id, ev.currentTarget) }, "Start")
        : null,
      h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "end", disabled: e.status === "ended", onclick: (ev) => endEvent(e.id, ev.currentTarget) }, "End"),
      h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "delete", onclick: (ev) => deleteEvent(e.id, ev.currentTarget) }, "Delete")));
  }));
  $("events-empty").hidden = list.length > 0;
  const running = list.filter((e) => ["on_air", "off_air", "starting"].includes(e.state)).length;
  $("events-summary").textContent = list.length ? `${list.length} event${list.length === 1 ? "" : "s"}, ${running} running` : "";
}

$("refresh-events").addEventListener("click", () => { resumePolling(() => eventsPoller.start()); eventsPoller.start(); });

/** "2025-05-01T14:00" (local time) → Unix seconds, or undefined when empty. */
function localToUnix(value) {
  if (!value) return undefined;
  const ms = new Date(value).getTime();
  if (!Number.isFinite(ms)) throw new ApiError(`not a date: ${value}`, 0);
  return Math.floor(ms / 1000);
}

$("create-event").addEventListener("submit", (ev) => {
  ev.preventDefault();
  busy($("ev-submit"), async () => {
    const body = {
      title: $("ev-title").value.trim(),
      policy: {
        commentator_uplink: $("ev-uplink").value,
        commentator_max_fps: Number.parseInt($("ev-fps").value, 10),
        commentator_max_bitrate: Math.round(Number($("ev-bitrate").value) * 1000),
        latency_preset: $("ev-preset").value,
        viewing: $("ev-viewing").value,
      },
    };
    const id = $("ev-id").value.trim();
    if (id) body.id = id;
    const starts = localToUnix($("ev-start").value);
    const ends = localToUnix($("ev-end").value);
    if (starts !== undefined) body.starts_at = starts;
    if (ends !== undefined) body.ends_at = ends;
    if (starts !== undefined && ends !== undefined && ends <= starts) throw new ApiError("the event must end after it starts", 0);
    const created = await api("POST", "/api/events", { body });
    $("create-note").textContent = `Created “${created.title}” (${created.id}).`;
    $("create-event").reset();
    $("create-panel").open = false;
    setEvents([...hooks.events.filter((e) => e.id !== created.id), created]);
    eventsPoller.kick();
    selectEvent(created.id);
    // The encoder's invitation, ready to hand to the hospital.
    await invite(created.id, { name: "Hospital encoder", role: "encoder" });
  });
});

async function startEvent(id, button) {
  await busy([button, $("start-event")], async () => {
    const started = await api("POST", `/api/events/${enc(id)}/start`);
    setEvents(hooks.events.map((x) => (x.id === id ? started : x)));
    addLog({ source: "page", text: "started the event: its program is starting" });
    if (shared.current?.id === id) auditPoller.kick();
  });
}

async function endEvent(id, button) {
  const e = hooks.events.find((x) => x.id === id);
  if (!confirm(`End the event “${e?.title ?? id}”? Its program stops, viewers are told it has ended and see the recording, and nobody can join it any more.`)) return;
  await busy([button, $("end-event")], async () => {
    const ended = await api("POST", `/api/events/${enc(id)}/end`);
    setEvents(hooks.events.map((x) => (x.id === id ? ended : x)));
    if (shared.current?.id === id) auditPoller.kick();
  });
}

async function deleteEvent(id, button) {
  const e = hooks.events.find((x) => x.id === id);
  if (!confirm(`Delete the event “${e?.title ?? id}”? Its invitations stop working. This cannot be undone.`)) return;
  await busy([button, $("delete-event")], async () => {
    await api("DELETE", `/api/events/${enc(id)}`);
    if (shared.current?.id === id) closeEvent();
    setEvents(hooks.events.filter((x) => x.id !== id));
    eventsPoller.kick();
  });
}

// ---------------------------------------------------------------- the open event

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
  else if (shared.current) closeEvent({ keepHash: true });
}
addEventListener("hashchange", route);

const eventPollers = [participantsPoller, distributionPoller, auditPoller, invitationsPoller, pollsPoller];

function openEvent(id) {
  if (shared.current?.id === id) return;
  closeEvent({ keepHash: true });
  resumePolling(() => eventsPoller.start());
  shared.current = { id, ctrl: new AbortController() };
  hooks.event = hooks.events.find((e) => e.id === id) ?? { id, title: id };
  hooks.distribution = null;
  clearLog();
  resetPeople();
  resetProgram();
  $("live").hidden = false;
  $("create-panel").open = false;
  document.body.dataset.view = "event";
  renderHead();
  eventsJson = "";
  renderEvents();
  addLog({ source: "page", text: `opened the console for ${id}` });
  preview.open(id);
  if (!hooks.events.some((e) => e.id === id)) {
    // Not listed (yet): ask for it, which also says whether it exists.
    api("GET", `/api/events/${enc(id)}`, { signal: shared.current.ctrl.signal })
      .then((e) => { if (shared.current?.id === id) setCurrentEvent(e); })
      .catch((err) => {
        if (isAbort(err)) return;
        showError(err);
        if (err?.status === 404 && shared.current?.id === id) closeEvent();
      });
  }
  for (const p of eventPollers) p.start();
  openLive(id);
}

// Live updates: the event's WebSocket pushes participants, outputs, the event and
// the polls every second (and new audit entries). While it is open, those are not
// polled; if it drops, polling takes over and the socket is tried again.
let live = null;
const pushed = [participantsPoller, distributionPoller, pollsPoller];
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
    for (const p of pushed) p.stop();
  };
  ws.onmessage = (ev) => {
    if (live?.ws !== ws || shared.current?.id !== id) return;
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === "snapshot") {
      setParticipants(Array.isArray(m.participants) ? m.participants : []);
      if (m.distribution) setDistribution(m.distribution);
      if (m.state) setCurrentEvent(m.state);
      if (Array.isArray(m.polls)) setPolls(m.polls);
    } else if (m.type === "audit" && !m.backlog) {
      auditPoller.kick();
    }
  };
  ws.onclose = () => {
    if (live?.ws !== ws) return;
    hooks.live = "closed";
    if (shared.current?.id === id) {
      for (const p of pushed) p.start();
      live.retry = setTimeout(() => { if (shared.current?.id === id) openLive(id); }, 5000);
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
  if (!shared.current) return;
  shared.current.ctrl.abort();
  shared.current = null;
  closeLive();
  for (const p of eventPollers) p.stop();
  preview.stop();
  shared.participantsById = new Map();
  hooks.event = null;
  $("live").hidden = true;
  document.body.dataset.view = "events";
  if (!keepHash && hashEvent()) history.replaceState(null, "", location.pathname + location.search);
  eventsJson = "";
  renderEvents();
}
$("close-event").addEventListener("click", () => closeEvent());
$("home").addEventListener("click", (ev) => { ev.preventDefault(); closeEvent(); });

function setCurrentEvent(e) {
  const before = hooks.event?.state;
  hooks.event = e;
  if (before && e.state && before !== e.state) {
    addLog({ source: "page", level: e.state === "off_air" ? "warn" : "info", text: `the event is ${STATE_WORDS[e.state] ?? e.state}` });
    eventsJson = "";
    const i = hooks.events.findIndex((x) => x.id === e.id);
    if (i >= 0) hooks.events[i] = e;
    renderEvents();
  }
  renderHead();
}

function renderHead() {
  const e = hooks.event;
  if (!e) return;
  $("live-title").textContent = e.title ?? e.id;
  const when = e.starts_at != null || e.ends_at != null ? `${fmtWhen(e.starts_at)} → ${fmtWhen(e.ends_at)}` : "no schedule";
  $("live-info").textContent = `${e.id} · ${when}${e.policy ? ` · ${policySummary(e.policy)}` : ""}`;
  $("watch-link").href = `/watch/${enc(e.id)}`;
  $("private-playback").hidden = e.policy?.viewing !== "private";
  document.title = `casecast — console — ${e.title ?? e.id}`;
  const ended = e.status === "ended";
  if (!$("end-event").dataset.busy) $("end-event").disabled = ended;
  if (!$("inv-submit").dataset.busy) $("inv-submit").disabled = ended;
  renderState(e);
}

$("start-event").addEventListener("click", () => { if (shared.current) startEvent(shared.current.id, $("start-event")); });
$("end-event").addEventListener("click", () => { if (shared.current) endEvent(shared.current.id, $("end-event")); });
$("delete-event").addEventListener("click", () => { if (shared.current) deleteEvent(shared.current.id, $("delete-event")); });

// ---------------------------------------------------------------- start

function showWho() {
  if (!claims) {
    $("whoami").textContent = token ? "token not readable" : "no token";
    return;
  }
  const scope = claims.room === "*" ? "all events" : `event ${claims.room}`;
  const expires = Number.isFinite(claims.exp) ? ` · valid until ${fmtWhen(claims.exp)}` : "";
  $("whoami").textContent = `${claims.name ?? "?"} · ${scope}${expires}`;
  if (claims.room !== "*") {
    $("create-note").textContent = "Creating and deleting events needs an operator token for room \"*\".";
  }
}

showWho();
if (!token) showError(new ApiError("no token in this page's address", 401));
eventsPoller.start();
loadLibrary();
// An event's operator has one event: open it when the hash names none.
if (!hashEvent() && claims?.room && claims.room !== "*" && token) selectEvent(claims.room);
else route();
