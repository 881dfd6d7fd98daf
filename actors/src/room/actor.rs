//! The RoomActor: a thin shell that feeds [`RoomCore`] and carries out its outputs:
//! notices to members, and links written into the room's router.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use actix::prelude::*;

use super::core::{RoomCore, RoomError, RoomOutput, RoomPolicy};
use crate::ids::{ParticipantId, TrackId};
use crate::ladder::{Ladder, StopLadder};
use crate::metrics::Metrics;
use crate::participant::{Notice, ParticipantActor, ParticipantEvent, Relay, SubscribeTrack, UnsubscribeTrack};
use crate::participant::SharedRouter;
use crate::{MediaKind, Member, PeerInfo, Published, RoomEvent, TrackDesc, TrackSource};

/// An open room: its actor and its router.
#[derive(Clone)]
pub(crate) struct RoomEntry {
    pub addr: Addr<RoomActor>,
    pub router: SharedRouter,
    /// The media worker it lives on.
    pub worker: usize,
}

pub(crate) type RoomRegistry = Mutex<HashMap<String, RoomEntry>>;

/// One room: membership, tracks and who receives what.
pub struct RoomActor {
    id: String,
    core: RoomCore,
    /// The fan-out graph the core's links are written into; the room's
    /// participants forward frames and keyframe requests through it.
    router: SharedRouter,
    members: HashMap<ParticipantId, Addr<ParticipantActor>>,
    /// What operators muted, by person: it stays muted in their next session.
    held: HashMap<String, std::collections::HashSet<MediaKind>>,
    /// Raised hands, with the names they were raised under.
    hands: std::collections::BTreeMap<ParticipantId, String>,
    /// The last chat lines, for those who join later (never logged).
    chat: std::collections::VecDeque<ParticipantEvent>,
    /// Chat lines so far.
    chat_seq: u64,
    registry: Weak<RoomRegistry>,
    metrics: Metrics,
    /// The server-made ladder of each single-layer feed track, by policy.
    ladders: HashMap<TrackId, Addr<Ladder>>,
    /// Counts it on its media worker while it lives.
    _seat: crate::worker::RoomSeat,
}

/// Chat lines a newcomer is given.
const CHAT_HISTORY: usize = 50;

impl RoomActor {
    pub(crate) fn new(
        id: String,
        policy: RoomPolicy,
        router: SharedRouter,
        registry: Weak<RoomRegistry>,
        metrics: Metrics,
        seat: crate::worker::RoomSeat,
    ) -> Self {
        RoomActor {
            id,
            core: RoomCore::new(policy),
            router,
            members: HashMap::new(),
            held: HashMap::new(),
            hands: Default::default(),
            chat: Default::default(),
            chat_seq: 0,
            registry,
            metrics,
            ladders: HashMap::new(),
            _seat: seat,
        }
    }

    fn apply(&mut self, out: Vec<RoomOutput>) {
        let _span = tracing::info_span!("room", room = %self.id).entered();
        for o in out {
            match o {
                RoomOutput::Notify(to, ev) => {
                    if let Some(a) = self.members.get(&to) {
                        a.do_send(Notice(ev));
                    }
                }
                RoomOutput::Link { track, subscriber } => {
                    let Some(s) = self.members.get(&subscriber) else {
                        continue;
                    };
                    self.router.lock().unwrap().link(track.id, subscriber, s.clone().recipient());
                    s.do_send(SubscribeTrack(track));
                }
                RoomOutput::Unlink { track, subscriber } => {
                    self.router.lock().unwrap().unlink(track.id, subscriber);
                    if let Some(s) = self.members.get(&subscriber) {
                        s.do_send(UnsubscribeTrack(track.id));
                    }
                }
            }
        }
    }
}

impl RoomActor {
    /// Sends `ev` to every member's client.
    fn broadcast(&self, ev: ParticipantEvent) {
        for a in self.members.values() {
            a.do_send(Relay(ev.clone()));
        }
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.metrics.rooms.inc();
        tracing::info!(room = %self.id, "room opened");
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.metrics.rooms.dec();
        for (_, l) in self.ladders.drain() {
            l.do_send(StopLadder);
        }
        if let Some(reg) = self.registry.upgrade() {
            let mut reg = reg.lock().unwrap();
            if reg.get(&self.id).is_some_and(|e| e.addr == ctx.address()) {
                reg.remove(&self.id);
            }
        }
        tracing::info!(room = %self.id, "room closed");
    }
}

