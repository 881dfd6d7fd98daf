// The viewer page: plays the program's HLS with hls.js, or with the browser's own HLS
// where there is one (Safari), and says how far behind live the viewer is. Where it
// plays from, /watch/{room}/source says: this server (/hls/{room}/index.m3u8), or
// CloudFront when the event goes out through AWS (with a signed query on every
// request for a private event). A playlist that is not there yet (the program is
// starting) is retried every few seconds; an ended event plays as VOD.
//
// An event with the ultra-low preset is low-latency HLS (parts of a third of a
// second, blocking playlist reloads): hls.js plays it in its low-latency mode, three
// parts from the live edge, about 2 s behind the feed; Safari's own player does
// the same. After a stall the player speeds up a little (up to 1.25×) until it is
// back at its target, and jumps to live when it has fallen further behind than
// that catches up (its target plus a target duration, for 3 s).
//
// The page follows the event's state (/watch/{room}/state, every 2 s) and says it
// over the picture: starting soon, the broadcast will resume shortly (off air),
// ended (the recording plays). A server that restarts mid-event is followed
// without a reload: the player retries, and a playlist that looks ended while the
// event is on air is loaded again.

const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
// An id for this viewer (this tab), sent with playlist requests so the server counts
// concurrent viewers once each; nothing else is in it.
const viewer = sessionStorage.getItem("casecast-viewer") ?? Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
sessionStorage.setItem("casecast-viewer", viewer);
// A private event's playback token, from the link the viewer was given.
const playback = new URLSearchParams(location.search).get("token");
// A voter id for this browser (kept across tabs and reloads), so a viewer's vote
// counts once per poll.
const voter = localStorage.getItem("casecast-voter") ?? Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
localStorage.setItem("casecast-voter", voter);
const tokenQuery = playback ? `?token=${encodeURIComponent(playback)}` : "";
let src = `/hls/${encodeURIComponent(room)}/index.m3u8?viewer=${viewer}${playback ? `&token=${encodeURIComponent(playback)}` : ""}`;
// CloudFront's signed query, added to every request (segments too); none locally.
let signedQuery = null;
const video = document.getElementById("video");
const status = document.getElementById("status");
const note = document.getElementById("note");
const overlay = document.getElementById("overlay");
const overlayTitle = document.getElementById("overlay-title");
const overlayText = document.getElementById("overlay-text");
document.getElementById("room").textContent = room;
document.title = `casecast — ${room}`;
// The event's state as last heard (null until then).
let eventState = null;

let hls = null;

function say(text, live) {
  status.textContent = text;
  status.dataset.live = String(Boolean(live));
}

function behindLive() {
  // hls.js knows the live edge and the playlist's age; its latency is how far
  // behind that edge the picture is.
  if (hls && Number.isFinite(hls.latency) && hls.latency > 0) return hls.latency;
  if (hls && hls.liveSyncPosition != null) return Math.max(0, hls.liveSyncPosition - video.currentTime);
  if (video.seekable.length) return Math.max(0, video.seekable.end(video.seekable.length - 1) - video.currentTime);
  return null;
}

// Timed metadata: the organisers' messages and polls ride in the segments as ID3
// tags (a TXXX frame described "casecast" holding JSON); each is shown once.
const shown = new Set();
window.casecastWatch = { metadata: [], id3: 0 };

function txxx(tag) {
  // ID3v2: "ID3", version, flags, syncsafe size; then frames (v2.4 sizes syncsafe).
  if (tag.length < 10 || tag[0] !== 0x49 || tag[1] !== 0x44 || tag[2] !== 0x33) return null;
  const syncsafe = (a, i) => (a[i] << 21) | (a[i + 1] << 14) | (a[i + 2] << 7) | a[i + 3];
  const end = Math.min(tag.length, 10 + syncsafe(tag, 6));
  for (let i = 10; i + 10 <= end; ) {
    const id = String.fromCharCode(tag[i], tag[i + 1], tag[i + 2], tag[i + 3]);
    const size = tag[3] === 4 ? syncsafe(tag, i + 4) : (tag[i + 4] << 24) | (tag[i + 5] << 16) | (tag[i + 6] << 8) | tag[i + 7];
    const body = tag.subarray(i + 10, i + 10 + size);
    if (id === "TXXX" && body[0] === 3) {
      const zero = body.indexOf(0, 1);
      const description = new TextDecoder().decode(body.subarray(1, zero));
      if (description === "casecast") return new TextDecoder().decode(body.subarray(zero + 1));
    }
    if (size <= 0) break;
    i += 10 + size;
  }
  return null;
}

