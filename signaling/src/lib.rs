//! The casecast wire protocol.
//!
//! Everything that crosses the network between casecast and its clients is defined
//! here, and nothing else: the WebSocket signaling messages ([`ClientMessage`],
//! [`ServerMessage`]), the WHIP/WHEP helpers ([`whip`]), the resumable upload headers
//! ([`tus`]), room ids ([`RoomId`]), the room-scoped access tokens ([`token`]) and
//! the TURN servers and credentials handed to clients ([`turn`]).
//! The crate has no I/O; the server parses every message once at its edge with
//! [`ClientMessage::parse`] and answers malformed input with an [`ErrorCode`]
//! instead of failing.
//!
//! The protocol is described for client authors in `docs/signaling.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod protocol;
pub mod playback;
mod room_id;
pub mod token;
pub mod tus;
pub mod turn;
pub mod whip;
pub mod ws_frames;

pub use protocol::*;
pub use room_id::{BadRoomId, MAX_ROOM_ID_BYTES, RoomId};
pub use token::{Claims, MIN_SECRET_BYTES, Role, TokenError, TokenKey};
