//! Recording of the program as MP4 files, switched on and off while live. Each
//! recording runs in a pipeline of its own fed from the program's encoded streams
//! (as the RTMP outputs are): it starts at a key frame, is cut into files of
//! `split_secs`, and ends with an end-of-stream, so its last file is finished
//! (playable) when the operator stops it or the program ends.
//!
//! The files are fragmented MP4 (a fragment a second): the header comes first and
//! every fragment is whole in itself, so a file cut short by a crash or a power cut
//! plays up to its last second written, instead of being lost whole for want of the
//! index a plain MP4 writes at its end. A finished file ends with its fragment index
//! (`mfra`); [`list`] tells finished files from interrupted ones by it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use crate::rtmp::{Feed, Packet};

/// How long a stopping recording may take to finish its last file.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// One fragment per this many milliseconds: at most this much is lost in a crash.
pub const FRAGMENT_MS: u32 = 1000;

/// A recorded file, as the recordings' listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    /// Its name in the room's folder.
    pub name: String,
    /// Its size, bytes.
    pub bytes: u64,
    /// Whether it is finished.
    pub state: FileState,
}

/// Whether a recorded file is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Finished: closed with its index.
    Complete,
    /// Being written now (changed in the last few seconds).
    Recording,
    /// Cut short (the server stopped while writing it): it plays up to its last
    /// whole fragment.
    Interrupted,
}

impl FileState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Complete => "complete",
            FileState::Recording => "recording",
            FileState::Interrupted => "interrupted",
        }
    }
}

/// The `.mp4` files in `dir`, by name, each with its state.
pub fn list(dir: &std::path::Path) -> Vec<RecordedFile> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<RecordedFile> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok().filter(|n| n.ends_with(".mp4"))?;
            let meta = e.metadata().ok().filter(|m| m.is_file())?;
            let whole = std::fs::File::open(e.path()).ok().is_some_and(|mut f| mp4_is_finished(&mut f));
            let fresh = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age < Duration::from_secs(10));
            let state = match (whole, fresh) {
                (true, _) => FileState::Complete,
                (false, true) => FileState::Recording,
                (false, false) => FileState::Interrupted,
            };
            Some(RecordedFile { name, bytes: meta.len(), state })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether an MP4 is finished: its top-level boxes reach exactly to its end, with a
/// `moov`, and (fragmented) the closing `mfra`, or (plain) no fragments.
pub fn mp4_is_finished(r: &mut (impl std::io::Read + std::io::Seek)) -> bool {
    use std::io::SeekFrom;
    let Ok(end) = r.seek(SeekFrom::End(0)) else { return false };
    let (mut at, mut moov, mut moof, mut last) = (0u64, false, false, [0u8; 4]);
    while at < end {
        let mut head = [0u8; 16];
        if r.seek(SeekFrom::Start(at)).is_err() || r.read_exact(&mut head[..8]).is_err() {
            return false;
        }
        let mut size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = [head[4], head[5], head[6], head[7]];
        if size == 1 {
            if r.read_exact(&mut head[8..16]).is_err() {
                return false;
            }
            size = u64::from_be_bytes([head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15]]);
        } else if size == 0 {
            size = end - at;
        }
        if size < 8 {
            return false;
        }
        moov |= &kind == b"moov";
        moof |= &kind == b"moof";
        last = kind;
        at = match at.checked_add(size) {
            Some(n) => n,
            None => return false,
        };
    }
    at == end && moov && (!moof || &last == b"mfra")
}

/// The program's recorder: off, or one recording running.
pub struct Recorder {
    dir: PathBuf,
    split_secs: u32,
    active: Mutex<Option<Recording>>,
    /// The last recording's error, if it failed.
    error: Arc<Mutex<Option<String>>>,
}

struct Recording {
    tx: SyncSender<Packet>,
    stop: Arc<AtomicBool>,
    /// Media reaches the files.
    writing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// A recorder writing `program-NNNNN.mp4` files into `dir`, each `split_secs` long.
    pub fn new(dir: PathBuf, split_secs: u32) -> Recorder {
        Recorder { dir, split_secs, active: Mutex::new(None), error: Arc::default() }
    }

