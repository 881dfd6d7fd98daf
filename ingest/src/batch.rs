//! De-identifying files and folders from disk, as `casecast deid` does.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use crate::deid::{self, Options};
use crate::progress::{Stage, Step};

/// The outcome of one input file.
#[derive(Debug)]
pub enum Outcome {
    /// Written to this path (named by the new SOP Instance UID: an original file
    /// name can itself carry PHI).
    Done(PathBuf, deid::Report),
    /// Not processed, and why.
    Failed(PathBuf, String),
}

/// Every file under `input` (a file or a folder, recursively), in name order.
pub fn files(input: &Path) -> std::io::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![input.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Files above this size that cannot be streamed are refused.
pub const READ_WHOLE_MAX_BYTES: u64 = 1 << 30;

/// Files above this size with native pixel data are streamed frame by frame.
pub const STREAM_ABOVE_BYTES: u64 = 64 << 20;

/// De-identifies one file into the folder `out_dir`. A large file with native pixel
/// data, and any multi-frame file with compressed pixel data, is streamed a frame at
/// a time (memory stays at one frame whatever the file's size); the rest is read
/// whole.
pub fn deidentify_file(path: &Path, out_dir: &Path, opts: &Options) -> Outcome {
    deidentify_file_with_progress(path, out_dir, opts, &mut crate::progress::ignore)
}

/// As [`deidentify_file`], telling `progress` what it does and how far it is: the
/// header, then frame by frame (decoded, read for burned-in text, written) when the
/// file is streamed or its pictures are read, its fraction that of this file.
pub fn deidentify_file_with_progress(path: &Path, out_dir: &Path, opts: &Options, progress: &mut dyn FnMut(Step)) -> Outcome {
    progress(Step::whole(Stage::Opening, 0, 0.0));
    // The file's time starts now (`cases.max_seconds_per_file`).
    let opts = &Options { deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(opts.max_seconds)), ..opts.clone() };
    // Files as they arrive: no meta group, big endian, standard attributes as UN.
    match crate::normalize::file(path) {
        Err(e) => return Outcome::Failed(path.to_path_buf(), e),
        Ok(Some(n)) => {
            if let Err(e) = crate::structure::check_bytes(&n.bytes) {
                return Outcome::Failed(path.to_path_buf(), e.to_string());
            }
            let read = dicom_object::OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Always)
                .from_reader(std::io::Cursor::new(&n.bytes));
            return match read {
                Ok(obj) => finish(path, obj, out_dir, opts, progress),
                Err(e) => Outcome::Failed(path.to_path_buf(), format!("not readable as DICOM: {e}")),
            };
        }
        Ok(None) => {}
    }
    // Headers first: no parser below reserves what the file does not hold.
    if let Err(e) = crate::structure::check(path) {
        return Outcome::Failed(path.to_path_buf(), e.to_string());
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > STREAM_ABOVE_BYTES)
        && let Some(outcome) = streamed(path, out_dir, opts, progress)
    {
        return outcome;
    }
    if let Some(outcome) = crate::encapsulated::streamed(path, out_dir, opts, progress) {
        return outcome;
    }
    let fail = |why: String| Outcome::Failed(path.to_path_buf(), why);
    // Read whole below: bounded, so one file cannot take the memory of the server.
    if let Ok(m) = std::fs::metadata(path)
        && m.len() > READ_WHOLE_MAX_BYTES
    {
        return fail(format!(
            "{} MB with compressed (or big endian) pixel data: files above {} MB are handled only with native pixel data",
            m.len() >> 20,
            READ_WHOLE_MAX_BYTES >> 20
        ));
    }
    match dicom_object::open_file(path) {
        Ok(obj) => finish(path, obj, out_dir, opts, progress),
        Err(e) => fail(format!("not readable as DICOM: {e}")),
    }
}

