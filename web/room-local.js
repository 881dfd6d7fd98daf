// casecast — commentator page: our own camera and microphone. Acquired once (on the
// pre-join screen, or at join without one) and reused across rejoins; the self tile;
// the microphone and camera buttons, and what an operator's mute does to them.

import { connect, send, teardown } from "./room-connection.js";
import { SELF, app, hideNotice, showBanner, showNotice, ui } from "./room-core.js";
import { attach, ensureTile, renderPeople, tileFor } from "./room-people.js";
import { acquire, devicesNoun, loadChoice, mediaProblem } from "./room-prejoin.js";

// ---------------------------------------------------------------- local media

/** Without a pre-join screen (or after a Retry): the devices, as the policy allows. */
export async function ensureLocalMedia(policy) {
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

export function showSelfTile() {
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

export const localTrack = (kind) =>
  (kind === "audio" ? app.localStream?.getAudioTracks() : app.localStream?.getVideoTracks())?.[0];

export function toggle(kind) {
  const track = localTrack(kind);
  if (!track || app.left || app.held[kind]) return;
  track.enabled = !track.enabled;
  send(app.conn, { type: "mute", kind, muted: !track.enabled });
  renderControls();
}

/** An operator muted (or unmuted) what we send of one kind: the button says so and
 * waits until they unmute it (the server drops it meanwhile). */
export function onHeld(kind, muted) {
  if (!(kind in app.held)) return;
  app.held[kind] = muted;
  const noun = kind === "audio" ? "microphone" : "camera";
  showBanner(muted ? `The operator muted your ${noun}.` : `The operator unmuted your ${noun}.`, { code: "held" });
  renderControls();
}

export function renderControls() {
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
