//! One room's fan-out graph, held once (mediasoup's and LiveKit's router).
//!
//! A *producer* is a published track: who publishes it (the handle its keyframe
//! requests go to) and its keyframe throttle. Its *consumers* are the subscribers
//! that receive it (the handles its frames go to). The room decides who receives
//! what ([`RoomCore`](crate::RoomCore)); the router only holds the result, so that
//! a publisher's frame reaches its subscribers, and a subscriber's keyframe request
//! reaches the publisher, without passing through the room. What a consumer needs
//! per subscriber (its m-line, whether it waits for a keyframe) lives in that
//! subscriber's [`PeerCore`](crate::peer::PeerCore).
//!
//! The router is sans-IO and generic over the handles: the actors use actix
//! recipients, the simulated-network tests plain indices. Every actor of a room
//! runs on the media thread, so the lock around a room's router is never contended.

mod keyframe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;

pub use keyframe::{DEFAULT_KEYFRAME_INTERVAL, KeyframeDecision, KeyframeThrottle};

use crate::ids::{ParticipantId, TrackId};
use crate::participant::{Forward, SendKeyframeRequest};
use crate::{MediaKind, TrackDesc};

/// A published track and who receives it.
#[derive(Debug)]
pub struct Producer<C, P> {
    kind: MediaKind,
    publisher: P,
    consumers: Vec<(ParticipantId, C)>,
    keyframes: KeyframeThrottle,
}

