//! One ingest job's work, synchronous (the pool in `actors/` runs it on threads of its
//! own): a staged file becomes what is published of it (the de-identified DICOM
//! object, its frames rendered for the viewer, its metadata), or a ZIP archive becomes
//! the files for jobs of their own.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::batch::{self, Outcome};
use crate::deid::Options;
use crate::pixels::{self, Layout};
use crate::progress::{Stage, Step};
use crate::store::Instance;

/// What a job publishes.
#[derive(Debug)]
pub struct Published {
    /// What the viewer and DICOMweb need to know.
    pub instance: Instance,
    /// The de-identified header as DICOM JSON (PS3.18 F.2), pixel data left out.
    pub dicom_json: String,
    /// The de-identified object (local file in the job's work folder).
    pub dicom: PathBuf,
    /// Rendered frames, in order (local files).
    pub frames: Vec<PathBuf>,
    /// Frames read for burned-in text.
    pub frames_read: usize,
    /// Words blacked out.
    pub words_blacked_out: usize,
}

/// Fails unless `path` is a DICOM Part 10 file (preamble and `DICM`).
pub fn check_part10(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open the upload: {e}"))?;
    let mut head = [0u8; 132];
    f.read_exact(&mut head).map_err(|_| "not a DICOM file: shorter than the 132-byte DICOM preamble and prefix".to_string())?;
    if &head[128..132] != b"DICM" {
        return Err("not a DICOM file: no \"DICM\" after the 128-byte preamble (DICOM Part 10 files are expected)".into());
    }
    Ok(())
}

/// The shares of a file's job: de-identification (frame by frame: decoded, read
/// for burned-in text, written) up to the first, decoding what was left compressed
/// up to the second, rendering the frames up to the third; publishing (the pool)
/// takes the rest.
const DEID_SHARE: f64 = 0.85;
const NORMALIZED_AT: f64 = 0.87;
const RENDERED_AT: f64 = 0.98;
/// Where a job stands while the pool publishes what it made.
pub const PUBLISHING_AT: f64 = RENDERED_AT;

/// De-identifies the staged file `input` into the folder `work` and renders its
/// frames there; `progress` hears what it does and how far it is (frame by frame).
pub fn process(input: &Path, work: &Path, opts: &Options, progress: &mut dyn FnMut(Step)) -> Result<Published, String> {
    check_part10(input)?;
    std::fs::create_dir_all(work).map_err(|e| format!("cannot make the work folder: {e}"))?;
    let opts = Options { render_frames: false, ..opts.clone() };
    let (out, report) = match batch::deidentify_file_with_progress(input, work, &opts, &mut |s| progress(s.within(0.0, DEID_SHARE))) {
        Outcome::Done(out, report) => (out, report),
        Outcome::Failed(_, why) => return Err(why),
    };
    // Published pictures are native, for the viewer's raw frames: a compressed
    // picture that was not read (nothing asked for it) is decoded now.
    normalize(&out, opts.max_decoded_bytes, &mut |s| progress(s.within(DEID_SHARE, NORMALIZED_AT)))?;
    let mut instance = describe(&out)?;
    let header = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(&out)
        .map_err(|e| format!("cannot read back the de-identified object: {e}"))?;
    let dicom_json = crate::dicomweb::to_json(&header).to_string();
    let frames = render(&out, &header, &mut instance, work, &mut |s| progress(s.within(NORMALIZED_AT, RENDERED_AT)))?;
    Ok(Published { instance, dicom_json, dicom: out, frames, frames_read: report.frames_read, words_blacked_out: report.words_blacked_out })
}

/// Above this, a compressed object is not decoded whole to publish it native.
const DECODE_WHOLE_BELOW: u64 = 512 << 20;

