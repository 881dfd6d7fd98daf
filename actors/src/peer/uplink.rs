//! The room's ceiling on what a commentator sends, held by the server rather than
//! only asked of the page.
//!
//! The page sets its sender's bitrate and frame rate from the room's policy, but a
//! page that ignores them (or an old or modified one) could flood every
//! subscriber's link. So the server also:
//! - asks the browser's encoder for no more bits, once a second: a REMB (receiver
//!   estimated maximum bitrate) at the ceiling, which libwebrtc takes as an upper
//!   bound on what it sends, whatever the page's own parameters say;
//! - measures what arrives, and when a sender stays well above the bitrate
//!   ceiling for a whole second anyway, drops its video (counted in
//!   `casecast_dropped_packets_total{reason="over_uplink_ceiling"}`) until it is
//!   back under, then passes it again from its next keyframe, asked for at once;
//! - holds its frame rate, for which a browser takes no feedback (libwebrtc
//!   ignores a receiver's `max-fr`): frames of temporal layers above what fits
//!   the ceiling are dropped (a VP8 sender with `L1T3` keeps a smooth, lower rate);
//!   a sender whose base layer alone is above the ceiling (most have no other) for
//!   two seconds, or well above it for one, has only its keyframes passed, one asked
//!   for each second, until it is back under (counted in
//!   `casecast_dropped_packets_total{reason="over_frame_rate_ceiling"}`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::media::{MediaData, Rid};

use super::PeerCore;
use crate::{MediaKind, UplinkCeiling};
use str0m::format::CodecExtra;

/// How often the ceiling is asked for again and what arrived is measured.
pub const UPLINK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Added to the video ceiling in the REMB: the browser shares one estimate
/// between its audio and its video.
const AUDIO_ALLOWANCE: u64 = 64_000;

/// Above this multiple of the ceiling for a whole second, the video is dropped
/// (bitrate) or thinned to its keyframes (frame rate).
const DROP_ABOVE: f64 = 1.5;

/// Back under this multiple, it passes again; a temporal layer fits under it.
const RESUME_BELOW: f64 = 1.2;

/// Temporal layers told apart (VP8 has at most four).
const TEMPORAL_LAYERS: usize = 4;

/// Why a frame was not let into the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The sender is well above the bitrate ceiling.
    Bitrate,
    /// The frame would take the layer above the frame-rate ceiling.
    FrameRate,
}

impl Refused {
    /// Its `reason` in `casecast_dropped_packets_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Bitrate => "over_uplink_ceiling",
            Refused::FrameRate => "over_frame_rate_ceiling",
        }
    }
}

/// What the gate needs to know of a frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub bytes: usize,
    pub keyframe: bool,
    /// Its temporal layer (0 for a sender without temporal layers).
    pub temporal: u8,
    /// It depends only on the base layer: a temporal layer can be taken up here.
    pub sync: bool,
}

impl Frame {
    pub fn of(data: &MediaData) -> Frame {
        let (temporal, sync) = match &data.codec_extra {
            CodecExtra::Vp8(e) => (e.layer_index, e.sync),
            _ => (0, false),
        };
        Frame { bytes: data.data.len(), keyframe: data.is_keyframe(), temporal, sync }
    }
}

/// A published track's ceiling and what arrives of it.
#[derive(Debug)]
pub(super) struct Ceiling {
    pub limit: UplinkCeiling,
    window_start: Option<Instant>,
    window_bytes: u64,
    /// Its frames are dropped: it sends well above the bitrate ceiling.
    over: bool,
    /// Back under: its frames pass again from the next keyframe.
    await_keyframe: bool,
    /// The frame rate of each simulcast layer (`None`: a one-layer track).
    rates: HashMap<Option<Rid>, FrameGate>,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Crossing {
    /// It went well above the bitrate ceiling (bits per second over the last window).
    Over(u64),
    /// It is back under.
    Under,
}

impl Ceiling {
    pub fn new(limit: UplinkCeiling) -> Ceiling {
        Ceiling { limit, window_start: None, window_bytes: 0, over: false, await_keyframe: false, rates: HashMap::new() }
    }

    /// A frame of one layer arrived: whether it may pass on.
    pub fn admit(&mut self, rid: Option<Rid>, frame: Frame) -> Result<(), Refused> {
        self.window_bytes += frame.bytes as u64;
        let rate = self.rates.entry(rid).or_insert_with(FrameGate::new).admit(frame);
        if self.over {
            return Err(Refused::Bitrate);
        }
        if self.await_keyframe {
            if !frame.keyframe {
                return Err(Refused::Bitrate);
            }
            self.await_keyframe = false;
        }
        rate
    }

