// casecast — commentator page. Plain ES module, no build step, no libraries.
//
// Flow (protocol: signaling/src/protocol.rs and docs/signaling.md):
//  1. Room id from /room/{id}, token from ?token=…. A `name` in the link is ignored:
//     the server names everyone after their invitation (the token's name claim).
//  2. Pre-join screen: a WebSocket `check` says who the invitation names, the event's
//     title and what this person may send — or, in plain words, why the link does not
//     work. The person picks a microphone and camera (remembered in localStorage),
//     sees the camera and a live microphone level (WebAudio), and presses Join. A
//     blocked, missing or busy device gets a plain hint and a Retry button.
//  3. Join: WebSocket /ws → {"type":"join"}; "joined" carries our id, role, policy,
//     who is here and the event (absent: no event has this id, and the page says so).
//     unauthorized/forbidden/unsupported_version stop for good.
//  4. One RTCPeerConnection (max-bundle, no ICE servers: the server is ICE-lite).
//     Transceivers audio then video: sendonly with a track, inactive without. The
//     offer goes out right after setLocalDescription (no trickle). On the answer,
//     the video sender gets the policy's bitrate and frame-rate caps.
//  5. The server re-offers whenever tracks come or go, listing mid → track info;
//     we answer. All messages run through one promise chain, in arrival order.
//  6. ontrack routes by mid: feed video → #feed, feed audio → #feed-audio,
//     commentator video → the publisher's tile, commentator audio → hidden <audio>,
//     program video (the monitor: what viewers see) → the "Program" tile, first.
//  7. People (commentators; not the encoder, the program mixer or consoles), raised
//     hands and chat come as room messages (`hand`, `chat`).
//  8. WS closed, media failed, or media disconnected > 3 s: tear down and rejoin
//     with backoff 1, 2, 4, 8, 10 s. A server that cannot be reached gets a banner.
//  9. window.casecast exposes state and stats() for automated tests, which join
//     through the pre-join screen as a person does.

const $ = (id) => document.getElementById(id);
const ui = {
  roomName: $("room-name"), self: $("self"), selfName: $("self-name"), selfRole: $("self-role"),
  people: $("people"), connText: $("conn-text"),
  outage: $("outage"), outageDetail: $("outage-detail"), outageRetry: $("outage-retry"),
  btnMic: $("btn-mic"), btnCam: $("btn-cam"), btnHand: $("btn-hand"), btnLeave: $("btn-leave"),
  btnSound: $("btn-sound"), banner: $("banner"), bannerText: $("banner-text"),
  bannerAction: $("banner-action"), notice: $("notice"), noticeText: $("notice-text"),
  noticeAction: $("notice-action"), feedWrap: $("feed-wrap"), placeholder: $("feed-placeholder"),
  feed: $("feed"), feedAudio: $("feed-audio"), tiles: $("tiles"), audioSink: $("audio-sink"),
  stage: $("stage"), controls: $("controls"),
  prejoin: $("prejoin"), prejoinEvent: $("prejoin-event"), prejoinName: $("prejoin-name"),
  prejoinNote: $("prejoin-note"), prejoinBody: $("prejoin-body"), fatal: $("fatal"), fatalText: $("fatal-text"),
  preview: $("preview"), previewWrap: $("preview-wrap"), micSelect: $("mic-select"), camSelect: $("cam-select"),
  camField: $("cam-field"), audioOnly: $("audio-only"), meter: $("meter"), meterFill: $("meter-fill"),
  meterHint: $("meter-hint"), mediaError: $("media-error"), mediaErrorText: $("media-error-text"),
  mediaRetry: $("media-retry"), btnJoin: $("btn-join"), joinHint: $("join-hint"),
  peopleSummary: $("people-summary"), peopleList: $("people-list"),
  chatLog: $("chat-log"), chatForm: $("chat-form"), chatInput: $("chat-input"),
  leaveDialog: $("leave-dialog"),
};

const FATAL_CODES = new Set(["unauthorized", "forbidden", "unsupported_version"]);
const PING_MS = 10_000;
// Staying joined through a network change (see "staying joined" below).
const RESTART_AFTER_MS = 300;    // media interrupted this long: restart ICE
const RESTART_AGAIN_MS = 3_000;  // not back this long after a restart: another one
const RESUME_WITHIN_MS = 4_500;  // the server keeps a lost session 5 s
const RESUME_OPEN_MS = 1_000;    // a resuming WebSocket not open by then is tried afresh
const RECOVER_MS = 15_000;       // media not back by then: join again
const STALL_MS = 800;            // media that was flowing stops this long: its path is dead
const MAX_BACKOFF_MS = 10_000;
const SELF = "self"; // tile key of our own preview
const DEVICES_KEY = "casecast.devices"; // localStorage: { mic, cam } device ids

const query = new URLSearchParams(location.search);
const roomId = decodeURIComponent(location.pathname.match(/\/room\/([^/]+)/)?.[1] ?? "");
const token = query.get("token") ?? "";

