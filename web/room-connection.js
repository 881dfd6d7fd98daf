// casecast — commentator page: the connection. Join over the WebSocket (/ws); one
// RTCPeerConnection (max-bundle, the server's ICE servers); the offer right after
// setLocalDescription (no trickle); the server's offers answered as tracks come and
// go, all messages through one promise chain in arrival order.
//
// Staying joined: media that stops (no bytes for STALL_MS after it flowed) or a
// connection that drops asks for an ICE restart over the same WebSocket; a lost
// WebSocket resumes the same session on a new one within the server's 5 s; only
// when that fails does the page join again, with backoff 1, 2, 4, 8, 10 s.
// unauthorized/forbidden/unsupported_version stop for good.

import { FATAL_CODES, MAX_BACKOFF_MS, PING_MS, RECOVER_MS, RESTART_AFTER_MS, RESTART_AGAIN_MS, RESUME_OPEN_MS, RESUME_WITHIN_MS, STALL_AGAIN_MS, STALL_MS, app, hideBanner, note, roomId, setState, showBanner, token, ui } from "./room-core.js";
import { ensureLocalMedia, localTrack, onHeld, renderControls } from "./room-local.js";
import { addParticipant, onChat, onHand, onTrack, reconcileMedia, removeMedia, removeParticipant, removeTrack, setMuted, syncParticipants } from "./room-people.js";
import { showEvent, showFatal } from "./room-prejoin.js";

// ---------------------------------------------------------------- connection

