//! The ParticipantActor: the thin driver of one peer's [`PeerCore`].
//!
//! The core decides (negotiation, ICE restart, mute and hold, stats, timers); the
//! actor carries its outputs out on the media thread: datagrams to the transports,
//! events to the signaling connection, requests to the room, frames to the
//! subscribers' actors, and one timer for the core's next deadline. Every call into
//! the core runs under `catch_unwind`, so a bug or an input the media stack did not
//! expect ends this participant only.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use str0m::IceCreds;
use str0m::media::{MediaData, MediaTime};
use tokio::sync::mpsc::UnboundedSender;

use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;
use crate::peer::{PeerCore, PeerOutput, PeerSetup, RouteChange, ToRoom, VideoIn};
use crate::router::{FrameInfo, KeyframeAsk, Layer, Router};
pub use crate::peer::{ParticipantEvent, ParticipantOptions, ParticipantStats};
use crate::room::{Leave, Mute, Publish, RoomActor, Unpublish};
use crate::transport::Transports;
use crate::udp::Datagram;
use crate::{MediaKind, PeerInfo, RoomEvent, TrackDesc, TrackSource};

/// Deadlines already due that one call into the core handles at once (see
/// `ParticipantActor::pump`).
const MAX_INLINE_TIMEOUTS: u32 = 8;

/// A room's router as its actors share it (all on the media thread: the lock is
/// never contended).
pub type SharedRouter = Arc<Mutex<Router<Recipient<Forward>, Recipient<SendKeyframeRequest>>>>;

/// What a participant is connected to, given by the SFU.
pub(crate) struct Wiring {
    /// ICE credentials; the SFU routes STUN by their ufrag.
    pub creds: IceCreds,
    /// Its room's id (every line it logs names it).
    pub room_id: String,
    pub room: Addr<RoomActor>,
    /// The room's fan-out graph.
    pub router: SharedRouter,
    pub transports: Arc<Transports>,
    pub metrics: Metrics,
    pub events: UnboundedSender<ParticipantEvent>,
    pub connect_deadline: Duration,
    /// One certificate for the whole server: generating a key per peer costs a
    /// millisecond or more on every join.
    pub dtls_cert: str0m::config::DtlsCert,
    /// Counts it on its media worker while it lives.
    pub seat: crate::worker::WorkerSeat,
}

/// One peer connection.
pub struct ParticipantActor {
    core: PeerCore,
    room: Addr<RoomActor>,
    router: SharedRouter,
    span: tracing::Span,
    transports: Arc<Transports>,
    metrics: Metrics,
    events: UnboundedSender<ParticipantEvent>,
    /// The core's next deadline and the timer armed for it.
    timer: Option<(Instant, SpawnHandle)>,
    closing_reason: Option<String>,
    /// Datagrams of this turn, sent together when the core has no more output.
    outbox: Vec<str0m::net::Transmit>,
    _seat: crate::worker::WorkerSeat,
}

/// A participant's stats, for operators.
#[derive(Message)]
#[rtype(result = "ParticipantStats")]
pub struct GetStats;

impl ParticipantActor {
    pub(crate) fn new(id: ParticipantId, opts: ParticipantOptions, wiring: Wiring) -> Self {
        let Wiring { creds, room_id, room, router, transports, metrics, events, connect_deadline, dtls_cert, seat } = wiring;
        // Every line it logs names its room and itself (by id: a display name may be
        // a person's, and stays out of logs).
        let span = tracing::info_span!("participant", room = %room_id, participant = %id, role = opts.role);
        let setup = PeerSetup { creds, candidates: transports.candidates(), dtls_cert, connect_deadline, metrics: metrics.clone() };
        ParticipantActor {
            core: PeerCore::new(id, opts, setup, Instant::now()),
            room,
            router,
            span,
            transports,
            metrics,
            events,
            timer: None,
            closing_reason: None,
            outbox: Vec::new(),
            _seat: seat,
        }
    }

    fn id(&self) -> ParticipantId {
        self.core.id()
    }

    /// Ends this participant with a reason.
    fn close(&mut self, reason: impl Into<String>, ctx: &mut Context<Self>) {
        if self.closing_reason.is_none() {
            self.closing_reason = Some(reason.into());
        }
        ctx.stop();
    }

