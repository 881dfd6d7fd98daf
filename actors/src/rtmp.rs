//! RTMP push of the program (to a MediaLive input, or any RTMP server), one output
//! per URL (primary and backup), each in a pipeline of its own fed from the program's
//! encoded streams. A receiver that drops fails only its own output, which is built
//! again with backoff and resumes at the next keyframe; the program and the other
//! output carry on.
//!
//! An RTMP URL's last path segment is the stream key, a secret (whoever has it can
//! push into the channel): an output is named by its place (`rtmp-primary`,
//! `rtmp-backup`) in metrics and logs, and its URL is only ever shown redacted.

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

/// The stable name of the RTMP output at `index` (0: primary, 1: backup), used in
/// metrics and logs instead of its URL.
pub fn output_name(index: usize) -> String {
    match index {
        0 => "rtmp-primary".into(),
        1 => "rtmp-backup".into(),
        n => format!("rtmp-{}", n + 1),
    }
}

/// An RTMP URL as it may be shown: scheme, host and application, with the stream
/// key (the last path segment), any query and any user info replaced by `…`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "…".into() };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or("");
    match path.rsplit_once('/') {
        Some((app, _key)) => format!("{scheme}://{host}/{app}/…"),
        None if path.is_empty() => format!("{scheme}://{host}"),
        None => format!("{scheme}://{host}/…"),
    }
}

/// `text` with `url`, and the secret parts of it, replaced by the redacted URL: for
/// error messages of elements that quote what they were given.
pub fn redact_in(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let key = rest.split(['?', '#']).next().unwrap_or("").rsplit('/').next().unwrap_or("");
    if key.len() >= 4 && rest.contains('/') {
        out = out.replace(key, "…");
    }
    if let Some(query) = url.split_once('?').map(|(_, q)| q).filter(|q| q.len() >= 4) {
        out = out.replace(query, "…");
    }
    out
}

/// A running RTMP output.
pub struct RtmpOutput {
    /// Its stable name (`rtmp-primary`, `rtmp-backup`).
    pub name: String,
    /// The receiver's URL; secret (it holds the stream key): never logged.
    url: String,
    /// Its state.
    pub state: Arc<Mutex<RtmpState>>,
    pub(crate) tx: SyncSender<Packet>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtmpOutput {
    /// Starts pushing to `url`, as the output `name`.
    pub fn start(name: &str, url: &str) -> RtmpOutput {
        // About two seconds of program: a slow receiver drops packets, never the program.
        let (tx, rx) = sync_channel::<Packet>(200);
        let state = Arc::new(Mutex::new(RtmpState::Connecting));
        let stop = Arc::new(AtomicBool::new(false));
        let target = Target { name: name.to_string(), url: url.to_string() };
        let (st, s) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("rtmp".into()).spawn(move || supervise(&target, rx, &st, &s)).ok();
        RtmpOutput { name: name.to_string(), url: url.to_string(), state, tx, stop, thread }
    }

    /// Whether this output pushes to `url`.
    pub fn is_for(&self, url: &str) -> bool {
        self.url == url
    }

    /// Offers a packet; dropped if the output is behind.
    pub(crate) fn push(&self, p: Packet) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(p) {
            tracing::debug!(output = %self.name, "rtmp output behind; packet dropped");
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

/// Where one output pushes: its name for people, its URL for rtmp2sink only.
struct Target {
    name: String,
    url: String,
}

fn set(state: &Mutex<RtmpState>, to: &Target, s: RtmpState) {
    let mut cur = state.lock().unwrap();
    if *cur != s {
        // Going live and stopping are news; the connect/retry cycle is logged once
        // per cause by `supervise`.
        if matches!(s, RtmpState::Live | RtmpState::Stopped) {
            tracing::info!(output = %to.name, url = %redact_url(&to.url), state = ?s, "rtmp output");
        } else {
            tracing::debug!(output = %to.name, state = ?s, "rtmp output");
        }
        *cur = s;
    }
}

fn supervise(to: &Target, rx: Receiver<Packet>, state: &Mutex<RtmpState>, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(500);
    // One line per failure cause, not per retry: a receiver down for an hour at a
    // 10 s backoff would otherwise write 360 warnings.
    let mut last_err = String::new();
    while !stop.load(Ordering::SeqCst) {
        set(state, to, RtmpState::Connecting);
        let started = Instant::now();
        let err = match session(to, &rx, state, stop) {
            Ok(()) => break,
            Err(e) => redact_in(&e, &to.url),
        };
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        // The cause, without GStreamer's detail (which names a new element each try).
        let cause = err.split(" (").next().unwrap_or(&err).to_string();
        if cause != last_err {
            tracing::warn!(output = %to.name, url = %redact_url(&to.url), error = %err, retry_in = ?backoff, "rtmp output failed");
        } else {
            tracing::debug!(output = %to.name, retry_in = ?backoff, "rtmp output failed again");
        }
        last_err = cause;
        set(state, to, RtmpState::Retrying(err));
        let until = Instant::now() + backoff;
        // Drain while waiting: stale packets are worthless after a reconnect.
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            let _ = rx.recv_timeout(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    set(state, to, RtmpState::Stopped);
}

fn session(to: &Target, rx: &Receiver<Packet>, state: &Mutex<RtmpState>, stop: &AtomicBool) -> Result<(), String> {
    let desc = format!(
        "flvmux name=m streamable=true ! rtmp2sink location=\"{}\" async-connect=false \
         appsrc name=v is-live=true format=time do-timestamp=true ! queue ! m.video \
         appsrc name=a is-live=true format=time do-timestamp=true ! queue ! m.audio",
        to.url.replace('"', "")
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
            set(state, to, RtmpState::Live);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_never_show() {
        let url = "rtmp://user:pw@ingest.example:1935/live/SeCrEtKeY123?auth=tok999";
        let shown = redact_url(url);
        assert_eq!(shown, "rtmp://ingest.example:1935/live/…");
        for secret in ["SeCrEtKeY123", "tok999", "pw"] {
            assert!(!shown.contains(secret));
        }
        let err = format!("Could not connect to {url}: refused; stream SeCrEtKeY123 unknown (auth=tok999)");
        let clean = redact_in(&err, url);
        assert!(!clean.contains("SeCrEtKeY123") && !clean.contains("tok999"), "{clean}");
        assert!(clean.contains("ingest.example"));
        assert_eq!(redact_url("rtmp://h/app"), "rtmp://h/…");
        assert_eq!(redact_url("nonsense"), "…");
        assert_eq!(output_name(0), "rtmp-primary");
        assert_eq!(output_name(1), "rtmp-backup");
    }
}
