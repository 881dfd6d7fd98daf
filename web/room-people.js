// casecast — commentator page: what others send and who they are. Incoming tracks
// are routed by mid: feed video → #feed, feed audio → #feed-audio, commentator video
// → the publisher's tile, commentator audio → hidden <audio>, program video (the
// monitor: what viewers see) → the "Program" tile, first. People (commentators; not
// the encoder, the program mixer or consoles), raised hands and chat come as room
// messages.

import { send } from "./room-connection.js";
import { SELF, app, showBanner, ui } from "./room-core.js";
import { renderControls } from "./room-local.js";

// ---------------------------------------------------------------- remote media

export const onTrack = (ev) => route(ev.transceiver?.mid, ev.track);

/** Plays a received track where its track info says it belongs. */
function route(mid, track) {
  const info = app.tracks.get(mid) ?? {
    id: mid, mid, participant_id: "unknown", name: "Unknown", kind: track.kind, source: "commentator",
  };
  removeMedia(mid); // a reused m-line replaces whatever it carried before
  let el;
  if (info.source === "feed") {
    el = track.kind === "video" ? ui.feed : ui.feedAudio;
    if (track.kind === "video") ui.feedWrap.dataset.live = "true";
  } else if (info.source === "program") {
    if (track.kind !== "video") return; // the monitor is picture only
    el = ensureProgramTile().querySelector("video");
  } else if (track.kind === "video") {
    const tile = ensureTile(info.participant_id, info.name);
    tile.dataset.video = "on";
    el = tile.querySelector("video");
  } else {
    el = document.createElement("audio");
    el.autoplay = true;
    el.dataset.mid = mid;
    el.dataset.participant = info.participant_id;
    ui.audioSink.append(el);
    ensureTile(info.participant_id, info.name);
  }
  attach(el, new MediaStream([track]));
  app.media.set(mid, { info, el, track });
  track.addEventListener("ended", () => {
    if (app.media.get(mid)?.track === track) removeMedia(mid);
  });
}

export function attach(el, stream) {
  el.srcObject = stream;
  el.play?.().catch((err) => {
    if (err.name === "NotAllowedError") ui.btnSound.hidden = false;
  });
}

export function removeMedia(mid) {
  const m = app.media.get(mid);
  if (!m) return;
  app.media.delete(mid);
  // A shared element (the feed) may already show a newer track: leave that alone.
  const current = m.el.srcObject?.getTracks?.() ?? [];
  if (current.length && !current.includes(m.track)) return pruneTile(m.info.participant_id);
  m.el.srcObject = null;
  if (m.el === ui.feed) {
    ui.feedWrap.dataset.live = "false";
  } else if (m.info.source === "program") {
    m.el.closest(".tile")?.remove();
    return;
  } else if (m.el.parentElement === ui.audioSink) {
    m.el.remove();
  } else {
    const tile = m.el.closest(".tile");
    if (tile) tile.dataset.video = "off";
  }
  pruneTile(m.info.participant_id);
}

/**
 * After each negotiation: drop media whose m-line no longer receives, and re-route
 * m-lines that were reused for another track without firing ontrack.
 */
export function reconcileMedia(pc) {
  const receivers = new Map(
    pc.getTransceivers()
      .filter((t) => t.mid != null && !t.stopped && ["recvonly", "sendrecv"].includes(t.currentDirection))
      .map((t) => [t.mid, t.receiver]),
  );
  for (const mid of [...app.media.keys()]) if (!receivers.has(mid)) removeMedia(mid);
  for (const mid of [...app.tracks.keys()]) if (!receivers.has(mid)) app.tracks.delete(mid);
  for (const [mid, receiver] of receivers) {
    const info = app.tracks.get(mid);
    if (info && app.media.get(mid)?.info.id !== info.id) route(mid, receiver.track);
  }
}

export function removeTrack(trackId) {
  for (const [mid, info] of app.tracks) {
    if (info.id !== trackId) continue;
    removeMedia(mid);
    app.tracks.delete(mid);
  }
}

// ---------------------------------------------------------------- people, hands and tiles

/** People in the roster: commentators (and viewers on this door), not the encoder,
 * the program mixer or operators' consoles. */
const isPerson = (p) => p.role === "commentator" || p.role === "viewer";
const showsTile = (p) => p.role === "commentator";

export function syncParticipants(list) {
  app.participants = new Map(list.filter((p) => !app.ownIds.has(p.id)).map((p) => [p.id, p]));
  for (const tile of [...ui.tiles.querySelectorAll(".tile")]) {
    const id = tile.dataset.participant;
    if (id && id !== SELF && !app.participants.has(id)) tile.remove();
  }
  for (const p of app.participants.values()) if (showsTile(p)) ensureTile(p.id, p.name);
  renderPeople();
}

export function addParticipant(p) {
  if (app.ownIds.has(p.id)) return;
  app.participants.set(p.id, p);
  if (showsTile(p)) ensureTile(p.id, p.name);
  renderPeople();
}

export function removeParticipant(id) {
  app.participants.delete(id);
  app.hands.delete(id);
  for (const [mid, m] of app.media) if (m.info.participant_id === id) removeMedia(mid);
  tileFor(id)?.remove();
  renderPeople();
}

