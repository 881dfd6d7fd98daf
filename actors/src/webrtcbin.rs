//! What every GStreamer webrtcbin peer of the SFU needs (the test-pattern encoder,
//! the program's compositor, the tests' viewer), in one place.
//!
//! Three things make webrtcbin 1.22 and str0m's ICE-lite server meet:
//! - **DTLS certificate.** GStreamer makes an RSA certificate and str0m accepts
//!   ECDSA client certificates only: the DTLS decoder gets an ECDSA P-256 one, as
//!   browsers use. GStreamer still writes the fingerprint of the certificate it
//!   started with, so every SDP it produces is rewritten ([`with_fingerprint`]).
//! - **Keepalives.** libnice keeps a pair alive with STUN indications; an ICE-lite
//!   server counts binding requests only and drops a pair without them for 15 s.
//!   `keepalive-conncheck` makes the keepalives binding requests, whose missing
//!   answers also fail the connection when the server goes away.
//! - **Loopback.** libnice skips loopback addresses unless told to use them.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;

/// A webrtcbin made ready to talk to the SFU.
pub struct WebrtcbinPeer {
    webrtc: gst::Element,
    fingerprint: String,
}

impl WebrtcbinPeer {
    /// Prepares `webrtc` (already in `pipeline`, which must not have created its
    /// transports yet, i.e. before the first offer) and restricts ICE to
    /// `local_addresses` if any are given.
    pub fn prepare(pipeline: &gst::Pipeline, webrtc: gst::Element, local_addresses: &[String]) -> Result<Self, String> {
        Self::prepare_with(pipeline, webrtc, local_addresses, true)
    }

    /// The same; with `ecdsa` false webrtcbin keeps its own (RSA) DTLS certificate,
    /// as another team's GStreamer peer would (the server refuses it: see above).
    pub fn prepare_with(pipeline: &gst::Pipeline, webrtc: gst::Element, local_addresses: &[String], ecdsa: bool) -> Result<Self, String> {
        if !local_addresses.is_empty() {
            let ice = webrtc.property::<glib::Object>("ice-agent");
            for a in local_addresses {
                if !ice.emit_by_name::<bool>("add-local-ip-address", &[a]) {
                    return Err(format!("ICE cannot use local address {a}"));
                }
            }
        }
        let (pem, fingerprint) = if ecdsa { ecdsa_certificate()? } else { (String::new(), String::new()) };
        pipeline.connect_deep_element_added(move |_, _, el| match el.factory().map(|f| f.name()) {
            Some(n) if n == "dtlsdec" && !pem.is_empty() => el.set_property("pem", &pem),
            Some(n) if n == "nicesrc" => {
                if let Some(agent) = el.property::<Option<glib::Object>>("agent") {
                    let writable = agent
                        .find_property("keepalive-conncheck")
                        .is_some_and(|p| p.flags().contains(glib::ParamFlags::WRITABLE));
                    if writable {
                        agent.set_property("keepalive-conncheck", true);
                    }
                }
            }
            _ => {}
        });
        Ok(WebrtcbinPeer { webrtc, fingerprint })
    }

    /// The webrtcbin.
    pub fn element(&self) -> &gst::Element {
        &self.webrtc
    }

    /// Creates an offer, sets it as the local description, returns its SDP.
    pub fn offer(&self) -> Result<String, String> {
        let desc = self.create("create-offer", "offer")?;
        self.set("set-local-description", &desc);
        Ok(with_fingerprint(&desc.sdp().as_text().map_err(|e| format!("offer SDP: {e}"))?, &self.fingerprint))
    }

    /// Takes a remote offer and returns the answer's SDP (set as local description).
    pub fn answer(&self, offer: &str) -> Result<String, String> {
        self.set_remote(offer, gst_webrtc::WebRTCSDPType::Offer)?;
        let desc = self.create("create-answer", "answer")?;
        self.set("set-local-description", &desc);
        Ok(with_fingerprint(&desc.sdp().as_text().map_err(|e| format!("answer SDP: {e}"))?, &self.fingerprint))
    }

    /// Applies the remote side's answer.
    pub fn set_answer(&self, answer: &str) -> Result<(), String> {
        self.set_remote(answer, gst_webrtc::WebRTCSDPType::Answer)
    }

    fn set_remote(&self, sdp: &str, kind: gst_webrtc::WebRTCSDPType) -> Result<(), String> {
        let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()).map_err(|_| "not valid SDP".to_string())?;
        self.set("set-remote-description", &gst_webrtc::WebRTCSessionDescription::new(kind, msg));
        Ok(())
    }

    fn create(&self, signal: &str, field: &str) -> Result<gst_webrtc::WebRTCSessionDescription, String> {
        let p = gst::Promise::new();
        self.webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &p]);
        match p.wait() {
            gst::PromiseResult::Replied => {}
            r => return Err(format!("{signal}: {r:?}")),
        }
        let reply = p.get_reply().ok_or_else(|| format!("{signal}: empty reply"))?;
        reply
            .get::<Option<gst_webrtc::WebRTCSessionDescription>>(field)
            .map_err(|e| format!("{signal}: {e}"))?
            .ok_or_else(|| format!("webrtcbin could not {}", signal.replace('-', " ")))
    }

    fn set(&self, signal: &str, desc: &gst_webrtc::WebRTCSessionDescription) {
        let p = gst::Promise::new();
        self.webrtc.emit_by_name::<()>(signal, &[desc, &p]);
        p.wait();
    }
}

/// A fresh self-signed ECDSA P-256 certificate and its key in PEM, and the
/// certificate's SHA-256 fingerprint as SDP writes it. For any webrtcbin peer of
/// the SFU (see [`with_fingerprint`]).
fn ecdsa_certificate() -> Result<(String, String), String> {
    use base64::Engine;
    let crypto = str0m::crypto::from_feature_flags();
    let cert = crypto.dtls_provider.generate_certificate().ok_or("cannot generate a DTLS certificate")?;
    let fingerprint: Vec<String> = crypto.sha256_provider.sha256(&cert.certificate).iter().map(|b| format!("{b:02X}")).collect();
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    };
    Ok((pem("CERTIFICATE", &cert.certificate) + &pem("PRIVATE KEY", &cert.private_key), fingerprint.join(":")))
}

/// Replaces every `a=fingerprint:` line of an SDP with the given SHA-256 one:
/// GStreamer 1.22 writes the fingerprint of the RSA certificate it started with even
/// after `pem` gave its DTLS decoder another.
pub fn with_fingerprint(sdp: &str, fingerprint: &str) -> String {
    if fingerprint.is_empty() {
        return sdp.to_string();
    }
    sdp.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("a=fingerprint:") {
                format!("a=fingerprint:sha-256 {fingerprint}\r\n")
            } else {
                line.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_lines_are_replaced() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=fingerprint:sha-256 AA:BB\r\na=mid:0\r\n";
        let out = with_fingerprint(sdp, "01:02");
        assert_eq!(out.matches("a=fingerprint:sha-256 01:02\r\n").count(), 2);
        assert!(!out.contains("AA:BB"));
        assert!(out.ends_with("a=mid:0\r\n"));
    }

    #[test]
    fn certificate_is_ecdsa_pem_with_a_sha256_fingerprint() {
        let (pem, fp) = ecdsa_certificate().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(fp.split(':').count(), 32);
    }
}
