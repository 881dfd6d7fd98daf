// casecast — commentator page: the start. Room id from /room/{id}, token from
// ?token=… (a `name` in the link is ignored: the server names everyone after their
// invitation). The pre-join screen comes first (room-prejoin.js); Join enters the
// room (room-connection.js). This file wires the controls, leaves, and exposes
// window.casecast (state and stats()) for the automated tests, which join through
// the pre-join screen as a person does. room-core.js lists the page's parts.

import { hideOutage, retryIn, send, stats, teardown } from "./room-connection.js";
import { app, roomId, setState, showBanner, token, ui } from "./room-core.js";
import { renderControls, toggle } from "./room-local.js";
import { renderPeople, sendChat, toggleHand } from "./room-people.js";
import { check, enterRoom, onDeviceChosen, showFatal, startPreview } from "./room-prejoin.js";

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