const app = {
  view: "prejoin",         // prejoin | room | fatal
  state: "idle",           // idle | connecting | live | interrupted | reconnecting | left | error
  conn: null,              // current connection: { ws, pc, queue, videoSender, timers, closed }
  participantId: null,
  role: null,
  ownIds: new Set(),       // our participant ids across rejoins (never shown as others)
  policy: null,
  invitation: null,        // the server's answer to `check`
  event: undefined,        // the room's event (null: none has this id; undefined: not known yet)
  serverMedia: null,       // last "connection" state the server reported
  localStream: null,       // acquired once (pre-join or first join), reused across rejoins
  mediaTried: false,
  participants: new Map(), // id -> { id, name, role }, everyone but us
  hands: new Map(),        // id -> name, raised hands (ours included)
  myHand: false,
  chat: [],                // { id, participant, name, text, at }
  chatSeen: new Set(),
  held: { audio: false, video: false }, // muted by an operator: the server drops it
  tracks: new Map(),       // mid -> TrackInfo from the server's offers
  media: new Map(),        // mid -> { info, el, track } for what is playing
  attempt: 0, reconnectTimer: 0, left: false, fatal: false,
  unreachable: 0,          // connection attempts in a row that never reached the server
  meter: { level: 0, peak: 0, samples: 0 },
  connects: 0,             // joins tried (a resumed session is not a new join)
  trail: [],               // what the connection went through: [ms since load, what], the last 50
};

/** Notes a step of the connection's life (for `window.casecast.trail` and the console). */
function note(what) {
  app.trail.push([Math.round(performance.now()), what]);
  if (app.trail.length > 50) app.trail.shift();
  console.info("casecast:", what);
}

// ---------------------------------------------------------------- pre-join

/** Asks the server what the link is good for, without joining. */
function check() {
  clearInterval(app.reconnectTimer);
  setState("idle", "Checking your link…");
  const ws = new WebSocket(wsUrl());
  let opened = false;
  let answered = false;
  ws.onopen = () => {
    opened = true;
    reached();
    ws.send(JSON.stringify({ type: "check", v: 1, room: roomId, token }));
  };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === "invitation") {
      answered = true;
      ws.close(1000);
      onInvitation(m);
    } else if (m.type === "error") {
      answered = true;
      if (FATAL_CODES.has(m.code)) return showFatal(m.message || m.code);
      showBanner(m.message || m.code, { code: m.code });
    }
  };
  ws.onclose = () => {
    if (answered || app.fatal || app.view !== "prejoin") return;
    if (!opened) unreachable();
    retryIn(check, opened ? "the server closed the connection" : "no answer");
  };
}

function onInvitation(m) {
  app.invitation = m;
  app.attempt = 0;
  setState("idle", "Ready to join");
  app.policy = m.policy;
  ui.prejoinName.textContent = m.name;
  showEvent(m.event ?? null);
  ui.prejoinBody.hidden = false;
  if (!m.policy.publish) {
    ui.prejoinNote.hidden = false;
    ui.prejoinNote.textContent = "You join to watch and listen: this link does not send your microphone or camera.";
    ui.prejoinBody.querySelector(".devices").hidden = true;
    ui.previewWrap.hidden = true;
    ui.btnJoin.disabled = false;
    return;
  }
  ui.camField.hidden = !m.policy.video;
  ui.previewWrap.hidden = !m.policy.video;
  ui.audioOnly.hidden = m.policy.video;
  startPreview();
}

// The event's state (scheduled, starting, on air, off air, ended), followed every
// 5 s once joined, as viewers see it: /watch/{room}/state, with this page's token.
const STATE_WORDS = { scheduled: "not started", starting: "starting", on_air: "on air", off_air: "off air", ended: "ended" };
let stateTimer = 0;
async function followState() {
  clearTimeout(stateTimer);
  if (!app.event) return;
  try {
    const r = await fetch(`/watch/${encodeURIComponent(roomId)}/state?token=${encodeURIComponent(token)}`, { cache: "no-store" });
    if (r.ok) {
      const s = await r.json();
      const el = $("event-state");
      el.hidden = !STATE_WORDS[s.state];
      el.dataset.state = s.state;
      el.textContent = STATE_WORDS[s.state] ?? "";
      el.title = s.state === "off_air" ? "The broadcast is off air: viewers are told it will resume shortly. You are still heard here." : "";
      app.eventState = s.state;
    }
  } catch { /* the connection status says when the server is unreachable */ }
  stateTimer = setTimeout(followState, 5000);
}

/** Shows the event's title (or says there is no such event) wherever it belongs. */
function showEvent(event) {
  app.event = event;
  if (event) followState();
  if (event) {
    ui.roomName.textContent = event.title;
    ui.roomName.title = event.title;
    ui.prejoinEvent.textContent = event.title;
    document.title = `${event.title} — casecast`;
    ui.placeholder.textContent = "Waiting for the surgery feed…";
  } else {
    const none = `There is no scheduled event called “${roomId}” on this server.`;
    ui.roomName.textContent = `Room ${roomId}`;
    ui.roomName.title = none;
    ui.prejoinEvent.textContent = none;
    ui.prejoinEvent.classList.add("no-event");
    document.title = `Room ${roomId} — casecast`;
    ui.placeholder.textContent = `${none} If the organisers gave you this link, you can wait here for the surgery feed; otherwise check the link with them.`;
  }
}

