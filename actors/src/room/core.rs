//! The room's sans-IO core: membership, the track registry and who receives what.
//! The [`RoomActor`](super::RoomActor) feeds it commands and carries out the
//! [`RoomOutput`]s it returns (links go into the room's router); tests drive it
//! directly.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::{ParticipantId, TrackId};
use crate::{MediaKind, Member, PeerInfo, RoomEvent, Subscribe, TrackDesc, TrackSource, UplinkCeiling};

/// What the room decides; the actor carries it out.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomOutput {
    /// Tell a participant something (it passes it on to its client).
    Notify(ParticipantId, RoomEvent),
    /// Start forwarding `track` from its publisher to `subscriber`.
    Link {
        /// The track.
        track: TrackDesc,
        /// Who receives it.
        subscriber: ParticipantId,
    },
    /// Stop forwarding `track` to `subscriber`.
    Unlink {
        /// The track.
        track: TrackDesc,
        /// Who received it.
        subscriber: ParticipantId,
    },
}

/// Why a participant could not join or publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The room has `max_participants` viewers and commentators already.
    #[error("the room is full ({0} participants)")]
    Full(usize),
    /// The seats kept for a role (encoders, operators) are all taken.
    #[error("the room has {max} {role}s already, the most it takes")]
    NoSeat {
        /// The role.
        role: &'static str,
        /// Its seats.
        max: usize,
    },
    /// The token, or the person it names, has `max_sessions_per_person` sessions in
    /// the room already.
    #[error("this {whom} has {0} sessions open in the room already, the most one may have; close one (or wait a few seconds for a closed one to end)", whom = .1)]
    TooManySessions(usize, &'static str),
    /// The participant id is in the room already.
    #[error("participant {0} is already in the room")]
    AlreadyJoined(ParticipantId),
    /// Not a member.
    #[error("participant {0} is not in the room")]
    NotJoined(ParticipantId),
    /// The room's policy refuses this track.
    #[error("{0}")]
    Refused(String),
}

/// The room's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPolicy {
    /// Commentators may send video (false: audio only).
    pub commentator_video: bool,
    /// Frame-rate ceiling for commentator video.
    pub commentator_max_fps: u32,
    /// Bitrate ceiling for commentator video, bits/s.
    pub commentator_max_bitrate: u32,
    /// Most viewers and commentators at once. Encoders and operators have seats
    /// of their own, so a full audience never keeps the feed or the program out.
    pub max_participants: usize,
    /// Seats for the feed's encoders (a primary, a backup, one reconnecting).
    pub max_encoders: usize,
    /// Seats for operators: compositors and consoles watching the room.
    pub max_operators: usize,
    /// Most sessions one token, or one person, may hold in the room at once (a
    /// reload or a network change overlaps the old session for a moment).
    pub max_sessions_per_person: usize,
    /// Least time between two keyframe requests to one track.
    pub keyframe_interval: Duration,
    /// Heights of the layers the server makes of a feed that arrives as one
    /// layer (empty: none; see [`crate::ladder`]).
    pub feed_ladder: Vec<u32>,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        RoomPolicy {
            commentator_video: true,
            commentator_max_fps: 5,
            commentator_max_bitrate: 300_000,
            max_participants: 200,
            max_encoders: 4,
            max_operators: 16,
            max_sessions_per_person: 4,
            keyframe_interval: crate::router::DEFAULT_KEYFRAME_INTERVAL,
            feed_ladder: Vec::new(),
        }
    }
}

/// Membership, tracks and subscriptions of one room.
#[derive(Debug)]
pub struct RoomCore {
    policy: RoomPolicy,
    members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, TrackDesc>,
}

impl RoomCore {
    /// An empty room.
    pub fn new(policy: RoomPolicy) -> Self {
        RoomCore { policy, members: BTreeMap::new(), tracks: BTreeMap::new() }
    }

