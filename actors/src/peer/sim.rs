//! Peer cores over a simulated network, in virtual time.
//!
//! Each server-side [`PeerCore`] faces a client that is a real WebRTC stack (a
//! str0m `Rtc` with full ICE, as a browser's would be). Between them runs a network
//! of the test's making: seeded loss, a base delay and random jitter per packet
//! (which reorders packets), and addresses that can go dead. Time is virtual: the
//! loop jumps to the next packet arrival or timeout, so seconds of a session take
//! milliseconds. The server's own [`Router`] passes published tracks' frames to
//! their subscribers and throttles keyframe requests, as in a room.
//!
//! What the tests assert is what a viewer would see: frames arriving whole, the
//! first picture soon after connecting, a player's picture without long freezes,
//! and the picture coming back after the client's network changes.
//!
//! The network's fate for each packet (lost or not, its delay) is a function of
//! the seed and of what the packet is (its flow, its kind, its place in its RTP
//! stream), not of the order the stacks send in: the stacks' own randomness (keys,
//! stream numbers) leaves a run's media as the seed made it. `SIM_TRACE=1` prints
//! keyframe requests and frames that took over 300 ms, with the publisher leg's
//! share.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};

use super::*;
use crate::Published;
use crate::router::{DEFAULT_KEYFRAME_INTERVAL, FrameInfo, KeyframeAsk, Layer, Router};

/// The network between the clients and the server.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Fraction of packets lost, each way.
    loss: f64,
    /// Least one-way delay.
    delay: Duration,
    /// Most extra delay, uniform per packet.
    jitter: Duration,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

struct Net {
    seed: u64,
    link: Link,
    /// Per flow and kind of packet, how many were sent; per RTP stream, its first
    /// sequence number.
    counters: HashMap<(SocketAddr, SocketAddr, u8), u64>,
    first_seq: HashMap<(SocketAddr, u32), u16>,
    resends: HashMap<(SocketAddr, u32, u16), u32>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Addresses whose packets go nowhere (a dead Wi-Fi).
    dead: HashSet<IpAddr>,
    sent: u64,
    lost: u64,
}

impl Net {
    /// What the network knows a packet by, the same from run to run: an RTP packet
    /// by its flow, stream and place in the stream (streams' numbers are random,
    /// their first sequence number too), anything else by its flow, its kind and
    /// how many of that kind went before. The stacks' own randomness (keys,
    /// RTCP timing) then leaves the fate of media packets as the seed made it.
    fn identity(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        (self.seed, from, to).hash(&mut h);
        if crate::udp::is_rtp(data) {
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let seq = u16::from_be_bytes([data[2], data[3]]);
            let first = *self.first_seq.entry((to, ssrc)).or_insert(seq);
            // Streams in the order they started, on this flow.
            let stream = self.first_seq.keys().filter(|(t, _)| *t == to).count();
            // A packet sent again as it was (a resend without RTX) is another
            // packet to the network: it may get through where the first did not.
            let again = self.resends.entry((to, ssrc, seq)).or_default();
            *again += 1;
            (data[1] & 0x7f, seq.wrapping_sub(first), stream, *again).hash(&mut h);
        } else {
            let kind = data.first().copied().unwrap_or(0);
            let n = self.counters.entry((from, to, kind)).or_default();
            *n += 1;
            (kind, *n).hash(&mut h);
        }
        h.finish()
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        let id = self.identity(from, to, &data);
        let mut rng = StdRng::seed_from_u64(id);
        let lost = self.dead.contains(&from.ip()) || self.dead.contains(&to.ip()) || rng.random_bool(self.link.loss);
        if lost {
            self.lost += 1;
            return;
        }
        let at = now + self.link.delay + self.link.jitter.mul_f64(rng.random::<f64>());
        self.seq += 1;
        self.queue.push(Reverse(InFlight { at, seq: self.seq, from, to, data }));
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.next_at()? <= now { self.queue.pop().map(|Reverse(p)| p) } else { None }
    }
}

/// A frame as the client received it.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    number: u32,
    keyframe: bool,
    /// Every byte as the publisher wrote it.
    whole: bool,
}

/// A browser-like client: full ICE, the offerer.
struct Client {
    rtc: Rtc,
    /// Its address now (it changes when the client moves).
    addr: SocketAddr,
    timeout: Instant,
    connected: bool,
    /// Asked for a keyframe since the last one it sent.
    keyframe_wanted: bool,
    keyframe_requests: u32,
    /// Frames as they came.
    received: Vec<Received>,
    /// Its video m-line, once media came.
    video_mid: Option<Mid>,
    /// Its player.
    player: Player,
}