const loadChoice = () => {
  try { return JSON.parse(localStorage.getItem(DEVICES_KEY) ?? "{}") ?? {}; } catch { return {}; }
};
const saveChoice = (choice) => {
  try { localStorage.setItem(DEVICES_KEY, JSON.stringify(choice)); } catch { /* private mode: not remembered */ }
};

/** getUserMedia as the policy allows, with the remembered (or chosen) devices; falls
 * back to fewer devices when some cannot start. Answers { stream, partial } or throws. */
async function acquire(policy, choice) {
  if (!navigator.mediaDevices?.getUserMedia) {
    const e = new Error("insecure");
    e.name = "InsecureContext";
    throw e;
  }
  const fps = policy.max_fps || 15;
  const audio = choice.mic ? { deviceId: { ideal: choice.mic } } : true;
  const video = policy.video && {
    width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: fps, max: fps },
    ...(choice.cam && { deviceId: { ideal: choice.cam } }),
  };
  const attempts = video ? [{ audio, video }, { audio }, { video }] : [{ audio }];
  let first;
  for (const constraints of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      return { stream, partial: first };
    } catch (err) {
      first ??= err;
      // Blocked is blocked: asking for less would only ask again.
      if (err.name === "NotAllowedError" || err.name === "SecurityError") break;
    }
  }
  throw first;
}

/** What went wrong with the devices, and what to do, in plain words. */
function mediaProblem(err, what) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return `Your browser is blocking the ${what} for this page. Click the camera or lock icon at the left of the address bar (or open the browser's Site settings for this site), set Camera and Microphone to “Allow”, then press Retry.`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `No ${what} was found. Plug one in or switch it on, then press Retry.`;
    case "NotReadableError":
    case "AbortError":
    case "TrackStartError":
      return `Your ${what} is in use by another program (a video call, say) or could not start. Close that program, then press Retry.`;
    case "InsecureContext":
      return "This page can use your camera and microphone only over a secure (https) address. Ask the organisers for the https link. You can still join to watch and listen.";
    default:
      return `Your ${what} could not be started (${err?.name ?? "unknown error"}). Press Retry, or join to watch and listen.`;
  }
}

const devicesNoun = (policy) => (policy.video ? "camera and microphone" : "microphone");

async function startPreview() {
  const policy = app.invitation.policy;
  ui.mediaError.hidden = true;
  ui.btnJoin.disabled = true;
  ui.joinHint.textContent = "Starting your devices…";
  stopLocal();
  try {
    const { stream, partial } = await acquire(policy, loadChoice());
    if (app.view !== "prejoin") return stream.getTracks().forEach((t) => t.stop());
    app.localStream = stream;
    if (partial) showMediaError(partial, policy.video && !localTrack("video") ? "camera" : "microphone", true);
  } catch (err) {
    showMediaError(err, devicesNoun(policy), false);
  }
  showPreview();
  await listDevices();
  ui.btnJoin.disabled = false;
  ui.btnJoin.textContent = app.localStream ? "Join" : "Join to watch and listen";
  ui.joinHint.textContent = app.localStream ? "" : "You can join without them and speak later after a Retry.";
}

function showMediaError(err, what, partial) {
  ui.mediaError.hidden = false;
  ui.mediaError.dataset.error = err?.name ?? "Error";
  ui.mediaErrorText.textContent = mediaProblem(err, what) + (partial ? " Meanwhile you can join with what works." : "");
}

function showPreview() {
  const cam = localTrack("video");
  ui.previewWrap.dataset.video = cam ? "on" : "off";
  ui.preview.srcObject = cam ? new MediaStream([cam]) : null;
  startMeter(localTrack("audio"));
}

/** Fills the microphone and camera lists (labels come once access is granted). */
async function listDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { /* none */ }
  const fill = (select, kind, track, noun) => {
    const list = devices.filter((d) => d.kind === kind && d.deviceId);
    select.replaceChildren(...list.map((d, i) => new Option(d.label || `${noun} ${i + 1}`, d.deviceId)));
    if (!list.length) select.append(new Option(`No ${noun.toLowerCase()} available`, ""));
    const current = track?.getSettings?.().deviceId;
    if (current) select.value = current;
    select.disabled = !list.length;
  };
  fill(ui.micSelect, "audioinput", localTrack("audio"), "Microphone");
  fill(ui.camSelect, "videoinput", localTrack("video"), "Camera");
}

function onDeviceChosen() {
  saveChoice({ mic: ui.micSelect.value || undefined, cam: ui.camSelect.value || undefined });
  startPreview();
}

/** A live level of one audio track (WebAudio analyser), drawn as a bar. */
function startMeter(track) {
  stopMeter();
  ui.meter.hidden = !track;
  ui.meterHint.hidden = !track;
  if (!track) return;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const db = 20 * Math.log10(Math.sqrt(sum / buf.length) || 1e-8);
    const level = Math.max(0, Math.min(1, (db + 60) / 60)); // -60 dBFS … 0 dBFS
    app.meter.level = level;
    app.meter.peak = Math.max(level, app.meter.peak * 0.95);
    app.meter.samples += 1;
    ui.meterFill.style.width = `${Math.round(level * 100)}%`;
    ui.meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
  }, 80);
  // Browsers may hold audio until the person touches the page: then say so.
  const said = "Speak: the bar should move.";
  ui.meterHint.textContent = said;
  const resume = () => ctx.resume().then(() => { ui.meterHint.textContent = said; }).catch(() => {});
  resume();
  setTimeout(() => {
    if (ctx.state !== "suspended") return;
    ui.meterHint.textContent = "Click anywhere on the page to check your microphone level.";
    addEventListener("pointerdown", resume, { once: true });
  }, 500);
  startMeter.current = { ctx, timer };
}

