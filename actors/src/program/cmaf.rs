//! The program's low-latency HLS (the `ultra-low` preset): the encoded program, as
//! the appsinks give it (H.264 access units, AAC frames), cut into CMAF parts and
//! segments ([`crate::fmp4`]) and put live ([`crate::llhls`]).
//!
//! A part is about a third of a second of video (never longer than the part target;
//! a dropped frame ends one early) with the audio and timed metadata (`emsg` ID3)
//! of its time; a segment is the parts from one key frame to the next (2 s, the
//! GOP). Each video frame waits for the next to know its duration, so a part is out
//! one frame after its last.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use gstreamer as gst;

use super::ProgramStats;
use crate::fmp4::{self, AudioTrack, Sample, VideoTrack};
use crate::llhls::{LiveHls, Part};

/// Audio frames held at most while no video comes (about 10 s of AAC).
const MOST_AUDIO: usize = 500;

/// A video frame waiting for the next one (its duration).
struct Frame {
    dts: u64,
    key: bool,
    data: Vec<u8>,
}

/// The segmenter.
pub(super) struct Cmaf {
    live: Arc<LiveHls>,
    dir: PathBuf,
    session: String,
    /// Nominal part length in video ticks.
    part_ticks: u64,
    /// Half a frame, in video ticks.
    half_frame: u64,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// The init segment is written and listed.
    init_done: bool,
    /// Dropping video until a key frame (start, back on air).
    await_key: bool,
    on_air: bool,
    pending: Option<Frame>,
    part_video: Vec<Sample>,
    part_ticks_so_far: u64,
    /// Audio frames not yet in a part: (presentation time in ns, sample).
    audio_queue: VecDeque<(u64, Sample)>,
    /// The parts of the segment being made.
    segment: Vec<bytes::Bytes>,
    segment_ticks: u64,
    /// Fragment sequence number.
    sequence: u32,
    /// This pipeline's next segment number.
    next: u32,
    metadata: Arc<Mutex<VecDeque<String>>>,
    event_id: u32,
    stats: Arc<ProgramStats>,
}

impl Cmaf {
    /// A segmenter writing to `dir` (its playlist continued if it is live), with
    /// parts of `part_frames` frames at `fps`.
    pub(super) fn new(
        dir: &Path,
        session: &str,
        playlist: crate::hls::Playlist,
        fps: u32,
        part_frames: u32,
        metadata: Arc<Mutex<VecDeque<String>>>,
        stats: Arc<ProgramStats>,
    ) -> Cmaf {
        let fps = u64::from(fps.max(1));
        let part_ticks = (u64::from(part_frames.max(1)) * u64::from(fmp4::VIDEO_TIMESCALE)).div_ceil(fps);
        // A continued playlist (`Playlist::load`) marks its next segment as following a gap.
        let live = LiveHls::new(playlist, part_ticks as f64 / f64::from(fmp4::VIDEO_TIMESCALE));
        crate::llhls::register(dir, &live);
        Cmaf {
            live,
            dir: dir.to_path_buf(),
            session: session.to_string(),
            part_ticks,
            half_frame: u64::from(fmp4::VIDEO_TIMESCALE) / fps / 2,
            video: None,
            audio: None,
            init_done: false,
            await_key: true,
            on_air: true,
            pending: None,
            part_video: Vec::new(),
            part_ticks_so_far: 0,
            audio_queue: VecDeque::new(),
            segment: Vec::new(),
            segment_ticks: 0,
            sequence: 1,
            next: 0,
            metadata,
            event_id: 0,
            stats,
        }
    }

