//! The program: a GStreamer pipeline that receives the room over WebRTC (webrtcbin),
//! mixes it (`compositor` + `audiomixer`), encodes it (x264 + AAC) and writes HLS.
//!
//! It joins the room like any client: the caller carries its SDP over the signaling
//! connection ([`Program::offer`], [`Program::set_answer`]). The offer has
//! receive-only m-lines for the feed and a fixed number of commentators, so the SFU
//! binds tracks to them and no renegotiation is needed.
//!
//! The output never stops for lack of input: a live black background and live
//! silence are always mixed in, so segments keep coming while sources come and go.
//! Formats are fixed (I420 at the program size on every compositor pad) so nothing
//! is negotiated per frame.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_webrtc as gst_webrtc;

use crate::webrtcbin::WebrtcbinPeer;

mod cmaf;
mod layout;

use layout::{Binding, Layout, label_count};
pub use layout::LayoutKind;
use crate::rtmp::{Packet, RtmpOutput, RtmpState};
use gstreamer_app as gst_app;

/// How far behind live viewers are, traded against robustness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsPreset {
    /// 6 s segments, players held back four segments: about 30 s behind live,
    /// riding out long network trouble.
    Quality,
    /// 1 s segments, players held back three (the least HLS allows): about 4–5 s
    /// behind live.
    LowLatency,
    /// Low-latency HLS: CMAF (fMP4) segments of 2 s made of parts of a third of a
    /// second, served as they are made, players held back three parts: about 2 s
    /// behind live.
    UltraLow,
}

impl HlsPreset {
    /// Segment length in seconds.
    pub fn segment_seconds(self) -> u32 {
        match self {
            HlsPreset::Quality => 6,
            HlsPreset::LowLatency => 1,
            HlsPreset::UltraLow => 2,
        }
    }

    /// Whether segments are made of parts (low-latency HLS, fMP4).
    pub fn parts(self) -> bool {
        self == HlsPreset::UltraLow
    }
}

impl std::str::FromStr for HlsPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quality" => Ok(HlsPreset::Quality),
            "low-latency" => Ok(HlsPreset::LowLatency),
            "ultra-low" => Ok(HlsPreset::UltraLow),
            _ => Err(format!("unknown HLS preset {s:?}; use quality, low-latency or ultra-low")),
        }
    }
}

/// How the program is made.
#[derive(Debug, Clone)]
pub struct ProgramOptions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, bits/s.
    pub video_bitrate: u32,
    /// HLS segment length, seconds; the GOP is this long, so every segment starts
    /// with a keyframe.
    pub segment_seconds: u32,
    /// Low-latency HLS: fMP4 segments made of parts, live from memory (the
    /// `ultra-low` preset); else MPEG-TS segments.
    pub parts: bool,
    /// How far back a viewer can go (the playlist lists this much), seconds.
    pub dvr_window_secs: u32,
    /// Where the playlist and segments are written.
    pub hls_dir: PathBuf,
    /// Commentators the program can show (receive m-line pairs beyond the feed's).
    pub commentator_slots: usize,
    /// RTMP receivers to push to (primary, backup); none by default.
    pub rtmp_urls: Vec<String>,
    /// Where the program is recorded as MP4 files (none: not recorded).
    pub recording_dir: Option<PathBuf>,
    /// Length of one recorded file, seconds.
    pub recording_split_secs: u32,
    /// Publish the program back into the room (the monitor feed commentators and
    /// operators watch).
    pub monitor: bool,
    /// Local addresses ICE may use (none: every interface).
    pub local_addresses: Vec<String>,
}

impl Default for ProgramOptions {
    fn default() -> Self {
        ProgramOptions {
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate: 3_000_000,
            segment_seconds: HlsPreset::Quality.segment_seconds(),
            parts: false,
            dvr_window_secs: 2 * 3600,
            hls_dir: PathBuf::from("data/hls/demo"),
            commentator_slots: 4,
            rtmp_urls: Vec::new(),
            recording_dir: None,
            recording_split_secs: 600,
            monitor: true,
            local_addresses: Vec::new(),
        }
    }
}

impl ProgramOptions {
    /// Makes the HLS as `preset` says (segment length, parts).
    pub fn set_preset(&mut self, preset: HlsPreset) {
        self.segment_seconds = preset.segment_seconds();
        self.parts = preset.parts();
    }

    /// Whether the HLS is made as `preset` says.
    pub fn has_preset(&self, preset: HlsPreset) -> bool {
        self.segment_seconds == preset.segment_seconds() && self.parts == preset.parts()
    }
}

