//! A surgery feed published over WHIP with GStreamer's webrtcbin: a synthetic one,
//! or a hospital encoder's stream taken in over SRT, RTMP or RTSP.
//!
//! The synthetic feed is what the demo room shows, and a second WebRTC stack for
//! interop tests: the server sees exactly what it would see from a hospital encoder.
//! The picture is a moving test pattern with the wall clock and the running time
//! burned in (the clock lets latency be read off any downstream frame); the sound is a
//! tick per second.
//!
//! With a source URI (`srt://:7001?mode=listener` for an encoder that pushes SRT,
//! `rtmp://…` or `rtsp://…` to pull), `uridecodebin` takes the stream in; its
//! decoded picture and sound are stamped again on arrival (an appsink → appsrc hop:
//! the source's own timestamps start when it connects, not when this pipeline did)
//! and encoded for WebRTC at the options' size, rate and codec (B-frames and the
//! encoder's GOP never reach the browsers).
//!
//! The publisher supervises its session: if the WHIP POST fails or the connection
//! fails, it tears the pipeline down and starts again with backoff, until stopped.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_webrtc as gst_webrtc;

use crate::stop::Stop;
use crate::webrtcbin::WebrtcbinPeer;

/// Video codec of the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (libvpx, realtime).
    Vp8,
    /// H.264 constrained baseline (x264, zerolatency).
    H264,
}

/// What the test pattern looks like and how it is encoded.
#[derive(Debug, Clone)]
pub struct TestPatternOptions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, bits/s.
    pub video_bitrate: u32,
    /// Codec.
    pub codec: VideoCodec,
    /// Send a tick sound as Opus.
    pub audio: bool,
    /// Text burned into the picture.
    pub title: String,
    /// Local addresses ICE may use (empty: every interface but loopback, libnice's
    /// default). Give `127.0.0.1` to publish to a server on this machine's loopback.
    pub local_addresses: Vec<String>,
    /// Take the feed from this URI (SRT, RTMP, RTSP, a file) instead of the test
    /// pattern.
    pub source: Option<String>,
}

impl Default for TestPatternOptions {
    fn default() -> Self {
        TestPatternOptions {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate: 2_500_000,
            codec: VideoCodec::Vp8,
            audio: true,
            title: "casecast demo feed".into(),
            local_addresses: Vec::new(),
            source: None,
        }
    }
}

/// The WHIP exchange, supplied by the caller (the server's HTTP client).
pub trait WhipClient: Send + 'static {
    /// POSTs an SDP offer; returns the SDP answer.
    fn post(&mut self, offer: &str) -> Result<String, String>;
    /// DELETEs the session, if one was created.
    fn delete(&mut self);
    /// Whether the session's server still answers at all (asked every 2 s while the
    /// media flows). webrtcbin does not notice a server that vanished; three
    /// misses in a row end the session, and the next try may reach another node.
    fn alive(&mut self) -> bool {
        true
    }
}

/// Where the publisher is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherState {
    /// Setting up or posting the offer.
    Connecting,
    /// Media connection established.
    Connected,
    /// Waiting before the next try, with the last error.
    Retrying(String),
    /// Stopped.
    Stopped,
}

/// A running test-pattern publisher; stops on [`stop`](Self::stop) or drop.
pub struct TestPatternPublisher {
    stop: Stop,
    state: Arc<Mutex<PublisherState>>,
    thread: Option<JoinHandle<()>>,
}

/// Why the publisher could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// GStreamer is missing or an element is not installed.
    #[error("GStreamer is not usable: {0} (install the GStreamer plugins: scripts/install-deps.sh)")]
    Gstreamer(String),
}

