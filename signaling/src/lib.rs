//! The casecast wire protocol.
//!
//! Everything that crosses the network between casecast and its clients is defined
//! here, and nothing else: the WebSocket signaling messages ([`ClientMessage`],
//! [`ServerMessage`]), the WHIP/WHEP helpers ([`whip`]) and the room-scoped access
//! tokens ([`token`]). The crate has no I/O; the server parses every message once at
//! its edge with [`ClientMessage::parse`] and answers malformed input with an
//! [`ErrorCode`] instead of failing.
//!
//! The protocol is described for client authors in `docs/signaling.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod protocol;
pub mod playback;
pub mod token;
pub mod whip;

pub use protocol::*;
pub use token::{Claims, Role, TokenError, TokenKey};
