//! One room's fan-out graph, held once (mediasoup's and LiveKit's router).
//!
//! A *producer* is a published track: who publishes it (the handle its keyframe
//! requests go to), its layers as they arrive ([`Layers`]) and a keyframe throttle
//! per layer. Its *consumers* are the subscribers that receive it: the handle its
//! frames go to, and which layer each gets ([`LayerSwitch`]). The room decides who
//! receives what ([`RoomCore`](crate::RoomCore)); the router only holds the result,
//! so that a publisher's frame reaches its subscribers, and a subscriber's keyframe
//! request reaches the publisher, without passing through the room. Which layer a
//! subscriber should get is decided by that subscriber's bandwidth estimate, in its
//! [`PeerCore`](crate::peer::PeerCore); the router carries the decision out, frame
//! by frame. What else a consumer needs per subscriber (its m-line) lives there too.
//!
//! The router is sans-IO and generic over the handles: the actors use actix
//! recipients, the simulated-network tests plain indices. Every actor of a room
//! runs on the media thread, so the lock around a room's router is never contended.

mod keyframe;
mod layers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::media::MediaTime;

pub use keyframe::{DEFAULT_KEYFRAME_INTERVAL, KeyframeDecision, KeyframeThrottle};
pub use layers::{LAYER_TIMEOUT, Layer, LayerInfo, LayerSwitch, Layers, Pass, Target};

use crate::ids::{ParticipantId, TrackId};
use crate::{MediaKind, TrackDesc};

/// A subscriber's end of a producer: where the frames go, and at which layer.
#[derive(Debug)]
pub struct Consumer<C> {
    /// Who.
    pub subscriber: ParticipantId,
    /// Where its frames go.
    pub to: C,
    /// Which layer it gets.
    pub switch: LayerSwitch,
    /// A keyframe has been passed to it (of a video track): until then its
    /// decoder has nothing to start from, and one is asked for with every frame.
    pub started: bool,
}

/// A published track and who receives it.
#[derive(Debug)]
pub struct Producer<C, P> {
    kind: MediaKind,
    publisher: P,
    consumers: Vec<Consumer<C>>,
    layers: Layers,
    /// A throttle per layer: a keyframe of one layer says nothing of another's.
    keyframes: Vec<(Layer, KeyframeThrottle)>,
    /// Layers the server makes of this track (the ladder), each with the handle
    /// that makes its keyframes: the publisher has never heard of them.
    made: Vec<(Layer, P)>,
}

impl<C, P> Producer<C, P> {
    fn throttle(&mut self, layer: Layer, interval: Duration) -> &mut KeyframeThrottle {
        let i = match self.keyframes.iter().position(|(l, _)| *l == layer) {
            Some(i) => i,
            None => {
                self.keyframes.push((layer, KeyframeThrottle::new(interval)));
                self.keyframes.len() - 1
            }
        };
        &mut self.keyframes[i].1
    }

    /// Who makes the keyframes of `layer`.
    fn source(&self, layer: Layer) -> &P {
        self.made.iter().find(|(l, _)| *l == layer).map_or(&self.publisher, |(_, p)| p)
    }
}

/// A frame, as the router routes it.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    /// Its layer.
    pub layer: Layer,
    /// Its RTP time.
    pub time: MediaTime,
    /// It is a keyframe.
    pub keyframe: bool,
    /// Its length in bytes.
    pub bytes: usize,
    /// Its picture size, if it is a keyframe whose size could be read.
    pub size: Option<(u32, u32)>,
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

impl<C, P> Router<C, P> {
    /// An empty router whose producers ask their publishers for a keyframe at most
    /// once per `keyframe_interval`.
    pub fn new(keyframe_interval: Duration) -> Self {
        Router { keyframe_interval, producers: HashMap::new() }
    }

    /// A track is published; `publisher` takes its keyframe requests.
    pub fn add_producer(&mut self, track: &TrackDesc, publisher: P) {
        let p = Producer { kind: track.kind, publisher, consumers: Vec::new(), layers: Layers::default(), keyframes: Vec::new(), made: Vec::new() };
        self.producers.insert(track.id, p);
    }