function stopMeter() {
  const m = startMeter.current;
  if (!m) return;
  clearInterval(m.timer);
  m.ctx.close().catch(() => {});
  startMeter.current = null;
}

function stopLocal() {
  stopMeter();
  app.localStream?.getTracks().forEach((t) => t.stop());
  app.localStream = null;
  ui.preview.srcObject = null;
}

/** The pre-join screen is done: into the room. */
function enterRoom() {
  if (app.view === "room") return;
  if (app.invitation) {
    saveChoice({ mic: localTrack("audio")?.getSettings?.().deviceId ?? loadChoice().mic, cam: localTrack("video")?.getSettings?.().deviceId ?? loadChoice().cam });
    app.mediaTried = true; // what the pre-join screen got is what we send
  }
  stopMeter();
  ui.preview.srcObject = null;
  app.view = "room";
  document.body.dataset.view = "room";
  ui.prejoin.hidden = true;
  ui.stage.hidden = false;
  ui.controls.hidden = false;
  ui.self.hidden = false;
  ui.people.hidden = false;
  showSelfTile();
  connect();
}

/** The link cannot work: say why, in the server's plain words, and stop. */
function showFatal(text) {
  app.fatal = true;
  clearInterval(app.reconnectTimer);
  stopLocal();
  teardown();
  setState("error", "Not connected");
  app.view = "fatal";
  document.body.dataset.view = "fatal";
  ui.stage.hidden = true;
  ui.controls.hidden = true;
  ui.prejoin.hidden = false;
  ui.prejoinBody.hidden = true;
  ui.prejoinNote.hidden = true;
  ui.prejoinEvent.textContent = app.event?.title ?? "";
  ui.prejoin.querySelector("h2").hidden = true;
  ui.fatal.hidden = false;
  ui.fatalText.textContent = text;
  hideOutage();
}

// ---------------------------------------------------------------- connection

const wsUrl = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

function connect() {
  clearInterval(app.reconnectTimer);
  if (app.left || app.fatal) return;
  setState("connecting");
  app.resume = null;
  app.connects += 1;
  const conn = {
    ws: null, pc: null, videoSender: null, queue: Promise.resolve(), closed: false, opened: false,
    pingTimer: 0, graceTimer: 0, restartTimer: 0, againTimer: 0, resumeTimer: 0, renewTimer: 0, watchTimer: 0,
    troubleSince: 0, resuming: false, forceRestart: false,
  };
  app.conn = conn;
  signal(conn, { type: "join", v: 1, room: roomId, token }, (ev) => {
    if (!conn.opened) unreachable();
    restart(`signaling closed${ev.code ? ` (${ev.code})` : ""}`);
  });
}

/** Opens the WebSocket of `conn`: sends `first` when open, queues what arrives,
 * and calls `lost` if it closes while still ours. */
function signal(conn, first, lost) {
  const ws = new WebSocket(wsUrl());
  conn.ws = ws;
  conn.opened = false;
  ws.onopen = () => {
    note(`signaling open (${first.type})`);
    conn.opened = true;
    reached();
    send(conn, first);
    clearInterval(conn.pingTimer);
    conn.pingTimer = setInterval(() => send(conn, { type: "ping" }), PING_MS);
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
    if (conn.closed || conn.ws !== ws) return;
    note(`signaling closed (${ev.code})`);
    // Joined, with a session the server keeps for a moment: come back to it.
    if (app.resume && conn.pc && !conn.resuming) return resumeSession(conn, `signaling closed${ev.code ? ` (${ev.code})` : ""}`);
    lost(ev);
  };
  return ws;
}

// ---------------------------------------------------------------- staying joined
//
// A network change or a dropped Wi-Fi loses the media path, the WebSocket, or both.
// The page keeps its peer connection, its tiles and its place in the room. When the
// media path goes down it does not trust the WebSocket either (after a network
// change it leads nowhere, and TCP takes minutes to say so): it opens a new one,
// resumes the session with the secret from `joined` (the server hands the
// participant over from the old connection), and asks for an ICE restart (the
// server answers with an offer carrying new ICE credentials). Only when the server
// no longer has the session does the page join again, as new.

/** The media path is down: resume on a new WebSocket, then restart ICE. */
function recoverMedia(conn) {
  if (conn.closed || conn.resuming || conn.pc?.connectionState === "connected") return;
  resumeSession(conn, "media interrupted");
}

/** Takes fresh TURN credentials, and plans to renew them before they end: a relayed
 * session resumes and restarts ICE (a moment's interruption at most) two minutes
 * before; a direct one needs none. */
