//! How a subscriber's link is shared among the video it receives: LiveKit's stream
//! allocator, sans IO.
//!
//! str0m estimates what the path to the subscriber carries (GCC on TWCC feedback,
//! `Event::EgressBitrateEstimate`). The allocator gives that estimate out: audio
//! first (a fixed reserve per audio track), then each video track's lowest layer in
//! priority order (the surgery feed, then the program, then commentators), then the
//! steps up, in the same order, while they fit. A track whose lowest layer has not
//! fitted for [`PAUSE_AFTER`] is paused; its audio goes on, and it starts again by
//! itself when the estimate allows. The first track (the feed) is never paused when
//! it has a single layer: there is nothing lower to give, and a picture that
//! stutters on a link whose estimate dips (GCC reads jitter as congestion) is worth
//! more to a commentator than none. Nor is its lowest layer paused while GCC's
//! delay-based estimate alone still carries it: then only the loss-based estimate
//! is short, the link loses packets without queueing them (a radio link's own
//! loss, 10 % of it), and a lower rate would not lose fewer. The router carries the
//! choice out, switching at a keyframe of the layer chosen.
//!
//! A link that just proved short keeps its layers for [`HOLD_AFTER_DOWN`] before
//! stepping up again; meanwhile, and for as long as something is below its best
//! layer, str0m is asked to probe with padding up to what the best layers would
//! need ([`PROBE_EVERY`]), so that a link that recovers is found within seconds
//! (the failure to avoid: a picture that never climbs back, LiveKit #817).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;

use super::PeerCore;
use crate::TrackSource;
use crate::ids::TrackId;
use crate::router::{LayerInfo, Target};

/// Bitrate set aside for each audio track received: Opus at up to 48 kbit/s with
/// its packet overhead.
pub const AUDIO_RESERVE: u64 = 60_000;

/// Share of the estimate given to media when stepping up; the rest is headroom
/// for RTCP, retransmissions and the estimate's own error.
const USABLE: f64 = 0.9;

/// Share of the estimate a layer it has may use before it steps down: between
/// the two, it stays where it is (a keyframe that swells a layer's measured
/// bitrate for a moment, or an estimate that wavers, moves nothing).
const KEEP: f64 = 1.0;

/// After a step down, no step up for this long; twice as long after a step up
/// that had to be taken back within [`FAILED_UP`].
pub const HOLD_AFTER_DOWN: Duration = Duration::from_secs(2);

/// The longest hold after repeated failed steps up: a link that recovers has its
/// top layer back within about this long.
const MAX_HOLD: Duration = Duration::from_secs(4);

/// A step down this soon after a step up means the step up failed.
const FAILED_UP: Duration = Duration::from_secs(3);

/// A step up that lasted this long clears the hold's doubling.
const UP_HELD: Duration = Duration::from_secs(10);

/// A step up is taken once it has fitted the estimate for this long: a probe
/// can lift the estimate for a moment over what a shaped link carries.
pub const UP_AFTER: Duration = Duration::from_secs(1);

/// How often the allocation is made again without a new estimate (layers start
/// and stop, bitrates move).
pub const REALLOCATE_EVERY: Duration = Duration::from_millis(500);

/// A track is paused only once its lowest layer has not fitted for this long: a
/// jittery link makes the estimate dip for a moment.
pub const PAUSE_AFTER: Duration = Duration::from_secs(2);

/// `desired` is given in steps of this.
const DESIRED_STEP: u64 = 250_000;

/// How often str0m is asked for an allocation probe while a track is below its
/// best layer.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How much higher `desired` is at each probe (str0m probes when it rises).
const PROBE_RAISE: u64 = 1_000;

/// An estimate that has not climbed (by [`CLIMBING`]) for this long while something
/// is below its best is stuck: GCC grows its estimate to at most 1.5× what it sees acknowledged, and
/// its probes wait on states it can stay in for good (LiveKit #817: a subscriber
/// that never climbs back). The estimator is then started again from where it
/// stands, and its initial probes find what the link carries.
pub const STUCK_AFTER: Duration = Duration::from_secs(4);