/// What the program has done so far.
#[derive(Debug, Default)]
pub struct ProgramStats {
    /// Video frames encoded.
    pub frames: AtomicU64,
    /// Encoded video bytes.
    pub bytes: AtomicU64,
    /// HLS segments written.
    pub segments: AtomicU64,
    /// Video inputs decoding now.
    pub video_inputs: AtomicU64,
}

/// A running program pipeline; stopped (set to `Null`) on drop. [`Program::finish`]
/// also closes the playlist.
pub struct Program {
    pipeline: gst::Pipeline,
    /// MPEG-TS segments cut by splitmuxsink (`quality`, `low-latency`).
    hls: Option<Mutex<HlsOutput>>,
    /// Low-latency HLS (`ultra-low`).
    cmaf: Option<Arc<Mutex<cmaf::Cmaf>>>,
    peer: WebrtcbinPeer,
    /// Counters.
    pub stats: Arc<ProgramStats>,
    rtmp: Outputs,
    layout: Arc<Mutex<Layout>>,
    air: Arc<OnAir>,
    /// Timed metadata waiting to go into the segments (ID3).
    metadata: Arc<Mutex<std::collections::VecDeque<String>>>,
    /// The recorder, when the program is recorded.
    recorder: Option<Arc<crate::recorder::Recorder>>,
}

/// The program's switches the operator sets, kept across compositor sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// The outputs carry the program.
    pub on_air: bool,
    /// Name labels are drawn.
    pub labels: bool,
    /// The program is recorded (only where a recording directory is set).
    pub recording: bool,
    /// The operator's slate over the program, if any.
    pub slate: Option<Slate>,
}

impl Default for Switches {
    fn default() -> Self {
        Switches { on_air: true, labels: true, recording: true, slate: None }
    }
}

/// A slate the operator puts on the program in place of the mix (the audio goes
/// on: commentators can talk over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slate {
    /// "Starting soon", before the surgery begins.
    Starting,
    /// "We'll be right back", during a pause.
    Brb,
}

impl Slate {
    /// Its name in the API and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Slate::Starting => "starting",
            Slate::Brb => "brb",
        }
    }

    /// `starting`, `brb`, or `off` (none).
    pub fn parse(s: &str) -> Result<Option<Slate>, String> {
        match s {
            "starting" => Ok(Some(Slate::Starting)),
            "brb" => Ok(Some(Slate::Brb)),
            "off" => Ok(None),
            other => Err(format!("slate {other:?}: use \"starting\", \"brb\" or null")),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Slate::Starting => "Starting soon",
            Slate::Brb => "We\u{2019}ll be right back",
        }
    }
}

/// An ID3v2.4 tag with one TXXX frame, description `casecast`, holding `text`
/// (UTF-8; empty for the keep-alive tags).
pub fn id3_tag(text: &str) -> Vec<u8> {
    fn syncsafe(n: usize) -> [u8; 4] {
        [((n >> 21) & 0x7f) as u8, ((n >> 14) & 0x7f) as u8, ((n >> 7) & 0x7f) as u8, (n & 0x7f) as u8]
    }
    let mut body = vec![3u8]; // UTF-8
    body.extend_from_slice(b"casecast\0");
    body.extend_from_slice(text.as_bytes());
    let mut frame = b"TXXX".to_vec();
    frame.extend_from_slice(&syncsafe(body.len()));
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&body);
    let mut tag = b"ID3\x04\x00\x00".to_vec();
    tag.extend_from_slice(&syncsafe(frame.len()));
    tag.extend_from_slice(&frame);
    tag
}

/// The RTMP outputs, which the distribution may change while live.
type Outputs = Arc<Mutex<Vec<Arc<RtmpOutput>>>>;

/// Whether the outputs carry the program.
#[derive(Default)]
struct OnAir {
    on: std::sync::atomic::AtomicBool,
    /// Back on air: the RTMP pushes wait for a key frame.
    await_key: std::sync::atomic::AtomicBool,
}

/// Why the program could not start or negotiate.
#[derive(Debug, thiserror::Error)]
#[error("program: {0}")]
pub struct ProgramError(String);

fn err(e: impl std::fmt::Display) -> ProgramError {
    ProgramError(e.to_string())
}

