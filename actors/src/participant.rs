//! The ParticipantActor: one peer connection, owning its str0m `Rtc`.
//!
//! It publishes what its peer sends (each incoming m-line becomes a track in the
//! room) and writes the tracks it subscribes to into outgoing m-lines. Outgoing
//! m-lines come from two places: the peer's own offer (a WHEP client offers
//! `recvonly` lines, which are bound to tracks as they come), or, for peers that can
//! renegotiate (the WebSocket signaling), from server offers built as tracks come
//! and go.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, Mid, Rid};
use str0m::net::Receive;
use str0m::{Event, IceConnectionState, IceCreds, Input, Output, Rtc};
use tokio::sync::mpsc::UnboundedSender;

use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;
use crate::room::{Leave, Mute, Publish, RoomActor, Unpublish, WantKeyframe};
use crate::transport::Transports;
use crate::udp::{Datagram, is_rtp};
use crate::{MediaKind, PeerInfo, RoomEvent, TrackDesc, TrackSource};

/// What a participant tells its signaling connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// Something happened in the room.
    Room(RoomEvent),
    /// A server offer; the client must answer with [`AcceptAnswer`].
    Offer {
        /// The SDP.
        sdp: String,
        /// Which track each new m-line carries.
        tracks: Vec<(String, TrackDesc)>,
    },
    /// A track now arrives on an m-line the peer offered for receiving.
    Bound {
        /// The m-line.
        mid: String,
        /// The track.
        track: TrackDesc,
    },
    /// An operator muted (true) or unmuted (false) what it sends of this kind: the
    /// server drops it meanwhile, whatever the peer does.
    HeldByOperator {
        /// Which kind.
        kind: MediaKind,
        /// Held or released.
        held: bool,
    },
    /// Someone in the room (this participant included) raised or lowered a hand.
    Hand {
        /// Who.
        participant: ParticipantId,
        /// Their display name.
        name: String,
        /// Raised or lowered.
        raised: bool,
    },
    /// A chat line in the room (this participant's own included).
    Chat {
        /// Its number in the room, from 1.
        seq: u64,
        /// Who wrote it.
        participant: ParticipantId,
        /// Their display name.
        name: String,
        /// The text (already cleaned by signaling).
        text: String,
        /// When the room received it, Unix milliseconds.
        at: u64,
    },
    /// ICE+DTLS connected (true) or lost (false).
    Connection(bool),
    /// The participant ended; the reason is for logs and the client.
    Closed(String),
}

/// Settings for a new participant.
#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// Display name.
    pub name: String,
    /// Role name, for display and metrics.
    pub role: &'static str,
    /// What it may publish.
    pub publish: Option<TrackSource>,
    /// What it receives.
    pub subscribe: crate::Subscribe,
    /// Whether the server may send it offers (WebSocket signaling: yes; WHIP/WHEP: no).
    pub renegotiate: bool,
    /// Who it is across sessions (its invitation, or its role and name): an
    /// operator's mute follows the person into a new session.
    pub identity: String,
    /// The credential it joined with (its invitation, or a digest of its token):
    /// the room limits how many sessions one credential holds.
    pub credential: String,
}

#[derive(Debug)]
struct Inbound {
    track: TrackDesc,
    published: bool,
    subscribers: Vec<(ParticipantId, Recipient<Forward>)>,
    /// With simulcast, the one layer forwarded: the best one seen so far.
    rid: Option<Rid>,
    /// A better layer waiting for its first keyframe.
    next_rid: Option<Rid>,
}

/// Simulcast layer names from best to worst, as browsers and encoders use them.
const RID_PREFERENCE: [&str; 6] = ["h", "f", "2", "m", "1", "q"];

/// Rank of a simulcast layer name: lower is better; unknown names rank last.
fn rid_rank(rid: &Rid) -> usize {
    RID_PREFERENCE.iter().position(|r| *r == &**rid).unwrap_or(RID_PREFERENCE.len())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// Waiting for an m-line.
    Unbound,
    /// In a server offer not answered yet.
    Negotiating(Mid),
    /// Media flows.
    Open(Mid),
    /// To be stopped in the next offer.
    ToStop(Mid),
    /// Stop offered, not answered yet.
    Stopping(Mid),
}

#[derive(Debug)]
struct Outbound {
    track: TrackDesc,
    state: OutState,
}

/// What a participant is connected to, given by the SFU.
pub(crate) struct Wiring {
    /// ICE credentials; the SFU routes STUN by their ufrag.
    pub creds: IceCreds,
    pub room: Addr<RoomActor>,
    pub transports: Arc<Transports>,
    pub metrics: Metrics,
    pub events: UnboundedSender<ParticipantEvent>,
    pub connect_deadline: Duration,
    /// One certificate for the whole server: generating a key per peer costs a
    /// millisecond or more on every join.
    pub dtls_cert: str0m::config::DtlsCert,
}

