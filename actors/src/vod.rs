//! What the recordings' library shows of a recorded program file (see
//! [`crate::recorder`]): when it started, from its MP4 header's creation time (the
//! muxer writes the wall-clock time it opened the file, in the header that comes
//! first), and a thumbnail, a picture decoded from it with GStreamer.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Seconds from 1904 (MP4's epoch) to 1970.
const MP4_TO_UNIX: u64 = 2_082_844_800;

/// How long making a thumbnail may take before it is given up.
const THUMBNAIL_TIMEOUT: Duration = Duration::from_secs(15);

/// When the recording in `path` started, Unix seconds: its `moov/mvhd` creation
/// time. `None` when the file has no readable header (not an MP4, or cut before it).
pub fn started_at(path: &Path) -> Option<u64> {
    let mut head = Vec::with_capacity(64 << 10);
    std::fs::File::open(path).ok()?.take(64 << 10).read_to_end(&mut head).ok()?;
    let moov = find_box(&head, b"moov")?;
    let mvhd = find_box(moov, b"mvhd")?;
    let created = match *mvhd.first()? {
        0 => u64::from(u32::from_be_bytes(mvhd.get(4..8)?.try_into().ok()?)),
        1 => u64::from_be_bytes(mvhd.get(4..12)?.try_into().ok()?),
        _ => return None,
    };
    created.checked_sub(MP4_TO_UNIX).filter(|&t| t > 0)
}

/// The body of the first box of type `kind` among the boxes in `data` (not nested).
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as usize;
        let (header, size) = match size {
            1 => (16, usize::try_from(u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().ok()?)).ok()?),
            0 => (8, data.len() - at),
            s => (8, s),
        };
        if size < header {
            return None;
        }
        if &data[at + 4..at + 8] == kind {
            return data.get(at + header..at.saturating_add(size).min(data.len()));
        }
        at = at.checked_add(size)?;
    }
    None
}

/// A JPEG of the picture at `at` into the recording (or its first picture, for a
/// shorter one), `width` pixels wide, its aspect kept.
pub fn thumbnail(path: &Path, at: Duration, width: u32) -> Result<Vec<u8>, String> {
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| gst::ElementFactory::make(factory).build().map_err(|_| format!("GStreamer has no {factory}"));
    let src = gst::ElementFactory::make("filesrc").property("location", path.to_string_lossy().as_ref()).build().map_err(|_| "GStreamer has no filesrc")?;
    let decode = make("decodebin")?;
    let convert = make("videoconvertscale")?;
    let caps = gst::Caps::builder("video/x-raw").field("width", width as i32).field("pixel-aspect-ratio", gst::Fraction::new(1, 1)).build();
    let filter = gst::ElementFactory::make("capsfilter").property("caps", &caps).build().map_err(|_| "GStreamer has no capsfilter")?;
    let jpeg = gst::ElementFactory::make("jpegenc").property("quality", 80i32).build().map_err(|_| "GStreamer has no jpegenc")?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(1).build();
    pipeline.add_many([&src, &decode, &convert, &filter, &jpeg, sink.upcast_ref()]).map_err(|e| e.to_string())?;
    src.link(&decode).map_err(|e| e.to_string())?;
    gst::Element::link_many([&convert, &filter, &jpeg, sink.upcast_ref()]).map_err(|e| e.to_string())?;
    // The video stream only; the audio is left unlinked.
    let video_in = convert.static_pad("sink").ok_or("no sink pad")?;
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad.current_caps().and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/"))).unwrap_or(false);
        if is_video && !video_in.is_linked() {
            let _ = pad.link(&video_in);
        }
    });
    let result = (|| {
        preroll(&pipeline)?;
        let length = pipeline.query_duration::<gst::ClockTime>().map(|d| Duration::from_nanos(d.nseconds())).unwrap_or_default();
        let at = if length > at { at } else { length / 2 };
        if !at.is_zero() {
            pipeline
                .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::from_nseconds(at.as_nanos() as u64))
                .map_err(|_| "the recording cannot be sought".to_string())?;
            preroll(&pipeline)?;
        }
        let sample = sink.pull_preroll().map_err(|_| "no picture in the recording".to_string())?;
        let buffer = sample.buffer().ok_or("no picture in the recording")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        Ok(map.as_slice().to_vec())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Pauses the pipeline and waits (bounded) until its first picture is ready.
fn preroll(pipeline: &gst::Pipeline) -> Result<(), String> {
    pipeline.set_state(gst::State::Paused).map_err(|_| "the recording cannot be read".to_string())?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let deadline = std::time::Instant::now() + THUMBNAIL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("the recording took too long to read".into());
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { continue };
        match msg.view() {
            gst::MessageView::AsyncDone(_) => return Ok(()),
            gst::MessageView::Error(e) => return Err(format!("the recording cannot be decoded: {}", e.error())),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn the_start_is_read_from_the_movie_header() {
        let unix = 1_796_671_749u64;
        let mut mvhd = vec![0u8, 0, 0, 0];
        mvhd.extend_from_slice(&((unix + MP4_TO_UNIX) as u32).to_be_bytes());
        mvhd.extend_from_slice(&[0u8; 92]);
        let mut file = mp4_box(b"ftyp", b"isomiso2");
        file.extend(mp4_box(b"moov", &[mp4_box(b"trak", &[0; 20]), mp4_box(b"mvhd", &mvhd)].concat()));
        file.extend(mp4_box(b"moof", &[0; 16]));
        let path = std::env::temp_dir().join(format!("casecast-vod-{}.mp4", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        assert_eq!(started_at(&path), Some(unix));
        // Cut in its header, or not an MP4: no start.
        std::fs::write(&path, &file[..30]).unwrap();
        assert_eq!(started_at(&path), None);
        std::fs::write(&path, b"\xff\xff\xff\xffnot an mp4 at all").unwrap();
        assert_eq!(started_at(&path), None);
        let _ = std::fs::remove_file(&path);
    }
}
