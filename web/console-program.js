// casecast console — the program of the open event: the on-air light and switches
// (on/off air, slates, labels, recording), the live program monitor beside a preview
// of the next layout (studio mode: arrange it, then Take), the sources (the surgery
// feed and a tile per commentator), the outputs, and messages and polls to viewers
// with the polls' counts.
//
// The monitor is the encoded program over WebRTC (./monitor.js: a receive-only
// session in the event's room, a fraction of a second behind). The preview is made
// here from the sources the same session receives, placed as the compositor places
// them (actors/src/program.rs, `Layout::places`).

import { h } from "./dom.js";
import { RoomMonitor } from "./monitor.js";
import {
  $, addLog, api, busy, claims, enc, eventPoller, fmtClock, fmtKbps, fmtNum, fmtPct, hooks, shared, token,
} from "./console-core.js";
import { canBeMain, isMachinery, markNextMain, peopleActions, roomMessage } from "./console-people.js";

const LAYOUT_NAMES = { pip: "picture in picture", surgery_only: "surgery only", side_by_side: "side by side", grid: "grid" };
const STATE_NAMES = { scheduled: "Scheduled", starting: "Starting…", on_air: "On air", off_air: "Off air", ended: "Ended" };
const SLATE_NAMES = { starting: "Starting soon", brb: "We'll be right back" };

// ---------------------------------------------------------------- state and switches

/** The event's state everywhere on the page: the light, the buttons, what is allowed. */
export function renderState(e) {
  const state = e?.state || (e?.status === "ended" ? "ended" : "scheduled");
  const light = $("air-light");
  light.dataset.state = state;
  light.textContent = STATE_NAMES[state] ?? state;
  const started = state === "starting" || state === "on_air" || state === "off_air";
  $("start-event").hidden = state !== "scheduled";
  $("air-toggle").hidden = !started;
  $("air-toggle").textContent = state === "off_air" ? "Go on air" : "Go off air";
  $("air-toggle").dataset.to = state === "off_air" ? "on" : "off";
  for (const b of document.querySelectorAll("button[data-slate]")) b.disabled = !started || b.dataset.busy === "1";
  $("take").disabled = !started;
  $("program-note").textContent = {
    scheduled: "The event has not started: press Start to run its program (it starts by itself at its scheduled time).",
    starting: "The program is starting…",
    off_air: "Off air: viewers are told the broadcast will resume shortly. The program goes on here and in the recording.",
    ended: "The event has ended; viewers see the recording.",
  }[state] ?? "";
}

/** The program's switches as the compositor reports them. */
export function renderSwitches(sw) {
  if (!sw) return;
  hooks.switches = sw;
  const slate = sw.slate_starting ? "starting" : sw.slate_brb ? "brb" : null;
  hooks.switches.slate = slate;
  for (const b of document.querySelectorAll("button[data-slate]")) b.setAttribute("aria-pressed", String((b.dataset.slate || null) === slate));
  $("slate-state").textContent = slate ? `Slate on the program: “${SLATE_NAMES[slate]}”` : "";
  for (const b of [$("labels"), $("recording")]) {
    const on = sw[b.dataset.switch];
    if (typeof on !== "boolean") continue;
    b.setAttribute("aria-pressed", String(on));
    b.textContent = `${b.dataset.switch === "labels" ? "Labels" : "Recording"}: ${on ? "on" : "off"}`;
  }
}

/** Sets program switches (on_air, labels, recording, slate); the distribution then
 * reports them as the compositor has them. */
function setSwitches(change, buttons) {
  if (!shared.current) return;
  const id = shared.current.id;
  busy(buttons, async () => {
    await api("POST", `/api/events/${enc(id)}/program`, { body: change });
    if (shared.current?.id !== id) return;
    if ("on_air" in change) addLog({ source: "page", text: change.on_air ? "went on air" : "went off air" });
    if ("slate" in change) addLog({ source: "page", text: change.slate ? `slate “${SLATE_NAMES[change.slate]}” on` : "slate off" });
  });
}

