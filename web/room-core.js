// casecast — commentator page: what every part shares. The page's elements (`ui`),
// the timings of staying joined, the link's room and token, the page's state
// (`app`), the connection trail (`note`), and the status line, banners and notices.
//
// The page's parts (plain ES modules, no build step, no libraries):
//   room.js             start, controls' wiring, leaving, window.casecast for tests
//   room-prejoin.js     the pre-join screen: what the link is for, devices, preview
//   room-connection.js  joining, signaling, staying joined through network changes
//   room-local.js       our own camera and microphone, and the controls for them
//   room-people.js      what others send (feed, program, commentators), people,
//                       raised hands, chat and tiles
// Protocol: signaling/src/protocol.rs and docs/signaling.md.

const $ = (id) => document.getElementById(id);
export const ui = {
  roomName: $("room-name"), self: $("self"), selfName: $("self-name"), selfRole: $("self-role"),
  people: $("people"), connText: $("conn-text"),
  outage: $("outage"), outageDetail: $("outage-detail"), outageRetry: $("outage-retry"),
  btnMic: $("btn-mic"), btnCam: $("btn-cam"), btnHand: $("btn-hand"), btnLeave: $("btn-leave"),
  btnSound: $("btn-sound"), banner: $("banner"), bannerText: $("banner-text"),
  bannerAction: $("banner-action"), notice: $("notice"), noticeText: $("notice-text"),
  noticeAction: $("notice-action"), feedWrap: $("feed-wrap"), placeholder: $("feed-placeholder"),
  feed: $("feed"), feedAudio: $("feed-audio"), tiles: $("tiles"), audioSink: $("audio-sink"),
  stage: $("stage"), controls: $("controls"), eventState: $("event-state"),
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

export const FATAL_CODES = new Set(["unauthorized", "forbidden", "unsupported_version"]);
export const PING_MS = 10_000;
// Staying joined through a network change (see "staying joined" below).
export const RESTART_AFTER_MS = 300;    // media interrupted this long: restart ICE
export const RESTART_AGAIN_MS = 3_000;  // not back this long after a restart: another one
export const RESUME_WITHIN_MS = 4_500;  // the server keeps a lost session 5 s
export const RESUME_OPEN_MS = 1_000;    // a resuming WebSocket not open by then is tried afresh
export const RECOVER_MS = 15_000;       // media not back by then: join again
export const STALL_MS = 800;            // media that was flowing stops this long: its path is dead
export const STALL_AGAIN_MS = 2_000;    // after a stall, a new path that carries nothing this long is dead too
export const MAX_BACKOFF_MS = 10_000;
export const SELF = "self"; // tile key of our own preview
export const DEVICES_KEY = "casecast.devices"; // localStorage: { mic, cam } device ids

const query = new URLSearchParams(location.search);
export const roomId = decodeURIComponent(location.pathname.match(/\/room\/([^/]+)/)?.[1] ?? "");
export const token = query.get("token") ?? "";

export const app = {
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
export function note(what) {
  app.trail.push([Math.round(performance.now()), what]);
  if (app.trail.length > 50) app.trail.shift();
  console.info("casecast:", what);
}


// ---------------------------------------------------------------- status, banners, controls

export function setState(state, text) {
  app.state = state;
  document.body.dataset.state = state;
  const plain = { idle: "Connecting…", connecting: "Connecting…", live: "Connected", interrupted: "Reconnecting…", reconnecting: "Reconnecting…", error: "Not connected", left: "You left" };
  ui.connText.textContent = text ?? plain[state] ?? state;
  document.body.dataset.ws = app.conn ? ["connecting", "open", "closing", "closed"][app.conn.ws.readyState] : "closed";
}

export function showBanner(text, { code = "", sticky = false, action = null } = {}) {
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

export function hideBanner() {
  ui.banner.hidden = true;
  ui.banner.dataset.code = "";
}

export function showNotice(text, action = null) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
  ui.noticeAction.hidden = !action;
  if (action) {
    ui.noticeAction.textContent = action.label;
    ui.noticeAction.onclick = action.run;
  }
}

export function hideNotice() {
  ui.notice.hidden = true;
}
