// casecast — case library page (/cases?token=…). Plain ES module, no build step, no libraries.
// The HTTP API it speaks is described in the cases API contract (uploads, jobs, studies,
// DICOMweb frames).
//
//  1. Every request carries the page's token as `Authorization: Bearer`; <img> thumbnails
//     carry it as ?token=. Errors (the server's {"error": "..."} text) go to the #error
//     banner and to window.casecastCases.lastError.
//  2. Uploads: tus 1.0.0 by hand. POST creates (metadata: kind and batch, never the file
//     name), PATCH sends 8 MiB chunks, HEAD finds the server's offset after a network error
//     or a 409. The upload URL is remembered in localStorage (under a hash of name, size and
//     mtime) so that picking the same file after a reload resumes it. Two files at a time.
//  3. Jobs are polled while one is queued/running (every half second while one runs, so
//     its frame-by-frame progress shows: "frame 7 of 24 · reading text") or an upload is
//     going on; a job that finishes refreshes the study list.
//  4. #study=<uid> in the hash opens the viewer (the token stays in the query).
//  5. Viewer: a series is one "stack" of frames: every frame of every instance, in instance
//     order. Monochrome instances with raw pixels are decoded here and windowed through a
//     lookup table; anything else shows the server's rendered picture.
//  6. Studies are listed by title (operator-entered text, always set as text, never as
//     HTML), with their dates, uploader and counts; the search box asks the server
//     (?q=words); who may upload may rename a study (PATCH {"title": …}).
//  7. window.casecastCases is kept up to date for the browser tests.

import { h } from "./dom.js";

const $ = (id) => document.getElementById(id);
const ui = {
  error: $("error"), summary: $("summary"), library: $("library"), viewer: $("viewer"),
  drop: $("drop"), files: $("files"), folder: $("folder"), uploads: $("uploads"),
  uploadsHead: $("uploads-head"), clearUploads: $("clear-uploads"),
  jobs: $("jobs"), jobsSummary: $("jobs-summary"), studies: $("studies"), refreshStudies: $("refresh-studies"),
  studySearch: $("study-search"),
  studyTitle: $("study-title"), studyInfo: $("study-info"), series: $("series"),
  canvas: $("image"), viewport: $("viewport"), viewportStatus: $("viewport-status"),
  play: $("play"), slider: $("frame-slider"), frameLabel: $("frame-label"), reset: $("reset"),
  presets: $("presets"), wlLabel: $("wl-label"), metaBody: $("meta-body"), metaFilter: $("meta-filter"),
};

const token = new URLSearchParams(location.search).get("token") ?? "";
const hooks = { jobs: null, studies: null, query: "", frame: 0, frames: 0, drawn: 0, lastError: null };
window.casecastCases = hooks;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const enc = encodeURIComponent;
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

// ---------------------------------------------------------------- helpers


function fmtBytes(n) {
  if (!Number.isFinite(n)) return "?";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

const fmtDate = (d) => (/^\d{8}$/.test(d ?? "") ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : "no date");
const fmtDay = (unix) => (unix ? new Date(unix * 1000).toISOString().slice(0, 10) : "");

/** The token's role, read for the page's buttons only (the server decides). */
function tokenRole() {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4))).role ?? "";
  } catch { return ""; }
}
const canManage = ["commentator", "operator"].includes(tokenRole());
const pct = (part, whole) => (whole > 0 ? Math.floor((100 * part) / whole) : 100);

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); reject(new DOMException("aborted", "AbortError")); }, { once: true });
  });
}

