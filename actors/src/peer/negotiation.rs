//! Which tracks go out on which m-lines, and the offers and answers that get them
//! there: m-lines the peer offered for receiving (WHEP, the compositor) are used
//! first; for a peer that can renegotiate, the rest go into server offers, as do
//! stopped tracks and ICE restarts.

use std::collections::HashSet;
use std::time::Instant;

use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, Mid};

use super::ANSWER_TIMEOUT;
use crate::ids::TrackId;
use crate::{MediaKind, TrackDesc, TrackSource};

/// Most m-lines accepted in one offer.
const MAX_MLINES: usize = 256;

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

/// A server offer made.
pub(super) struct Offer {
    pub sdp: String,
    /// Which track each new m-line carries.
    pub tracks: Vec<(String, TrackDesc)>,
    /// The ICE restart's new ufrag, if the offer restarts ICE.
    pub new_ufrag: Option<String>,
}

/// What an accepted answer settled.
pub(super) struct Settled {
    /// Tracks whose m-lines are open now: their first frames need a keyframe.
    pub opened: Vec<TrackId>,
    /// The ufrag an ICE restart replaced.
    pub retired_ufrag: Option<String>,
}

/// The outgoing side of a peer's session.
pub(super) struct Negotiation {
    outbound: Vec<Outbound>,
    /// `recvonly` m-lines the peer offered and no track uses yet (WHEP).
    free_mids: Vec<(Mid, MediaKind)>,
    /// Every m-line the peer offered for receiving: when its track ends it is kept
    /// for the next track of its kind instead of being stopped.
    peer_mids: HashSet<Mid>,
    /// Our offer, waiting for the peer's answer, and when the answer is due.
    pending: Option<(SdpPendingOffer, Instant)>,
    /// That offer as sent, to send again to a peer that resumes its session on a
    /// new connection (the first may have been lost with the old one).
    pending_sent: Option<(String, Vec<(String, TrackDesc)>)>,
    /// The last answer accepted: the same answer again (to an offer sent twice) is
    /// taken quietly.
    last_answer: Option<String>,
    /// The peer's first offer was answered: server offers may follow.
    pub negotiated: bool,
    /// The ufrag its ICE agent answers to now (a restart replaces it).
    current_ufrag: String,
    /// The peer asked for an ICE restart: the next server offer carries new ICE
    /// credentials.
    restart_wanted: bool,
    /// The new ufrag of a restart offered and not yet answered.
    restarting: Option<String>,
    /// M-lines whose receiving the room refused, with their new direction, for
    /// the next server offer.
    refused: Vec<(Mid, Direction)>,
    /// Something may need offering (a track to add or stop, a restart): without
    /// it, [`Negotiation::offer`] returns at once, as it does after every datagram.
    changed: bool,
}

impl Negotiation {
    pub fn new(ufrag: String) -> Negotiation {
        Negotiation {
            outbound: Vec::new(),
            free_mids: Vec::new(),
            peer_mids: HashSet::new(),
            pending: None,
            pending_sent: None,
            last_answer: None,
            negotiated: false,
            current_ufrag: ufrag,
            restart_wanted: false,
            restarting: None,
            refused: Vec::new(),
            changed: false,
        }
    }

    /// Tracks on open m-lines.
    pub fn open_tracks(&self) -> Vec<TrackId> {
        self.outbound.iter().filter(|o| matches!(o.state, OutState::Open(_))).map(|o| o.track.id).collect()
    }

    /// Video tracks on open m-lines, with where they come from.
    pub fn open_video(&self) -> Vec<(TrackId, crate::TrackSource)> {
        self.outbound
            .iter()
            .filter(|o| matches!(o.state, OutState::Open(_)) && o.track.kind == MediaKind::Video)
            .map(|o| (o.track.id, o.track.source))
            .collect()
    }

    /// How many audio tracks are on open m-lines.
    pub fn open_audio(&self) -> usize {
        self.outbound.iter().filter(|o| matches!(o.state, OutState::Open(_)) && o.track.kind == MediaKind::Audio).count()
    }

    /// The track open on `mid`.
    pub fn open_track_on(&self, mid: Mid) -> Option<TrackId> {
        self.outbound.iter().find(|o| o.state == OutState::Open(mid)).map(|o| o.track.id)
    }

    /// The open m-line of a track it receives.
    pub fn mid_of(&self, track: TrackId) -> Option<Mid> {
        match self.outbound.iter().find(|o| o.track.id == track)?.state {
            OutState::Open(mid) => Some(mid),
            _ => None,
        }
    }

    /// It receives this track (whether or not its m-line is open yet).
    pub fn has(&self, track: TrackId) -> bool {
        self.outbound.iter().any(|o| o.track.id == track)
    }

    /// The peer offered `mid` for receiving: it carries a waiting track, or the
    /// next one of its kind.
    pub fn peer_mid(&mut self, mid: Mid, kind: MediaKind) -> Vec<(Mid, TrackDesc)> {
        self.free_mids.push((mid, kind));
        self.peer_mids.insert(mid);
        self.bind_free_mids()
    }

    pub fn subscribe(&mut self, track: TrackDesc) -> Vec<(Mid, TrackDesc)> {
        if self.has(track.id) {
            return Vec::new();
        }
        self.outbound.push(Outbound { track, state: OutState::Unbound });
        self.changed = true;
        self.bind_free_mids()
    }