// The node the room lives on, when this page's server sent the join there
// (`redirect`); a join again after a failure starts from this page's server.
export const wsUrl = () => app.signalUrl ?? `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

export function connect() {
  clearInterval(app.reconnectTimer);
  if (app.left || app.fatal) return;
  setState("connecting");
  app.resume = null;
  app.connects += 1;
  const conn = {
    ws: null, pc: null, videoSender: null, queue: Promise.resolve(), closed: false, opened: false,
    pingTimer: 0, graceTimer: 0, restartTimer: 0, againTimer: 0, resumeTimer: 0, renewTimer: 0, watchTimer: 0,
    troubleSince: 0, resuming: false, forceRestart: false,
  };
  app.conn = conn;
  signal(conn, { type: "join", v: 1, room: roomId, token }, (ev) => {
    if (!conn.opened) unreachable();
    restart(`signaling closed${ev.code ? ` (${ev.code})` : ""}`);
  });
}

/** Opens the WebSocket of `conn`: sends `first` when open, queues what arrives,
 * and calls `lost` if it closes while still ours. */
function signal(conn, first, lost) {
  const ws = new WebSocket(wsUrl());
  conn.ws = ws;
  conn.opened = false;
  ws.onopen = () => {
    note(`signaling open (${first.type})`);
    conn.opened = true;
    reached();
    send(conn, first);
    clearInterval(conn.pingTimer);
    conn.pingTimer = setInterval(() => send(conn, { type: "ping" }), PING_MS);
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return console.warn("casecast: not JSON", ev.data); }
    if (typeof msg?.type !== "string") return console.warn("casecast: not a message", msg);
    // Errors skip the queue: a fatal one must stop reconnects even if the socket
    // closes while the queue is still busy (say, waiting on a permission prompt).
    if (msg.type === "error") return onError(msg);
    conn.queue = conn.queue
      .then(() => (conn.closed ? undefined : handle(conn, msg)))
      .catch((err) => {
        if (conn.closed) return;
        console.error("casecast:", msg.type, err);
        restart(`${msg.type} failed: ${err.message ?? err}`);
      });
  };
  ws.onclose = (ev) => {
    if (conn.closed || conn.ws !== ws) return;
    note(`signaling closed (${ev.code})`);
    // Joined, with a session the server keeps for a moment: come back to it.
    if (app.resume && conn.pc && !conn.resuming) return resumeSession(conn, `signaling closed${ev.code ? ` (${ev.code})` : ""}`);
    lost(ev);
  };
  return ws;
}

// ---------------------------------------------------------------- staying joined
//
// A network change or a dropped Wi-Fi loses the media path, the WebSocket, or both.
// The page keeps its peer connection, its tiles and its place in the room. When the
// media path goes down it does not trust the WebSocket either (after a network
// change it leads nowhere, and TCP takes minutes to say so): it opens a new one,
// resumes the session with the secret from `joined` (the server hands the
// participant over from the old connection), and asks for an ICE restart (the
// server answers with an offer carrying new ICE credentials). Only when the server
// no longer has the session does the page join again, as new.

/** The media path is down: resume on a new WebSocket, then restart ICE. */
function recoverMedia(conn) {
  if (conn.closed || conn.resuming || conn.pc?.connectionState === "connected") return;
  resumeSession(conn, "media interrupted");
}

/** Takes fresh TURN credentials, and plans to renew them before they end: a relayed
 * session resumes and restarts ICE (a moment's interruption at most) two minutes
 * before; a direct one needs none. */
function useIceServers(conn, servers) {
  if (!servers?.length || !conn.pc) return;
  try {
    conn.pc.setConfiguration({ ...conn.pc.getConfiguration(), iceServers: servers });
  } catch (err) {
    console.warn("casecast: TURN servers not taken", err);
  }
  const expires = Number(String(servers[0].username).split(":")[0]) * 1000;
  clearTimeout(conn.renewTimer);
  if (!expires) return;
  conn.renewTimer = setTimeout(async () => {
    if (conn.closed) return;
    const path = (await stats()).path;
    if (path?.type !== "relay") return;
    conn.forceRestart = true;
    resumeSession(conn, "TURN credentials about to expire");
  }, Math.max(10_000, expires - Date.now() - 120_000));
}

/** Watches what arrives on the path in use (the selected candidate pair). When media
 * that was flowing stops, its path is dead even if the browser still says
 * "connected": after a move to another network, Chromium may take many seconds to
 * notice that the address it used is gone. Then the page recovers at once (resume
 * and ICE restart). A quiet room (nothing flowing) never counts as a stall. Bytes on
 * other pairs do not count: after a move Chromium checks new pairs from the new
 * address, and their answers would hide the dead one in use. */
function watchMedia(conn) {
  clearInterval(conn.watchTimer);
  let last = -1;
  let since = Date.now();
  let flowing = 0; // ticks in a row with media arriving (more than keepalives)
  let stalled = false;
  let pair = "";
  conn.watchTimer = setInterval(async () => {
    if (conn.closed || conn.resuming || !conn.pc) {
      since = Date.now(); // a gap while resuming is the resume's, not the path's
      return;
    }
    let bytes = 0;
    let pairs = "";
    try {
      const report = await conn.pc.getStats();
      report.forEach((r) => {
        if (r.type !== "transport") return;
        bytes += report.get(r.selectedCandidatePairId)?.bytesReceived ?? r.bytesReceived ?? 0;
        pairs += r.selectedCandidatePairId ?? "";
      });
    } catch { return; }
    // The trail says when the path changed and when media came back after a stall.
    if (pairs !== pair && pair) note("path changed");
    pair = pairs;
    const now = Date.now();
    if (bytes !== last) {
      // 1 kB in a quarter second is media (audio alone is about that); STUN and
      // RTCP keepalives are a few hundred bytes a second.
      flowing = bytes - last >= 1000 && last >= 0 ? flowing + 1 : 0;
      if (flowing && stalled) {
        stalled = false;
        note("media back");
      }
      last = bytes;
      since = now;
      return;
    }
    // Stalled: media that flowed stops; or, after a stall, the path chosen since
    // carries nothing at all (not even keepalives) for a while. The browser may have
    // picked a pair that died with the network it left.
    const gap = now - since;
    const dead = (flowing >= 1 && gap >= STALL_MS) || (stalled && gap >= STALL_AGAIN_MS);
    if (dead && conn.pc.connectionState === "connected") {
      flowing = 0;
      stalled = true;
      since = now;
      note("media stalled");
      conn.forceRestart = true;
      resumeSession(conn, "media stalled");
    } else if (now - since >= STALL_MS) {
      flowing = 0;
    }
  }, 250);
}

/** Asks for an ICE restart, and again while the media stays down. */
function restartIce(conn, evenIfConnected = false) {
  if (conn.closed || (conn.pc?.connectionState === "connected" && !evenIfConnected)) return;
  note("ICE restart asked");
  send(conn, { type: "ice_restart" });
  clearTimeout(conn.againTimer);
  conn.againTimer = setTimeout(() => recoverMedia(conn), RESTART_AGAIN_MS);
}

/** Opens a new WebSocket and takes the session back with the resume secret. */
function resumeSession(conn, reason) {
  if (conn.closed) return;
  if (!app.resume) return restart(reason);
  note(`resuming: ${reason}`);
  setState("interrupted", "Reconnecting…");
  const old = conn.ws;
  old.onopen = old.onmessage = old.onclose = null;
  if (old.readyState <= WebSocket.OPEN) old.close(4000, "resuming");
  if (!conn.resuming) {
    conn.resuming = true;
    clearTimeout(conn.resumeTimer);
    conn.resumeTimer = setTimeout(() => { if (conn.resuming) restart(`could not resume (${reason})`); }, RESUME_WITHIN_MS);
  }
  const ws = signal(conn, { type: "resume", v: 1, room: roomId, token, resume: app.resume }, () => {
    // Not reached (still no network): try again shortly, until the resume window ends.
    if (!conn.opened) unreachable();
    setTimeout(() => { if (conn.resuming && !conn.closed && conn.ws === ws) resumeSession(conn, reason); }, 500);
  });
  // A connection attempt made while the network was away can hang for as long as
  // TCP keeps retrying: one that is not open soon is dropped for a fresh one.
  setTimeout(() => {
    if (conn.resuming && !conn.closed && conn.ws === ws && ws.readyState === WebSocket.CONNECTING) resumeSession(conn, reason);
  }, RESUME_OPEN_MS);
}

function onResumed(conn, m) {
  note("resumed");
  conn.resuming = false;
  clearTimeout(conn.resumeTimer);
  reached();
  useIceServers(conn, m.ice_servers);
  // What was said while away did not arrive: say it again.
  const audio = localTrack("audio");
  const video = localTrack("video");
  if (audio && !audio.enabled) send(conn, { type: "mute", kind: "audio", muted: true });
  if (video && !video.enabled) send(conn, { type: "mute", kind: "video", muted: true });
  if (app.myHand && app.role === "commentator") send(conn, { type: "raise_hand", raised: true });
  const up = conn.pc.connectionState === "connected";
  if (up) setState("live", "Connected");
  if (!up || conn.forceRestart) restartIce(conn, conn.forceRestart);
  conn.forceRestart = false;
}

export function send(conn, msg) {
  if (conn?.ws.readyState === WebSocket.OPEN) {
    conn.ws.send(JSON.stringify(msg));
    return true;
  }
  return false;
}

/** Closes the current connection without touching local media. */
/** The room lives on another node: join there at once (a few hops at most). */
function onRedirect(msg) {
  app.redirects = (app.redirects ?? 0) + 1;
  teardown();
  if (app.redirects > 3 || !/^wss?:\/\//.test(String(msg.url))) {
    app.signalUrl = null;
    return retryIn(connect, "redirected too often");
  }
  note(`the room is on another node: ${msg.url}`);
  app.signalUrl = msg.url;
  connect();
}

export function teardown() {
  const c = app.conn;
  if (!c) return;
  app.conn = null;
  c.closed = true;
  clearInterval(c.pingTimer);
  for (const t of [c.graceTimer, c.restartTimer, c.againTimer, c.resumeTimer, c.renewTimer]) clearTimeout(t);
  clearInterval(c.watchTimer);
  c.ws.onopen = c.ws.onmessage = c.ws.onclose = null;
  if (c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000);
  if (c.pc) {
    c.pc.ontrack = c.pc.onconnectionstatechange = null;
    c.pc.close();
  }
  for (const mid of [...app.media.keys()]) removeMedia(mid);
  app.tracks.clear();
  app.serverMedia = null;
}

/** Runs `again` after the backoff, counting down in the status. */
export function retryIn(again, reason) {
  console.info("casecast: retrying:", reason);
  let remaining = Math.min(1000 * 2 ** app.attempt, MAX_BACKOFF_MS) / 1000;
  app.attempt += 1;
  const tick = () => {
    setState("reconnecting", app.unreachable ? "Not connected" : "Reconnecting…");
    ui.outageDetail.textContent = `Next try in ${remaining} s.`;
  };
  tick();
  clearInterval(app.reconnectTimer);
  app.reconnectTimer = setInterval(() => {
    remaining -= 1;
    if (remaining <= 0) { clearInterval(app.reconnectTimer); again(); } else tick();
  }, 1000);
  retryIn.now = () => { clearInterval(app.reconnectTimer); again(); };
}

function restart(reason) {
  teardown();
  // The room's node may be gone: this page's server places the room again.
  app.signalUrl = null;
  if (app.left || app.fatal) return; // onError already said why
  retryIn(connect, reason);
}

/** A connection attempt never reached the server: say so, prominently. */
export function unreachable() {
  app.unreachable += 1;
  ui.outage.hidden = false;
  document.body.dataset.outage = "true";
}

export function reached() {
  app.unreachable = 0;
  hideOutage();
}

export function hideOutage() {
  ui.outage.hidden = true;
  document.body.dataset.outage = "false";
}

async function handle(conn, msg) {
  switch (msg.type) {
    case "joined": app.redirects = 0; return onJoined(conn, msg);
    case "redirect": return onRedirect(msg);
    case "resumed": return onResumed(conn, msg);
    case "answer":
      await conn.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      return applySenderLimits(conn);
    case "offer": return onServerOffer(conn, msg);
    case "participant_joined": return addParticipant(msg.participant);
    case "participant_left": return removeParticipant(msg.participant_id);
    case "track_added": return console.info("casecast: track added", msg.track);
    case "track_removed": return removeTrack(msg.track_id);
    case "muted": return setMuted(msg.participant_id, msg.kind, msg.muted);
    case "muted_by_operator": return onHeld(msg.kind, msg.muted);
    case "hand": return onHand(msg);
    case "chat": return onChat(msg);
    case "connection": app.serverMedia = msg.state; return undefined;
    case "pong": return undefined;
    default: return console.debug("casecast: unknown message", msg);
  }
}

async function onJoined(conn, m) {
  // A new session: nothing of ours is held by an operator, and no hand is up yet.
  Object.assign(app, { participantId: m.participant_id, policy: m.policy, role: m.role, held: { audio: false, video: false }, resume: m.resume ?? null });
  app.ownIds.add(m.participant_id);
  app.hands.clear();
  showEvent(m.event ?? null);
  ui.selfName.textContent = m.name;
  ui.selfRole.textContent = m.role === "commentator" ? "" : m.role;
  syncParticipants(m.participants ?? []);
  if (!FATAL_CODES.has(ui.banner.dataset.code)) hideBanner();

  await ensureLocalMedia(m.policy);
  if (conn.closed) return;

  // TURN servers (with credentials minted for this session) for networks that let
  // neither UDP nor direct TCP through: the browser falls back to them by itself.
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: m.ice_servers ?? [] });
  conn.pc = pc;
  useIceServers(conn, m.ice_servers);
  pc.ontrack = onTrack;
  pc.onconnectionstatechange = () => onPcState(conn);
  pc.onicegatheringstatechange = () => note(`ICE gathering ${pc.iceGatheringState}`);
  pc.oniceconnectionstatechange = () => note(`ICE ${pc.iceConnectionState}`);

  const stream = app.localStream;
  const audio = m.policy.publish ? localTrack("audio") : undefined;
  const video = m.policy.publish && m.policy.video ? localTrack("video") : undefined;
  for (const [kind, track] of [["audio", audio], ["video", video]]) {
    const tr = pc.addTransceiver(track ?? kind, {
      direction: track ? "sendonly" : "inactive",
      streams: track ? [stream] : [],
      // The feed from a browser goes as three layers; each subscriber is given
      // the one its link holds.
      ...(kind === "video" && track && m.policy.simulcast && { sendEncodings: SIMULCAST.map((e) => ({ ...e })) }),
    });
    if (kind === "video") conn.videoSender = tr.sender;
  }
  await pc.setLocalDescription(await pc.createOffer());
  send(conn, { type: "offer", sdp: pc.localDescription.sdp });

  // Tracks muted and a hand raised before a rejoin stay so: tell the room again.
  if (audio && !audio.enabled) send(conn, { type: "mute", kind: "audio", muted: true });
  if (video && !video.enabled) send(conn, { type: "mute", kind: "video", muted: true });
  if (app.myHand && m.role === "commentator") send(conn, { type: "raise_hand", raised: true });
  renderControls();
  setState("connecting", "Connecting…");
}

async function onServerOffer(conn, m) {
  const pc = conn.pc;
  if (!pc) throw new Error("server offer before join completed");
  note("server offer");
  for (const t of m.tracks ?? []) if (t.mid != null) app.tracks.set(t.mid, t);
  await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  send(conn, { type: "answer", sdp: pc.localDescription.sdp });
  reconcileMedia(pc);
}

/** Simulcast layers (RFC 8853 rids) for the feed from a browser, lowest first: 720p
 * at up to 2.5 Mbit/s on top (a detailed picture would otherwise take what the
 * policy's ceiling allows, far more than a commentator's link holds), then half and
 * a quarter of its size. */
const SIMULCAST = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 200_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 700_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
];

/** Sets the policy's caps on the video sender (after negotiation, when encodings exist). */
async function applySenderLimits(conn) {
  const sender = conn.videoSender;
  const p = app.policy;
  if (!sender?.track || !p) return;
  try {
    const params = sender.getParameters();
    if (!params.encodings?.length) params.encodings = [{}];
    for (const enc of params.encodings) {
      if (p.max_fps > 0) enc.maxFramerate = p.max_fps;
    }
    // The best layer (the only one without simulcast) is held to the ceiling.
    const top = params.encodings[params.encodings.length - 1];
    if (p.max_video_bitrate > 0) top.maxBitrate = Math.min(top.maxBitrate ?? Infinity, p.max_video_bitrate);
    if (params.encodings.length === 1) top.scaleResolutionDownBy = 1;
    await sender.setParameters(params);
  } catch (err) {
    console.warn("casecast: could not cap the video sender", err);
  }
}

function onPcState(conn) {
  if (conn.closed) return;
  const s = conn.pc.connectionState;
  note(`media ${s}`);
  clearTimeout(conn.restartTimer);
  if (s === "connected") {
    app.attempt = 0;
    conn.troubleSince = 0;
    clearTimeout(conn.graceTimer);
    clearTimeout(conn.againTimer);
    if (!conn.watchTimer) watchMedia(conn);
    if (!conn.resuming) setState("live", "Connected");
  } else if (s === "failed" || s === "disconnected") {
    setState("interrupted", "Reconnecting…");
    if (!conn.troubleSince) {
      conn.troubleSince = Date.now();
      conn.graceTimer = setTimeout(() => restart(`media not back within ${RECOVER_MS / 1000} s`), RECOVER_MS);
    }
    conn.restartTimer = setTimeout(() => recoverMedia(conn), s === "failed" ? 0 : RESTART_AFTER_MS);
  }
}

function onError(m) {
  if (FATAL_CODES.has(m.code)) return showFatal(m.message || m.code);
  // Back after the server had ended the session (a restart, a long outage): join again.
  if (m.code === "session_gone") return restart("the session had ended while away");
  showBanner(m.message || m.code, { code: m.code });
  // A refused description leaves this session unusable: start a fresh one.
  if (m.code === "sdp_rejected") restart(`the server refused a description: ${m.message}`);
}


// ---------------------------------------------------------------- test hooks

/** Receive statistics, with each inbound-rtp report attributed through its mid. */
export async function stats() {
  const result = {
    feedFramesDecoded: 0, feedFrameHeight: null, feedFreezeCount: 0, feedFreezesSeconds: 0,
    programFramesDecoded: 0, audioPacketsReceivedFromCommentators: 0, audioPacketsReceived: 0, inbound: [],
  };
  const pc = app.conn?.pc;
  if (!pc) return result;
  // Fallback for browsers whose inbound-rtp reports lack `mid`: receiver track id → mid.
  const midByTrack = new Map(pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
  const report = await pc.getStats();
  report.forEach((r) => {
    if (r.type !== "inbound-rtp") return;
    const mid = r.mid ?? midByTrack.get(r.trackIdentifier) ?? null;
    const info = mid != null ? app.tracks.get(mid) : undefined;
    const kind = r.kind ?? r.mediaType;
    result.inbound.push({
      mid, kind, ssrc: r.ssrc,
      source: info?.source ?? null, participantId: info?.participant_id ?? null, name: info?.name ?? null,
      packetsReceived: r.packetsReceived ?? 0, packetsLost: r.packetsLost ?? 0,
      bytesReceived: r.bytesReceived ?? 0, framesDecoded: r.framesDecoded ?? 0,
      framesPerSecond: r.framesPerSecond ?? null, jitter: r.jitter ?? null,
      frameHeight: r.frameHeight ?? null, freezeCount: r.freezeCount ?? 0, totalFreezesDuration: r.totalFreezesDuration ?? 0,
    });
    if (kind === "video" && info?.source === "feed") {
      result.feedFramesDecoded += r.framesDecoded ?? 0;
      result.feedFrameHeight = r.frameHeight ?? result.feedFrameHeight;
      result.feedFreezeCount += r.freezeCount ?? 0;
      result.feedFreezesSeconds += r.totalFreezesDuration ?? 0;
    }
    if (kind === "audio") result.audioPacketsReceived += r.packetsReceived ?? 0;
    if (kind === "video" && info?.source === "program") result.programFramesDecoded += r.framesDecoded ?? 0;
    if (kind === "audio" && info?.source === "commentator") result.audioPacketsReceivedFromCommentators += r.packetsReceived ?? 0;
  });
  result.path = mediaPath(report);
  return result;
}

/** How the media travels, from the selected candidate pair: { protocol: "udp" |
 * "tcp", type: "host" | "srflx" | "prflx" | "relay", relayProtocol } (null before
 * ICE has chosen). The same values chrome://webrtc-internals shows. */
function mediaPath(report) {
  let pairId = null;
  report.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
  const pair = pairId && report.get(pairId);
  const local = pair && report.get(pair.localCandidateId);
  if (!local) return null;
  return { protocol: local.protocol, type: local.candidateType, relayProtocol: local.relayProtocol ?? null };
}