impl Program {
    /// Builds and starts the pipeline (output runs from now on, black and silent
    /// until sources arrive).
    pub fn start(o: &ProgramOptions) -> Result<Program, ProgramError> {
        gst::init().map_err(err)?;
        for d in std::iter::once(&o.hls_dir).chain(o.recording_dir.as_ref()) {
            std::fs::create_dir_all(d).map_err(|e| ProgramError(format!("cannot create {}: {e}", d.display())))?;
        }
        let dir = o.hls_dir.display().to_string().replace('"', "");
        let gop = o.fps * o.segment_seconds;
        // The level is pinned (the monitor's SDP must name it before the first frame).
        let level = h264_level(o.width, o.height, o.fps);
        let playlist_length = (o.dvr_window_secs / o.segment_seconds.max(1)).max(3);
        let session = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let playlist_path = o.hls_dir.join("index.m3u8");
        let playlist = crate::hls::Playlist::load(&playlist_path, o.segment_seconds, playlist_length as usize);
        // A new event's playlist replaces the last one's: its segments go.
        playlist.remove_unlisted(&o.hls_dir);
        // MPEG-TS segments: the streams go to splitmuxsink, with a metadata stream;
        // low-latency HLS is cut from the appsinks' streams instead.
        let (to_ts_video, to_ts_audio, ts_segmenter) = if o.parts {
            ("", "", String::new())
        } else {
            (
                "! queue ! hls.video",
                "! queue ! hls.audio_0",
                format!(
                    "appsrc name=meta is-live=true format=time do-timestamp=true caps=meta/x-klv,parsed=(boolean)true ! queue ! hls.subtitle_0 \
                     splitmuxsink name=hls muxer-factory=mpegtsmux location=\"{dir}/seg-{session}-%05d.ts\" \
                       max-size-time={seg_ns} send-keyframe-requests=true ",
                    // splitmuxsink cuts the segments (named per pipeline, so a restarted one
                    // writes beside them) with one key frame each; the playlist viewers get
                    // is casecast's own (crate::hls), which outlives the pipeline.
                    seg_ns = u64::from(o.segment_seconds) * 1_000_000_000,
                ),
            )
        };
        let desc = format!(
            "webrtcbin name=webrtc bundle-policy=max-compat \
             compositor name=mix background=black max-threads=1 ! video/x-raw,{RAW},width={w},height={h},framerate={fps}/1 \
               {labels} ! queue max-size-buffers=3 ! x264enc name=venc tune=zerolatency speed-preset=veryfast bitrate={kbps} \
                 key-int-max={gop} bframes=0 trellis=false option-string=scenecut=0 ! video/x-h264,profile=main,level=(string){level} ! h264parse ! tee name=vtee {to_ts_video} \
             audiomixer name=amix output-buffer-duration=40000000 ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! voaacenc bitrate=128000 \
               ! aacparse ! tee name=atee {to_ts_audio} \
             {encoded_branches} {monitor_branch} {ts_segmenter} \
             videotestsrc is-live=true pattern=black ! video/x-raw,{RAW},width=16,height=16,framerate=1/1 ! mix. \
             audiotestsrc is-live=true wave=silence ! audio/x-raw,rate=48000,channels=2 ! amix.",
            w = o.width,
            h = o.height,
            fps = o.fps,
            kbps = o.video_bitrate / 1000,
            // One name label per commentator the program can show, drawn at the
            // program's resolution after mixing (crisp at any tile size; a label
            // with no text is passed through untouched).
            labels = (0..label_count(o))
                .map(|i| format!(
                    "! textoverlay name=label{i} silent=true auto-resize=false halignment=left valignment=bottom \
                       xpad=0 ypad=0 shaded-background=true font-desc=\"Sans Bold {pt}\" "
                , pt = (o.height / 64).max(9)))
                .chain(std::iter::once(format!(
                    // The slate's words, over the feed's last frame when it drops.
                    "! textoverlay name=slate silent=true auto-resize=false halignment=center valignment=top \
                       ypad={pad} shaded-background=true shading-value=200 font-desc=\"Sans Bold {pt}\" ",
                    pt = (o.height / 32).max(12),
                    pad = o.height / 10
                )))
                .collect::<String>(),
            // The monitor: the encoded program, as it is, back into the room. A
            // subscriber's keyframe request reaches the encoder through the tee.
            monitor_branch = if o.monitor {
                // Announced in the SDP (a=ssrc), so the SFU knows the stream without
                // a mid header extension.
                let ssrc = rand::random::<u32>() | 1;
                let level_idc = level.1;
                // This closes a loop in the graph (webrtcbin → mix → encoder →
                // webrtcbin), which GStreamer warns about on state changes; the data
                // flow itself has none. A subscriber's keyframe request (PLI) comes
                // up this branch as a force-key-unit event and reaches the encoder.
                format!("vtee. ! queue leaky=downstream max-size-buffers=60 ! h264parse config-interval=-1 ! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ssrc={ssrc} \
                   ! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,\
                     profile-level-id=(string)4d40{level_idc:02x},ssrc=(uint){ssrc} ! webrtc. ")
            } else {
                String::new()
            },
            level = level.0,
            // The encoded streams for the RTMP pushes (configured, or set later by the
            // distribution) and the recorder, each of which runs a pipeline of its own.
            // FLV and MP4 want AVC and raw AAC; HLS (MPEG-TS) takes the streams as they are.
            encoded_branches = "vtee. ! queue leaky=downstream max-size-buffers=120 ! h264parse \
                   ! video/x-h264,stream-format=avc,alignment=au ! appsink name=vsink sync=false drop=true max-buffers=120 \
                 atee. ! queue leaky=downstream max-size-buffers=200 ! aacparse \
                   ! audio/mpeg,stream-format=raw ! appsink name=asink sync=false drop=true max-buffers=200 ",
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| ProgramError(format!("cannot build the program pipeline: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| err("not a pipeline"))?;
        let webrtc = pipeline.by_name("webrtc").ok_or_else(|| err("no webrtcbin"))?;
        let peer = WebrtcbinPeer::prepare(&pipeline, webrtc.clone(), &o.local_addresses).map_err(err)?;
        let stats = Arc::new(ProgramStats::default());
        if let Some(pad) = pipeline.by_name("venc").and_then(|e| e.static_pad("src")) {
            let s = stats.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                s.frames.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = info.buffer() {
                    s.bytes.fetch_add(b.size() as u64, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        }
        let mut layout = Layout::new(o.width, o.height);
        layout.labels = (0..label_count(o)).filter_map(|i| pipeline.by_name(&format!("label{i}"))).collect();
        layout.slate = pipeline.by_name("slate");
        layout.apply();
        let layout = Arc::new(Mutex::new(layout));
        let (weak, s, l) = (pipeline.downgrade(), stats.clone(), layout.clone());
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = weak.upgrade() else { return };
            if let Err(e) = add_input(&pipeline, pad, &s, &l) {
                tracing::warn!(error = %e, "program: input not added");
            }
        });
        // Receive-only m-lines: the feed first, then the commentator slots.
        for _ in 0..=o.commentator_slots {
            for caps in [
                "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
                "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            ] {
                let caps = gst::Caps::from_str(caps).map_err(err)?;
                let _: gst_webrtc::WebRTCRTPTransceiver =
                    webrtc.emit_by_name("add-transceiver", &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps]);
            }
        }
        // The monitor's m-line (requested by the launch line) only sends.
        let mut i = 0;
        while let Some(t) = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&i]) {
            if t.property::<gst_webrtc::WebRTCRTPTransceiverDirection>("direction") != gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly {
                t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
            }
            i += 1;
        }
        let rtmp: Outputs = Arc::new(Mutex::new(start_outputs(&o.rtmp_urls)));
        let air = Arc::new(OnAir::default());
        air.on.store(true, Ordering::Relaxed);
        let recorder = o.recording_dir.as_ref().map(|d| Arc::new(crate::recorder::Recorder::new(d.clone(), o.recording_split_secs)));
        let metadata: Arc<Mutex<std::collections::VecDeque<String>>> = Default::default();
        // Parts of a third of a second: a whole number of frames.
        let cmaf = o.parts.then(|| {
            let part_frames = (o.fps as f64 / 3.0).round().max(1.0) as u32;
            Arc::new(Mutex::new(cmaf::Cmaf::new(&o.hls_dir, &session, playlist.clone(), o.fps, part_frames, metadata.clone(), stats.clone())))
        });
        for (name, video) in [("vsink", true), ("asink", false)] {
            let Some(sink) = pipeline.by_name(name).and_then(|e| e.downcast::<gst_app::AppSink>().ok()) else { continue };
            let outputs = rtmp.clone();
            let (air, recorder, cmaf) = (air.clone(), recorder.clone(), cmaf.clone());
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        // The recording goes on off air.
                        if let Some(r) = &recorder {
                            r.push(Packet { video, sample: sample.clone() });
                        }
                        if let Some(c) = &cmaf {
                            c.lock().unwrap_or_else(|e| e.into_inner()).push(video, &sample, air.on.load(Ordering::Relaxed));
                        }
                        // Off air, the pushes get nothing; back on air, they resume
                        // at a key frame.
                        if !air.on.load(Ordering::Relaxed) {
                            return Ok(gst::FlowSuccess::Ok);
                        }
                        if air.await_key.load(Ordering::Relaxed) {
                            let key = video && sample.buffer().is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
                            if !key {
                                return Ok(gst::FlowSuccess::Ok);
                            }
                            air.await_key.store(false, Ordering::Relaxed);
                        }
                        for out in outputs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            out.push(Packet { video, sample: sample.clone() });
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        // Timed metadata rides in the segments as ID3 (a metadata stream, PES stream
        // type 0x15, which players read as ID3). The stream is never left idle: a
        // sparse one would hold the segmenter back, so an empty tag goes every 500 ms
        // and the operators' messages go with the next one. (Low-latency HLS carries
        // them as `emsg` boxes instead, in the parts.)
        if let Some(src) = pipeline.by_name("meta").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()) {
            let (queue, weak) = (metadata.clone(), pipeline.downgrade());
            std::thread::Builder::new()
                .name("program-id3".into())
                .spawn(move || {
                    while weak.upgrade().is_some() {
                        let text = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let tag = id3_tag(text.as_deref().unwrap_or(""));
                        if src.push_buffer(gst::Buffer::from_mut_slice(tag)).is_err() {
                            break;
                        }
                        if text.is_none() {
                            std::thread::sleep(std::time::Duration::from_millis(500));
                        }
                    }
                })
                .map_err(|e| ProgramError(format!("cannot start the metadata thread: {e}")))?;
        }
        pipeline.set_state(gst::State::Playing).map_err(|e| ProgramError(format!("cannot start the program: {e}")))?;
        let hls = (!o.parts).then(|| Mutex::new(HlsOutput { playlist, on_air: true, path: playlist_path, opened: None, session, next: 0 }));
        let program = Program { pipeline, hls, cmaf, peer, stats, rtmp, layout, air, metadata, recorder };
        program.set_recording(true);
        Ok(program)
    }