function useIceServers(conn, servers) {
  if (!servers?.length || !conn.pc) return;
  try {
    conn.pc.setConfiguration({ ...conn.pc.getConfiguration(), iceServers: servers });
  } catch (err) {
    console.warn("casecast: TURN servers not taken", err);
  }
  const expires = Number(String(servers[0].username).split(":")[0]) * 1000;
  clearTimeout(conn.renewTimer);
  if (!expires) return;
  conn.renewTimer = setTimeout(async () => {
    if (conn.closed) return;
    const path = (await stats()).path;
    if (path?.type !== "relay") return;
    conn.forceRestart = true;
    resumeSession(conn, "TURN credentials about to expire");
  }, Math.max(10_000, expires - Date.now() - 120_000));
}

/** Watches what arrives. When media that was flowing stops, its path is dead even
 * if the browser still says "connected": after a move to another network, Chromium
 * may take many seconds to notice that the address it used is gone. Then the page
 * recovers at once (resume and ICE restart). A quiet room (nothing flowing) never
 * counts as a stall. */
function watchMedia(conn) {
  clearInterval(conn.watchTimer);
  let last = -1;
  let since = Date.now();
  let flowing = 0; // ticks in a row with media arriving (more than keepalives)
  conn.watchTimer = setInterval(async () => {
    if (conn.closed || conn.resuming || !conn.pc) return;
    let bytes = 0;
    try {
      (await conn.pc.getStats()).forEach((r) => { if (r.type === "transport") bytes += r.bytesReceived ?? 0; });
    } catch { return; }
    const now = Date.now();
    if (bytes !== last) {
      // 1 kB in a quarter second is media (audio alone is about that); STUN and
      // RTCP keepalives are a few hundred bytes a second.
      flowing = bytes - last >= 1000 && last >= 0 ? flowing + 1 : 0;
      last = bytes;
      since = now;
      return;
    }
    if (flowing >= 1 && now - since >= STALL_MS && conn.pc.connectionState === "connected") {
      flowing = 0;
      note("media stalled");
      conn.forceRestart = true;
      resumeSession(conn, "media stalled");
    } else if (now - since >= STALL_MS) {
      flowing = 0;
    }
  }, 250);
}

/** Asks for an ICE restart, and again while the media stays down. */
function restartIce(conn, evenIfConnected = false) {
  if (conn.closed || (conn.pc?.connectionState === "connected" && !evenIfConnected)) return;
  note("ICE restart asked");
  send(conn, { type: "ice_restart" });
  clearTimeout(conn.againTimer);
  conn.againTimer = setTimeout(() => recoverMedia(conn), RESTART_AGAIN_MS);
}

/** Opens a new WebSocket and takes the session back with the resume secret. */
function resumeSession(conn, reason) {
  if (conn.closed) return;
  if (!app.resume) return restart(reason);
  note(`resuming: ${reason}`);
  setState("interrupted", "Reconnecting…");
  const old = conn.ws;
  old.onopen = old.onmessage = old.onclose = null;
  if (old.readyState <= WebSocket.OPEN) old.close(4000, "resuming");
  if (!conn.resuming) {
    conn.resuming = true;
    clearTimeout(conn.resumeTimer);
    conn.resumeTimer = setTimeout(() => { if (conn.resuming) restart(`could not resume (${reason})`); }, RESUME_WITHIN_MS);
  }
  const ws = signal(conn, { type: "resume", v: 1, room: roomId, token, resume: app.resume }, () => {
    // Not reached (still no network): try again shortly, until the resume window ends.
    if (!conn.opened) unreachable();
    setTimeout(() => { if (conn.resuming && !conn.closed && conn.ws === ws) resumeSession(conn, reason); }, 500);
  });
  // A connection attempt made while the network was away can hang for as long as
  // TCP keeps retrying: one that is not open soon is dropped for a fresh one.
  setTimeout(() => {
    if (conn.resuming && !conn.closed && conn.ws === ws && ws.readyState === WebSocket.CONNECTING) resumeSession(conn, reason);
  }, RESUME_OPEN_MS);
}

function onResumed(conn, m) {
  note("resumed");
  conn.resuming = false;
  clearTimeout(conn.resumeTimer);
  reached();
  useIceServers(conn, m.ice_servers);
  // What was said while away did not arrive: say it again.
  const audio = localTrack("audio");
  const video = localTrack("video");
  if (audio && !audio.enabled) send(conn, { type: "mute", kind: "audio", muted: true });
  if (video && !video.enabled) send(conn, { type: "mute", kind: "video", muted: true });
  if (app.myHand && app.role === "commentator") send(conn, { type: "raise_hand", raised: true });
  const up = conn.pc.connectionState === "connected";
  if (up) setState("live", "Connected");
  if (!up || conn.forceRestart) restartIce(conn, conn.forceRestart);
  conn.forceRestart = false;
}

function send(conn, msg) {
  if (conn?.ws.readyState === WebSocket.OPEN) {
    conn.ws.send(JSON.stringify(msg));
    return true;
  }
  return false;
}