/// Rewrites a de-identified object whose pixel data is still compressed with native
/// pixel data, when it can be decoded; leaves it as it is otherwise.
fn normalize(path: &Path, max_decoded_bytes: u64, progress: &mut dyn FnMut(Step)) -> Result<(), String> {
    let header = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).map_err(|e| e.to_string())?;
    let ts = header.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let native = matches!(ts.as_str(), "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99");
    if native || std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX) > DECODE_WHOLE_BELOW {
        return Ok(());
    }
    let frames = header.element(tags::NUMBER_OF_FRAMES).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1).max(1);
    progress(Step::whole(Stage::Decoding, frames, 0.0));
    let mut obj = dicom_object::open_file(path).map_err(|e| e.to_string())?;
    if pixels::decompress(&mut obj, max_decoded_bytes).unwrap_or(false) {
        let tmp = path.with_extension("dcm.tmp");
        batch::write_file(&obj, &tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What is known of the (de-identified) object at `path`.
pub fn describe(path: &Path) -> Result<Instance, String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("cannot read back the de-identified object: {e}"))?;
    let text = |t| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string()).unwrap_or_default();
    let int = |t| obj.element(t).ok().and_then(|e| e.to_int::<i64>().ok());
    let float = |t| obj.element(t).ok().and_then(|e| e.to_multi_float64().ok()).and_then(|v| v.first().copied());
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let layout = Layout::of(&obj).ok();
    let bytes = std::fs::metadata(path).map(|m| m.len() as i64).unwrap_or(0);
    let explicit = match ts.as_str() {
        "1.2.840.10008.1.2.1" => Some(true),
        "1.2.840.10008.1.2" => Some(false),
        _ => None,
    };
    let pixel_offset = match (layout.clone(), explicit) {
        (Some(l), Some(explicit)) => batch::find_pixel_data(path, (l.frame_bytes() * l.frames) as u64, explicit).map(|(o, _)| o as i64),
        _ => None,
    };
    Ok(Instance {
        sop_uid: text(tags::SOP_INSTANCE_UID),
        sop_class: text(tags::SOP_CLASS_UID),
        study_uid: text(tags::STUDY_INSTANCE_UID),
        series_uid: text(tags::SERIES_INSTANCE_UID),
        patient: text(tags::PATIENT_NAME),
        patient_id: text(tags::PATIENT_ID),
        study_date: text(tags::STUDY_DATE),
        study_description: text(tags::STUDY_DESCRIPTION),
        study_time: text(tags::STUDY_TIME),
        modality: text(tags::MODALITY),
        series_description: text(tags::SERIES_DESCRIPTION),
        series_number: int(tags::SERIES_NUMBER),
        number: int(tags::INSTANCE_NUMBER),
        frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
        rows: int(tags::ROWS).unwrap_or(0),
        cols: int(tags::COLUMNS).unwrap_or(0),
        photometric: text(tags::PHOTOMETRIC_INTERPRETATION),
        samples: int(tags::SAMPLES_PER_PIXEL).unwrap_or(1),
        bits_allocated: int(tags::BITS_ALLOCATED).unwrap_or(0),
        bits_stored: int(tags::BITS_STORED).or(int(tags::BITS_ALLOCATED)).unwrap_or(0),
        signed: int(tags::PIXEL_REPRESENTATION) == Some(1),
        rescale_slope: float(tags::RESCALE_SLOPE).filter(|s| *s != 0.0).unwrap_or(1.0),
        rescale_intercept: float(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        window_center: float(tags::WINDOW_CENTER),
        window_width: float(tags::WINDOW_WIDTH),
        frame_time_ms: float(tags::FRAME_TIME).or_else(|| float(tags::RECOMMENDED_DISPLAY_FRAME_RATE).filter(|r| *r > 0.0).map(|r| 1000.0 / r)),
        raw: pixel_offset.is_some() && layout.is_some(),
        rendered: String::new(),
        transfer_syntax: ts,
        pixel_offset,
        frame_bytes: layout.map(|l| l.frame_bytes() as i64).unwrap_or(0),
        bytes,
    })
}