    /// The server makes `layer` of `track` (the ladder): its keyframe requests go
    /// to `source`, not to the publisher.
    pub fn add_made_layer(&mut self, track: TrackId, layer: Layer, source: P) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.made.retain(|(l, _)| *l != layer);
            p.made.push((layer, source));
        }
    }

    /// The layers of `track` the server makes.
    pub fn made_layers(&self, track: TrackId) -> Vec<Layer> {
        self.producers.get(&track).map_or_else(Vec::new, |p| p.made.iter().map(|(l, _)| *l).collect())
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
            p.consumers.retain(|c| c.subscriber != subscriber);
            p.consumers.push(Consumer { subscriber, to: consumer, switch: LayerSwitch::default(), started: false });
        }
    }

    /// `subscriber` no longer receives `track`.
    pub fn unlink(&mut self, track: TrackId, subscriber: ParticipantId) {
        if let Some(p) = self.producers.get_mut(&track) {
            p.consumers.retain(|c| c.subscriber != subscriber);
        }
    }

    /// Who receives `track`, where its frames go and at which layer.
    pub fn consumers(&self, track: TrackId) -> &[Consumer<C>] {
        self.producers.get(&track).map_or(&[], |p| &p.consumers)
    }

    /// A frame of `track` arrived at `now`: measured with its layer, and handed to
    /// `send` for each consumer that takes it, with the RTP time that consumer
    /// gets. Answers true if a consumer waits for a keyframe of this frame's layer
    /// (to start on it, or to switch to it, or it has had none yet): ask for one
    /// through
    /// [`want_keyframe`](Self::want_keyframe), whose throttle repeats the request
    /// until it comes.
    pub fn route(&mut self, track: TrackId, frame: FrameInfo, now: Instant, mut send: impl FnMut(&C, MediaTime)) -> bool {
        let Some(p) = self.producers.get_mut(&track) else {
            return false;
        };
        p.layers.frame(frame.layer, frame.bytes, frame.size, now);
        let video = p.kind == MediaKind::Video;
        let mut wants = false;
        for c in &mut p.consumers {
            match c.switch.pass(frame.layer, frame.time, frame.keyframe, &p.layers, now) {
                Pass::Send(time) => {
                    send(&c.to, time);
                    // A new subscriber's first keyframe is asked for until one has
                    // gone to it (LiveKit #436: one lost request left a
                    // subscriber black).
                    c.started |= frame.keyframe;
                    wants |= video && !c.started;
                }
                Pass::Skip => {}
                Pass::SkipWantKeyframe => wants = true,
            }
        }
        wants
    }

    /// The layers of `track` as they arrive now, lowest first.
    pub fn layers(&self, track: TrackId, now: Instant) -> Vec<LayerInfo> {
        self.producers.get(&track).map_or_else(Vec::new, |p| p.layers.info(now))
    }

    /// `subscriber`'s consumer of `track`, if it has one.
    pub fn consumer(&self, track: TrackId, subscriber: ParticipantId) -> Option<&Consumer<C>> {
        self.consumers(track).iter().find(|c| c.subscriber == subscriber)
    }

    /// `subscriber` should get `target` of `track` from now on. Answers the layer
    /// whose keyframe it now waits for, if the target changed to a layer.
    pub fn set_target(&mut self, track: TrackId, subscriber: ParticipantId, target: Target, now: Instant) -> Option<Layer> {
        let p = self.producers.get_mut(&track)?;
        let c = p.consumers.iter_mut().find(|c| c.subscriber == subscriber)?;
        if !c.switch.set_target(target) {
            return None;
        }
        c.switch.wanted(&p.layers, now).filter(|l| c.switch.current() != Some(*l))
    }

    /// The layers whose keyframe `subscriber`'s decoder of `track` needs: the one
    /// it receives or waits for. Anyone else (the publisher itself, after an
    /// operator's hold), and a subscriber before any frame has come, needs every
    /// layer's; `None` stands for all of them when none has been seen yet.
    pub fn keyframe_layers(&self, track: TrackId, subscriber: ParticipantId, now: Instant) -> Vec<Layer> {
        let Some(p) = self.producers.get(&track) else {
            return Vec::new();
        };
        let mine = p.consumers.iter().find(|c| c.subscriber == subscriber);
        if let Some(layer) = mine.and_then(|c| c.switch.current().or_else(|| c.switch.wanted(&p.layers, now))) {
            return vec![layer];
        }
        let all: Vec<Layer> = p.layers.info(now).into_iter().filter(|l| l.active).map(|l| l.layer).collect();
        if all.is_empty() { vec![None] } else { all }
    }

    /// Someone (a subscriber whose decoder needs one, or the publisher's own loss
    /// detection) wants a keyframe of `layer` of `track` at `now`: the first
    /// request goes at once, the ones that follow within the interval become one at
    /// its end.
    pub fn want_keyframe(&mut self, track: TrackId, layer: Layer, now: Instant) -> KeyframeAsk<'_, P> {
        let interval = self.keyframe_interval;
        let Some(p) = self.producers.get_mut(&track).filter(|p| p.kind == MediaKind::Video) else {
            return KeyframeAsk::Nothing;
        };
        match p.throttle(layer, interval).request(now) {
            KeyframeDecision::SendNow => KeyframeAsk::Now(p.source(layer)),
            KeyframeDecision::SendAt(at) => KeyframeAsk::At(p.source(layer), at),
            KeyframeDecision::Coalesced => KeyframeAsk::Nothing,
        }
    }

    /// The time given by [`KeyframeAsk::At`] has come: whom to ask now (the
    /// publisher, or the maker of a layer the server makes), if
    /// a request is still due. (Were that time never kept, the next request after
    /// the interval would go at once.)
    pub fn keyframe_due(&mut self, track: TrackId, layer: Layer, now: Instant) -> Option<&P> {
        let interval = self.keyframe_interval;
        let p = self.producers.get_mut(&track)?;
        if p.throttle(layer, interval).fire(now) { Some(p.source(layer)) } else { None }
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
        let mut r: Router<&'static str, &'static str> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.link(TrackId(10), ParticipantId(2), "early");
        assert!(r.consumers(TrackId(10)).is_empty(), "no producer yet: nothing to link");
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        r.link(TrackId(10), ParticipantId(2), "b");
        r.link(TrackId(10), ParticipantId(3), "c");
        r.link(TrackId(10), ParticipantId(2), "b again");
        fn linked(r: &Router<&'static str, &'static str>) -> Vec<(ParticipantId, &'static str)> {
            r.consumers(TrackId(10)).iter().map(|c| (c.subscriber, c.to)).collect()
        }
        assert_eq!(linked(&r), [(ParticipantId(3), "c"), (ParticipantId(2), "b again")]);
        r.unlink(TrackId(10), ParticipantId(3));
        assert_eq!(linked(&r), [(ParticipantId(2), "b again")]);
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
        assert_eq!(r.want_keyframe(TrackId(10), None, t0), KeyframeAsk::Now(&"video publisher"));
        let at = t0 + Duration::from_millis(500);
        assert_eq!(r.want_keyframe(TrackId(10), None, t0 + Duration::from_millis(1)), KeyframeAsk::At(&"video publisher", at));
        assert_eq!(r.want_keyframe(TrackId(10), None, t0 + Duration::from_millis(2)), KeyframeAsk::Nothing);
        assert_eq!(r.keyframe_due(TrackId(10), None, at), Some(&"video publisher"));
        assert_eq!(r.keyframe_due(TrackId(10), None, at), None, "one request per interval");
        assert_eq!(r.want_keyframe(TrackId(11), None, t0), KeyframeAsk::Nothing, "audio has no keyframes");
        assert_eq!(r.want_keyframe(TrackId(99), None, t0), KeyframeAsk::Nothing);
    }

    #[test]
    fn a_scheduled_request_never_kept_does_not_stop_later_ones() {
        let mut r: Router<(), &str> = Router::new(Duration::from_millis(500));
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        let t0 = Instant::now();
        assert!(matches!(r.want_keyframe(TrackId(10), None, t0), KeyframeAsk::Now(_)));
        assert!(matches!(r.want_keyframe(TrackId(10), None, t0 + Duration::from_millis(100)), KeyframeAsk::At(..)));
        // Whoever held that time went away; a request after the interval goes at once.
        assert!(matches!(r.want_keyframe(TrackId(10), None, t0 + Duration::from_millis(600)), KeyframeAsk::Now(_)));
    }

    fn frame(layer: &str, ticks: u64, keyframe: bool, bytes: usize, size: (u32, u32)) -> FrameInfo {
        FrameInfo {
            layer: Some(layer.into()),
            time: MediaTime::from_90khz(ticks),
            keyframe,
            bytes,
            size: keyframe.then_some(size),
        }
    }

    /// Frames of two layers (their RTP clocks far apart, as each stream has its own
    /// random origin), 30 per second each, with a keyframe of each at frame `k`s.
    fn run(r: &mut Router<&'static str, ()>, t0: Instant, frames: std::ops::Range<u64>, keyframes: &[u64]) -> Vec<(&'static str, &'static str, u64)> {
        let mut got = Vec::new();
        for n in frames {
            let now = t0 + Duration::from_millis(n * 33);
            let key = keyframes.contains(&n);
            r.route(TrackId(10), frame("f", 5_000_000 + n * 3000, key, 10_000, (1280, 720)), now, |to, t| got.push((*to, "f", t.numer())));
            r.route(TrackId(10), frame("q", 1_000 + n * 3000, key, 2_000, (320, 180)), now, |to, t| got.push((*to, "q", t.numer())));
        }
        got
    }

    #[test]
    fn each_consumer_gets_its_own_layer_and_switches_at_a_keyframe_with_time_running_on() {
        let mut r: Router<&'static str, ()> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.add_producer(&track(10, MediaKind::Video), ());
        r.link(TrackId(10), ParticipantId(2), "best");
        r.link(TrackId(10), ParticipantId(3), "low");
        let t0 = Instant::now();
        // Layers are learned from the first frames: both start on the best one, at
        // a keyframe.
        let got = run(&mut r, t0, 0..3, &[0]);
        assert!(got.iter().all(|(_, l, _)| *l == "f"), "{got:?}");
        let layers = r.layers(TrackId(10), t0 + Duration::from_millis(66));
        assert_eq!(layers.iter().map(|l| l.layer).collect::<Vec<_>>(), [Some("q".into()), Some("f".into())], "lowest first");

        // One subscriber's link holds only the low layer: it moves there at the low
        // layer's next keyframe, asked for at once.
        let now = t0 + Duration::from_millis(99);
        assert_eq!(r.set_target(TrackId(10), ParticipantId(3), Target::Layer(Some("q".into())), now), Some(Some("q".into())));
        assert!(r.route(TrackId(10), frame("q", 1_000 + 3 * 3000, false, 2_000, (0, 0)), now, |_, _| {}), "the switch waits for a keyframe");
        let got = run(&mut r, t0, 4..10, &[6]);
        let low: Vec<_> = got.iter().filter(|(to, _, _)| *to == "low").collect();
        assert_eq!(low.iter().filter(|(_, l, _)| *l == "f").count(), 3, "the top layer until the low one's keyframe: {low:?}");
        assert!(low.iter().skip(3).all(|(_, l, _)| *l == "q"), "{low:?}");
        // Its RTP times run on by one frame's worth across the switch, not by the
        // distance between the layers' clocks.
        let times: Vec<u64> = low.iter().map(|(_, _, t)| *t).collect();
        assert!(times.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 3000 * 2), "{times:?}");
        assert!(got.iter().filter(|(to, _, _)| *to == "best").all(|(_, l, _)| *l == "f"), "the other stays on top");
        let c = r.consumer(TrackId(10), ParticipantId(3)).unwrap();
        assert_eq!((c.switch.current(), c.switch.switches()), (Some(Some("q".into())), 1));

        // Paused: nothing more of it (its audio is another track).
        r.set_target(TrackId(10), ParticipantId(3), Target::Paused, t0 + Duration::from_millis(330));
        let got = run(&mut r, t0, 10..12, &[]);
        assert!(got.iter().all(|(to, _, _)| *to == "best"), "{got:?}");
    }

    #[test]
    fn a_consumer_whose_layer_stops_falls_back_to_one_that_arrives() {
        let mut r: Router<&'static str, ()> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.add_producer(&track(10, MediaKind::Video), ());
        r.link(TrackId(10), ParticipantId(2), "sub");
        let t0 = Instant::now();
        run(&mut r, t0, 0..3, &[0]);
        // The publisher stops its top layer (its uplink got short): only "q" comes.
        let mut got = Vec::new();
        let mut asked = false;
        for n in 3..80u64 {
            let now = t0 + Duration::from_millis(n * 33);
            asked |= r.route(TrackId(10), frame("q", 1_000 + n * 3000, n == 60, 2_000, (320, 180)), now, |_, t| got.push((n, t.numer())));
        }
        assert!(asked, "a keyframe of the layer that still arrives is asked for");
        assert_eq!(got.first().map(|(n, _)| *n), Some(60), "moved at its keyframe: {got:?}");
        assert_eq!(r.keyframe_layers(TrackId(10), ParticipantId(2), t0 + Duration::from_secs(3)), [Some("q".into())]);
        assert_eq!(r.keyframe_layers(TrackId(10), ParticipantId(9), t0 + Duration::from_secs(3)), [Some("q".into())], "a non-consumer: every active layer");
    }

    #[test]
    fn a_new_subscriber_asks_for_a_keyframe_until_one_reaches_it() {
        let mut r: Router<&'static str, ()> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.add_producer(&track(10, MediaKind::Video), ());
        r.add_producer(&track(11, MediaKind::Audio), ());
        r.link(TrackId(10), ParticipantId(2), "video");
        r.link(TrackId(11), ParticipantId(2), "audio");
        let t0 = Instant::now();
        let single = |n: u64, keyframe: bool| FrameInfo { layer: None, time: MediaTime::from_90khz(n * 3000), keyframe, bytes: 1000, size: None };
        // Its first request was lost: every frame that reaches it without a keyframe
        // before asks again (the throttle spaces them).
        assert!(r.route(TrackId(10), single(0, false), t0, |_, _| {}));
        assert!(r.route(TrackId(10), single(1, false), t0, |_, _| {}));
        assert!(!r.route(TrackId(10), single(2, true), t0, |_, _| {}), "the keyframe reached it");
        assert!(!r.route(TrackId(10), single(3, false), t0, |_, _| {}));
        assert!(!r.route(TrackId(11), single(0, false), t0, |_, _| {}), "audio needs none");
    }

    #[test]
    fn keyframe_requests_are_throttled_per_layer() {
        let mut r: Router<(), &str> = Router::new(Duration::from_millis(500));
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        let t0 = Instant::now();
        assert!(matches!(r.want_keyframe(TrackId(10), Some("q".into()), t0), KeyframeAsk::Now(_)));
        assert!(matches!(r.want_keyframe(TrackId(10), Some("f".into()), t0), KeyframeAsk::Now(_)), "another layer's own throttle");
        assert!(matches!(r.want_keyframe(TrackId(10), Some("q".into()), t0), KeyframeAsk::At(..)));
    }

    #[test]
    fn a_layer_the_server_makes_has_its_keyframes_asked_of_its_maker() {
        let mut r: Router<(), &str> = Router::new(Duration::from_millis(500));
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        r.add_made_layer(TrackId(10), Some("360p".into()), "ladder");
        let t0 = Instant::now();
        assert_eq!(r.want_keyframe(TrackId(10), Some("360p".into()), t0), KeyframeAsk::Now(&"ladder"));
        assert_eq!(r.want_keyframe(TrackId(10), None, t0), KeyframeAsk::Now(&"publisher"), "the source layer's go to the publisher");
        assert_eq!(r.want_keyframe(TrackId(10), Some("360p".into()), t0), KeyframeAsk::At(&"ladder", t0 + Duration::from_millis(500)));
        assert_eq!(r.keyframe_due(TrackId(10), Some("360p".into()), t0 + Duration::from_millis(500)), Some(&"ladder"));
        assert_eq!(r.made_layers(TrackId(10)), [Some("360p".into())]);
    }

    #[test]
    fn a_move_from_a_made_layer_to_the_source_waits_for_the_sources_keyframe() {
        // The ladder's source layer has no rid; a consumer on a rung moves to it
        // only at a keyframe, as between any two layers.
        let mut r: Router<&'static str, &'static str> = Router::new(DEFAULT_KEYFRAME_INTERVAL);
        r.add_producer(&track(10, MediaKind::Video), "publisher");
        r.add_made_layer(TrackId(10), Some("360p".into()), "ladder");
        r.link(TrackId(10), ParticipantId(2), "sub");
        let t0 = Instant::now();
        let source = |n: u64, keyframe: bool| FrameInfo { layer: None, time: MediaTime::from_90khz(n * 3000), keyframe, bytes: 8000, size: keyframe.then_some((1280, 720)) };
        r.route(TrackId(10), source(0, true), t0, |_, _| {});
        r.route(TrackId(10), frame("360p", 0, true, 2000, (640, 360)), t0, |_, _| {});
        r.set_target(TrackId(10), ParticipantId(2), Target::Layer(Some("360p".into())), t0);
        let mut got = Vec::new();
        r.route(TrackId(10), frame("360p", 3000, true, 2000, (640, 360)), t0, |_, _| got.push("360p"));
        assert_eq!(got, ["360p"]);
        r.set_target(TrackId(10), ParticipantId(2), Target::Layer(None), t0);
        let wants = r.route(TrackId(10), source(2, false), t0, |_, _| got.push("source delta"));
        assert!(wants, "a keyframe of the source is asked for");
        r.route(TrackId(10), source(3, true), t0, |_, _| got.push("source key"));
        assert_eq!(got, ["360p", "source key"]);
    }
}