$("air-toggle").addEventListener("click", () => setSwitches({ on_air: $("air-toggle").dataset.to === "on" }, $("air-toggle")));
for (const b of document.querySelectorAll("button[data-slate]")) {
  b.addEventListener("click", () => setSwitches({ slate: b.dataset.slate || null }, [...document.querySelectorAll("button[data-slate]")]));
}
for (const button of [$("labels"), $("recording")]) {
  button.addEventListener("click", () => {
    const name = button.dataset.switch;
    setSwitches({ [name]: !(hooks.switches?.[name] ?? true) }, button);
  });
}

// ---------------------------------------------------------------- studio: preview and take

/** The next layout and main source (the preview), taken live by Take. */
function setNext(layout, main) {
  hooks.next = { layout, main };
  for (const b of document.querySelectorAll("button[data-layout]")) b.setAttribute("aria-pressed", String(b.dataset.layout === layout));
  $("feed-main").setAttribute("aria-pressed", String(main == null));
  markNextMain(main);
  const who = main == null ? "the surgery feed" : (shared.participantsById.get(main)?.name ?? main);
  $("next-state").textContent = `Next: ${LAYOUT_NAMES[layout] ?? layout}, main source ${who}`;
  renderStudio();
}

peopleActions.makeMain = (pid) => setNext(hooks.next.layout ?? "pip", pid);
for (const b of document.querySelectorAll("button[data-layout]")) b.addEventListener("click", () => setNext(b.dataset.layout, hooks.next.main));
$("feed-main").addEventListener("click", () => setNext(hooks.next.layout ?? "pip", null));

$("take").addEventListener("click", () => {
  if (!shared.current) return;
  const id = shared.current.id;
  const { layout, main } = hooks.next;
  busy([$("take")], async () => {
    const answer = await api("POST", `/api/events/${enc(id)}/program`, { body: { layout, main } });
    if (shared.current?.id !== id) return;
    hooks.program = { layout: answer?.layout ?? layout, main: answer?.main ?? main ?? null };
    const who = hooks.program.main == null ? "the surgery feed" : (shared.participantsById.get(hooks.program.main)?.name ?? hooks.program.main);
    $("program-state").textContent = `Live: ${LAYOUT_NAMES[hooks.program.layout] ?? hooks.program.layout}, main source ${who}.`;
    addLog({ source: "page", text: `took live: layout ${hooks.program.layout}, main source ${who}` });
  }, () => renderState(hooks.event));
});

/** Where each source goes in a layout, as fractions of the picture (the compositor's
 * arithmetic: program.rs `Layout::places`). */
export function places(layout, count) {
  const out = [];
  const full = { x: 0, y: 0, w: 1, h: 1 };
  if (layout === "surgery_only") return [full];
  if (layout === "pip") {
    out.push(full);
    const tw = 1 / 5, margin = 1 / 80, mh = margin * 16 / 9;
    for (let n = 0; n < Math.min(count - 1, 4); n++) out.push({ x: margin + n * (tw + margin), y: 1 - tw - mh, w: tw, h: tw });
    return out;
  }
  if (layout === "side_by_side") {
    out.push({ x: 0, y: 1 / 6, w: 2 / 3, h: 2 / 3 });
    for (let n = 0; n < Math.min(count - 1, 3); n++) out.push({ x: 2 / 3, y: n / 3, w: 1 / 3, h: 1 / 3 });
    return out;
  }
  const n = Math.max(1, Math.min(count, 9));
  const cols = [1, 2, 3].find((c) => c * c >= n) ?? 3;
  const rows = Math.ceil(n / cols);
  for (let k = 0; k < n; k++) out.push({ x: (k % cols) / cols, y: Math.floor(k / cols) / rows, w: 1 / cols, h: 1 / rows });
  return out;
}