/// One peer connection.
pub struct ParticipantActor {
    id: ParticipantId,
    opts: ParticipantOptions,
    room: Addr<RoomActor>,
    span: tracing::Span,
    rtc: Rtc,
    /// The ufrag it registered with the transports: its route key for life.
    ufrag: String,
    /// The ufrag its ICE agent answers to now (a restart replaces it).
    current_ufrag: String,
    /// The peer asked for an ICE restart (its network changed): the next server
    /// offer carries new ICE credentials.
    restart_wanted: bool,
    /// The new ufrag of a restart offered and not yet answered.
    restarting: Option<String>,
    /// When the last restart was asked for: a lost connection waits for it.
    restart_asked: Option<Instant>,
    transports: Arc<Transports>,
    metrics: Metrics,
    events: UnboundedSender<ParticipantEvent>,
    inbound: HashMap<Mid, Inbound>,
    outbound: Vec<Outbound>,
    /// `recvonly` m-lines the peer offered and no track uses yet (WHEP).
    free_mids: Vec<(Mid, MediaKind)>,
    /// Every m-line the peer offered for receiving: when its track ends it is kept
    /// for the next track of its kind instead of being stopped.
    peer_mids: std::collections::HashSet<Mid>,
    /// Our offer, waiting for the peer's answer.
    pending: Option<SdpPendingOffer>,
    /// That offer as sent, to send again to a peer that resumes its session on a
    /// new connection (the first may have been lost with the old one).
    pending_sent: Option<(String, Vec<(String, TrackDesc)>)>,
    /// The last answer accepted: the same answer again (to an offer sent twice) is
    /// taken quietly.
    last_answer: Option<String>,
    /// The peer's first offer was answered: server offers may follow.
    negotiated: bool,
    connected: bool,
    timer: Option<(Instant, SpawnHandle)>,
    connect_deadline: Duration,
    connect_timer_armed: bool,
    /// ICE reported Disconnected and has not recovered yet.
    ice_down: bool,
    /// Server offers sent so far; names the one an answer timer waits for.
    offers_sent: u64,
    /// Mute state the peer announced, by kind, to pass on changes only.
    muted: HashMap<MediaKind, bool>,
    /// Kinds an operator muted: not forwarded until released.
    held: HashMap<MediaKind, bool>,
    closing_reason: Option<String>,
    /// What operators see of it, updated at each stats tick.
    stats: ParticipantStats,
    /// Bytes received and sent at the last peer stats tick.
    last_peer: Option<(Instant, u64, u64)>,
    /// Video frames received since the last tick.
    frames_in: u64,
    /// The last audio level heard (dBov, 0 = loudest) and when.
    audio_level: Option<(i8, Instant)>,
    /// Its hand is raised.
    hand_raised: bool,
}

/// What an operator sees of a participant: its connection and media, as of the last
/// stats tick (every 2 s).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ParticipantStats {
    /// Participant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Media connected.
    pub connected: bool,
    /// Bits/s received from it.
    pub bitrate_in: u64,
    /// Bits/s sent to it.
    pub bitrate_out: u64,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Fraction of its packets lost on the way in (0..1).
    pub loss_in: Option<f32>,
    /// Fraction of packets lost on the way to it (0..1).
    pub loss_out: Option<f32>,
    /// Jitter of its video (or audio), ms.
    pub jitter_ms: Option<f64>,
    /// Video frames per second received from it.
    pub fps_in: f64,
    /// The simulcast layer forwarded, if it sends several.
    pub layer: Option<String>,
    /// The picture size of its video, from its last key frame.
    pub width: Option<u32>,
    /// Height, likewise.
    pub height: Option<u32>,
    /// Its audio level, 0 (silence) to 1 (loudest), from the RTP audio-level header.
    pub audio_level: Option<f64>,
    /// Speaking now (audio above -50 dBov in the last second).
    pub speaking: bool,
    /// It muted its microphone.
    pub audio_muted: bool,
    /// It turned its camera off.
    pub video_muted: bool,
    /// An operator muted its audio (the server drops it).
    pub audio_muted_by_operator: bool,
    /// An operator muted its video (the server drops it).
    pub video_muted_by_operator: bool,
    /// Kinds it publishes.
    pub publishing: Vec<String>,
    /// It raised its hand (a commentator asking for the floor).
    pub hand_raised: bool,
    /// The invitation it joined with, if any (the console shows who of the invited
    /// have joined).
    pub invitation: Option<String>,
}

/// A participant's stats, for operators.
#[derive(Message)]
#[rtype(result = "ParticipantStats")]
pub struct GetStats;

/// How long a lost ICE connection may take to come back before the participant ends.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Least time between two ICE restarts a peer asks for.
const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// How long the peer may take to answer a server offer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Most m-lines accepted in one offer.
const MAX_MLINES: usize = 256;

/// Video packets kept per m-line for resends; see `ParticipantActor::new`.
const SEND_BUFFER_VIDEO_PACKETS: usize = 400;

/// How long after joining the peer may take to send its first offer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(120);