/** 8 random bytes as hex (crypto.randomUUID needs a secure context; this does not). */
const randomId = () => [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");

// ---------------------------------------------------------------- errors and API

function showError(err) {
  let msg = typeof err === "string" ? err : err?.message || String(err);
  if (err?.status === 401) {
    msg += token ? " — the link's token is invalid or expired; ask the organizer for a new link."
      : " — this link has no ?token=…; open the link you were given.";
  }
  hooks.lastError = msg;
  ui.error.textContent = msg;
  ui.error.hidden = false;
  console.warn("casecast cases:", err);
}
ui.error.addEventListener("click", () => { ui.error.hidden = true; });
// Last line of defence: nothing may end as an unhandled rejection.
addEventListener("unhandledrejection", (ev) => { ev.preventDefault(); showError(ev.reason); });

/** fetch with the token; a non-2xx answer throws an Error with .status and the server's text. */
async function api(url, { method = "GET", headers = {}, body, signal } = {}) {
  const hdrs = new Headers(headers);
  if (token) hdrs.set("Authorization", `Bearer ${token}`);
  let res;
  try {
    res = await fetch(url, { method, headers: hdrs, body, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw Object.assign(new Error(`network error (${err.message})`), { status: 0 });
  }
  if (res.ok) return res;
  let text = "";
  try {
    text = (await res.text()).trim();
    text = JSON.parse(text).error ?? text;
  } catch { /* not JSON: keep the plain text */ }
  throw Object.assign(new Error(`${text || res.statusText || "request failed"} (HTTP ${res.status})`), { status: res.status });
}
const apiJson = async (url) => (await api(url, { headers: { Accept: "application/json" } })).json();

// ---------------------------------------------------------------- uploads (tus 1.0.0)

const UPLOADS_URL = "/api/cases/uploads";
const CHUNK = 8 * 1024 * 1024;
const PARALLEL = 2;
const MAX_TRIES = 10;
const STORE_PREFIX = "casecast.tus.";
const STORE_MAX_AGE = 7 * 24 * 3600 * 1000;
const uploads = []; // every item ever added, in order
let activeUploads = 0;

/** 53-bit string hash: the storage key, so that file names are not kept in clear text. */
function hash53(str) {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}
const storeKey = (file) => STORE_PREFIX + hash53(`${file.name}|${file.size}|${file.lastModified}`);
const store = { // localStorage may be unavailable (privacy modes): never let it throw
  get(k) { try { return JSON.parse(localStorage.getItem(k)); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* ignore */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* ignore */ } },
};

function pruneStore() {
  try {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (k?.startsWith(STORE_PREFIX) && !(Date.now() - (store.get(k)?.at ?? 0) < STORE_MAX_AGE)) store.del(k);
    }
  } catch { /* ignore */ }
}

const isZip = (f) => /\.zip$/i.test(f.name) || f.type === "application/zip" || f.type === "application/x-zip-compressed";
// Statuses worth a HEAD and another try; anything else (401, 403, 404, 413…) is final.
const retryable = (err) => err.status === 0 || err.status === 409 || err.status === 423 || err.status === 429 || err.status >= 500;

/** One pick or drop: [{file, path}] → a batch of uploads. */
function addBatch(picked) {
  const files = picked.filter(({ file }) => file.size > 0 && !/^\.|^(thumbs\.db|desktop\.ini)$/i.test(file.name));
  const skipped = picked.length - files.length;
  if (!files.length) {
    if (picked.length) showError(`Nothing to upload: ${skipped} empty or hidden file(s) skipped.`);
    return;
  }
  const batch = { id: randomId(), items: [], skipped };
  batch.el = h("div", { class: "batch" });
  batch.head = h("div", { class: "batch-head" });
  batch.bar = h("progress", { max: 1, value: 0 });
  batch.list = h("div", { class: "batch-items" });
  batch.el.append(batch.head, batch.bar, batch.list);
  for (const { file, path } of files) {
    const item = {
      file, batch, name: path || file.name, size: file.size, kind: isZip(file) ? "zip" : "dicom",
      state: "queued", offset: 0, url: null, jobId: null, job: null, note: "", abort: null, resumed: false,
    };
    item.bar = h("progress", { max: item.size, value: 0 });
    item.bytes = h("span", { class: "upload-bytes" });
    item.status = h("span", { class: "upload-state" });
    item.button = h("button", { type: "button", class: "btn btn-small", onclick: () => uploadAction(item) });
    item.el = h("div", { class: "upload" },
      h("span", { class: "upload-name", title: item.name }, item.name), item.bar, item.bytes, item.status, item.button);
    batch.items.push(item);
    batch.list.append(item.el);
    uploads.push(item);
    renderItem(item);
  }
  ui.uploads.prepend(batch.el);
  ui.uploadsHead.hidden = false;
  pump();
  kickJobs();
}

function renderItem(item) {
  item.el.dataset.state = item.state;
  item.bar.value = item.offset;
  item.bytes.textContent = `${fmtBytes(item.offset)} / ${fmtBytes(item.size)} (${pct(item.offset, item.size)}%)`;
  let status = {
    queued: "waiting", uploading: item.resumed ? "resuming" : "uploading",
    done: "uploaded", failed: "failed", cancelled: "cancelled",
  }[item.state];
  if (item.state === "done" && item.job) {
    const j = item.job;
    const step = jobStep(j);
    status = j.status === "failed" ? `failed: ${j.error ?? "unknown error"}`
      : j.status === "done" ? "processed" : `processing ${Math.round((j.progress ?? 0) * 100)}%${step ? ` · ${step}` : ""}`;
    item.el.dataset.job = j.status;
  }
  item.status.textContent = item.note ? `${status} — ${item.note}` : status;
  const action = { queued: "Cancel", uploading: "Cancel", failed: "Retry" }[item.state];
  item.button.hidden = !action;
  item.button.textContent = action ?? "";
  renderBatch(item.batch);
}

function renderBatch(batch) {
  const total = batch.items.reduce((s, i) => s + i.size, 0);
  const sent = batch.items.reduce((s, i) => s + (i.state === "cancelled" ? i.size : i.offset), 0);
  const count = (st) => batch.items.filter((i) => i.state === st).length;
  const parts = [`Batch ${batch.id.slice(0, 6)}`, `${count("done")} / ${batch.items.length} files uploaded`,
    `${fmtBytes(sent)} / ${fmtBytes(total)} (${pct(sent, total)}%)`];
  if (count("failed")) parts.push(`${count("failed")} failed`);
  if (count("cancelled")) parts.push(`${count("cancelled")} cancelled`);
  if (batch.skipped) parts.push(`${batch.skipped} empty/hidden skipped`);
  batch.head.textContent = parts.join(" · ");
  batch.bar.max = total || 1;
  batch.bar.value = sent;
}

function uploadAction(item) {
  if (item.state === "failed") {
    item.state = "queued";
    item.note = "";
    renderItem(item);
    pump();
    return;
  }
  if (item.state !== "queued" && item.state !== "uploading") return;
  item.state = "cancelled";
  item.abort?.abort();
  store.del(storeKey(item.file));
  if (item.url) { // tus termination: free the server's partial file
    api(item.url, { method: "DELETE", headers: { "Tus-Resumable": "1.0.0" } }).catch(() => {});
  }
  renderItem(item);
}

/** Starts queued uploads while fewer than PARALLEL run. */
function pump() {
  while (activeUploads < PARALLEL) {
    const next = uploads.find((i) => i.state === "queued");
    if (!next) return;
    activeUploads++;
    runUpload(next).finally(() => { activeUploads--; pump(); });
  }
}

async function headUpload(url, signal) {
  const res = await api(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" }, signal });
  const offset = Number(res.headers.get("Upload-Offset"));
  const length = Number(res.headers.get("Upload-Length"));
  if (res.headers.get("Upload-Offset") == null || !Number.isFinite(offset)) {
    throw Object.assign(new Error("the server did not say how much it has (no Upload-Offset)"), { status: 500 });
  }
  return { offset, length };
}

/** Resumes the remembered upload of this file if the server still has it, else creates one. */
async function openUpload(item, key, signal) {
  const saved = store.get(key);
  if (saved?.url) {
    try {
      const { offset, length } = await headUpload(saved.url, signal);
      if (length === item.size && offset <= item.size) {
        Object.assign(item, { url: saved.url, offset, resumed: offset > 0 });
        return;
      }
    } catch (err) {
      if (err.name === "AbortError" || retryable(err)) throw err; // try the same upload again later
      // 404/410/403: the server no longer has it for us; start over.
    }
    store.del(key);
  }
  const res = await api(UPLOADS_URL, {
    method: "POST",
    signal,
    headers: {
      "Tus-Resumable": "1.0.0",
      "Upload-Length": String(item.size),
      // Only the kind and the batch: the file name never leaves this computer.
      "Upload-Metadata": `kind ${btoa(item.kind)}, batch ${btoa(item.batch.id)}`,
    },
  });
  const location_ = res.headers.get("Location");
  if (!location_) throw Object.assign(new Error("the server did not say where to upload (no Location)"), { status: 500 });
  item.url = new URL(location_, location.href).href;
  item.offset = 0;
  store.set(key, { url: item.url, at: Date.now() });
}

async function patchChunk(item, signal) {
  const end = Math.min(item.offset + CHUNK, item.size);
  const res = await api(item.url, {
    method: "PATCH",
    signal,
    headers: {
      "Tus-Resumable": "1.0.0",
      "Content-Type": "application/offset+octet-stream",
      "Upload-Offset": String(item.offset),
    },
    body: item.file.slice(item.offset, end),
  });
  const job = res.headers.get("Casecast-Job");
  if (job) item.jobId = job;
  const next = Number(res.headers.get("Upload-Offset"));
  if (res.headers.get("Upload-Offset") == null || !Number.isFinite(next) || next < item.offset) {
    throw Object.assign(new Error("no usable Upload-Offset in the answer"), { status: 0 }); // → HEAD
  }
  item.offset = next;
}

/** Runs one file to the end (or failure). Never rejects. */
async function runUpload(item) {
  const key = storeKey(item.file);
  const abort = new AbortController();
  item.abort = abort;
  item.state = "uploading";
  renderItem(item);
  let tries = 0;
  let needHead = Boolean(item.url); // a retried item asks the server where it stands
  try {
    for (;;) {
      try {
        if (!item.url) await openUpload(item, key, abort.signal);
        else if (needHead) item.offset = (await headUpload(item.url, abort.signal)).offset;
        needHead = false;
        renderItem(item);
        if (item.offset >= item.size) break;
        await patchChunk(item, abort.signal);
        tries = 0;
        item.note = "";
        renderItem(item);
      } catch (err) {
        if (err.name === "AbortError" || !retryable(err) || ++tries > MAX_TRIES) throw err;
        needHead = Boolean(item.url);
        const wait = Math.min(30_000, 500 * 2 ** (tries - 1)) * (0.75 + Math.random() / 2);
        item.note = `${err.message}; retry ${tries}/${MAX_TRIES} in ${Math.ceil(wait / 1000)} s`;
        renderItem(item);
        await sleep(wait, abort.signal);
      }
    }
    store.del(key);
    item.state = "done";
    item.note = "";
    kickJobs();
  } catch (err) {
    if (item.state === "cancelled" || err.name === "AbortError") return;
    item.state = "failed";
    item.note = err.message;
    if (err.status === 404 || err.status === 410) { store.del(key); item.url = null; }
    showError(`Upload of ${item.name} failed: ${err.message}`);
  } finally {
    item.abort = null;
    renderItem(item);
  }
}

/** Files of a drop, folders walked recursively. Entries must be taken before the first await. */
async function droppedFiles(dt) {
  const fileItems = [...(dt.items ?? [])].filter((i) => i.kind === "file");
  const entries = fileItems.map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const plain = [...dt.files].map((file) => ({ file, path: file.name }));
  if (!entries.length || entries.length !== fileItems.length) return plain;
  const out = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      out.push({ file: await new Promise((res, rej) => entry.file(res, rej)), path: entry.fullPath.replace(/^\//, "") });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) { // readEntries returns the listing in pieces, then []
        const part = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!part.length) break;
        for (const e of part) await walk(e);
      }
    }
  };
  for (const e of entries) await walk(e);
  return out;
}

function wireUploads() {
  const fromInput = (input) => () => {
    addBatch([...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
    input.value = ""; // picking the same files again must fire "change" again
  };
  ui.files.addEventListener("change", fromInput(ui.files));
  ui.folder.addEventListener("change", fromInput(ui.folder));
  // A drop outside the zone must not make the browser open the file.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
  let depth = 0;
  ui.drop.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; ui.drop.classList.add("dragover"); });
  ui.drop.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; ui.drop.classList.remove("dragover"); } });
  ui.drop.addEventListener("dragover", (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = "copy"; });
  ui.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    ui.drop.classList.remove("dragover");
    if (!e.dataTransfer) return;
    droppedFiles(e.dataTransfer).then(addBatch, (err) => showError(`Could not read the dropped files: ${err.message ?? err}`));
  });
  ui.clearUploads.addEventListener("click", () => {
    const finished = (i) => i.state === "done" || i.state === "cancelled";
    for (const el of [...ui.uploads.children]) {
      const items = uploads.filter((i) => i.batch.el === el);
      if (!items.every(finished)) continue;
      el.remove();
      for (const i of items) uploads.splice(uploads.indexOf(i), 1); // let the File objects go
    }
    ui.uploadsHead.hidden = !ui.uploads.children.length;
  });
}