/** Draws the preview: the sources this page receives, placed as the next layout says. */
function renderStudio() {
  const { layout, main } = hooks.next;
  const streams = [];
  const feed = preview.streams.get("feed");
  const chosen = main != null ? preview.streams.get(main) : null;
  const mainStream = chosen ?? feed;
  if (mainStream) streams.push({ id: chosen ? main : "feed", stream: mainStream });
  if (layout !== "surgery_only") {
    if (chosen && feed) streams.push({ id: "feed", stream: feed });
    for (const [id, s] of preview.streams) if (id !== "feed" && id !== main) streams.push({ id, stream: s });
  }
  const box = $("studio");
  const spots = places(layout, streams.length);
  const kids = streams.slice(0, spots.length).map((s, i) => {
    const p = spots[i];
    const v = h("video", { autoplay: true, muted: true, playsinline: true, dataset: { source: s.id },
      style: `left:${p.x * 100}%;top:${p.y * 100}%;width:${p.w * 100}%;height:${p.h * 100}%;z-index:${i === 0 ? 1 : 2}` });
    v.muted = true;
    v.srcObject = s.stream;
    v.play().catch(() => {});
    return v;
  });
  box.replaceChildren(...kids, ...(kids.length ? [] : [h("div", { class: "placeholder" }, "No sources yet: the preview shows the feed and the commentators when they arrive.")]));
  hooks.studio = streams.slice(0, spots.length).map((s) => s.id);
}

// ---------------------------------------------------------------- the monitor and the sources

// The program monitor, the surgery feed and the commentators, received over WebRTC in
// a receive-only session of the event's room. Audio plays only after "Listen".
export const preview = {
  monitor: null,
  audio: new Map(), // track id → <audio>
  streams: new Map(), // "feed" or participant id → MediaStream (video), for the studio preview
  listening: false,

  say(state, note) {
    hooks.preview = state;
    $("preview-state").textContent = { idle: "", connecting: "connecting…", waiting: "waiting for the program", playing: "live (WebRTC)", retrying: "reconnecting…", refused: "refused" }[state] ?? state;
    $("preview-note").textContent = note ?? "";
    $("preview-note").hidden = !note;
  },

  open(id) {
    this.stop();
    this.say("connecting", "Connecting to the event's room…");
    this.monitor = new RoomMonitor({
      room: id, token, name: `console (${claims?.name ?? "operator"})`,
      onTrack: (info, track) => this.show(info, track),
      onGone: (info) => this.hide(info),
      onMessage: (m) => roomMessage(m),
      onState: (state, detail) => {
        if (state === "live") {
          if (!$("preview").srcObject) {
            const e = hooks.event;
            this.say("waiting", e?.state === "scheduled" ? "The program starts when the event starts (Start, or its scheduled time)." : "The program is coming up…");
          }
        } else if (state === "retrying") this.say("retrying", `Reconnecting: ${detail}`);
        else if (state === "refused") { this.say("refused", `The room refused the console: ${detail}`); addLog({ source: "page", level: "error", text: `monitor refused: ${detail}` }); }
      },
    });
    this.monitor.start();
  },

  stop() {
    this.monitor?.stop();
    this.monitor = null;
    for (const el of [$("preview"), $("feed-video")]) el.srcObject = null;
    $("feed-tile").dataset.video = "off";
    for (const el of this.audio.values()) el.remove();
    this.audio.clear();
    this.streams.clear();
    for (const tile of tiles.values()) { tile.video.srcObject = null; tile.fig.dataset.video = "off"; }
    this.say("idle", "The program has not started yet.");
    renderStudio();
  },

  show(info, track) {
    const stream = new MediaStream([track]);
    if (track.kind === "audio") {
      if (info.source === "program") return;
      const el = h("audio", { autoplay: true, dataset: { participant: info.participant_id } });
      el.muted = !this.listening;
      el.srcObject = stream;
      $("audio-sink").append(el);
      this.audio.set(track.id, el);
      return;
    }
    let el;
    if (info.source === "program") el = $("preview");
    else if (info.source === "feed") {
      el = $("feed-video");
      $("feed-tile").dataset.video = "on";
      this.streams.set("feed", stream);
    } else {
      const tile = tileFor({ id: info.participant_id, name: info.name });
      tile.fig.dataset.video = "on";
      el = tile.video;
      this.streams.set(info.participant_id, stream);
    }
    el.srcObject = stream;
    el.play().catch(() => {});
    renderStudio();
  },

  hide(info) {
    for (const [id, el] of this.audio) {
      if (el.dataset.participant === info.participant_id && info.kind === "audio") { el.remove(); this.audio.delete(id); }
    }
    if (info.kind !== "video") return;
    if (info.source === "program") { $("preview").srcObject = null; this.say("waiting", "The program monitor stopped; waiting for it to come back."); }
    else if (info.source === "feed") { $("feed-video").srcObject = null; $("feed-tile").dataset.video = "off"; this.streams.delete("feed"); }
    else {
      const tile = tiles.get(info.participant_id);
      if (tile) { tile.video.srcObject = null; tile.fig.dataset.video = "off"; }
      this.streams.delete(info.participant_id);
    }
    renderStudio();
  },

  listen(on) {
    this.listening = on;
    for (const el of this.audio.values()) { el.muted = !on; if (on) el.play().catch(() => {}); }
    $("listen").setAttribute("aria-pressed", String(on));
  },
};

