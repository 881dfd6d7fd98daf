//! Signaling messages, version 1.
//!
//! A message is one JSON object per WebSocket text frame, tagged by `"type"`. The
//! first message a client sends is [`ClientMessage::Join`] with `"v": 1`.

use serde::{Deserialize, Serialize};

use crate::room_id::RoomId;
use crate::token::Role;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest signaling message accepted, in bytes. An SDP answer grows by about
/// 1.5 KiB per m-line, and a commentator in a full room receives two m-lines per
/// other commentator; anything past this is refused with [`ErrorCode::TooLarge`].
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Most messages a client may send per second, on average (bursts of twice this
/// are allowed); past it, messages are refused with [`ErrorCode::RateLimited`].
pub const MAX_MESSAGES_PER_SECOND: u32 = 20;

/// How long a session whose signaling connection was lost (without `leave`) keeps
/// its seat for a [`ClientMessage::Resume`]; the same person joining again ends it
/// at once.
pub const RESUME_GRACE_SECS: u64 = 5;

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Join a room. Must be the first message, and comes once per connection.
    Join {
        /// Protocol version the client speaks; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// The room to join; must match the token's room.
        room: RoomId,
        /// A room-scoped token (see `casecast token`).
        token: String,
        /// Ignored: the display name is the token's `name` claim, so that a link
        /// cannot make anyone appear as someone else. Still accepted, so that older
        /// clients that send it keep working.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Receive only, whatever the role may send: an operator's console watching
        /// the room (it is not told the program's orders, and is not a compositor).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        receive_only: bool,
    },
    /// Before joining: check a token for a room without joining (a pre-join screen
    /// shows who the token names and the event's title, or why the link does not
    /// work). Answered with [`ServerMessage::Invitation`] or an error; the connection
    /// may then send `join`.
    Check {
        /// Protocol version the client speaks; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// The room the token is to open.
        room: RoomId,
        /// The token.
        token: String,
    },
    /// Come back to a joined session on a new connection (the old one was lost:
    /// a network change, a dropped Wi-Fi), as the same participant: same id, tiles,
    /// mute state and seat. Instead of `join`, within [`RESUME_GRACE_SECS`] of the
    /// loss. Answered with [`ServerMessage::Resumed`], or [`ErrorCode::SessionGone`]
    /// when the session has ended (then `join` again).
    Resume {
        /// Protocol version the client speaks; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// The room of the session.
        room: RoomId,
        /// The token the session joined with (checked again: a revoked invitation
        /// does not come back).
        token: String,
        /// The `resume` secret from [`ServerMessage::Joined`].
        resume: String,
    },
    /// The client's media connection was lost or its network changed: the server
    /// restarts ICE (RFC 8445 §9) with a new [`ServerMessage::Offer`] carrying new
    /// ICE credentials, keeping the session.
    IceRestart,
    /// A commentator raises or lowers their hand (the operators and the others see it).
    RaiseHand {
        /// Raised (true) or lowered (false).
        raised: bool,
    },
    /// A chat line to everyone in the room; control characters are removed and it is
    /// cut to [`MAX_CHAT_CHARS`].
    Chat {
        /// The text.
        text: String,
    },
    /// An SDP offer from the client (its first offer carries what it publishes).
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// The client's SDP answer to the server's last [`ServerMessage::Offer`].
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// The client muted or unmuted one of its tracks (informs the others).
    Mute {
        /// Which kind of track.
        kind: MediaKind,
        /// Muted or not.
        muted: bool,
    },
    /// Keepalive; the server answers [`ServerMessage::Pong`].
    Ping,
    /// Leave the room; the server closes the connection.
    Leave,
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        /// Protocol version of the server.
        v: u32,
        /// The room joined.
        room: String,
        /// This participant's id in the room.
        participant_id: String,
        /// The role the token granted.
        role: Role,
        /// The display name used.
        name: String,
        /// What this participant may send.
        policy: UplinkPolicy,
        /// Who is in the room already.
        participants: Vec<ParticipantInfo>,
        /// The event this room belongs to; absent when there is no event with the
        /// room's id (a room made with tokens from the CLI).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<EventInfo>,
        /// TURN servers with credentials minted for this participant, for networks
        /// that let neither UDP nor direct TCP through (`RTCConfiguration.iceServers`);
        /// absent when the server has none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<crate::turn::IceServer>,
        /// A secret that brings this session back on a new connection
        /// ([`ClientMessage::Resume`]); absent for sessions that cannot resume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
    },
    /// Answer to [`ClientMessage::Resume`]: this connection carries the session
    /// now. Events missed while away follow in order; an unanswered server offer is
    /// sent again.
    Resumed {
        /// The participant, as before.
        participant_id: String,
        /// Fresh TURN credentials (those of `joined` may be near their end): the
        /// ICE restart that follows uses them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<crate::turn::IceServer>,
    },
    /// Answer to [`ClientMessage::Check`]: the token is good for this room.
    Invitation {
        /// Protocol version of the server.
        v: u32,
        /// The room.
        room: String,
        /// The role the token grants.
        role: Role,
        /// The name the participant will have (the token's).
        name: String,
        /// What this participant may send once joined.
        policy: UplinkPolicy,
        /// The room's event; absent when there is none with this id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<EventInfo>,
    },
    /// Someone raised or lowered their hand (to everyone in the room, the one who
    /// did included; on joining, one per hand raised at that moment).
    Hand {
        /// Who.
        participant: String,
        /// Their display name.
        name: String,
        /// Raised or lowered.
        raised: bool,
    },
    /// A chat line (to everyone in the room, the sender included; on joining, the
    /// room's last lines).
    Chat {
        /// The line's id in the room (`c1`, `c2`, …): a client that rejoins gets
        /// recent lines again and drops those it has.
        id: String,
        /// Who wrote it.
        participant: String,
        /// Their display name.
        name: String,
        /// The text.
        text: String,
        /// When the server received it, Unix milliseconds.
        at: u64,
    },
    /// The server's answer to a client offer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// The server offers a new session description (tracks came or went).
    Offer {
        /// The SDP.
        sdp: String,
        /// The tracks on the m-lines this offer adds, by m-line id (m-lines it
        /// stops have port 0 in the SDP and are not listed).
        tracks: Vec<TrackInfo>,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant_id: String,
    },
    /// A track was published in the room (its m-line comes in a later offer).
    TrackAdded {
        /// The track.
        track: TrackInfo,
    },
    /// A track now arrives on an m-line the client offered for receiving (no
    /// offer follows); `track.mid` names the m-line.
    TrackBound {
        /// The track, with its m-line.
        track: TrackInfo,
    },
    /// A track ended.
    TrackRemoved {
        /// Which.
        track_id: String,
    },
    /// The operator set the program's layout (sent to operators; the compositor
    /// applies it).
    ProgramLayout {
        /// `surgery_only`, `pip`, `side_by_side` or `grid`.
        layout: String,
        /// The participant shown as the main source (absent: the surgery feed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        main: Option<String>,
    },
    /// The operator set some of the program's switches (sent to the compositor,
    /// which applies them; absent: unchanged).
    ProgramSwitches {
        /// On air (the outputs carry the program) or off air (they stop).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_air: Option<bool>,
        /// The commentators' name labels shown or hidden.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<bool>,
        /// Recording on or off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<bool>,
        /// The operator's slate over the program: `starting` ("Starting soon"),
        /// `brb` ("We'll be right back") or `off`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slate: Option<String>,
    },
    /// The event's latency preset for viewers, `quality` or `low-latency` (sent to the
    /// compositor when it joins an event's room and when the preset changes; a
    /// different preset restarts the program's HLS with that segment length).
    ProgramPreset {
        /// The preset.
        latency_preset: String,
    },
    /// Where the compositor pushes the program over RTMP from now on (the AWS
    /// distribution's MediaLive input, once its channel runs); replaces the
    /// configured URLs.
    ProgramOutputs {
        /// RTMP URLs (primary, backup).
        rtmp: Vec<String>,
    },
    /// Timed metadata for viewers (sent to operators; the compositor puts it into the
    /// program's HLS segments as ID3).
    ProgramMetadata {
        /// A short JSON text: `{"type": "message"|"poll", …}`.
        data: String,
    },
    /// A participant muted or unmuted a track.
    Muted {
        /// Who.
        participant_id: String,
        /// Which kind of track.
        kind: MediaKind,
        /// Muted or not.
        muted: bool,
    },
    /// An operator muted (or unmuted) what this participant sends of one kind. While
    /// muted the server drops it, and the participant cannot unmute it itself.
    MutedByOperator {
        /// Which kind of track.
        kind: MediaKind,
        /// Muted or not.
        muted: bool,
    },
    /// Media connection state of this participant changed.
    Connection {
        /// `connected`, `disconnected`, or `closed` (sent just before the server
        /// closes the connection because the participant ended).
        state: String,
    },
    /// Answer to [`ClientMessage::Ping`].
    Pong,
    /// The room lives on another node of the cluster: join there (the same `join`
    /// message on a WebSocket to `url`). The server closes this connection.
    Redirect {
        /// The owner node's WebSocket URL (`wss://node-a.example/ws`).
        url: String,
    },
    /// Something was wrong. Fatal errors are followed by the connection closing.
    Error {
        /// A machine-readable code.
        code: ErrorCode,
        /// What was wrong and what to do, for a human.
        message: String,
    },
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message was not valid JSON or not a known message.
    BadRequest,
    /// The message exceeded [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The client speaks another protocol version.
    UnsupportedVersion,
    /// No token, or a token that is invalid or expired.
    Unauthorized,
    /// The token is for another room, or the role may not do this.
    Forbidden,
    /// A message that needs a joined room came before `join`.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// The SDP could not be used.
    SdpRejected,
    /// The room is full.
    RoomFull,
    /// The token (or the person it names) has as many sessions open as one may;
    /// close one first.
    TooManySessions,
    /// The client sends messages faster than [`MAX_MESSAGES_PER_SECOND`].
    RateLimited,
    /// The server failed; the message says what happened.
    Internal,
    /// The session to resume has ended (or never was): join again.
    SessionGone,
}