// ---------------------------------------------------------------- jobs

const FINISHED = new Set(["done", "failed"]);
/** What a running job's stage means, as the page says it. */
const STAGES = {
  opening: "reading the header", expanding: "expanding the archive", decoding: "decoding",
  reading_text: "reading text", writing: "writing", rendering: "rendering for the viewer", publishing: "publishing",
};

/** "frame 7 of 24 · reading text" (or "file 2 of 9 · expanding the archive") for a running job. */
function jobStep(j) {
  if (j.status !== "running" || !j.stage) return "";
  const what = STAGES[j.stage] ?? j.stage;
  const unit = j.stage === "expanding" ? "file" : "frame";
  if (j.frame > 0 && j.frames > 0) return `${unit} ${j.frame} of ${j.frames} · ${what}`;
  if (j.frames > 0) return `${j.frames} ${unit}${j.frames === 1 ? "" : "s"} · ${what}`;
  return what;
}
const jobPoll = { timer: null, inFlight: false, extra: 0, prev: null, active: false };

/** Polls now (or right after the poll in flight) and a few more times after that. */
function kickJobs() {
  jobPoll.extra = 3;
  if (!jobPoll.inFlight) pollJobs();
}

async function pollJobs() {
  clearTimeout(jobPoll.timer);
  jobPoll.timer = null;
  jobPoll.inFlight = true;
  let delay = 1000;
  let fatal = false;
  try {
    const jobs = await apiJson("/api/cases/jobs");
    hooks.jobs = jobs;
    renderJobs(jobs);
    // A job that reached done/failed since the last poll (or appeared finished) changed the library.
    const changed = jobPoll.prev && jobs.filter((j) => FINISHED.has(j.status) && jobPoll.prev.get(String(j.id)) !== j.status);
    jobPoll.prev = new Map(jobs.map((j) => [String(j.id), j.status]));
    if (changed?.length) {
      loadStudies();
      if (viewer.study && changed.some((j) => j.study_uid === viewer.study.study_uid)) refreshStudy();
    }
    jobPoll.active = jobs.some((j) => j.status === "queued" || j.status === "running");
    if (jobs.some((j) => j.status === "running")) delay = 500;
  } catch (err) {
    showError(err);
    if (!hooks.jobs) ui.jobs.replaceChildren(h("p", { class: "empty" }, `Cannot load the jobs: ${err.message}`));
    fatal = err.status === 401 || err.status === 403;
    delay = 5000;
  }
  jobPoll.inFlight = false;
  const uploading = uploads.some((i) => i.state === "queued" || i.state === "uploading");
  const extra = jobPoll.extra > 0;
  if (extra) jobPoll.extra--;
  if (!fatal && (jobPoll.active || uploading || extra)) jobPoll.timer = setTimeout(pollJobs, delay);
}