function showMetadata(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return;
  }
  if (!m || !m.id || shown.has(m.id)) return;
  shown.add(m.id);
  window.casecastWatch.metadata.push(m);
  const box = document.getElementById("metadata");
  const item = document.createElement("div");
  item.className = "metadata-item";
  if (m.type === "poll") {
    const q = document.createElement("strong");
    q.textContent = m.question;
    item.append(q);
    const list = document.createElement("div");
    list.className = "poll-options";
    for (const o of m.options ?? []) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = o;
      b.addEventListener("click", () => vote(m.id, [...list.children].indexOf(b), list, b, result));
      list.append(b);
    }
    const result = document.createElement("small");
    result.className = "poll-result";
    item.append(list, result);
  } else {
    item.textContent = m.text;
  }
  box.prepend(item);
  box.hidden = false;
}

/** Sends this viewer's vote; a second one changes it. */
async function vote(poll, choice, list, button, result) {
  for (const b of list.children) b.disabled = true;
  result.textContent = "sending…";
  try {
    const r = await fetch(`/watch/${encodeURIComponent(room)}/votes${tokenQuery}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ poll, choice, viewer: voter }),
    });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error ?? `the server answered ${r.status}`);
    for (const b of list.children) b.classList.toggle("chosen", b === button);
    result.textContent = "Thank you — your vote is counted. You can change it.";
    window.casecastWatch.votes = (window.casecastWatch.votes ?? 0) + 1;
  } catch (e) {
    result.textContent = `Your vote did not go through (${e.message}). Try again.`;
  }
  for (const b of list.children) b.disabled = false;
}

/** Says over the picture what the event is doing (nothing while on air). */
function showOverlay(title, text) {
  overlay.hidden = !title;
  overlayTitle.textContent = title ?? "";
  overlayText.textContent = text ?? "";
}

function start() {
  if (window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({
      liveDurationInfinity: true,
      // Low-latency HLS where the playlist has parts (ultra-low); plain HLS plays as before.
      lowLatencyMode: true,
      // Catches up after a stall by playing slightly faster, back to the target.
      maxLiveSyncPlaybackRate: 1.25,
      // Every playlist reload says who is watching (the first one has it already);
      // through CloudFront every request carries the signed query instead.
      xhrSetup: (xhr, url) => {
        if (signedQuery && !url.includes("Signature=")) {
          xhr.open("GET", `${url}${url.includes("?") ? "&" : "?"}${signedQuery}`, true);
        } else if (!signedQuery && url.includes(".m3u8") && !url.includes("viewer=")) {
          xhr.open("GET", `${url}${url.includes("?") ? "&" : "?"}viewer=${viewer}`, true);
        }
      },
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (eventState === "on_air" || eventState === "off_air") say("reconnecting…", false);
      else say("waiting for the program…", false);
      hls.destroy();
      hls = null;
      setTimeout(start, 3000);
    });
    hls.on(window.Hls.Events.FRAG_PARSING_METADATA, (_, data) => {
      for (const sample of data.samples ?? []) {
        window.casecastWatch.id3 += 1;
        const text = sample.data ? txxx(sample.data) : null;
        if (text) showMetadata(text);
      }
    });
    hls.on(window.Hls.Events.LEVEL_LOADED, (_, data) => {
      // Ended, but the playlist is still finishing: load the recording when it is.
      if (data.details.live && eventState === "ended") restartSoon();
      if (data.details.live) return;
      // An ended playlist while the event is live is an old one (the program was
      // starting again): load it afresh in a moment.
      if (eventState === "ended" || eventState === null) say("ended — playing the recording", false);
      else restartSoon();
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    video.addEventListener("error", () => setTimeout(() => video.load(), 3000));
  } else {
    note.hidden = false;
    note.textContent = "This browser cannot play HLS.";
    return;
  }
  video.play().catch(() => {});
}

let restarting = null;
/** Loads the program again from its playlist (after a restart of the server). */
function restartSoon() {
  if (restarting) return;
  restarting = setTimeout(() => {
    restarting = null;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    start();
  }, 2000);
}

document.getElementById("golive").addEventListener("click", () => {
  if (hls && hls.liveSyncPosition != null) video.currentTime = hls.liveSyncPosition;
  else if (video.seekable.length) video.currentTime = video.seekable.end(video.seekable.length - 1);
  video.play().catch(() => {});
});

setInterval(() => {
  if (eventState === "off_air" || eventState === "ended" || eventState === "scheduled") return;
  if (video.readyState < 2) return;
  const behind = behindLive();
  if (behind == null) return;
  if (hls && hls.levels?.[hls.currentLevel]?.details?.live === false) return;
  const details = hls?.levels?.[hls.currentLevel]?.details ?? hls?.levels?.[0]?.details;
  // Low-latency HLS: the player aims at three parts back; plain HLS at three
  // segments (or four).
  const lowLatency = Boolean(details?.partTarget);
  const target = lowLatency ? (hls.targetLatency ?? 1) + 1.5 : (details?.targetduration ?? 6) * 3.5;
  window.casecastWatch.latency = { behind, target: hls?.targetLatency ?? null, lowLatency, rate: video.playbackRate };
  if (behind <= target) say(lowLatency ? `live · ${behind.toFixed(1)} s` : "live", true);
  else say(`${behind < 10 ? behind.toFixed(1) : Math.round(behind)} s behind live`, false);
  // Far behind (a long stall): further than hls.js speeds up for (its target plus a
  // target duration), so it would stay there; jump to live instead.
  const speedUpRange = lowLatency ? (hls.targetLatency ?? 1) + (details?.targetduration ?? 2) : Infinity;
  // (A viewer who paused is left where they are until they play again.)
  if (lowLatency && !video.paused && hls.liveSyncPosition != null && behind > speedUpRange + 0.5) {
    farBehind += 1;
    if (farBehind >= 3) {
      farBehind = 0;
      video.currentTime = hls.liveSyncPosition;
    }
  } else {
    farBehind = 0;
  }
}, 1000);
// Seconds in a row the low-latency player has been far behind live.
let farBehind = 0;

const when = (t) => new Date(t * 1000).toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

/** Follows the event's state: what the page says, and whether the player runs. */
async function followState() {
  let s;
  try {
    const r = await fetch(`/watch/${encodeURIComponent(room)}/state${tokenQuery}`, { cache: "no-store" });
    if (r.status === 404) {
      eventState = "none";
      showOverlay("No event here", "There is no event at this address. Check the link you were given.");
      say("no event", false);
      return;
    }
    if (r.status === 401 || r.status === 403) {
      const e = await r.json().catch(() => ({}));
      eventState = "refused";
      showOverlay("This event is private", e.error ?? "Open it with the link the organisers sent you.");
      say("private", false);
      return;
    }
    if (!r.ok) throw new Error(String(r.status));
    s = await r.json();
  } catch {
    // The server is unreachable (restarting?): the player keeps trying meanwhile.
    if (eventState !== "ended") say("reconnecting…", false);
    return;
  }
  const before = eventState;
  eventState = s.state;
  window.casecastWatch.state = s;
  if (s.title) {
    document.getElementById("room").textContent = s.title;
    document.title = `${s.title} — casecast`;
  }
  switch (s.state) {
    case "scheduled":
      showOverlay("Starting soon", s.starts_at ? `The broadcast begins ${when(s.starts_at)}. This page starts playing by itself.` : "The broadcast has not started yet. This page starts playing by itself.");
      say("starting soon", false);
      break;
    case "starting":
      showOverlay("Starting soon", "The broadcast is about to begin.");
      say("starting…", false);
      break;
    case "off_air":
      showOverlay("We\u2019ll be right back", "The broadcast will resume shortly. Stay on this page.");
      say("off air", false);
      break;
    case "ended":
      if (s.playlist) showOverlay(null);
      else showOverlay("The broadcast has ended", "Thank you for watching.");
      note.hidden = !s.playlist;
      note.textContent = "The broadcast has ended — you are watching the recording.";
      say("ended", false);
      break;
    default:
      showOverlay(null);
      note.hidden = true;
  }
  // Play whenever there is something to play; the first time the event goes on
  // air or ends (the recording), load the playlist afresh.
  const playable = s.playlist && (s.state === "on_air" || s.state === "off_air" || s.state === "ended" || s.state === "starting");
  if (playable && !hls && !video.src && !restarting) start();
  else if (playable && before && before !== s.state && (s.state === "ended" || before === "starting" || before === "scheduled")) restartSoon();
}

window.casecastWatch.video = video;
Object.defineProperty(window.casecastWatch, "hls", { get: () => hls });

/** Asks where to play from; this server's HLS if the answer does not come. */
async function begin() {
  try {
    const r = await fetch(`/watch/${encodeURIComponent(room)}/source${playback ? `?token=${encodeURIComponent(playback)}` : ""}`);
    const source = r.ok ? await r.json() : null;
    if (source?.via === "cloudfront") {
      src = source.url;
      signedQuery = source.query ?? null;
      // Safari's own player cannot add the query to each request: the playlist
      // carries it only where CloudFront is set to pass it on.
      if (signedQuery && !(window.Hls && window.Hls.isSupported())) src = `${src}?${signedQuery}`;
    }
    window.casecastWatch.source = source;
  } catch {
    // Played from here.
  }
  await followState();
  setInterval(followState, 2000);
}
begin();
