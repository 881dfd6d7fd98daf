// casecast console — the people of the open event: the participants with their
// connection quality (good / poor / bad), mute and remove; the invitations with who
// has joined from each; raised hands and the commentators' chat.
//
// The program mixer and the operators' consoles are the event's own machinery, not
// people: they are counted apart, never listed with a Remove button.

import { h } from "./dom.js";
import {
  $, addLog, api, busy, copy, enc, eventPoller, fmtKbps, fmtNum, fmtPct, fmtWhen, hooks, nowSecs, shared,
} from "./console-core.js";

const EVERY = { participants: 2_000, invitations: 5_000 };

/** Connection quality thresholds (docs/operators.md): worse than `poor` is poor,
 * worse than `bad` is bad. Loss either way as a fraction; the frame rate is the
 * surgery feed's only (commentators send few frames on purpose). */
export const QUALITY = {
  loss: { poor: 0.03, bad: 0.10 },
  jitterMs: { poor: 30, bad: 100 },
  rttMs: { poor: 250, bad: 500 },
  feedFps: { poor: 20, bad: 10 },
};

/** { level: "good" | "poor" | "bad" | "unknown", why: [what is wrong], cells: {column: level} } */
export function quality(p) {
  if (!p.connected) return { level: "unknown", why: ["no media yet"], cells: {} };
  const cells = {};
  const grade = (cell, value, t, higherIsWorse = true) => {
    if (!Number.isFinite(value)) return;
    const worse = (limit) => (higherIsWorse ? value >= limit : value < limit);
    cells[cell] = worse(t.bad) ? "bad" : worse(t.poor) ? "poor" : "good";
  };
  grade("lossIn", p.loss_in, QUALITY.loss);
  grade("lossOut", p.loss_out, QUALITY.loss);
  grade("jitter", p.jitter_ms, QUALITY.jitterMs);
  grade("rtt", p.rtt_ms, QUALITY.rttMs);
  if (p.role === "encoder" && (p.publishing ?? []).includes("video")) grade("fps", p.fps_in, QUALITY.feedFps, false);
  const names = { lossIn: "loss from them", lossOut: "loss to them", jitter: "jitter", rtt: "round trip", fps: "frame rate" };
  const levels = Object.values(cells);
  const level = levels.includes("bad") ? "bad" : levels.includes("poor") ? "poor" : "good";
  const why = Object.entries(cells).filter(([, l]) => l !== "good").map(([c, l]) => `${names[c]} ${l}`);
  return { level, why, cells };
}

/** The program mixer or an operator's console: not a person. */
export const isMachinery = (p) => p.role === "operator";
const roleRank = (role) => ({ encoder: 0, commentator: 1, viewer: 3 }[role] ?? 4);
export const canBeMain = (role) => role === "commentator" || role === "encoder";

// ---------------------------------------------------------------- participants

/** What other parts do with a person (set by the program part): make them the main source. */
export const peopleActions = { makeMain: null, changed: null };

const rows = new Map(); // participant id → { tr, cells, ... }
const COLS = ["name", "role", "quality", "in", "out", "fps", "rtt", "lossIn", "lossOut", "jitter", "layer", "muted"];
let seenParticipants = null; // the previous update's participants, to tell what changed
const removedHere = new Set();

export const participantsPoller = eventPoller("participants", EVERY.participants,
  (id, signal) => api("GET", `/api/events/${enc(id)}/participants`, { signal }),
  (list) => setParticipants(Array.isArray(list) ? list : []));

export function resetPeople() {
  rows.clear();
  $("participants").tBodies[0].replaceChildren();
  seenParticipants = null;
  shared.participantsById = new Map();
  hooks.participants = [];
  hooks.invitations = [];
  hooks.chat = [];
  hooks.hands = [];
  invitationsJson = "";
  $("invitations").tBodies[0].replaceChildren();
  $("new-invitation").hidden = true;
  $("playback-row").hidden = true;
  $("chat").replaceChildren();
  $("hands").replaceChildren();
}