export function renderPeople() {
  const others = [...app.participants.values()].filter(isPerson).sort((a, b) => a.name.localeCompare(b.name));
  const joined = app.participantId != null && !app.left;
  const n = others.length + (joined ? 1 : 0);
  ui.people.textContent = `${n} ${n === 1 ? "person" : "people"} here`;
  const hands = [...app.hands.keys()].filter((id) => !app.ownIds.has(id) || id === app.participantId).length;
  ui.peopleSummary.textContent = `In the room (${n})${hands ? ` · ${hands} ✋` : ""}`;
  const row = (name, id, note) => {
    const li = document.createElement("li");
    li.dataset.participant = id;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = name;
    li.append(who);
    if (note) {
      const s = document.createElement("span");
      s.className = "note";
      s.textContent = note;
      li.append(s);
    }
    if (app.hands.has(id)) {
      li.dataset.hand = "true";
      const h = document.createElement("span");
      h.className = "hand";
      h.title = "Raised hand";
      h.textContent = "✋";
      li.append(h);
    }
    return li;
  };
  const rows = [];
  if (joined) rows.push(row(ui.selfName.textContent || "You", app.participantId, "you"));
  for (const p of others) rows.push(row(p.name, p.id, p.role === "viewer" ? "watching" : ""));
  ui.peopleList.replaceChildren(...rows);
}

export function onHand(m) {
  if (m.raised) app.hands.set(m.participant, m.name); else app.hands.delete(m.participant);
  if (m.participant === app.participantId) app.myHand = m.raised;
  // A session of ours that ended (a rejoin) lowers its hand: not this one's.
  if (app.ownIds.has(m.participant) && m.participant !== app.participantId) return renderPeople();
  const tile = m.participant === app.participantId ? tileFor(SELF) : tileFor(m.participant);
  if (tile) tile.dataset.hand = String(m.raised);
  renderControls();
  renderPeople();
}

export function toggleHand() {
  if (app.role !== "commentator" || app.left) return;
  const raised = !app.myHand;
  if (send(app.conn, { type: "raise_hand", raised })) {
    app.myHand = raised; // the server's `hand` confirms it
    renderControls();
  }
}

// ---------------------------------------------------------------- chat

export function onChat(m) {
  const key = `${m.id}|${m.at}`;
  if (app.chatSeen.has(key)) return;
  app.chatSeen.add(key);
  app.chat.push({ id: m.id, participant: m.participant, name: m.name, text: m.text, at: m.at });
  const li = document.createElement("li");
  if (app.ownIds.has(m.participant)) li.classList.add("mine");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = app.ownIds.has(m.participant) ? "You" : m.name;
  const when = document.createElement("time");
  const at = new Date(m.at);
  when.dateTime = at.toISOString();
  when.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = m.text;
  li.append(who, when, text);
  const atBottom = ui.chatLog.scrollHeight - ui.chatLog.scrollTop - ui.chatLog.clientHeight < 40;
  ui.chatLog.append(li);
  while (ui.chatLog.children.length > 200) ui.chatLog.firstElementChild.remove();
  if (atBottom || li.classList.contains("mine")) ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

export function sendChat(text) {
  const t = text.trim();
  if (!t) return false;
  if (!send(app.conn, { type: "chat", text: t.slice(0, 500) })) {
    showBanner("Not connected right now: your message was not sent. It is still in the box; send it again in a moment.", { code: "chat" });
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- tiles

export function setMuted(participantId, kind, muted) {
  const p = app.participants.get(participantId);
  const tile = tileFor(participantId) ?? (p && showsTile(p) && ensureTile(p.id, p.name));
  if (tile) tile.dataset[kind === "audio" ? "audioMuted" : "videoMuted"] = String(muted);
}

export const tileFor = (id) => ui.tiles.querySelector(`.tile[data-participant="${CSS.escape(id)}"]`);

export function ensureTile(id, name) {
  let tile = tileFor(id);
  if (!tile) {
    tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.participant = id;
    tile.dataset.video = "off";
    tile.innerHTML = `<video autoplay playsinline muted></video><div class="avatar" aria-hidden="true"></div>
      <figcaption><span class="name"></span><span class="badge hand" title="Raised hand">✋</span
      ><span class="badge mic-off" title="Microphone muted">mic off</span
      ><span class="badge cam-off" title="Camera off">cam off</span></figcaption>`;
    const program = ui.tiles.querySelector(".tile.program");
    if (id === SELF) (program ? program.after(tile) : ui.tiles.prepend(tile)); else ui.tiles.append(tile);
  }
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".avatar").textContent = initials || "?";
  if (id !== SELF) tile.dataset.hand = String(app.hands.has(id));
  return tile;
}

/** The monitor tile: the program as viewers see it; click for full screen. */
function ensureProgramTile() {
  let tile = ui.tiles.querySelector(".tile.program");
  if (!tile) {
    tile = document.createElement("figure");
    tile.className = "tile program";
    tile.dataset.video = "on";
    tile.title = "The program as viewers see it — click for full screen";
    tile.innerHTML = `<video autoplay playsinline muted aria-label="Program monitor"></video>
      <figcaption><span class="name">Program</span><span class="badge on-air">viewers see this</span></figcaption>`;
    tile.addEventListener("click", () => tile.querySelector("video").requestFullscreen?.().catch(() => {}));
    ui.tiles.prepend(tile);
  }
  return tile;
}

/** Removes the tile of someone no longer in the room once nothing of theirs plays. */
function pruneTile(id) {
  if (id === SELF || app.participants.has(id)) return;
  for (const m of app.media.values()) if (m.info.participant_id === id) return;
  tileFor(id)?.remove();
}