/** Closes the current connection without touching local media. */
function teardown() {
  const c = app.conn;
  if (!c) return;
  app.conn = null;
  c.closed = true;
  clearInterval(c.pingTimer);
  for (const t of [c.graceTimer, c.restartTimer, c.againTimer, c.resumeTimer, c.renewTimer]) clearTimeout(t);
  clearInterval(c.watchTimer);
  c.ws.onopen = c.ws.onmessage = c.ws.onclose = null;
  if (c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
  if (c.pc) {
    c.pc.ontrack = c.pc.onconnectionstatechange = null;
    c.pc.close();
  }
  for (const mid of [...app.media.keys()]) removeMedia(mid);
  app.tracks.clear();
  app.serverMedia = null;
}

/** Runs `again` after the backoff, counting down in the status. */
function retryIn(again, reason) {
  console.info("casecast: retrying:", reason);
  let remaining = Math.min(1000 * 2 ** app.attempt, MAX_BACKOFF_MS) / 1000;
  app.attempt += 1;
  const tick = () => {
    setState("reconnecting", app.unreachable ? "Not connected" : "Reconnecting…");
    ui.outageDetail.textContent = `Next try in ${remaining} s.`;
  };
  tick();
  clearInterval(app.reconnectTimer);
  app.reconnectTimer = setInterval(() => {
    remaining -= 1;
    if (remaining <= 0) { clearInterval(app.reconnectTimer); again(); } else tick();
  }, 1000);
  retryIn.now = () => { clearInterval(app.reconnectTimer); again(); };
}

function restart(reason) {
  teardown();
  if (app.left || app.fatal) return; // onError already said why
  retryIn(connect, reason);
}

/** A connection attempt never reached the server: say so, prominently. */
function unreachable() {
  app.unreachable += 1;
  ui.outage.hidden = false;
  document.body.dataset.outage = "true";
}

function reached() {
  app.unreachable = 0;
  hideOutage();
}

function hideOutage() {
  ui.outage.hidden = true;
  document.body.dataset.outage = "false";
}

async function handle(conn, msg) {
  switch (msg.type) {
    case "joined": return onJoined(conn, msg);
    case "resumed": return onResumed(conn, msg);
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
    case "hand": return onHand(msg);
    case "chat": return onChat(msg);
    case "connection": app.serverMedia = msg.state; return undefined;
    case "pong": return undefined;
    default: return console.debug("casecast: unknown message", msg);
  }
}

async function onJoined(conn, m) {
  // A new session: nothing of ours is held by an operator, and no hand is up yet.
  Object.assign(app, { participantId: m.participant_id, policy: m.policy, role: m.role, held: { audio: false, video: false }, resume: m.resume ?? null });
  app.ownIds.add(m.participant_id);
  app.hands.clear();
  showEvent(m.event ?? null);
  ui.selfName.textContent = m.name;
  ui.selfRole.textContent = m.role === "commentator" ? "" : m.role;
  syncParticipants(m.participants ?? []);
  if (!FATAL_CODES.has(ui.banner.dataset.code)) hideBanner();

  await ensureLocalMedia(m.policy);
  if (conn.closed) return;

  // TURN servers (with credentials minted for this session) for networks that let
  // neither UDP nor direct TCP through: the browser falls back to them by itself.
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: m.ice_servers ?? [] });
  conn.pc = pc;
  useIceServers(conn, m.ice_servers);
  pc.ontrack = onTrack;
  pc.onconnectionstatechange = () => onPcState(conn);
  pc.onicegatheringstatechange = () => note(`ICE gathering ${pc.iceGatheringState}`);
  pc.oniceconnectionstatechange = () => note(`ICE ${pc.iceConnectionState}`);

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

  // Tracks muted and a hand raised before a rejoin stay so: tell the room again.
  if (audio && !audio.enabled) send(conn, { type: "mute", kind: "audio", muted: true });
  if (video && !video.enabled) send(conn, { type: "mute", kind: "video", muted: true });
  if (app.myHand && m.role === "commentator") send(conn, { type: "raise_hand", raised: true });
  renderControls();
  setState("connecting", "Connecting…");
}

async function onServerOffer(conn, m) {
  const pc = conn.pc;
  if (!pc) throw new Error("server offer before join completed");
  note("server offer");
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
  note(`media ${s}`);
  clearTimeout(conn.restartTimer);
  if (s === "connected") {
    app.attempt = 0;
    conn.troubleSince = 0;
    clearTimeout(conn.graceTimer);
    clearTimeout(conn.againTimer);
    if (!conn.watchTimer) watchMedia(conn);
    if (!conn.resuming) setState("live", "Connected");
  } else if (s === "failed" || s === "disconnected") {
    setState("interrupted", "Reconnecting…");
    if (!conn.troubleSince) {
      conn.troubleSince = Date.now();
      conn.graceTimer = setTimeout(() => restart(`media not back within ${RECOVER_MS / 1000} s`), RECOVER_MS);
    }
    conn.restartTimer = setTimeout(() => recoverMedia(conn), s === "failed" ? 0 : RESTART_AFTER_MS);
  }
}

function onError(m) {
  if (FATAL_CODES.has(m.code)) return showFatal(m.message || m.code);
  // Back after the server had ended the session (a restart, a long outage): join again.
  if (m.code === "session_gone") return restart("the session had ended while away");
  showBanner(m.message || m.code, { code: m.code });
  // A refused description leaves this session unusable: start a fresh one.
  if (m.code === "sdp_rejected") restart(`the server refused a description: ${m.message}`);
}

// ---------------------------------------------------------------- local media