/// A browser's player, as far as the tests need one: a jitter buffer that plays
/// each frame [`PLAYOUT_DELAY`] after it was sent, a decoder that starts at a
/// keyframe and then needs every frame, and a keyframe request when a frame is
/// missing at its time (the picture freezes until a keyframe comes).
#[derive(Default)]
struct Player {
    /// The next frame to play.
    next: Option<u32>,
    /// The decoder follows the frames (it had a keyframe and no frame missed since).
    decoding: bool,
    /// Frames shown, and when.
    shown: Vec<(Instant, u32)>,
    /// When it last asked for a keyframe.
    asked: Option<Instant>,
}

/// How long after a frame was sent the player shows it: what a browser's jitter
/// buffer settles on for a link with 100 ms of jitter and resends to wait for.
const PLAYOUT_DELAY: Duration = Duration::from_millis(600);

impl Client {
    fn new(addr: SocketAddr, now: Instant) -> Client {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a candidate"));
        Client { rtc, addr, timeout: now, connected: false, keyframe_wanted: true, keyframe_requests: 0, received: Vec::new(), video_mid: None, player: Player::default() }
    }

    /// The payload type VP8 was given on `mid`.
    fn vp8(&self, mid: Mid) -> Option<Pt> {
        let remote = self.rtc.media(mid)?.remote_pts();
        self.rtc.codec_config().params().iter().find(|p| p.spec().codec == Codec::Vp8 && remote.contains(&p.pt())).map(|p| p.pt())
    }
}

/// A server-side peer and what it said.
struct Server {
    core: PeerCore,
    addr: SocketAddr,
    timeout: Instant,
    signals: Vec<(Instant, ParticipantEvent)>,
    routes: Vec<RouteChange>,
    closed: Option<String>,
}

/// A VP8 frame numbered `n`, `len` bytes long: a keyframe (with a 640×360 picture
/// header) or not, the rest a pattern of its number so the receiver can tell it
/// arrived whole.
fn vp8_frame(n: u32, keyframe: bool, len: usize) -> Vec<u8> {
    let mut f = if keyframe {
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]
    } else {
        vec![0x11, 0x02, 0x00]
    };
    f.extend_from_slice(&n.to_be_bytes());
    let fill = f.len()..len;
    f.extend(fill.map(|i| (n as usize).wrapping_mul(31).wrapping_add(i) as u8));
    f
}

/// The number of a frame made by [`vp8_frame`], if every byte is as written.
fn read_frame(data: &[u8]) -> (Option<u32>, bool) {
    let keyframe = data.first().is_some_and(|b| b & 1 == 0);
    let at = if keyframe { 10 } else { 3 };
    let Some(n) = data.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap())) else {
        return (None, false);
    };
    let whole = data.len() > at + 4 && vp8_frame(n, keyframe, data.len()) == data;
    (Some(n), whole)
}

const SERVER_IP: [u8; 4] = [10, 0, 0, 1];

/// One publisher (client 0, server 0) and subscribers, in one room.
struct Sim {
    start: Instant,
    now: Instant,
    net: Net,
    clients: Vec<Client>,
    servers: Vec<Server>,
    /// Published tracks.
    tracks: Vec<TrackDesc>,
    /// Who receives each, and who publishes it, by server index.
    router: Router<usize, usize>,
    keyframe_timers: Vec<(Instant, TrackId, Layer)>,
    /// Client 0's video m-line, once it sends.
    publishing: Option<Mid>,
    frame: u32,
    /// When each frame was sent, by number.
    sent_at: Vec<Instant>,
    /// The frames the publisher's peer passed on, in order: number, and when.
    forwarded: Vec<(u32, Instant)>,
    next_frame: Instant,
    fps: u32,
    /// The room refuses video (an audio-only room for commentators).
    refuse_video: bool,
}

impl Sim {
    fn new(seed: u64, link: Link) -> Sim {
        let start = Instant::now();
        Sim {
            start,
            now: start,
            net: Net { seed, link, counters: HashMap::new(), first_seq: HashMap::new(), resends: HashMap::new(), queue: BinaryHeap::new(), seq: 0, dead: HashSet::new(), sent: 0, lost: 0 },
            clients: Vec::new(),
            servers: Vec::new(),
            tracks: Vec::new(),
            router: Router::new(DEFAULT_KEYFRAME_INTERVAL),
            keyframe_timers: Vec::new(),
            publishing: None,
            frame: 0,
            sent_at: Vec::new(),
            forwarded: Vec::new(),
            next_frame: start,
            fps: 30,
            refuse_video: false,
        }
    }

