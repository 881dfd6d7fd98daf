//! The sans-IO peer core: one peer connection's negotiation, ICE restart,
//! mute/hold, stats and timers, around its str0m [`Rtc`].
//!
//! [`PeerCore`] never touches a socket, a clock or another actor. It takes inputs
//! (a datagram received, an SDP, a frame to send, a command) each with the time
//! `now`, and returns what to do through [`PeerCore::poll_output`]: datagrams to
//! transmit, events for the signaling connection, requests for the room, frames for
//! its subscribers, route changes for the transports, and when to call
//! [`PeerCore::handle_timeout`] next. Its own deadlines (an offer, an answer, the
//! connection, a lost connection's grace) are kept as times and fire from
//! `handle_timeout`, like the `Rtc`'s.
//!
//! The [`ParticipantActor`](crate::ParticipantActor) drives it on the media thread;
//! the simulated-network tests (`sim`) drive it in virtual time.
//!
//! Its parts: this file (inputs, the poll loop, deadlines, what it receives),
//! `negotiation` (which track goes out on which m-line; offers, answers, ICE
//! restarts), `sending` (its tracks, mute and hold, hands and chat), `allocation`
//! (its bandwidth shared among the video it receives), `stats`, and `outputs` (its
//! settings and everything it asks of its driver).

