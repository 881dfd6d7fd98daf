//! The casecast actors: rooms, participants and the media socket.
//!
//! # Run loop
//!
//! 1. [`Sfu::start`] binds the one UDP media socket and starts the *media arbiter*, a
//!    thread that runs every room and participant actor and the socket's receive loop.
//! 2. [`Sfu::join`] creates a [`ParticipantActor`] and adds it to its [`RoomActor`]
//!    (created on first use with the room's [`router::Router`], stopped when empty).
//!    The actor drives a sans-IO [`peer::PeerCore`], which owns that peer's str0m
//!    [`Rtc`](str0m::Rtc) and its negotiation, mute and hold, stats and deadlines.
//! 3. The receive loop routes each datagram to its participant ([`udp`], [`tcp`]);
//!    the actor hands it to its core and carries out what the core asks: transmits
//!    go out through the [`transport`] seam, one timer is armed for the core's next
//!    deadline, a publisher's frame (wrapped once in an `Arc`) goes to each consumer
//!    the router lists for its track, and a subscriber's keyframe request goes to
//!    the track's publisher through the producer's throttle. Neither passes through
//!    the room.
//! 4. The room decides who may join and publish and who receives what, in its
//!    sans-IO [`RoomCore`]; the actor writes the links into the router.
//!
//! `docs/architecture.md` follows a packet and a signaling message through these
//! parts.
//!
//! The signaling layer talks to a participant through [`ParticipantHandle`]:
//! commands in (SDP, mute, leave), [`ParticipantEvent`]s out. This crate never sees
//! signaling or HTTP types.
//!
//! # Failure isolation
//!
//! Every call into a participant's core (and so its `Rtc`) runs under `catch_unwind`: a panic there
//! (a bug in the stack, or input it did not expect) ends that participant only; its
//! room sees it leave, and everything else carries on.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod fmp4;
pub mod hls;
pub mod llhls;
pub mod ids;
pub mod ingest;
pub mod ladder;
pub mod metrics;
// The batched system calls of the media path: the crate's only unsafe code.
#[allow(unsafe_code)]
mod mmsg;
mod participant;
pub mod peer;
pub mod program;
pub mod recorder;
pub mod publisher;
pub mod resolution;
pub mod room;
pub mod router;
pub mod rtmp;
pub mod sdp;
pub mod stop;
mod sfu;
pub mod tcp;
pub mod transport;
pub mod udp;
pub mod vod;
pub mod watcher;
pub mod webrtcbin;
mod worker;

pub use ids::{ParticipantId, TrackId};
pub use metrics::Metrics;
pub use participant::*;
pub use room::{RoomActor, RoomCore, RoomError, RoomOutput, RoomPolicy};
pub use sfu::{JoinError, Sfu, SfuConfig};
pub use str0m::media::MediaKind;

/// Where a track comes from; set by the publisher's role, not by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackSource {
    /// The surgery feed.
    Feed,
    /// A commentator.
    Commentator,
    /// The mixed program, published back by the compositor (the monitor feed).
    Program,
}

/// The room's answer to a track published: where it comes from and the ceiling
/// the server holds it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Where the track comes from, by the publisher's role.
    pub source: TrackSource,
    /// What the server holds it to (a commentator's video, by the room's policy).
    pub ceiling: Option<UplinkCeiling>,
}

/// The most a published track may bring into the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkCeiling {
    /// Bits per second.
    pub max_bitrate: u64,
    /// Frames per second.
    pub max_fps: u32,
}

/// What a participant receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribe {
    /// Every track but its own.
    All,
    /// The surgery feed only.
    FeedOnly,
    /// Nothing (a publisher only).
    None,
}

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// Role name (`encoder`, `commentator`, ...), for display and metrics.
    pub role: &'static str,
}

/// A room member as the room core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Who.
    pub info: PeerInfo,
    /// What it may publish, as which source (`None`: nothing).
    pub publish: Option<TrackSource>,
    /// What it receives.
    pub subscribe: Subscribe,
    /// Who it is across sessions (its invitation, or its role and name).
    pub identity: String,
    /// The credential it joined with (its invitation, or a digest of its token).
    pub credential: String,
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDesc {
    /// Its id.
    pub id: TrackId,
    /// Its publisher.
    pub participant: ParticipantId,
    /// The publisher's display name.
    pub name: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Feed or commentator.
    pub source: TrackSource,
}

/// Room happenings a participant passes on to its client.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// Someone joined.
    PeerJoined(PeerInfo),
    /// Someone left.
    PeerLeft(ParticipantId),
    /// A track was published.
    TrackAdded(TrackDesc),
    /// A track ended.
    TrackRemoved(TrackId),
    /// The operator set the program's layout (sent to operators: the compositor
    /// is one).
    ProgramLayout {
        /// The layout's name.
        layout: String,
        /// The main source's participant id (`None`: the feed).
        main: Option<String>,
    },
    /// The operator set some of the program's switches: on or off air, name labels,
    /// recording (sent to operators; `None`: unchanged).
    ProgramSwitches {
        /// On air.
        on_air: Option<bool>,
        /// Name labels shown.
        labels: Option<bool>,
        /// Recording.
        recording: Option<bool>,
        /// The operator's slate: `starting` ("Starting soon"), `brb` ("We'll be
        /// right back") or `off`.
        slate: Option<String>,
    },
    /// The event's latency preset for viewers (sent to operators).
    ProgramPreset(String),
    /// Where the program is pushed over RTMP now (sent to operators: the AWS
    /// distribution's MediaLive input).
    ProgramOutputs(Vec<String>),
    /// Timed metadata for viewers, JSON text (sent to operators: the compositor
    /// puts it into the program's segments).
    ProgramMetadata(String),
    /// Someone muted or unmuted.
    Muted {
        /// Who.
        participant: ParticipantId,
        /// Which kind.
        kind: MediaKind,
        /// Muted or not.
        muted: bool,
    },
}

/// Sends GLib's and GStreamer's own warnings (`g_warning`, `g_critical`: a pipeline
/// that cannot link, a loop in a graph) to the server's log, where they are lines
/// like any other (JSON when the log is), not raw text on standard error.
pub fn log_gstreamer_warnings() {
    use gstreamer::glib;
    // Every domain: GStreamer's, GLib's and its plugins' libraries' (gupnp, libnice).
    glib::log_set_default_handler(|domain, level, message| {
        let domain = domain.unwrap_or("GLib");
        match level {
            glib::LogLevel::Error | glib::LogLevel::Critical => tracing::error!(target: "gstreamer", domain, "{message}"),
            glib::LogLevel::Warning => tracing::warn!(target: "gstreamer", domain, "{message}"),
            glib::LogLevel::Message | glib::LogLevel::Info => tracing::info!(target: "gstreamer", domain, "{message}"),
            glib::LogLevel::Debug => tracing::debug!(target: "gstreamer", domain, "{message}"),
        }
    });
}