/// A participant joins; answers who was there.
#[derive(Message)]
#[rtype(result = "Result<Vec<PeerInfo>, RoomError>")]
pub struct Join {
    /// The participant.
    pub member: Member,
    /// Its actor.
    pub addr: Addr<ParticipantActor>,
}

impl Handler<Join> for RoomActor {
    type Result = Result<Vec<PeerInfo>, RoomError>;
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.member.info.id;
        let identity = msg.member.identity.clone();
        self.members.insert(id, msg.addr.clone());
        match self.core.join(id, msg.member) {
            Ok((peers, out)) => {
                self.apply(out);
                // An operator's mute from an earlier session holds again.
                for &kind in self.held.get(&identity).into_iter().flatten() {
                    msg.addr.do_send(crate::participant::Hold { kind, held: true });
                }
                // What a newcomer should know of the conversation: hands up, recent chat.
                for (&participant, name) in &self.hands {
                    msg.addr.do_send(Relay(ParticipantEvent::Hand { participant, name: name.clone(), raised: true }));
                }
                for line in &self.chat {
                    msg.addr.do_send(Relay(line.clone()));
                }
                Ok(peers)
            }
            Err(e) => {
                self.members.remove(&id);
                if self.core.is_empty() {
                    ctx.stop();
                }
                Err(e)
            }
        }
    }
}

/// A participant left or ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub ParticipantId);

impl Handler<Leave> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let out = self.core.leave(msg.0);
        self.apply(out);
        self.members.remove(&msg.0);
        if let Some(name) = self.hands.remove(&msg.0) {
            self.broadcast(ParticipantEvent::Hand { participant: msg.0, name, raised: false });
        }
        if self.core.is_empty() {
            ctx.stop();
        }
    }
}

/// A participant publishes a track; answers the source the room assigned and the
/// ceiling it holds the track to.
#[derive(Message)]
#[rtype(result = "Result<Published, RoomError>")]
pub struct Publish(pub TrackDesc);

impl Handler<Publish> for RoomActor {
    type Result = Result<Published, RoomError>;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let track = msg.0.clone();
        let Some(publisher) = self.members.get(&track.participant) else {
            return Err(RoomError::NotJoined(track.participant));
        };
        let publisher = publisher.clone().recipient();
        let id = track.id;
        let out = self.core.publish(msg.0)?;
        self.router.lock().unwrap().add_producer(&track, publisher);
        self.apply(out);
        // publish() just inserted the track, with its source as the room sees it.
        let track = self.core.tracks().find(|t| t.id == id).cloned().expect("published track is registered");
        let heights = &self.core.policy().feed_ladder;
        if track.source == TrackSource::Feed && track.kind == MediaKind::Video && !heights.is_empty() {
            let ladder = Ladder::new(self.id.clone(), id, heights.clone(), self.router.clone(), self.metrics.clone());
            self.ladders.insert(id, ladder.start());
        }
        Ok(Published { source: track.source, ceiling: self.core.ceiling(&track) })
    }
}

/// A track ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unpublish(pub TrackId);

impl Handler<Unpublish> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Unpublish, _: &mut Context<Self>) {
        let out = self.core.unpublish(msg.0);
        self.apply(out);
        if let Some(l) = self.ladders.remove(&msg.0) {
            l.do_send(StopLadder);
        }
        self.router.lock().unwrap().remove_producer(msg.0);
    }
}

/// A participant muted or unmuted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Mute {
    /// Who.
    pub id: ParticipantId,
    /// Which kind.
    pub kind: MediaKind,
    /// Muted or not.
    pub muted: bool,
}

impl Handler<Mute> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Mute, _: &mut Context<Self>) {
        let out = self.core.mute(msg.id, msg.kind, msg.muted);
        self.apply(out);
    }
}

/// A member raised or lowered its hand: everyone is told.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hand {
    /// Who.
    pub id: ParticipantId,
    /// Their display name.
    pub name: String,
    /// Raised or lowered.
    pub raised: bool,
}

impl Handler<Hand> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Hand, _: &mut Context<Self>) {
        if !self.members.contains_key(&msg.id) {
            return;
        }
        if msg.raised {
            self.hands.insert(msg.id, msg.name.clone());
        } else {
            self.hands.remove(&msg.id);
        }
        self.broadcast(ParticipantEvent::Hand { participant: msg.id, name: msg.name, raised: msg.raised });
    }
}

