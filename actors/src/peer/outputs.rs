//! What a peer core is given and what it asks for: its settings, the events for
//! its signaling connection, its requests to the room and the transports, and the
//! outputs its driver carries out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{MediaData, Mid};
use str0m::net::Transmit;
use str0m::{Candidate, IceCreds};

use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;
use crate::{MediaKind, RoomEvent, TrackDesc, TrackSource};

/// What a participant tells its signaling connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// Something happened in the room.
    Room(RoomEvent),
    /// A server offer; the client must answer with
    /// [`AcceptAnswer`](crate::AcceptAnswer).
    Offer {
        /// The SDP.
        sdp: String,
        /// Which track each new m-line carries.
        tracks: Vec<(String, TrackDesc)>,
    },
    /// A track now arrives on an m-line the peer offered for receiving.
    Bound {
        /// The m-line.
        mid: String,
        /// The track.
        track: TrackDesc,
    },
    /// An operator muted (true) or unmuted (false) what it sends of this kind: the
    /// server drops it meanwhile, whatever the peer does.
    HeldByOperator {
        /// Which kind.
        kind: MediaKind,
        /// Held or released.
        held: bool,
    },
    /// Someone in the room (this participant included) raised or lowered a hand.
    Hand {
        /// Who.
        participant: ParticipantId,
        /// Their display name.
        name: String,
        /// Raised or lowered.
        raised: bool,
    },
    /// A chat line in the room (this participant's own included).
    Chat {
        /// Its number in the room, from 1.
        seq: u64,
        /// Who wrote it.
        participant: ParticipantId,
        /// Their display name.
        name: String,
        /// The text (already cleaned by signaling).
        text: String,
        /// When the room received it, Unix milliseconds.
        at: u64,
    },
    /// ICE+DTLS connected (true) or lost (false).
    Connection(bool),
    /// The participant ended; the reason is for logs and the client.
    Closed(String),
}

/// Settings for a new participant.
#[derive(Debug, Clone)]
pub struct ParticipantOptions {
    /// Display name.
    pub name: String,
    /// Role name, for display and metrics.
    pub role: &'static str,
    /// What it may publish.
    pub publish: Option<TrackSource>,
    /// What it receives.
    pub subscribe: crate::Subscribe,
    /// Whether the server may send it offers (WebSocket signaling: yes; WHIP/WHEP: no).
    pub renegotiate: bool,
    /// Who it is across sessions (its invitation, or its role and name): an
    /// operator's mute follows the person into a new session.
    pub identity: String,
    /// The credential it joined with (its invitation, or a digest of its token):
    /// the room limits how many sessions one credential holds.
    pub credential: String,
}

/// What the peer core asks of the room.
#[derive(Debug, Clone, PartialEq)]
pub enum ToRoom {
    /// Publish this track (the peer sends it on `mid`); answer with
    /// [`PeerCore::published`].
    Publish {
        /// The m-line it arrives on.
        mid: Mid,
        /// The track; the room sets its source.
        track: TrackDesc,
    },
    /// A published track of this kind is muted (by the peer or an operator) or not.
    Mute {
        /// Which kind.
        kind: MediaKind,
        /// Muted now.
        muted: bool,
    },
    /// The peer raised or lowered its hand.
    Hand(bool),
    /// The peer's chat line.
    Chat(String),
}

/// A change to how the transports route STUN checks to this peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// Checks naming this ufrag (a restart's new one) reach this peer too.
    Alias(String),
    /// Checks naming this ufrag (replaced by a restart) are no longer routed.
    Retire(String),
}

/// What the driver must do next.
#[derive(Debug)]
pub enum PeerOutput {
    /// Send this datagram (or ICE-TCP frame).
    Transmit(Transmit),
    /// Tell the signaling connection.
    Signal(ParticipantEvent),
    /// Tell the room.
    Room(ToRoom),
    /// A frame of a published track, for its subscribers: one allocation shared by all.
    Frame(TrackId, Arc<MediaData>),
    /// Ask the publisher of this track for a keyframe of the layer this peer
    /// receives (or of every layer, for a track of its own), through the router's
    /// throttle.
    WantKeyframe(TrackId),
    /// Ask for a keyframe of this layer of a track it publishes (its frames on
    /// that layer were lost), through the router's throttle.
    WantLayerKeyframe(TrackId, crate::router::Layer),
    /// Share the bandwidth estimate among these video tracks it receives (each
    /// with where it comes from): answer with [`PeerCore::allocate`] and the
    /// tracks' layers as the router has them, and give the router the targets it
    /// returns.
    Allocate(Vec<(TrackId, TrackSource)>),
    /// Change the transports' routes.
    Route(RouteChange),
    /// Nothing more until this time (or a new input): call
    /// [`PeerCore::handle_timeout`] then.
    Timeout(Instant),
    /// The peer ended, with its reason; nothing more comes.
    Closed(String),
}

/// How a peer core is set up.
pub struct PeerSetup {
    /// Its ICE credentials; the transports route STUN by their ufrag.
    pub creds: IceCreds,
    /// The server's local candidates.
    pub candidates: Vec<Candidate>,
    /// The server's DTLS certificate.
    pub dtls_cert: str0m::config::DtlsCert,
    /// How long after its first offer the peer has to connect.
    pub connect_deadline: Duration,
    /// Where counters go.
    pub metrics: Metrics,
}