export function setParticipants(list) {
  observeParticipants(list);
  hooks.participants = list.map((p) => ({ ...p, quality: quality(p).level }));
  shared.participantsById = new Map(list.map((p) => [p.id, p]));
  for (const p of list) shared.lastNames.set(p.id, p.name);
  const people = list.filter((p) => !isMachinery(p));
  for (const [pid, row] of rows) {
    if (!people.some((p) => p.id === pid)) { row.tr.remove(); rows.delete(pid); }
  }
  const body = $("participants").tBodies[0];
  const order = [...people].sort((a, b) => roleRank(a.role) - roleRank(b.role) || a.name.localeCompare(b.name));
  for (const p of order) {
    const row = rows.get(p.id) ?? makeRow(p);
    updateRow(row, p);
    body.append(row.tr); // moves it into sorted place
  }
  $("participants-empty").hidden = people.length > 0;
  const machinery = list.filter(isMachinery);
  const mixer = machinery.filter((p) => (p.publishing ?? []).length > 0).length;
  const consoles = machinery.length - mixer;
  const bad = people.filter((p) => quality(p).level === "bad").length;
  $("participants-summary").textContent = [
    `${people.length} ${people.length === 1 ? "person" : "people"}`,
    bad ? `${bad} with a bad connection` : null,
    mixer ? "program mixer in" : "no program mixer",
    consoles ? `${consoles} console${consoles === 1 ? "" : "s"}` : null,
  ].filter(Boolean).join(" · ");
  renderHands(list);
  peopleActions.changed?.(list);
}

function makeRow(p) {
  const cells = Object.fromEntries(COLS.map((c) => [c, h("td", { class: `col-${c}` })]));
  for (const c of ["in", "out", "fps", "rtt", "lossIn", "lossOut", "jitter"]) cells[c].classList.add("num");
  const dot = h("span", { class: "speak-dot", title: "speaking", "aria-label": "speaking", dataset: { speaking: "false" } });
  const hand = h("span", { class: "hand", title: "raised hand", hidden: true }, "✋");
  const name = h("span", { class: "participant-name" });
  cells.name.append(dot, name, hand);
  const mainButton = canBeMain(p.role)
    ? h("button", { type: "button", class: "btn btn-small", "data-action": "main", "aria-pressed": "false",
      title: "Put them as the main source in the preview (then Take)",
      onclick: () => peopleActions.makeMain?.(p.id) }, "Preview as main")
    : null;
  const muteButton = (kind) => h("button", { type: "button", class: "btn btn-small", "data-action": `mute-${kind}`, "aria-pressed": "false",
    onclick: (ev) => muteParticipant(p.id, kind, ev.currentTarget) }, kind === "audio" ? "Mute mic" : "Mute cam");
  const mute = { audio: muteButton("audio"), video: muteButton("video") };
  const removeButton = h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "remove",
    onclick: (ev) => removeParticipant(p.id, ev.currentTarget) }, "Remove");
  const tr = h("tr", { dataset: { participant: p.id } }, ...COLS.map((c) => cells[c]),
    h("td", { class: "actions" }, mainButton, mute.audio, mute.video, removeButton));
  const row = { tr, cells, dot, hand, name, mainButton, mute, removeButton };
  rows.set(p.id, row);
  return row;
}

/** The layer they are given of the feed and their estimated link; for a
 * simulcast sender, the layers it sends. */
function layerText(p) {
  const parts = [];
  if (p.layer) parts.push(`sends ${p.layer}`);
  if (p.receiving) parts.push(p.receiving);
  if (p.estimate_kbps != null) parts.push(`≈${fmtNum(p.estimate_kbps / 1000, 1)} Mbit/s`);
  return parts.length ? parts.join(" · ") : "—";
}

