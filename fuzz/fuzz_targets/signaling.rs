//! The WebSocket signaling as the server reads it: the bytes of a connection through
//! the frame guard (split anywhere), and a text frame through the message parser.
//! Nothing may panic; a message that parses serializes and parses back the same.
#![no_main]

use casecast_signaling::ClientMessage;
use casecast_signaling::ws_frames::FrameGuard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the stream is split and the frame limit.
    let (split, rest) = match data.split_first() {
        Some((&b, rest)) => (b as usize, rest),
        None => return,
    };
    let limit = 1usize << (split % 24);
    let mut guard = FrameGuard::new();
    let at = split.min(rest.len());
    if guard.inspect(&rest[..at], limit).is_ok() {
        let _ = guard.inspect(&rest[at..], limit);
    }
    if let Ok(text) = std::str::from_utf8(rest)
        && let Ok(msg) = ClientMessage::parse(text)
    {
        let again = serde_json::to_string(&msg).expect("a parsed message serializes");
        assert_eq!(ClientMessage::parse(&again).ok(), Some(msg), "round trip");
    }
});
