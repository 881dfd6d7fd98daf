// casecast — commentator page. Plain ES module, no build step, no libraries.
//
// Flow (protocol: signaling/src/protocol.rs, one JSON object per WebSocket frame):
//  1. Room id from /room/{id}; token and optional display name from ?token=…&name=….
//  2. WebSocket /ws → {"type":"join"}. The server answers "joined" (our id, role,
//     uplink policy, who is here) or "error"; unauthorized/forbidden stop for good.
//  3. Local media once per page, as the policy allows (audio; video at 320×240 and
//     max_fps). On failure we stay receive-only. The stream survives rejoins.
//  4. One RTCPeerConnection (max-bundle, no ICE servers: the server is ICE-lite).
//     Transceivers audio then video: sendonly with a track, inactive without. The
//     offer goes out right after setLocalDescription (no trickle). On the answer,
//     the video sender gets the policy's bitrate and frame-rate caps.
//  5. The server re-offers whenever tracks come or go, listing mid → track info;
//     we answer. All messages run through one promise chain, in arrival order.
//  6. ontrack routes by mid: feed video → #feed, feed audio → #feed-audio,
//     commentator video → the publisher's tile, commentator audio → hidden <audio>,
//     program video (the monitor: what viewers see) → the "Program" tile, first.
//  7. WS closed, media failed, or media disconnected > 3 s: tear down and rejoin
//     with backoff 1, 2, 4, 8, 10 s. Ping every 10 s.
//  8. window.casecast exposes state and stats() for automated tests.

const $ = (id) => document.getElementById(id);
const ui = {
  roomName: $("room-name"), selfName: $("self-name"), selfRole: $("self-role"),
  people: $("people"), connText: $("conn-text"), connDetail: $("conn-detail"),
  btnMic: $("btn-mic"), btnCam: $("btn-cam"), btnLeave: $("btn-leave"),
  btnSound: $("btn-sound"), banner: $("banner"), bannerText: $("banner-text"),
  bannerAction: $("banner-action"), notice: $("notice"), feedWrap: $("feed-wrap"),
  feed: $("feed"), feedAudio: $("feed-audio"), tiles: $("tiles"), audioSink: $("audio-sink"),
};

const FATAL_CODES = new Set(["unauthorized", "forbidden", "unsupported_version"]);
const PING_MS = 10_000;
const DISCONNECT_GRACE_MS = 3_000;
const MAX_BACKOFF_MS = 10_000;
const SELF = "self"; // tile key of our own preview

const query = new URLSearchParams(location.search);
const roomId = decodeURIComponent(location.pathname.match(/\/room\/([^/]+)/)?.[1] ?? "");
const token = query.get("token") ?? "";
const requestedName = query.get("name")?.trim() || undefined;

const app = {
  state: "idle",           // idle | connecting | live | interrupted | reconnecting | left | error
  conn: null,              // current connection: { ws, pc, queue, videoSender, timers, closed }
  participantId: null,
  ownIds: new Set(),       // our participant ids across rejoins (never shown as others)
  policy: null,
  serverMedia: null,       // last "connection" state the server reported
  localStream: null,       // acquired once, reused across rejoins
  mediaTried: false,
  participants: new Map(), // id -> { id, name, role }, everyone but us
  held: { audio: false, video: false }, // muted by an operator: the server drops it
  tracks: new Map(),       // mid -> TrackInfo from the server's offers
  media: new Map(),        // mid -> { info, el, track } for what is playing
  attempt: 0, reconnectTimer: 0, left: false, fatal: false,
};

// ---------------------------------------------------------------- connection

function connect() {
  clearInterval(app.reconnectTimer);
  if (app.left || app.fatal) return;
  setState("connecting");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  const conn = { ws, pc: null, videoSender: null, queue: Promise.resolve(), closed: false, pingTimer: 0, graceTimer: 0 };
  app.conn = conn;

  ws.onopen = () => {
    send(conn, { type: "join", v: 1, room: roomId, token, ...(requestedName && { name: requestedName }) });
    conn.pingTimer = setInterval(() => send(conn, { type: "ping" }), PING_MS);
    renderConn();
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return console.warn("casecast: not JSON", ev.data); }
    if (typeof msg?.type !== "string") return console.warn("casecast: not a message", msg);
    // Errors skip the queue: a fatal one must stop reconnects even if the socket
    // closes while the queue is still busy (say, waiting on a permission prompt).
    if (msg.type === "error") return onError(msg);
    conn.queue = conn.queue
      .then(() => (conn.closed ? undefined : handle(conn, msg)))
      .catch((err) => {
        if (conn.closed) return;
        console.error("casecast:", msg.type, err);
        restart(`${msg.type} failed: ${err.message ?? err}`);
      });
  };
  ws.onclose = (ev) => {
    if (!conn.closed) restart(`signaling closed${ev.code ? ` (${ev.code})` : ""}`);
  };
  renderConn();
}