    /// Measures the window that ends at `now`: a bitrate crossing, if any, and the
    /// layers that now need a keyframe (to thin to keyframes, or to pass all
    /// frames again).
    pub fn check(&mut self, now: Instant) -> (Option<Crossing>, Vec<Option<Rid>>) {
        let Some(start) = self.window_start.replace(now) else {
            return (None, Vec::new());
        };
        let span = now.saturating_duration_since(start).as_secs_f64();
        let bytes = std::mem::take(&mut self.window_bytes);
        if span <= 0.0 {
            return (None, Vec::new());
        }
        let fps = f64::from(self.limit.max_fps);
        let keyframes = self.rates.iter_mut().filter_map(|(rid, g)| g.check(span, fps).then_some(*rid)).collect();
        let rate = (bytes * 8) as f64 / span;
        let cap = self.limit.max_bitrate as f64;
        if !self.over && rate > cap * DROP_ABOVE {
            self.over = true;
            return (Some(Crossing::Over(rate as u64)), keyframes);
        }
        if self.over && rate <= cap * RESUME_BELOW {
            self.over = false;
            self.await_keyframe = true;
            return (Some(Crossing::Under), keyframes);
        }
        (None, keyframes)
    }

    /// A layer is passed as its keyframes only: its sender stays well above the
    /// frame-rate ceiling.
    pub fn keyframes_only(&self) -> bool {
        self.rates.values().any(|g| g.keyframes_only)
    }
}

/// One layer's frame rate held to the ceiling.
#[derive(Debug)]
pub(super) struct FrameGate {
    /// Frames that arrived in the window, by temporal layer.
    frames: [u32; TEMPORAL_LAYERS],
    /// The highest temporal layer that fits the ceiling, as of the last window.
    fits: u8,
    /// The highest temporal layer passed now: below `fits` until a frame where
    /// the decoder can take the next layer up.
    passing: u8,
    /// Windows in a row in which even the base layer did not fit.
    base_over: u8,
    /// Even the base layer is above the ceiling: only keyframes pass.
    keyframes_only: bool,
    /// Back under: everything passes again from the next keyframe.
    await_keyframe: bool,
}

impl FrameGate {
    /// Everything passes until the first window is measured.
    fn new() -> FrameGate {
        let top = TEMPORAL_LAYERS as u8 - 1;
        FrameGate { frames: [0; TEMPORAL_LAYERS], fits: top, passing: top, base_over: 0, keyframes_only: false, await_keyframe: false }
    }

    fn admit(&mut self, f: Frame) -> Result<(), Refused> {
        let layer = usize::from(f.temporal).min(TEMPORAL_LAYERS - 1);
        self.frames[layer] += 1;
        if f.keyframe {
            self.await_keyframe = false;
            return Ok(());
        }
        if self.keyframes_only || self.await_keyframe {
            return Err(Refused::FrameRate);
        }
        if f.temporal > self.passing {
            // A layer is taken up only where its frames stop depending on the
            // ones dropped before.
            if f.temporal > self.fits || !f.sync {
                return Err(Refused::FrameRate);
            }
            self.passing = f.temporal;
        }
        Ok(())
    }

