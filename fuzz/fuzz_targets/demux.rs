//! The media port's first look at a datagram (which participant's STUN username it
//! names; RTP or not), and the participant's WebRTC session reading it: whatever
//! arrives on the UDP port. Nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use str0m::net::{Protocol, Receive};

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = casecast_actors::udp::stun_local_ufrag(data) {
        assert!(ufrag.len() < data.len());
    }
    let _ = casecast_actors::udp::is_rtp(data);
    // As a participant's session receives it (ICE-lite, before any offer).
    let mut rtc = casecast_fuzz::server_session();
    let local = casecast_fuzz::MEDIA_PORT.parse().unwrap();
    let Ok(contents) = data.try_into() else { return };
    let input = str0m::Input::Receive(
        Instant::now(),
        Receive { proto: Protocol::Udp, source: "127.0.0.1:40000".parse().unwrap(), destination: local, contents },
    );
    if rtc.accepts(&input) {
        let _ = rtc.handle_input(input);
        while let Ok(out) = rtc.poll_output() {
            if matches!(out, str0m::Output::Timeout(_)) {
                break;
            }
        }
    }
});