/** Without a pre-join screen (or after a Retry): the devices, as the policy allows. */
async function ensureLocalMedia(policy) {
  if (!policy.publish) return;
  if (app.localStream && !policy.video) {
    // An audio-only room: the camera is not used.
    for (const t of app.localStream.getVideoTracks()) { t.stop(); app.localStream.removeTrack(t); }
    tileFor(SELF)?.remove();
    showSelfTile();
  }
  if (app.mediaTried) return;
  app.mediaTried = true;
  try {
    const { stream, partial } = await acquire(policy, loadChoice());
    app.localStream = stream;
    if (partial) showNotice(mediaProblem(partial, "camera") + " You are heard, not seen.", { label: "Retry", run: retryMedia });
    else hideNotice();
  } catch (err) {
    showNotice(`${mediaProblem(err, devicesNoun(policy))} Until then you can watch and listen.`, { label: "Retry", run: retryMedia });
  }
  showSelfTile();
}

/** Asks for the devices again, then starts a fresh session that sends them. */
async function retryMedia() {
  hideNotice();
  app.localStream?.getTracks().forEach((t) => t.stop());
  app.localStream = null;
  app.mediaTried = false;
  tileFor(SELF)?.remove();
  teardown();
  connect();
}

function showSelfTile() {
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
  renderPeople();
}

const localTrack = (kind) =>
  (kind === "audio" ? app.localStream?.getAudioTracks() : app.localStream?.getVideoTracks())?.[0];