    /// The window of `span` seconds ended: which layers fit `max_fps`. True when
    /// a keyframe is wanted now.
    fn check(&mut self, span: f64, max_fps: f64) -> bool {
        let frames = std::mem::take(&mut self.frames);
        let mut fits = None;
        let mut sum = 0;
        for (layer, n) in frames.iter().enumerate() {
            sum += n;
            if f64::from(sum) / span <= max_fps * RESUME_BELOW {
                fits = Some(layer as u8);
            }
        }
        let base = f64::from(frames[0]) / span;
        match fits {
            Some(l) => {
                self.fits = l;
                self.passing = self.passing.min(l);
            }
            None => {
                self.fits = 0;
                self.passing = 0;
            }
        }
        self.base_over = if base > max_fps * RESUME_BELOW { self.base_over.saturating_add(1) } else { 0 };
        // Well above in one window, or above in two in a row (a burst after a
        // stall does not count).
        if !self.keyframes_only && (base > max_fps * DROP_ABOVE || self.base_over >= 2) {
            self.keyframes_only = true;
        } else if self.keyframes_only && base <= max_fps * RESUME_BELOW {
            self.keyframes_only = false;
            self.await_keyframe = true;
        }
        // Thinned to keyframes: one a second; back under: one now.
        self.keyframes_only || self.await_keyframe
    }
}

impl PeerCore {
    /// Once a second for each published track with a ceiling: the ceiling asked of
    /// the sender again (REMB), and what arrived measured against it.
    pub(super) fn check_uplink(&mut self, now: Instant) {
        let mut keyframes = Vec::new();
        for (mid, inbound) in &mut self.inbound {
            let Some(c) = &mut inbound.ceiling else { continue };
            let remb = Bitrate::bps(c.limit.max_bitrate + AUDIO_ALLOWANCE);
            let mut api = self.rtc.direct_api();
            let rids: Vec<Option<Rid>> =
                if inbound.rids.is_empty() { vec![None] } else { inbound.rids.iter().map(|(r, _)| Some(*r)).collect() };
            for rid in rids {
                if let Some(stream) = api.stream_rx_by_mid(*mid, rid) {
                    stream.request_remb(remb);
                }
            }
            let was_thinned = c.keyframes_only();
            let (crossing, layers) = c.check(now);
            match crossing {
                Some(Crossing::Over(rate)) => {
                    tracing::warn!(participant = %self.id, kind = ?inbound.track.kind, rate, ceiling = c.limit.max_bitrate,
                        "sends above the room's ceiling: its video is dropped until it is back under");
                }
                Some(Crossing::Under) => {
                    tracing::info!(participant = %self.id, "back under the room's ceiling: its video passes again");
                    if inbound.track.kind == MediaKind::Video {
                        keyframes.push((inbound.track.id, None));
                    }
                }
                None => {}
            }
            match (was_thinned, c.keyframes_only()) {
                (false, true) => tracing::warn!(participant = %self.id, ceiling = c.limit.max_fps,
                    "sends above the room's frame rate: only its keyframes pass, one a second, until it is back under"),
                (true, false) => {
                    tracing::info!(participant = %self.id, "back under the room's frame rate: all its frames pass again")
                }
                _ => {}
            }
            keyframes.extend(layers.into_iter().map(|rid| (inbound.track.id, rid)));
        }
        for (track, layer) in keyframes {
            self.request_keyframe(track, layer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: UplinkCeiling = UplinkCeiling { max_bitrate: 300_000, max_fps: 5 };

    fn frame(bytes: usize, keyframe: bool) -> Frame {
        Frame { bytes, keyframe, temporal: 0, sync: false }
    }

    /// `n` frames of `bytes`, at `fps`, in VP8's three-layer pattern (0 2 1 2) when
    /// `layered`: how many of each temporal layer passed.
    fn send(c: &mut Ceiling, n: usize, bytes: usize, layered: bool) -> [usize; 3] {
        let mut passed = [0; 3];
        for i in 0..n {
            let temporal = if layered { [0, 2, 1, 2][i % 4] } else { 0 };
            // libwebrtc marks the first TL1 and TL2 frames after a TL0 as sync.
            let f = Frame { bytes, keyframe: false, temporal, sync: temporal > 0 && i % 4 != 3 };
            if c.admit(None, f).is_ok() {
                passed[usize::from(temporal)] += 1;
            }
        }
        passed
    }

    #[test]
    fn a_sender_well_over_the_bitrate_ceiling_is_dropped_until_back_under_then_resumes_at_a_keyframe() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(UplinkCeiling { max_fps: 30, ..LIMIT });
        assert_eq!(c.check(t0).0, None, "the first check starts the window");
        // 1 s at 320 kbit/s: within the tolerance, everything passes.
        for _ in 0..10 {
            assert_eq!(c.admit(None, frame(4_000, false)), Ok(()));
        }
        assert_eq!(c.check(t0 + Duration::from_secs(1)).0, None);
        // 1 s at 2 Mbit/s: dropped from the next frame on.
        for _ in 0..25 {
            assert_eq!(c.admit(None, frame(10_000, false)), Ok(()));
        }
        assert_eq!(c.check(t0 + Duration::from_secs(2)).0, Some(Crossing::Over(2_000_000)));
        for _ in 0..25 {
            assert_eq!(c.admit(None, frame(10_000, true)), Err(Refused::Bitrate), "dropped, keyframes too");
        }
        assert_eq!(c.check(t0 + Duration::from_secs(3)).0, None, "still over");
        // It obeys again: back under, passing from the next keyframe.
        for _ in 0..5 {
            let _ = c.admit(None, frame(5_000, false));
        }
        assert_eq!(c.check(t0 + Duration::from_secs(4)).0, Some(Crossing::Under));
        assert_eq!(c.admit(None, frame(3_000, false)), Err(Refused::Bitrate));
        assert_eq!(c.admit(None, frame(9_000, true)), Ok(()));
        assert_eq!(c.admit(None, frame(3_000, false)), Ok(()));
    }

    #[test]
    fn a_sender_without_temporal_layers_well_over_the_frame_rate_gets_its_keyframes_through_only() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(LIMIT);
        assert_eq!(c.check(t0), (None, vec![]));
        // 5 fps: all pass, nothing asked.
        assert_eq!(send(&mut c, 5, 1_000, false), [5, 0, 0]);
        assert_eq!(c.check(t0 + Duration::from_secs(1)), (None, vec![]));
        // 30 fps: only keyframes pass from now on, and one is asked for each second.
        assert_eq!(send(&mut c, 30, 1_000, false), [30, 0, 0], "measured over the window, then held");
        assert_eq!(c.check(t0 + Duration::from_secs(2)), (None, vec![None]));
        assert!(c.keyframes_only());
        assert_eq!(send(&mut c, 29, 1_000, false), [0, 0, 0]);
        assert_eq!(c.admit(None, frame(8_000, true)), Ok(()), "the keyframe asked for");
        assert_eq!(c.check(t0 + Duration::from_secs(3)), (None, vec![None]), "still over: the next one asked");
        // It obeys again: everything passes from its next keyframe, asked for at once.
        assert_eq!(send(&mut c, 5, 1_000, false), [0, 0, 0]);
        assert_eq!(c.check(t0 + Duration::from_secs(4)), (None, vec![None]));
        assert!(!c.keyframes_only());
        assert_eq!(send(&mut c, 2, 1_000, false), [0, 0, 0], "not before the keyframe");
        assert_eq!(c.admit(None, frame(8_000, true)), Ok(()));
        assert_eq!(send(&mut c, 4, 1_000, false), [4, 0, 0]);
        assert_eq!(c.check(t0 + Duration::from_secs(5)), (None, vec![]), "no more keyframes asked");
    }

    #[test]
    fn a_sender_with_temporal_layers_is_thinned_to_the_layers_that_fit_and_climbs_back_at_a_sync_frame() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(UplinkCeiling { max_fps: 15, ..LIMIT });
        c.check(t0);
        // 30 fps in three layers: 7.5 + 7.5 + 15 fps. Until the first measure, all pass.
        assert_eq!(send(&mut c, 30, 1_000, true), [8, 7, 15]);
        assert_eq!(c.check(t0 + Duration::from_secs(1)), (None, vec![]));
        // Then the top layer goes: 15 fps pass, decodable, and no keyframe is needed.
        assert_eq!(send(&mut c, 32, 1_000, true), [8, 8, 0]);
        assert_eq!(c.check(t0 + Duration::from_secs(2)), (None, vec![]));
        assert!(!c.keyframes_only());
        // The room's ceiling is met by the sender (15 fps now in three layers): the
        // top layer is taken up again at its first sync frame, not before.
        c.limit.max_fps = 30;
        assert_eq!(send(&mut c, 4, 1_000, true), [1, 1, 0]);
        assert_eq!(c.check(t0 + Duration::from_secs(3)), (None, vec![]));
        let late = Frame { bytes: 1_000, keyframe: false, temporal: 2, sync: false };
        assert_eq!(c.admit(None, late), Err(Refused::FrameRate), "depends on a dropped frame");
        assert_eq!(send(&mut c, 8, 1_000, true), [2, 2, 4]);
    }