/// What to do with a subscriber's keyframe request.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyframeAsk<'a, P> {
    /// Ask the publisher now.
    Now(&'a P),
    /// Have the publisher call [`Router::keyframe_due`] at this time; one request
    /// goes then.
    At(&'a P, Instant),
    /// Nothing to do: one is scheduled already, or the track has no keyframes
    /// (audio) or is gone.
    Nothing,
}

/// The producers of one room, each with its consumers.
#[derive(Debug)]
pub struct Router<C, P> {
    keyframe_interval: Duration,
    producers: HashMap<TrackId, Producer<C, P>>,
}

/// A room's router as the actors share it.
pub type SharedRouter = Arc<Mutex<Router<Recipient<Forward>, Recipient<SendKeyframeRequest>>>>;

impl<C, P> Router<C, P> {
    /// An empty router whose producers ask their publishers for a keyframe at most
    /// once per `keyframe_interval`.
    pub fn new(keyframe_interval: Duration) -> Self {
        Router { keyframe_interval, producers: HashMap::new() }
    }

    /// A track is published; `publisher` takes its keyframe requests.
    pub fn add_producer(&mut self, track: &TrackDesc, publisher: P) {
        let keyframes = KeyframeThrottle::new(self.keyframe_interval);
        self.producers.insert(track.id, Producer { kind: track.kind, publisher, consumers: Vec::new(), keyframes });
    }

    /// A track ended: its consumers get nothing more of it.
    pub fn remove_producer(&mut self, track: TrackId) {
        self.producers.remove(&track);
    }

    /// Published tracks.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// No track is published.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// `subscriber` receives `track` through `consumer` (in place of any earlier one).
    pub fn link(&mut self, track: TrackId, subscriber: ParticipantId, consumer: C) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.consumers.retain(|(s, _)| *s != subscriber);
            p.consumers.push((subscriber, consumer));
        }
    }

    /// `subscriber` no longer receives `track`.
    pub fn unlink(&mut self, track: TrackId, subscriber: ParticipantId) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.consumers.retain(|(s, _)| *s != subscriber);
        }
    }

    /// Who receives `track`, and where its frames go.
    pub fn consumers(&self, track: TrackId) -> &[(ParticipantId, C)] {
        self.producers.get(&track).map_or(&[], |p| &p.consumers)
    }

    /// Someone (a subscriber whose decoder needs one, or the publisher's own loss
    /// detection) wants a keyframe of `track` at `now`: the first request goes at
    /// once, the ones that follow within the interval become one at its end.
    pub fn want_keyframe(&mut self, track: TrackId, now: Instant) -> KeyframeAsk<'_, P> {
        let Some(p) = self.producers.get_mut(&track).filter(|p| p.kind == MediaKind::Video) else {
            return KeyframeAsk::Nothing;
        };
        match p.keyframes.request(now) {
            KeyframeDecision::SendNow => KeyframeAsk::Now(&p.publisher),
            KeyframeDecision::SendAt(at) => KeyframeAsk::At(&p.publisher, at),
            KeyframeDecision::Coalesced => KeyframeAsk::Nothing,
        }
    }

    /// The time given by [`KeyframeAsk::At`] has come: the publisher to ask now, if
    /// a request is still due. (Were that time never kept, the next request after
    /// the interval would go at once.)
    pub fn keyframe_due(&mut self, track: TrackId, now: Instant) -> Option<&P> {
        let p = self.producers.get_mut(&track)?;
        p.keyframes.fire(now).then_some(&p.publisher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrackSource;

    fn track(id: u64, kind: MediaKind) -> TrackDesc {
        TrackDesc { id: TrackId(id), participant: ParticipantId(1), name: "p".into(), kind, source: TrackSource::Feed }
    }

    #[test]
    fn frames_go_to_the_linked_consumers_once_each() {
        let mut r: Router<&str, &str> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.link(TrackId(10), ParticipantId(2), "early");
        assert!(r.consumers(TrackId(10)).is_empty(), "no producer yet: nothing to link");
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        r.link(TrackId(10), ParticipantId(2), "b");
        r.link(TrackId(10), ParticipantId(3), "c");
        r.link(TrackId(10), ParticipantId(2), "b again");
        assert_eq!(r.consumers(TrackId(10)), &[(ParticipantId(3), "c"), (ParticipantId(2), "b again")]);
        r.unlink(TrackId(10), ParticipantId(3));
        assert_eq!(r.consumers(TrackId(10)), &[(ParticipantId(2), "b again")]);
        r.remove_producer(TrackId(10));
        assert!(r.consumers(TrackId(10)).is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn keyframe_requests_are_throttled_per_track() {
        let mut r: Router<(), &str> = Router::new(Duration::from_millis(500));
        r.add_producer(&track(10, MediaKind::Video), "video publisher");
        r.add_producer(&track(11, MediaKind::Audio), "audio publisher");
        let t0 = Instant::now();
        assert_eq!(r.want_keyframe(TrackId(10), t0), KeyframeAsk::Now(&"video publisher"));
        let at = t0 + Duration::from_millis(500);
        assert_eq!(r.want_keyframe(TrackId(10), t0 + Duration::from_millis(1)), KeyframeAsk::At(&"video publisher", at));
        assert_eq!(r.want_keyframe(TrackId(10), t0 + Duration::from_millis(2)), KeyframeAsk::Nothing);
        assert_eq!(r.keyframe_due(TrackId(10), at), Some(&"video publisher"));
        assert_eq!(r.keyframe_due(TrackId(10), at), None, "one request per interval");
        assert_eq!(r.want_keyframe(TrackId(11), t0), KeyframeAsk::Nothing, "audio has no keyframes");
        assert_eq!(r.want_keyframe(TrackId(99), t0), KeyframeAsk::Nothing);
    }

    #[test]
    fn a_scheduled_request_never_kept_does_not_stop_later_ones() {
        let mut r: Router<(), &str> = Router::new(Duration::from_millis(500));
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        let t0 = Instant::now();
        assert!(matches!(r.want_keyframe(TrackId(10), t0), KeyframeAsk::Now(_)));
        assert!(matches!(r.want_keyframe(TrackId(10), t0 + Duration::from_millis(100)), KeyframeAsk::At(..)));
        // Whoever held that time went away; a request after the interval goes at once.
        assert!(matches!(r.want_keyframe(TrackId(10), t0 + Duration::from_millis(600)), KeyframeAsk::Now(_)));
    }
}