impl ParticipantActor {
    pub(crate) fn new(id: ParticipantId, opts: ParticipantOptions, wiring: Wiring) -> Self {
        let Wiring { creds, room, transports, metrics, events, connect_deadline, dtls_cert } = wiring;
        let ufrag = creds.ufrag.clone();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_local_ice_credentials(creds)
            .set_dtls_cert(dtls_cert)
            // The video send buffer holds each subscriber's packetized copies for
            // resends (NACK). str0m's default, 1000 packets, is 1.2 MB per video
            // m-line; 400 packets keep 1.6 s of a 2.5 Mbit/s feed, enough for
            // NACK round trips and a whole keyframe, at 0.5 MB.
            .set_send_buffer_video(SEND_BUFFER_VIDEO_PACKETS)
            .set_stats_interval(Some(Duration::from_secs(2)))
            .build(Instant::now());
        for c in transports.candidates() {
            rtc.add_local_candidate(c);
        }
        let span = tracing::info_span!("participant", id = %id, role = opts.role, name = %opts.name);
        ParticipantActor {
            span,
            id,
            opts,
            room,
            rtc,
            current_ufrag: ufrag.clone(),
            ufrag,
            restart_wanted: false,
            restarting: None,
            restart_asked: None,
            transports,
            metrics,
            events,
            inbound: HashMap::new(),
            outbound: Vec::new(),
            free_mids: Vec::new(),
            peer_mids: Default::default(),
            pending: None,
            pending_sent: None,
            last_answer: None,
            negotiated: false,
            connected: false,
            timer: None,
            connect_deadline,
            connect_timer_armed: false,
            ice_down: false,
            offers_sent: 0,
            muted: HashMap::new(),
            held: HashMap::new(),
            closing_reason: None,
            stats: ParticipantStats::default(),
            last_peer: None,
            frames_in: 0,
            audio_level: None,
            hand_raised: false,
        }
    }

    /// Ends this participant with a reason.
    fn close(&mut self, reason: impl Into<String>, ctx: &mut Context<Self>) {
        if self.closing_reason.is_none() {
            self.closing_reason = Some(reason.into());
        }
        ctx.stop();
    }