    /// Takes a sample from the program's appsinks (`video`: the H.264 one).
    pub(super) fn push(&mut self, video: bool, sample: &gst::Sample, on_air: bool) {
        if on_air != self.on_air {
            self.on_air = on_air;
            if !on_air {
                // What was made before going off air stays listed; what comes back
                // follows a gap, from a key frame.
                self.flush();
                self.live.mark_discontinuity();
                self.await_key = true;
                self.pending = None;
                self.audio_queue.clear();
            }
        }
        if !on_air {
            return;
        }
        let Some(buffer) = sample.buffer() else { return };
        // Running time: the video encoder shifts its timestamps by 1000 hours (for
        // negative decode times) in a segment of its own; audio's are not shifted.
        let Some(ns) = running_time(sample, buffer) else { return };
        let Ok(map) = buffer.map_readable() else { return };
        if video {
            if self.video.is_none() {
                self.video = sample.caps().and_then(video_track);
            }
            let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            self.video_frame(ticks(ns, fmp4::VIDEO_TIMESCALE), key, map.as_slice().to_vec());
        } else {
            if self.audio.is_none() {
                self.audio = sample.caps().and_then(audio_track);
            }
            let Some(rate) = self.audio.as_ref().map(|a| a.rate) else { return };
            let duration = buffer.duration().map_or(1024, |d| ticks(d.nseconds(), rate) as u32);
            let s = Sample { dts: ticks(ns, rate), duration, cts_offset: 0, key: true, data: map.as_slice().to_vec() };
            self.audio_queue.push_back((ns, s));
            while self.audio_queue.len() > MOST_AUDIO {
                self.audio_queue.pop_front();
            }
        }
    }

    fn video_frame(&mut self, dts: u64, key: bool, data: Vec<u8>) {
        if self.await_key {
            if !key || self.video.is_none() || self.audio.is_none() {
                return;
            }
            self.await_key = false;
            if !self.init_done {
                self.write_init();
            }
            // Audio from before the picture starts is not played.
            let start_ns = video_ns(dts);
            self.audio_queue.retain(|(ns, _)| *ns + 30_000_000 >= start_ns);
        }
        if let Some(prev) = self.pending.take() {
            let duration = dts.saturating_sub(prev.dts).clamp(1, u64::from(u32::MAX));
            if !self.part_video.is_empty() && self.part_ticks_so_far + duration > self.part_ticks {
                self.emit_part(prev.dts);
            }
            self.part_video.push(Sample { dts: prev.dts, duration: duration as u32, cts_offset: 0, key: prev.key, data: prev.data });
            self.part_ticks_so_far += duration;
            if self.part_ticks_so_far + self.half_frame >= self.part_ticks {
                self.emit_part(dts);
            }
        }
        if key {
            // A key frame starts a segment.
            self.emit_part(dts);
            self.finish_segment();
        }
        self.pending = Some(Frame { dts, key, data });
    }

    /// Writes the init segment and lists it for the segments to come.
    fn write_init(&mut self) {
        let (Some(v), Some(a)) = (&self.video, &self.audio) else { return };
        let name = format!("init-{}.mp4", self.session);
        match write_whole(&self.dir.join(&name), &fmp4::init_segment(v, a)) {
            Ok(()) => {
                self.live.set_map(Some(name));
                self.init_done = true;
            }
            Err(e) => tracing::warn!(error = %e, "program: the init segment was not written"),
        }
    }

    /// Makes the part so far (video up to `end`, in video ticks, and the audio before
    /// it) and puts it live.
    fn emit_part(&mut self, end: u64) {
        if self.part_video.is_empty() {
            return;
        }
        let video = std::mem::take(&mut self.part_video);
        let end_ns = video_ns(end);
        let mut audio = Vec::new();
        while self.audio_queue.front().is_some_and(|(ns, _)| *ns < end_ns) {
            audio.push(self.audio_queue.pop_front().expect("checked").1);
        }
        let texts: Vec<String> = self.metadata.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        let events: Vec<fmp4::Event> = texts
            .iter()
            .map(|t| {
                self.event_id = self.event_id.wrapping_add(1);
                fmp4::Event { scheme: fmp4::ID3_SCHEME, time: video[0].dts, data: super::id3_tag(t), id: self.event_id }
            })
            .collect();
        let data = bytes::Bytes::from(fmp4::fragment(self.sequence, &video, &audio, &events));
        self.sequence = self.sequence.wrapping_add(1);
        let duration = self.part_ticks_so_far as f64 / f64::from(fmp4::VIDEO_TIMESCALE);
        self.segment_ticks += self.part_ticks_so_far;
        self.part_ticks_so_far = 0;
        self.segment.push(data.clone());
        self.live.push_part(Part { duration, independent: video[0].key, data });
    }