$("preview").addEventListener("playing", () => { if (preview.monitor) preview.say("playing", null); });
$("listen").addEventListener("click", () => preview.listen(!preview.listening));
preview.say("idle", null);
hooks.monitorStats = () => preview.monitor?.stats() ?? Promise.resolve([]);

// One tile per commentator: their camera (from the monitor session), name, speaking,
// mute state and the stats the server measures.
const tiles = new Map(); // participant id → { fig, video, name, dot, stats, badges }

function tileFor(p) {
  let t = tiles.get(p.id);
  if (!t) {
    const video = h("video", { autoplay: true, muted: true, playsinline: true });
    video.muted = true;
    const dot = h("span", { class: "speak-dot", title: "speaking", dataset: { speaking: "false" } });
    const name = h("span", { class: "source-name" });
    const badges = h("span", { class: "source-badges" });
    const stats = h("span", { class: "source-stats muted small" });
    const fig = h("figure", { class: "source", dataset: { participant: p.id, video: "off" } },
      video, h("figcaption", {}, dot, name, badges, stats));
    $("sources").append(fig);
    t = { fig, video, name, dot, stats, badges };
    tiles.set(p.id, t);
  }
  if (t.name.textContent !== p.name) t.name.textContent = p.name;
  return t;
}

/** Tiles follow the participants: commentators get one, leavers lose theirs. */
peopleActions.changed = (list) => {
  const commentators = list.filter((p) => p.role === "commentator");
  const ids = new Set(commentators.map((p) => p.id));
  for (const [id, t] of tiles) if (!ids.has(id)) { t.fig.remove(); tiles.delete(id); preview.streams.delete(id); }
  for (const p of commentators) {
    const t = tileFor(p);
    t.dot.dataset.speaking = String(Boolean(p.speaking));
    t.fig.classList.toggle("speaking", Boolean(p.speaking));
    const muted = [
      (p.audio_muted || p.audio_muted_by_operator) && (p.audio_muted_by_operator ? "mic muted by operator" : "mic off"),
      (p.video_muted || p.video_muted_by_operator) && (p.video_muted_by_operator ? "cam muted by operator" : "cam off"),
      p.hand_raised && "✋ hand raised",
    ].filter(Boolean);
    t.badges.textContent = muted.join(" · ");
    t.stats.textContent = `${fmtKbps(p.bitrate_in)} kbit/s · ${fmtNum(p.fps_in, 1)} fps · RTT ${fmtNum(p.rtt_ms)} ms · loss ${fmtPct(p.loss_in)} %`;
  }
  const feed = list.find((p) => p.role === "encoder");
  $("feed-stats").textContent = feed
    ? `${fmtKbps(feed.bitrate_in)} kbit/s · ${fmtNum(feed.fps_in, 1)} fps${feed.width ? ` · ${feed.width}×${feed.height}` : ""}`
    : "no encoder yet: hand the hospital the encoder's invitation";
  if (main(list) === undefined) setNext(hooks.next.layout, null);
  renderStudio();
};