    /// Runs `f` on self, ending the participant (not the thread) if it panics.
    fn guarded<R>(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Self, &mut Context<Self>) -> R) -> Option<R> {
        // Everything logged while handling a message carries the participant's span.
        let _span = self.span.clone().entered();
        match catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            Ok(r) => Some(r),
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(participant = %self.id, panic = %what, "participant panicked; ending it");
                // The panic's text is for the log only, not for the client.
                self.close("internal error (the server's log says more)", ctx);
                None
            }
        }
    }

    /// Negotiates if needed, then drains the Rtc's output until it asks for a timeout.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        // Drain first: events such as MediaAdded bind tracks to m-lines the peer
        // offered, so that only what is still unbound goes into a server offer.
        if !self.drain(ctx) {
            return;
        }
        let before = self.offers_sent;
        self.negotiate();
        if self.offers_sent != before {
            let n = self.offers_sent;
            ctx.run_later(ANSWER_TIMEOUT, move |act, ctx| {
                if act.pending.is_some() && act.offers_sent == n {
                    act.close("no answer to the server's offer within 30 s", ctx);
                }
            });
            // Applying the offer changed the session: drain again.
            self.drain(ctx);
        }
    }

    /// Polls the Rtc until it asks for a timeout; false if the participant ended.
    fn drain(&mut self, ctx: &mut Context<Self>) -> bool {
        loop {
            if !self.rtc.is_alive() {
                self.close("connection closed", ctx);
                return false;
            }
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    if is_rtp(&t.contents) {
                        self.metrics.rtp_packets_forwarded.inc();
                        self.metrics.rtp_bytes_forwarded.inc_by(t.contents.len() as u64);
                    }
                    self.transports.send(t.proto, t.source, t.destination, &t.contents);
                }
                Ok(Output::Event(e)) => self.handle_event(e, ctx),
                Ok(Output::Timeout(at)) => {
                    self.arm_timer(at, ctx);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(participant = %self.id, error = %e, "rtc failed");
                    self.close(format!("media error: {e}"), ctx);
                    return false;
                }
            }
        }
    }

    fn arm_timer(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((t, h)) = self.timer {
            if t == at {
                return;
            }
            ctx.cancel_future(h);
        }
        let wait = at.saturating_duration_since(Instant::now());
        let h = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.guarded(ctx, |act, ctx| {
                if let Err(e) = act.rtc.handle_input(Input::Timeout(Instant::now())) {
                    act.close(format!("media error: {e}"), ctx);
                    return;
                }
                act.drive(ctx);
            });
        });
        self.timer = Some((at, h));
    }

    fn handle_event(&mut self, e: Event, ctx: &mut Context<Self>) {
        match e {
            Event::Connected => {
                self.connected = true;
                let _ = self.events.send(ParticipantEvent::Connection(true));
                tracing::info!(participant = %self.id, "media connected");
                for o in &self.outbound {
                    if let OutState::Open(_) = o.state {
                        self.room.do_send(WantKeyframe(o.track.id));
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // A short network blip can recover (str0m goes back to Checking and
                // Completed when binding requests come again): wait before ending.
                let _ = self.events.send(ParticipantEvent::Connection(false));
                self.ice_down = true;
                self.end_if_still_down(ctx);
            }
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed)
                if self.ice_down =>
            {
                self.ice_down = false;
                let _ = self.events.send(ParticipantEvent::Connection(true));
            }
            Event::MediaAdded(m) => self.media_added(m.mid, m.kind, m.direction, ctx),
            Event::MediaData(data) => self.media_in(data),
            Event::KeyframeRequest(req) => {
                if let Some(o) = self.outbound.iter().find(|o| o.state == OutState::Open(req.mid)) {
                    self.room.do_send(WantKeyframe(o.track.id));
                }
            }
            Event::PeerStats(p) => {
                let now = Instant::now();
                if let Some((at, rx, tx)) = self.last_peer {
                    let secs = now.duration_since(at).as_secs_f64().max(0.001);
                    self.stats.bitrate_in = ((p.peer_bytes_rx.saturating_sub(rx)) as f64 * 8.0 / secs) as u64;
                    self.stats.bitrate_out = ((p.peer_bytes_tx.saturating_sub(tx)) as f64 * 8.0 / secs) as u64;
                    self.stats.fps_in = (self.frames_in as f64 / secs * 10.0).round() / 10.0;
                }
                self.frames_in = 0;
                self.last_peer = Some((now, p.peer_bytes_rx, p.peer_bytes_tx));
                self.stats.rtt_ms = p.rtt.map(|d| d.as_secs_f64() * 1000.0);
                self.stats.loss_in = p.ingress_loss_fraction;
                self.stats.loss_out = p.egress_loss_fraction;
            }
            Event::MediaIngressStats(m) => {
                // Jitter is in RTP clock units: 90 kHz for video, 48 kHz for audio.
                let video = self.inbound.get(&m.mid).is_some_and(|i| i.track.kind == MediaKind::Video);
                if video || self.stats.jitter_ms.is_none() {
                    self.stats.jitter_ms = Some(f64::from(m.jitter) / if video { 90.0 } else { 48.0 });
                }
                if m.rtt.is_some() && self.stats.rtt_ms.is_none() {
                    self.stats.rtt_ms = m.rtt.map(|d| d.as_secs_f64() * 1000.0);
                }
            }
            _ => {}
        }
    }

    /// Ends the participant if its media connection is still down after
    /// [`DISCONNECT_GRACE`], counted from the loss or from the last ICE restart the
    /// peer asked for, whichever is later (a peer that moved networks gets its
    /// grace for the restart).
    fn end_if_still_down(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(DISCONNECT_GRACE, |act, ctx| {
            if !act.ice_down {
                return;
            }
            if act.restart_asked.is_some_and(|at| at.elapsed() < DISCONNECT_GRACE) {
                return act.end_if_still_down(ctx);
            }
            act.close("media connection lost", ctx);
        });
    }

    fn media_added(&mut self, mid: Mid, kind: MediaKind, dir: Direction, ctx: &mut Context<Self>) {
        if matches!(dir, Direction::RecvOnly | Direction::SendRecv) && self.opts.publish.is_some() {
            let track = TrackDesc {
                id: TrackId::next(),
                participant: self.id,
                name: self.opts.name.clone(),
                kind,
                // The room sets the real source from the role.
                source: TrackSource::Commentator,
            };
            self.inbound.insert(mid, Inbound { track: track.clone(), published: false, subscribers: Vec::new(), rid: None, next_rid: None });
            self.room
                .send(Publish(track))
                .into_actor(self)
                .map(move |res, act, _| match res {
                    Ok(Ok(source)) => {
                        if let Some(i) = act.inbound.get_mut(&mid) {
                            i.track.source = source;
                            i.published = true;
                        }
                        // Held before it published (a mute from an earlier session):
                        // the room learns it now.
                        if act.held.get(&kind) == Some(&true) {
                            act.room.do_send(Mute { id: act.id, kind, muted: true });
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::info!(participant = %act.id, %mid, reason = %e, "track refused");
                        act.inbound.remove(&mid);
                    }
                    Err(_) => {}
                })
                .wait(ctx);
        }
        if matches!(dir, Direction::SendOnly | Direction::SendRecv) {
            self.free_mids.push((mid, kind));
            self.peer_mids.insert(mid);
            self.bind_free_mids();
        }
    }

    /// Binds unbound subscriptions to m-lines the peer offered, feed first.
    fn bind_free_mids(&mut self) {
        let mut order: Vec<usize> = (0..self.outbound.len())
            .filter(|&i| self.outbound[i].state == OutState::Unbound)
            .collect();
        order.sort_by_key(|&i| self.outbound[i].track.source != TrackSource::Feed);
        for i in order {
            let kind = self.outbound[i].track.kind;
            if let Some(pos) = self.free_mids.iter().position(|(_, k)| *k == kind) {
                let (mid, _) = self.free_mids.remove(pos);
                self.outbound[i].state = OutState::Open(mid);
                self.room.do_send(WantKeyframe(self.outbound[i].track.id));
                let _ = self.events.send(ParticipantEvent::Bound { mid: mid.to_string(), track: self.outbound[i].track.clone() });
            }
        }
    }

    fn media_in(&mut self, data: MediaData) {
        let Some(inbound) = self.inbound.get_mut(&data.mid) else {
            return;
        };
        match inbound.track.kind {
            MediaKind::Video if data.rid.is_none() || data.rid == inbound.rid => {
                self.frames_in += 1;
                if data.is_keyframe() {
                    let size = match data.params.spec().codec {
                        str0m::format::Codec::Vp8 => crate::resolution::vp8(&data.data),
                        str0m::format::Codec::H264 => crate::resolution::h264(&data.data),
                        _ => None,
                    };
                    if let Some((w, h)) = size {
                        (self.stats.width, self.stats.height) = (Some(w), Some(h));
                    }
                }
            }
            MediaKind::Audio => {
                if let Some(level) = data.ext_vals.audio_level {
                    self.audio_level = Some((level, Instant::now()));
                }
            }
            _ => {}
        }
        let packets = (**data.seq_range.end()).wrapping_sub(**data.seq_range.start()) + 1;
        self.metrics.rtp_packets_in.inc_by(packets);
        self.metrics.rtp_bytes_in.inc_by(data.data.len() as u64);
        if !inbound.published || self.held.get(&inbound.track.kind) == Some(&true) {
            return;
        }
        // Simulcast: forward one layer only, the best that has shown up. A better
        // layer takes over at its first keyframe (asked for at once); until then the
        // current one goes on.
        if let Some(rid) = data.rid {
            let better = inbound.rid.is_none_or(|cur| rid_rank(&rid) < rid_rank(&cur));
            if inbound.rid != Some(rid) {
                if !better {
                    return;
                }
                if !data.is_keyframe() {
                    if inbound.next_rid != Some(rid) {
                        inbound.next_rid = Some(rid);
                        self.room.do_send(WantKeyframe(inbound.track.id));
                    }
                    return;
                }
                inbound.rid = Some(rid);
                inbound.next_rid = None;
            }
        }
        let track = inbound.track.id;
        if !data.contiguous {
            self.room.do_send(WantKeyframe(track));
        }
        if inbound.subscribers.is_empty() {
            return;
        }
        // One allocation per frame, shared by every subscriber.
        let data = Arc::new(data);
        for (_, to) in &inbound.subscribers {
            to.do_send(Forward { track, data: data.clone() });
        }
    }

    /// Builds a server offer when subscriptions changed and the peer can take one.
    fn negotiate(&mut self) {
        // Not before the media connection is up: str0m announces the peer's m-lines
        // (MediaAdded) only then, and tracks bind to m-lines the peer offered for
        // receiving before any new ones are offered.
        if !self.opts.renegotiate || !self.negotiated || !self.connected || self.pending.is_some() {
            return;
        }
        let mut change = self.rtc.sdp_api();
        if std::mem::take(&mut self.restart_wanted) {
            // New ICE credentials, the same candidates: the peer checks them from
            // wherever it is now. Its checks name the new ufrag, routed to us.
            let creds = change.ice_restart(true);
            self.transports.alias(&self.ufrag, &creds.ufrag);
            self.restarting = Some(creds.ufrag);
        }
        let mut added = Vec::new();
        for o in &mut self.outbound {
            match o.state {
                OutState::Unbound => {
                    let stream = o.track.participant.to_string();
                    let mid = change.add_media(
                        o.track.kind,
                        Direction::SendOnly,
                        Some(stream),
                        Some(o.track.id.to_string()),
                        None,
                    );
                    o.state = OutState::Negotiating(mid);
                    added.push((mid.to_string(), o.track.clone()));
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    o.state = OutState::Stopping(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        self.pending = Some(pending);
        self.offers_sent += 1;
        tracing::debug!(participant = %self.id, tracks = added.len(), ice_restart = self.restarting.is_some(), "server offer");
        let sdp = offer.to_sdp_string();
        self.pending_sent = Some((sdp.clone(), added.clone()));
        let _ = self.events.send(ParticipantEvent::Offer { sdp, tracks: added });
    }

    /// Puts the changes of an abandoned server offer back to be offered again.
    fn offer_again(&mut self) {
        self.pending = None;
        self.pending_sent = None;
        if self.restarting.take().is_some() {
            self.restart_wanted = true;
        }
        for o in &mut self.outbound {
            o.state = match o.state {
                OutState::Negotiating(_) => OutState::Unbound,
                OutState::Stopping(m) => OutState::ToStop(m),
                s => s,
            };
        }
    }

    fn accept_offer(&mut self, sdp: &str) -> Result<String, String> {
        let mlines = sdp.matches("\nm=").count();
        if mlines > MAX_MLINES {
            return Err(format!("the offer has {mlines} m-lines; at most {MAX_MLINES} are accepted"));
        }
        let offer = crate::sdp::parse_offer(sdp)?;
        if self.pending.is_some() {
            // The peer's offer wins over ours: redo ours after answering it.
            self.offer_again();
        }
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("SDP offer rejected: {e}"))?;
        self.negotiated = true;
        Ok(answer.to_sdp_string())
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let answer = crate::sdp::parse_answer(sdp)?;
        let Some(pending) = self.pending.take() else {
            if self.last_answer.as_deref() == Some(sdp) {
                return Ok(());
            }
            return Err("no offer is waiting for an answer".into());
        };
        self.pending_sent = None;
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            // Forget that offer and offer its changes again on the next drive.
            self.offer_again();
            return Err(format!("SDP answer rejected: {e}; a new offer follows"));
        }
        self.last_answer = Some(sdp.to_string());
        if let Some(new) = self.restarting.take() {
            // The old credentials are void now: stop routing checks that name them.
            self.transports.retire(&std::mem::replace(&mut self.current_ufrag, new.clone()));
            tracing::info!(participant = %self.id, "ICE restarted");
        }
        for o in &mut self.outbound {
            if let OutState::Negotiating(m) = o.state {
                o.state = OutState::Open(m);
                self.room.do_send(WantKeyframe(o.track.id));
            }
        }
        self.outbound.retain(|o| !matches!(o.state, OutState::Stopping(_)));
        tracing::debug!(participant = %self.id, "answer accepted");
        Ok(())
    }
}

impl Actor for ParticipantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics.participants.with_label_values(&[self.opts.role]).inc();
        // A browser may wait on a camera permission prompt before it offers: give
        // the offer time, and count the connect timeout from the offer on.
        ctx.run_later(OFFER_TIMEOUT, |act, ctx| {
            if !act.negotiated {
                act.close("no SDP offer within 2 minutes of joining", ctx);
            }
        });
        self.guarded(ctx, |act, ctx| act.drive(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics.participants.with_label_values(&[self.opts.role]).dec();
        self.transports.unregister(&self.ufrag);
        self.rtc.disconnect();
        for i in self.inbound.values() {
            if i.published {
                self.room.do_send(Unpublish(i.track.id));
            }
        }
        self.room.do_send(Leave(self.id));
        let reason = self.closing_reason.take().unwrap_or_else(|| "left".into());
        tracing::info!(participant = %self.id, %reason, "participant ended");
        let _ = self.events.send(ParticipantEvent::Closed(reason));
    }
}

impl Handler<Datagram> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, d: Datagram, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| {
            let Ok(contents) = d.data.as_slice().try_into() else {
                return;
            };
            let input = Input::Receive(
                d.at,
                Receive { proto: d.proto, source: d.source, destination: d.destination, contents },
            );
            match act.rtc.handle_input(input) {
                Ok(()) => {}
                // A failed DTLS handshake does not recover: say why (the peer's
                // certificate kind, a missing certificate…) and end at once rather
                // than at the connect timeout.
                Err(e @ str0m::RtcError::Dtls(_)) if !act.connected => {
                    tracing::warn!(participant = %act.id, reason = %e, "DTLS handshake failed");
                    act.metrics.dropped.with_label_values(&["dtls_failed"]).inc();
                    act.close(format!("the media encryption handshake (DTLS) failed: {e}"), ctx);
                    return;
                }
                Err(e) => tracing::debug!(participant = %act.id, error = %e, "bad datagram"),
            }
            act.drive(ctx);
        });
    }
}

