// casecast — commentator page: the pre-join screen. A WebSocket `check` says who
// the invitation names, the event's title and what this person may send, or, in
// plain words, why the link does not work. The person picks a microphone and camera
// (remembered in localStorage), sees the camera and a live microphone level
// (WebAudio), and presses Join. A blocked, missing or busy device gets a plain hint
// and a Retry button. The event's state (on air, off air, …) is followed from
// /watch/{id}/state.

import { connect, hideOutage, reached, retryIn, teardown, unreachable, wsUrl } from "./room-connection.js";
import { DEVICES_KEY, FATAL_CODES, app, roomId, setState, showBanner, token, ui } from "./room-core.js";
import { localTrack, showSelfTile } from "./room-local.js";

// ---------------------------------------------------------------- pre-join

/** Asks the server what the link is good for, without joining. */
export function check() {
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
      const el = ui.eventState;
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
export function showEvent(event) {
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

export const loadChoice = () => {
  try { return JSON.parse(localStorage.getItem(DEVICES_KEY) ?? "{}") ?? {}; } catch { return {}; }
};
const saveChoice = (choice) => {
  try { localStorage.setItem(DEVICES_KEY, JSON.stringify(choice)); } catch { /* private mode: not remembered */ }
};

/** getUserMedia as the policy allows, with the remembered (or chosen) devices; falls
 * back to fewer devices when some cannot start. Answers { stream, partial } or throws. */
export async function acquire(policy, choice) {
  if (!navigator.mediaDevices?.getUserMedia) {
    const e = new Error("insecure");
    e.name = "InsecureContext";
    throw e;
  }
  // A commentator's small, low-rate camera; the feed's (simulcast) is 720p.
  const fps = policy.simulcast ? Math.min(policy.max_fps || 30, 30) : policy.max_fps || 15;
  const [width, height] = policy.simulcast ? [1280, 720] : [320, 240];
  const audio = choice.mic ? { deviceId: { ideal: choice.mic } } : true;
  const video = policy.video && {
    width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps, max: fps },
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
export function mediaProblem(err, what) {
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

export const devicesNoun = (policy) => (policy.video ? "camera and microphone" : "microphone");

export async function startPreview() {
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

export function onDeviceChosen() {
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
export function enterRoom() {
  if (app.view === "room") return;
  if (app.invitation) {
    saveChoice({ mic: localTrack("audio")?.getSettings?.().deviceId ?? loadChoice().mic, cam: localTrack("video")?.getSettings?.().deviceId ?? loadChoice().cam });
    app.mediaTried = true; // what the pre-join screen got is what we send
  }
  stopMeter();
  ui.preview.srcObject = null;
  showView("room");
  ui.self.hidden = false;
  ui.people.hidden = false;
  showSelfTile();
  connect();
}

/** Shows the room (stage and controls) or the pre-join panel (the pre-join screen,
 * or a link that cannot work). */
function showView(view) {
  app.view = view;
  document.body.dataset.view = view;
  const room = view === "room";
  ui.prejoin.hidden = room;
  ui.stage.hidden = !room;
  ui.controls.hidden = !room;
}

/** The link cannot work: say why, in the server's plain words, and stop. */
export function showFatal(text) {
  app.fatal = true;
  clearInterval(app.reconnectTimer);
  stopLocal();
  teardown();
  setState("error", "Not connected");
  showView("fatal");
  ui.prejoinBody.hidden = true;
  ui.prejoinNote.hidden = true;
  ui.prejoinEvent.textContent = app.event?.title ?? "";
  ui.prejoin.querySelector("h2").hidden = true;
  ui.fatal.hidden = false;
  ui.fatalText.textContent = text;
  hideOutage();
}