function toggle(kind) {
  const track = localTrack(kind);
  if (!track || app.left || app.held[kind]) return;
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
  const render = (btn, track, noun, key, onLabel, offLabel) => {
    const held = app.held[noun === "microphone" ? "audio" : "video"];
    const on = Boolean(track?.enabled) && !held;
    btn.disabled = !track || app.left || held;
    btn.dataset.on = String(on);
    btn.setAttribute("aria-pressed", String(Boolean(track) && !on));
    btn.setAttribute("aria-label", track ? `${on ? "Turn off" : "Turn on"} ${noun} (${key})` : `No ${noun}`);
    btn.title = track ? `${on ? "Turn off" : "Turn on"} your ${noun} — shortcut ${key}` : `No ${noun}`;
    btn.querySelector(".label").textContent = !track ? `No ${noun}` : held ? "Muted by operator" : on ? onLabel : offLabel;
  };
  const mic = localTrack("audio");
  const cam = localTrack("video");
  render(ui.btnMic, mic, "microphone", "M", "Mute", "Unmute");
  render(ui.btnCam, cam, "camera", "V", "Camera off", "Camera on");
  const canHand = app.role === "commentator" && !app.left;
  ui.btnHand.hidden = app.role !== "commentator";
  ui.btnHand.disabled = !canHand || !app.conn;
  ui.btnHand.setAttribute("aria-pressed", String(app.myHand));
  ui.btnHand.querySelector(".label").textContent = app.myHand ? "Lower hand" : "Raise hand";
  ui.btnHand.title = `${app.myHand ? "Lower" : "Raise"} your hand to ask for the floor — shortcut H`;
  const self = tileFor(SELF);
  if (self) {
    self.dataset.audioMuted = String(Boolean(mic) && !mic.enabled);
    self.dataset.videoMuted = String(Boolean(cam) && !cam.enabled);
    self.dataset.hand = String(app.myHand);
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

// ---------------------------------------------------------------- people, hands and tiles

/** People in the roster: commentators (and viewers on this door), not the encoder,
 * the program mixer or operators' consoles. */
const isPerson = (p) => p.role === "commentator" || p.role === "viewer";
const showsTile = (p) => p.role === "commentator";

function syncParticipants(list) {
  app.participants = new Map(list.filter((p) => !app.ownIds.has(p.id)).map((p) => [p.id, p]));
  for (const tile of [...ui.tiles.querySelectorAll(".tile")]) {
    const id = tile.dataset.participant;
    if (id && id !== SELF && !app.participants.has(id)) tile.remove();
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
  app.hands.delete(id);
  for (const [mid, m] of app.media) if (m.info.participant_id === id) removeMedia(mid);
  tileFor(id)?.remove();
  renderPeople();
}

function renderPeople() {
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

function onHand(m) {
  if (m.raised) app.hands.set(m.participant, m.name); else app.hands.delete(m.participant);
  if (m.participant === app.participantId) app.myHand = m.raised;
  // A session of ours that ended (a rejoin) lowers its hand: not this one's.
  if (app.ownIds.has(m.participant) && m.participant !== app.participantId) return renderPeople();
  const tile = m.participant === app.participantId ? tileFor(SELF) : tileFor(m.participant);
  if (tile) tile.dataset.hand = String(m.raised);
  renderControls();
  renderPeople();
}

function toggleHand() {
  if (app.role !== "commentator" || app.left) return;
  const raised = !app.myHand;
  if (send(app.conn, { type: "raise_hand", raised })) {
    app.myHand = raised; // the server's `hand` confirms it
    renderControls();
  }
}

// ---------------------------------------------------------------- chat

function onChat(m) {
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

function sendChat(text) {
  const t = text.trim();
  if (!t) return false;
  if (!send(app.conn, { type: "chat", text: t.slice(0, 500) })) {
    showBanner("Not connected right now: your message was not sent. It is still in the box; send it again in a moment.", { code: "chat" });
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- tiles

function setMuted(participantId, kind, muted) {
  const p = app.participants.get(participantId);
  const tile = tileFor(participantId) ?? (p && showsTile(p) && ensureTile(p.id, p.name));
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

// ---------------------------------------------------------------- status, banners, controls

function setState(state, text) {
  app.state = state;
  document.body.dataset.state = state;
  const plain = { idle: "Connecting…", connecting: "Connecting…", live: "Connected", interrupted: "Reconnecting…", reconnecting: "Reconnecting…", error: "Not connected", left: "You left" };
  ui.connText.textContent = text ?? plain[state] ?? state;
  document.body.dataset.ws = app.conn ? ["connecting", "open", "closing", "closed"][app.conn.ws.readyState] : "closed";
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

function showNotice(text, action = null) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
  ui.noticeAction.hidden = !action;
  if (action) {
    ui.noticeAction.textContent = action.label;
    ui.noticeAction.onclick = action.run;
  }
}

function hideNotice() {
  ui.notice.hidden = true;
}

function leave() {
  if (app.left) return;
  app.left = true;
  clearInterval(app.reconnectTimer);
  send(app.conn, { type: "leave" });
  teardown();
  app.localStream?.getTracks().forEach((t) => t.stop());
  for (const tile of [...ui.tiles.querySelectorAll(".tile")]) tile.remove();
  setState("left", "You left");
  hideOutage();
  ui.btnLeave.disabled = true;
  renderControls();
  renderPeople();
  showBanner("You left the event.", { sticky: true, action: { label: "Rejoin", run: () => location.reload() } });
}

/** Leave asks first: it sits apart from the other buttons, and a slip costs a rejoin. */
function askToLeave() {
  if (app.left) return;
  if (typeof ui.leaveDialog.showModal !== "function") {
    if (confirm("Leave the event?")) leave();
    return;
  }
  ui.leaveDialog.returnValue = "";
  ui.leaveDialog.showModal();
}

ui.leaveDialog.addEventListener("close", () => { if (ui.leaveDialog.returnValue === "leave") leave(); });
ui.btnMic.addEventListener("click", () => toggle("audio"));
ui.btnCam.addEventListener("click", () => toggle("video"));
ui.btnHand.addEventListener("click", toggleHand);
ui.btnLeave.addEventListener("click", askToLeave);
ui.btnJoin.addEventListener("click", enterRoom);
ui.mediaRetry.addEventListener("click", () => startPreview());
ui.micSelect.addEventListener("change", onDeviceChosen);
ui.camSelect.addEventListener("change", onDeviceChosen);
ui.outageRetry.addEventListener("click", () => { app.attempt = 0; retryIn.now?.(); });
ui.chatForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (sendChat(ui.chatInput.value)) ui.chatInput.value = "";
});
ui.btnSound.addEventListener("click", () => {
  ui.btnSound.hidden = true;
  for (const el of document.querySelectorAll("audio, video")) {
    if (el.srcObject) el.play().catch(() => { ui.btnSound.hidden = false; });
  }
});

// Shortcuts: M microphone, V camera, H hand; never while typing or with a modifier.
addEventListener("keydown", (ev) => {
  if (app.view !== "room" || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  if (ev.target instanceof Element && ev.target.closest("input, textarea, select, [contenteditable], dialog")) return;
  const key = ev.key.toLowerCase();
  if (key === "m") toggle("audio");
  else if (key === "v") toggle("video");
  else if (key === "h") toggleHand();
  else return;
  ev.preventDefault();
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
  result.path = mediaPath(report);
  return result;
}

/** How the media travels, from the selected candidate pair: { protocol: "udp" |
 * "tcp", type: "host" | "srflx" | "prflx" | "relay", relayProtocol } (null before
 * ICE has chosen). The same values chrome://webrtc-internals shows. */
function mediaPath(report) {
  let pairId = null;
  report.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
  const pair = pairId && report.get(pairId);
  const local = pair && report.get(pair.localCandidateId);
  if (!local) return null;
  return { protocol: local.protocol, type: local.candidateType, relayProtocol: local.relayProtocol ?? null };
}

window.casecast = {
  get pc() { return app.conn?.pc ?? null; },
  get state() { return app.state; },
  get view() { return app.view; },
  get participantId() { return app.participantId; },
  get connects() { return app.connects; },
  get trail() { return app.trail.slice(); },
  get policy() { return app.policy; },
  get event() { return app.event; },
  get eventState() { return app.eventState ?? null; },
  get tracks() { return Object.fromEntries(app.tracks); },
  get localStream() { return app.localStream; },
  get participants() { return [...app.participants.values()]; },
  get hands() { return Object.fromEntries(app.hands); },
  get chat() { return app.chat.slice(); },
  get meter() { return { ...app.meter }; },
  stats,
  leave,
};

// ---------------------------------------------------------------- start

ui.roomName.textContent = roomId ? `Room ${roomId}` : "casecast";
if (!roomId || !token) {
  showFatal("This link is incomplete: it should look like …/room/name-of-the-event?token=… Copy the whole link from the invitation, or ask the organisers for a new one.");
} else {
  check();
}