    /// The parts so far make a segment: written to disk and listed.
    fn finish_segment(&mut self) {
        if self.segment.is_empty() {
            return;
        }
        let name = format!("seg-{}-{:05}.m4s", self.session, self.next);
        self.next += 1;
        let mut bytes = Vec::with_capacity(self.segment.iter().map(|p| p.len()).sum());
        for part in self.segment.drain(..) {
            bytes.extend_from_slice(&part);
        }
        let duration = self.segment_ticks as f64 / f64::from(fmp4::VIDEO_TIMESCALE);
        self.segment_ticks = 0;
        if let Err(e) = write_whole(&self.dir.join(&name), &bytes) {
            tracing::warn!(error = %e, segment = %name, "program: segment not written");
        }
        let (gone, text) = self.live.finish_segment(name, duration);
        if let Err(e) = write_whole(&self.dir.join("index.m3u8"), text.as_bytes()) {
            tracing::warn!(error = %e, "program: playlist not written");
        }
        for s in gone {
            let _ = std::fs::remove_file(self.dir.join(&s.uri));
        }
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the part and the segment being made (the last frame goes with them).
    fn flush(&mut self) {
        if let Some(prev) = self.pending.take() {
            let duration = self.half_frame * 2;
            self.part_video.push(Sample { dts: prev.dts, duration: duration as u32, cts_offset: 0, key: prev.key, data: prev.data });
            self.part_ticks_so_far += duration;
            self.emit_part(prev.dts + duration);
        }
        self.finish_segment();
    }

    /// The event ended: the last segment is finished and the playlist closed (VOD).
    pub(super) fn finish(&mut self) -> std::io::Result<()> {
        self.flush();
        let text = self.live.end();
        write_whole(&self.dir.join("index.m3u8"), text.as_bytes())
    }
}

/// A buffer's decode (else presentation) time as running time, in nanoseconds.
fn running_time(sample: &gst::Sample, buffer: &gst::BufferRef) -> Option<u64> {
    let at = buffer.dts_or_pts()?;
    let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>());
    Some(match segment {
        Some(seg) => seg.to_running_time(at).map_or(at.nseconds(), gst::ClockTime::nseconds),
        None => at.nseconds(),
    })
}

/// Nanoseconds in a timescale.
fn ticks(ns: u64, timescale: u32) -> u64 {
    ((u128::from(ns) * u128::from(timescale) + 500_000_000) / 1_000_000_000) as u64
}

/// Video ticks in nanoseconds.
fn video_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(fmp4::VIDEO_TIMESCALE)) as u64
}

/// Writes a file whole (a temporary file renamed over it): a reader never sees
/// half of one.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn codec_data(s: &gst::StructureRef) -> Option<Vec<u8>> {
    let b = s.get::<gst::Buffer>("codec_data").ok()?;
    let m = b.map_readable().ok()?;
    Some(m.as_slice().to_vec())
}

fn video_track(caps: &gst::CapsRef) -> Option<VideoTrack> {
    let s = caps.structure(0)?;
    Some(VideoTrack { width: s.get::<i32>("width").ok()? as u32, height: s.get::<i32>("height").ok()? as u32, avcc: codec_data(s)? })
}

fn audio_track(caps: &gst::CapsRef) -> Option<AudioTrack> {
    let s = caps.structure(0)?;
    Some(AudioTrack { rate: s.get::<i32>("rate").ok()? as u32, channels: s.get::<i32>("channels").ok()? as u16, asc: codec_data(s)? })
}