impl TestPatternPublisher {
    /// Starts publishing in a thread of its own.
    pub fn start(opts: TestPatternOptions, whip: impl WhipClient) -> Result<Self, PublisherError> {
        gst::init().map_err(|e| PublisherError::Gstreamer(e.to_string()))?;
        // Fail early, with a clear message, if a plugin is missing.
        build_pipeline(&opts).map_err(PublisherError::Gstreamer)?.0.set_state(gst::State::Null).ok();
        let stop = Stop::new();
        let state = Arc::new(Mutex::new(PublisherState::Connecting));
        let (s, st) = (stop.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("test-pattern".into())
            .spawn(move || supervise(opts, whip, s, st))
            .map_err(|e| PublisherError::Gstreamer(e.to_string()))?;
        Ok(TestPatternPublisher { stop, state, thread: Some(thread) })
    }

    /// The current state.
    pub fn state(&self) -> PublisherState {
        self.state.lock().unwrap().clone()
    }

    /// Stops and waits for the pipeline to be torn down.
    pub fn stop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestPatternPublisher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn supervise(opts: TestPatternOptions, mut whip: impl WhipClient, stop: Stop, state: Arc<Mutex<PublisherState>>) {
    let mut backoff = Duration::from_millis(500);
    while !stop.is_set() {
        *state.lock().unwrap() = PublisherState::Connecting;
        let err = match run_session(&opts, &mut whip, &stop, &state) {
            Ok(()) => break,
            Err(e) => e,
        };
        if *state.lock().unwrap() == PublisherState::Connected {
            // It worked for a while: start the backoff over.
            backoff = Duration::from_millis(500);
        }
        whip.delete();
        tracing::warn!(error = %err, retry_in = ?backoff, "test pattern publisher: session failed");
        *state.lock().unwrap() = PublisherState::Retrying(err);
        if stop.wait(backoff) {
            break;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    whip.delete();
    *state.lock().unwrap() = PublisherState::Stopped;
}

fn build_pipeline(o: &TestPatternOptions) -> Result<(gst::Pipeline, gst::Element), String> {
    let title = o.title.replace(['"', '\\'], "");
    // Fixed SSRCs in the caps: webrtcbin writes them into the offer (a=ssrc) even
    // before the first packet, so the receiver can map every stream to its m-line
    // without waiting for a MID header extension.
    let (vssrc, assrc): (u32, u32) = (rand::random(), rand::random());
    let font = (o.height / 30).max(8);
    let (enc, pay, caps) = match o.codec {
        VideoCodec::Vp8 => (
            format!(
                "vp8enc deadline=1 cpu-used=8 threads=2 target-bitrate={} keyframe-max-dist={} error-resilient=partitions",
                o.video_bitrate,
                o.fps * 2
            ),
            format!("rtpvp8pay pt=96 picture-id-mode=15-bit ssrc={vssrc}"),
            format!("application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,ssrc=(uint){vssrc}"),
        ),
        VideoCodec::H264 => (
            format!(
                "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} bitrate={} ! video/x-h264,profile=constrained-baseline",
                o.fps * 2,
                o.video_bitrate / 1000
            ),
            format!("rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ssrc={vssrc}"),
            format!("application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,ssrc=(uint){vssrc}"),
        ),
    };
    let raw_video = format!("video/x-raw,format=I420,width={},height={},framerate={}/1,pixel-aspect-ratio=1/1", o.width, o.height, o.fps);
    let raw_audio = "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=2";
    let picture = match &o.source {
        None => format!(
            "videotestsrc is-live=true pattern=smpte horizontal-speed=2 \
             ! video/x-raw,width={w},height={h},framerate={fps}/1 \
             ! textoverlay text=\"{title}\" valignment=top halignment=left font-desc=\"Sans {font}\" \
             ! clockoverlay time-format=\"%H:%M:%S\" valignment=center halignment=center shaded-background=true shading-value=200 font-desc=\"Sans Bold {big}\" \
             ! timeoverlay valignment=bottom halignment=right font-desc=\"Sans {font}\" ",
            w = o.width,
            h = o.height,
            fps = o.fps,
            big = font * 3,
        ),
        // The encoder's stream, decoded and scaled (the aspect kept, bordered), then
        // stamped again on arrival (see the module's notes).
        Some(uri) => format!(
            "uridecodebin uri=\"{uri}\" name=src \
             src. ! video/x-raw ! queue ! videoconvert ! videoscale add-borders=true ! videorate ! {raw_video} \
               ! appsink name=vin sync=false max-buffers=2 drop=true \
             src. ! audio/x-raw ! queue ! audioconvert ! audioresample ! {raw_audio} ! appsink name=ain sync=false max-buffers=50 drop=true \
             appsrc name=vout is-live=true do-timestamp=true format=time caps=\"{raw_video}\" ",
            uri = uri.replace(['"', '\\'], ""),
        ),
    };
    let mut desc = format!(
        "webrtcbin name=webrtc bundle-policy=max-bundle {picture} \
         ! videoconvert ! queue max-size-buffers=2 leaky=downstream ! {enc} ! {pay} ! {caps} ! webrtc. "
    );
    if o.audio && o.source.is_some() {
        desc += &format!(
            "appsrc name=aout is-live=true do-timestamp=true format=time caps=\"{raw_audio}\" ! queue \
             ! opusenc bitrate=64000 ! rtpopuspay pt=111 ssrc={assrc} \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,ssrc=(uint){assrc} ! webrtc. "
        );
    } else if o.audio {
        desc += &format!(
            "audiotestsrc is-live=true wave=ticks volume=0.3 ! audioconvert ! audioresample \
             ! opusenc bitrate=32000 ! rtpopuspay pt=111 ssrc={assrc} \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,ssrc=(uint){assrc} ! webrtc. "
        );
    }
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("cannot build the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let webrtc = pipeline.by_name("webrtc").ok_or("no webrtcbin in the pipeline")?;
    for (from, to) in [("vin", "vout"), ("ain", "aout")] {
        let (Some(sink), Some(src)) = (
            pipeline.by_name(from).and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok()),
            pipeline.by_name(to).and_then(|e| e.downcast::<gstreamer_app::AppSrc>().ok()),
        ) else {
            continue;
        };
        sink.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(mut buffer) = sample.buffer_owned() {
                        let b = buffer.make_mut();
                        b.set_pts(gst::ClockTime::NONE);
                        b.set_dts(gst::ClockTime::NONE);
                        let _ = src.push_buffer(buffer);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    Ok((pipeline, webrtc))
}

fn run_session(
    opts: &TestPatternOptions,
    whip: &mut impl WhipClient,
    stop: &Stop,
    state: &Mutex<PublisherState>,
) -> Result<(), String> {
    let (pipeline, webrtc) = build_pipeline(opts)?;
    let guard = PipelineGuard(pipeline.clone());
    let peer = WebrtcbinPeer::prepare(&pipeline, webrtc.clone(), &opts.local_addresses)?;
    pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start the pipeline: {e}"))?;
    // Send only: nothing comes back on these m-lines.
    let mut i = 0u32;
    while let Some(t) = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&(i as i32)]) {
        t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
        i += 1;
    }
    let answer = whip.post(&peer.offer()?)?;
    peer.set_answer(&answer).map_err(|e| format!("the server's answer: {e}"))?;

    let bus = pipeline.bus().ok_or("pipeline has no bus")?;
    let started = Instant::now();
    let mut connected = false;
    let (mut asked, mut misses) = (Instant::now(), 0);
    while !stop.is_set() {
        if connected && asked.elapsed() >= Duration::from_secs(2) {
            asked = Instant::now();
            misses = if whip.alive() { 0 } else { misses + 1 };
            if misses >= 3 {
                return Err("the server stopped answering".into());
            }
        }
        if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(200), &[gst::MessageType::Error, gst::MessageType::Eos]) {
            return Err(match msg.view() {
                gst::MessageView::Error(e) => format!("pipeline error: {} ({:?})", e.error(), e.debug()),
                _ => "pipeline ended".into(),
            });
        }
        let pc = webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
        match pc {
            gst_webrtc::WebRTCPeerConnectionState::Connected if !connected => {
                connected = true;
                *state.lock().unwrap() = PublisherState::Connected;
                tracing::info!("test pattern publisher connected");
            }
            gst_webrtc::WebRTCPeerConnectionState::Failed | gst_webrtc::WebRTCPeerConnectionState::Closed => {
                return Err(format!("connection {pc:?}"));
            }
            _ => {}
        }
        if !connected && started.elapsed() > Duration::from_secs(20) {
            return Err("no media connection within 20 s".into());
        }
    }
    drop(guard);
    Ok(())
}

/// Sets the pipeline to `Null` however the session ends.
struct PipelineGuard(gst::Pipeline);

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}
