//! What every HTTP handler shares, and how a verified role becomes room options.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Addr;
use casecast_actors::{ParticipantActor, ParticipantOptions, RoomPolicy, Sfu, Subscribe, TrackSource};
use casecast_signaling::{Claims, Role, TokenError, TokenKey, UplinkPolicy};

/// Shared server state.
pub struct AppState {
    /// The media plane.
    pub sfu: Sfu,
    /// Verifies tokens.
    pub key: TokenKey,
    /// Policy for rooms created on first join.
    pub policy: RoomPolicy,
    /// WHIP/WHEP sessions by resource id.
    pub resources: Mutex<HashMap<String, Resource>>,
    /// Where programs' HLS is written, one directory per room.
    pub hls_root: std::path::PathBuf,
    /// Where programs are recorded, one directory per room.
    pub recordings_root: std::path::PathBuf,
    /// DICOM cases.
    pub cases: crate::cases::Cases,
    /// Events, invitations, the audit log.
    pub events: crate::events::Events,
    /// Concurrent HLS viewers by room.
    pub viewers: crate::viewers::Viewers,
    /// Signs and checks private events' playback tokens.
    pub playback: casecast_signaling::playback::PlaybackKey,
    /// How the program reaches viewers (local HLS, or AWS).
    pub distribution: crate::distribution::Distribution,
    /// The longest token lifetime accepted, seconds.
    pub max_token_ttl: u64,
    /// The bearer token `/metrics` is scraped with.
    pub metrics_token: String,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub proxies: Vec<std::net::IpAddr>,
    /// The events' programs this server runs.
    pub programs: crate::programs::Programs,
    /// Who voted in polls from which address.
    pub voters: crate::events::Voters,
    /// The base URL of the links handed out (`public_url`), once listening.
    pub public_url: std::sync::OnceLock<String>,
    /// Whether HTTPS is served (pages that need a camera are sent there).
    pub tls: bool,
    /// TURN servers handed to clients, if any.
    pub turn: Option<crate::config::Turn>,
    /// Signaling sessions that can be resumed on a new connection.
    pub sessions: crate::resume::Sessions,
    /// Which node owns a room (this one, without Redis).
    pub directory: crate::directory::Directory,
}

/// A WHIP or WHEP session, ended by `DELETE` on its URL.
#[derive(Clone)]
pub struct Resource {
    /// `whip` or `whep`.
    pub door: &'static str,
    /// Its room.
    pub room: String,
    /// The bearer token that created it; only the same token may delete it
    /// (RFC 9725 §4.2).
    pub token: String,
    /// The session's participant.
    pub addr: Addr<ParticipantActor>,
}

/// 128 random bits in hex: ids of uploads, jobs, invitations, staged files.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether a secret a client gave is the one expected, compared in a time that does
/// not depend on where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Why access was refused: 401 (who are you?) or 403 (not for this).
#[derive(Debug)]
pub enum AccessError {
    /// No valid token.
    Unauthorized(String),
    /// Valid token, wrong room or role, or its event has ended.
    Forbidden(String),
}

impl AccessError {
    /// 401 or 403.
    pub fn status(&self) -> actix_web::http::StatusCode {
        match self {
            AccessError::Unauthorized(_) => actix_web::http::StatusCode::UNAUTHORIZED,
            AccessError::Forbidden(_) => actix_web::http::StatusCode::FORBIDDEN,
        }
    }

    /// What to tell the caller.
    pub fn message(&self) -> &str {
        match self {
            AccessError::Unauthorized(m) | AccessError::Forbidden(m) => m,
        }
    }
}

