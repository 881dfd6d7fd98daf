//! GStreamer's webrtcbin as a participant over the WebSocket signaling: a second
//! WebRTC stack speaking our protocol, as the compositor will. It offers receive-only
//! m-lines up front (the server binds the room's tracks to them, the feed first), so
//! it never has to take a server offer, and decodes what arrives.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use casecast_actors::webrtcbin::WebrtcbinPeer;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_webrtc as gst_webrtc;
use serde_json::{Value, json};

/// Decoded buffers so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Decoded video frames.
    pub video: AtomicU64,
    /// Decoded audio buffers.
    pub audio: AtomicU64,
}

/// A running webrtcbin participant; leaves on drop.
pub struct WebrtcbinViewer {
    /// What it decoded.
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl WebrtcbinViewer {
    /// Joins `room` at `base` (`http://…`) with `pairs` receive-only audio+video pairs.
    pub fn join(base: &str, room: &str, token: &str, pairs: usize) -> Result<Self> {
        Self::join_over(base, room, token, pairs, true)
    }

    /// The same, with ICE over TCP only when `udp` is false (libnice's ICE-TCP, as
    /// from a network that blocks UDP).
    pub fn join_over(base: &str, room: &str, token: &str, pairs: usize, udp: bool) -> Result<Self> {
        gst::init()?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let url = format!("{}/ws", base.replace("http://", "ws://"));
        let (room, token) = (room.to_string(), token.to_string());
        let thread = std::thread::spawn(move || run(&url, &room, &token, (pairs, udp), &c, &s));
        Ok(WebrtcbinViewer { counts, stop, thread: Some(thread) })
    }

    /// Video frames decoded.
    pub fn video(&self) -> u64 {
        self.counts.video.load(Ordering::Relaxed)
    }

    /// Audio buffers decoded.
    pub fn audio(&self) -> u64 {
        self.counts.audio.load(Ordering::Relaxed)
    }

    /// Stops and returns how the session ended.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|t| t.join().map_err(|_| anyhow!("viewer thread panicked"))?).unwrap_or(Ok(()))
    }
}

impl Drop for WebrtcbinViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(url: &str, room: &str, token: &str, (pairs, udp): (usize, bool), counts: &Arc<Counts>, stop: &AtomicBool) -> Result<()> {
    let pipeline = gst::Pipeline::new();
    let webrtc = gst::ElementFactory::make("webrtcbin").property_from_str("bundle-policy", "max-compat").build()?;
    pipeline.add(&webrtc)?;
    let peer = WebrtcbinPeer::prepare(&pipeline, webrtc.clone(), &["127.0.0.1".to_string()]).map_err(|e| anyhow!(e))?;
    if !udp {
        webrtc.property::<gst::glib::Object>("ice-agent").set_property("ice-udp", false);
    }
    let weak = pipeline.downgrade();
    let counts2 = counts.clone();
    webrtc.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let Ok(dec) = gst::ElementFactory::make("decodebin").build() else { return };
        let _ = pipeline.add(&dec);
        let _ = dec.sync_state_with_parent();
        let _ = pad.link(&dec.static_pad("sink").expect("decodebin has a sink pad"));
        let (weak, counts) = (pipeline.downgrade(), counts2.clone());
        dec.connect_pad_added(move |_, dpad| {
            let Some(pipeline) = weak.upgrade() else { return };
            let video = dpad.current_caps().is_some_and(|c| c.to_string().starts_with("video"));
            let Ok(sink) = gst::ElementFactory::make("fakesink").property("sync", false).build() else { return };
            let _ = pipeline.add(&sink);
            let _ = sink.sync_state_with_parent();
            let _ = dpad.link(&sink.static_pad("sink").expect("fakesink has a sink pad"));
            let counts = counts.clone();
            dpad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if video { &counts.video } else { &counts.audio }.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        });
    });
    for _ in 0..pairs {
        for caps in [
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
        ] {
            let _: gst_webrtc::WebRTCRTPTransceiver = webrtc.emit_by_name(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &gst::Caps::from_str(caps)?],
            );
        }
    }
    pipeline.set_state(gst::State::Playing)?;
    let _guard = Null(pipeline.clone());

    let (mut ws, _) = tungstenite::connect(url).context("websocket")?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    ws.send(tungstenite::Message::text(json!({"type":"join","v":1,"room":room,"token":token}).to_string()))?;
    let offer = peer.offer().map_err(|e| anyhow!(e))?;
    let mut offered = false;
    while !stop.load(Ordering::SeqCst) {
        let text = match ws.read() {
            Ok(tungstenite::Message::Text(t)) => t.to_string(),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => bail!("signaling: {e}"),
        };
        let v: Value = serde_json::from_str(&text)?;
        match v["type"].as_str() {
            Some("joined") if !offered => {
                offered = true;
                ws.send(tungstenite::Message::text(json!({"type":"offer","sdp":offer}).to_string()))?;
            }
            Some("answer") => peer.set_answer(v["sdp"].as_str().unwrap_or("")).map_err(|e| anyhow!(e))?,
            Some("offer") => bail!("the server sent an offer although every track had an m-line"),
            Some("error") => bail!("server error: {v}"),
            _ => {}
        }
    }
    let _ = ws.send(tungstenite::Message::text(r#"{"type":"leave"}"#));
    Ok(())
}

/// Sets the pipeline to `Null` on drop.
struct Null(gst::Pipeline);

impl Drop for Null {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}