    pub fn unsubscribe(&mut self, track: TrackId, renegotiate: bool) -> Vec<(Mid, TrackDesc)> {
        let peer_mids = &self.peer_mids;
        let changed = &mut self.changed;
        let mut freed = Vec::new();
        self.outbound.retain_mut(|o| {
            if o.track.id != track {
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
                    *changed = true;
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
        self.bind_free_mids()
    }

    /// Binds unbound subscriptions to m-lines the peer offered, feed first.
    fn bind_free_mids(&mut self) -> Vec<(Mid, TrackDesc)> {
        let mut order: Vec<usize> =
            (0..self.outbound.len()).filter(|&i| self.outbound[i].state == OutState::Unbound).collect();
        order.sort_by_key(|&i| self.outbound[i].track.source != TrackSource::Feed);
        let mut bound = Vec::new();
        for i in order {
            let kind = self.outbound[i].track.kind;
            if let Some(pos) = self.free_mids.iter().position(|(_, k)| *k == kind) {
                let (mid, _) = self.free_mids.remove(pos);
                self.outbound[i].state = OutState::Open(mid);
                bound.push((mid, self.outbound[i].track.clone()));
            }
        }
        bound
    }

    pub fn want_restart(&mut self) {
        self.restart_wanted = true;
        self.changed = true;
    }

    /// The room refused what the peer sends on `mid`: the next server offer takes
    /// the receiving out of that m-line (`dir` is its direction from then on, as
    /// the server sees it), so that the peer stops sending it at all.
    pub fn refuse(&mut self, mid: Mid, dir: Direction) {
        self.refused.push((mid, dir));
        self.changed = true;
    }

    /// A restart is offered and not answered yet.
    pub fn restarting(&self) -> bool {
        self.restarting.is_some()
    }

    /// When the answer to the offer in flight is due.
    pub fn answer_by(&self) -> Option<Instant> {
        self.pending.as_ref().map(|(_, at)| *at)
    }

    pub fn answer_overdue(&self, now: Instant) -> bool {
        self.answer_by().is_some_and(|at| now >= at)
    }

    /// The offer in flight, as sent.
    pub fn pending_offer(&self) -> Option<(String, Vec<(String, TrackDesc)>)> {
        self.pending_sent.clone()
    }

    /// A server offer, if something changed and none is in flight.
    pub fn offer(&mut self, rtc: &mut Rtc, now: Instant) -> Option<Offer> {
        if !self.negotiated || self.pending.is_some() || !std::mem::take(&mut self.changed) {
            return None;
        }
        let mut change = rtc.sdp_api();
        let mut new_ufrag = None;
        if std::mem::take(&mut self.restart_wanted) {
            // New ICE credentials, the same candidates.
            let creds = change.ice_restart(true);
            new_ufrag = Some(creds.ufrag.clone());
            self.restarting = Some(creds.ufrag);
        }
        for (mid, dir) in std::mem::take(&mut self.refused) {
            change.set_direction(mid, dir);
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
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some((pending, now + ANSWER_TIMEOUT));
        let sdp = offer.to_sdp_string();
        self.pending_sent = Some((sdp.clone(), added.clone()));
        Some(Offer { sdp, tracks: added, new_ufrag })
    }

    /// Puts the changes of an abandoned server offer back to be offered again.
    fn offer_again(&mut self) {
        self.changed = true;
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

    pub fn accept_offer(&mut self, rtc: &mut Rtc, sdp: &str) -> Result<String, String> {
        let mlines = sdp.matches("\nm=").count();
        if mlines > MAX_MLINES {
            return Err(format!("the offer has {mlines} m-lines; at most {MAX_MLINES} are accepted"));
        }
        let offer = crate::sdp::parse_offer(sdp)?;
        if self.pending.is_some() {
            // The peer's offer wins over ours: redo ours after answering it.
            self.offer_again();
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| format!("SDP offer rejected: {e}"))?;
        self.negotiated = true;
        Ok(answer.to_sdp_string())
    }

    pub fn accept_answer(&mut self, rtc: &mut Rtc, sdp: &str) -> Result<Settled, String> {
        let answer = crate::sdp::parse_answer(sdp)?;
        let Some((pending, _)) = self.pending.take() else {
            if self.last_answer.as_deref() == Some(sdp) {
                return Ok(Settled { opened: Vec::new(), retired_ufrag: None });
            }
            return Err("no offer is waiting for an answer".into());
        };
        self.pending_sent = None;
        if let Err(e) = rtc.sdp_api().accept_answer(pending, answer) {
            // Forget that offer and offer its changes again.
            self.offer_again();
            return Err(format!("SDP answer rejected: {e}; a new offer follows"));
        }
        self.last_answer = Some(sdp.to_string());
        let retired_ufrag = self.restarting.take().map(|new| std::mem::replace(&mut self.current_ufrag, new));
        let mut opened = Vec::new();
        for o in &mut self.outbound {
            if let OutState::Negotiating(m) = o.state {
                o.state = OutState::Open(m);
                opened.push(o.track.id);
            }
        }
        self.outbound.retain(|o| !matches!(o.state, OutState::Stopping(_)));
        Ok(Settled { opened, retired_ufrag })
    }
}