/// An estimate this many times higher than at the start of [`STUCK_AFTER`] is
/// climbing.
const CLIMBING: f64 = 1.25;

/// At most one such restart in this long.
const RESTART_EVERY: Duration = Duration::from_secs(10);

/// Below this share of packets lost, a link is taken to lose nothing.
const LOSS_FREE: f32 = 0.01;

/// A video track the subscriber receives, with its layers as they arrive now.
#[derive(Debug, Clone)]
pub struct VideoIn {
    /// The track.
    pub track: TrackId,
    /// Where it comes from: its priority.
    pub source: TrackSource,
    /// Its layers, lowest first.
    pub layers: Vec<LayerInfo>,
}

/// What the allocator decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Tracks whose target changed.
    pub changed: Vec<(TrackId, Target)>,
    /// What the allocated media needs, bits per second (str0m's `minimum`).
    pub minimum: u64,
    /// What the best layers would need (str0m's `desired`: it probes toward it).
    pub desired: u64,
    /// Tracks below their best layer or paused.
    pub limited: usize,
    /// The estimate is stuck ([`STUCK_AFTER`]): restart the estimator from it.
    pub restart_estimate: bool,
}

/// One subscriber's allocator.
#[derive(Debug, Default)]
pub struct Allocator {
    estimate: Option<u64>,
    /// GCC's delay-based estimate alone, before its loss-based one caps it.
    delay_estimate: Option<u64>,
    /// Stats ticks in a row that saw a loss (str0m's TWCC loss over the last
    /// second, at least [`LOSS_FREE`]).
    lossy_ticks: u32,
    /// The delay-based estimate is given out when higher: the last stats tick
    /// lost nothing, and no two in a row have lost since.
    follow_delay: bool,
    targets: HashMap<TrackId, Target>,
    last_down: Option<Instant>,
    last_up: Option<Instant>,
    /// How long a step down holds now ([`HOLD_AFTER_DOWN`] to [`MAX_HOLD`]).
    hold: Option<Duration>,
    /// Since when a step up has fitted, per track.
    up_fits_since: HashMap<TrackId, Instant>,
    /// Since when each track's lowest layer has not fitted.
    short_since: HashMap<TrackId, Instant>,
    last_probe: Option<Instant>,
    /// Probes asked for since it was last at its best.
    probes: u64,
    /// The estimate as last allocated, and since when it has been that.
    steady: Option<(u64, Instant)>,
    last_restart: Option<Instant>,
}

fn priority(s: TrackSource) -> u8 {
    match s {
        TrackSource::Feed => 0,
        TrackSource::Program => 1,
        TrackSource::Commentator => 2,
    }
}

impl Allocator {
    /// A new estimate of what the path carries, bits per second.
    pub fn set_estimate(&mut self, bps: u64) {
        self.estimate = Some(bps);
    }

    /// The delay-based estimate alone, bits per second. Where it is above the
    /// estimate, the link loses packets without queueing them (a radio link's own
    /// loss), and sending less would not make it lose less.
    pub fn set_delay_estimate(&mut self, bps: Option<u64>) {
        self.delay_estimate = bps;
    }

    /// The last delay-based estimate.
    pub fn delay_estimate(&self) -> Option<u64> {
        self.delay_estimate
    }

    /// What was lost of what was sent to it lately (0..1).
    pub fn set_loss(&mut self, loss: Option<f32>) {
        let Some(loss) = loss else { return };
        if loss < LOSS_FREE {
            self.lossy_ticks = 0;
            self.follow_delay = true;
        } else {
            self.lossy_ticks += 1;
            // One tick's loss on a loaded machine is noise; two in a row are the link.
            self.follow_delay &= self.lossy_ticks < 2;
        }
    }

    /// What is given out: the estimate, or the delay-based estimate alone when
    /// that is higher and nothing is being lost ([`Allocator::set_loss`]). GCC's loss-based estimate
    /// remembers a loss for seconds after the link stops losing (a cap that was
    /// lifted), and climbs back slowly while the delay-based one already has the
    /// link; the loss it remembers is gone, so the layers may follow the link.
    fn usable(&self, estimate: u64) -> u64 {
        match self.delay_estimate {
            Some(d) if self.follow_delay => d.max(estimate),
            _ => estimate,
        }
    }