function renderJobs(jobs) {
  const count = (st) => jobs.filter((j) => j.status === st).length;
  ui.jobsSummary.textContent = jobs.length
    ? `${count("running")} running · ${count("queued")} queued · ${count("done")} done · ${count("failed")} failed`
    : "";
  // Show each uploaded file's job state in its row.
  const byId = new Map(jobs.map((j) => [String(j.id), j]));
  for (const item of uploads) {
    if (item.jobId && byId.has(item.jobId)) { item.job = byId.get(item.jobId); renderItem(item); }
  }
  if (!jobs.length) {
    ui.jobs.replaceChildren(h("p", { class: "empty" }, "No jobs yet."));
    return;
  }
  const rows = jobs.map((j) => h("tr", { class: `job job-${j.status}`, dataset: { job: String(j.id), status: j.status } },
    h("td", {}, h("span", { class: "job-status" }, j.status)),
    h("td", {}, j.source),
    h("td", {}, h("progress", { max: 1, value: clamp(Number(j.progress) || 0, 0, 1) }),
      ` ${Math.round(clamp(Number(j.progress) || 0, 0, 1) * 100)}%`,
      h("span", { class: "job-step" }, jobStep(j) ? ` · ${jobStep(j)}` : "")),
    h("td", {}, fmtBytes(j.bytes)),
    h("td", { class: "muted" }, j.batch ? j.batch.slice(0, 6) : "—"),
    h("td", {}, j.study_uid ? h("a", { href: `#study=${enc(j.study_uid)}` }, "open study") : "—"),
    h("td", { class: "muted" }, j.created_at ? new Date(j.created_at * 1000).toLocaleTimeString() : ""),
    h("td", { class: "job-error" }, j.error ?? ""),
  ));
  ui.jobs.replaceChildren(h("table", { class: "jobs-table" },
    h("thead", {}, h("tr", {}, ["Status", "Source", "Progress", "Size", "Batch", "Study", "Created", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)));
}

// ---------------------------------------------------------------- studies

let studiesSeq = 0;
const studySearch = { timer: null };
async function loadStudies() {
  const seq = ++studiesSeq;
  const q = ui.studySearch.value.trim();
  try {
    const studies = await apiJson(q ? `/api/cases/studies?q=${enc(q)}` : "/api/cases/studies");
    if (seq !== studiesSeq) return;
    hooks.studies = studies;
    hooks.query = q;
    renderStudies(studies, q);
  } catch (err) {
    if (seq !== studiesSeq) return;
    showError(err);
    ui.studies.replaceChildren(h("p", { class: "empty" }, `Cannot load the studies: ${err.message}`));
  }
}

function renderStudies(studies, q) {
  const noun = (n) => `${n} ${n === 1 ? "study" : "studies"}`;
  ui.summary.textContent = q ? `${noun(studies.length)} matching` : noun(studies.length);
  if (!studies.length) {
    ui.studies.replaceChildren(h("p", { class: "empty" }, q ? "No study matches this search." : "No studies yet. Upload some above."));
    return;
  }
  // Titles are operator-entered text: h() sets them as text nodes, never as HTML.
  ui.studies.replaceChildren(...studies.map((s) => h("div", { class: "study-card", dataset: { study: s.study_uid } },
    h("a", { class: "study", href: `#study=${enc(s.study_uid)}`, dataset: { study: s.study_uid } },
      h("span", { class: "study-title" }, s.title || s.patient || "ANON"),
      h("span", { class: "study-patient" }, s.patient || "ANON"),
      h("span", { class: "study-date" }, [
        s.study_date ? `study ${fmtDate(s.study_date)}` : null, s.created_at ? `uploaded ${fmtDay(s.created_at)}` : null,
      ].filter(Boolean).join(" · ")),
      h("span", { class: "study-uploader" }, s.uploader ? `by ${s.uploader}` : ""),
      s.description && s.description !== s.title ? h("span", { class: "study-desc" }, s.description) : null,
      h("span", { class: "study-mods" }, (s.modalities ?? []).join(" · ") || "—"),
      h("span", { class: "study-counts" }, `${s.series_count} series · ${s.instance_count} instances · ${s.frame_count ?? s.instance_count} frames`),
    ),
    canManage ? h("button", { type: "button", class: "btn btn-small study-rename", onclick: (e) => renameForm(e.currentTarget, s) }, "Rename") : null,
  )));
}

/** Replaces a study's Rename button with a one-line form; saving sends PATCH {"title": …}. */
function renameForm(button, study) {
  const input = h("input", {
    type: "text", class: "study-title-input", maxlength: 200, value: study.custom_title ? study.title : "",
    placeholder: study.title, "aria-label": "Study title (empty: the default)",
  });
  const form = h("form", { class: "study-rename-form" }, input,
    h("button", { type: "submit", class: "btn btn-small" }, "Save"),
    h("button", { type: "button", class: "btn btn-small", onclick: () => form.replaceWith(button) }, "Cancel"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api(`/api/cases/studies/${enc(study.study_uid)}`, {
        method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ title: input.value.trim() }),
      });
      await loadStudies();
    } catch (err) {
      showError(err);
    }
  });
  button.replaceWith(form);
  input.focus();
}

// ---------------------------------------------------------------- viewer: state, cache, loading

const CACHE_BUDGET = 512 * 1024 * 1024;
const FETCH_PARALLEL = 4;
const PREFETCH_AHEAD = 10;
const viewer = {
  seq: 0, study: null, series: null, stack: [], index: 0,
  current: null,          // { entry, frame } painted last
  wl: null,               // { c, w } in modality units; set from the first raw frame of a series
  zoom: 1, panX: 0, panY: 0, tool: "wl", drag: null, wheelAcc: 0,
  playing: false, raf: 0, lastTick: 0, drawQueued: false,
  metaSop: null, metaTimer: null,
};