    /// Starts a recording (nothing if one runs). It begins at the next key frame.
    pub fn start(&self) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.is_some() {
            return;
        }
        // About two seconds of program: a slow disk drops packets, never the program.
        let (tx, rx) = sync_channel::<Packet>(200);
        let stop = Arc::new(AtomicBool::new(false));
        let writing = Arc::new(AtomicBool::new(false));
        let (dir, split, s, w, error) = (self.dir.clone(), self.split_secs, stop.clone(), writing.clone(), self.error.clone());
        let thread = std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || {
                let result = record(&dir, split, &rx, &s, &w);
                w.store(false, Ordering::Relaxed);
                match result {
                    Ok(()) => tracing::info!(dir = %dir.display(), "recording stopped"),
                    Err(e) => {
                        tracing::warn!(error = %e, "recording failed");
                        *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    }
                }
            })
            .ok();
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(dir = %self.dir.display(), "recording started");
        *active = Some(Recording { tx, stop, writing, thread });
    }

    /// Stops the recording, finishing its last file (waits for that, bounded).
    pub fn stop(&self) {
        let taken = self.active.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(taken);
    }

    /// Whether a recording is switched on.
    pub fn is_on(&self) -> bool {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Whether media reaches the files now.
    pub fn is_writing(&self) -> bool {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|r| r.writing.load(Ordering::Relaxed))
    }

    /// The last recording's failure, if it failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Offers an encoded buffer of the program; dropped when off or behind.
    pub(crate) fn push(&self, p: Packet) {
        if let Some(r) = self.active.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && let Err(TrySendError::Full(_)) = r.tx.try_send(p)
        {
            tracing::debug!("recording behind; packet dropped");
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first free file number in `dir` (files of earlier recordings stay).
fn next_index(dir: &std::path::Path) -> u32 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_prefix("program-")?.strip_suffix(".mp4")?.parse::<u32>().ok()
                })
                .max()
                .map_or(0, |n| n + 1)
        })
        .unwrap_or(0)
}

fn record(dir: &std::path::Path, split_secs: u32, rx: &Receiver<Packet>, stop: &AtomicBool, writing: &AtomicBool) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let desc = format!(
        "splitmuxsink name=rec async-finalize=true muxer-factory=mp4mux max-size-time={ns} start-index={first} \
           muxer-properties=\"properties,fragment-duration=(uint){FRAGMENT_MS}\" \
           location=\"{dir}/program-%05d.mp4\" \
         appsrc name=v is-live=true format=time do-timestamp=true ! queue ! h264parse ! rec.video \
         appsrc name=a is-live=true format=time do-timestamp=true ! queue ! aacparse ! rec.audio_%u",
        ns = u64::from(split_secs.max(1)) * 1_000_000_000,
        first = next_index(dir),
        dir = dir.display().to_string().replace('"', ""),
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("cannot build the recording pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let mut feed = Feed::new(&pipeline)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Err(format!("{} ({:?})", e.error(), e.debug()));
        }
        let Ok(p) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
        match feed.push(p) {
            Ok(playing) => writing.store(playing, Ordering::Relaxed),
            Err(e) => break Err(format!("recording: {e}")),
        }
    };
    // The last file is finished by an end-of-stream through the muxer.
    if feed.playing() {
        let _ = feed.video.end_of_stream();
        let _ = feed.audio.end_of_stream();
        let wait = gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64);
        let ended = bus.timed_pop_filtered(wait, &[gst::MessageType::Eos, gst::MessageType::Error]);
        if !ended.is_some_and(|m| matches!(m.view(), gst::MessageView::Eos(_))) {
            tracing::warn!("recording: the last file may not be finished");
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4(boxes: &[(&[u8; 4], usize)]) -> std::io::Cursor<Vec<u8>> {
        let mut out = Vec::new();
        for (kind, body) in boxes {
            out.extend(((body + 8) as u32).to_be_bytes());
            out.extend(*kind);
            out.extend(std::iter::repeat_n(0u8, *body));
        }
        std::io::Cursor::new(out)
    }

    #[test]
    fn finished_files_are_told_from_cut_ones() {
        let fragmented = [(b"ftyp", 16), (b"moov", 100), (b"moof", 40), (b"mdat", 500), (b"moof", 40), (b"mdat", 500)];
        assert!(!mp4_is_finished(&mut mp4(&fragmented)), "no index: interrupted");
        let mut whole = fragmented.to_vec();
        whole.push((b"mfra", 30));
        assert!(mp4_is_finished(&mut mp4(&whole)));
        let mut cut = mp4(&whole).into_inner();
        cut.truncate(cut.len() - 10);
        assert!(!mp4_is_finished(&mut std::io::Cursor::new(cut)), "a box cut short");
        assert!(mp4_is_finished(&mut mp4(&[(b"ftyp", 16), (b"mdat", 900), (b"moov", 100)])), "a plain MP4 with its moov");
        assert!(!mp4_is_finished(&mut mp4(&[(b"ftyp", 16), (b"mdat", 900)])), "a plain MP4 without moov");
        assert!(!mp4_is_finished(&mut std::io::Cursor::new(vec![0, 0, 0, 3, b'f', b't', b'y', b'p'])));
        assert!(!mp4_is_finished(&mut std::io::Cursor::new(Vec::new())));
    }
}