/// Kinds of media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// Where a track comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// The surgery feed (published by an encoder).
    Feed,
    /// A commentator's camera or microphone.
    Commentator,
    /// The program as viewers see it, published back into the room by the
    /// compositor (an operator) as the monitor feed.
    Program,
}

/// A participant, as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Id within the room.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// An event, as a participant sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Its id (the room's).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its state as the operators' API says it (`scheduled`, `ended`, …).
    pub status: String,
    /// Scheduled start, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<i64>,
    /// Scheduled end, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
}

/// The longest chat line kept, in characters.
pub const MAX_CHAT_CHARS: usize = 500;

/// A chat line as it is passed on: control characters (line breaks included)
/// become spaces, runs of whitespace are kept as they are, the ends are trimmed, and
/// it is cut to [`MAX_CHAT_CHARS`]. `None` when nothing is left.
pub fn clean_chat(text: &str) -> Option<String> {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let cut: String = cleaned.trim().chars().take(MAX_CHAT_CHARS).collect();
    let cut = cut.trim_end().to_string();
    (!cut.is_empty()).then_some(cut)
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id, unique on the server.
    pub id: String,
    /// The m-line id carrying this track, in [`ServerMessage::Offer`] only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// Who publishes it.
    pub participant_id: String,
    /// The publisher's display name.
    pub name: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Feed or commentator.
    pub source: TrackSource,
}

