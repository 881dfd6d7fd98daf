// The viewer page: plays the program's HLS (/hls/{room}/index.m3u8) with hls.js, or
// with the browser's own HLS where there is one (Safari), and says how far behind
// live the viewer is. A playlist that is not there yet (the program is starting) is
// retried every few seconds; an ended event plays as VOD.

const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
// An id for this viewer (this tab), sent with playlist requests so the server counts
// concurrent viewers once each; nothing else is in it.
const viewer = sessionStorage.getItem("casecast-viewer") ?? Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
sessionStorage.setItem("casecast-viewer", viewer);
// A private event's playback token, from the link the viewer was given.
const playback = new URLSearchParams(location.search).get("token");
const src = `/hls/${encodeURIComponent(room)}/index.m3u8?viewer=${viewer}${playback ? `&token=${encodeURIComponent(playback)}` : ""}`;
const video = document.getElementById("video");
const status = document.getElementById("status");
const note = document.getElementById("note");
document.getElementById("room").textContent = room;
document.title = `casecast — ${room}`;

let hls = null;

function say(text, live) {
  status.textContent = text;
  status.dataset.live = String(Boolean(live));
}

function behindLive() {
  if (hls && hls.liveSyncPosition != null) return Math.max(0, hls.liveSyncPosition - video.currentTime);
  if (video.seekable.length) return Math.max(0, video.seekable.end(video.seekable.length - 1) - video.currentTime);
  return null;
}

function start() {
  if (window.Hls && window.Hls.isSupported()) {
    hls = new window.Hls({
      liveDurationInfinity: true,
      // Every playlist reload says who is watching (the first one has it already).
      xhrSetup: (xhr, url) => {
        if (url.includes(".m3u8") && !url.includes("viewer=")) {
          xhr.open("GET", `${url}${url.includes("?") ? "&" : "?"}viewer=${viewer}`, true);
        }
      },
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      say("waiting for the program…", false);
      hls.destroy();
      hls = null;
      setTimeout(start, 3000);
    });
    hls.on(window.Hls.Events.LEVEL_LOADED, (_, data) => {
      if (!data.details.live) say("event ended — playing the recording", false);
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

document.getElementById("golive").addEventListener("click", () => {
  if (hls && hls.liveSyncPosition != null) video.currentTime = hls.liveSyncPosition;
  else if (video.seekable.length) video.currentTime = video.seekable.end(video.seekable.length - 1);
  video.play().catch(() => {});
});

setInterval(() => {
  if (video.readyState < 2) return;
  const behind = behindLive();
  if (behind == null) return;
  if (hls && hls.levels?.[hls.currentLevel]?.details?.live === false) return;
  const target = (hls?.levels?.[0]?.details?.targetduration ?? 6) * 3.5;
  if (behind <= target) say("live", true);
  else say(`${Math.round(behind)} s behind live`, false);
}, 1000);

window.casecastWatch = { video, get hls() { return hls; } };
start();