impl AppState {
    /// The absolute link to `path` on this server, as handed out (`public_url`).
    /// The TURN servers for participant `id`, with credentials minted now; empty
    /// when none are configured.
    pub fn ice_servers(&self, id: &str) -> Vec<casecast_signaling::turn::IceServer> {
        self.turn.iter().map(|t| t.ice_server(id, unix_now())).collect()
    }

    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.get().map(String::as_str).unwrap_or(""))
    }

    /// Verifies a token: signature and expiry, a lifetime within the server's
    /// limit, an invitation (if it was issued as one) not revoked, and an event (if
    /// it is an event's) not ended: an ended event's links stop working everywhere.
    pub fn verify(&self, token: &str) -> Result<Claims, AccessError> {
        let claims = self.key.verify(token, unix_now()).map_err(|e: TokenError| AccessError::Unauthorized(e.to_string()))?;
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime > self.max_token_ttl {
            return Err(AccessError::Unauthorized(format!(
                "This link was made to last {} days, longer than this server allows ({} days, max_token_ttl_secs). Ask the organisers for a new one.",
                lifetime / 86400,
                self.max_token_ttl / 86400
            )));
        }
        if claims.jti.as_deref().is_some_and(|j| self.events.is_revoked(j)) {
            return Err(AccessError::Unauthorized("This invitation was revoked by the organisers. Ask them for a new link if you should still join.".into()));
        }
        if claims.room != crate::events::ALL_EVENTS && self.events.has_ended(&claims.room) {
            return Err(AccessError::Forbidden(format!("The event {:?} has ended, so its links no longer work. Ask the organisers if you expected it to go on.", claims.room)));
        }
        Ok(claims)
    }

    /// The policy of room `room`: its event's, or the server's default.
    pub fn room_policy(&self, room: &str) -> RoomPolicy {
        match self.events.event(room) {
            Some(e) => RoomPolicy {
                commentator_video: e.policy.commentator_uplink == "video",
                commentator_max_fps: e.policy.commentator_max_fps,
                commentator_max_bitrate: e.policy.commentator_max_bitrate,
                feed_ladder: e.policy.feed_ladder.clone().unwrap_or_else(|| self.policy.feed_ladder.clone()),
                ..self.policy.clone()
            },
            None => self.policy.clone(),
        }
    }

    /// Verifies `token` for `room`, and that its role is one of `roles`.
    pub fn authorize(&self, token: Option<&str>, room: &str, roles: &[Role]) -> Result<Claims, AccessError> {
        let token = token.ok_or_else(|| {
            AccessError::Unauthorized("a token is required (Authorization: Bearer <token>, or in the join message)".into())
        })?;
        let claims = self.verify(token)?;
        if self.events.has_ended(room) {
            return Err(AccessError::Forbidden(format!("The event {room:?} has ended, so its links no longer work. Ask the organisers if you expected it to go on.")));
        }
        // The distribution center's operators (room "*") act in every room.
        let everywhere = claims.room == crate::events::ALL_EVENTS && claims.role == Role::Operator;
        if claims.room != room && !everywhere {
            return Err(AccessError::Forbidden(format!(
                "This link is for room {:?}, not {room:?}. Open the link exactly as you received it.",
                claims.room
            )));
        }
        if !roles.contains(&claims.role) {
            let allowed: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
            return Err(AccessError::Forbidden(format!(
                "role {} may not do this; allowed: {}",
                claims.role.as_str(),
                allowed.join(", ")
            )));
        }
        Ok(claims)
    }

    /// What a role may send in `room`, as told to the client.
    pub fn uplink(&self, room: &str, role: Role) -> UplinkPolicy {
        let policy = self.room_policy(room);
        match role {
            Role::Encoder => {
                UplinkPolicy { publish: true, video: true, max_fps: 60, max_video_bitrate: 20_000_000, simulcast: true }
            }
            Role::Commentator => UplinkPolicy {
                publish: true,
                video: policy.commentator_video,
                max_fps: policy.commentator_max_fps,
                max_video_bitrate: policy.commentator_max_bitrate,
                simulcast: false,
            },
            // An operator may publish the program's monitor feed (the compositor).
            Role::Operator => {
                UplinkPolicy { publish: true, video: true, max_fps: 60, max_video_bitrate: 20_000_000, simulcast: false }
            }
            Role::Viewer => UplinkPolicy { publish: false, video: false, max_fps: 0, max_video_bitrate: 0, simulcast: false },
        }
    }
}

/// The room options for a verified role; `token` is the credential it came with.
pub fn participant_options(claims: &Claims, token: &str, name: Option<String>, renegotiate: bool, feed_only: bool) -> ParticipantOptions {
    let (publish, subscribe) = match claims.role {
        Role::Encoder => (Some(TrackSource::Feed), Subscribe::None),
        Role::Commentator => (Some(TrackSource::Commentator), Subscribe::All),
        Role::Operator => (Some(TrackSource::Program), Subscribe::All),
        Role::Viewer => (None, Subscribe::All),
    };
    let subscribe = if feed_only && subscribe != Subscribe::None { Subscribe::FeedOnly } else { subscribe };
    let name = name
        .map(|n| n.trim().chars().filter(|c| !c.is_control()).take(64).collect::<String>())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| claims.name.clone());
    // The person: their invitation, or (a token made otherwise) their role and name.
    let identity = person(claims);
    let credential = casecast_signaling::token::credential(token, claims);
    ParticipantOptions { name, role: claims.role.as_str(), publish, subscribe, renegotiate, identity, credential }
}

/// Who a token names across sessions: its invitation, or (a token made otherwise)
/// its role and name.
pub fn person(claims: &Claims) -> String {
    claims.jti.clone().unwrap_or_else(|| format!("{}:{}", claims.role.as_str(), claims.name))
}
