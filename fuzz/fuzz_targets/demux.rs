//! The media port's first look at a datagram (which participant's STUN username it
//! names; RTP or not), and the participant's WebRTC session reading it: whatever
//! arrives on the UDP port. Nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;

/// One DTLS certificate, as the server makes one at start (making it is most of the
/// cost of a session).
fn certificate() -> str0m::config::DtlsCert {
    static CERT: std::sync::OnceLock<str0m::config::DtlsCert> = std::sync::OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a certificate"))
        .clone()
}
use str0m::net::{Protocol, Receive};

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = casecast_actors::udp::stun_local_ufrag(data) {
        assert!(ufrag.len() < data.len());
    }
    let _ = casecast_actors::udp::is_rtp(data);
    // As a participant's session receives it (ICE-lite, before and after an offer).
    let mut rtc = str0m::Rtc::builder().set_ice_lite(true).set_dtls_cert(certificate()).build(Instant::now());
    let local = "127.0.0.1:8081".parse().unwrap();
    if let Ok(c) = str0m::Candidate::host(local, "udp") {
        rtc.add_local_candidate(c);
    }
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