/// A frame of a subscribed track, shared by all its subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward {
    /// The track.
    pub track: TrackId,
    /// The frame.
    pub data: Arc<MediaData>,
}

impl Handler<Forward> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, f: Forward, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| {
            let Some(o) = act.outbound.iter().find(|o| o.track.id == f.track) else {
                return;
            };
            let OutState::Open(mid) = o.state else {
                act.metrics.dropped.with_label_values(&["not_negotiated"]).inc();
                return;
            };
            if !act.connected {
                return;
            }
            let Some(writer) = act.rtc.writer(mid) else {
                return;
            };
            let Some(pt) = writer.match_params(f.data.params) else {
                act.metrics.dropped.with_label_values(&["codec_mismatch"]).inc();
                return;
            };
            if let Err(e) = writer.write(pt, f.data.network_time, f.data.time, f.data.data.clone()) {
                tracing::debug!(participant = %act.id, error = %e, "write failed");
                return;
            }
            act.drive(ctx);
            act.metrics
                .forward_latency
                .observe(Instant::now().saturating_duration_since(f.data.network_time).as_secs_f64());
        });
    }
}

/// Room → participant: pass this on to the client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notice(pub RoomEvent);

impl Handler<Notice> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, n: Notice, _: &mut Context<Self>) {
        let _ = self.events.send(ParticipantEvent::Room(n.0));
    }
}

