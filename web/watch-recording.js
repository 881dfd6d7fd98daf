// A recording of an event's program, played from the library (/watch/{room}?recording=
// <file>&token=<operator token>): the MP4 file itself (the server answers byte
// ranges, so the player seeks), its thumbnail as the poster, and its chapters (the
// messages and polls sent to viewers while it was recorded) as a list that seeks.
// The recordings are the operators': the token comes in the link, as on the console.

import { clock, h } from "./dom.js";

const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
const params = new URLSearchParams(location.search);
const file = params.get("recording") ?? "";
const token = params.get("token") ?? "";
const video = document.getElementById("video");
const status = document.getElementById("status");
const note = document.getElementById("note");
const list = document.getElementById("chapters");
window.casecastRecording = { file: null, chapters: [], current: null };

function fail(text) {
  status.textContent = "";
  note.textContent = text;
  note.hidden = false;
}

async function load() {
  document.getElementById("title").textContent = `${room} — ${file}`;
  document.title = `casecast — ${room}, ${file}`;
  const q = `?token=${encodeURIComponent(token)}`;
  let answer;
  try {
    answer = await fetch(`/api/rooms/${encodeURIComponent(room)}/recordings${q}`);
  } catch {
    return fail("The server cannot be reached; try again in a moment.");
  }
  if (!answer.ok) {
    const why = (await answer.text()).trim();
    return fail(answer.status === 401 || answer.status === 403 ? `This recording needs an operator's link: ${why}` : why);
  }
  const rec = (await answer.json()).recordings.find((r) => r.name === file);
  if (!rec) return fail("There is no such recording in this room.");
  window.casecastRecording.file = rec;
  video.poster = `${rec.thumbnail}${q}`;
  video.src = `${rec.url}${q}`;
  const length = rec.duration_secs != null ? ` · ${clock(rec.duration_secs)}` : "";
  const when = rec.started_at != null ? new Date(rec.started_at * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "";
  status.textContent = `${when}${length}${rec.state === "complete" ? "" : ` · ${rec.state}`}`;
  showChapters(rec.chapters ?? []);
}

function showChapters(chapters) {
  window.casecastRecording.chapters = chapters;
  document.getElementById("chapters-panel").hidden = chapters.length === 0;
  list.replaceChildren(
    ...chapters.map((c, i) =>
      h("li", {},
        h("button", { type: "button", dataset: { index: String(i) }, onclick: () => { video.currentTime = c.start_secs; video.play().catch(() => {}); } },
          h("time", {}, clock(c.start_secs)), h("span", {}, c.title)))),
  );
}

// The chapter playing now is marked.
video.addEventListener("timeupdate", () => {
  const chapters = window.casecastRecording.chapters;
  let current = null;
  chapters.forEach((c, i) => {
    if (video.currentTime + 0.25 >= c.start_secs) current = i;
  });
  if (current === window.casecastRecording.current) return;
  window.casecastRecording.current = current;
  for (const b of list.querySelectorAll("button")) b.setAttribute("aria-current", String(b.dataset.index === String(current)));
});
video.addEventListener("error", () => fail("The recording cannot be played in this browser, or it is gone."));

load();
