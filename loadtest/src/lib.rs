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
pub use peer::{poll_until, wait_until};
pub use metrics::{HistogramBucket, Metrics, histogram_quantile, scrape_metrics};
pub use publisher::{Publisher, PublisherOptions, PublisherStats};
pub use subscriber::{MediaStats, Subscriber, SubscriberOptions, SubscriberStats};