mod allocation;
mod negotiation;
mod outputs;
mod sending;
#[cfg(test)]
mod sim;
mod stats;
mod uplink;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{MediaData, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;
use crate::udp::is_rtp;
use crate::{MediaKind, Subscribe, TrackDesc, TrackSource};
pub use allocation::{Allocation, Allocator, VideoIn};
use negotiation::Negotiation;
pub use outputs::*;
use sending::Inbound;
pub use stats::ParticipantStats;
use stats::StatsTracker;

/// How long a lost ICE connection may take to come back before the participant ends.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Least time between two ICE restarts a peer asks for.
const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// How long the peer may take to answer a server offer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after joining the peer may take to send its first offer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(120);

/// Video packets kept per m-line for resends; see [`PeerCore::new`].
const SEND_BUFFER_VIDEO_PACKETS: usize = 400;

/// Where a subscriber's bandwidth estimate starts: its video starts on the
/// layers that fit this (a 360p layer), and its first probes (at 3 and 6 times
/// this) find a good link's capacity within a second or two, as LiveKit starts
/// low and climbs. Starting at the top instead floods a weak link until the
/// estimate has learnt it, and the losses that follow sink the estimate far below
/// what the link carries.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1_000);

/// The longest str0m's pacer may hold a subscriber's media on average (patched
/// in, vendor/README.md). A stream the server cannot shrink (a single-layer
/// feed) over an estimate that dips below it waits at most this long, not the 2 s
/// an encoder's pacer allows.
const PACER_QUEUE_LIMIT: Duration = Duration::from_millis(100);

/// One peer connection, sans IO.
pub struct PeerCore {
    id: ParticipantId,
    opts: ParticipantOptions,
    rtc: Rtc,
    metrics: Metrics,
    /// The ufrag it registered with the transports: its route key for life.
    ufrag: String,
    neg: Negotiation,
    inbound: HashMap<Mid, Inbound>,
    connected: bool,
    /// ICE is checking a new path (a restart) after having connected.
    ice_checking: bool,
    /// Where media was last sent: the peer's address and protocol on the path ICE
    /// selected.
    media_path: Option<(SocketAddr, Protocol)>,
    /// Since when ICE has been down (Disconnected and not recovered).
    ice_down: Option<Instant>,
    /// When the last ICE restart was asked for: a lost connection waits for it.
    restart_asked: Option<Instant>,
    /// Mute state the peer announced, by kind, to pass on changes only.
    muted: HashMap<MediaKind, bool>,
    /// Kinds an operator muted: not forwarded until released.
    held: HashMap<MediaKind, bool>,
    hand_raised: bool,
    stats: StatsTracker,
    /// Shares its bandwidth estimate among the video it receives (when it
    /// receives anything: publishers alone have no estimate).
    allocator: Option<Allocator>,
    /// When the next allocation is due.
    next_allocation: Option<Instant>,
    /// The `minimum` and `desired` last given to str0m's estimator.
    bwe_rates: (u64, u64),
    /// The layer it is given of its first video track (the feed), for operators.
    receiving: Option<String>,
    /// When the ceilings of what it publishes are next asked for and checked.
    next_uplink_check: Option<Instant>,
    /// The first offer must come by then.
    offer_by: Instant,
    /// The connection must be up by then (set by the first offer).
    connect_by: Option<Instant>,
    connect_deadline: Duration,
    /// The `Rtc`'s next timeout.
    rtc_timeout: Option<Instant>,
    queue: VecDeque<PeerOutput>,
    /// Why it ends; reported once through [`PeerOutput::Closed`].
    closing: Option<String>,
    closed: bool,
}

impl PeerCore {
    /// A peer waiting for its client's first offer.
    pub fn new(id: ParticipantId, opts: ParticipantOptions, setup: PeerSetup, now: Instant) -> PeerCore {
        let PeerSetup { creds, candidates, dtls_cert, connect_deadline, metrics } = setup;
        let ufrag = creds.ufrag.clone();
        // Commentators and viewers get what their links hold. Operators (the
        // program's compositor, which mixes the best layers, and the consoles in
        // the distribution center) get the best layers.
        let receives = opts.subscribe != Subscribe::None && opts.role != "operator";
        let mut builder = Rtc::builder();
        if receives {
            // TWCC feedback from the subscriber drives str0m's estimate (GCC) of
            // what the path to it carries; the allocator shares it out.
            builder = builder.enable_bwe(Some(INITIAL_ESTIMATE)).set_pacer_queue_limit(PACER_QUEUE_LIMIT);
        }
        let mut rtc = builder
            .set_ice_lite(true)
            .set_local_ice_credentials(creds)
            .set_dtls_cert(dtls_cert)
            // The video send buffer holds each subscriber's packetized copies for
            // resends (NACK). str0m's default, 1000 packets, is 1.2 MB per video
            // m-line; 400 packets keep 1.6 s of a 2.5 Mbit/s feed, enough for
            // NACK round trips and a whole keyframe, at 0.5 MB.
            .set_send_buffer_video(SEND_BUFFER_VIDEO_PACKETS)
            .set_stats_interval(Some(Duration::from_secs(2)))
            .build(now);
        for c in candidates {
            rtc.add_local_candidate(c);
        }
        PeerCore {
            id,
            opts,
            rtc,
            metrics,
            neg: Negotiation::new(ufrag.clone()),
            ufrag,
            inbound: HashMap::new(),
            connected: false,
            ice_checking: false,
            media_path: None,
            ice_down: None,
            restart_asked: None,
            muted: HashMap::new(),
            held: HashMap::new(),
            hand_raised: false,
            stats: StatsTracker::default(),
            allocator: receives.then(Allocator::default),
            next_allocation: None,
            bwe_rates: (0, 0),
            receiving: None,
            next_uplink_check: None,
            offer_by: now + OFFER_TIMEOUT,
            connect_by: None,
            connect_deadline,
            rtc_timeout: None,
            queue: VecDeque::new(),
            closing: None,
            closed: false,
        }
    }

    /// Its id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Its settings.
    pub fn options(&self) -> &ParticipantOptions {
        &self.opts
    }

    /// The ufrag it registered with the transports (its route key for life).
    pub fn route_key(&self) -> &str {
        &self.ufrag
    }

    /// ICE and DTLS are up (and not lost now).
    pub fn is_connected(&self) -> bool {
        self.connected && self.ice_down.is_none()
    }

    /// Ends the peer with a reason (the first reason given is kept).
    pub fn close(&mut self, reason: impl Into<String>) {
        if self.closing.is_none() {
            self.closing = Some(reason.into());
        }
    }

