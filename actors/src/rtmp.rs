//! RTMP push of the program (to a MediaLive input, or any RTMP server), one output
//! per URL (primary and backup), each in a pipeline of its own fed from the program's
//! encoded streams. A receiver that drops fails only its own output, which is built
//! again with backoff and resumes at the next keyframe; the program and the other
//! output carry on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Where an RTMP output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtmpState {
    /// Connecting (or waiting for the first keyframe).
    Connecting,
    /// Media flows to the receiver.
    Live,
    /// Failed; trying again, with the last error.
    Retrying(String),
    /// Stopped.
    Stopped,
}

/// One encoded buffer of the program, with its caps.
pub(crate) struct Packet {
    pub video: bool,
    pub sample: gst::Sample,
}

/// A running RTMP output.
pub struct RtmpOutput {
    /// The receiver's URL.
    pub url: String,
    /// Its state.
    pub state: Arc<Mutex<RtmpState>>,
    pub(crate) tx: SyncSender<Packet>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtmpOutput {
    /// Starts pushing to `url`.
    pub fn start(url: &str) -> RtmpOutput {
        // About two seconds of program: a slow receiver drops packets, never the program.
        let (tx, rx) = sync_channel::<Packet>(200);
        let state = Arc::new(Mutex::new(RtmpState::Connecting));
        let stop = Arc::new(AtomicBool::new(false));
        let (u, st, s) = (url.to_string(), state.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("rtmp".into()).spawn(move || supervise(&u, rx, &st, &s)).ok();
        RtmpOutput { url: url.to_string(), state, tx, stop, thread }
    }

    /// Offers a packet; dropped if the output is behind.
    pub(crate) fn push(&self, p: Packet) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(p) {
            tracing::debug!(url = %self.url, "rtmp output behind; packet dropped");
        }
    }

    /// The current state.
    pub fn state(&self) -> RtmpState {
        self.state.lock().unwrap().clone()
    }
}

impl Drop for RtmpOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set(state: &Mutex<RtmpState>, url: &str, s: RtmpState) {
    let mut cur = state.lock().unwrap();
    if *cur != s {
        tracing::info!(%url, state = ?s, "rtmp output");
        *cur = s;
    }
}

fn supervise(url: &str, rx: Receiver<Packet>, state: &Mutex<RtmpState>, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::SeqCst) {
        set(state, url, RtmpState::Connecting);
        let started = Instant::now();
        let err = match session(url, &rx, state, stop) {
            Ok(()) => break,
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        tracing::warn!(%url, error = %err, retry_in = ?backoff, "rtmp output failed");
        set(state, url, RtmpState::Retrying(err));
        let until = Instant::now() + backoff;
        // Drain while waiting: stale packets are worthless after a reconnect.
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            let _ = rx.recv_timeout(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    set(state, url, RtmpState::Stopped);
}

fn session(url: &str, rx: &Receiver<Packet>, state: &Mutex<RtmpState>, stop: &AtomicBool) -> Result<(), String> {
    let desc = format!(
        "flvmux name=m streamable=true ! rtmp2sink location=\"{}\" async-connect=false \
         appsrc name=v is-live=true format=time do-timestamp=true ! queue ! m.video \
         appsrc name=a is-live=true format=time do-timestamp=true ! queue ! m.audio",
        url.replace('"', "")
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("cannot build the RTMP pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let guard = Null(pipeline.clone());
    let mut feed = Feed::new(&pipeline)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    while !stop.load(Ordering::SeqCst) {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
            return Err(match msg.view() {
                gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
                _ => "the RTMP output ended".into(),
            });
        }
        let Ok(p) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
        if feed.push(p).map_err(|e| format!("RTMP output: {e}"))? {
            set(state, url, RtmpState::Live);
        }
    }
    drop(guard);
    Ok(())
}

/// The encoded program fed into a pipeline of its own through two appsrcs named `v`
/// and `a` (stamped on arrival, `do-timestamp`): it starts at a key frame, and the
/// pipeline plays once both streams' caps are known.
pub(crate) struct Feed {
    pipeline: gst::Pipeline,
    pub(crate) video: gst_app::AppSrc,
    pub(crate) audio: gst_app::AppSrc,
    keyframe_seen: bool,
    playing: bool,
}

impl Feed {
    pub(crate) fn new(pipeline: &gst::Pipeline) -> Result<Feed, String> {
        let src = |n: &str| -> Result<gst_app::AppSrc, String> {
            pipeline.by_name(n).and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or_else(|| format!("no appsrc {n}"))
        };
        Ok(Feed { pipeline: pipeline.clone(), video: src("v")?, audio: src("a")?, keyframe_seen: false, playing: false })
    }

    /// Pushes one packet (dropped until the first key frame); answers whether the
    /// pipeline plays.
    pub(crate) fn push(&mut self, p: Packet) -> Result<bool, String> {
        let Some(mut buffer) = p.sample.buffer_owned() else { return Ok(self.playing) };
        {
            // Stamped again on arrival (`do-timestamp`): this pipeline has its own
            // clock base, and x264's DTS carry a large offset.
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::NONE);
            b.set_dts(gst::ClockTime::NONE);
        }
        if p.video && !self.keyframe_seen {
            // Receivers and files start at a keyframe.
            if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                return Ok(self.playing);
            }
            self.keyframe_seen = true;
        }
        if !self.keyframe_seen {
            return Ok(self.playing);
        }
        let target = if p.video { &self.video } else { &self.audio };
        if target.caps().is_none() {
            target.set_caps(p.sample.caps_owned().as_ref());
        }
        if !self.playing && self.video.caps().is_some() && self.audio.caps().is_some() {
            self.pipeline.set_state(gst::State::Playing).map_err(|e| format!("cannot start: {e}"))?;
            self.playing = true;
        }
        target.push_buffer(buffer).map_err(|_| "the pipeline stopped taking data".to_string())?;
        Ok(self.playing)
    }

    /// Whether the pipeline plays.
    pub(crate) fn playing(&self) -> bool {
        self.playing
    }
}

struct Null(gst::Pipeline);

impl Drop for Null {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}