    /// Runs `f` on the core, then carries out what it decided; ends the participant
    /// (not the thread) if either panics.
    fn guarded<R>(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut PeerCore, Instant) -> R) -> Option<R> {
        // Everything logged while handling a message carries the participant's span.
        let _span = self.span.clone().entered();
        let now = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| {
            let r = f(&mut self.core, now);
            self.pump(now, ctx);
            r
        })) {
            Ok(r) => Some(r),
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(participant = %self.id(), panic = %what, "participant panicked; ending it");
                // The panic's text is for the log only, not for the client.
                self.close("internal error (the server's log says more)", ctx);
                None
            }
        }
    }

    /// Carries out the core's outputs until it asks for a timeout.
    fn pump(&mut self, mut now: Instant, ctx: &mut Context<Self>) {
        // A deadline already due (the pacer's next packet, mostly) is handled here
        // rather than through a timer and another turn of the event loop: a few
        // rounds per call, so a core that keeps asking for "now" still yields.
        let mut inline_rounds = 0;
        loop {
            match self.core.poll_output(now) {
                PeerOutput::Transmit(t) => self.outbox.push(t),
                PeerOutput::Signal(e) => {
                    let _ = self.events.send(e);
                }
                PeerOutput::Room(r) => self.tell_room(r, ctx),
                PeerOutput::Frame(track, data) => {
                    let frame = FrameInfo {
                        layer: data.rid,
                        time: data.time,
                        keyframe: data.is_keyframe(),
                        bytes: data.data.len(),
                        size: crate::resolution::of_keyframe(&data),
                    };
                    let wants = self.router.lock().unwrap().route(track, frame, now, |to, time| {
                        to.do_send(Forward { track, data: data.clone(), time });
                    });
                    if wants {
                        self.want_keyframe(track, data.rid, now);
                    }
                }
                PeerOutput::WantKeyframe(track) => {
                    let layers = self.router.lock().unwrap().keyframe_layers(track, self.id(), now);
                    for layer in layers {
                        self.want_keyframe(track, layer, now);
                    }
                }
                PeerOutput::WantLayerKeyframe(track, layer) => self.want_keyframe(track, layer, now),
                PeerOutput::Allocate(tracks) => self.allocate(tracks, now),
                PeerOutput::Route(RouteChange::Alias(new)) => self.transports.alias(self.core.route_key(), &new),
                PeerOutput::Route(RouteChange::Retire(old)) => self.transports.retire(&old),
                PeerOutput::Timeout(at) => {
                    if inline_rounds < MAX_INLINE_TIMEOUTS {
                        let fresh = Instant::now();
                        if at <= fresh {
                            inline_rounds += 1;
                            now = fresh;
                            self.core.handle_timeout(now);
                            continue;
                        }
                    }
                    self.transports.send_all(&mut self.outbox);
                    self.arm_timer(at, ctx);
                    return;
                }
                PeerOutput::Closed(reason) => {
                    self.transports.send_all(&mut self.outbox);
                    self.close(reason, ctx);
                    return;
                }
            }
        }
    }

    fn tell_room(&mut self, r: ToRoom, ctx: &mut Context<Self>) {
        let id = self.id();
        match r {
            ToRoom::Publish { mid, track } => {
                // Nothing else reaches this participant until the room answers.
                self.room
                    .send(Publish(track))
                    .into_actor(self)
                    .map(move |res, act, ctx| {
                        if let Ok(res) = res {
                            act.guarded(ctx, |core, now| core.published(now, mid, res.map_err(|e| e.to_string())));
                        }
                    })
                    .wait(ctx);
            }
            ToRoom::Mute { kind, muted } => self.room.do_send(Mute { id, kind, muted }),
            ToRoom::Hand(raised) => {
                self.room.do_send(crate::room::Hand { id, name: self.core.options().name.clone(), raised })
            }
            ToRoom::Chat(text) => {
                self.room.do_send(crate::room::Chat { id, name: self.core.options().name.clone(), text })
            }
        }
    }

    /// Asks the publisher of `track` for a keyframe of `layer` through the
    /// router's throttle: now, later (one request for all that come meanwhile), or
    /// not at all.
    fn want_keyframe(&mut self, track: TrackId, layer: Layer, now: Instant) {
        ask_keyframe(&self.router, &self.metrics, track, layer, now);
    }

    /// Shares this subscriber's estimate among the video tracks it receives, as
    /// their layers arrive now, and gives the router the result; a layer it now
    /// waits for is asked for a keyframe.
    fn allocate(&mut self, tracks: Vec<(TrackId, TrackSource)>, now: Instant) {
        let video: Vec<VideoIn> = {
            let router = self.router.lock().unwrap();
            tracks.into_iter().map(|(track, source)| VideoIn { track, source, layers: router.layers(track, now) }).collect()
        };
        let changed = self.core.allocate(now, &video);
        for (track, target) in changed {
            let wait = self.router.lock().unwrap().set_target(track, self.id(), target, now);
            if let Some(layer) = wait {
                self.want_keyframe(track, layer, now);
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
            act.guarded(ctx, |core, now| core.handle_timeout(now));
        });
        self.timer = Some((at, h));
    }
}

impl Actor for ParticipantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics.participants.with_label_values(&[self.core.options().role]).inc();
        self.guarded(ctx, |_, _| ());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.metrics.participants.with_label_values(&[self.core.options().role]).dec();
        self.transports.unregister(self.core.route_key());
        for t in self.core.end() {
            self.room.do_send(Unpublish(t));
        }
        self.room.do_send(Leave(self.id()));
        let reason = self.closing_reason.take().unwrap_or_else(|| "left".into());
        tracing::info!(participant = %self.id(), %reason, "participant ended");
        let _ = self.events.send(ParticipantEvent::Closed(reason));
    }
}

impl Handler<Datagram> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, d: Datagram, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.receive(d.at, d.proto, d.source, d.destination, &d.data));
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
    /// Its RTP time for this subscriber (its layer's, run on across switches).
    pub time: MediaTime,
}