    /// The SDP offer to send as the participant's first offer.
    pub fn offer(&self) -> Result<String, ProgramError> {
        self.peer.offer().map_err(err)
    }

    /// Applies the server's answer.
    pub fn set_answer(&self, sdp: &str) -> Result<(), ProgramError> {
        self.peer.set_answer(sdp).map_err(err)
    }

    /// Answers a server offer (tracks beyond the offered slots).
    pub fn answer(&self, sdp: &str) -> Result<String, ProgramError> {
        self.peer.answer(sdp).map_err(err)
    }

    /// Switches the layout while live.
    pub fn set_layout(&self, kind: LayoutKind) {
        let mut l = self.layout.lock().unwrap();
        l.kind = kind;
        l.apply();
        tracing::info!(layout = ?kind, "program layout");
    }

    /// The server bound a track of `participant` (called `name`) to one of the
    /// program's m-lines; `video` says whether it is a picture (the layout places
    /// pictures only).
    pub fn bind(&self, mid: &str, video: bool, feed: bool, participant: &str, name: &str) {
        let mut l = self.layout.lock().unwrap();
        l.names.insert(participant.to_string(), name.to_string());
        if video {
            l.bind(Binding { mid: mid.to_string(), feed, participant: participant.to_string() });
        }
        l.apply();
    }