    /// The peer is over: its `Rtc` disconnects, and the tracks it published are
    /// returned for the room to remove.
    pub fn end(&mut self) -> Vec<TrackId> {
        self.rtc.disconnect();
        self.inbound.values().filter(|i| i.published).map(|i| i.track.id).collect()
    }

    /// A datagram (or ICE-TCP frame) for this peer arrived.
    pub fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents });
        match self.rtc.handle_input(input) {
            Ok(()) => {}
            Err(e) if self.is_handshake_failure(&e) => self.handshake_failed(&e),
            Err(e) => tracing::debug!(participant = %self.id, error = %e, "bad datagram"),
        }
    }

    /// The time given by [`PeerOutput::Timeout`] has come (or passed).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.rtc_timeout.is_some_and(|at| at <= now) {
            self.rtc_timeout = None;
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.close(format!("media error: {e}"));
                return;
            }
        }
        if self.next_uplink_check.is_some_and(|at| at <= now) {
            self.next_uplink_check = Some(now + uplink::UPLINK_CHECK_EVERY);
            self.check_uplink(now);
        }
        if self.next_allocation.is_some_and(|at| at <= now) {
            self.next_allocation = Some(now + allocation::REALLOCATE_EVERY);
            self.queue.push_back(PeerOutput::Allocate(self.neg.open_video()));
        }
        if !self.neg.negotiated && now >= self.offer_by {
            self.close("no SDP offer within 2 minutes of joining");
        } else if !self.connected && self.connect_by.is_some_and(|at| now >= at) {
            self.close("no media connection within the connect timeout");
        } else if self.neg.answer_overdue(now) {
            self.close("no answer to the server's offer within 30 s");
        } else if self.down_deadline().is_some_and(|at| now >= at) {
            self.close("media connection lost");
        }
    }

    /// When a lost connection ends the peer: [`DISCONNECT_GRACE`] after the loss or
    /// after the last ICE restart the peer asked for, whichever is later (a peer
    /// that moved networks gets its grace for the restart).
    fn down_deadline(&self) -> Option<Instant> {
        let down = self.ice_down?;
        Some(self.restart_asked.map_or(down, |r| r.max(down)) + DISCONNECT_GRACE)
    }

    /// The earliest of the `Rtc`'s timeout and the peer's own deadlines.
    fn next_timeout(&self) -> Instant {
        let mut at = [
            self.rtc_timeout,
            (!self.neg.negotiated).then_some(self.offer_by),
            self.connect_by.filter(|_| !self.connected),
            self.neg.answer_by(),
            self.down_deadline(),
            self.next_allocation,
            self.next_uplink_check,
        ]
        .into_iter()
        .flatten();
        let first = at.next().unwrap_or(self.offer_by);
        at.fold(first, Instant::min)
    }

    /// What to do next. Call until it returns [`PeerOutput::Timeout`] (or
    /// [`PeerOutput::Closed`]) after every input.
    pub fn poll_output(&mut self, now: Instant) -> PeerOutput {
        loop {
            if let Some(o) = self.queue.pop_front() {
                return o;
            }
            if self.closed {
                return PeerOutput::Timeout(now + OFFER_TIMEOUT);
            }
            if let Some(reason) = self.closing.clone() {
                self.closed = true;
                return PeerOutput::Closed(reason);
            }
            if !self.rtc.is_alive() {
                self.close("connection closed");
                continue;
            }
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    if is_rtp(&t.contents) {
                        self.metrics.rtp_packets_forwarded.inc();
                        self.metrics.rtp_bytes_forwarded.inc_by(t.contents.len() as u64);
                        // The peer moved its media to another path (it nominated a
                        // new pair, after a restart or by itself): what went down the
                        // old one is lost, and a keyframe asked for when ICE first
                        // answered on the new one may have gone there too. Its
                        // decoders start again at a keyframe, asked for now.
                        let path = (t.destination, t.proto);
                        if self.media_path.is_some_and(|p| p != path) {
                            tracing::debug!(participant = %self.id, "media path changed");
                            self.want_keyframes(self.neg.open_tracks());
                        }
                        self.media_path = Some(path);
                    }
                    return PeerOutput::Transmit(t);
                }
                Ok(Output::Event(e)) => self.handle_event(now, e),
                Ok(Output::Timeout(at)) => {
                    self.rtc_timeout = Some(at);
                    // Drained: events such as MediaAdded have bound tracks to
                    // m-lines the peer offered, so only what is still unbound goes
                    // into a server offer. Applying one changes the session: drain
                    // again.
                    if self.negotiate(now) {
                        continue;
                    }
                    return PeerOutput::Timeout(self.next_timeout());
                }
                Err(e) if self.is_handshake_failure(&e) => self.handshake_failed(&e),
                Err(e) => {
                    tracing::warn!(participant = %self.id, error = %e, "rtc failed");
                    self.close(format!("media error: {e}"));
                }
            }
        }
    }

    /// A DTLS error before the media connected, or a peer certificate that is not
    /// the one its SDP named (str0m reports that as an SDP error once DTLS gives
    /// the certificate).
    fn is_handshake_failure(&self, e: &str0m::RtcError) -> bool {
        !self.connected
            && match e {
                str0m::RtcError::Dtls(_) => true,
                str0m::RtcError::RemoteSdp(m) => m.contains("fingerprint"),
                _ => false,
            }
    }

    /// A failed DTLS handshake does not recover: say why (the peer's certificate
    /// kind, a certificate that is not the one its SDP named…) and end at once
    /// rather than at the connect timeout.
    fn handshake_failed(&mut self, e: &str0m::RtcError) {
        tracing::warn!(participant = %self.id, reason = %e, "DTLS handshake failed");
        self.metrics.dropped.with_label_values(&["dtls_failed"]).inc();
        self.close(format!("the media encryption handshake (DTLS) failed: {e}"));
    }

    fn want_keyframe(&mut self, track: TrackId) {
        self.queue.push_back(PeerOutput::WantKeyframe(track));
    }

    fn signal(&mut self, e: ParticipantEvent) {
        self.queue.push_back(PeerOutput::Signal(e));
    }

    fn tell_room(&mut self, r: ToRoom) {
        self.queue.push_back(PeerOutput::Room(r));
    }

    fn handle_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.signal(ParticipantEvent::Connection(true));
                tracing::info!(participant = %self.id, "media connected");
                self.want_keyframes(self.neg.open_tracks());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // A short network blip can recover (str0m goes back to Checking and
                // Completed when binding requests come again): wait before ending.
                if self.ice_down.is_none() {
                    self.ice_down = Some(now);
                }
                self.signal(ParticipantEvent::Connection(false));
            }
            Event::IceConnectionStateChange(IceConnectionState::Checking) if self.connected => {
                // An ICE restart (or a new path) is being checked: what is sent now
                // goes down the old path and is lost; a keyframe is asked for once
                // the new path is up.
                self.ice_checking = true;
            }
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed)
                if self.ice_down.is_some() || self.ice_checking =>
            {
                if self.ice_down.take().is_some() {
                    self.signal(ParticipantEvent::Connection(true));
                }
                self.ice_checking = false;
                // What was sent while it was away is lost: its decoders start again
                // at a keyframe, asked for now rather than after its first loss
                // report.
                self.want_keyframes(self.neg.open_tracks());
            }
            Event::MediaAdded(m) => self.media_added(m.mid, m.kind, m.direction),
            Event::MediaData(data) => self.media_in(now, data),
            Event::KeyframeRequest(req) => {
                if let Some(t) = self.neg.open_track_on(req.mid) {
                    self.want_keyframe(t);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. }) => {
                self.estimated(now, estimate.as_u64())
            }
            Event::PeerStats(p) => {
                self.stats.peer(now, &p);
                if let Some(a) = &mut self.allocator {
                    a.set_loss(p.egress_loss_fraction);
                }
            }
            Event::MediaIngressStats(m) => {
                let video = self.inbound.get(&m.mid).is_some_and(|i| i.track.kind == MediaKind::Video);
                self.stats.ingress(video, &m);
            }
            _ => {}
        }
    }

    fn media_added(&mut self, mid: Mid, kind: MediaKind, dir: str0m::media::Direction) {
        use str0m::media::Direction;
        if matches!(dir, Direction::RecvOnly | Direction::SendRecv) && self.opts.publish.is_some() {
            let track = TrackDesc {
                id: TrackId::next(),
                participant: self.id,
                name: self.opts.name.clone(),
                kind,
                // The room sets the real source from the role.
                source: TrackSource::Commentator,
            };
            self.inbound.insert(mid, Inbound { track: track.clone(), published: false, rids: Vec::new(), ceiling: None, dir });
            self.tell_room(ToRoom::Publish { mid, track });
        }
        if matches!(dir, Direction::SendOnly | Direction::SendRecv) {
            let bound = self.neg.peer_mid(mid, kind);
            self.bound(bound);
        }
    }

    /// Tracks newly bound to m-lines the peer offered: their first frames need a
    /// keyframe (asked for now if the media is up, else when it connects), and the
    /// client learns which track each m-line carries.
    fn bound(&mut self, bound: Vec<(Mid, TrackDesc)>) {
        for (mid, track) in bound {
            if self.connected {
                self.want_keyframe(track.id);
            }
            self.signal(ParticipantEvent::Bound { mid: mid.to_string(), track });
        }
    }

    /// These tracks it receives need a keyframe to start (again): asked of their
    /// publishers through the router's throttle.
    fn want_keyframes(&mut self, tracks: impl IntoIterator<Item = TrackId>) {
        for t in tracks {
            self.want_keyframe(t);
        }
    }

    /// Writes a frame of a track it subscribes to, with the RTP time the router
    /// gave it (its layer's time, carried on across layer switches).
    pub fn write(&mut self, now: Instant, track: TrackId, data: &MediaData, time: MediaTime) {
        let Some(mid) = self.neg.mid_of(track) else {
            if self.neg.has(track) {
                self.metrics.dropped.with_label_values(&["not_negotiated"]).inc();
            }
            return;
        };
        if !self.is_connected() {
            return;
        }
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer.match_params(data.params) else {
            self.metrics.dropped.with_label_values(&["codec_mismatch"]).inc();
            return;
        };
        if let Err(e) = writer.write(pt, data.network_time, time, data.data.clone()) {
            tracing::debug!(participant = %self.id, error = %e, "write failed");
            return;
        }
        self.metrics
            .forward_latency
            .observe(now.saturating_duration_since(data.network_time).as_secs_f64());
    }

    /// The peer now receives this track.
    pub fn subscribe(&mut self, track: TrackDesc) {
        tracing::debug!(participant = %self.id, track = %track.id, "subscribed");
        let bound = self.neg.subscribe(track);
        self.bound(bound);
    }

    /// A track it received ended.
    pub fn unsubscribe(&mut self, track: TrackId) {
        if let Some(a) = &mut self.allocator {
            a.forget(track);
        }
        let bound = self.neg.unsubscribe(track, self.opts.renegotiate);
        self.bound(bound);
    }

    /// The peer's SDP offer; returns the answer.
    pub fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String, String> {
        let answer = self.neg.accept_offer(&mut self.rtc, sdp)?;
        if self.connect_by.is_none() {
            // A browser may wait on a camera permission prompt before it offers:
            // the connect timeout counts from the offer on.
            self.connect_by = Some(now + self.connect_deadline);
        }
        Ok(answer)
    }

    /// The peer's answer to the last server offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let done = self.neg.accept_answer(&mut self.rtc, sdp)?;
        if let Some(old) = done.retired_ufrag {
            // The old credentials are void now: stop routing checks that name them.
            self.queue.push_back(PeerOutput::Route(RouteChange::Retire(old)));
            tracing::info!(participant = %self.id, "ICE restarted");
        }
        self.want_keyframes(done.opened);
        tracing::debug!(participant = %self.id, "answer accepted");
        Ok(())
    }

    /// The peer's network changed or its media connection was lost: offer new ICE
    /// credentials (an ICE restart, RFC 8445 §9), keeping the session, its tracks and
    /// its place in the room. With a server offer in flight, the restart comes in
    /// the offer after it.
    pub fn restart_ice(&mut self, now: Instant) -> Result<(), String> {
        if !self.opts.renegotiate || !self.neg.negotiated || !self.connected {
            return Err("an ICE restart needs a session that has connected once; join again".into());
        }
        if self.restart_asked.is_some_and(|at| now.saturating_duration_since(at) < MIN_RESTART_INTERVAL) {
            // One is under way.
            return Ok(());
        }
        self.restart_asked = Some(now);
        self.neg.want_restart();
        Ok(())
    }

    /// The peer came back on a new signaling connection: the server offer it has
    /// not answered (if any) is sent again, since the first may have been lost with
    /// the old connection.
    pub fn resend_offer(&mut self) {
        if let Some((sdp, tracks)) = self.neg.pending_offer() {
            self.signal(ParticipantEvent::Offer { sdp, tracks });
        }
    }

    /// Builds a server offer when subscriptions changed and the peer can take one;
    /// true if one was made.
    fn negotiate(&mut self, now: Instant) -> bool {
        // Not before the media connection is up: str0m announces the peer's m-lines
        // (MediaAdded) only then, and tracks bind to m-lines the peer offered for
        // receiving before any new ones are offered.
        if !self.opts.renegotiate || !self.connected {
            return false;
        }
        let Some(offer) = self.neg.offer(&mut self.rtc, now) else {
            return false;
        };
        if let Some(new) = offer.new_ufrag {
            // The peer checks the new credentials from wherever it is now: route
            // them here.
            self.queue.push_back(PeerOutput::Route(RouteChange::Alias(new)));
        }
        tracing::debug!(participant = %self.id, tracks = offer.tracks.len(), ice_restart = self.neg.restarting(), "server offer");
        self.signal(ParticipantEvent::Offer { sdp: offer.sdp, tracks: offer.tracks });
        true
    }

    /// What an operator sees of it now.
    pub fn stats(&self, now: Instant) -> ParticipantStats {
        let mut s = self.stats.snapshot(now);
        s.id = self.id.to_string();
        s.name = self.opts.name.clone();
        s.role = self.opts.role.to_string();
        s.connected = self.is_connected();
        s.layer = self.layers_in();
        s.receiving = self.receiving.clone();
        s.estimate_kbps = self.allocator.as_ref().and_then(|a| a.estimate()).map(|b| b / 1000);
        s.delay_estimate_kbps = self.allocator.as_ref().and_then(|a| a.delay_estimate()).map(|b| b / 1000);
        s.audio_muted = self.muted.get(&MediaKind::Audio).copied().unwrap_or(false);
        s.video_muted = self.muted.get(&MediaKind::Video).copied().unwrap_or(false);
        s.audio_muted_by_operator = self.held.get(&MediaKind::Audio).copied().unwrap_or(false);
        s.video_muted_by_operator = self.held.get(&MediaKind::Video).copied().unwrap_or(false);
        let mut kinds: Vec<String> = self
            .inbound
            .values()
            .filter(|i| i.published)
            .map(|i| format!("{:?}", i.track.kind).to_lowercase())
            .collect();
        kinds.sort();
        kinds.dedup();
        s.publishing = kinds;
        s.hand_raised = self.hand_raised;
        // An invitation's id is its identity; a token made otherwise has role:name.
        s.invitation = (!self.opts.identity.contains(':')).then(|| self.opts.identity.clone());
        s
    }
}