/// Room → publisher: start sending `track` to `subscriber`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscriber {
    /// The track.
    pub track: TrackId,
    /// Who.
    pub subscriber: ParticipantId,
    /// Where its frames go.
    pub to: Recipient<Forward>,
}

impl Handler<AddSubscriber> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: AddSubscriber, _: &mut Context<Self>) {
        if let Some(i) = self.inbound.values_mut().find(|i| i.track.id == m.track) {
            i.subscribers.retain(|(p, _)| *p != m.subscriber);
            i.subscribers.push((m.subscriber, m.to));
        }
    }
}

/// Room → publisher: stop sending `track` to `subscriber`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSubscriber {
    /// The track.
    pub track: TrackId,
    /// Who.
    pub subscriber: ParticipantId,
}

impl Handler<RemoveSubscriber> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: RemoveSubscriber, _: &mut Context<Self>) {
        if let Some(i) = self.inbound.values_mut().find(|i| i.track.id == m.track) {
            i.subscribers.retain(|(p, _)| *p != m.subscriber);
        }
    }
}

/// Room → subscriber: you receive this track now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeTrack(pub TrackDesc);

impl Handler<SubscribeTrack> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: SubscribeTrack, ctx: &mut Context<Self>) {
        if self.outbound.iter().any(|o| o.track.id == m.0.id) {
            return;
        }
        tracing::debug!(participant = %self.id, track = %m.0.id, "subscribed");
        self.outbound.push(Outbound { track: m.0, state: OutState::Unbound });
        self.bind_free_mids();
        self.guarded(ctx, |act, ctx| act.drive(ctx));
    }
}

/// Room → subscriber: this track ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnsubscribeTrack(pub TrackId);