/// De-identifies a file read whole and writes it (and its rendered frames).
fn finish(path: &Path, mut obj: dicom_object::DefaultDicomObject, out_dir: &Path, opts: &Options, progress: &mut dyn FnMut(Step)) -> Outcome {
    let fail = |why: String| Outcome::Failed(path.to_path_buf(), why);
    let report = match deid::deidentify_with_progress(&mut obj, opts, progress) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let frames = obj.element(tags::NUMBER_OF_FRAMES).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1).max(1);
    // Written at once: one step, after the last frame was read.
    progress(Step::whole(Stage::Writing, frames, 0.97));
    let uid = obj.meta().media_storage_sop_instance_uid.trim_end_matches('\0').to_string();
    let out = out_dir.join(format!("{uid}.dcm"));
    for (i, png) in report.frames_png.iter().enumerate() {
        let f = out_dir.join(format!("{uid}.frame{:04}.png", i + 1));
        if let Err(e) = std::fs::write(&f, png) {
            return fail(format!("cannot write {}: {e}", f.display()));
        }
    }
    // Written whole, then renamed: a reader never sees half a file.
    let tmp = out.with_extension("dcm.tmp");
    if let Err(e) = write_file(&obj, &tmp).and_then(|_| std::fs::rename(&tmp, &out).map_err(|e| e.to_string())) {
        let _ = std::fs::remove_file(&tmp);
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    Outcome::Done(out, report)
}

/// Writes `obj` as a DICOM file: made in memory and written at once (the library's
/// writer makes a system call per element or so; files are mostly small).
pub(crate) fn write_file(obj: &dicom_object::DefaultDicomObject, path: &Path) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(64 << 10);
    obj.write_all(&mut bytes).map_err(|e| e.to_string())?;
    std::fs::write(path, bytes).map_err(|e| e.to_string())
}

/// The streamed path: the header is read up to the pixel data, de-identified and
/// written; then the pixel data is copied frame by frame, each frame cleaned on the
/// way. `None` when the file is not of a kind streamed here (compressed, big endian,
/// deflated, no pixel data where it is expected): the whole-file path takes it.
fn streamed(path: &Path, out_dir: &Path, opts: &Options, progress: &mut dyn FnMut(Step)) -> Option<Outcome> {
    use std::io::{Read, Seek, SeekFrom};
    let mut obj = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).ok()?;
    let explicit = match obj.meta().transfer_syntax().trim_end_matches('\0') {
        "1.2.840.10008.1.2.1" => true,
        "1.2.840.10008.1.2" => false,
        _ => return None,
    };
    let layout = crate::pixels::Layout::of(&obj).ok()?;
    let frame_bytes = layout.frame_bytes();
    let (offset, _) = find_pixel_data(path, (frame_bytes * layout.frames) as u64, explicit)?;
    let fail = |why: String| Some(Outcome::Failed(path.to_path_buf(), why));
    let opts = &Options { clean_pixels: opts.clean_pixels && deid::needs_reading(&obj, opts), ..opts.clone() };
    let cleaner = opts.clean_pixels.then(|| deid::FrameCleaner::new(&obj, layout.clone(), opts));
    // The header holds no pixel data: de-identifying it records the method (Clean
    // Pixel Data included) and leaves the frames to the loop below.
    let report = match deid::deidentify(&mut obj, &Options { render_frames: false, ..opts.clone() }) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    // Written as Explicit VR Little Endian, whatever the input was.
    obj.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    let mut input = match std::fs::File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f)) {
        Ok(f) => std::io::BufReader::with_capacity(1 << 20, f),
        Err(e) => return fail(e.to_string()),
    };
    Some(write_streamed(path, obj, report, layout, cleaner, out_dir, progress, false, |_, frame| {
        frame.resize(frame_bytes, 0);
        input.read_exact(frame).map_err(|e| format!("pixel data cut short: {e}"))
    }))
}

