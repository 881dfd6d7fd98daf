//! What the fuzz targets share: a WebRTC session configured as the server's.

use std::time::Instant;

/// The media port's address in the targets.
pub const MEDIA_PORT: &str = "127.0.0.1:8081";

/// One DTLS certificate, as the server makes one at start (making it is most of the
/// cost of a session).
fn certificate() -> str0m::config::DtlsCert {
    static CERT: std::sync::OnceLock<str0m::config::DtlsCert> = std::sync::OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a certificate"))
        .clone()
}

/// A session as a participant's: ICE-lite, the server's certificate, a host
/// candidate on the media port.
pub fn server_session() -> str0m::Rtc {
    let mut rtc = str0m::Rtc::builder().set_ice_lite(true).set_dtls_cert(certificate()).build(Instant::now());
    if let Ok(c) = str0m::Candidate::host(MEDIA_PORT.parse().expect("an address"), "udp") {
        rtc.add_local_candidate(c);
    }
    rtc
}
