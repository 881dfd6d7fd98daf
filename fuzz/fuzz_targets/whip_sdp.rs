//! An SDP offer through the WHIP door: the body's checks, the reading of the offer,
//! and, for one that is read, its answer by a WebRTC session configured as the
//! server's (ICE-lite, a host candidate). Nothing may panic, and a refusal never
//! carries the parser's internals.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = casecast_signaling::whip::check_sdp_offer(data) else { return };
    let offer = match casecast_actors::sdp::parse_offer(text) {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.contains("Pointer") && !e.contains("Offset("), "{e}");
            return;
        }
    };
    let mut rtc = casecast_fuzz::server_session();
    if let Ok(answer) = rtc.sdp_api().accept_offer(offer) {
        // The answer the server would send is itself SDP the reader takes.
        let _ = casecast_actors::sdp::parse_answer(&answer.to_sdp_string());
    }
});
