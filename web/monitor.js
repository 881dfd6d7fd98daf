// casecast — a receive-only WebRTC session in a room: what the console watches (the
// program monitor, the surgery feed, the commentators), with low delay.
//
// It joins over the signaling WebSocket (/ws) like the commentator page, with
// `receive_only: true`: it publishes nothing, and the room does not count it as a
// compositor. Its first offer carries two inactive m-lines (an offer needs one);
// the server then offers each track, with mid → track info, and it answers. Lost
// signaling or media (3 s) ends the session and a new one starts, with backoff.
//
//   const m = new RoomMonitor({ room, token, name, onTrack(info, track), onGone(info), onState(state, detail), onMessage(m) });
//   m.start(); … m.stop();
//
// `info` is the server's track info: { id, mid, participant_id, name, kind, source }.
// `onMessage` gets the room's other messages (the commentators' chat, raised hands).

const PING_MS = 10_000;
const GRACE_MS = 3_000;
const MAX_BACKOFF_MS = 10_000;
const FATAL = new Set(["unauthorized", "forbidden", "unsupported_version"]);

export class RoomMonitor {
  constructor({ room, token, name = "console", onTrack, onGone, onState, onMessage }) {
    Object.assign(this, { room, token, name, onTrack, onGone, onState, onMessage });
    this.session = null;
    this.attempt = 0;
    this.timer = 0;
    this.stopped = true;
    this.tracks = new Map(); // mid → track info
    this.playing = new Map(); // mid → { info, track }
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.end();
    this.state("stopped");
  }

  state(s, detail = "") {
    this.current = s;
    this.onState?.(s, detail);
  }

  connect() {
    if (this.stopped) return;
    this.state("connecting");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    const s = { ws, pc: null, queue: Promise.resolve(), closed: false, ping: 0, grace: 0 };
    this.session = s;
    ws.onopen = () => {
      this.send(s, { type: "join", v: 1, room: this.room, token: this.token, name: this.name, receive_only: true });
      s.ping = setInterval(() => this.send(s, { type: "ping" }), PING_MS);
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m?.type === "error") {
        if (FATAL.has(m.code)) { this.stopped = true; this.end(); this.state("refused", m.message ?? m.code); }
        else if (m.code === "sdp_rejected") this.retry(m.message);
        return;
      }
      s.queue = s.queue.then(() => (s.closed ? undefined : this.handle(s, m))).catch((err) => this.retry(String(err?.message ?? err)));
    };
    ws.onclose = () => { if (!s.closed) this.retry("signaling closed"); };
  }

  send(s, msg) {
    if (s?.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(msg));
  }

  async handle(s, m) {
    switch (m.type) {
      case "joined": {
        const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
        s.pc = pc;
        pc.ontrack = (ev) => this.route(ev.transceiver?.mid, ev.track);
        pc.onconnectionstatechange = () => this.media(s);
        pc.addTransceiver("audio", { direction: "inactive" });
        pc.addTransceiver("video", { direction: "inactive" });
        await pc.setLocalDescription(await pc.createOffer());
        this.send(s, { type: "offer", sdp: pc.localDescription.sdp });
        return;
      }
      case "answer": return s.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      case "offer": {
        for (const t of m.tracks ?? []) if (t.mid != null) this.tracks.set(t.mid, t);
        await s.pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
        await s.pc.setLocalDescription(await s.pc.createAnswer());
        this.send(s, { type: "answer", sdp: s.pc.localDescription.sdp });
        return this.reconcile(s.pc);
      }
      case "track_removed":
        for (const [mid, info] of this.tracks) if (info.id === m.track_id) { this.gone(mid); this.tracks.delete(mid); }
        return;
      case "participant_left":
        for (const [mid, p] of this.playing) if (p.info.participant_id === m.participant_id) this.gone(mid);
        return;
      default:
        this.onMessage?.(m);
        return;
    }
  }

  route(mid, track) {
    const info = this.tracks.get(mid);
    if (!info) return; // not announced: its info comes with the offer, and reconcile routes it
    this.gone(mid);
    this.playing.set(mid, { info, track });
    this.onTrack?.(info, track);
    track.addEventListener("ended", () => { if (this.playing.get(mid)?.track === track) this.gone(mid); });
  }

  gone(mid) {
    const p = this.playing.get(mid);
    if (!p) return;
    this.playing.delete(mid);
    this.onGone?.(p.info);
  }

  /** After each negotiation: m-lines no longer receiving are gone; reused ones re-routed. */
  reconcile(pc) {
    const live = new Map(pc.getTransceivers()
      .filter((t) => t.mid != null && !t.stopped && ["recvonly", "sendrecv"].includes(t.currentDirection))
      .map((t) => [t.mid, t.receiver.track]));
    for (const mid of [...this.playing.keys()]) if (!live.has(mid)) this.gone(mid);
    for (const [mid, track] of live) {
      const info = this.tracks.get(mid);
      if (info && this.playing.get(mid)?.info.id !== info.id) this.route(mid, track);
    }
  }

  media(s) {
    if (s.closed) return;
    const st = s.pc.connectionState;
    clearTimeout(s.grace);
    if (st === "connected") { this.attempt = 0; this.state("live"); }
    else if (st === "failed") this.retry("media failed");
    else if (st === "disconnected") s.grace = setTimeout(() => this.retry("media lost for 3 s"), GRACE_MS);
  }

  end() {
    const s = this.session;
    if (!s) return;
    this.session = null;
    s.closed = true;
    clearInterval(s.ping);
    clearTimeout(s.grace);
    s.ws.onopen = s.ws.onmessage = s.ws.onclose = null;
    if (s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
    if (s.pc) { s.pc.ontrack = s.pc.onconnectionstatechange = null; s.pc.close(); }
    for (const mid of [...this.playing.keys()]) this.gone(mid);
    this.tracks.clear();
  }

  retry(reason) {
    if (this.stopped) return;
    this.end();
    const wait = Math.min(1000 * 2 ** this.attempt, MAX_BACKOFF_MS);
    this.attempt += 1;
    this.state("retrying", `${reason}; again in ${Math.round(wait / 1000)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  /** Inbound statistics per track: { mid, source, participantId, kind, framesDecoded, packetsReceived }. */
  async stats() {
    const pc = this.session?.pc;
    if (!pc) return [];
    const out = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type !== "inbound-rtp") return;
      const info = this.tracks.get(r.mid);
      out.push({
        mid: r.mid ?? null, kind: r.kind, source: info?.source ?? null, participantId: info?.participant_id ?? null,
        framesDecoded: r.framesDecoded ?? 0, packetsReceived: r.packetsReceived ?? 0,
      });
    });
    return out;
  }
}
