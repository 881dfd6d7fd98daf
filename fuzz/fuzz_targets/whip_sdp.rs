//! An SDP offer through the WHIP door: the body's checks, the reading of the offer,
//! and, for one that is read, its answer by a WebRTC session configured as the
//! server's (ICE-lite, a host candidate). Nothing may panic, and a refusal never
//! carries the parser's internals.
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = casecast_signaling::whip::check_sdp_offer(data) else { return };
    let offer = match casecast_actors::sdp::parse_offer(text) {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.contains("Pointer") && !e.contains("0x"), "{e}");
            return;
        }
    };
    let mut rtc = str0m::Rtc::builder().set_ice_lite(true).set_dtls_cert(certificate()).build(Instant::now());
    if let Ok(c) = str0m::Candidate::host("127.0.0.1:8081".parse().unwrap(), "udp") {
        rtc.add_local_candidate(c);
    }
    if let Ok(answer) = rtc.sdp_api().accept_offer(offer) {
        // The answer the server would send is itself SDP the reader takes.
        let _ = casecast_actors::sdp::parse_answer(&answer.to_sdp_string());
    }
});