/** LRU of decoded frames, bounded by an estimate of their memory. */
const cache = new Map();
let cacheBytes = 0;
const inflight = new Map();

function cacheGet(key) {
  const f = cache.get(key);
  if (f) { cache.delete(key); cache.set(key, f); }
  return f;
}

function cachePut(key, frame) {
  if (cache.has(key)) return;
  cache.set(key, frame);
  cacheBytes += frame.bytes;
  for (const [k, old] of cache) {
    if (cacheBytes <= CACHE_BUDGET || cache.size <= 1) break;
    if (old === viewer.current?.frame) continue; // still on screen
    cache.delete(k);
    cacheBytes -= old.bytes;
    old.bitmap?.close();
  }
}

/** A small fetch queue: the frame asked for goes first, prefetches wait. */
let fetching = 0;
const waiting = [];
function limited(task, urgent) {
  return new Promise((resolve, reject) => {
    const run = () => {
      fetching++;
      task().then(resolve, reject).finally(() => { fetching--; waiting.shift()?.(); });
    };
    if (fetching < FETCH_PARALLEL) run();
    else if (urgent) waiting.unshift(run);
    else waiting.push(run);
  });
}

const decodable = (inst) => inst.raw && !inst.rawBroken && inst.samples === 1 &&
  /^MONOCHROME[12]$/.test(inst.photometric) && (inst.bits_allocated === 8 || inst.bits_allocated === 16);

function loadFrame(entry, urgent = false) {
  const hit = cacheGet(entry.key);
  if (hit) return Promise.resolve(hit);
  let p = inflight.get(entry.key);
  if (!p) {
    p = limited(() => (decodable(entry.inst) ? fetchRaw(entry) : fetchRendered(entry)), urgent)
      .then((f) => { cachePut(entry.key, f); return f; })
      .finally(() => inflight.delete(entry.key));
    inflight.set(entry.key, p);
  }
  return p;
}

async function fetchRaw(entry) {
  try {
    const res = await api(entry.url, { headers: { Accept: "application/octet-stream" } });
    if ((res.headers.get("Content-Type") ?? "").startsWith("multipart/")) throw new Error("got multipart, not bare bytes");
    return decodeRaw(entry.inst, await res.arrayBuffer());
  } catch (err) {
    if (err.status !== undefined && ![406, 415, 501].includes(err.status)) throw err;
    // This instance's raw path does not work (odd size, unexpected type, not acceptable):
    // show the server's picture instead, from now on.
    console.warn("casecast cases: raw frame unusable, showing the rendered one", err);
    entry.inst.rawBroken = true;
    return fetchRendered(entry);
  }
}

async function fetchRendered(entry) {
  const res = await api(`${entry.url}/rendered`, { headers: { Accept: "image/png, image/jpeg, image/*" } });
  const bitmap = await createImageBitmap(await res.blob());
  return { kind: "bitmap", bitmap, rows: bitmap.height, cols: bitmap.width, bytes: bitmap.width * bitmap.height * 4 };
}

/** Native little-endian pixel values → stored values (masked / sign-extended) plus range. */
function decodeRaw(inst, buf) {
  const { rows, cols } = inst;
  const count = rows * cols;
  const ba = inst.bits_allocated;
  if (buf.byteLength < count * (ba / 8)) throw new Error(`frame has ${buf.byteLength} bytes, expected ${count * (ba / 8)}`);
  const bs = inst.bits_stored > 0 && inst.bits_stored <= ba ? inst.bits_stored : ba;
  let words; // the unsigned words as stored
  if (ba === 8) words = new Uint8Array(buf, 0, count);
  else if (LITTLE_ENDIAN) words = new Uint16Array(buf, 0, count);
  else {
    words = new Uint16Array(count);
    const dv = new DataView(buf);
    for (let i = 0; i < count; i++) words[i] = dv.getUint16(2 * i, true);
  }
  let pixels = words;
  if (!inst.signed) {
    if (bs < ba) { const mask = (1 << bs) - 1; for (let i = 0; i < count; i++) words[i] &= mask; }
  } else {
    // Same memory seen as signed; with fewer stored bits, bit bs-1 is the sign bit.
    pixels = ba === 8 ? new Int8Array(words.buffer, words.byteOffset, count) : new Int16Array(words.buffer, words.byteOffset, count);
    if (bs < ba) { const shift = 32 - bs; for (let i = 0; i < count; i++) pixels[i] = (words[i] << shift) >> shift; }
  }
  let rawMin = Infinity, rawMax = -Infinity;
  for (let i = 0; i < count; i++) { const v = pixels[i]; if (v < rawMin) rawMin = v; if (v > rawMax) rawMax = v; }
  if (!count) rawMin = rawMax = 0;
  const slope = Number(inst.rescale_slope) || 1;
  const intercept = Number(inst.rescale_intercept) || 0;
  const a = rawMin * slope + intercept, b = rawMax * slope + intercept;
  return {
    kind: "raw", rows, cols, pixels, rawMin, rawMax, slope, intercept,
    min: Math.min(a, b), max: Math.max(a, b), invert: inst.photometric === "MONOCHROME1", bytes: buf.byteLength,
  };
}

function defaultWl(inst, frame) {
  if (inst.window_width > 0 && Number.isFinite(inst.window_center)) return { c: inst.window_center, w: inst.window_width };
  return { c: (frame.min + frame.max) / 2, w: Math.max(1, frame.max - frame.min) };
}

// ---------------------------------------------------------------- viewer: drawing

const scratch = document.createElement("canvas"); // the windowed 8-bit picture of a raw frame
const scratchCtx = scratch.getContext("2d");
let scratchOf = { frame: null, c: NaN, w: NaN };

/** Stored value → gray RGBA word (DICOM linear VOI function), one entry per value in the frame. */
function buildLut(f, c, w) {
  const lut = new Uint32Array(f.rawMax - f.rawMin + 1);
  w = Math.max(1, w);
  const lo = c - 0.5 - (w - 1) / 2, hi = c - 0.5 + (w - 1) / 2;
  for (let k = 0; k < lut.length; k++) {
    const x = (f.rawMin + k) * f.slope + f.intercept;
    let g = x <= lo ? 0 : x > hi ? 255 : Math.round(((x - (c - 0.5)) / (w - 1) + 0.5) * 255);
    if (f.invert) g = 255 - g;
    lut[k] = LITTLE_ENDIAN ? (0xff000000 | (g << 16) | (g << 8) | g) >>> 0 : ((g << 24) | (g << 16) | (g << 8) | 0xff) >>> 0;
  }
  return lut;
}

