//! What every GStreamer webrtcbin peer of the SFU needs (the test-pattern encoder,
//! the program's compositor, the tests' viewer), in one place.
//!
//! Two things make webrtcbin 1.22 and str0m's ICE-lite server meet (its DTLS
//! certificate, RSA where browsers use ECDSA, is taken as it comes):
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
}

impl WebrtcbinPeer {
    /// Prepares `webrtc` (already in `pipeline`, which must not have created its
    /// transports yet, i.e. before the first offer) and restricts ICE to
    /// `local_addresses` if any are given.
    pub fn prepare(pipeline: &gst::Pipeline, webrtc: gst::Element, local_addresses: &[String]) -> Result<Self, String> {
        if !local_addresses.is_empty() {
            let ice = webrtc.property::<glib::Object>("ice-agent");
            for a in local_addresses {
                if !ice.emit_by_name::<bool>("add-local-ip-address", &[a]) {
                    return Err(format!("ICE cannot use local address {a}"));
                }
            }
        }
        pipeline.connect_deep_element_added(|_, _, el| {
            if el.factory().is_none_or(|f| f.name() != "nicesrc") {
                return;
            }
            if let Some(agent) = el.property::<Option<glib::Object>>("agent") {
                let writable = agent.find_property("keepalive-conncheck").is_some_and(|p| p.flags().contains(glib::ParamFlags::WRITABLE));
                if writable {
                    agent.set_property("keepalive-conncheck", true);
                }
            }
        });
        Ok(WebrtcbinPeer { webrtc })
    }

    /// The webrtcbin.
    pub fn element(&self) -> &gst::Element {
        &self.webrtc
    }

    /// Creates an offer, sets it as the local description, returns its SDP.
    pub fn offer(&self) -> Result<String, String> {
        let desc = self.create("create-offer", "offer")?;
        self.set("set-local-description", &desc);
        desc.sdp().as_text().map_err(|e| format!("offer SDP: {e}"))
    }

    /// Takes a remote offer and returns the answer's SDP (set as local description).
    pub fn answer(&self, offer: &str) -> Result<String, String> {
        self.set_remote(offer, gst_webrtc::WebRTCSDPType::Offer)?;
        let desc = self.create("create-answer", "answer")?;
        self.set("set-local-description", &desc);
        desc.sdp().as_text().map_err(|e| format!("answer SDP: {e}"))
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