    #[test]
    fn a_base_layer_a_little_above_the_frame_rate_is_thinned_to_keyframes_only_in_the_second_window() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(LIMIT);
        c.check(t0);
        // 28 fps in three layers at a ceiling of 5: the base layer alone is 7 fps.
        send(&mut c, 28, 1_000, true);
        assert_eq!(c.check(t0 + Duration::from_secs(1)), (None, vec![]), "one window over is not yet enough");
        assert_eq!(send(&mut c, 28, 1_000, true), [7, 0, 0], "meanwhile the base layer alone");
        assert_eq!(c.check(t0 + Duration::from_secs(2)), (None, vec![None]));
        assert!(c.keyframes_only());
        // A compliant sender's burst after a stall (7 frames in one window) is not.
        let mut c = Ceiling::new(LIMIT);
        c.check(t0);
        for (s, n) in [(1, 5), (2, 7), (3, 5), (4, 7)] {
            send(&mut c, n, 1_000, false);
            assert_eq!(c.check(t0 + Duration::from_secs(s)), (None, vec![]));
        }
    }

    #[test]
    fn each_simulcast_layer_is_held_to_the_frame_rate_on_its_own() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(UplinkCeiling { max_bitrate: 100_000_000, ..LIMIT });
        c.check(t0);
        let (low, high) = (Some(Rid::from("q")), Some(Rid::from("f")));
        for _ in 0..5 {
            assert!(c.admit(low, frame(100, false)).is_ok());
        }
        for _ in 0..30 {
            assert!(c.admit(high, frame(100, false)).is_ok());
        }
        let (_, asked) = c.check(t0 + Duration::from_secs(1));
        assert_eq!(asked, vec![high], "only the layer over the ceiling is thinned");
        assert!(c.admit(low, frame(100, false)).is_ok());
        assert_eq!(c.admit(high, frame(100, false)), Err(Refused::FrameRate));
    }
}
