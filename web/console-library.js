// The console's recordings library: every event the token sees (newest first) with
// its program's recorded files, each with its thumbnail, start, length and chapters
// (the messages and polls sent while it recorded), and a link that plays it on the
// watch page (/watch/{room}?recording=…). The API: GET /api/library.

import { clock, h } from "./dom.js";
import { $, api, enc, fmtWhen, hooks, showError, token } from "./console-core.js";

function recordingCard(event, r) {
  const q = `token=${enc(token)}`;
  const watch = `${r.watch}&${q}`;
  const chapters = r.chapters ?? [];
  return h("li", { class: "recording", dataset: { file: r.name } },
    h("a", { href: watch, target: "_blank", rel: "noopener", class: "thumb", "aria-label": `Play ${event.title}, ${r.name}` },
      h("img", { src: `${r.thumbnail}?${q}`, alt: "", loading: "lazy", width: 320, height: 180 })),
    h("div", { class: "recording-facts" },
      h("a", { href: watch, target: "_blank", rel: "noopener" }, r.name),
      h("span", { class: "muted small" }, [fmtWhen(r.started_at), r.duration_secs != null ? clock(r.duration_secs) : null, r.state !== "complete" ? r.state : null].filter(Boolean).join(" · ")),
      chapters.length
        ? h("ol", { class: "recording-chapters small" }, ...chapters.map((c) => h("li", {}, h("time", {}, clock(c.start_secs)), " ", c.title)))
        : h("span", { class: "muted small" }, "no chapters")));
}

export async function loadLibrary() {
  try {
    const { events } = await api("GET", "/api/library");
    hooks.library = events;
    const withFiles = events.filter((e) => e.recordings.length);
    $("library-summary").textContent = withFiles.length ? `${withFiles.reduce((n, e) => n + e.recordings.length, 0)} files of ${withFiles.length} event(s)` : "";
    $("library-empty").hidden = withFiles.length > 0;
    $("library").replaceChildren(
      ...withFiles.map((e) =>
        h("article", { class: "library-event", dataset: { event: e.id } },
          h("h3", {}, e.title, " ", h("span", { class: "muted small" }, e.status === "ended" ? "ended" : e.status)),
          h("ul", { class: "recordings" }, ...e.recordings.map((r) => recordingCard(e, r))))),
    );
  } catch (err) {
    showError(err);
  }
}

$("refresh-library").addEventListener("click", loadLibrary);
