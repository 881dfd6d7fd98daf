//! Keyframe request policy: ask the publisher at once, then at most once per interval.
//!
//! A subscriber that joins needs a keyframe before it can decode anything, so the
//! first request goes out immediately. Requests that come faster than the interval
//! (a dozen subscribers joining together, a lossy link asking repeatedly) are
//! coalesced into one request at the end of the interval, so none is lost and the
//! publisher is not flooded with PLIs.

use std::time::{Duration, Instant};

/// The default minimum time between two keyframe requests to one publisher track.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What to do with a keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Send a request to the publisher now.
    SendNow,
    /// Call [`KeyframeThrottle::fire`] at this time; one request will go then.
    SendAt(Instant),
    /// A request is already scheduled; nothing to do.
    Coalesced,
}

/// Per-track throttle, driven in virtual time.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// A throttle allowing one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        KeyframeThrottle { interval, last_sent: None, pending: false }
    }

    /// A subscriber (or the server itself) wants a keyframe at `now`.
    pub fn request(&mut self, now: Instant) -> KeyframeDecision {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                if self.pending {
                    KeyframeDecision::Coalesced
                } else {
                    self.pending = true;
                    KeyframeDecision::SendAt(last + self.interval)
                }
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                KeyframeDecision::SendNow
            }
        }
    }

    /// The time given by [`KeyframeDecision::SendAt`] has come: true if a request
    /// should be sent now.
    pub fn fire(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        self.pending = false;
        self.last_sent = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_goes_at_once_then_coalesces() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeThrottle::new(ms(500));
        assert_eq!(k.request(t0), KeyframeDecision::SendNow);
        assert_eq!(k.request(t0 + ms(10)), KeyframeDecision::SendAt(t0 + ms(500)));
        for i in 0..20 {
            assert_eq!(k.request(t0 + ms(20 + i)), KeyframeDecision::Coalesced);
        }
        assert!(k.fire(t0 + ms(500)));
        assert!(!k.fire(t0 + ms(501)), "one request per interval");
        assert_eq!(k.request(t0 + ms(700)), KeyframeDecision::SendAt(t0 + ms(1000)));
        assert!(k.fire(t0 + ms(1000)));
        assert_eq!(k.request(t0 + ms(2000)), KeyframeDecision::SendNow);
    }

    #[test]
    fn at_most_one_request_per_interval_over_a_storm() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        let mut sent = 0;
        let mut due: Option<Instant> = None;
        // 10 s of requests every 5 ms, in virtual time.
        for step in 0..2000u64 {
            let now = t0 + Duration::from_millis(step * 5);
            if let Some(at) = due
                && now >= at {
                    due = None;
                    if k.fire(now) {
                        sent += 1;
                    }
                }
            match k.request(now) {
                KeyframeDecision::SendNow => sent += 1,
                KeyframeDecision::SendAt(at) => due = Some(at),
                KeyframeDecision::Coalesced => {}
            }
        }
        assert!((19..=21).contains(&sent), "sent {sent} in 10 s");
    }
}