    /// A client and its server peer; returns their index.
    fn add_peer(&mut self, role: &'static str, renegotiate: bool) -> usize {
        let i = self.servers.len();
        let server_addr = SocketAddr::from((SERVER_IP, 5000 + i as u16));
        let client_addr = SocketAddr::from(([10, 1, 0, 2 + i as u8], 6000));
        let publish = (role == "encoder").then_some(TrackSource::Feed);
        let subscribe = if publish.is_some() { crate::Subscribe::None } else { crate::Subscribe::FeedOnly };
        let opts = ParticipantOptions {
            name: format!("peer {i}"),
            role,
            publish,
            subscribe,
            renegotiate,
            identity: format!("{role}:{i}"),
            credential: format!("c{i}"),
        };
        let setup = PeerSetup {
            creds: IceCreds::new(),
            candidates: vec![Candidate::host(server_addr, "udp").expect("a candidate")],
            dtls_cert: certificate(),
            connect_deadline: Duration::from_secs(10),
            metrics: Metrics::new(),
        };
        let core = PeerCore::new(ParticipantId::next(), opts, setup, self.now);
        self.servers.push(Server { core, addr: server_addr, timeout: self.now, signals: Vec::new(), routes: Vec::new(), closed: None });
        self.clients.push(Client::new(client_addr, self.now));
        i
    }

    /// Client `i` offers (one video m-line, `dir` as the client sees it) and takes
    /// the server's answer; returns the m-line.
    fn offer(&mut self, i: usize, dir: Direction) -> Mid {
        self.offer_as(i, dir, |sdp| sdp)
    }

    /// The same, with the offer's text changed by `munge` on its way.
    fn offer_as(&mut self, i: usize, dir: Direction, munge: impl Fn(String) -> String) -> Mid {
        let mut api = self.clients[i].rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = self.servers[i].core.accept_offer(self.now, &munge(offer.to_sdp_string())).expect("the server answers");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("an answer");
        self.clients[i].rtc.sdp_api().accept_answer(pending, answer).expect("the client takes the answer");
        mid
    }