/// How both streamed paths end: the de-identified `header` (marked Burned In
/// Annotation NO when a cleaner reads the frames), then a native Pixel Data element
/// (OB or OW, explicit little endian) of `layout.frames` frames, each filled by
/// `next` (frame index, buffer; `decodes`: it decodes compressed pixels) and cleaned
/// on the way, and the padding byte of an odd length; into a temporary file, renamed
/// into `out_dir` once complete. `progress` hears each frame's stages.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_streamed(
    input: &Path,
    mut header: dicom_object::DefaultDicomObject,
    mut report: deid::Report,
    layout: crate::pixels::Layout,
    mut cleaner: Option<deid::FrameCleaner>,
    out_dir: &Path,
    progress: &mut dyn FnMut(Step),
    decodes: bool,
    mut next: impl FnMut(usize, &mut Vec<u8>) -> Result<(), String>,
) -> Outcome {
    use std::io::Write;
    let fail = |why: String| Outcome::Failed(input.to_path_buf(), why);
    let total = (layout.frame_bytes() * layout.frames) as u64;
    if total + total % 2 > u64::from(u32::MAX - 1) {
        return fail(format!("the pixel data would be {} MB, more than a DICOM element can hold", total >> 20));
    }
    if cleaner.is_some() {
        header.put(dicom_core::DataElement::new(tags::BURNED_IN_ANNOTATION, dicom_core::VR::CS, dicom_core::PrimitiveValue::from("NO")));
    }
    let uid = header.meta().media_storage_sop_instance_uid.trim_end_matches('\0').to_string();
    let out = out_dir.join(format!("{uid}.dcm"));
    let tmp = out.with_extension("dcm.tmp");
    let result = (|| -> Result<(), String> {
        write_file(&header, &tmp)?;
        let file = std::fs::OpenOptions::new().append(true).open(&tmp).map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut head = vec![0xE0, 0x7F, 0x10, 0x00];
        head.extend_from_slice(if layout.bits_allocated > 8 { b"OW\0\0" } else { b"OB\0\0" });
        head.extend_from_slice(&((total + total % 2) as u32).to_le_bytes());
        w.write_all(&head).map_err(|e| e.to_string())?;
        let mut frame = Vec::with_capacity(layout.frame_bytes());
        let all = layout.frames as u64;
        for i in 0..layout.frames {
            let n = i as u64 + 1;
            if decodes {
                progress(Step::at(Stage::Decoding, n, all));
            }
            next(i, &mut frame)?;
            if frame.len() != layout.frame_bytes() {
                return Err(format!("frame {} holds {} bytes, {} expected", i + 1, frame.len(), layout.frame_bytes()));
            }
            if let Some(c) = cleaner.as_mut() {
                progress(Step::at(Stage::ReadingText, n, all));
                c.clean(&mut frame).map_err(|e| e.to_string())?;
            }
            progress(Step::at(Stage::Writing, n, all));
            w.write_all(&frame).map_err(|e| e.to_string())?;
        }
        if total % 2 == 1 {
            w.write_all(&[0]).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        drop(w);
        std::fs::rename(&tmp, &out).map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return fail(e);
    }
    if let Some(c) = cleaner {
        (report.frames_read, report.words_blacked_out) = (c.frames_read, c.words_blacked_out);
    }
    Outcome::Done(out, report)
}

/// Where the native pixel data of `expected` bytes starts in the file and its
/// encoded length: its element header (tag, VR and length, or tag and length) is
/// looked for first at the end of the file, then anywhere, reading in chunks.
pub(crate) fn find_pixel_data(path: &Path, expected: u64, explicit: bool) -> Option<(u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let header_len: u64 = if explicit { 12 } else { 8 };
    let matches = |h: &[u8]| -> Option<u64> {
        if h.len() < header_len as usize || h[..4] != [0xE0, 0x7F, 0x10, 0x00] {
            return None;
        }
        let len_at = if explicit {
            if !(h[4..6] == *b"OW" || h[4..6] == *b"OB") || h[6..8] != [0, 0] {
                return None;
            }
            8
        } else {
            4
        };
        let len = u64::from(u32::from_le_bytes(h[len_at..len_at + 4].try_into().ok()?));
        (len == expected || len == expected + 1).then_some(len)
    };
    let mut f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    for pad in [0, 1] {
        let at = size.checked_sub(expected + pad + header_len)?;
        let mut h = vec![0u8; header_len as usize];
        if f.seek(SeekFrom::Start(at)).is_ok() && f.read_exact(&mut h).is_ok() && let Some(len) = matches(&h) {
            return Some((at + header_len, len));
        }
    }
    let mut pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    f.seek(SeekFrom::Start(0)).ok()?;
    loop {
        f.seek(SeekFrom::Start(pos)).ok()?;
        let n = f.read(&mut buf).ok()?;
        if n < header_len as usize {
            return None;
        }
        for i in 0..=n - header_len as usize {
            if let Some(len) = matches(&buf[i..i + header_len as usize]) {
                return Some((pos + i as u64 + header_len, len));
            }
        }
        pos += (n - header_len as usize + 1) as u64;
    }
}