function send(conn, msg) {
  if (conn?.ws.readyState === WebSocket.OPEN) conn.ws.send(JSON.stringify(msg));
}

/** Closes the current connection without touching local media. */
function teardown() {
  const c = app.conn;
  if (!c) return;
  app.conn = null;
  c.closed = true;
  clearInterval(c.pingTimer);
  clearTimeout(c.graceTimer);
  c.ws.onopen = c.ws.onmessage = c.ws.onclose = null;
  if (c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
  if (c.pc) {
    c.pc.ontrack = c.pc.onconnectionstatechange = null;
    c.pc.close();
  }
  for (const mid of [...app.media.keys()]) removeMedia(mid);
  app.tracks.clear();
  app.serverMedia = null;
  renderConn();
}

function restart(reason) {
  console.info("casecast: restarting:", reason);
  teardown();
  if (app.left) return;
  if (app.fatal) return; // onError already set the state and the banner
  let remaining = Math.min(1000 * 2 ** app.attempt, MAX_BACKOFF_MS) / 1000;
  app.attempt += 1;
  const tick = () => setState("reconnecting", `reconnecting in ${remaining}s`);
  tick();
  clearInterval(app.reconnectTimer);
  app.reconnectTimer = setInterval(() => {
    remaining -= 1;
    if (remaining <= 0) connect(); else tick();
  }, 1000);
}

async function handle(conn, msg) {
  switch (msg.type) {
    case "joined": return onJoined(conn, msg);
    case "answer":
      await conn.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      return applySenderLimits(conn);
    case "offer": return onServerOffer(conn, msg);
    case "participant_joined": return addParticipant(msg.participant);
    case "participant_left": return removeParticipant(msg.participant_id);
    case "track_added": return console.info("casecast: track added", msg.track);
    case "track_removed": return removeTrack(msg.track_id);
    case "muted": return setMuted(msg.participant_id, msg.kind, msg.muted);
    case "muted_by_operator": return onHeld(msg.kind, msg.muted);
    case "connection": app.serverMedia = msg.state; return renderConn();
    case "pong": return undefined;
    default: return console.debug("casecast: unknown message", msg);
  }
}

async function onJoined(conn, m) {
  // A new session: nothing of ours is held by an operator.
  Object.assign(app, { participantId: m.participant_id, policy: m.policy, held: { audio: false, video: false } });
  app.ownIds.add(m.participant_id);
  ui.roomName.textContent = m.room;
  ui.selfName.textContent = m.name;
  ui.selfRole.textContent = m.role;
  document.title = `casecast — ${m.room}`;
  syncParticipants(m.participants ?? []);
  if (!FATAL_CODES.has(ui.banner.dataset.code)) hideBanner();

  await ensureLocalMedia(m.policy);
  if (conn.closed) return;

  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  conn.pc = pc;
  pc.ontrack = onTrack;
  pc.onconnectionstatechange = () => onPcState(conn);

  const stream = app.localStream;
  const audio = m.policy.publish ? localTrack("audio") : undefined;
  const video = m.policy.publish && m.policy.video ? localTrack("video") : undefined;
  for (const [kind, track] of [["audio", audio], ["video", video]]) {
    const tr = pc.addTransceiver(track ?? kind, {
      direction: track ? "sendonly" : "inactive",
      streams: track ? [stream] : [],
    });
    if (kind === "video") conn.videoSender = tr.sender;
  }
  await pc.setLocalDescription(await pc.createOffer());
  send(conn, { type: "offer", sdp: pc.localDescription.sdp });

  // Tracks muted before a rejoin stay muted: tell the room again.
  if (audio && !audio.enabled) send(conn, { type: "mute", kind: "audio", muted: true });
  if (video && !video.enabled) send(conn, { type: "mute", kind: "video", muted: true });
  renderControls();
  setState("connecting", "starting media");
}

async function onServerOffer(conn, m) {
  const pc = conn.pc;
  if (!pc) throw new Error("server offer before join completed");
  for (const t of m.tracks ?? []) if (t.mid != null) app.tracks.set(t.mid, t);
  await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  send(conn, { type: "answer", sdp: pc.localDescription.sdp });
  reconcileMedia(pc);
}

/** Sets the policy's caps on the video sender (after negotiation, when encodings exist). */
async function applySenderLimits(conn) {
  const sender = conn.videoSender;
  const p = app.policy;
  if (!sender?.track || !p) return;
  try {
    const params = sender.getParameters();
    if (!params.encodings?.length) params.encodings = [{}];
    const enc = params.encodings[0];
    if (p.max_video_bitrate > 0) enc.maxBitrate = p.max_video_bitrate;
    if (p.max_fps > 0) enc.maxFramerate = p.max_fps;
    enc.scaleResolutionDownBy = 1;
    await sender.setParameters(params);
  } catch (err) {
    console.warn("casecast: could not cap the video sender", err);
  }
}

function onPcState(conn) {
  if (conn.closed) return;
  const s = conn.pc.connectionState;
  renderConn();
  clearTimeout(conn.graceTimer);
  if (s === "connected") {
    app.attempt = 0;
    setState("live");
  } else if (s === "failed") {
    restart("media connection failed");
  } else if (s === "disconnected") {
    setState("interrupted", "media interrupted…");
    conn.graceTimer = setTimeout(() => restart("media disconnected for 3 s"), DISCONNECT_GRACE_MS);
  }
}

function onError(m) {
  if (FATAL_CODES.has(m.code)) {
    app.fatal = true;
    setState("error", m.code.replace(/_/g, " "));
  }
  showBanner(m.message || m.code, { code: m.code, sticky: app.fatal });
  // A refused description leaves this session unusable: start a fresh one.
  if (m.code === "sdp_rejected") restart(`the server refused a description: ${m.message}`);
}

// ---------------------------------------------------------------- local media

async function ensureLocalMedia(policy) {
  if (app.mediaTried || !policy.publish) return;
  app.mediaTried = true;
  if (!navigator.mediaDevices?.getUserMedia) {
    return showNotice("Camera and microphone are unavailable here (the page needs HTTPS). You can watch and listen.");
  }
  const fps = policy.max_fps || 15;
  const video = policy.video && {
    width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: fps, max: fps },
  };
  const attempts = video ? [{ audio: true, video }, { audio: true }] : [{ audio: true }];
  let lastError;
  for (const constraints of attempts) {
    try {
      app.localStream = await navigator.mediaDevices.getUserMedia(constraints);
      break;
    } catch (err) {
      lastError = err;
    }
  }
  if (!app.localStream) {
    showNotice(`No microphone or camera (${lastError?.name ?? "unavailable"}): you can watch and listen, but not speak.`);
  } else if (video && !localTrack("video")) {
    showNotice(`Camera unavailable (${lastError?.name ?? "error"}): sending audio only.`);
  }
  const cam = localTrack("video");
  if (cam) {
    if ("contentHint" in cam) cam.contentHint = "motion";
    const tile = ensureTile(SELF, "You");
    tile.classList.add("self");
    tile.dataset.video = "on";
    attach(tile.querySelector("video"), new MediaStream([cam]));
  } else if (localTrack("audio")) {
    ensureTile(SELF, "You").classList.add("self");
  }
  renderControls();
}

