//! WHEP viewers with GStreamer's webrtcbin, as it comes (its own RSA DTLS
//! certificate, its own jitter buffers): `casecast watch`. They say, from another
//! WebRTC stack than the server's, whether a room's feed arrives whole: the bytes
//! and frames each one receives, and the packets its jitter buffers count as lost.
//!
//! Media is depayloaded and counted, not decoded: one process holds tens of viewers
//! on a small machine, as the subscriber side of a benchmark. Each viewer is a
//! pipeline of its own; one thread polls them all.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_webrtc as gst_webrtc;

use crate::publisher::WhipClient;
use crate::webrtcbin::WebrtcbinPeer;

/// What one viewer has received so far (depayloaded media, as the server counts
/// what it takes in).
#[derive(Debug, Default)]
pub struct Received {
    /// Video frame bytes.
    pub video_bytes: AtomicU64,
    /// Video frames.
    pub video_frames: AtomicU64,
    /// Audio bytes.
    pub audio_bytes: AtomicU64,
}

/// A snapshot of one viewer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// Whether webrtcbin says the connection is up.
    pub connected: bool,
    /// Video frame bytes so far.
    pub video_bytes: u64,
    /// Video frames so far.
    pub video_frames: u64,
    /// Audio bytes so far.
    pub audio_bytes: u64,
    /// RTP packets received, as the jitter buffers count them.
    pub packets: u64,
    /// RTP packets lost, as the jitter buffers count them.
    pub lost: u64,
}

/// One webrtcbin WHEP viewer; leaves (DELETE) on drop.
pub struct Watcher {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    received: Arc<Received>,
    whep: Box<dyn WhipClient>,
}

impl Watcher {
    /// Joins over WHEP: offers receive-only Opus audio and VP8 or H.264 video,
    /// POSTs the offer with `whep`, applies the answer. ICE is kept to
    /// `local_addresses` if any are given.
    pub fn start(mut whep: Box<dyn WhipClient>, local_addresses: &[String]) -> Result<Watcher, String> {
        gst::init().map_err(|e| format!("GStreamer: {e}"))?;
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|e| format!("webrtcbin: {e}"))?;
        pipeline.add(&webrtc).map_err(|e| e.to_string())?;
        let peer = WebrtcbinPeer::prepare(&pipeline, webrtc.clone(), local_addresses)?;
        let received = Arc::new(Received::default());
        let (weak, r) = (pipeline.downgrade(), received.clone());
        webrtc.connect_pad_added(move |_, pad| {
            if let Some(pipeline) = weak.upgrade() {
                count_media(&pipeline, pad, &r);
            }
        });
        for caps in [
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000;\
             application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f",
        ] {
            let caps = gst::Caps::from_str(caps).map_err(|e| format!("caps: {e}"))?;
            let _: gst_webrtc::WebRTCRTPTransceiver =
                webrtc.emit_by_name("add-transceiver", &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps]);
        }
        pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start the pipeline: {e}"))?;
        let answer = peer.offer().and_then(|offer| whep.post(&offer));
        // From here, dropping it stops the pipeline and ends the session.
        let watcher = Watcher { pipeline, webrtc, received, whep };
        peer.set_answer(&answer?).map_err(|e| format!("the server's answer: {e}"))?;
        Ok(watcher)
    }

    /// What it has received so far, and the loss its jitter buffers saw.
    pub fn snapshot(&self) -> Snapshot {
        let (packets, lost) = self.jitter_stats();
        Snapshot {
            connected: self.webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state")
                == gst_webrtc::WebRTCPeerConnectionState::Connected,
            video_bytes: self.received.video_bytes.load(Ordering::Relaxed),
            video_frames: self.received.video_frames.load(Ordering::Relaxed),
            audio_bytes: self.received.audio_bytes.load(Ordering::Relaxed),
            packets,
            lost,
        }
    }

    /// Packets pushed and lost, summed over the rtpjitterbuffers in the pipeline.
    fn jitter_stats(&self) -> (u64, u64) {
        let mut it = self.pipeline.iterate_recurse();
        let (mut pushed, mut lost) = (0, 0);
        while let Ok(Some(el)) = it.next() {
            if el.factory().is_some_and(|f| f.name() == "rtpjitterbuffer") {
                let s = el.property::<gst::Structure>("stats");
                pushed += s.get::<u64>("num-pushed").unwrap_or(0);
                lost += s.get::<u64>("num-lost").unwrap_or(0);
            }
        }
        (pushed, lost)
    }

    /// An error the pipeline reported, if any.
    pub fn error(&self) -> Option<String> {
        let msg = self.pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
            _ => None,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        self.whep.delete();
    }
}