/** The next main source, if still here (undefined: gone). */
function main(list) {
  const m = hooks.next.main;
  if (m == null) return null;
  return list.some((p) => p.id === m && canBeMain(p.role) && !isMachinery(p)) ? m : undefined;
}

// ---------------------------------------------------------------- distribution

export const distributionPoller = eventPoller("distribution", 2_000,
  (id, signal) => api("GET", `/api/events/${enc(id)}/distribution`, { signal }),
  (d) => setDistribution(d));

let seenOutputs = null;

export function resetProgram() {
  seenOutputs = null;
  hooks.program = { layout: null, main: null };
  hooks.switches = null;
  hooks.polls = [];
  $("outputs").replaceChildren();
  $("viewers").textContent = "–";
  $("hls-state").textContent = "–";
  $("poll-results").replaceChildren();
  $("program-state").textContent = "";
  for (const b of [$("labels"), $("recording")]) b.setAttribute("aria-pressed", "false");
  $("labels").textContent = "Labels";
  $("recording").textContent = "Recording";
  setNext("pip", null);
}

export function setDistribution(d) {
  const before = hooks.distribution;
  hooks.distribution = d;
  const playlist = Boolean(d?.hls?.playlist);
  $("viewers").textContent = String(d?.viewers ?? 0);
  $("hls-state").textContent = playlist ? "present" : "not yet";
  $("hls-state").dataset.up = String(playlist);
  const outputs = Array.isArray(d?.outputs) ? d.outputs : [];
  const stateOf = (o) => o.state ?? (o.up ? "up" : "down");
  const words = { up: "up", down: "down", off_air: "off air (stopped on purpose)" };
  $("outputs").replaceChildren(...(outputs.length
    ? outputs.map((o) => h("li", { class: "output", dataset: { output: o.output, up: String(Boolean(o.up)), state: stateOf(o) } },
      h("span", { class: "output-dot", "aria-hidden": "true" }),
      h("span", { class: "output-name mono" }, o.output),
      h("span", { class: "output-state" }, words[stateOf(o)] ?? stateOf(o))))
    : [h("li", { class: "empty" }, "No outputs yet: they appear when the program runs.")]));
  if (before && Boolean(before.hls?.playlist) !== playlist) {
    addLog({ source: "page", level: playlist ? "info" : "warn", text: playlist ? "the program's HLS playlist appeared" : "the program's HLS playlist is gone" });
  }
  const now = new Map(outputs.map((o) => [o.output, stateOf(o)]));
  if (seenOutputs) {
    for (const [name, state] of now) {
      if (seenOutputs.get(name) !== state) addLog({ source: "page", level: state === "down" ? "warn" : "info", text: `output ${name}: ${words[state] ?? state}` });
    }
    for (const name of seenOutputs.keys()) if (!now.has(name)) addLog({ source: "page", level: "warn", text: `output ${name} is no longer reported` });
  }
  seenOutputs = now;
  renderSwitches(d?.program ?? null);
  renderAws(d?.aws ?? null, before?.aws ?? null);
}