const localTrack = (kind) =>
  (kind === "audio" ? app.localStream?.getAudioTracks() : app.localStream?.getVideoTracks())?.[0];

function toggle(kind) {
  const track = localTrack(kind);
  if (!track || app.left) return;
  track.enabled = !track.enabled;
  send(app.conn, { type: "mute", kind, muted: !track.enabled });
  renderControls();
}

/** An operator muted (or unmuted) what we send of one kind: the button says so and
 * waits until they unmute it (the server drops it meanwhile). */
function onHeld(kind, muted) {
  if (!(kind in app.held)) return;
  app.held[kind] = muted;
  const noun = kind === "audio" ? "microphone" : "camera";
  showBanner(muted ? `The operator muted your ${noun}.` : `The operator unmuted your ${noun}.`, { code: "held" });
  renderControls();
}

function renderControls() {
  if (!app.policy) return; // not joined yet: the buttons keep their initial text
  const render = (btn, track, noun, onLabel, offLabel) => {
    const held = app.held[noun === "microphone" ? "audio" : "video"];
    const on = Boolean(track?.enabled) && !held;
    btn.disabled = !track || app.left || held;
    btn.dataset.on = String(on);
    btn.setAttribute("aria-pressed", String(Boolean(track) && !on));
    btn.setAttribute("aria-label", track ? `${on ? "Turn off" : "Turn on"} ${noun}` : `No ${noun}`);
    btn.querySelector(".label").textContent = !track ? `No ${noun}` : held ? "Muted by operator" : on ? onLabel : offLabel;
  };
  const mic = localTrack("audio");
  const cam = localTrack("video");
  render(ui.btnMic, mic, "microphone", "Mute", "Unmute");
  render(ui.btnCam, cam, "camera", "Camera off", "Camera on");
  const self = tileFor(SELF);
  if (self) {
    self.dataset.audioMuted = String(Boolean(mic) && !mic.enabled);
    self.dataset.videoMuted = String(Boolean(cam) && !cam.enabled);
  }
}