    /// The last estimate.
    pub fn estimate(&self) -> Option<u64> {
        self.estimate
    }

    /// The target of a track, as last decided (before any estimate: the best
    /// layer).
    pub fn target(&self, track: TrackId) -> Target {
        self.targets.get(&track).copied().unwrap_or(Target::Best)
    }

    /// A track it received ended.
    pub fn forget(&mut self, track: TrackId) {
        self.targets.remove(&track);
        self.up_fits_since.remove(&track);
        self.short_since.remove(&track);
    }

    /// Shares the estimate among `audio` audio tracks and the `video` tracks.
    /// `None` before the first estimate: every track gets its best layer.
    pub fn allocate(&mut self, now: Instant, audio: usize, video: &[VideoIn]) -> Option<Allocation> {
        let raw = self.estimate?;
        let estimate = self.usable(raw);
        let mut budget = (estimate as f64 * USABLE) as i64 - (audio as u64 * AUDIO_RESERVE) as i64;
        let mut order: Vec<&VideoIn> = video.iter().collect();
        order.sort_by_key(|v| priority(v.source));
        let hold = self.hold.unwrap_or(HOLD_AFTER_DOWN);
        if self.last_up.is_some_and(|up| now.saturating_duration_since(up) >= UP_HELD && self.last_down.is_none_or(|d| d < up)) {
            self.hold = None;
        }
        let holding = self.last_down.is_some_and(|at| now.saturating_duration_since(at) < hold);

        // Per track: its active layers, and the index chosen among them.
        let mut plan: Vec<(&VideoIn, Vec<&LayerInfo>, Option<usize>)> = Vec::new();
        for v in order {
            let active: Vec<&LayerInfo> = v.layers.iter().filter(|l| l.active).collect();
            plan.push((v, active, None));
        }
        // Lowest layers first, in priority order. One that does not fit is kept
        // until it has not fitted for a while, and always for a first track with
        // nothing lower.
        // The first track's lowest layer also stays while the delay-based
        // estimate carries it: a link that only loses (and does not queue) is not
        // helped by a black picture.
        let lossy_budget = self.delay_estimate.map(|d| (d as f64 * USABLE) as i64 - (audio as u64 * AUDIO_RESERVE) as i64);
        for (n, (v, active, choice)) in plan.iter_mut().enumerate() {
            let Some(low) = active.first() else { continue };
            let fits = (low.bitrate as i64) <= budget;
            if fits {
                self.short_since.remove(&v.track);
            }
            let short_for = now.saturating_duration_since(*self.short_since.entry(v.track).or_insert(now));
            let was_paused = self.targets.get(&v.track) == Some(&Target::Paused);
            let only_lossy = n == 0 && lossy_budget.is_some_and(|b| low.bitrate as i64 <= b);
            let keep = fits || only_lossy || (n == 0 && active.len() == 1) || (!was_paused && short_for < PAUSE_AFTER);
            if keep {
                budget -= low.bitrate as i64;
                *choice = Some(0);
            }
        }
        // Then steps up, in the same order, while they fit (and not while holding
        // after a step down: no higher than the layer it has).
        for (v, active, choice) in &mut plan {
            let Some(mut i) = *choice else { continue };
            let current = match self.targets.get(&v.track) {
                Some(Target::Layer(l)) => active.iter().position(|a| a.layer == *l),
                Some(Target::Paused) => Some(i),
                Some(Target::Best) | None => None,
            };
            let top = active.len().saturating_sub(1);
            // Where it may stay: the layer it has, while that fits the estimate
            // with the slack between USABLE and KEEP.
            let slack = (estimate as f64 * (KEEP - USABLE)) as i64;
            let stay = current.filter(|&c| c > i && c <= top && active[c].bitrate as i64 - active[i].bitrate as i64 <= budget + slack);
            let mut reach = i;
            let mut left = budget;
            while reach < top && (active[reach + 1].bitrate as i64 - active[reach].bitrate as i64) <= left {
                left -= active[reach + 1].bitrate as i64 - active[reach].bitrate as i64;
                reach += 1;
            }
            // Above the layer it has, only once that has fitted for a while, and
            // not while holding after a step down.
            let cap = match current {
                Some(c) if reach > c => {
                    let since = *self.up_fits_since.entry(v.track).or_insert(now);
                    if holding || now.saturating_duration_since(since) < UP_AFTER { c.max(i) } else { reach }
                }
                _ => {
                    self.up_fits_since.remove(&v.track);
                    reach
                }
            };
            let cap = cap.max(stay.unwrap_or(0));
            while i < cap {
                budget -= active[i + 1].bitrate as i64 - active[i].bitrate as i64;
                i += 1;
            }
            *choice = Some(i);
        }

        let mut out = Allocation {
            changed: Vec::new(),
            minimum: audio as u64 * AUDIO_RESERVE,
            desired: audio as u64 * AUDIO_RESERVE,
            limited: 0,
            restart_estimate: false,
        };
        let (mut stepped_down, mut stepped_up) = (false, false);
        for (v, active, choice) in &plan {
            if active.is_empty() {
                // Nothing arrives: nothing to decide until it does.
                continue;
            }
            let top = active.len() - 1;
            out.desired += active[top].bitrate;
            let target = match choice {
                Some(i) => {
                    out.minimum += active[*i].bitrate;
                    Target::Layer(active[*i].layer)
                }
                None => Target::Paused,
            };
            if *choice != Some(top) {
                out.limited += 1;
            }
            let before = self.target(v.track);
            if before != target {
                let old = match before {
                    Target::Layer(l) => active.iter().position(|a| a.layer == l),
                    Target::Paused => None,
                    Target::Best => Some(top),
                };
                let lower = match (choice, old) {
                    (None, Some(_)) => true,
                    (Some(new), Some(old)) => *new < old,
                    _ => false,
                };
                // The first allocation (from the best layer) is no step down.
                stepped_down |= lower && before != Target::Best;
                stepped_up |= !lower && before != Target::Best;
                self.up_fits_since.remove(&v.track);
                self.targets.insert(v.track, target);
                out.changed.push((v.track, target));
            }
        }
        if stepped_down {
            if self.last_up.is_some_and(|up| now.saturating_duration_since(up) < FAILED_UP) {
                self.hold = Some((hold * 2).min(MAX_HOLD));
            }
            self.last_down = Some(now);
        }
        if stepped_up {
            self.last_up = Some(now);
        }
        // Rounded up to a step, so that a layer's bitrate wavering does not move
        // it (str0m probes when it rises).
        out.desired = ((out.desired as f64 / USABLE) as u64).div_ceil(DESIRED_STEP) * DESIRED_STEP;
        // While something is below its best (and str0m's estimate below what the
        // best needs): `desired` a little higher at each probe, which str0m takes
        // as new demand and answers with a probe toward it.
        if out.limited > 0 && out.desired > raw {
            if self.last_probe.is_none_or(|at| now.saturating_duration_since(at) >= PROBE_EVERY) {
                self.last_probe = Some(now);
                self.probes += 1;
            }
            out.desired += self.probes * PROBE_RAISE;
        } else {
            self.probes = 0;
        }
        // Stuck: held back for 4 s, and not even a quarter higher than at its start
        // (GCC's additive increase creeps; a probe that finds the link jumps). A
        // link with nothing held back has nothing to be stuck on: its next dip
        // starts the count afresh.
        let held_back = out.limited > 0 && out.desired > raw;
        let steady_since = match self.steady {
            Some((e, since)) if held_back && (raw as f64) < e as f64 * CLIMBING => since,
            _ => {
                self.steady = held_back.then_some((raw, now));
                now
            }
        };
        // A link losing packets now is not stuck: its estimate is low for a reason
        // (restarting it there only sends more into the loss). What is stuck is an
        // estimate held down by loss that has passed: a cap lifted.
        if held_back
            && self.lossy_ticks < 2
            && now.saturating_duration_since(steady_since) >= STUCK_AFTER
            && self.last_restart.is_none_or(|at| now.saturating_duration_since(at) >= RESTART_EVERY)
        {
            self.last_restart = Some(now);
            self.steady = Some((raw, now));
            out.restart_estimate = true;
        }
        Some(out)
    }
}