/// A member's chat line: everyone is told, and the last few are kept for newcomers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Chat {
    /// Who.
    pub id: ParticipantId,
    /// Their display name.
    pub name: String,
    /// The text, cleaned and bounded by signaling.
    pub text: String,
}

impl Handler<Chat> for RoomActor {
    type Result = ();
    fn handle(&mut self, msg: Chat, _: &mut Context<Self>) {
        if !self.members.contains_key(&msg.id) {
            return;
        }
        self.chat_seq += 1;
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let line = ParticipantEvent::Chat { seq: self.chat_seq, participant: msg.id, name: msg.name, text: msg.text, at };
        if self.chat.len() == CHAT_HISTORY {
            self.chat.pop_front();
        }
        self.chat.push_back(line.clone());
        self.broadcast(line);
    }
}

/// Every member's stats, for operators.
#[derive(Message)]
#[rtype(result = "Vec<crate::ParticipantStats>")]
pub struct Participants;

impl Handler<Participants> for RoomActor {
    type Result = ResponseFuture<Vec<crate::ParticipantStats>>;
    fn handle(&mut self, _: Participants, _: &mut Context<Self>) -> Self::Result {
        let members: Vec<_> = self.members.values().cloned().collect();
        Box::pin(async move {
            let mut out = Vec::new();
            for m in members {
                if let Ok(s) = m.send(crate::participant::GetStats).await {
                    out.push(s);
                }
            }
            out.sort_by(|a, b| a.role.cmp(&b.role).then(a.name.cmp(&b.name)));
            out
        })
    }
}

/// An operator removes a member.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Remove(pub String);

impl Handler<Remove> for RoomActor {
    type Result = bool;
    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> bool {
        match self.members.iter().find(|(id, _)| id.to_string() == msg.0) {
            Some((_, addr)) => {
                addr.do_send(crate::participant::Close("removed by the operator".into()));
                true
            }
            None => false,
        }
    }
}

/// Ends every session of one person (a revoked invitation); answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct EndSessions {
    /// The person.
    pub identity: String,
    /// Why, as the participants are told.
    pub reason: String,
}

impl Handler<EndSessions> for RoomActor {
    type Result = usize;
    fn handle(&mut self, msg: EndSessions, _: &mut Context<Self>) -> usize {
        let ids = self.core.sessions_of(&msg.identity);
        for id in &ids {
            if let Some(addr) = self.members.get(id) {
                addr.do_send(crate::participant::Close(msg.reason.clone()));
            }
        }
        ids.len()
    }
}

/// An operator mutes (holds) or releases one kind of a member's media: answers
/// whether the member is in the room.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Hold {
    /// The participant id.
    pub participant: String,
    /// Which kind.
    pub kind: crate::MediaKind,
    /// Held (muted) or released.
    pub held: bool,
}

impl Handler<Hold> for RoomActor {
    type Result = bool;
    fn handle(&mut self, msg: Hold, _: &mut Context<Self>) -> bool {
        let Some((&id, addr)) = self.members.iter().find(|(id, _)| id.to_string() == msg.participant) else { return false };
        addr.do_send(crate::participant::Hold { kind: msg.kind, held: msg.held });
        if let Some(who) = self.core.identity(id) {
            let kinds = self.held.entry(who.to_string()).or_default();
            if msg.held {
                kinds.insert(msg.kind);
            } else {
                kinds.remove(&msg.kind);
            }
        }
        true
    }
}

/// How many members, for tests and status.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct MemberCount;

impl Handler<MemberCount> for RoomActor {
    type Result = usize;
    fn handle(&mut self, _: MemberCount, _: &mut Context<Self>) -> usize {
        self.core.len()
    }
}

/// Tells the room's compositors (the members that publish the program) what the
/// program is to do: its layout, on or off air, timed metadata. Answers how many
/// were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ToOperators(pub RoomEvent);

impl Handler<ToOperators> for RoomActor {
    type Result = usize;
    fn handle(&mut self, msg: ToOperators, _: &mut Context<Self>) -> usize {
        let to = self.core.members_publishing(crate::TrackSource::Program);
        for id in &to {
            if let Some(a) = self.members.get(id) {
                a.do_send(Notice(msg.0.clone()));
            }
        }
        to.len()
    }
}