function updateRow(row, p) {
  const set = (cell, text) => { if (row.cells[cell].textContent !== text) row.cells[cell].textContent = text; };
  if (row.name.textContent !== p.name) row.name.textContent = p.name;
  row.dot.dataset.speaking = String(Boolean(p.speaking));
  row.hand.hidden = !p.hand_raised;
  row.tr.classList.toggle("speaking", Boolean(p.speaking));
  row.tr.dataset.connected = String(Boolean(p.connected));
  set("role", p.role === "encoder" ? "surgery feed" : p.role);
  const q = quality(p);
  set("quality", { good: "good", poor: "poor", bad: "bad", unknown: "no media" }[q.level]);
  row.cells.quality.dataset.quality = q.level;
  row.cells.quality.title = q.why.join(", ") || "all within the thresholds";
  row.tr.dataset.quality = q.level;
  set("in", fmtKbps(p.bitrate_in));
  set("out", fmtKbps(p.bitrate_out));
  // A sender above the room's frame-rate ceiling: what arrives → what the room gets.
  const held = p.fps_forwarded != null && p.fps_in - p.fps_forwarded >= 1;
  set("fps", held ? `${fmtNum(p.fps_in, 1)} → ${fmtNum(p.fps_forwarded, 1)}` : fmtNum(p.fps_in, 1));
  row.cells.fps.title = held ? "sends above the room's frame rate: the server lets in only what fits" : "";
  set("rtt", fmtNum(p.rtt_ms));
  set("lossIn", fmtPct(p.loss_in));
  set("lossOut", fmtPct(p.loss_out));
  set("jitter", fmtNum(p.jitter_ms, 1));
  set("layer", layerText(p));
  for (const c of ["fps", "rtt", "lossIn", "lossOut", "jitter"]) row.cells[c].dataset.quality = q.cells[c] ?? "";
  for (const kind of ["audio", "video"]) {
    const b = row.mute[kind];
    const held = Boolean(p[`${kind}_muted_by_operator`]);
    b.hidden = !(p.publishing ?? []).includes(kind);
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
  row.mainButton?.setAttribute("aria-pressed", String(hooks.next.main === p.id));
  const publishing = Array.isArray(p.publishing) && p.publishing.length ? `publishes ${p.publishing.join(", ")}` : "publishes nothing";
  row.tr.title = `${p.name} — ${publishing}${p.width ? `, ${p.width}×${p.height}` : ""}`;
}

/** Marks the participant chosen as the next main source. */
export function markNextMain(pid) {
  for (const [id, row] of rows) row.mainButton?.setAttribute("aria-pressed", String(pid === id));
}

function observeParticipants(list) {
  const next = new Map(list.map((p) => [p.id, p]));
  const label = (p) => (isMachinery(p) ? `${p.name} (${(p.publishing ?? []).length ? "program mixer" : "console"})` : `${p.name} (${p.role})`);
  if (!seenParticipants) {
    if (list.length) addLog({ source: "page", text: `in the room: ${list.map(label).join(", ")}` });
  } else {
    for (const p of list) {
      const old = seenParticipants.get(p.id);
      if (!old) addLog({ source: "page", level: "join", text: `${label(p)} joined` });
      else if (old.connected && !p.connected) addLog({ source: "page", level: "warn", text: `${label(p)}: media dropped` });
      else if (!old.connected && p.connected) addLog({ source: "page", text: `${label(p)}: media connected` });
      if (old && !old.hand_raised && p.hand_raised) addLog({ source: "page", level: "join", text: `${p.name} raised a hand` });
      if (old && quality(old).level !== "bad" && quality(p).level === "bad" && !isMachinery(p)) {
        addLog({ source: "page", level: "warn", text: `${label(p)}: bad connection (${quality(p).why.join(", ")})` });
      }
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
  if (!shared.current) return;
  const id = shared.current.id;
  const muted = button.dataset.held !== "true";
  await busy(button, async () => {
    await api("POST", `/api/events/${enc(id)}/participants/${enc(pid)}/mute`, { body: { kind, muted } });
    if (shared.current?.id !== id) return;
    button.dataset.held = String(muted);
    button.textContent = `${muted ? "Unmute" : "Mute"} ${kind === "audio" ? "mic" : "cam"}`;
    participantsPoller.kick();
  });
}

async function removeParticipant(pid, button) {
  if (!shared.current) return;
  const id = shared.current.id;
  const p = shared.participantsById.get(pid);
  if (!confirm(`Remove ${p?.name ?? pid} from the event? Their session ends (their invitation stays valid unless revoked).`)) return;
  await busy(button, async () => {
    await api("POST", `/api/events/${enc(id)}/participants/${enc(pid)}/remove`);
    removedHere.add(pid);
    if (shared.current?.id === id) participantsPoller.kick();
  });
}

// ---------------------------------------------------------------- raised hands and chat

function renderHands(list) {
  const raised = list.filter((p) => p.hand_raised);
  hooks.hands = raised.map((p) => p.name);
  $("hands").replaceChildren(...raised.map((p) => h("li", { class: "hand-item" }, "✋ ", p.name)));
  $("hands-empty").hidden = raised.length > 0;
}

/** A room message the console's monitor received (chat, hands). */
export function roomMessage(m) {
  if (m.type === "chat" && typeof m.text === "string") {
    const at = Number.isFinite(m.at) ? m.at * 1000 : Date.now();
    hooks.chat.push({ name: m.name, text: m.text, at });
    if (hooks.chat.length > 200) hooks.chat.shift();
    const box = $("chat");
    box.append(h("li", { class: "chat-item" }, h("strong", {}, m.name ?? "?"), " ", m.text));
    while (box.children.length > 200) box.firstElementChild.remove();
    box.scrollTop = box.scrollHeight;
  } else if (m.type === "hand") {
    addLog({ source: "page", level: m.raised ? "join" : "info", text: `${m.name ?? "someone"} ${m.raised ? "raised" : "lowered"} a hand` });
    participantsPoller.kick();
  }
}

// ---------------------------------------------------------------- invitations

const issued = new Map(); // invitation id → the issued invitation (with its token), this page's only
let invitationsJson = "";

export const invitationsPoller = eventPoller("invitations", EVERY.invitations,
  (id, signal) => api("GET", `/api/events/${enc(id)}/invitations`, { signal }),
  (list) => setInvitations(Array.isArray(list) ? list : []));

function invitationState(inv) {
  if (inv.revoked_at != null) return "revoked";
  if (inv.expires_at <= nowSecs()) return "expired";
  if (inv.in_room) return "in the room";
  if (inv.joined_at != null) return "joined, left";
  return "not joined yet";
}

/** The absolute link to hand out, when this page knows it (tokens are only known when created here). */
function invitationLink(inv) {
  const mine = issued.get(inv.id);
  // The server's links name its public URL (HTTPS when it is on), whatever
  // address this console was opened at.
  if (mine) return mine.link ?? location.origin + mine.url;
  return inv.link ?? null;
}

export function setInvitations(list) {
  const withState = list.map((inv) => ({ ...inv, state: invitationState(inv) }));
  hooks.invitations = withState;
  const json = JSON.stringify(withState);
  if (json === invitationsJson) return;
  invitationsJson = json;
  const usable = (inv) => inv.revoked_at == null && inv.expires_at > nowSecs();
  const ordered = [...withState].sort((a, b) => b.created_at - a.created_at);
  $("invitations").tBodies[0].replaceChildren(...ordered.map((inv) => {
    const link = invitationLink(inv);
    const mine = issued.get(inv.id);
    return h("tr", { dataset: { invitation: inv.id, state: inv.state, role: inv.role } },
      h("td", {}, inv.name),
      h("td", {}, inv.role),
      h("td", {}, h("span", { class: "status-pill", dataset: { status: inv.state.replace(/[^a-z]+/g, "-") } }, inv.state)),
      h("td", { class: "nowrap" }, fmtWhen(inv.expires_at)),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "btn btn-small", "data-action": "copy", disabled: !link || !usable(inv),
          title: link ? link : "The link carries the token, known only to the page that created the invitation",
          onclick: (ev) => copy(link, ev.currentTarget) }, inv.role === "encoder" ? "Copy WHIP URL" : "Copy link"),
        inv.role === "encoder" && mine
          ? h("button", { type: "button", class: "btn btn-small", "data-action": "copy-token", disabled: !usable(inv),
            onclick: (ev) => copy(mine.token, ev.currentTarget) }, "Copy token")
          : null,
        h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "revoke", disabled: !usable(inv),
          onclick: (ev) => revokeInvitation(inv, ev.currentTarget) }, "Revoke")));
  }));
  $("invitations-empty").hidden = list.length > 0;
}