    /// Carries out every output due now, until all is quiet.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for c in 0..self.clients.len() {
                busy |= self.drain_client(c);
            }
            for s in 0..self.servers.len() {
                busy |= self.drain_server(s);
            }
            if !busy {
                return;
            }
        }
        panic!("the peers never went quiet");
    }

    fn drain_client(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut busy = false;
        loop {
            let c = &mut self.clients[i];
            match c.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.net.send(now, t.source, t.destination, t.contents.to_vec()),
                Ok(Output::Timeout(at)) => {
                    c.timeout = at;
                    return busy;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => c.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => c.connected = false,
                    Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed) => {
                        c.connected = true
                    }
                    Event::KeyframeRequest(_) => {
                        c.keyframe_wanted = true;
                        c.keyframe_requests += 1;
                    }
                    Event::MediaData(d) => {
                        let (n, whole) = read_frame(&d.data);
                        let Some(number) = n else { continue };
                        c.received.push(Received { at: now, number, keyframe: d.is_keyframe(), whole });
                        c.video_mid = Some(d.mid);
                    }
                    _ => {}
                },
                Err(e) => panic!("client {i}: {e}"),
            }
            busy = true;
        }
    }

    fn drain_server(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut busy = false;
        loop {
            let out = self.servers[i].core.poll_output(now);
            match out {
                PeerOutput::Timeout(at) => {
                    self.servers[i].timeout = at;
                    return busy;
                }
                PeerOutput::Transmit(t) => self.net.send(now, t.source, t.destination, t.contents.to_vec()),
                PeerOutput::Signal(e) => self.signal(i, e),
                PeerOutput::Room(r) => self.room(i, r),
                PeerOutput::Frame(track, data) => {
                    if let (Some(n), _) = read_frame(&data.data) {
                        if data.is_keyframe() {
                            trace(self, &format!("keyframe {n} passed on"));
                        }
                        self.forwarded.push((n, now));
                    }
                    let frame = FrameInfo {
                        layer: data.rid,
                        time: data.time,
                        keyframe: data.is_keyframe(),
                        bytes: data.data.len(),
                        size: None,
                    };
                    let mut subs = Vec::new();
                    if self.router.route(track, frame, now, |s, time| subs.push((*s, time))) {
                        self.want_keyframe(track, data.rid);
                    }
                    for (s, time) in subs {
                        self.servers[s].core.write(now, track, &data, time);
                    }
                }
                PeerOutput::WantKeyframe(t) => {
                    trace(self, &format!("server {i} wants a keyframe"));
                    let id = self.servers[i].core.id();
                    for layer in self.router.keyframe_layers(t, id, now) {
                        self.want_keyframe(t, layer);
                    }
                }
                PeerOutput::WantLayerKeyframe(t, layer) => self.want_keyframe(t, layer),
                PeerOutput::Allocate(tracks) => {
                    let video: Vec<VideoIn> = tracks
                        .into_iter()
                        .map(|(track, source)| VideoIn { track, source, layers: self.router.layers(track, now) })
                        .collect();
                    let id = self.servers[i].core.id();
                    trace(self, &format!("server {i} estimate {:?}", self.servers[i].core.allocator.as_ref().and_then(|a| a.estimate())));
                    for (track, target) in self.servers[i].core.allocate(now, &video) {
                        trace(self, &format!("server {i} allocates {target:?}"));
                        if let Some(layer) = self.router.set_target(track, id, target, now) {
                            self.want_keyframe(track, layer);
                        }
                    }
                }
                PeerOutput::Route(r) => self.servers[i].routes.push(r),
                PeerOutput::Closed(reason) => {
                    self.servers[i].closed = Some(reason);
                    return busy;
                }
            }
            busy = true;
        }
    }

    /// What the server tells the client's signaling: a server offer is answered at
    /// once (signaling is reliable; the network under test is the media's).
    fn signal(&mut self, i: usize, e: ParticipantEvent) {
        if let ParticipantEvent::Offer { sdp, .. } = &e {
            let offer = SdpOffer::from_sdp_string(sdp).expect("a server offer");
            let answer = self.clients[i].rtc.sdp_api().accept_offer(offer).expect("the client answers");
            self.servers[i].core.accept_answer(&answer.to_sdp_string()).expect("the server takes the answer");
        }
        self.servers[i].signals.push((self.now, e));
    }

    /// The room, as small as the tests need: it takes every track.
    fn room(&mut self, i: usize, r: ToRoom) {
        if let ToRoom::Publish { mid, track } = r {
            if self.refuse_video && track.kind == MediaKind::Video {
                self.servers[i].core.published(self.now, mid, Err("this room is audio only".into()));
                return;
            }
            self.router.add_producer(&track, i);
            self.tracks.push(track);
            let published = Published { source: TrackSource::Feed, ceiling: None };
            self.servers[i].core.published(self.now, mid, Ok(published));
        }
    }

    /// A keyframe of `layer` of `t` is wanted: asked for through the router's
    /// throttle, now or at the time it gives.
    fn want_keyframe(&mut self, t: TrackId, layer: Layer) {
        match self.router.want_keyframe(t, layer, self.now) {
            KeyframeAsk::Now(&publisher) => self.keyframe(publisher, t, layer),
            KeyframeAsk::At(_, at) => self.keyframe_timers.push((at, t, layer)),
            KeyframeAsk::Nothing => {}
        }
    }

    fn keyframe(&mut self, publisher: usize, t: TrackId, layer: Layer) {
        trace(self, "keyframe request to the publisher");
        self.servers[publisher].core.request_keyframe(t, layer);
    }

    /// Server `sub` receives every published track.
    fn subscribe_all(&mut self, sub: usize) {
        for track in self.tracks.clone() {
            self.router.link(track.id, self.servers[sub].core.id(), sub);
            self.servers[sub].core.subscribe(track);
        }
    }

    /// Moves virtual time to the next thing due and does it.
    fn step(&mut self) {
        self.drain();
        let mut next = self.net.next_at();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        self.clients.iter().for_each(|c| consider(c.timeout));
        self.servers.iter().filter(|s| s.closed.is_none()).for_each(|s| consider(s.timeout));
        self.keyframe_timers.iter().for_each(|(t, ..)| consider(*t));
        if self.publishing.is_some() {
            consider(self.next_frame);
        }
        // Time moves on by at least a millisecond a step: a stack whose timeout is
        // always "now" when idle cannot hold the clock still.
        self.now = next.unwrap_or(self.now).max(self.now + Duration::from_millis(1));
        let now = self.now;
        while let Some(p) = self.net.pop_due(now) {
            let to = p.to;
            if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to) {
                let contents = p.data.as_slice().try_into().expect("a datagram");
                let _ = c.rtc.handle_input(Input::Receive(now, Receive { proto: Protocol::Udp, source: p.from, destination: to, contents }));
            } else if let Some(s) = self.servers.iter_mut().find(|s| s.addr == to && s.closed.is_none()) {
                s.core.receive(now, Protocol::Udp, p.from, to, &p.data);
            }
        }
        for c in &mut self.clients {
            if c.timeout <= now {
                c.rtc.handle_input(Input::Timeout(now)).expect("client timeout");
            }
        }
        for s in &mut self.servers {
            if s.timeout <= now && s.closed.is_none() {
                s.core.handle_timeout(now);
            }
        }
        let due: Vec<(TrackId, Layer)> = self.keyframe_timers.iter().filter(|(t, ..)| *t <= now).map(|(_, id, l)| (*id, *l)).collect();
        self.keyframe_timers.retain(|(t, ..)| *t > now);
        for (t, layer) in due {
            if let Some(&publisher) = self.router.keyframe_due(t, layer, now) {
                self.keyframe(publisher, t, layer);
            }
        }
        for c in 1..self.clients.len() {
            self.play(c);
        }
        if let Some(mid) = self.publishing
            && self.next_frame <= now
        {
            self.send_frame(mid);
        }
    }

    /// Client `i`'s player shows the frames whose time has come.
    fn play(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        let p = &mut c.player;
        let Some(first) = c.received.first() else {
            return;
        };
        let mut next = p.next.unwrap_or(first.number);
        let mut missed = false;
        while let Some(&sent) = self.sent_at.get(next as usize) {
            if sent + PLAYOUT_DELAY > now {
                break;
            }
            let frame = c.received.iter().find(|r| r.number == next && r.whole && r.at <= sent + PLAYOUT_DELAY);
            match frame {
                Some(f) if f.keyframe || p.decoding => {
                    p.decoding = true;
                    p.shown.push((sent + PLAYOUT_DELAY, next));
                }
                _ => {
                    p.decoding = false;
                    missed = true;
                }
            }
            next += 1;
        }
        p.next = Some(next);
        // Frozen: ask for a keyframe, as a browser does, at most every 250 ms.
        if missed && !p.decoding && p.asked.is_none_or(|at| now - at >= Duration::from_millis(250)) {
            p.asked = Some(now);
            if let Some(mut w) = c.video_mid.and_then(|m| c.rtc.writer(m)) {
                let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            }
        }
    }

    /// Client 0 sends its next frame: a keyframe when asked for one.
    fn send_frame(&mut self, mid: Mid) {
        let period = Duration::from_secs(1) / self.fps;
        self.next_frame += period;
        let c = &mut self.clients[0];
        if !c.connected {
            return;
        }
        let Some(pt) = c.vp8(mid) else {
            return;
        };
        let keyframe = std::mem::take(&mut c.keyframe_wanted);
        if keyframe {
            trace(self, &format!("keyframe {} sent", self.frame));
        }
        let c = &mut self.clients[0];
        let n = self.frame;
        self.frame += 1;
        self.sent_at.push(self.now);
        let data = vp8_frame(n, keyframe, if keyframe { 6000 } else { 1500 });
        let rtp_time = MediaTime::from_90khz(u64::from(n) * 90_000 / u64::from(self.fps));
        // No writer once the m-line no longer sends (the server turned it off).
        let Some(w) = c.rtc.writer(mid) else {
            return;
        };
        w.write(pt, self.now, rtp_time, data).expect("the client writes");
    }

    /// Runs until `done` holds or `limit` of virtual time has passed; true if it held.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Runs for `d` of virtual time.
    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn connected(&self, i: usize) -> bool {
        self.clients[i].connected && self.servers[i].core.is_connected()
    }
}