function rasterize(f) {
  const { c, w } = viewer.wl;
  if (scratchOf.frame === f && scratchOf.c === c && scratchOf.w === w) return scratch;
  if (scratch.width !== f.cols || scratch.height !== f.rows) { scratch.width = f.cols; scratch.height = f.rows; }
  const img = scratchCtx.createImageData(f.cols, f.rows);
  const out = new Uint32Array(img.data.buffer);
  const lut = buildLut(f, c, w);
  const px = f.pixels, base = f.rawMin, n = f.rows * f.cols;
  for (let i = 0; i < n; i++) out[i] = lut[px[i] - base];
  scratchCtx.putImageData(img, 0, 0);
  scratchOf = { frame: f, c, w };
  return scratch;
}

function fitScale(f) {
  const W = ui.canvas.clientWidth, H = ui.canvas.clientHeight;
  return Math.min(W / f.cols, H / f.rows);
}

/** Paints the current frame with the view transform. Counts the paint in hooks.drawn. */
function draw() {
  viewer.drawQueued = false;
  const cv = ui.canvas;
  const W = cv.clientWidth, H = cv.clientHeight;
  if (!W || !H) return; // not laid out (hidden)
  const dpr = window.devicePixelRatio || 1;
  if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
  }
  const ctx = cv.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, cv.width, cv.height);
  const cur = viewer.current;
  if (!cur) return;
  const f = cur.frame;
  const src = f.kind === "raw" ? rasterize(f) : f.bitmap;
  const s = fitScale(f) * viewer.zoom;
  const x = W / 2 + viewer.panX - (f.cols * s) / 2, y = H / 2 + viewer.panY - (f.rows * s) / 2;
  ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * x, dpr * y);
  ctx.imageSmoothingEnabled = s < 3; // crisp pixels when zoomed far in
  ctx.drawImage(src, 0, 0);
  hooks.drawn++;
}

/** For interactive changes (drag, zoom, resize): at most one paint per animation frame. */
function requestDraw() {
  if (viewer.drawQueued) return;
  viewer.drawQueued = true;
  requestAnimationFrame(draw);
}

function paint(entry, frame) {
  viewer.current = { entry, frame };
  if (frame.kind === "raw" && !viewer.wl) viewer.wl = defaultWl(entry.inst, frame);
  ui.viewportStatus.textContent = "";
  renderWl();
  draw();
}

function renderWl() {
  const f = viewer.current?.frame;
  if (!f) ui.wlLabel.textContent = "";
  else if (f.kind !== "raw") ui.wlLabel.textContent = "W/L: as rendered by the server";
  else ui.wlLabel.textContent = `W ${Math.round(viewer.wl.w)} / L ${Math.round(viewer.wl.c)}`;
}

// ---------------------------------------------------------------- viewer: navigation

function renderFramePosition() {
  const n = viewer.stack.length;
  hooks.frames = n;
  hooks.frame = n ? viewer.index + 1 : 0;
  ui.frameLabel.textContent = `frame ${hooks.frame} / ${n}`;
  ui.slider.max = String(Math.max(1, n));
  ui.slider.value = String(Math.max(1, hooks.frame));
  ui.slider.disabled = n < 2;
  ui.play.disabled = n < 2;
}

function showFrame(i) {
  const n = viewer.stack.length;
  if (!n) return;
  viewer.index = clamp(Math.round(i), 0, n - 1);
  renderFramePosition();
  const entry = viewer.stack[viewer.index];
  scheduleTags(entry);
  const ready = cacheGet(entry.key);
  if (ready) paint(entry, ready);
  else {
    ui.viewportStatus.textContent = "loading…";
    loadFrame(entry, true).then(
      (f) => { if (viewer.stack[viewer.index] === entry) paint(entry, f); },
      (err) => {
        if (viewer.stack[viewer.index] !== entry) return;
        ui.viewportStatus.textContent = "could not load this frame";
        stopCine();
        showError(err);
      });
  }
  if (!viewer.playing) prefetch([viewer.index + 1, viewer.index + 2, viewer.index - 1]);
}

const step = (d) => { if (d) { stopCine(); showFrame(viewer.index + d); } };

function prefetch(indexes) {
  const n = viewer.stack.length;
  for (const i of indexes) {
    if (waiting.length >= 2 * FETCH_PARALLEL) return; // do not pile up work the cine will skip
    const entry = viewer.stack[((i % n) + n) % n];
    if (entry && !cache.has(entry.key) && !inflight.has(entry.key)) loadFrame(entry).catch(() => {}); // shown when needed
  }
}

function cineFps() {
  const ft = Number(viewer.stack[viewer.index]?.inst.frame_time_ms);
  return clamp(ft > 0 ? 1000 / ft : 15, 1, 60);
}

function startCine() {
  if (viewer.stack.length < 2 || viewer.playing) return;
  viewer.playing = true;
  ui.play.textContent = "Pause";
  ui.play.setAttribute("aria-pressed", "true");
  viewer.lastTick = performance.now();
  const tick = (now) => {
    if (!viewer.playing) return;
    const interval = 1000 / cineFps();
    if (now - viewer.lastTick >= interval) {
      const next = (viewer.index + 1) % viewer.stack.length;
      const entry = viewer.stack[next];
      if (cache.has(entry.key)) {
        // Keep the beat; after a stall (buffering, background tab) restart it.
        viewer.lastTick = now - viewer.lastTick > 2 * interval ? now : viewer.lastTick + interval;
        showFrame(next);
      } else {
        loadFrame(entry, true).catch((err) => { if (viewer.playing) { stopCine(); showError(err); } });
      }
      prefetch(Array.from({ length: PREFETCH_AHEAD }, (_, k) => next + 1 + k));
    }
    viewer.raf = requestAnimationFrame(tick);
  };
  viewer.raf = requestAnimationFrame(tick);
}