    /// A participant left: their pictures leave the layout at once (a feed keeps its
    /// last frame until another feed comes, so the program is never empty).
    pub fn participant_left(&self, participant: &str) {
        let mut l = self.layout.lock().unwrap();
        l.away.insert(participant.to_string());
        l.apply();
    }

    /// A participant turned their camera off (or back on): their tile leaves the
    /// layout meanwhile instead of freezing.
    pub fn camera_muted(&self, participant: &str, muted: bool) {
        let mut l = self.layout.lock().unwrap();
        if muted {
            l.camera_off.insert(participant.to_string());
        } else {
            l.camera_off.remove(participant);
        }
        l.apply();
    }

    /// Puts the program on air (HLS lists new segments, the RTMP pushes carry it)
    /// or off air (the outputs stop; the mix, the monitor and the recording go on).
    /// Back on air, the playlist marks a discontinuity and the pushes resume at a
    /// key frame.
    pub fn set_on_air(&self, on: bool) {
        if self.air.on.swap(on, Ordering::Relaxed) == on {
            return;
        }
        self.air.await_key.store(on, Ordering::Relaxed);
        if let Some(hls) = &self.hls {
            hls.lock().unwrap_or_else(|e| e.into_inner()).on_air = on;
        }
        tracing::info!(on_air = on, "program on air changed");
    }

    /// Sends timed metadata (a short JSON text) to viewers: it goes into the next
    /// segment as an ID3 tag, at the program's current time.
    pub fn send_metadata(&self, text: &str) {
        self.metadata.lock().unwrap_or_else(|e| e.into_inner()).push_back(text.to_string());
    }

    /// Whether the program is on air.
    pub fn on_air(&self) -> bool {
        self.air.on.load(Ordering::Relaxed)
    }

