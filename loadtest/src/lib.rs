//! Simulated casecast clients for load and end-to-end tests.
//!
//! - [`Publisher`]: a WHIP client (role `encoder`) that sends synthetic VP8 video at a
//!   target bitrate and frame rate plus Opus audio, and answers keyframe requests.
//! - [`Subscriber`]: a WHEP client (role `viewer`) that receives the room's feed and
//!   counts frames, bytes, keyframes, loss and arrival times per kind.
//! - [`scrape_metrics`] / [`Metrics`]: the server's Prometheus metrics, with
//!   [`histogram_quantile`] for latency percentiles.
//!
//! Each peer is a [str0m](https://docs.rs/str0m) `Rtc` driven on its own thread with
//! its own UDP socket (by default on `127.0.0.1`, a loopback host candidate). The peer
//! is the SDP offerer and so the ICE controlling agent, as the ICE-lite server needs.
//! Every loop checks a stop flag at least every 20 ms and has a hard deadline, and a
//! peer only talks to the base URL it was given (no redirects, no proxies) and to the
//! candidate addresses in the server's answer.
//!
//! ```no_run
//! use std::time::Duration;
//! use casecast_loadtest::{Publisher, PublisherOptions, Subscriber};
//!
//! # fn main() -> anyhow::Result<()> {
//! # let (encoder_token, viewer_token) = (String::new(), String::new());
//! let base = "http://127.0.0.1:8080";
//! let publisher = Publisher::start(base, "or-1", &encoder_token, PublisherOptions::default())?;
//! let subscriber = Subscriber::start(base, "or-1", &viewer_token)?;
//! assert!(subscriber.wait_for_video(Duration::from_secs(10)));
//! let received = subscriber.stop();
//! println!("{} video frames, {} keyframes", received.video.frames, received.video.keyframes);
//! publisher.stop();
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod duration;
mod http;
pub mod metrics;
mod peer;
mod publisher;
mod subscriber;
pub mod synth;

pub use duration::parse_duration;
pub use metrics::{HistogramBucket, Metrics, histogram_quantile, scrape_metrics};
pub use publisher::{Publisher, PublisherOptions, PublisherStats};
pub use subscriber::{MediaStats, Subscriber, SubscriberOptions, SubscriberStats};

/// Checks against a running server; `cargo test -p casecast-loadtest -- --ignored`
/// with `CASECAST_TEST_URL` and `CASECAST_TEST_SECRET` set.
#[cfg(test)]
mod live_tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use casecast_signaling::{Role, TokenKey};

    use super::*;

    fn server() -> (String, TokenKey) {
        let url = std::env::var("CASECAST_TEST_URL").expect("CASECAST_TEST_URL");
        let secret = std::env::var("CASECAST_TEST_SECRET").expect("CASECAST_TEST_SECRET");
        (url, TokenKey::new(secret))
    }

    fn token(key: &TokenKey, room: &str, role: Role) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        key.mint(room, role, "live-test", now, 300)
    }

    #[test]
    #[ignore = "needs a running casecast server"]
    fn publisher_to_late_subscriber_and_back() {
        let (url, key) = server();
        let room = "live-test";
        let early = Subscriber::start(&url, room, &token(&key, room, Role::Viewer)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let publisher = Publisher::start(
            &url,
            room,
            &token(&key, room, Role::Encoder),
            PublisherOptions::default(),
        )
        .unwrap();
        assert!(publisher.wait_connected(Duration::from_secs(5)));
        assert!(
            early.wait_for_video(Duration::from_secs(5)),
            "{:?}",
            early.stats()
        );
        let late = Subscriber::start(&url, room, &token(&key, room, Role::Viewer)).unwrap();
        assert!(
            late.wait_for_video(Duration::from_secs(5)),
            "{:?}",
            late.stats()
        );
        std::thread::sleep(Duration::from_secs(3));
        let late = late.stop();
        println!("late: {late:#?}");
        assert!(late.deleted && late.error.is_none());
        assert!(late.video.keyframes >= 1 && late.audio.frames > 0);
        let sent = publisher.stop();
        println!("publisher: {sent:#?}");
        assert!(sent.deleted && sent.error.is_none(), "{sent:?}");
        std::thread::sleep(Duration::from_millis(500));
        let early_stats = early.stats();
        assert!(early_stats.error.is_none(), "{early_stats:?}");
        drop(early);
        let metrics = scrape_metrics(&url, Duration::from_secs(2)).unwrap();
        assert!(metrics.get(metrics::PACKETS_FORWARDED).unwrap() > 0.0);
    }
}