impl Handler<UnsubscribeTrack> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: UnsubscribeTrack, ctx: &mut Context<Self>) {
        let renegotiate = self.opts.renegotiate;
        let peer_mids = &self.peer_mids;
        let mut freed = Vec::new();
        self.outbound.retain_mut(|o| {
            if o.track.id != m.0 {
                return true;
            }
            match o.state {
                OutState::Unbound => false,
                // An m-line the peer offered (WHEP, the compositor) carries the next
                // track of its kind: no renegotiation.
                OutState::Open(mid) if peer_mids.contains(&mid) || !renegotiate => {
                    freed.push((mid, o.track.kind));
                    false
                }
                OutState::Open(mid) | OutState::Negotiating(mid) if renegotiate => {
                    o.state = OutState::ToStop(mid);
                    true
                }
                OutState::Open(mid) | OutState::Negotiating(mid) => {
                    freed.push((mid, o.track.kind));
                    false
                }
                _ => true,
            }
        });
        self.free_mids.extend(freed);
        self.bind_free_mids();
        self.guarded(ctx, |act, ctx| act.drive(ctx));
    }
}

/// Room → publisher: ask your peer for a keyframe of this track.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendKeyframeRequest(pub TrackId);

impl Handler<SendKeyframeRequest> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: SendKeyframeRequest, ctx: &mut Context<Self>) {
        let Some((mid, rid)) = self.inbound.iter().find(|(_, i)| i.track.id == m.0).map(|(m, i)| (*m, i.next_rid.or(i.rid))) else {
            return;
        };
        self.guarded(ctx, |act, ctx| {
            if let Some(mut w) = act.rtc.writer(mid)
                && let Err(e) = w.request_keyframe(rid, KeyframeRequestKind::Pli) {
                    tracing::debug!(participant = %act.id, error = %e, "keyframe request failed");
                }
            act.drive(ctx);
        });
    }
}

/// Signaling → participant: the peer's SDP offer; answers the SDP answer.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct AcceptOffer(pub String);

impl Handler<AcceptOffer> for ParticipantActor {
    type Result = Result<String, String>;
    fn handle(&mut self, m: AcceptOffer, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.guarded(ctx, |act, ctx| {
            let r = act.accept_offer(&m.0);
            act.drive(ctx);
            r
        });
        if r.as_ref().is_some_and(|r| r.is_ok()) && !self.connect_timer_armed {
            self.connect_timer_armed = true;
            ctx.run_later(self.connect_deadline, |act, ctx| {
                if !act.connected {
                    act.close("no media connection within the connect timeout", ctx);
                }
            });
        }
        r.unwrap_or_else(|| Err("internal error while handling the offer".into()))
    }
}

/// Signaling → participant: the peer's network changed or its media connection
/// was lost: offer new ICE credentials (an ICE restart, RFC 8445 §9), keeping the
/// session, its tracks and its place in the room. With a server offer in flight,
/// the restart comes in the offer after it.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RestartIce;

impl Handler<RestartIce> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, _: RestartIce, ctx: &mut Context<Self>) -> Self::Result {
        if !self.opts.renegotiate || !self.negotiated || !self.connected {
            return Err("an ICE restart needs a session that has connected once; join again".into());
        }
        if self.restart_asked.is_some_and(|at| at.elapsed() < MIN_RESTART_INTERVAL) {
            // One is under way.
            return Ok(());
        }
        self.restart_asked = Some(Instant::now());
        self.restart_wanted = true;
        // With an offer in flight, the restart follows its answer.
        self.guarded(ctx, |act, ctx| act.drive(ctx));
        Ok(())
    }
}

/// Signaling → participant: the peer came back on a new signaling connection; the
/// server offer it has not answered (if any) is sent again, since the first may
/// have been lost with the old connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResendOffer;

impl Handler<ResendOffer> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, _: ResendOffer, _: &mut Context<Self>) {
        if let Some((sdp, tracks)) = self.pending_sent.clone() {
            let _ = self.events.send(ParticipantEvent::Offer { sdp, tracks });
        }
    }
}

/// Signaling → participant: the peer's answer to the last server offer.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct AcceptAnswer(pub String);

impl Handler<AcceptAnswer> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: AcceptAnswer, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.guarded(ctx, |act, ctx| {
            let r = act.accept_answer(&m.0);
            act.drive(ctx);
            r
        });
        r.unwrap_or_else(|| Err("internal error while handling the answer".into()))
    }
}

/// Signaling → participant: the peer muted or unmuted a track.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMuted {
    /// Which kind.
    pub kind: MediaKind,
    /// Muted or not.
    pub muted: bool,
}

impl Handler<SetMuted> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: SetMuted, _: &mut Context<Self>) {
        // Only for what it publishes, and only changes: a client cannot make the
        // room repeat itself.
        let before = self.muted_now(m.kind);
        self.muted.insert(m.kind, m.muted);
        self.tell_room_if_changed(m.kind, before);
    }
}

/// Operator → participant: mute (hold) or release what it sends of one kind. Held
/// media is dropped by the server, so the peer cannot unmute itself; the room sees
/// it muted, and the peer is told why.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hold {
    /// Which kind.
    pub kind: MediaKind,
    /// Held (muted) or released.
    pub held: bool,
}

impl Handler<Hold> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: Hold, _: &mut Context<Self>) {
        let before = self.muted_now(m.kind);
        self.held.insert(m.kind, m.held);
        let _ = self.events.send(ParticipantEvent::HeldByOperator { kind: m.kind, held: m.held });
        self.tell_room_if_changed(m.kind, before);
        if !m.held && m.kind == MediaKind::Video {
            // Subscribers' decoders start again at a key frame.
            for i in self.inbound.values().filter(|i| i.published && i.track.kind == MediaKind::Video) {
                self.room.do_send(WantKeyframe(i.track.id));
            }
        }
    }
}