    /// Shows or hides the commentators' name labels.
    pub fn set_labels(&self, on: bool) {
        let mut l = self.layout.lock().unwrap();
        if l.show_labels != on {
            l.show_labels = on;
            l.apply();
            tracing::info!(labels = on, "program labels changed");
        }
    }

    /// Starts or stops recording (a stopped recording's last file is finished
    /// first). False when the program has no recording directory.
    pub fn set_recording(&self, on: bool) -> bool {
        let Some(r) = &self.recorder else { return false };
        if on && !r.is_on() {
            r.start();
            // Start at a key frame now rather than at the next segment's.
            if let Some(pad) = self.pipeline.by_name("vsink").and_then(|e| e.static_pad("sink")) {
                let s = gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build();
                // Pushed from the appsink's pad upstream, through the tee to x264.
                pad.push_event(gst::event::CustomUpstream::new(s));
            }
        } else if !on {
            r.stop();
        }
        true
    }

    /// Puts the operator's slate on the program in place of the mix, or takes it
    /// off (`None`).
    pub fn set_slate(&self, slate: Option<Slate>) {
        let mut l = self.layout.lock().unwrap();
        if l.operator_slate != slate {
            l.operator_slate = slate;
            l.apply();
            tracing::info!(slate = slate.map(Slate::as_str), "program slate changed");
        }
    }

    /// The switches as they are now.
    pub fn switches(&self) -> Switches {
        let layout = self.layout.lock().unwrap();
        Switches {
            on_air: self.on_air(),
            labels: layout.show_labels,
            recording: self.recorder.as_ref().is_some_and(|r| r.is_on()),
            slate: layout.operator_slate,
        }
    }

    /// Sets every switch (a new session takes the last one's).
    pub fn apply(&self, s: Switches) {
        self.set_on_air(s.on_air);
        self.set_labels(s.labels);
        self.set_recording(s.recording);
        self.set_slate(s.slate);
    }

    /// The recording's state: `None` without a recording directory, else whether it
    /// is writing, and its last error.
    pub fn recording_state(&self) -> Option<(bool, Option<String>)> {
        self.recorder.as_ref().map(|r| (r.is_writing(), r.error()))
    }

    /// Makes a participant the main (full-frame) source, or the feed with `None`.
    pub fn set_main(&self, participant: Option<String>) {
        let mut l = self.layout.lock().unwrap();
        l.main = participant;
        l.apply();
    }