    /// The room's policy.
    pub fn policy(&self) -> &RoomPolicy {
        &self.policy
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Published tracks.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackDesc> {
        self.tracks.values()
    }

    fn wants(member: &Member, id: ParticipantId, track: &TrackDesc) -> bool {
        if track.participant == id {
            return false;
        }
        match member.subscribe {
            Subscribe::All => true,
            Subscribe::FeedOnly => track.source == TrackSource::Feed,
            Subscribe::None => false,
        }
    }

    /// A participant joins. Returns who was there before it, and what to do.
    pub fn join(
        &mut self,
        id: ParticipantId,
        member: Member,
    ) -> Result<(Vec<PeerInfo>, Vec<RoomOutput>), RoomError> {
        if self.members.contains_key(&id) {
            return Err(RoomError::AlreadyJoined(id));
        }
        let max = self.policy.max_sessions_per_person;
        if self.members.values().filter(|m| m.credential == member.credential).count() >= max {
            return Err(RoomError::TooManySessions(max, "token"));
        }
        if self.members.values().filter(|m| m.identity == member.identity).count() >= max {
            return Err(RoomError::TooManySessions(max, "person"));
        }
        let role = member.info.role;
        let seats = |r: &str| self.members.values().filter(|m| Seat::of(m.info.role) == Seat::of(r)).count();
        match Seat::of(role) {
            Seat::Audience if seats(role) >= self.policy.max_participants => {
                return Err(RoomError::Full(self.policy.max_participants));
            }
            Seat::Encoder if seats(role) >= self.policy.max_encoders => {
                return Err(RoomError::NoSeat { role, max: self.policy.max_encoders });
            }
            Seat::Operator if seats(role) >= self.policy.max_operators => {
                return Err(RoomError::NoSeat { role, max: self.policy.max_operators });
            }
            _ => {}
        }
        let peers = self.members.values().map(|m| m.info.clone()).collect();
        let mut out: Vec<RoomOutput> = self
            .members
            .keys()
            .map(|&other| RoomOutput::Notify(other, RoomEvent::PeerJoined(member.info.clone())))
            .collect();
        for track in self.tracks.values() {
            if Self::wants(&member, id, track) {
                out.push(RoomOutput::Notify(id, RoomEvent::TrackAdded(track.clone())));
                out.push(RoomOutput::Link { track: track.clone(), subscriber: id });
            }
        }
        self.members.insert(id, member);
        Ok((peers, out))
    }

    /// A participant leaves (or its actor ended): its tracks end, its
    /// subscriptions are dropped, the others are told.
    pub fn leave(&mut self, id: ParticipantId) -> Vec<RoomOutput> {
        let Some(member) = self.members.remove(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let own: Vec<TrackId> =
            self.tracks.values().filter(|t| t.participant == id).map(|t| t.id).collect();
        for t in own {
            out.extend(self.unpublish(t));
        }
        for track in self.tracks.values() {
            if Self::wants(&member, id, track) {
                out.push(RoomOutput::Unlink { track: track.clone(), subscriber: id });
            }
        }
        for &other in self.members.keys() {
            out.push(RoomOutput::Notify(other, RoomEvent::PeerLeft(id)));
        }
        out
    }

    /// A member publishes a track.
    pub fn publish(&mut self, track: TrackDesc) -> Result<Vec<RoomOutput>, RoomError> {
        let member =
            self.members.get(&track.participant).ok_or(RoomError::NotJoined(track.participant))?;
        let Some(source) = member.publish else {
            return Err(RoomError::Refused(format!(
                "role {} may not publish in this room",
                member.info.role
            )));
        };
        if source == TrackSource::Commentator
            && track.kind == MediaKind::Video
            && !self.policy.commentator_video
        {
            return Err(RoomError::Refused("this room is audio only for commentators".into()));
        }
        if self.tracks.values().any(|t| t.participant == track.participant && t.kind == track.kind) {
            // One camera and one microphone (or one feed picture and sound) each:
            // more would multiply every subscriber's work for nothing.
            return Err(RoomError::Refused(format!("a participant publishes at most one {:?} track", track.kind)));
        }
        let track = TrackDesc { source, ..track };
        let mut out = Vec::new();
        for (&id, m) in &self.members {
            if id == track.participant {
                continue;
            }
            out.push(RoomOutput::Notify(id, RoomEvent::TrackAdded(track.clone())));
            if Self::wants(m, id, &track) {
                out.push(RoomOutput::Link { track: track.clone(), subscriber: id });
            }
        }
        self.tracks.insert(track.id, track);
        Ok(out)
    }

    /// What the server holds a published track to: the policy's ceiling for a
    /// commentator's video; none for the feed, the program or audio.
    pub fn ceiling(&self, track: &TrackDesc) -> Option<UplinkCeiling> {
        (track.source == TrackSource::Commentator && track.kind == MediaKind::Video).then_some(UplinkCeiling {
            max_bitrate: u64::from(self.policy.commentator_max_bitrate),
            max_fps: self.policy.commentator_max_fps,
        })
    }

    /// A track ends.
    pub fn unpublish(&mut self, id: TrackId) -> Vec<RoomOutput> {
        let Some(track) = self.tracks.remove(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (&sid, m) in &self.members {
            if sid == track.participant {
                continue;
            }
            if Self::wants(m, sid, &track) {
                out.push(RoomOutput::Unlink { track: track.clone(), subscriber: sid });
            }
            out.push(RoomOutput::Notify(sid, RoomEvent::TrackRemoved(id)));
        }
        out
    }

    /// The members who are `identity` (a person's sessions).
    pub fn sessions_of(&self, identity: &str) -> Vec<ParticipantId> {
        self.members.iter().filter(|(_, m)| m.identity == identity).map(|(&id, _)| id).collect()
    }

    /// Who member `id` is across sessions.
    pub fn identity(&self, id: ParticipantId) -> Option<&str> {
        self.members.get(&id).map(|m| m.identity.as_str())
    }

    /// The members that publish as `source`.
    pub fn members_publishing(&self, source: TrackSource) -> Vec<ParticipantId> {
        self.members.iter().filter(|(_, m)| m.publish == Some(source)).map(|(&id, _)| id).collect()
    }

    /// A member muted or unmuted.
    pub fn mute(&mut self, id: ParticipantId, kind: MediaKind, muted: bool) -> Vec<RoomOutput> {
        if !self.members.contains_key(&id) {
            return Vec::new();
        }
        self.members
            .keys()
            .filter(|&&o| o != id)
            .map(|&o| RoomOutput::Notify(o, RoomEvent::Muted { participant: id, kind, muted }))
            .collect()
    }
}

/// Which seats a role takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seat {
    /// Viewers and commentators share the room's `max_participants`.
    Audience,
    /// The feed's encoders.
    Encoder,
    /// Compositors and consoles.
    Operator,
}

impl Seat {
    fn of(role: &str) -> Seat {
        match role {
            "encoder" => Seat::Encoder,
            "operator" => Seat::Operator,
            _ => Seat::Audience,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, role: &'static str, publish: Option<TrackSource>, subscribe: Subscribe) -> (ParticipantId, Member) {
        let id = ParticipantId(id);
        let who = format!("{role}:n{}", id.0);
        (id, Member { info: PeerInfo { id, name: format!("n{}", id.0), role }, publish, subscribe, identity: who.clone(), credential: who })
    }

    fn track(id: u64, p: u64, kind: MediaKind) -> TrackDesc {
        TrackDesc {
            id: TrackId(id),
            participant: ParticipantId(p),
            name: format!("n{p}"),
            kind,
            source: TrackSource::Commentator,
        }
    }

    fn links(out: &[RoomOutput]) -> Vec<(u64, u64)> {
        out.iter()
            .filter_map(|o| match o {
                RoomOutput::Link { track, subscriber } => Some((track.id.0, subscriber.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn late_joiner_gets_existing_feed_and_commentators_hear_each_other() {
        let mut room = RoomCore::new(RoomPolicy::default());
        let (enc, m) = member(1, "encoder", Some(TrackSource::Feed), Subscribe::None);
        room.join(enc, m).unwrap();
        let out = room.publish(track(10, 1, MediaKind::Video)).unwrap();
        assert!(links(&out).is_empty(), "nobody to send to yet");
        room.publish(track(11, 1, MediaKind::Audio)).unwrap();
        assert!(room.tracks().all(|t| t.source == TrackSource::Feed), "source comes from the role");

        let (c1, m) = member(2, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        let (peers, out) = room.join(c1, m).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(links(&out), vec![(10, 2), (11, 2)]);
        assert!(out.contains(&RoomOutput::Notify(enc, RoomEvent::PeerJoined(PeerInfo { id: c1, name: "n2".into(), role: "commentator" }))));

        let (c2, m) = member(3, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        room.join(c2, m).unwrap();
        let out = room.publish(track(12, 3, MediaKind::Audio)).unwrap();
        assert_eq!(links(&out), vec![(12, 2)], "c1 hears c2; the encoder subscribes to nothing; c2 not to itself");

        let (v, m) = member(4, "viewer", None, Subscribe::FeedOnly);
        let (_, out) = room.join(v, m).unwrap();
        assert_eq!(links(&out), vec![(10, 4), (11, 4)], "viewers get the feed only");
        assert!(room.publish(track(13, 4, MediaKind::Audio)).is_err(), "viewers do not publish");
    }

    #[test]
    fn leaving_ends_tracks_and_subscriptions() {
        let mut room = RoomCore::new(RoomPolicy::default());
        let (a, m) = member(1, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        room.join(a, m).unwrap();
        let (b, m) = member(2, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        room.join(b, m).unwrap();
        room.publish(track(10, 1, MediaKind::Audio)).unwrap();
        room.publish(track(20, 2, MediaKind::Audio)).unwrap();
        let out = room.leave(a);
        assert!(out.contains(&RoomOutput::Unlink { track: room_track(10, 1), subscriber: b }));
        assert!(out.contains(&RoomOutput::Unlink { track: room_track(20, 2), subscriber: a }));
        assert!(out.contains(&RoomOutput::Notify(b, RoomEvent::TrackRemoved(TrackId(10)))));
        assert!(out.contains(&RoomOutput::Notify(b, RoomEvent::PeerLeft(a))));
        assert_eq!(room.tracks().count(), 1);
        assert!(room.leave(a).is_empty(), "leaving twice is harmless");
        room.leave(b);
        assert!(room.is_empty());
        assert_eq!(room.tracks().count(), 0);
    }

    fn room_track(id: u64, p: u64) -> TrackDesc {
        TrackDesc { source: TrackSource::Commentator, ..track(id, p, MediaKind::Audio) }
    }

    #[test]
    fn audio_only_policy_refuses_commentator_video() {
        let mut room = RoomCore::new(RoomPolicy { commentator_video: false, ..Default::default() });
        let (a, m) = member(1, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        room.join(a, m).unwrap();
        assert!(matches!(room.publish(track(10, 1, MediaKind::Video)), Err(RoomError::Refused(_))));
        assert!(room.publish(track(11, 1, MediaKind::Audio)).is_ok());
    }

    #[test]
    fn one_track_of_each_kind_per_publisher() {
        let mut room = RoomCore::new(RoomPolicy::default());
        let (a, m) = member(1, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        room.join(a, m).unwrap();
        room.publish(track(10, 1, MediaKind::Video)).unwrap();
        room.publish(track(11, 1, MediaKind::Audio)).unwrap();
        for i in 12..20 {
            assert!(matches!(room.publish(track(i, 1, MediaKind::Video)), Err(RoomError::Refused(_))));
        }
        room.unpublish(TrackId(10));
        assert!(room.publish(track(20, 1, MediaKind::Video)).is_ok(), "a replacement is fine");
    }

    #[test]
    fn full_room_refuses() {
        let mut room = RoomCore::new(RoomPolicy { max_participants: 1, ..Default::default() });
        let (a, m) = member(1, "viewer", None, Subscribe::All);
        room.join(a, m.clone()).unwrap();
        assert_eq!(room.join(a, m.clone()).unwrap_err(), RoomError::AlreadyJoined(a));
        let (b, m) = member(2, "viewer", None, Subscribe::All);
        assert_eq!(room.join(b, m).unwrap_err(), RoomError::Full(1));
        // The feed and the program have seats of their own.
        let (e, m) = member(3, "encoder", Some(TrackSource::Feed), Subscribe::None);
        room.join(e, m).unwrap();
        let (o, m) = member(4, "operator", Some(TrackSource::Program), Subscribe::All);
        room.join(o, m).unwrap();
        let (c, m) = member(5, "commentator", Some(TrackSource::Commentator), Subscribe::All);
        assert_eq!(room.join(c, m).unwrap_err(), RoomError::Full(1), "and they do not free one for the audience");
    }

    #[test]
    fn seats_for_encoders_and_operators_are_bounded_too() {
        let mut room = RoomCore::new(RoomPolicy { max_encoders: 2, max_operators: 1, ..Default::default() });
        for i in 1..=2 {
            let (e, m) = member(i, "encoder", Some(TrackSource::Feed), Subscribe::None);
            room.join(e, m).unwrap();
        }
        let (e, m) = member(3, "encoder", Some(TrackSource::Feed), Subscribe::None);
        assert_eq!(room.join(e, m).unwrap_err(), RoomError::NoSeat { role: "encoder", max: 2 });
        let (o, m) = member(4, "operator", None, Subscribe::All);
        room.join(o, m).unwrap();
        let (o, m) = member(5, "operator", None, Subscribe::All);
        assert!(matches!(room.join(o, m), Err(RoomError::NoSeat { role: "operator", .. })));
    }

    #[test]
    fn one_token_or_person_holds_a_few_sessions_not_the_room() {
        let mut room = RoomCore::new(RoomPolicy { max_sessions_per_person: 2, ..Default::default() });
        let same_token = |id: u64, name: &str| {
            let (id, m) = member(id, "viewer", None, Subscribe::All);
            (id, Member { credential: "tok:shared".into(), identity: format!("viewer:{name}"), ..m })
        };
        for i in 1..=2 {
            let (id, m) = same_token(i, &format!("v{i}"));
            room.join(id, m).unwrap();
        }
        let (id, m) = same_token(3, "v3");
        assert_eq!(room.join(id, m).unwrap_err(), RoomError::TooManySessions(2, "token"));
        // Another token for the same person counts against the person.
        let person = |id: u64, token: &str| {
            let (id, m) = member(id, "commentator", Some(TrackSource::Commentator), Subscribe::All);
            (id, Member { credential: token.into(), identity: "inv:ana".into(), ..m })
        };
        for (i, t) in [(10, "a"), (11, "b")] {
            let (id, m) = person(i, t);
            room.join(id, m).unwrap();
        }
        let (id, m) = person(12, "c");
        assert_eq!(room.join(id, m).unwrap_err(), RoomError::TooManySessions(2, "person"));
        assert_eq!(room.sessions_of("inv:ana"), vec![ParticipantId(10), ParticipantId(11)]);
        // Leaving frees the place.
        room.leave(ParticipantId(10));
        let (id, m) = person(12, "c");
        room.join(id, m).unwrap();
        // Others are not touched by one token's limit.
        let (v, m) = member(20, "viewer", None, Subscribe::All);
        room.join(v, m).unwrap();
    }

}