/** Makes an invitation for the open event and shows it, ready to hand out. */
export async function invite(id, body) {
  const inv = await api("POST", `/api/events/${enc(id)}/invitations`, { body });
  issued.set(inv.id, inv);
  hooks.lastInvitation = inv;
  if (shared.current?.id !== id) return inv;
  showNewInvitation(inv);
  invitationsJson = "";
  setInvitations([...hooks.invitations.filter((i) => i.id !== inv.id), inv]);
  invitationsPoller.kick();
  return inv;
}

function showNewInvitation(inv) {
  const encoder = inv.role === "encoder";
  $("new-inv-title").textContent = encoder ? `The hospital encoder's invitation (${inv.name})` : `Invitation for ${inv.name} (${inv.role})`;
  $("new-inv-note").textContent = encoder
    ? `— WHIP: the URL with Authorization: Bearer <token>. SRT: run casecast publish --source 'srt://:PORT?mode=listener' beside the server with this token. Valid until ${fmtWhen(inv.expires_at)}.`
    : inv.role === "viewer" && hooks.event?.policy?.viewing === "private"
      ? "— this event is private: viewers also need a playback link (below)"
      : `— valid until ${fmtWhen(inv.expires_at)}`;
  $("new-link-label").textContent = encoder ? "WHIP URL" : "Link";
  $("new-link").value = inv.link ?? location.origin + inv.url;
  $("copy-link").textContent = encoder ? "Copy WHIP URL" : "Copy link";
  $("new-token-row").hidden = !encoder;
  $("new-token").value = encoder ? inv.token : "";
  $("new-invitation").hidden = false;
}