/// What a participant may send, decided by the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkPolicy {
    /// Whether the participant may publish at all.
    pub publish: bool,
    /// Whether video is allowed (false: audio only).
    pub video: bool,
    /// Frame rate ceiling for video.
    pub max_fps: u32,
    /// Bitrate ceiling for video, bits per second.
    pub max_video_bitrate: u32,
    /// Send video as simulcast layers (the feed from a browser: the server gives
    /// each subscriber the layer its link holds).
    #[serde(default)]
    pub simulcast: bool,
}

impl ClientMessage {
    /// Parses one text frame, refusing oversized or malformed input with the
    /// error the client should get back.
    pub fn parse(text: &str) -> Result<Self, (ErrorCode, String)> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err((
                ErrorCode::TooLarge,
                format!(
                    "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                    text.len()
                ),
            ));
        }
        serde_json::from_str(text).map_err(|e| {
            (
                ErrorCode::BadRequest,
                format!("not a valid signaling message: {e}"),
            )
        })
    }
}

impl ServerMessage {
    /// Builds an error message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    /// Serializes to the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_string(self).expect("server messages serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_parses_with_and_without_name() {
        let m = ClientMessage::parse(r#"{"type":"join","v":1,"room":"r","token":"t"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                v: 1,
                room: RoomId::parse("r").unwrap(),
                token: "t".into(),
                name: None,
                receive_only: false,
            }
        );
        let m = ClientMessage::parse(
            r#"{"type":"join","v":1,"room":"r","token":"t","name":"Dr. A"}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Join { name: Some(n), .. } if n == "Dr. A"));
    }

    #[test]
    fn hostile_input_is_refused_with_a_code() {
        for bad in [
            "",
            "null",
            "[]",
            "{",
            r#"{"type":"nope"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","v":"1","room":"r","token":"t"}"#,
            r#"{"type":"offer","sdp":5}"#,
            r#"{"type":"join","v":1,"room":"../x","token":"t"}"#,
            "\u{0}\u{1}",
        ] {
            let (code, msg) = ClientMessage::parse(bad).unwrap_err();
            assert_eq!(code, ErrorCode::BadRequest, "{bad:?}");
            assert!(!msg.is_empty());
        }
        let deep = "[".repeat(10_000);
        assert_eq!(ClientMessage::parse(&deep).unwrap_err().0, ErrorCode::BadRequest);
        let huge = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(ClientMessage::parse(&huge).unwrap_err().0, ErrorCode::TooLarge);
    }

    #[test]
    fn chat_and_hands_parse_and_chat_is_cleaned() {
        assert_eq!(ClientMessage::parse(r#"{"type":"raise_hand","raised":true}"#).unwrap(), ClientMessage::RaiseHand { raised: true });
        assert_eq!(
            ClientMessage::parse(r#"{"type":"chat","text":"hi"}"#).unwrap(),
            ClientMessage::Chat { text: "hi".into() }
        );
        assert!(ClientMessage::parse(r#"{"type":"chat","text":"hi","to":"p1"}"#).is_err());
        assert_eq!(clean_chat("  a\u{0}b\nc\u{1b}[31m  ").as_deref(), Some("a b c [31m"));
        assert_eq!(clean_chat(" \n\t "), None);
        assert_eq!(clean_chat(&"é".repeat(600)).map(|s| s.chars().count()), Some(MAX_CHAT_CHARS));
        let m = ClientMessage::parse(r#"{"type":"check","v":1,"room":"r","token":"t"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Check { v: 1, .. }));
    }

    #[test]
    fn joined_carries_the_event_only_when_there_is_one() {
        let policy = UplinkPolicy { publish: true, video: true, max_fps: 5, max_video_bitrate: 1, simulcast: false };
        let joined = |event| ServerMessage::Joined {
            v: 1,
            room: "r".into(),
            participant_id: "p1".into(),
            role: Role::Commentator,
            name: "Dr. A".into(),
            policy: policy.clone(),
            participants: vec![],
            event,
            ice_servers: vec![],
            resume: None,
        };
        assert!(!joined(None).to_json().contains("event"));
        assert!(!joined(None).to_json().contains("ice_servers"));
        let e = EventInfo { id: "r".into(), title: "Knee day".into(), status: "scheduled".into(), starts_at: None, ends_at: None };
        assert!(joined(Some(e)).to_json().contains(r#""event":{"id":"r","title":"Knee day","status":"scheduled"}"#));
    }

    #[test]
    fn server_messages_are_tagged_snake_case() {
        let j = ServerMessage::error(ErrorCode::NotJoined, "join first").to_json();
        assert_eq!(j, r#"{"type":"error","code":"not_joined","message":"join first"}"#);
        let j = ServerMessage::ParticipantLeft {
            participant_id: "p1".into(),
        }
        .to_json();
        assert_eq!(j, r#"{"type":"participant_left","participant_id":"p1"}"#);
    }
}