/// Renders every frame of the native object at `path` into `work` (`1.png`… for one
/// frame, `1.jpg`… for cine), a frame at a time; none when its pixels are not native.
fn render(path: &Path, header: &InMemDicomObject, instance: &mut Instance, work: &Path, progress: &mut dyn FnMut(Step)) -> Result<Vec<PathBuf>, String> {
    let (Some(offset), Ok(layout)) = (instance.pixel_offset, Layout::of(header)) else {
        return Ok(Vec::new());
    };
    let jpeg = layout.frames > 1;
    instance.rendered = if jpeg { "jpeg" } else { "png" }.into();
    let window = instance.stored_window();
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(|e| e.to_string())?);
    f.seek(SeekFrom::Start(offset as u64)).map_err(|e| e.to_string())?;
    let mut frame = vec![0u8; layout.frame_bytes()];
    let mut out = Vec::new();
    for i in 0..layout.frames {
        progress(Step::at(Stage::Rendering, i as u64 + 1, layout.frames as u64));
        f.read_exact(&mut frame).map_err(|e| format!("pixel data cut short at frame {}: {e}", i + 1))?;
        let picture = pixels::render(&layout, &frame, window, jpeg)?;
        let file = work.join(format!("{}.{}", i + 1, if jpeg { "jpg" } else { "png" }));
        std::fs::File::create(&file).and_then(|mut w| w.write_all(&picture)).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        out.push(file);
    }
    Ok(out)
}

/// Limits on expanding an archive.
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    /// Files.
    pub max_entries: usize,
    /// Bytes written in all.
    pub max_total: u64,
    /// Bytes written per byte of archive (a zip bomb expands far beyond any DICOM).
    pub max_ratio: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits { max_entries: 100_000, max_total: 64 << 30, max_ratio: 200 }
    }
}

/// Expands the archive `zip` into `out_dir` as `1.dcm`, `2.dcm`… (entry names are
/// not used: they can carry patient data, or climb out of the folder), skipping
/// folders, DICOMDIR and operating-system litter. Sizes are counted as the bytes
/// come out, not as the archive claims them.
pub fn expand_zip(zip: &Path, out_dir: &Path, limits: ZipLimits, progress: &mut dyn FnMut(Step)) -> Result<Vec<PathBuf>, String> {
    // What was expanded of an archive that fails is removed: originals are not kept.
    let r = expand(zip, out_dir, limits, progress);
    if r.is_err() {
        let _ = std::fs::remove_dir_all(out_dir);
    }
    r
}

fn expand(zip: &Path, out_dir: &Path, limits: ZipLimits, progress: &mut dyn FnMut(Step)) -> Result<Vec<PathBuf>, String> {
    let file = std::fs::File::open(zip).map_err(|e| format!("cannot open the archive: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a readable ZIP archive: {e}"))?;
    if archive.len() > limits.max_entries {
        return Err(format!("the archive holds {} entries; at most {} are taken", archive.len(), limits.max_entries));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
    let budget = limits.max_total.min(size.saturating_mul(limits.max_ratio).max(1 << 20));
    let mut written = 0u64;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let entries = archive.len();
    for i in 0..entries {
        progress(Step::at(Stage::Expanding, i as u64 + 1, entries as u64));
        let mut entry = archive.by_index(i).map_err(|e| format!("archive entry {}: {e}", i + 1))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let base = name.rsplit('/').next().unwrap_or("");
        if name.starts_with("__MACOSX/") || base.starts_with('.') || base.eq_ignore_ascii_case("DICOMDIR") || base.is_empty() {
            continue;
        }
        let path = out_dir.join(format!("{}.dcm", out.len() + 1));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        loop {
            let n = entry.read(&mut buf).map_err(|e| format!("archive entry {} cannot be read: {e}", i + 1))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > budget {
                return Err(format!(
                    "the archive expands beyond {} MB ({}× its size, or the configured limit): refused as a possible zip bomb",
                    budget >> 20,
                    limits.max_ratio
                ));
            }
            w.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        out.push(path);
        drop(entry);
    }
    if out.is_empty() {
        return Err("the archive holds no files".into());
    }
    Ok(out)
}