async function revokeInvitation(inv, button) {
  if (!shared.current) return;
  const id = shared.current.id;
  if (!confirm(`Revoke the invitation of ${inv.name} (${inv.role})? Their link stops working everywhere.`)) return;
  await busy(button, async () => {
    await api("DELETE", `/api/events/${enc(id)}/invitations/${enc(inv.id)}`);
    if (shared.current?.id !== id) return;
    setInvitations(hooks.invitations.map((i) => (i.id === inv.id ? { ...i, revoked_at: nowSecs() } : i)));
    invitationsPoller.kick();
  });
}

$("invite").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!shared.current) return;
  const id = shared.current.id;
  busy($("inv-submit"), async () => {
    const body = { name: $("inv-name").value.trim(), role: $("inv-role").value };
    const ttl = Number.parseInt($("inv-ttl").value, 10);
    if (Number.isFinite(ttl)) body.ttl_hours = ttl;
    await invite(id, body);
    $("inv-name").value = "";
  });
});

$("copy-link").addEventListener("click", () => copy($("new-link").value, $("copy-link"), $("new-link")));
$("copy-token").addEventListener("click", () => copy($("new-token").value, $("copy-token"), $("new-token")));
$("copy-playback").addEventListener("click", () => copy($("playback-url").value, $("copy-playback"), $("playback-url")));
for (const input of [$("new-link"), $("new-token"), $("playback-url")]) input.addEventListener("focus", () => input.select());

$("playback-link").addEventListener("click", () => {
  if (!shared.current) return;
  const id = shared.current.id;
  busy($("playback-link"), async () => {
    const t = await api("POST", `/api/events/${enc(id)}/playback-tokens`, { body: { viewer: "shared from the console" } });
    if (shared.current?.id !== id) return;
    $("playback-url").value = t.link ?? location.origin + t.url;
    $("playback-row").hidden = false;
  });
});