impl ParticipantActor {
    /// Muted as the room sees it: by the peer or by an operator.
    fn muted_now(&self, kind: MediaKind) -> bool {
        self.muted.get(&kind) == Some(&true) || self.held.get(&kind) == Some(&true)
    }

    fn tell_room_if_changed(&mut self, kind: MediaKind, before: bool) {
        let publishes = self.inbound.values().any(|i| i.published && i.track.kind == kind);
        let now = self.muted_now(kind);
        if publishes && now != before {
            self.room.do_send(Mute { id: self.id, kind, muted: now });
        }
    }
}

/// Signaling → participant: the peer raises (true) or lowers (false) its hand. Only
/// commentators may; the room tells everyone, changes only.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RaiseHand(pub bool);

impl Handler<RaiseHand> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: RaiseHand, _: &mut Context<Self>) -> Self::Result {
        if self.opts.role != "commentator" {
            return Err(format!("only commentators raise a hand; this is a {} link", self.opts.role));
        }
        if self.hand_raised != m.0 {
            self.hand_raised = m.0;
            self.room.do_send(crate::room::Hand { id: self.id, name: self.opts.name.clone(), raised: m.0 });
        }
        Ok(())
    }
}

/// Signaling → participant: a chat line from the peer (cleaned and bounded by
/// signaling). Commentators and operators may chat; the room passes it to everyone.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SendChat(pub String);

impl Handler<SendChat> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: SendChat, _: &mut Context<Self>) -> Self::Result {
        if !matches!(self.opts.role, "commentator" | "operator") {
            return Err(format!("only commentators and operators can chat; this is a {} link", self.opts.role));
        }
        self.room.do_send(crate::room::Chat { id: self.id, name: self.opts.name.clone(), text: m.0 });
        Ok(())
    }
}

/// Room → participant: pass this on to the client as it is (hands and chat).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relay(pub ParticipantEvent);

impl Handler<Relay> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: Relay, _: &mut Context<Self>) {
        let _ = self.events.send(m.0);
    }
}

/// Signaling → participant: end now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub String);

impl Handler<GetStats> for ParticipantActor {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.stats.clone();
        s.id = self.id.to_string();
        s.name = self.opts.name.clone();
        s.role = self.opts.role.to_string();
        s.connected = self.connected && !self.ice_down;
        s.layer = self.inbound.values().find_map(|i| i.rid.map(|r| r.to_string()));
        // dBov: 0 is the loudest, -127 silence.
        let recent = self.audio_level.filter(|(_, at)| at.elapsed() < Duration::from_secs(1));
        s.audio_level = recent.map(|(l, _)| ((127.0 + f64::from(l.max(-127))) / 127.0 * 100.0).round() / 100.0);
        s.speaking = recent.is_some_and(|(l, _)| l > -50);
        s.audio_muted = self.muted.get(&MediaKind::Audio).copied().unwrap_or(false);
        s.video_muted = self.muted.get(&MediaKind::Video).copied().unwrap_or(false);
        s.audio_muted_by_operator = self.held.get(&MediaKind::Audio).copied().unwrap_or(false);
        s.video_muted_by_operator = self.held.get(&MediaKind::Video).copied().unwrap_or(false);
        let mut kinds: Vec<String> = self.inbound.values().filter(|i| i.published).map(|i| format!("{:?}", i.track.kind).to_lowercase()).collect();
        kinds.sort();
        kinds.dedup();
        s.publishing = kinds;
        s.hand_raised = self.hand_raised;
        // An invitation's id is its identity; a token made otherwise has role:name.
        s.invitation = (!self.opts.identity.contains(':')).then(|| self.opts.identity.clone());
        MessageResult(s)
    }
}

impl Handler<Close> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: Close, ctx: &mut Context<Self>) {
        self.close(m.0, ctx);
    }
}

/// The signaling side's handle on a participant.
pub struct ParticipantHandle {
    /// Its id.
    pub id: ParticipantId,
    /// Who was in the room when it joined.
    pub peers: Vec<PeerInfo>,
    /// Its actor.
    pub addr: Addr<ParticipantActor>,
    /// Its events.
    pub events: tokio::sync::mpsc::UnboundedReceiver<ParticipantEvent>,
}

/// Test-only: makes the participant panic inside its guard, as a bug in the media
/// stack would.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Explode;

#[cfg(test)]
impl Handler<Explode> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, _: Explode, ctx: &mut Context<Self>) {
        self.guarded(ctx, |_, _| panic!("simulated bug"));
    }
}

#[cfg(test)]
mod rid_tests {
    use super::*;

    #[test]
    fn simulcast_layers_rank_best_first() {
        let r = |s: &str| Rid::from(s);
        assert!(rid_rank(&r("h")) < rid_rank(&r("m")));
        assert!(rid_rank(&r("m")) < rid_rank(&r("q")));
        assert!(rid_rank(&r("f")) < rid_rank(&r("q")));
        assert_eq!(rid_rank(&r("zz")), RID_PREFERENCE.len());
    }
}