/// One DTLS certificate for every server peer, as the server makes one at start.
fn certificate() -> str0m::config::DtlsCert {
    static CERT: std::sync::OnceLock<str0m::config::DtlsCert> = std::sync::OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a certificate"))
        .clone()
}

/// A lossy, jittery link: 10 % loss each way, 20–120 ms one way.
const BAD: Link = Link { loss: 0.10, delay: Duration::from_millis(20), jitter: Duration::from_millis(100) };

/// A phone's hotspot: 2 % loss, 30–70 ms one way.
const HOTSPOT: Link = Link { loss: 0.02, delay: Duration::from_millis(30), jitter: Duration::from_millis(40) };

/// A publisher and a subscriber (a WHEP-like one that offers to receive, or one
/// the server sends offers to), connected and the feed flowing.
fn feed_to_one_subscriber(seed: u64, link: Link, renegotiate: bool) -> Sim {
    let mut sim = Sim::new(seed, link);
    let p = sim.add_peer("encoder", false);
    let mid = sim.offer(p, Direction::SendOnly);
    assert!(sim.run_until(Duration::from_secs(20), |s| s.connected(p)), "the publisher connects (seed {seed})");
    assert!(sim.run_until(Duration::from_secs(2), |s| !s.tracks.is_empty()), "the feed is published");
    sim.publishing = Some(mid);
    let v = sim.add_peer("viewer", renegotiate);
    if renegotiate {
        // A commentator's page offers what it sends (here nothing but a data-less
        // audio line); the server offers the feed once connected.
        let mut api = sim.clients[v].rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::Inactive, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = sim.servers[v].core.accept_offer(sim.now, &offer.to_sdp_string()).expect("answered");
        sim.clients[v].rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    } else {
        sim.offer(v, Direction::RecvOnly);
    }
    sim.subscribe_all(v);
    assert!(sim.run_until(Duration::from_secs(20), |s| s.connected(v)), "the subscriber connects (seed {seed})");
    sim
}