impl Handler<Forward> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, f: Forward, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, now| core.write(now, f.track, &f.data, f.time));
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

/// Room → subscriber: you receive this track now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeTrack(pub TrackDesc);

impl Handler<SubscribeTrack> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: SubscribeTrack, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.subscribe(m.0));
    }
}

/// Room → subscriber: this track ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnsubscribeTrack(pub TrackId);

impl Handler<UnsubscribeTrack> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: UnsubscribeTrack, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.unsubscribe(m.0));
    }
}

/// Router → publisher: ask your peer for a keyframe of this track (a subscriber
/// asked, through the router's throttle).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendKeyframeRequest {
    /// The track.
    pub track: TrackId,
    /// Its layer (`None`: a single-layer track's, or every layer's).
    pub layer: Layer,
    /// Now (`None`), or at this time if the router's throttle still has it due
    /// then (the requests that came in the meantime, as one).
    pub at: Option<Instant>,
}

impl Handler<SendKeyframeRequest> for ParticipantActor {
    type Result = ();
    fn handle(&mut self, m: SendKeyframeRequest, ctx: &mut Context<Self>) {
        let (track, layer) = (m.track, m.layer);
        let Some(at) = m.at else {
            self.guarded(ctx, |core, _| core.request_keyframe(track, layer));
            return;
        };
        ctx.run_later(at.saturating_duration_since(Instant::now()), move |act, ctx| {
            if act.router.lock().unwrap().keyframe_due(track, layer, Instant::now()).is_some() {
                act.metrics.keyframe_requests.inc();
                act.guarded(ctx, |core, _| core.request_keyframe(track, layer));
            }
        });
    }
}

/// Asks whoever makes `layer` of `track` (its publisher, or the server's ladder)
/// for a keyframe through the router's throttle: now, later (one request for all
/// that come meanwhile), or not at all. For a subscriber, and for the ladder as the
/// source's consumer.
pub(crate) fn ask_keyframe(router: &SharedRouter, metrics: &Metrics, track: TrackId, layer: Layer, now: Instant) {
    match router.lock().unwrap().want_keyframe(track, layer, now) {
        KeyframeAsk::Now(publisher) => {
            metrics.keyframe_requests.inc();
            publisher.do_send(SendKeyframeRequest { track, layer, at: None });
        }
        // The publisher keeps the time: it lives as long as the track, where the
        // one asking may leave before then.
        KeyframeAsk::At(publisher, at) => publisher.do_send(SendKeyframeRequest { track, layer, at: Some(at) }),
        KeyframeAsk::Nothing => {}
    }
}

/// Signaling → participant: the peer's SDP offer; answers the SDP answer.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct AcceptOffer(pub String);

impl Handler<AcceptOffer> for ParticipantActor {
    type Result = Result<String, String>;
    fn handle(&mut self, m: AcceptOffer, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |core, now| core.accept_offer(now, &m.0))
            .unwrap_or_else(|| Err("internal error while handling the offer".into()))
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
        self.guarded(ctx, |core, now| core.restart_ice(now))
            .unwrap_or_else(|| Err("internal error while restarting ICE".into()))
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
    fn handle(&mut self, _: ResendOffer, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.resend_offer());
    }
}

/// Signaling → participant: the peer's answer to the last server offer.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct AcceptAnswer(pub String);

impl Handler<AcceptAnswer> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: AcceptAnswer, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |core, _| core.accept_answer(&m.0))
            .unwrap_or_else(|| Err("internal error while handling the answer".into()))
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
    fn handle(&mut self, m: SetMuted, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.set_muted(m.kind, m.muted));
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
    fn handle(&mut self, m: Hold, ctx: &mut Context<Self>) {
        self.guarded(ctx, |core, _| core.hold(m.kind, m.held));
    }
}

/// Signaling → participant: the peer raises (true) or lowers (false) its hand. Only
/// commentators may; the room tells everyone, changes only.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RaiseHand(pub bool);

impl Handler<RaiseHand> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: RaiseHand, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |core, _| core.raise_hand(m.0)).unwrap_or_else(|| Err("internal error".into()))
    }
}

/// Signaling → participant: a chat line from the peer (cleaned and bounded by
/// signaling). Commentators and operators may chat; the room passes it to everyone.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct SendChat(pub String);

impl Handler<SendChat> for ParticipantActor {
    type Result = Result<(), String>;
    fn handle(&mut self, m: SendChat, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |core, _| core.chat(m.0)).unwrap_or_else(|| Err("internal error".into()))
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
        let mut s = self.core.stats(Instant::now());
        // A one-layer feed that the server makes a ladder of: its layers too.
        if s.layer.is_none()
            && let Some(track) = self.core.published_video()
        {
            let made = self.router.lock().unwrap().made_layers(track);
            if !made.is_empty() {
                let names = std::iter::once("source".to_string()).chain(made.iter().flatten().map(|r| r.to_string()));
                s.layer = Some(names.collect::<Vec<_>>().join(","));
            }
        }
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