function stopCine() {
  if (!viewer.playing) return;
  viewer.playing = false;
  cancelAnimationFrame(viewer.raf);
  ui.play.textContent = "Play";
  ui.play.setAttribute("aria-pressed", "false");
}

// ---------------------------------------------------------------- viewer: study and series

const routeStudy = () => new URLSearchParams(location.hash.slice(1)).get("study");

function route() {
  const uid = routeStudy();
  if (uid) openStudy(uid);
  else closeViewer();
}

function closeViewer() {
  stopCine();
  viewer.seq++;
  viewer.study = null;
  document.body.dataset.view = "library";
  ui.viewer.hidden = true;
  ui.library.hidden = false;
}

async function openStudy(uid) {
  stopCine();
  const seq = ++viewer.seq;
  viewer.study = null;
  document.body.dataset.view = "viewer";
  ui.library.hidden = true;
  ui.viewer.hidden = false;
  ui.studyTitle.textContent = "Loading…";
  ui.studyInfo.textContent = "";
  ui.series.replaceChildren();
  selectSeries(null);
  try {
    const study = await apiJson(`/api/cases/studies/${enc(uid)}`);
    if (seq !== viewer.seq) return;
    viewer.study = study;
    renderStudy(study);
    if (study.series?.length) selectSeries(study.series[0]);
    else ui.viewportStatus.textContent = "This study has no series.";
  } catch (err) {
    if (seq !== viewer.seq) return;
    ui.studyTitle.textContent = "Study not available";
    ui.viewportStatus.textContent = err.message;
    showError(err);
  }
}

/** After a job added to the open study: new series list, same place where possible. */
async function refreshStudy() {
  const seq = viewer.seq;
  try {
    const study = await apiJson(`/api/cases/studies/${enc(viewer.study.study_uid)}`);
    if (seq !== viewer.seq) return;
    viewer.study = study;
    renderStudy(study);
    const same = study.series.find((s) => s.series_uid === viewer.series?.series_uid);
    const frames = (s) => s.instances.reduce((n, i) => n + Math.max(1, i.frames | 0), 0);
    if (!viewer.series && study.series.length) selectSeries(study.series[0]);
    else if (same && frames(same) !== viewer.stack.length) selectSeries(same, viewer.index);
    else if (same) viewer.series = same;
  } catch (err) {
    showError(err);
  }
}