    /// Each RTMP output's name (`rtmp-primary`, `rtmp-backup`; never its URL, which
    /// holds the stream key) and state.
    pub fn rtmp_states(&self) -> Vec<(String, RtmpState)> {
        self.rtmp.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|o| (o.name.clone(), o.state())).collect()
    }

    /// Pushes to these RTMP URLs from now on, instead of the ones before (each new
    /// one starts at a key frame; the same list changes nothing).
    pub fn set_rtmp_urls(&self, urls: &[String]) {
        let old = {
            let mut outputs = self.rtmp.lock().unwrap_or_else(|e| e.into_inner());
            if outputs.len() == urls.len() && outputs.iter().zip(urls).all(|(o, u)| o.is_for(u)) {
                return;
            }
            std::mem::replace(&mut *outputs, start_outputs(urls))
        };
        let shown: Vec<String> = urls.iter().map(|u| crate::rtmp::redact_url(u)).collect();
        tracing::info!(urls = ?shown, "program: RTMP outputs changed");
        // The old outputs stop outside the lock the encoder's callback takes.
        drop(old);
    }

    /// Ends the program for good: stops the pipeline and marks the playlist complete
    /// (`#EXT-X-ENDLIST`), so it stays playable as VOD.
    pub fn finish(self) -> Result<(), ProgramError> {
        let _ = self.error();
        if let Some(r) = &self.recorder {
            r.stop();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        let closed = match (&self.hls, &self.cmaf) {
            (Some(hls), _) => {
                let mut hls = hls.lock().unwrap_or_else(|e| e.into_inner());
                hls.playlist.ended = true;
                hls.playlist.write(&hls.path)
            }
            (None, Some(c)) => c.lock().unwrap_or_else(|e| e.into_inner()).finish(),
            (None, None) => Ok(()),
        };
        closed.map_err(|e| ProgramError(format!("cannot close the playlist: {e}")))
    }

    /// Stops the program for now, its playlist left live (a server restarting
    /// mid-event: the next program continues it): the recording's file is finished,
    /// the playlist is not ended.
    pub fn pause(self) {
        let _ = self.error();
        if let Some(r) = &self.recorder {
            r.stop();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }

    /// Handles pending bus messages (the playlist follows finished segments);
    /// returns the first pipeline error, if any, without waiting.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(m) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Element]) {
            match m.view() {
                gst::MessageView::Error(e) => return Some(format!("{} ({:?})", e.error(), e.debug())),
                // The HLS splitmuxsink's fragments are the segments (the recording
                // has a splitmuxsink of its own).
                gst::MessageView::Element(e) if m.src().is_some_and(|s| s.name() == "hls") => {
                    let Some(s) = e.structure() else { continue };
                    let Ok(at) = s.get::<u64>("running-time") else { continue };
                    let Some(hls) = &self.hls else { continue };
                    let mut hls = hls.lock().unwrap_or_else(|e| e.into_inner());
                    match s.name().as_str() {
                        "splitmuxsink-fragment-opened" => hls.opened = Some(at),
                        "splitmuxsink-fragment-closed" => {
                            let Some(start) = hls.opened.take() else { continue };
                            let duration = at.saturating_sub(start) as f64 / 1e9;
                            match hls.segment_done(duration) {
                                Ok(()) => {
                                    self.stats.segments.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => tracing::warn!(error = %e, "program: playlist not written"),
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The HLS output: casecast's playlist over splitmuxsink's segments.
struct HlsOutput {
    playlist: crate::hls::Playlist,
    /// Off air, finished segments are not listed (and their files go).
    on_air: bool,
    path: PathBuf,
    /// Running time at which the segment being written began.
    opened: Option<u64>,
    /// This pipeline's segment names: `seg-{session}-{n:05}.ts`, numbered from 0
    /// as splitmuxsink writes them.
    session: String,
    next: u32,
}

impl HlsOutput {
    /// A segment is finished: list it, drop what left the DVR window.
    fn segment_done(&mut self, duration: f64) -> std::io::Result<()> {
        // splitmuxsink numbers its segments from 0, one per fragment.
        let name = format!("seg-{}-{:05}.ts", self.session, self.next);
        self.next += 1;
        if !self.on_air {
            let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
            let _ = std::fs::remove_file(dir.join(&name));
            self.playlist.mark_discontinuity();
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        // The timed metadata stream, marked as ID3 before anyone reads the segment.
        if let Err(e) = crate::hls::mark_id3_stream(&dir.join(&name)) {
            tracing::warn!(error = %e, segment = %name, "program: metadata stream not marked");
        }
        let gone = self.playlist.push(name, duration);
        self.playlist.write(&self.path)?;
        for s in gone {
            // Players that read the last playlist may still fetch it for a moment,
            // but the window is long: the file goes now.
            let _ = std::fs::remove_file(dir.join(&s.uri));
        }
        Ok(())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The one raw format of every compositor pad and of the program: HD video as
/// decoders give it (VP8 and untagged H.264 are taken as BT.709 at HD sizes), so a
/// full-frame HD feed is mixed without any conversion. Any other source (a small
/// commentator camera, taken as BT.601) is converted once in its input branch, at
/// its own size and rate, never per output frame in the compositor. Pinning it
/// also keeps the compositor from renegotiating the program as sources come and go.
const RAW: &str = "format=I420,colorimetry=bt709,chroma-site=mpeg2";

/// The lowest H.264 level (caps name, `level_idc`) that holds this size and rate,
/// as x264 would pick it, from the level limits (ITU-T H.264 Table A-1).
fn h264_level(width: u32, height: u32, fps: u32) -> (&'static str, u8) {
    let frame = width.div_ceil(16) * height.div_ceil(16);
    let rate = frame * fps;
    [("3.1", 31, 3600, 108_000), ("3.2", 32, 5120, 216_000), ("4", 40, 8192, 245_760), ("4.2", 42, 8704, 522_240), ("5.1", 51, 36_864, 983_040)]
        .into_iter()
        .find(|&(_, _, max_frame, max_rate)| frame <= max_frame && rate <= max_rate)
        .map_or(("5.2", 52), |(name, idc, _, _)| (name, idc))
}

fn add_input(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    stats: &Arc<ProgramStats>,
    layout: &Arc<Mutex<Layout>>,
) -> Result<(), String> {
    // Which m-line this is, to know whether it carries the feed.
    let mid = pad
        .property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
        .and_then(|t| t.property::<Option<String>>("mid"));
    let dec = gst::ElementFactory::make("decodebin").build().map_err(|e| e.to_string())?;
    pipeline.add(&dec).map_err(|e| e.to_string())?;
    dec.sync_state_with_parent().map_err(|e| e.to_string())?;
    pad.link(&dec.static_pad("sink").ok_or("decodebin has no sink")?).map_err(|e| e.to_string())?;
    let weak = pipeline.downgrade();
    let (stats, layout) = (stats.clone(), layout.clone());
    dec.connect_pad_added(move |_, dpad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let caps = dpad.current_caps().map(|c| c.to_string()).unwrap_or_default();
        tracing::debug!(?mid, %caps, "program input decoded");
        let video = caps.starts_with("video");
        let r = if video {
            link_video(&pipeline, dpad).map(|sink| {
                let mut l = layout.lock().unwrap();
                let (feed, who) = match l.take_binding(mid.as_deref()) {
                    Some(b) => (b.feed, Some(b.participant)),
                    None => (false, None),
                };
                l.inputs.push((Some(sink), feed, who));
                l.apply();
                stats.video_inputs.fetch_add(1, Ordering::Relaxed);
            })
        } else {
            link_audio(&pipeline, dpad)
        };
        if let Err(e) = r {
            // An input that cannot be mixed must not stop the program (an unlinked
            // pad is a streaming error): drain it instead.
            tracing::warn!(error = %e, "program: cannot link a decoded input; dropping it");
            if let Ok(sink) = gst::ElementFactory::make("fakesink").property("sync", false).build()
                && pipeline.add(&sink).is_ok()
            {
                let _ = sink.sync_state_with_parent();
                if let Some(p) = sink.static_pad("sink") {
                    let _ = dpad.link(&p);
                }
            }
        }
    });
    Ok(())
}

/// Links a decoded video input to a new compositor pad, placed by [`Layout`], which
/// also sets the size its branch scales it to (the `tile` capsfilter): each source
/// frame is scaled and converted once, at its own rate, in one pass. The compositor
/// redoes a pad's conversion for every output frame (GStreamer 1.22 keeps nothing
/// between them), so a pad that arrives at its tile's size and the program's format
/// is blended as it is; and a 5 fps commentator is not duplicated to 30 fps either,
/// since the compositor draws a pad's last frame until the next one comes.
fn link_video(pipeline: &gst::Pipeline, src: &gst::Pad) -> Result<gst::Pad, String> {
    let bin = gst::parse::bin_from_description(
        &format!(
            "queue max-size-buffers=2 leaky=downstream ! videoconvertscale add-borders=false \
             ! capsfilter name=tile caps=\"video/x-raw,{RAW},pixel-aspect-ratio=1/1\""
        ),
        true,
    )
    .map_err(|e| e.to_string())?;
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    let mix = pipeline.by_name("mix").ok_or("no compositor")?;
    let sink = mix.request_pad_simple("sink_%u").ok_or("no compositor pad")?;
    sink.set_property("alpha", 0.0f64);
    bin.static_pad("src").ok_or("no src")?.link(&sink).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    src.link(&bin.static_pad("sink").ok_or("no sink")?).map_err(|e| e.to_string())?;
    Ok(sink)
}

fn link_audio(pipeline: &gst::Pipeline, src: &gst::Pad) -> Result<(), String> {
    let bin = gst::parse::bin_from_description(
        "audioconvert ! audioresample ! capsfilter caps=\"audio/x-raw,rate=48000,channels=2\"",
        true,
    )
    .map_err(|e| e.to_string())?;
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    let mix = pipeline.by_name("amix").ok_or("no audiomixer")?;
    let sink = mix.request_pad_simple("sink_%u").ok_or("no audiomixer pad")?;
    bin.static_pad("src").ok_or("no src")?.link(&sink).map_err(|e| e.to_string())?;
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    src.link(&bin.static_pad("sink").ok_or("no sink")?).map_err(|e| e.to_string())?;
    Ok(())
}

/// One output per URL, named by its place (primary, backup).
fn start_outputs(urls: &[String]) -> Vec<Arc<RtmpOutput>> {
    urls.iter().enumerate().map(|(i, u)| Arc::new(RtmpOutput::start(&crate::rtmp::output_name(i), u))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        assert_eq!("quality".parse::<HlsPreset>().unwrap().segment_seconds(), 6);
        assert_eq!("low-latency".parse::<HlsPreset>().unwrap().segment_seconds(), 1);
        assert!("fast".parse::<HlsPreset>().is_err());
    }

    #[test]
    fn h264_levels_match_what_x264_picks() {
        assert_eq!(h264_level(1280, 720, 30), ("3.1", 31));
        assert_eq!(h264_level(1280, 720, 60), ("3.2", 32));
        assert_eq!(h264_level(1920, 1080, 30), ("4", 40));
        assert_eq!(h264_level(1920, 1080, 60), ("4.2", 42));
        assert_eq!(h264_level(3840, 2160, 30), ("5.1", 51));
    }
}