impl PeerCore {
    /// str0m's new estimate of what the path to the peer carries, bits/s.
    pub(super) fn estimated(&mut self, now: Instant, bps: u64) {
        let Some(a) = &mut self.allocator else {
            return;
        };
        a.set_estimate(bps);
        a.set_delay_estimate(self.rtc.bwe().delay_based_estimate().map(|b| b.as_u64()));
        if self.next_allocation.is_none() {
            // The first allocation at once: its video starts on what fits.
            self.next_allocation = Some(now);
        }
    }

    /// The driver's answer to [`PeerOutput::Allocate`](super::PeerOutput::Allocate): the video tracks it
    /// receives, with their layers as they arrive now. Answers the tracks whose
    /// target layer changed, for the router.
    pub fn allocate(&mut self, now: Instant, video: &[VideoIn]) -> Vec<(TrackId, Target)> {
        let audio = self.neg.open_audio();
        let Some(a) = &mut self.allocator else {
            return Vec::new();
        };
        let before: Vec<Target> = video.iter().map(|v| a.target(v.track)).collect();
        let Some(out) = a.allocate(now, audio, video) else {
            return Vec::new();
        };
        if let Some(e) = a.estimate() {
            self.metrics.bwe_estimate.observe(e as f64);
        }
        for (track, target) in &out.changed {
            let Some(i) = video.iter().position(|v| v.track == *track) else { continue };
            let rank = |t: Target| match t {
                Target::Best => Some(video[i].layers.len()),
                Target::Layer(l) => video[i].layers.iter().position(|x| x.layer == l),
                Target::Paused => None,
            };
            let direction = match (rank(before[i]), rank(*target)) {
                (None, _) => "resume",
                (_, None) => "pause",
                (Some(a), Some(b)) if b < a => "down",
                _ => "up",
            };
            self.metrics.layer_changes.with_label_values(&[direction]).inc();
            tracing::debug!(participant = %self.id, %track, ?target, direction, estimate = ?a.estimate(), "layer");
        }
        if out.restart_estimate
            && let Some(e) = a.estimate()
        {
            tracing::info!(participant = %self.id, estimate = e, "the bandwidth estimate is stuck below what the best layers need; estimating again from it");
            self.metrics.bwe_restarts.inc();
            self.rtc.bwe().reset(Bitrate::bps(e));
        }
        if (out.minimum, out.desired) != self.bwe_rates {
            self.bwe_rates = (out.minimum, out.desired);
            self.rtc.bwe().set_bitrate(Bitrate::bps(out.minimum), Bitrate::bps(out.desired));
        }
        // What operators see: the layer it is given of its first track (the feed).
        let mut first: Vec<&VideoIn> = video.iter().collect();
        first.sort_by_key(|v| priority(v.source));
        self.receiving = first.first().map(|v| match a.target(v.track) {
            Target::Paused => "paused".to_string(),
            Target::Best => "best".to_string(),
            Target::Layer(l) => {
                // A track without rids is one layer, or the source of a ladder
                // the server makes.
                let lone = if v.layers.len() > 1 { "source" } else { "single" };
                let name = l.map_or_else(|| lone.to_string(), |r| r.to_string());
                match v.layers.iter().find(|x| x.layer == l).and_then(|x| x.size) {
                    Some((w, h)) => format!("{name} {w}×{h}"),
                    None => name,
                }
            }
        });
        out.changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Layer;

    fn layers(rates: &[(&str, u64)]) -> Vec<LayerInfo> {
        rates
            .iter()
            .map(|(rid, bitrate)| LayerInfo { layer: Some((*rid).into()), bitrate: *bitrate, size: None, active: true })
            .collect()
    }

    fn layer(rid: &str) -> Target {
        Target::Layer(Some(rid.into()) as Layer)
    }

    fn feed() -> VideoIn {
        VideoIn { track: TrackId(1), source: TrackSource::Feed, layers: layers(&[("q", 150_000), ("h", 500_000), ("f", 2_500_000)]) }
    }

    fn commentator() -> VideoIn {
        let single = LayerInfo { layer: None, bitrate: 200_000, size: None, active: true };
        VideoIn { track: TrackId(2), source: TrackSource::Commentator, layers: vec![single] }
    }

    #[test]
    fn before_an_estimate_everything_gets_its_best_layer() {
        let mut a = Allocator::default();
        assert_eq!(a.allocate(Instant::now(), 1, &[feed()]), None);
        assert_eq!(a.target(TrackId(1)), Target::Best);
    }

    #[test]
    fn audio_first_then_the_feed_then_commentators() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        // 1.5 Mbit/s: 1.35 usable, 120 k for two audio tracks: the feed's middle
        // layer and the commentator fit, the top layer does not.
        a.set_estimate(1_500_000);
        let out = a.allocate(t0, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(1), layer("h")), (TrackId(2), Target::Layer(None))]);
        assert_eq!(out.minimum, 120_000 + 500_000 + 200_000);
        assert_eq!(out.limited, 1);
        assert!(out.desired > 2_800_000, "probes toward the top layers: {out:?}");

        // 400 kbit/s: the feed's lowest layer first; the commentator does not fit
        // and, once that has lasted, is paused.
        a.set_estimate(400_000);
        let t1 = t0 + Duration::from_secs(1);
        let out = a.allocate(t1, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(1), layer("q"))], "a dip is ridden out");
        let out = a.allocate(t1 + PAUSE_AFTER, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(2), Target::Paused)]);

        // 100 kbit/s: even the feed's lowest layer does not fit: its video pauses
        // too, audio goes on.
        a.set_estimate(100_000);
        let t2 = t1 + PAUSE_AFTER + Duration::from_secs(1);
        a.allocate(t2, 2, &[commentator(), feed()]).unwrap();
        let out = a.allocate(t2 + PAUSE_AFTER, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(1), Target::Paused)]);
        assert_eq!(out.minimum, 120_000);

        // It resumes by itself when the estimate allows.
        a.set_estimate(1_000_000);
        let t3 = t2 + PAUSE_AFTER * 3;
        let out = a.allocate(t3, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(1), layer("q")), (TrackId(2), Target::Layer(None))]);
        // A step further up once it has fitted for a while.
        assert!(a.allocate(t3 + UP_AFTER / 2, 2, &[commentator(), feed()]).unwrap().changed.is_empty());
        let out = a.allocate(t3 + UP_AFTER * 3 / 2, 2, &[commentator(), feed()]).unwrap();
        assert_eq!(out.changed, [(TrackId(1), layer("h"))]);
    }

    #[test]
    fn a_single_layer_feed_is_never_paused() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        let mut single = commentator();
        single.source = TrackSource::Feed;
        a.set_estimate(50_000);
        a.allocate(t0, 1, &[single.clone()]).unwrap();
        let out = a.allocate(t0 + PAUSE_AFTER * 2, 1, &[single]).unwrap();
        assert_eq!(a.target(TrackId(2)), Target::Layer(None), "{out:?}");
    }

    #[test]
    fn a_link_that_only_loses_keeps_the_feeds_lowest_layer() {
        // 10 % random loss: GCC's loss-based estimate sinks below the feed's
        // lowest layer while its delay-based one still carries it.
        let mut a = Allocator::default();
        let t0 = Instant::now();
        a.set_estimate(100_000);
        a.set_delay_estimate(Some(2_000_000));
        a.allocate(t0, 1, &[feed(), commentator()]).unwrap();
        a.allocate(t0 + PAUSE_AFTER * 2, 1, &[feed(), commentator()]).unwrap();
        assert_eq!(a.target(TrackId(1)), layer("q"), "the feed's lowest layer stays");
        assert_eq!(a.target(TrackId(2)), Target::Paused, "a commentator's video does not");
        // A link that queues (both estimates low) pauses the feed as well.
        a.set_delay_estimate(Some(100_000));
        a.allocate(t0 + PAUSE_AFTER * 3, 1, &[feed(), commentator()]).unwrap();
        a.allocate(t0 + PAUSE_AFTER * 5, 1, &[feed(), commentator()]).unwrap();
        assert_eq!(a.target(TrackId(1)), Target::Paused);
    }

    #[test]
    fn an_estimate_that_stands_still_below_the_best_layers_is_restarted() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        a.set_estimate(1_200_000);
        let at = |s: u64| t0 + Duration::from_millis(s);
        assert!(!a.allocate(at(0), 1, &[feed()]).unwrap().restart_estimate);
        assert!(!a.allocate(at(3_500), 1, &[feed()]).unwrap().restart_estimate, "not yet");
        assert!(a.allocate(at(4_000), 1, &[feed()]).unwrap().restart_estimate, "4 s without a move");
        assert!(!a.allocate(at(8_500), 1, &[feed()]).unwrap().restart_estimate, "not again so soon");
        assert!(a.allocate(at(14_000), 1, &[feed()]).unwrap().restart_estimate);
        // One that creeps (GCC's additive increase) is stuck too...
        a.set_estimate(1_300_000);
        assert!(a.allocate(at(30_000), 1, &[feed()]).unwrap().restart_estimate, "8 % more in 16 s");
        // ...one that climbs is not, nor one that holds the best layers.
        for (s, e) in [(31_000, 1_700_000), (35_000, 2_200_000), (39_500, 2_300_000)] {
            a.set_estimate(e);
            assert!(!a.allocate(at(s), 1, &[feed()]).unwrap().restart_estimate, "{e} at {s} ms");
        }
        a.set_estimate(9_000_000);
        for s in [41_000, 50_000, 60_000] {
            assert!(!a.allocate(at(s), 1, &[feed()]).unwrap().restart_estimate);
        }
    }

    #[test]
    fn a_link_losing_packets_now_is_not_restarted_until_the_loss_stops() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        a.set_estimate(1_200_000);
        for s in [0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000] {
            a.set_loss(Some(0.05));
            assert!(!a.allocate(at(s), 1, &[feed()]).unwrap().restart_estimate, "5 % lost at {s} ms: low for a reason");
        }
        // The loss stops (a cap lifted): held down by the past, it is restarted.
        a.set_loss(Some(0.0));
        assert!(a.allocate(at(9_000), 1, &[feed()]).unwrap().restart_estimate);
    }

    #[test]
    fn a_link_at_its_best_that_dips_is_not_restarted_at_once() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        a.set_estimate(9_000_000);
        for s in [0, 5_000, 10_000] {
            assert!(!a.allocate(at(s), 1, &[feed()]).unwrap().restart_estimate);
        }
        a.set_estimate(2_000_000);
        assert!(!a.allocate(at(10_500), 1, &[feed()]).unwrap().restart_estimate, "the count starts at the dip");
        assert!(!a.allocate(at(14_000), 1, &[feed()]).unwrap().restart_estimate);
        assert!(a.allocate(at(14_500), 1, &[feed()]).unwrap().restart_estimate, "4 s held back without a climb");
    }

    #[test]
    fn a_lifted_cap_is_followed_on_the_delay_based_estimate_while_nothing_is_lost() {
        // GCC's loss-based estimate still remembers the capped link's losses; its
        // delay-based one has found the open link.
        let mut a = Allocator::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        a.set_estimate(1_200_000);
        a.set_delay_estimate(Some(4_000_000));
        a.set_loss(Some(0.03));
        a.allocate(at(0), 1, &[feed()]).unwrap();
        a.allocate(at(1_500), 1, &[feed()]).unwrap();
        assert_eq!(a.target(TrackId(1)), layer("h"), "while packets are lost, the estimate rules");
        a.set_loss(Some(0.0));
        a.allocate(at(2_000), 1, &[feed()]).unwrap();
        a.allocate(at(3_000), 1, &[feed()]).unwrap();
        assert_eq!(a.target(TrackId(1)), layer("f"), "nothing lost: the link is what the delay-based estimate says");
        // One tick's loss is let pass; a loss in two ticks running puts the
        // estimate back in charge.
        a.set_loss(Some(0.05));
        a.allocate(at(3_500), 1, &[feed()]).unwrap();
        assert_eq!(a.target(TrackId(1)), layer("f"), "one lossy tick");
        a.set_loss(Some(0.04));
        a.allocate(at(4_000), 1, &[feed()]).unwrap();
        assert_eq!(a.target(TrackId(1)), layer("h"));
    }

    #[test]
    fn a_link_that_recovers_gets_the_top_layer_back_after_the_hold() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        a.set_estimate(5_000_000);
        assert_eq!(a.allocate(t0, 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("f"))]);
        a.set_estimate(1_000_000);
        assert_eq!(a.allocate(t0 + Duration::from_millis(500), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("h"))]);
        // The link is back at once, but the step down holds for a while...
        a.set_estimate(5_000_000);
        let held = a.allocate(t0 + Duration::from_millis(1000), 1, &[feed()]).unwrap();
        assert!(held.changed.is_empty(), "{held:?}");
        // ...then it climbs.
        let back = a.allocate(t0 + Duration::from_millis(500) + HOLD_AFTER_DOWN, 1, &[feed()]).unwrap();
        assert_eq!(back.changed, [(TrackId(1), layer("f"))]);
        assert_eq!(back.limited, 0);
    }

    #[test]
    fn a_layer_it_has_is_kept_while_it_fits_the_whole_estimate() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        a.set_estimate(4_000_000);
        assert_eq!(a.allocate(t0, 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("f"))]);
        // 2.8 Mbit/s: the top layer would not be stepped up to (2.52 usable, less
        // 60 k of audio), but it is kept (2.8 with the slack).
        a.set_estimate(2_800_000);
        assert!(a.allocate(t0 + Duration::from_secs(1), 1, &[feed()]).unwrap().changed.is_empty());
        a.set_estimate(2_500_000);
        assert_eq!(a.allocate(t0 + Duration::from_secs(2), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("h"))]);
    }

    #[test]
    fn a_step_up_taken_back_at_once_holds_longer_next_time() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        a.set_estimate(5_000_000);
        a.allocate(at(0), 1, &[feed()]).unwrap();
        a.set_estimate(1_000_000);
        assert_eq!(a.allocate(at(500), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("h"))]);
        // A probe lifts the estimate; the step up waits out the hold, and comes
        // once it has fitted for UP_AFTER.
        a.set_estimate(5_000_000);
        assert!(a.allocate(at(2000), 1, &[feed()]).unwrap().changed.is_empty());
        assert_eq!(a.allocate(at(3000), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("f"))]);
        // The link did not hold it: down again at once. The next hold is twice as long.
        a.set_estimate(1_000_000);
        assert_eq!(a.allocate(at(3500), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("h"))]);
        a.set_estimate(5_000_000);
        assert!(a.allocate(at(6000), 1, &[feed()]).unwrap().changed.is_empty(), "still holding 2.5 s after");
        assert_eq!(a.allocate(at(7500), 1, &[feed()]).unwrap().changed, [(TrackId(1), layer("f"))], "4 s after");
    }

    #[test]
    fn below_the_best_layer_a_probe_is_asked_for_every_few_seconds() {
        let mut a = Allocator::default();
        let t0 = Instant::now();
        a.set_estimate(1_000_000);
        // Raised at each probe: str0m probes at the raise.
        let desired: Vec<u64> = (0..7)
            .map(|i| a.allocate(t0 + REALLOCATE_EVERY * i, 1, &[feed()]).unwrap().desired)
            .collect();
        let top = *desired.iter().max().unwrap();
        let raises = desired.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(top >= 3_000_000, "{desired:?}");
        assert_eq!(raises, 6, "one probe per {PROBE_EVERY:?} over 3 s: {desired:?}");
        // At its best: no more probes, and `desired` is what the layers need.
        a.set_estimate(5_000_000);
        let at_best = a.allocate(t0 + REALLOCATE_EVERY * 7 + HOLD_AFTER_DOWN, 1, &[feed()]).unwrap();
        assert_eq!(at_best.desired % DESIRED_STEP, 0, "{at_best:?}");
    }

    #[test]
    fn a_layer_that_stops_is_not_given_out() {
        let mut a = Allocator::default();
        let mut v = feed();
        v.layers[2].active = false;
        a.set_estimate(10_000_000);
        assert_eq!(a.allocate(Instant::now(), 0, &[v]).unwrap().changed, [(TrackId(1), layer("h"))]);
    }
}