/// The longest time the picture stood still between `from` and `to`: between two
/// frames shown, or from either end to the nearest (all of it if none was shown).
fn longest_freeze(sim: &Sim, v: usize, from: Instant, to: Instant) -> Duration {
    let shown = sim.clients[v].player.shown.iter().map(|(at, _)| *at).filter(|at| (from..to).contains(at));
    let times: Vec<Instant> = std::iter::once(from).chain(shown).chain(std::iter::once(to)).collect();
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// What a subscriber got of ten seconds of the feed.
struct Watched {
    /// From connecting to the first keyframe arriving whole.
    first_keyframe: Duration,
    /// Frames sent in the ten seconds.
    sent: usize,
    /// Of those, how many arrived whole (at any time).
    arrived: usize,
    /// How many the player showed.
    shown: usize,
    longest_freeze: Duration,
}

/// Connects a publisher and a subscriber over `link` and watches ten seconds.
fn watch(seed: u64, link: Link, renegotiate: bool) -> Watched {
    let mut sim = feed_to_one_subscriber(seed, link, renegotiate);
    let v = 1;
    let connected = sim.now;
    assert!(
        sim.run_until(Duration::from_secs(10), |s| s.clients[v].received.iter().any(|r| r.keyframe && r.whole)),
        "{link:?} seed {seed}: no keyframe within 10 s of connecting"
    );
    let first_keyframe = sim.now - connected;
    sim.run_for(Duration::from_secs(2));
    let from = sim.now;
    let first = sim.frame;
    sim.run_for(Duration::from_secs(10));
    let (to, last) = (sim.now, sim.frame);
    // Frames sent near the end have had no time to be repaired: give them it.
    sim.run_for(Duration::from_secs(2));
    let received = &sim.clients[v].received;
    assert!(received.iter().all(|r| r.whole), "{link:?} seed {seed}: a frame arrived with wrong bytes");
    // The server passes frames on in the order they were sent: what comes late to
    // the subscriber is the network's doing.
    assert!(sim.forwarded.windows(2).all(|w| w[0].0 < w[1].0), "{link:?} seed {seed}: the server reordered frames");
    assert!(sim.servers.iter().all(|s| s.closed.is_none()), "{link:?} seed {seed}: a peer ended");
    let arrived: HashSet<u32> = received.iter().map(|r| r.number).filter(|n| (first..last).contains(n)).collect();
    let shown = sim.clients[v].player.shown.iter().filter(|(_, n)| (first..last).contains(n)).count();
    if std::env::var("SIM_TRACE").is_ok() {
        for r in received.iter().filter(|r| (first..last).contains(&r.number)) {
            let sent = sim.sent_at[r.number as usize];
            let fwd = sim.forwarded.iter().find(|(n, _)| *n == r.number).map(|(_, at)| *at - sent);
            let total = r.at - sent;
            if total > Duration::from_millis(300) {
                eprintln!("frame {} kf {} leg1 {:?} total {:?}", r.number, r.keyframe, fwd, total);
            }
        }
    }
    let w = Watched {
        first_keyframe,
        sent: (last - first) as usize,
        arrived: arrived.len(),
        shown,
        longest_freeze: longest_freeze(&sim, v, from + PLAYOUT_DELAY, to + PLAYOUT_DELAY),
    };
    eprintln!(
        "{link:?} seed {seed} renegotiate {renegotiate}: first keyframe {:?} after connecting; of {} frames sent {} arrived, {} shown; longest freeze {:?}",
        w.first_keyframe, w.sent, w.arrived, w.shown, w.longest_freeze
    );
    w
}

#[test]
fn negotiation_and_forwarding_hold_through_10_percent_loss_and_100_ms_jitter() {
    let wall = Instant::now();
    let (mut sent, mut arrived) = (0, 0);
    for seed in 1..=6 {
        // A WHEP-like subscriber that offers to receive, and one the server sends
        // offers to.
        for renegotiate in [false, true] {
            let w = watch(seed, BAD, renegotiate);
            assert!(w.first_keyframe < Duration::from_secs(8), "seed {seed}: first keyframe after {:?}", w.first_keyframe);
            // About 19 % of packets are lost end to end, so without resends about
            // 66 % of the two-packet frames would arrive. With NACK and RTX on both
            // legs one session brings 81-92 % (360 runs; once 79 % on a loaded
            // machine, as RTCP and STUN timing inside the stacks varies from run to
            // run): each must stay clear of the no-resend figure.
            assert!(w.arrived * 100 >= w.sent * 72, "seed {seed}: {} of {} frames arrived", w.arrived, w.sent);
            sent += w.sent;
            arrived += w.arrived;
        }
    }
    // Over the twelve sessions the run-to-run spread evens out (86-88 % in 30 runs).
    assert!(arrived * 100 >= sent * 80, "{arrived} of {sent} frames arrived over all sessions");
    // Virtual time: over three minutes of sessions in seconds, even unoptimized.
    assert!(wall.elapsed() < Duration::from_secs(30), "took {:?} of wall time", wall.elapsed());
}

#[test]
fn a_subscriber_on_a_hotspot_sees_the_feed_without_long_freezes() {
    for seed in 1..=8 {
        let w = watch(seed, HOTSPOT, seed % 2 == 0);
        assert!(w.first_keyframe < Duration::from_millis(2500), "seed {seed}: first keyframe after {:?}", w.first_keyframe);
        assert!(w.arrived * 100 >= w.sent * 98, "seed {seed}: {} of {} frames arrived", w.arrived, w.sent);
        // Usually 78-100 %; once in a fresh-clone run seed 6 showed 64 %: RTCP and STUN
        // timing inside the stacks still varies between runs (docs/benchmarks.md).
        assert!(w.shown * 100 >= w.sent * 60, "seed {seed}: {} of {} frames shown", w.shown, w.sent);
        assert!(w.longest_freeze < Duration::from_millis(2500), "seed {seed}: the picture froze for {:?}", w.longest_freeze);
    }
}

#[test]
fn a_subscriber_that_moves_network_gets_the_feed_back_after_an_ice_restart() {
    // On a phone's hotspot the picture is back within 3 s of the move; through
    // 10 % loss and 100 ms of jitter it comes back too, later.
    for (link, seeds, bound) in [(HOTSPOT, 1..=8, 3), (BAD, 1..=4, 8)] {
        for seed in seeds {
            let mut sim = feed_to_one_subscriber(seed, link, true);
            let v = 1;
            sim.run_for(Duration::from_secs(2));
            let id = sim.servers[v].core.id();
            // The client's Wi-Fi dies for 2 s; it comes back on another address
            // and asks for an ICE restart.
            let old = sim.clients[v].addr;
            sim.net.dead.insert(old.ip());
            sim.run_for(Duration::from_secs(2));
            let new = SocketAddr::from(([10, 2, 0, 9], 6100));
            sim.clients[v].addr = new;
            sim.clients[v].rtc.add_local_candidate(Candidate::host(new, "udp").unwrap());
            let moved = sim.now;
            sim.servers[v].core.restart_ice(sim.now).expect("a restart is taken");
            let before = sim.clients[v].received.len();
            // A picture again: a keyframe, then a second of frames after it.
            let picture = |s: &Sim| s.clients[v].received[before..].iter().position(|r| r.keyframe);
            assert!(
                sim.run_until(Duration::from_secs(bound + 1), |s| picture(s)
                    .is_some_and(|k| s.clients[v].received.len() > before + k + 30)),
                "{link:?} seed {seed}: the feed did not come back"
            );
            let back = sim.clients[v].received[before + picture(&sim).unwrap()].at - moved;
            eprintln!("{link:?} seed {seed}: the picture was back {back:?} after the restart was asked for");
            assert!(back < Duration::from_secs(bound), "{link:?} seed {seed}: the picture was back after {back:?}");
            let s = &sim.servers[v];
            assert_eq!(s.core.id(), id, "the same participant");
            assert!(s.closed.is_none(), "seed {seed}: the participant ended: {:?}", s.closed);
            assert!(s.routes.iter().any(|r| matches!(r, RouteChange::Alias(_))), "the new ufrag is routed");
            assert!(s.routes.iter().any(|r| matches!(r, RouteChange::Retire(_))), "the old ufrag is retired");
            // Nothing but whole frames from the keyframe on.
            let after = &sim.clients[v].received[before + picture(&sim).unwrap()..];
            assert!(after.iter().all(|r| r.whole), "{link:?} seed {seed}: a broken frame");
            assert!(sim.forwarded.windows(2).all(|w| w[0].0 < w[1].0), "seed {seed}: the server reordered frames");
        }
    }
}

#[test]
fn keyframe_requests_from_many_subscribers_reach_the_publisher_throttled() {
    let mut sim = feed_to_one_subscriber(11, BAD, false);
    // Nine more subscribers join within a second: each needs a keyframe.
    let mut subs = Vec::new();
    for _ in 0..9 {
        let v = sim.add_peer("viewer", false);
        sim.offer(v, Direction::RecvOnly);
        sim.subscribe_all(v);
        subs.push(v);
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.run_until(Duration::from_secs(20), |s| subs.iter().all(|&v| s.connected(v))), "all connect");
    let asked_before = sim.clients[0].keyframe_requests;
    let from = sim.now;
    assert!(
        sim.run_until(Duration::from_secs(3), |s| subs.iter().all(|&v| s.clients[v].received.iter().any(|r| r.keyframe))),
        "every subscriber has a picture within 3 s of connecting"
    );
    sim.run_for(Duration::from_secs(5));
    let asked = sim.clients[0].keyframe_requests - asked_before;
    let secs = (sim.now - from).as_secs_f64();
    // The publisher is asked at most twice a second (the throttle), though ten
    // subscribers lose packets and ask.
    assert!(f64::from(asked) <= secs * 2.0 + 2.0, "{asked} keyframe requests in {secs:.1} s");
    for &v in &subs {
        assert!(sim.clients[v].received.iter().all(|r| r.whole), "subscriber {v} got a broken frame");
    }
}

#[test]
fn a_peer_that_never_offers_or_connects_ends_with_a_reason() {
    let mut sim = Sim::new(5, BAD);
    let a = sim.add_peer("viewer", false);
    sim.run_until(Duration::from_secs(200), |s| s.servers[a].closed.is_some());
    assert_eq!(sim.servers[a].closed.as_deref(), Some("no SDP offer within 2 minutes of joining"));
    assert!(sim.elapsed() >= OFFER_TIMEOUT);

    let b = sim.add_peer("viewer", false);
    sim.offer(b, Direction::RecvOnly);
    // Its network is dead from the start.
    sim.net.dead.insert(sim.clients[b].addr.ip());
    let at = sim.now;
    sim.run_until(Duration::from_secs(20), |s| s.servers[b].closed.is_some());
    assert_eq!(sim.servers[b].closed.as_deref(), Some("no media connection within the connect timeout"));
    assert!(sim.now - at >= Duration::from_secs(10));
}

#[test]
fn a_track_the_room_refuses_is_turned_off_and_stops_arriving() {
    // An audio-only room: a page that sends video anyway is offered its m-line back
    // without receiving, and stops sending it; nothing of it reaches the server.
    let mut sim = Sim::new(3, Link { loss: 0.0, delay: Duration::from_millis(10), jitter: Duration::ZERO });
    sim.refuse_video = true;
    let p = sim.add_peer("encoder", true);
    let mid = sim.offer(p, Direction::SendOnly);
    sim.publishing = Some(mid);
    assert!(sim.run_until(Duration::from_secs(20), |s| s.connected(p)), "connects");
    let offered = |s: &Sim| s.servers[p].signals.iter().any(|(_, e)| matches!(e, ParticipantEvent::Offer { .. }));
    assert!(sim.run_until(Duration::from_secs(5), offered), "a server offer turns the m-line off");
    assert!(sim.tracks.is_empty(), "nothing published");
    sim.run_for(Duration::from_secs(1));
    let arrived = |s: &Sim| s.servers[p].core.metrics.rtp_packets_in.get();
    let before = arrived(&sim);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(arrived(&sim), before, "RTP still arrives on the refused m-line");
    let dir = sim.clients[p].rtc.media(mid).map(|m| m.direction());
    assert_eq!(dir, Some(Direction::Inactive), "the page's m-line");
}

#[test]
fn a_failed_dtls_handshake_ends_at_once_and_says_why() {
    // The offer names a certificate other than the one the peer presents (as a
    // munged or mixed-up SDP would): the session ends when DTLS shows it, with the
    // reason, not at the connect timeout.
    let mut sim = Sim::new(6, HOTSPOT);
    let a = sim.add_peer("viewer", false);
    sim.offer_as(a, Direction::RecvOnly, |sdp| {
        let line = sdp.lines().find(|l| l.starts_with("a=fingerprint:sha-256 ")).expect("a fingerprint").to_string();
        // The last hex digit changed: another certificate's fingerprint.
        let (head, last) = line.split_at(line.len() - 1);
        sdp.replace(&line, &format!("{head}{}", if last == "0" { "1" } else { "0" }))
    });
    sim.run_until(Duration::from_secs(10), |s| s.servers[a].closed.is_some());
    let reason = sim.servers[a].closed.clone().expect("closed");
    assert!(reason.starts_with("the media encryption handshake (DTLS) failed") && reason.contains("fingerprint"), "{reason}");
    assert!(sim.elapsed() < Duration::from_secs(3), "ended after {:?}", sim.elapsed());
}

#[test]
fn a_lost_connection_ends_after_its_grace_unless_a_restart_was_asked() {
    let mut sim = feed_to_one_subscriber(21, BAD, true);
    let v = 1;
    sim.net.dead.insert(sim.clients[v].addr.ip());
    let cut = sim.now;
    assert!(sim.run_until(Duration::from_secs(60), |s| s.servers[v].closed.is_some()));
    assert_eq!(sim.servers[v].closed.as_deref(), Some("media connection lost"));
    let lost = sim.servers[v]
        .signals
        .iter()
        .find(|(at, e)| *at >= cut && *e == ParticipantEvent::Connection(false))
        .map(|(at, _)| *at)
        .expect("the client was told the connection was lost");
    // ICE notices the silence, then the participant waits out its grace.
    let grace = sim.now - lost;
    assert!(grace >= DISCONNECT_GRACE && grace < DISCONNECT_GRACE + Duration::from_millis(100), "ended {grace:?} after the loss");

    // Another one asks for a restart as its connection drops: the grace counts
    // from the restart.
    let mut sim = feed_to_one_subscriber(22, BAD, true);
    sim.net.dead.insert(sim.clients[v].addr.ip());
    assert!(sim.run_until(Duration::from_secs(60), |s| s.servers[v].signals.iter().any(|(_, e)| *e == ParticipantEvent::Connection(false))));
    sim.run_for(Duration::from_secs(4));
    let asked = sim.now;
    sim.servers[v].core.restart_ice(asked).expect("a restart is taken");
    assert!(sim.run_until(Duration::from_secs(60), |s| s.servers[v].closed.is_some()));
    let grace = sim.now - asked;
    assert!(grace >= DISCONNECT_GRACE && grace < DISCONNECT_GRACE + Duration::from_millis(100), "ended {grace:?} after the restart");
}

fn trace(sim: &Sim, what: &str) {
    if std::env::var("SIM_TRACE").is_ok() {
        eprintln!("{:?} {what}", sim.now - sim.start);
    }
}
