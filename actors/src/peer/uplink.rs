//! The room's ceiling on what a commentator sends, held by the server rather than
//! only asked of the page.
//!
//! The page sets its sender's bitrate and frame rate from the room's policy, but a
//! page that ignores them (or an old or modified one) could flood every
//! subscriber's link. So the server also:
//! - asks the browser's encoder for no more, once a second: a REMB (receiver
//!   estimated maximum bitrate) at the ceiling, which libwebrtc takes as an upper
//!   bound on what it sends, whatever the page's own parameters say;
//! - measures what arrives, and when a sender stays well above the ceiling for a
//!   whole second anyway, drops its video (counted in
//!   `casecast_dropped_packets_total{reason="over_uplink_ceiling"}`) until it is back
//!   under, then passes it again from its next keyframe, asked for at once.

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;

use super::PeerCore;
use crate::MediaKind;

/// How often the ceiling is asked for again and what arrived is measured.
pub const UPLINK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Added to the video ceiling in the REMB: the browser shares one estimate
/// between its audio and its video.
const AUDIO_ALLOWANCE: u64 = 64_000;

/// Above this multiple of the ceiling for a whole second, the video is dropped.
const DROP_ABOVE: f64 = 1.5;

/// Back under this multiple, it passes again.
const RESUME_BELOW: f64 = 1.2;

/// A published track's ceiling and what arrives of it.
#[derive(Debug)]
pub(super) struct Ceiling {
    /// Bits per second.
    pub max_bitrate: u64,
    window_start: Option<Instant>,
    window_bytes: u64,
    /// Its frames are dropped: it sends well above the ceiling.
    over: bool,
    /// Back under: its frames pass again from the next keyframe.
    await_keyframe: bool,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Crossing {
    /// It went well above the ceiling (bits per second over the last window).
    Over(u64),
    /// It is back under.
    Under,
}

impl Ceiling {
    pub fn new(max_bitrate: u64) -> Ceiling {
        Ceiling { max_bitrate, window_start: None, window_bytes: 0, over: false, await_keyframe: false }
    }

    /// A frame of `bytes` arrived: whether it may pass on.
    pub fn admit(&mut self, bytes: usize, keyframe: bool) -> bool {
        self.window_bytes += bytes as u64;
        if self.over {
            return false;
        }
        if self.await_keyframe {
            if !keyframe {
                return false;
            }
            self.await_keyframe = false;
        }
        true
    }

    /// Measures the window that ends at `now`.
    pub fn check(&mut self, now: Instant) -> Option<Crossing> {
        let start = self.window_start.replace(now)?;
        let span = now.saturating_duration_since(start).as_secs_f64();
        let bytes = std::mem::take(&mut self.window_bytes);
        if span <= 0.0 {
            return None;
        }
        let rate = (bytes * 8) as f64 / span;
        let cap = self.max_bitrate as f64;
        if !self.over && rate > cap * DROP_ABOVE {
            self.over = true;
            return Some(Crossing::Over(rate as u64));
        }
        if self.over && rate <= cap * RESUME_BELOW {
            self.over = false;
            self.await_keyframe = true;
            return Some(Crossing::Under);
        }
        None
    }
}

impl PeerCore {
    /// Once a second for each published track with a ceiling: the ceiling asked of
    /// the sender again (REMB), and what arrived measured against it.
    pub(super) fn check_uplink(&mut self, now: Instant) {
        let mut keyframes = Vec::new();
        for (mid, inbound) in &mut self.inbound {
            let Some(c) = &mut inbound.ceiling else { continue };
            let remb = Bitrate::bps(c.max_bitrate + AUDIO_ALLOWANCE);
            let mut api = self.rtc.direct_api();
            let rids: Vec<Option<str0m::media::Rid>> =
                if inbound.rids.is_empty() { vec![None] } else { inbound.rids.iter().map(|(r, _)| Some(*r)).collect() };
            for rid in rids {
                if let Some(stream) = api.stream_rx_by_mid(*mid, rid) {
                    stream.request_remb(remb);
                }
            }
            match c.check(now) {
                Some(Crossing::Over(rate)) => {
                    tracing::warn!(participant = %self.id, kind = ?inbound.track.kind, rate, ceiling = c.max_bitrate,
                        "sends above the room's ceiling: its video is dropped until it is back under");
                }
                Some(Crossing::Under) => {
                    tracing::info!(participant = %self.id, "back under the room's ceiling: its video passes again");
                    if inbound.track.kind == MediaKind::Video {
                        keyframes.push(inbound.track.id);
                    }
                }
                None => {}
            }
        }
        for track in keyframes {
            self.request_keyframe(track, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_well_over_the_ceiling_is_dropped_until_back_under_then_resumes_at_a_keyframe() {
        let t0 = Instant::now();
        let mut c = Ceiling::new(300_000);
        assert_eq!(c.check(t0), None, "the first check starts the window");
        // 1 s at 320 kbit/s: within the tolerance, everything passes.
        for _ in 0..10 {
            assert!(c.admit(4_000, false));
        }
        assert_eq!(c.check(t0 + Duration::from_secs(1)), None);
        // 1 s at 2 Mbit/s: dropped from the next frame on.
        for _ in 0..50 {
            assert!(c.admit(5_000, false));
        }
        assert_eq!(c.check(t0 + Duration::from_secs(2)), Some(Crossing::Over(2_000_000)));
        for _ in 0..50 {
            assert!(!c.admit(5_000, true), "dropped, keyframes too");
        }
        assert_eq!(c.check(t0 + Duration::from_secs(3)), None, "still over");
        // It obeys again: back under, passing from the next keyframe.
        for _ in 0..5 {
            c.admit(5_000, false);
        }
        assert_eq!(c.check(t0 + Duration::from_secs(4)), Some(Crossing::Under));
        assert!(!c.admit(3_000, false));
        assert!(c.admit(9_000, true));
        assert!(c.admit(3_000, false));
    }
}