/// Links a new webrtcbin source pad to its depayloader and a counting sink.
fn count_media(pipeline: &gst::Pipeline, pad: &gst::Pad, received: &Arc<Received>) {
    if pad.direction() != gst::PadDirection::Src {
        return;
    }
    let caps = pad.current_caps().map(|c| c.to_string()).unwrap_or_default();
    let (depay, video) = if caps.contains("encoding-name=(string)VP8") {
        ("rtpvp8depay", true)
    } else if caps.contains("encoding-name=(string)H264") {
        ("rtph264depay", true)
    } else if caps.contains("encoding-name=(string)OPUS") {
        ("rtpopusdepay", false)
    } else {
        tracing::warn!(caps, "a stream of a kind the viewer does not count");
        return;
    };
    let (Ok(depay), Ok(sink)) = (gst::ElementFactory::make(depay).build(), gst::ElementFactory::make("fakesink").property("sync", false).build())
    else {
        return;
    };
    if pipeline.add_many([&depay, &sink]).is_err() || depay.link(&sink).is_err() {
        return;
    }
    let _ = depay.sync_state_with_parent();
    let _ = sink.sync_state_with_parent();
    let Some(sinkpad) = depay.static_pad("sink") else { return };
    let _ = pad.link(&sinkpad);
    let received = received.clone();
    if let Some(out) = depay.static_pad("src") {
        out.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let n = info.buffer().map_or(0, |b| b.size() as u64);
            if video {
                received.video_bytes.fetch_add(n, Ordering::Relaxed);
                received.video_frames.fetch_add(1, Ordering::Relaxed);
            } else {
                received.audio_bytes.fetch_add(n, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// One viewer's figures over a measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Video and audio, bits/s of depayloaded media.
    pub bitrate: f64,
    /// Video frames per second.
    pub fps: f64,
    /// Packets lost / (received + lost), in the window.
    pub loss: f64,
}

/// The rates between two snapshots `elapsed` apart.
pub fn rates(from: &Snapshot, to: &Snapshot, elapsed: Duration) -> Rates {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let bytes = (to.video_bytes + to.audio_bytes).saturating_sub(from.video_bytes + from.audio_bytes);
    let (got, lost) = (to.packets.saturating_sub(from.packets), to.lost.saturating_sub(from.lost));
    Rates {
        bitrate: bytes as f64 * 8.0 / secs,
        fps: to.video_frames.saturating_sub(from.video_frames) as f64 / secs,
        loss: if got + lost == 0 { 0.0 } else { lost as f64 / (got + lost) as f64 },
    }
}

/// Starts `count` viewers, one every `spacing`, each with its own WHEP client from
/// `client`. A viewer that cannot join is reported and left out.
pub fn start_many(
    count: usize,
    spacing: Duration,
    local_addresses: &[String],
    mut client: impl FnMut() -> Box<dyn WhipClient>,
) -> Vec<Result<Watcher, String>> {
    let mut out = Vec::with_capacity(count);
    let mut next = Instant::now();
    for _ in 0..count {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += spacing;
        out.push(Watcher::start(client(), local_addresses));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_over_the_window() {
        let a = Snapshot { video_bytes: 1_000, video_frames: 10, audio_bytes: 0, packets: 100, lost: 0, connected: true };
        let b = Snapshot { video_bytes: 251_000, video_frames: 70, audio_bytes: 20_000, packets: 398, lost: 2, connected: true };
        let r = rates(&a, &b, Duration::from_secs(2));
        assert_eq!(r.bitrate, 270_000.0 * 8.0 / 2.0);
        assert_eq!(r.fps, 30.0);
        assert!((r.loss - 2.0 / 300.0).abs() < 1e-9);
        assert_eq!(rates(&b, &b, Duration::from_secs(1)).loss, 0.0);
    }
}