/** The AWS distribution: the channel's phase and state, its input, alerts, errors. */
function renderAws(a, before) {
  $("aws").hidden = !a;
  if (!a) return;
  const c = a.channel;
  $("aws-phase").textContent = a.phase || "not on air yet";
  $("aws-phase").dataset.phase = a.phase || "";
  $("aws-channel").textContent = c ? `${c.state} · ${c.pipelines_running} pipeline(s)` : "none";
  $("aws-input").textContent = c?.active_input ?? "–";
  $("aws-viewer").textContent = a.viewer_url ?? "";
  $("aws-viewer").href = a.viewer_url ?? "#";
  const notes = [
    a.error && `Error: ${a.error}`,
    a.auto_stopped_at && `The channel ran with no live event and was stopped at ${fmtClock(a.auto_stopped_at * 1000)}.`,
    ...(c?.alerts ?? []).map((t) => `Alert: ${t}`),
  ].filter(Boolean);
  $("aws-note").textContent = notes.join(" ");
  $("aws-note").hidden = notes.length === 0;
  $("aws-note").dataset.level = a.error || c?.alerts?.length ? "warn" : "info";
  for (const b of [$("aws-primary"), $("aws-backup")]) b.disabled = !a.resources;
  if (before && before.phase !== a.phase) addLog({ source: "page", level: a.phase === "failed" ? "error" : "info", text: `AWS channel: ${a.phase}${a.error ? ` (${a.error})` : ""}` });
  if (a.auto_stopped_at && a.auto_stopped_at !== before?.auto_stopped_at) addLog({ source: "page", level: "warn", text: "AWS channel stopped: it ran with no live event" });
}

for (const b of [$("aws-primary"), $("aws-backup")]) {
  b.addEventListener("click", () => {
    if (!shared.current) return;
    const id = shared.current.id;
    busy([$("aws-primary"), $("aws-backup")], async () => {
      await api("POST", `/api/events/${enc(id)}/distribution/input`, { body: { input: b.dataset.input } });
      addLog({ source: "page", text: `input switch to ${b.dataset.input} sent` });
    });
  });
}

// ---------------------------------------------------------------- messages and polls

/** The polls with their counts (from the live updates, or polled). */
export function setPolls(list) {
  hooks.polls = list;
  $("poll-results").replaceChildren(...list.map((p) => h("li", { class: "poll", dataset: { poll: p.id, total: String(p.total) } },
    h("strong", {}, p.question), h("span", { class: "muted small" }, ` · ${p.total} vote${p.total === 1 ? "" : "s"}`),
    h("ul", { class: "poll-bars" }, ...p.options.map((o, i) => {
      const n = p.counts[i] ?? 0;
      const pct = p.total ? Math.round((n / p.total) * 100) : 0;
      return h("li", {}, h("span", { class: "poll-option" }, o),
        h("span", { class: "poll-bar", style: `--pct:${pct}%`, "aria-hidden": "true" }),
        h("span", { class: "poll-count" }, `${n} (${pct} %)`));
    })))));
  $("polls-empty").hidden = list.length > 0;
}

export const pollsPoller = eventPoller("polls", 3_000,
  (id, signal) => api("GET", `/api/events/${enc(id)}/polls`, { signal }),
  (list) => setPolls(Array.isArray(list) ? list : []));

function sendMetadata(button, body, reset) {
  if (!shared.current) return;
  const id = shared.current.id;
  busy(button, async () => {
    const sent = await api("POST", `/api/events/${enc(id)}/metadata`, { body });
    hooks.lastMetadata = sent;
    addLog({ source: "page", text: sent.type === "poll" ? `poll sent: ${sent.question}` : `message sent: ${sent.text}` });
    reset();
    if (sent.type === "poll") pollsPoller.kick();
  });
}

$("send-message").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("msg-text");
  sendMetadata($("msg-submit"), { text: input.value.trim() }, () => { input.value = ""; });
});

$("send-poll").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("poll-question");
  const o = $("poll-options");
  const options = o.value.split(",").map((s) => s.trim()).filter(Boolean);
  sendMetadata($("poll-submit"), { poll: { question: q.value.trim(), options } }, () => { q.value = ""; o.value = ""; });
});