// ---------------------------------------------------------------- remote media

const onTrack = (ev) => route(ev.transceiver?.mid, ev.track);

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

function attach(el, stream) {
  el.srcObject = stream;
  el.play?.().catch((err) => {
    if (err.name === "NotAllowedError") ui.btnSound.hidden = false;
  });
}

function removeMedia(mid) {
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
function reconcileMedia(pc) {
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

function removeTrack(trackId) {
  for (const [mid, info] of app.tracks) {
    if (info.id !== trackId) continue;
    removeMedia(mid);
    app.tracks.delete(mid);
  }
}

// ---------------------------------------------------------------- participants and tiles

const showsTile = (p) => p.role === "commentator";

function syncParticipants(list) {
  app.participants = new Map(list.filter((p) => !app.ownIds.has(p.id)).map((p) => [p.id, p]));
  for (const tile of [...ui.tiles.querySelectorAll(".tile")]) {
    const id = tile.dataset.participant;
    if (id !== SELF && !app.participants.has(id)) tile.remove();
  }
  for (const p of app.participants.values()) if (showsTile(p)) ensureTile(p.id, p.name);
  renderPeople();
}

function addParticipant(p) {
  if (app.ownIds.has(p.id)) return;
  app.participants.set(p.id, p);
  if (showsTile(p)) ensureTile(p.id, p.name);
  renderPeople();
}

function removeParticipant(id) {
  app.participants.delete(id);
  for (const [mid, m] of app.media) if (m.info.participant_id === id) removeMedia(mid);
  tileFor(id)?.remove();
  renderPeople();
}

const renderPeople = () => { ui.people.textContent = `${app.participants.size + 1} in room`; };

function setMuted(participantId, kind, muted) {
  const p = app.participants.get(participantId);
  const tile = tileFor(participantId) ?? (p && ensureTile(p.id, p.name));
  if (tile) tile.dataset[kind === "audio" ? "audioMuted" : "videoMuted"] = String(muted);
}

const tileFor = (id) => ui.tiles.querySelector(`.tile[data-participant="${CSS.escape(id)}"]`);

function ensureTile(id, name) {
  let tile = tileFor(id);
  if (!tile) {
    tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.participant = id;
    tile.dataset.video = "off";
    tile.innerHTML = `<video autoplay playsinline muted></video><div class="avatar" aria-hidden="true"></div>
      <figcaption><span class="name"></span><span class="badge mic-off" title="Microphone muted">mic off</span
      ><span class="badge cam-off" title="Camera off">cam off</span></figcaption>`;
    if (id === SELF) ui.tiles.prepend(tile); else ui.tiles.append(tile);
  }
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".avatar").textContent = initials || "?";
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

// ---------------------------------------------------------------- status, banners, controls

function setState(state, text) {
  app.state = state;
  document.body.dataset.state = state;
  ui.connText.textContent = text ?? { live: "live", error: "error", left: "left" }[state] ?? state;
  renderConn();
}

function renderConn() {
  const ws = app.conn ? ["connecting", "open", "closing", "closed"][app.conn.ws.readyState] : "closed";
  const pc = app.conn?.pc?.connectionState ?? "none";
  document.body.dataset.ws = ws;
  document.body.dataset.pc = pc;
  const server = app.serverMedia ? ` · server ${app.serverMedia}` : "";
  ui.connDetail.textContent = `signaling ${ws} · media ${pc}${server}`;
}

function showBanner(text, { code = "", sticky = false, action = null } = {}) {
  ui.bannerText.textContent = text;
  ui.banner.dataset.code = code;
  ui.banner.hidden = false;
  ui.bannerAction.hidden = !action;
  if (action) {
    ui.bannerAction.textContent = action.label;
    ui.bannerAction.onclick = action.run;
  }
  clearTimeout(showBanner.timer);
  if (!sticky) showBanner.timer = setTimeout(hideBanner, 10_000);
}

function hideBanner() {
  ui.banner.hidden = true;
  ui.banner.dataset.code = "";
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function leave() {
  if (app.left) return;
  app.left = true;
  clearInterval(app.reconnectTimer);
  send(app.conn, { type: "leave" });
  teardown();
  app.localStream?.getTracks().forEach((t) => t.stop());
  for (const tile of [...ui.tiles.querySelectorAll(".tile")]) tile.remove();
  setState("left", "left the room");
  ui.btnLeave.disabled = true;
  renderControls();
  showBanner("You left the room.", { sticky: true, action: { label: "Rejoin", run: () => location.reload() } });
}

ui.btnMic.addEventListener("click", () => toggle("audio"));
ui.btnCam.addEventListener("click", () => toggle("video"));
ui.btnLeave.addEventListener("click", leave);
ui.btnSound.addEventListener("click", () => {
  ui.btnSound.hidden = true;
  for (const el of document.querySelectorAll("audio, video")) {
    if (el.srcObject) el.play().catch(() => { ui.btnSound.hidden = false; });
  }
});
addEventListener("pagehide", () => { if (!app.left) send(app.conn, { type: "leave" }); });

// ---------------------------------------------------------------- test hooks

/** Receive statistics, with each inbound-rtp report attributed through its mid. */
async function stats() {
  const result = { feedFramesDecoded: 0, programFramesDecoded: 0, audioPacketsReceivedFromCommentators: 0, inbound: [] };
  const pc = app.conn?.pc;
  if (!pc) return result;
  // Fallback for browsers whose inbound-rtp reports lack `mid`: receiver track id → mid.
  const midByTrack = new Map(pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
  const report = await pc.getStats();
  report.forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    const mid = r.mid ?? midByTrack.get(r.trackIdentifier) ?? null;
    const info = mid != null ? app.tracks.get(mid) : undefined;
    const kind = r.kind ?? r.mediaType;
    result.inbound.push({
      mid, kind, ssrc: r.ssrc,
      source: info?.source ?? null, participantId: info?.participant_id ?? null, name: info?.name ?? null,
      packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
      bytesReceived: r.bytesReceived ?? 0, framesDecoded: r.framesDecoded ?? 0,
      framesPerSecond: r.framesPerSecond ?? null, jitter: r.jitter ?? null,
    });
    if (kind === "video" && info?.source === "feed") result.feedFramesDecoded += r.framesDecoded ?? 0;
    if (kind === "video" && info?.source === "program") result.programFramesDecoded += r.framesDecoded ?? 0;
    if (kind === "audio" && info?.source === "commentator") result.audioPacketsReceivedFromCommentators += r.packetsReceived ?? 0;
  });
  return result;
}

window.casecast = {
  get pc() { return app.conn?.pc ?? null; },
  get state() { return app.state; },
  get participantId() { return app.participantId; },
  get policy() { return app.policy; },
  get tracks() { return Object.fromEntries(app.tracks); },
  get localStream() { return app.localStream; },
  stats,
  leave,
};

// ---------------------------------------------------------------- start

ui.roomName.textContent = roomId || "—";
if (!roomId || !token) {
  app.fatal = true;
  setState("error", "bad link");
  showBanner("This link is incomplete: it must look like /room/{id}?token=…. Ask the organizer for your commentator link.", { code: "bad_link", sticky: true });
} else {
  connect();
}