function renderStudy(study) {
  ui.studyTitle.textContent = study.title || study.patient || "ANON";
  ui.studyInfo.textContent = [study.patient, study.study_date ? fmtDate(study.study_date) : null,
    study.created_at ? `uploaded ${fmtDay(study.created_at)}` : null, study.uploader ? `by ${study.uploader}` : null,
    study.description !== study.title ? study.description : null, (study.modalities ?? []).join(" · "),
    `${study.series_count} series · ${study.instance_count} instances`].filter(Boolean).join(" · ");
  document.title = `casecast — ${study.title || study.patient || "study"}`;
  const tokenQuery = token ? `?token=${enc(token)}` : "";
  ui.series.replaceChildren(...(study.series ?? []).map((s) => {
    const first = s.instances?.[0];
    const frames = (s.instances ?? []).reduce((n, i) => n + Math.max(1, i.frames | 0), 0);
    const thumb = first && h("img", {
      class: "thumb", alt: "", loading: "lazy", decoding: "async",
      src: `${instanceUrl(study.study_uid, s.series_uid, first.sop_uid)}/frames/1/rendered${tokenQuery}`,
    });
    return h("button", {
      type: "button", class: "series", dataset: { series: s.series_uid },
      "aria-current": s.series_uid === viewer.series?.series_uid ? "true" : null,
      onclick: () => selectSeries(s),
    },
    thumb || h("span", { class: "thumb" }),
    h("span", { class: "series-title" }, `${s.number != null ? `#${s.number} ` : ""}${s.modality || ""}`),
    h("span", { class: "series-desc" }, s.description || "(no description)"),
    h("span", { class: "series-count" }, `${s.instances?.length ?? 0} instances · ${frames} frames`));
  }));
}

const instanceUrl = (st, se, sop) => `/dicomweb/studies/${enc(st)}/series/${enc(se)}/instances/${enc(sop)}`;

/** Makes a series the stack on screen; null empties the view. */
function selectSeries(series, startIndex = 0) {
  stopCine();
  viewer.series = series;
  viewer.stack = [];
  if (series) {
    for (const inst of series.instances ?? []) {
      const st = enc(viewer.study.study_uid), se = enc(series.series_uid), sop = enc(inst.sop_uid);
      const base = instanceUrl(viewer.study.study_uid, series.series_uid, inst.sop_uid);
      const tagsUrl = `/api/cases/studies/${st}/series/${se}/instances/${sop}/tags`;
      for (let n = 1; n <= Math.max(1, inst.frames | 0); n++) {
        viewer.stack.push({ inst, n, key: `${inst.sop_uid}/${n}`, url: `${base}/frames/${n}`, tagsUrl });
      }
    }
  }
  viewer.current = null;
  viewer.wl = null;
  viewer.metaSop = null;
  resetView();
  ui.metaBody.replaceChildren();
  ui.presets.hidden = series?.modality !== "CT";
  for (const b of ui.series.querySelectorAll(".series")) {
    if (b.dataset.series === series?.series_uid) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  viewer.index = 0;
  renderFramePosition();
  renderWl();
  draw();
  ui.viewportStatus.textContent = series && !viewer.stack.length ? "This series has no images." : "";
  if (viewer.stack.length) showFrame(startIndex);
}

function resetView() {
  viewer.zoom = 1;
  viewer.panX = viewer.panY = 0;
}

// ---------------------------------------------------------------- viewer: metadata

const tagsCache = new Map();

/** Loads the tags of the instance on screen, after it has stayed there a moment (cine!). */
function scheduleTags(entry) {
  const sop = entry.inst.sop_uid;
  if (viewer.metaSop === sop) return;
  viewer.metaSop = sop;
  clearTimeout(viewer.metaTimer);
  viewer.metaTimer = setTimeout(() => loadTags(entry).catch(showError), viewer.playing ? 800 : 150);
}

async function loadTags(entry) {
  const sop = entry.inst.sop_uid;
  let tags = tagsCache.get(sop);
  if (!tags) {
    try {
      tags = await apiJson(entry.tagsUrl);
    } catch (err) {
      if (viewer.metaSop === sop) { ui.metaBody.replaceChildren(); showError(err); }
      return;
    }
    if (tagsCache.size > 200) tagsCache.delete(tagsCache.keys().next().value);
    tagsCache.set(sop, tags);
  }
  if (viewer.metaSop === sop) renderTags(tags);
}

function renderTags(tags) {
  ui.metaBody.replaceChildren(...tags.map((t) => h("tr", { dataset: { tag: t.tag } },
    h("td", { class: "mono" }, t.tag), h("td", {}, t.keyword || ""), h("td", { class: "mono" }, t.vr || ""),
    h("td", { class: "meta-value" }, t.value ?? ""))));
  filterTags();
}

function filterTags() {
  const q = ui.metaFilter.value.trim().toLowerCase();
  for (const tr of ui.metaBody.rows) tr.hidden = Boolean(q) && !tr.textContent.toLowerCase().includes(q);
}

// ---------------------------------------------------------------- viewer: input

function setTool(tool) {
  viewer.tool = tool;
  for (const b of document.querySelectorAll(".tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  ui.canvas.dataset.tool = tool;
}

/** Zooms by factor keeping the point (px, py) (CSS px in the canvas) where it is. */
function zoomAt(factor, px, py) {
  const zoom = clamp(viewer.zoom * factor, 0.1, 40);
  const r = zoom / viewer.zoom;
  const cx = ui.canvas.clientWidth / 2, cy = ui.canvas.clientHeight / 2;
  viewer.panX = px - cx - (px - cx - viewer.panX) * r;
  viewer.panY = py - cy - (py - cy - viewer.panY) * r;
  viewer.zoom = zoom;
  requestDraw();
}

function dragWl(dx, dy) {
  const f = viewer.current?.frame;
  if (f?.kind !== "raw" || !viewer.wl) return; // rendered pictures are windowed by the server
  const k = Math.max((f.max - f.min) / 1024, 0.1); // modality units per CSS pixel
  viewer.wl = { c: viewer.wl.c + dy * k, w: Math.max(1, viewer.wl.w + dx * k) };
  renderWl();
  requestDraw();
}

function wireViewer() {
  const cv = ui.canvas;
  cv.addEventListener("contextmenu", (e) => e.preventDefault());
  cv.addEventListener("mousedown", (e) => { if (e.button === 1) e.preventDefault(); }); // no autoscroll
  cv.addEventListener("pointerdown", (e) => {
    const mode = e.button === 2 ? "wl" : e.button === 1 ? "pan" : e.button === 0 ? viewer.tool : null;
    if (!mode) return;
    e.preventDefault();
    cv.focus({ preventScroll: true });
    cv.setPointerCapture?.(e.pointerId);
    const r = cv.getBoundingClientRect();
    viewer.drag = { mode, id: e.pointerId, x: e.clientX, y: e.clientY, ox: e.clientX - r.left, oy: e.clientY - r.top };
  });
  cv.addEventListener("pointermove", (e) => {
    const d = viewer.drag;
    if (!d || e.pointerId !== d.id) return;
    const dx = e.clientX - d.x, dy = e.clientY - d.y;
    d.x = e.clientX;
    d.y = e.clientY;
    if (d.mode === "wl") dragWl(dx, dy);
    else if (d.mode === "zoom") zoomAt(Math.exp(-dy * 0.01), d.ox, d.oy);
    else { viewer.panX += dx; viewer.panY += dy; requestDraw(); }
  });
  const endDrag = (e) => { if (viewer.drag?.id === e.pointerId) viewer.drag = null; };
  cv.addEventListener("pointerup", endDrag);
  cv.addEventListener("pointercancel", endDrag);
  cv.addEventListener("wheel", (e) => {
    e.preventDefault();
    const dy = e.deltaMode === 1 ? e.deltaY * 40 : e.deltaMode === 2 ? e.deltaY * 800 : e.deltaY;
    if (e.ctrlKey || e.metaKey) { // ctrl+wheel, and trackpad pinch, zoom
      const r = cv.getBoundingClientRect();
      zoomAt(Math.exp(-dy * 0.002), e.clientX - r.left, e.clientY - r.top);
      return;
    }
    if (e.deltaMode !== 0) { step(Math.sign(dy)); return; } // line/page mode: one notch, one frame
    viewer.wheelAcc += dy; // pixel mode: trackpads send many small deltas
    if (Math.abs(viewer.wheelAcc) >= 40) { step(Math.sign(viewer.wheelAcc)); viewer.wheelAcc = 0; }
  }, { passive: false });

  document.addEventListener("keydown", (e) => {
    if (ui.viewer.hidden || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest?.("input, textarea, select, [contenteditable]")) return; // the slider has its own keys
    const n = viewer.stack.length;
    const moves = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
    if (e.key in moves) step(moves[e.key]);
    else if (e.key === "Home") step(-viewer.index);
    else if (e.key === "End") step(n - 1 - viewer.index);
    else if (e.key === " " && !e.target.closest?.("button, a")) viewer.playing ? stopCine() : startCine();
    else return;
    e.preventDefault();
  });

  ui.slider.addEventListener("input", () => { stopCine(); showFrame(Number(ui.slider.value) - 1); });
  ui.play.addEventListener("click", () => (viewer.playing ? stopCine() : startCine()));
  for (const b of document.querySelectorAll(".tool")) b.addEventListener("click", () => setTool(b.dataset.tool));
  ui.reset.addEventListener("click", () => {
    resetView();
    const cur = viewer.current;
    viewer.wl = cur?.frame.kind === "raw" ? defaultWl(cur.entry.inst, cur.frame) : null;
    renderWl();
    requestDraw();
  });
  ui.presets.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-w]");
    if (!b || viewer.current?.frame.kind !== "raw") return;
    viewer.wl = { c: Number(b.dataset.c), w: Number(b.dataset.w) };
    renderWl();
    requestDraw();
  });
  ui.metaFilter.addEventListener("input", filterTags);
  new ResizeObserver(() => requestDraw()).observe(ui.viewport);
  setTool("wl");
}

// ---------------------------------------------------------------- start

pruneStore();
wireUploads();
wireViewer();
ui.refreshStudies.addEventListener("click", () => { loadStudies(); kickJobs(); });
ui.studySearch.addEventListener("input", () => {
  clearTimeout(studySearch.timer);
  studySearch.timer = setTimeout(loadStudies, 250);
});
addEventListener("hashchange", route);
loadStudies();
pollJobs();
route();
