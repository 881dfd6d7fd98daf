//! De-identification of DICOM data sets per PS3.15 Annex E: the Basic Application
//! Level Confidentiality Profile from the standard's table ([`table`]), with options.
//!
//! Every attribute is handled by its rule, in nested sequences too; private
//! attributes go unless allow-listed; the patient gets a stable pseudonym; UIDs are
//! replaced consistently ([`crate::uid`]); and the output records how it was made
//! (Patient Identity Removed, De-identification Method and its Code Sequence).

pub mod burned;
pub mod table;

use std::collections::HashSet;

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use crate::progress::{Stage, Step};
use crate::uid;

/// What the standard's table says to do with an attribute (PS3.15 E.1-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace with a dummy value of the same VR.
    D,
    /// Replace with a zero-length value (or a dummy).
    Z,
    /// Remove.
    X,
    /// Keep.
    K,
    /// Clean: keep only what identifies nobody.
    C,
    /// Replace the UID, consistently.
    U,
    /// Z, or D when a value is needed: done as D (valid objects first).
    ZD,
    /// X, or Z when the attribute is needed: done as Z.
    XZ,
    /// X, or D when a value is needed: done as D.
    XD,
    /// X, Z or D: done as D.
    XZD,
    /// X, Z, or U for the UIDs inside (reference sequences): kept, its items cleaned.
    XZU,
}

/// One row of the table: the tag (with a mask for repeating groups) and its action.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Group and element.
    pub tag: (u16, u16),
    /// Bits of group and element that must match (0xFF00 for 50xx/60xx groups).
    pub mask: (u16, u16),
    /// What to do.
    pub action: Action,
    /// The attribute's name in the standard.
    pub name: &'static str,
}

impl Rule {
    fn matches(&self, t: Tag) -> bool {
        t.group() & self.mask.0 == self.tag.0 && t.element() & self.mask.1 == self.tag.1
    }
}

/// casecast's Implementation Class UID (a `2.25.` UUID-derived UID).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.200425316939165012925617125069917395905";

/// Free-text descriptors the Clean Descriptors option keeps when they identify
/// nobody (their basic action would remove them).
pub const DESCRIPTORS: &[Tag] = &[
    tags::STUDY_DESCRIPTION,
    tags::SERIES_DESCRIPTION,
    tags::IMAGE_COMMENTS,
    tags::PROTOCOL_NAME,
    Tag(0x0018, 0x4000), // Acquisition Comments (retired, still met)
    tags::DERIVATION_DESCRIPTION,
    tags::PERFORMED_PROCEDURE_STEP_DESCRIPTION,
    tags::REQUESTED_PROCEDURE_DESCRIPTION,
    Tag(0x0032, 0x1030), // Reason for Study (retired)
    tags::ADMITTING_DIAGNOSES_DESCRIPTION,
    tags::ADDITIONAL_PATIENT_HISTORY,
    tags::PATIENT_COMMENTS,
    Tag(0x0032, 0x4000), // Study Comments (retired)
];

/// What identifies a device, kept with the Retain Device Identity option.
pub const DEVICE_IDENTITY: &[Tag] = &[
    tags::DEVICE_SERIAL_NUMBER,
    tags::STATION_NAME,
    tags::DETECTOR_ID,
    tags::DEVICE_UID,
    tags::DEVICE_LABEL,
    tags::GANTRY_ID,
    tags::PLATE_ID,
    tags::CASSETTE_ID,
    tags::GENERATOR_ID,
];

/// How to de-identify.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project secret: keys UIDs, pseudonyms and date shifts.
    pub secret: Vec<u8>,
    /// Keep free-text descriptors in which no PHI is found (on by default).
    pub clean_descriptors: bool,
    /// Keep dates, shifted back by a per-patient number of days, instead of
    /// removing them (off by default).
    pub shift_dates: bool,
    /// Keep device serial numbers, station names and the like (off by default).
    pub retain_device_identity: bool,
    /// Private attributes to keep: (group, private creator) pairs; all others go.
    pub private_allowed: Vec<(u16, String)>,
    /// Read every frame for burned-in text and black out what is PHI (on by
    /// default; needs tesseract).
    pub clean_pixels: bool,
    /// Render every frame (after cleaning) as PNG into the report.
    pub render_frames: bool,
    /// Header bands to black out whatever the OCR finds: (modality, fraction of the
    /// height from the top), for modalities known to burn a header in (e.g. `US`).
    pub header_masks: Vec<(String, f64)>,
    /// Read every picture, even a cross-sectional one (CT, MR, PET, NM) that says it
    /// has no burned-in annotation (off by default: those are taken at their word).
    pub read_all_pictures: bool,
    /// Longest one file may take, seconds; then it fails with the reason.
    pub max_seconds: u64,
    /// Most compressed pixel data decoded at once (a whole single picture, or one
    /// frame of a cine), bytes.
    pub max_decoded_bytes: u64,
    /// When this file's time is up (set by [`crate::batch`] as a file starts).
    pub deadline: Option<std::time::Instant>,
}

/// Modalities whose pictures are reconstructions, not screens: when they say
/// Burned In Annotation `NO`, they are not read for text unless asked.
pub const CROSS_SECTIONAL: &[&str] = &["CT", "MR", "PT", "NM"];

/// Whether `obj`'s pictures must be read for burned-in text: always, except a
/// cross-sectional picture that says it has none (PS3.3 C.7.6.1.1.7: Burned In
/// Annotation `NO`), unless `read_all_pictures`.
pub fn needs_reading(obj: &InMemDicomObject, opts: &Options) -> bool {
    let text = |t: Tag| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_uppercase()).unwrap_or_default();
    opts.read_all_pictures || !(text(tags::BURNED_IN_ANNOTATION) == "NO" && CROSS_SECTIONAL.contains(&text(tags::MODALITY).as_str()))
}

impl Options {
    /// The defaults with `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Options {
            secret: secret.into(),
            clean_descriptors: true,
            shift_dates: false,
            retain_device_identity: false,
            private_allowed: Vec::new(),
            clean_pixels: true,
            render_frames: false,
            header_masks: Vec::new(),
            read_all_pictures: false,
            max_seconds: 600,
            max_decoded_bytes: 1 << 30,
            deadline: None,
        }
    }

    /// This file's time.
    pub fn budget(&self) -> Budget {
        Budget { deadline: self.deadline, max_seconds: self.max_seconds }
    }
}

/// The time one file may still take.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Option<std::time::Instant>,
    max_seconds: u64,
}

impl Budget {
    /// Fails once the file's time is up, saying how far it got.
    pub fn in_time(&self, how_far: impl FnOnce() -> String) -> Result<(), DeidError> {
        match self.deadline {
            Some(d) if std::time::Instant::now() >= d => {
                Err(DeidError::OutOfTime(format!("gave up after {} s (cases.max_seconds_per_file): {}", self.max_seconds, how_far())))
            }
            _ => Ok(()),
        }
    }

    /// The time left (`None`: unbounded).
    pub fn left(&self) -> Option<std::time::Duration> {
        self.deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }
}

/// What de-identification did to one object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Attributes removed.
    pub removed: usize,
    /// Attributes emptied or given dummy values.
    pub replaced: usize,
    /// UIDs replaced.
    pub uids: usize,
    /// Private attributes removed.
    pub private_removed: usize,
    /// Descriptors scrubbed or removed because PHI was found in them.
    pub descriptors_cleaned: usize,
    /// Frames read for burned-in text (identical frames are read once).
    pub frames_read: usize,
    /// Burned-in words blacked out.
    pub words_blacked_out: usize,
    /// Pixel data that could not be checked for burned-in text (compressed, or a
    /// kind not handled yet), with the reason.
    pub pixels_unchecked: Option<String>,
    /// The frames as PNG, when asked for.
    pub frames_png: Vec<Vec<u8>>,
    /// Compressed pixel data was decoded (the output is uncompressed).
    pub decompressed: bool,
}

/// Why an object cannot be de-identified.
#[derive(Debug, thiserror::Error)]
pub enum DeidError {
    /// The object lacks what every DICOM instance has.
    #[error("not a usable DICOM instance: {0}")]
    Invalid(String),
    /// Not published: burned-in text is flagged and cannot be checked.
    #[error("quarantined: {0}")]
    Quarantined(String),
    /// The file's work took longer than it may.
    #[error("{0}")]
    OutOfTime(String),
}

/// The values that identify this patient, gathered before anything is changed; a
/// free-text descriptor containing one of them is not kept as it is.
#[derive(Debug, Default, Clone)]
struct Phi {
    terms: Vec<String>,
}

impl Phi {
    fn gather(obj: &InMemDicomObject) -> Phi {
        let mut terms = HashSet::new();
        let text = |t: Tag| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string());
        for t in [tags::PATIENT_NAME, tags::REFERRING_PHYSICIAN_NAME, tags::PERFORMING_PHYSICIAN_NAME, tags::OPERATORS_NAME] {
            if let Some(v) = text(t) {
                terms.extend(v.split(['^', ' ', '\\', ',']).filter(|w| w.len() >= 3).map(str::to_lowercase));
            }
        }
        for t in [
            tags::PATIENT_ID,
            Tag(0x0010, 0x1000), // Other Patient IDs (retired)
            tags::ACCESSION_NUMBER,
            tags::INSTITUTION_NAME,
            tags::PATIENT_BIRTH_DATE,
            tags::STUDY_ID,
        ] {
            if let Some(v) = text(t).filter(|v| v.len() >= 3) {
                terms.insert(v.to_lowercase());
            }
        }
        Phi { terms: terms.into_iter().collect() }
    }

    /// `text` with every known PHI term replaced; `None` if it still looks like it
    /// holds a date or an identifier (a run of six or more digits).
    fn scrub(&self, text: &str) -> Option<String> {
        let mut out = text.to_string();
        for term in &self.terms {
            while let Some(i) = out.to_lowercase().find(term.as_str()) {
                out.replace_range(i..i + term.len(), "***");
            }
        }
        let mut run = 0;
        for c in out.chars() {
            run = if c.is_ascii_digit() { run + 1 } else if matches!(c, '-' | '/' | '.') && run > 0 { run } else { 0 };
            if run >= 6 {
                return None;
            }
        }
        Some(out)
    }
}

/// Whether `s` is a UID: 1 to 64 characters, digits and dots, no empty component.
pub fn is_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.split('.').all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// De-identifies one DICOM file object in place; the file meta information follows
/// (its SOP Instance UID is the new one).
pub fn deidentify(file: &mut DefaultDicomObject, opts: &Options) -> Result<Report, DeidError> {
    deidentify_with_progress(file, opts, &mut crate::progress::ignore)
}

/// As [`deidentify`], telling `progress` what it does to the pixels as it goes
/// (decoding them, then reading each frame for burned-in text).
pub fn deidentify_with_progress(file: &mut DefaultDicomObject, opts: &Options, progress: &mut dyn FnMut(Step)) -> Result<Report, DeidError> {
    // Pictures that need no reading are not read, and the output does not claim it.
    let effective = Options { clean_pixels: opts.clean_pixels && needs_reading(file, opts), ..opts.clone() };
    let opts = &effective;
    let obj: &mut InMemDicomObject = file;
    if obj.element(tags::SOP_INSTANCE_UID).is_err() {
        return Err(DeidError::Invalid("no SOP Instance UID (0008,0018)".into()));
    }
    // One instance, one UID (found by fuzzing: two values became two UIDs in the
    // output's file meta group and name, a file no DICOM reader opens).
    let instances = obj.element(tags::SOP_INSTANCE_UID).ok().and_then(|e| e.to_multi_str().ok().map(|v| v.len())).unwrap_or(1);
    if instances != 1 {
        return Err(DeidError::Invalid(format!("a SOP Instance UID of {instances} values: an instance has one")));
    }
    // The SOP Class UID is kept, and goes into the file meta group: it must be one
    // (found by fuzzing: a mangled one made a file no DICOM reader opens).
    let class = obj.element(tags::SOP_CLASS_UID).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string());
    let meta_class = file.meta().media_storage_sop_class_uid.trim_end_matches(['\0', ' ']).to_string();
    if class.as_deref().is_some_and(|c| !is_uid(c)) || !(meta_class.is_empty() || is_uid(&meta_class)) {
        return Err(DeidError::Invalid("the SOP Class UID is not a UID (digits and dots, at most 64)".into()));
    }
    // A media directory lists files (with their patients' names); it is not an
    // instance to publish.
    if class.as_deref() == Some("1.2.840.10008.1.3.10") || meta_class == "1.2.840.10008.1.3.10" {
        return Err(DeidError::Invalid("a DICOMDIR (a media directory), not an instance: send the files it lists".into()));
    }
    let obj: &mut InMemDicomObject = file;
    let phi = Phi::gather(obj);
    let text = |t: Tag| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
    let (patient_id, patient_name) = (text(tags::PATIENT_ID), text(tags::PATIENT_NAME));
    let ctx = Context {
        opts,
        phi,
        pseudonym: uid::pseudonym(&opts.secret, &patient_id, &patient_name),
        shift_days: uid::date_shift_days(&opts.secret, &patient_id),
    };
    let mut report = Report::default();
    if opts.clean_pixels || opts.render_frames {
        // Compressed pictures are decoded to be read; they are written uncompressed.
        let frames = file.element(tags::NUMBER_OF_FRAMES).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1).max(1);
        let ts = file.meta().transfer_syntax().trim_end_matches('\0');
        if !matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99") {
            progress(Step::whole(Stage::Decoding, frames, 0.0));
        }
        let decoded = crate::pixels::decompress(file, opts.max_decoded_bytes);
        let obj: &mut InMemDicomObject = file;
        match decoded {
            Ok(d) => report.decompressed = d,
            Err(why) => report.pixels_unchecked = Some(why),
        }
        clean_pixels(obj, &ctx, &mut report, progress)?;
    }
    let obj: &mut InMemDicomObject = file;
    clean(obj, &ctx, &mut report, true);
    record_method(obj, opts);
    let sop = obj.element(tags::SOP_INSTANCE_UID).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches('\0').to_string());
    // The file meta group is rebuilt: the sender's AE titles and private information
    // identify where the object came from.
    file.update_meta(|m| {
        if let Some(sop) = sop {
            m.media_storage_sop_instance_uid = sop;
        }
        m.source_application_entity_title = None;
        m.sending_application_entity_title = None;
        m.receiving_application_entity_title = None;
        m.private_information_creator_uid = None;
        m.private_information = None;
        m.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_string();
        // Written inflated: dicom-rs's deflated output is one dciodvfy cannot read.
        if m.transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2.1.99" {
            m.transfer_syntax = "1.2.840.10008.1.2.1".to_string();
        }
        m.implementation_version_name = Some("CASECAST".to_string());
    });
    Ok(report)
}

/// Cleans frames one at a time, for pixel data streamed from a file too large to
/// hold: built from the object's header before de-identification (which holds the
/// PHI to look for), it remembers what it read, so identical frames are read once.
pub struct FrameCleaner {
    terms: burned::Terms,
    window: Option<(f64, f64)>,
    band: Option<(usize, usize, usize, usize)>,
    layout: crate::pixels::Layout,
    seen: std::collections::HashMap<u64, Vec<(usize, usize, usize, usize)>>,
    budget: Budget,
    /// Frames read (not counting repeats).
    pub frames_read: usize,
    /// Words blacked out.
    pub words_blacked_out: usize,
}

impl FrameCleaner {
    /// For `obj`'s pixel layout (native), before `obj` is de-identified.
    pub fn new(obj: &InMemDicomObject, layout: crate::pixels::Layout, opts: &Options) -> FrameCleaner {
        let modality = obj.element(tags::MODALITY).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
        FrameCleaner {
            terms: burned::Terms::gather(obj),
            window: first_window(obj),
            band: header_band(&opts.header_masks, &modality, &layout),
            layout,
            seen: Default::default(),
            budget: opts.budget(),
            frames_read: 0,
            words_blacked_out: 0,
        }
    }

    /// Reads one frame and blacks out its PHI in place.
    pub fn clean(&mut self, frame: &mut [u8]) -> Result<(), DeidError> {
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            frame.hash(&mut h);
            h.finish()
        };
        let boxes = match self.seen.get(&key) {
            Some(b) => b.clone(),
            None => {
                let (read, frames) = (self.frames_read, self.layout.frames);
                self.budget.in_time(|| format!("{read} of {frames} frames read for burned-in text"))?;
                self.frames_read += 1;
                let gray = crate::pixels::frame_to_gray(&self.layout, frame, self.window);
                let timeout = self.budget.left().map_or(crate::ocr::TESSERACT_TIMEOUT, |left| left.min(crate::ocr::TESSERACT_TIMEOUT));
                let budget = self.budget;
                let words = crate::ocr::words(&gray, self.layout.cols, self.layout.rows, timeout)
                    // Stopped because the file's time ran out: that is the reason.
                    .map_err(|e| budget.in_time(|| format!("{read} of {frames} frames read for burned-in text")).err().unwrap_or(DeidError::Quarantined(e)))?;
                let b = self.terms.boxes(&words);
                self.seen.insert(key, b.clone());
                b
            }
        };
        self.words_blacked_out += boxes.len();
        crate::pixels::black_out(&self.layout, frame, &boxes);
        if let Some(band) = self.band {
            crate::pixels::black_out(&self.layout, frame, &[band]);
        }
        Ok(())
    }
}

/// Reads every frame for burned-in text and blacks out the PHI in the pixel data;
/// renders the frames if asked. Identical frames (a still cine) are read once.
fn clean_pixels(obj: &mut InMemDicomObject, ctx: &Context, report: &mut Report, progress: &mut dyn FnMut(Step)) -> Result<(), DeidError> {
    use crate::pixels::{Layout, NativePixels};
    let flagged = obj.element(tags::BURNED_IN_ANNOTATION).ok().and_then(|e| e.to_str().ok()).is_some_and(|s| s.trim() == "YES");
    if crate::pixels::pixel_data_tag(obj).is_none() {
        return Ok(());
    }
    let layout = Layout::of(obj);
    let taken = if layout.is_ok() { NativePixels::take(obj) } else { None };
    let (layout, mut px) = match (layout, taken) {
        (Ok(l), Some(px)) => (l, px),
        (layout, _) => {
            let why = report.pixels_unchecked.clone().or(layout.err()).unwrap_or_else(|| "compressed pixel data".into());
            // Pictures that need reading (all but those that say Burned In Annotation
            // NO on cross-sectional modalities) and cannot be read are not published.
            if ctx.opts.clean_pixels {
                let said = if flagged { "Burned In Annotation is YES" } else { "the picture may carry burned-in text (Burned In Annotation is not NO)" };
                return Err(DeidError::Quarantined(format!("{said} and the pixels cannot be checked: {why}")));
            }
            report.pixels_unchecked = Some(why);
            return Ok(());
        }
    };
    let size = layout.frame_bytes();
    if px.bytes.len() < size * layout.frames {
        return Err(DeidError::Invalid(format!("pixel data holds {} bytes, {} frames of {size} expected", px.bytes.len(), layout.frames)));
    }
    // One cleaner per object, as for streamed files: the same reading, the same
    // boxes, the same memory of frames already read.
    let mut cleaner = ctx.opts.clean_pixels.then(|| FrameCleaner::new(obj, layout.clone(), ctx.opts));
    let window = first_window(obj);
    for i in 0..layout.frames {
        let frame = &mut px.bytes[i * size..(i + 1) * size];
        if let Some(c) = cleaner.as_mut() {
            progress(Step::at(Stage::ReadingText, i as u64 + 1, layout.frames as u64));
            c.clean(frame)?;
        }
        if ctx.opts.render_frames {
            let gray = crate::pixels::frame_to_gray(&layout, frame, window);
            report.frames_png.push(crate::pixels::png(&gray, layout.cols, layout.rows).map_err(DeidError::Invalid)?);
        }
    }
    if let Some(c) = cleaner {
        (report.frames_read, report.words_blacked_out) = (c.frames_read, c.words_blacked_out);
    }
    px.put_back(obj);
    if ctx.opts.clean_pixels {
        // Checked and cleaned: no burned-in identification is left.
        obj.put(DataElement::new(tags::BURNED_IN_ANNOTATION, VR::CS, PrimitiveValue::from("NO")));
    }
    Ok(())
}

/// The first VOI window (center, width), if the object has one.
fn first_window(obj: &InMemDicomObject) -> Option<(f64, f64)> {
    let number = |t: Tag| obj.element(t).ok().and_then(|e| e.to_multi_float64().ok()).and_then(|v| v.first().copied());
    number(tags::WINDOW_CENTER).zip(number(tags::WINDOW_WIDTH))
}

/// The configured header band of this modality, as a box over the frame's top.
fn header_band(masks: &[(String, f64)], modality: &str, l: &crate::pixels::Layout) -> Option<(usize, usize, usize, usize)> {
    let (_, fraction) = masks.iter().find(|(m, _)| m.eq_ignore_ascii_case(modality))?;
    let h = ((l.rows as f64) * fraction.clamp(0.0, 1.0)).ceil() as usize;
    (h > 0).then_some((0, 0, l.cols, h))
}

struct Context<'a> {
    opts: &'a Options,
    phi: Phi,
    pseudonym: (String, String),
    shift_days: i64,
}

fn rule(tag: Tag) -> Option<&'static Rule> {
    table::BASIC_PROFILE.iter().find(|r| r.matches(tag))
}

/// Applies the rules to every attribute of `obj` and of its sequences' items.
fn clean(obj: &mut InMemDicomObject, ctx: &Context, report: &mut Report, top: bool) {
    // Overlay Data is removed (X: an overlay can hold burned-in text), and with it
    // the rest of its overlay (the Overlay Plane module, whose Type 1 attributes
    // would be left without their data): each 60xx group as a whole.
    let overlays: HashSet<u16> = obj.tags().filter(|t| (0x6000..=0x60FF).contains(&t.group()) && t.element() == 0x3000).map(|t| t.group()).collect();
    for tag in obj.tags().filter(|t| overlays.contains(&t.group())).collect::<Vec<_>>() {
        obj.remove_element(tag);
        report.removed += 1;
    }
    let all: Vec<Tag> = obj.tags().collect();
    let private_ok = private_blocks_allowed(obj, &ctx.opts.private_allowed);
    for tag in all {
        if tag.element() == 0 {
            // Group lengths are retired and would be wrong now.
            obj.remove_element(tag);
            continue;
        }
        if tag.group() % 2 == 1 {
            // Private data (gggg,xxee) belongs to the block of creator (gggg,00xx).
            let block = if tag.element() < 0x100 { tag.element() } else { tag.element() >> 8 };
            if !private_ok.contains(&(tag.group(), block)) {
                obj.remove_element(tag);
                report.private_removed += 1;
            }
            continue;
        }
        let Some(elem) = obj.take(tag) else { continue };
        let vr = elem.vr();
        let action = if top && tag == tags::PATIENT_NAME {
            Some(Action::D)
        } else if ctx.opts.retain_device_identity && DEVICE_IDENTITY.contains(&tag) {
            Some(Action::K)
        } else if ctx.opts.clean_descriptors && DESCRIPTORS.contains(&tag) {
            Some(Action::C)
        } else if ctx.opts.shift_dates && matches!(vr, VR::DA | VR::DT) && rule(tag).is_some() {
            // Shifted, not removed: intervals between the patient's dates survive.
            let shifted = shift(&elem.to_str().unwrap_or_default(), vr, ctx.shift_days);
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(shifted)));
            report.replaced += 1;
            continue;
        } else {
            rule(tag).map(|r| r.action)
        };
        // Sequences keep the structure their modules require: see `sequence_plan`.
        if vr == VR::SQ && let Some(plan) = action.and_then(|a| sequence_plan(tag, a, &elem)) {
            report.replaced += 1;
            let new = match plan {
                Sequence::Cleaned => with_items_cleaned(elem, ctx, report),
                Sequence::Dummy => dummy_items(with_items_cleaned(elem, ctx, report), ctx),
                Sequence::Empty => DataElement::empty(tag, vr),
            };
            obj.put(new);
            continue;
        }
        let new = match action {
            None | Some(Action::K) | Some(Action::XZU) => Some(with_items_cleaned(elem, ctx, report)),
            Some(Action::X) => None,
            Some(Action::Z) | Some(Action::XZ) => Some(DataElement::empty(tag, vr)),
            Some(Action::D) | Some(Action::ZD) | Some(Action::XD) | Some(Action::XZD) => Some(dummy(tag, vr, &elem, ctx)),
            Some(Action::U) => {
                report.uids += 1;
                let v = elem.to_str().unwrap_or_default();
                let mapped: Vec<String> = v.split('\\').map(|u| uid::replace_uid(&ctx.opts.secret, u)).collect();
                Some(DataElement::new(tag, VR::UI, PrimitiveValue::from(mapped.join("\\"))))
            }
            Some(Action::C) => match elem.to_str().ok().and_then(|t| ctx.phi.scrub(&t).map(|s| (s != t, s))) {
                Some((changed, s)) => {
                    report.descriptors_cleaned += usize::from(changed);
                    Some(DataElement::new(tag, vr, PrimitiveValue::from(s)))
                }
                None => {
                    report.descriptors_cleaned += 1;
                    None
                }
            },
        };
        match new {
            Some(e) => {
                if !matches!(action, None | Some(Action::K) | Some(Action::XZU)) {
                    report.replaced += 1;
                }
                obj.put(e);
            }
            None => report.removed += 1,
        }
    }
}

/// The (group, block) pairs of the private blocks whose creator is allowed.
fn private_blocks_allowed(obj: &InMemDicomObject, allowed: &[(u16, String)]) -> HashSet<(u16, u16)> {
    if allowed.is_empty() {
        return HashSet::new();
    }
    obj.tags()
        .filter(|t| t.group() % 2 == 1 && (0x10..=0xFF).contains(&t.element()))
        .filter(|t| {
            let creator = obj.element(*t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
            allowed.iter().any(|(g, c)| *g == t.group() && *c == creator)
        })
        .map(|t| (t.group(), t.element()))
        .collect()
}

type Elem = DataElement<InMemDicomObject>;

/// A kept element, with its sequence items (if any) de-identified too.
fn with_items_cleaned(elem: Elem, ctx: &Context, report: &mut Report) -> Elem {
    let (header, value) = elem.into_parts();
    match value {
        Value::Sequence(seq) => {
            let mut items = seq.into_items();
            for item in items.iter_mut() {
                clean(item, ctx, report, false);
            }
            DataElement::new(header.tag, header.vr, DataSetSequence::new(items, Length::UNDEFINED))
        }
        other => DataElement::new(header.tag, header.vr, other),
    }
}

/// Attributes a reference item holds: which object it points to.
const REFERENCE: &[Tag] = &[
    tags::REFERENCED_SOP_CLASS_UID,
    tags::REFERENCED_SOP_INSTANCE_UID,
    tags::REFERENCED_FRAME_NUMBER,
    tags::REFERENCED_SEGMENT_NUMBER,
];

/// Sequences whose items are the object's content (an SR document's tree, a
/// presentation state's or a waveform's annotations): their dummy value is their
/// items, each de-identified by the table.
const CONTENT: &[Tag] = &[tags::CONTENT_SEQUENCE, tags::GRAPHIC_ANNOTATION_SEQUENCE, tags::WAVEFORM_ANNOTATION_SEQUENCE];

/// What becomes of a sequence the table empties, replaces or removes.
enum Sequence {
    /// Its items kept, each de-identified by the table.
    Cleaned,
    /// Its items kept as dummies: de-identified by the table, then every text
    /// value left replaced by a dummy (a person's identification code goes).
    Dummy,
    /// Emptied.
    Empty,
}

/// Which type a sequence has depends on the IOD (Referenced Study Sequence is Type
/// 3 in General Study, Type 2 elsewhere), and an empty Type 1 or 3 sequence, or a
/// missing Type 1 or 2 one, is an error readers may refuse (dciodvfy finds them).
/// So, where the table allows it:
/// - a sequence of references only (Referenced SOP Class and Instance UIDs, frame
///   and segment numbers) is kept with its UIDs replaced, as `XZU` sequences are: it
///   identifies nobody and is valid whatever its type;
/// - `D` (a dummy value, PS3.15 E.1) is a dummy item: the content sequences keep
///   their items de-identified, the others get dummy items; a Type 1 sequence keeps
///   its item;
/// - `Z` and `XZ` empty it (valid for Type 2, which these are where they are
///   required); `X` removes it (`None`: as the table says).
fn sequence_plan(tag: Tag, action: Action, elem: &Elem) -> Option<Sequence> {
    let references_only = elem.items().is_some_and(|items| !items.is_empty() && items.iter().all(|i| i.tags().all(|t| REFERENCE.contains(&t))));
    let has_items = elem.items().is_some_and(|items| !items.is_empty());
    match action {
        Action::Z | Action::XZ | Action::D | Action::ZD | Action::XD | Action::XZD if references_only => Some(Sequence::Cleaned),
        Action::D | Action::ZD | Action::XD | Action::XZD if has_items && CONTENT.contains(&tag) => Some(Sequence::Cleaned),
        Action::D | Action::ZD | Action::XD | Action::XZD if has_items => Some(Sequence::Dummy),
        Action::Z | Action::XZ | Action::D | Action::ZD | Action::XD | Action::XZD => Some(Sequence::Empty),
        _ => None,
    }
}

/// A de-identified sequence's items with every text value left (codes, names a
/// rule did not reach) replaced by a dummy, at any depth.
fn dummy_items(elem: Elem, ctx: &Context) -> Elem {
    let (header, value) = elem.into_parts();
    let Value::Sequence(seq) = value else { return DataElement::new(header.tag, header.vr, value) };
    let mut items = seq.into_items();
    for item in items.iter_mut() {
        let all: Vec<Tag> = item.tags().collect();
        for t in all {
            let Some(e) = item.take(t) else { continue };
            let vr = e.vr();
            let new = match vr {
                VR::SQ => dummy_items(e, ctx),
                VR::PN | VR::LO | VR::LT | VR::ST | VR::UT | VR::UC | VR::UR | VR::SH | VR::AE | VR::CS | VR::DA | VR::TM | VR::DT | VR::AS => {
                    dummy(t, vr, &e, ctx)
                }
                _ => e,
            };
            item.put(new);
        }
    }
    DataElement::new(header.tag, header.vr, DataSetSequence::new(items, Length::UNDEFINED))
}

/// A dummy value of the element's VR (the patient's name and ID: the pseudonym).
fn dummy(tag: Tag, vr: VR, elem: &Elem, ctx: &Context) -> Elem {
    if tag == tags::PATIENT_NAME {
        return DataElement::new(tag, vr, PrimitiveValue::from(ctx.pseudonym.0.as_str()));
    }
    if tag == tags::PATIENT_ID {
        return DataElement::new(tag, vr, PrimitiveValue::from(ctx.pseudonym.1.as_str()));
    }
    let text = |s: &str| DataElement::new(tag, vr, PrimitiveValue::from(s));
    match vr {
        VR::PN | VR::LO | VR::LT | VR::ST | VR::UT | VR::UC | VR::UR | VR::SH | VR::AE | VR::CS => text("ANONYMIZED"),
        VR::DA => text("19000101"),
        VR::TM => text("000000"),
        VR::DT => text("19000101000000"),
        VR::AS => text("000D"),
        VR::IS | VR::DS => text("0"),
        VR::UI => {
            let v = elem.to_str().unwrap_or_default();
            text(&uid::replace_uid(&ctx.opts.secret, &v))
        }
        VR::US => DataElement::new(tag, vr, PrimitiveValue::from(0u16)),
        VR::SS => DataElement::new(tag, vr, PrimitiveValue::from(0i16)),
        VR::UL => DataElement::new(tag, vr, PrimitiveValue::from(0u32)),
        VR::SL => DataElement::new(tag, vr, PrimitiveValue::from(0i32)),
        VR::FL => DataElement::new(tag, vr, PrimitiveValue::from(0f32)),
        VR::FD => DataElement::new(tag, vr, PrimitiveValue::from(0f64)),
        VR::SQ => DataElement::new(tag, vr, DataSetSequence::<InMemDicomObject>::new(Vec::new(), Length::UNDEFINED)),
        // Binary values: zeros, as long as the original (at least one word).
        VR::OB | VR::OW | VR::OD | VR::OF | VR::OL | VR::OV | VR::UN => {
            let len = elem.to_bytes().map(|b| b.len()).unwrap_or(0).max(2).next_multiple_of(2);
            DataElement::new(tag, vr, PrimitiveValue::U8(vec![0u8; len].into()))
        }
        _ => DataElement::empty(tag, vr),
    }
}

/// A DA or DT value moved `days` back (each value of a multi-valued one); what does
/// not parse becomes the dummy date.
fn shift(value: &str, vr: VR, days: i64) -> String {
    value
        .split('\\')
        .map(|v| {
            let v = v.trim();
            let parsed = (v.len() >= 8)
                .then(|| Some((v[0..4].parse::<i64>().ok()?, v[4..6].parse::<i64>().ok()?, v[6..8].parse::<i64>().ok()?)))
                .flatten();
            match parsed {
                Some((y, m, d)) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
                    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) - days);
                    let rest = if vr == VR::DT { &v[8..] } else { "" };
                    format!("{y:04}{m:02}{d:02}{rest}")
                }
                _ => if vr == VR::DT { "19000101000000" } else { "19000101" }.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\\")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Records how the object was de-identified, as PS3.15 E.1.1 asks.
fn record_method(obj: &mut InMemDicomObject, opts: &Options) {
    let mut codes = vec![("113100", "Basic Application Confidentiality Profile")];
    // One value per part (LO values are at most 64 characters).
    let mut method = vec![format!("casecast PS3.15 E.1-1 {} Basic Profile", table::EDITION)];
    if opts.clean_pixels {
        codes.push(("113101", "Clean Pixel Data Option"));
        method.push("Clean Pixel Data".into());
    }
    if opts.clean_descriptors {
        codes.push(("113105", "Clean Descriptors Option"));
        method.push("Clean Descriptors".into());
    }
    if opts.shift_dates {
        codes.push(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"));
        method.push("Modified Dates".into());
    }
    if opts.retain_device_identity {
        codes.push(("113109", "Retain Device Identity Option"));
        method.push("Retain Device Identity".into());
    }
    let items: Vec<InMemDicomObject> = codes
        .into_iter()
        .map(|(value, meaning)| {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(value)),
                DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, PrimitiveValue::from("DCM")),
                DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(meaning)),
            ])
        })
        .collect();
    obj.put(DataElement::new(tags::PATIENT_IDENTITY_REMOVED, VR::CS, PrimitiveValue::from("YES")));
    obj.put(DataElement::new(tags::DEIDENTIFICATION_METHOD, VR::LO, PrimitiveValue::from(method.join("\\"))));
    obj.put(DataElement::new(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED)));
    let temporal = if opts.shift_dates { "MODIFIED" } else { "REMOVED" };
    obj.put(DataElement::new(tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, VR::CS, PrimitiveValue::from(temporal)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_rule_per_tag_and_the_key_attributes() {
        let mut seen = HashSet::new();
        for r in table::BASIC_PROFILE {
            assert!(seen.insert((r.tag, r.mask)), "{} twice", r.name);
        }
        assert!(table::BASIC_PROFILE.len() > 600);
        let action = |t: Tag| rule(t).map(|r| r.action);
        assert_eq!(action(tags::PATIENT_NAME), Some(Action::Z));
        assert_eq!(action(tags::STUDY_INSTANCE_UID), Some(Action::U));
        assert_eq!(action(tags::ACCESSION_NUMBER), Some(Action::Z));
        assert_eq!(action(tags::PATIENT_BIRTH_DATE), Some(Action::Z));
        assert_eq!(action(Tag(0x6002, 0x4000)), Some(Action::X), "overlay comments in any 60xx group");
        assert_eq!(action(tags::MODALITY), None, "not in the table: kept");
    }

    /// Every row of Table E.1-1 (but the repeating-group ones), given a value in an
    /// object, ends as its action says: X gone, Z empty, D replaced, K kept, U a new
    /// `2.25.` UID, and the combined codes as one of their parts; sequences kept are
    /// cleaned inside.
    #[test]
    fn every_row_of_the_table_is_applied_as_the_standard_asks() {
        use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
        let dict = dicom_dictionary_std::StandardDataDictionary;
        let recorded = [tags::PATIENT_IDENTITY_REMOVED, tags::DEIDENTIFICATION_METHOD, tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, tags::SOP_INSTANCE_UID];
        let inner = || {
            InMemDicomObject::from_element_iter([
                DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE^JOHN")),
                DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.826.0.1.3680043.8.498.77")),
            ])
        };
        let mut rows = Vec::new();
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.826.0.1.3680043.8.498.1")));
        for (i, r) in table::BASIC_PROFILE.iter().enumerate() {
            let tag = Tag(r.tag.0, r.tag.1);
            if r.mask != (0xFFFF, 0xFFFF) || tag.group() == 0x0002 || recorded.contains(&tag) {
                continue;
            }
            let Some(vr) = dict.by_tag(tag).and_then(|e| match e.vr() {
                VirtualVr::Exact(vr) => Some(vr),
                _ => None,
            }) else {
                continue;
            };
            let text = |s: &str| PrimitiveValue::from(s);
            let value: Value<InMemDicomObject> = match vr {
                VR::DA => text("19610412").into(),
                VR::TM => text("101500").into(),
                VR::DT => text("19610412101500").into(),
                VR::UI => text(&format!("1.2.826.0.1.3680043.8.498.{}", 1000 + i)).into(),
                VR::AS => text("061Y").into(),
                VR::IS => text("7").into(),
                VR::DS => text("7.5").into(),
                VR::PN => text("DOE^JOHN").into(),
                VR::AE | VR::CS | VR::SH | VR::LO | VR::ST | VR::LT | VR::UT | VR::UC | VR::UR => text("ORIGINAL").into(),
                VR::US => PrimitiveValue::from(7u16).into(),
                VR::SS => PrimitiveValue::from(7i16).into(),
                VR::UL => PrimitiveValue::from(7u32).into(),
                VR::SL => PrimitiveValue::from(7i32).into(),
                VR::FL => PrimitiveValue::from(7f32).into(),
                VR::FD => PrimitiveValue::from(7f64).into(),
                VR::OB | VR::UN => PrimitiveValue::U8(vec![1, 2, 3, 4].into()).into(),
                VR::SQ => DataSetSequence::new(vec![inner()], Length::UNDEFINED).into(),
                _ => continue,
            };
            obj.put(DataElement::new(tag, vr, value));
            rows.push((tag, vr, r));
        }
        assert!(rows.len() > 500, "{} rows tried", rows.len());
        let original = obj.clone();
        let mut file = as_file(obj);
        let opts = Options { clean_descriptors: false, clean_pixels: false, ..Options::new(b"secret".to_vec()) };
        deidentify(&mut file, &opts).unwrap();
        let out: &InMemDicomObject = &file;
        let str_of = |o: &InMemDicomObject, t: Tag| o.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim_end_matches(['\0', ' ']).to_string());
        let items_clean = |t: Tag| match out.element(t).map(|e| e.value()) {
            Ok(Value::Sequence(seq)) => seq.items().iter().all(|item| {
                str_of(item, tags::PATIENT_NAME).is_none_or(|n| !n.contains("DOE"))
                    && str_of(item, tags::REFERENCED_SOP_INSTANCE_UID).is_none_or(|u| u.starts_with("2.25."))
            }),
            _ => false,
        };
        for (tag, vr, r) in rows {
            let before = str_of(&original, tag);
            let after = out.element(tag).ok();
            let empty = after.is_some_and(|e| e.header().len.0 == 0 || matches!(e.value(), Value::Primitive(PrimitiveValue::Empty)) || str_of(out, tag).is_some_and(|s| s.is_empty()));
            let replaced = after.is_some() && (vr == VR::SQ && matches!(after.unwrap().value(), Value::Sequence(s) if s.items().is_empty())
                || str_of(out, tag) != before && !empty);
            let ok = match r.action {
                Action::X => after.is_none(),
                Action::Z | Action::XZ if tag == tags::PATIENT_NAME => str_of(out, tag).is_some_and(|n| n.starts_with("ANON^")),
                Action::Z | Action::XZ => empty,
                // A sequence's dummy value is an item, de-identified (`sequence_plan`).
                Action::D | Action::ZD | Action::XD | Action::XZD if vr == VR::SQ => items_clean(tag) && out.element(tag).is_ok_and(|e| e.items().is_some_and(|i| i.len() == 1)),
                Action::D | Action::ZD | Action::XD | Action::XZD => replaced || (empty && r.action != Action::D),
                Action::K if vr == VR::SQ => items_clean(tag),
                Action::K => str_of(out, tag) == before,
                Action::U => str_of(out, tag).is_some_and(|u| u.starts_with("2.25.") && Some(&u) != before.as_ref()),
                Action::C => str_of(out, tag).is_none_or(|v| !v.contains("DOE")),
                Action::XZU => after.is_none() || empty || (vr == VR::SQ && items_clean(tag)) || str_of(out, tag).is_some_and(|u| u.starts_with("2.25.")),
            };
            assert!(ok, "{} {tag} {vr:?}: action {:?}, {before:?} became {:?}", r.name, r.action, str_of(out, tag));
        }
    }

    /// `obj` as a Secondary Capture file in Explicit VR Little Endian.
    fn as_file(obj: InMemDicomObject) -> DefaultDicomObject {
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.826.0.1.3680043.8.498.1")
            .transfer_syntax("1.2.840.10008.1.2.1")
            .build()
            .unwrap();
        obj.with_exact_meta(meta)
    }

    /// What dciodvfy found in outputs and not in their inputs: a Type 3 reference
    /// sequence left empty, Overlay Data removed from a whole overlay.
    #[test]
    fn sequences_and_overlays_keep_the_structure_their_modules_need() {
        let reference = InMemDicomObject::from_element_iter([
            DataElement::new(tags::REFERENCED_SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.3.1.2.3.1")),
            DataElement::new(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.826.0.1.3680043.8.498.77")),
        ]);
        let person = InMemDicomObject::from_element_iter([
            DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from("EMP-4411")),
            DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from("Staff ID of Dr Doe")),
        ]);
        let seq = |t, item: &InMemDicomObject| DataElement::new(t, VR::SQ, DataSetSequence::new(vec![item.clone()], Length::UNDEFINED));
        let mut obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.826.0.1.3680043.8.498.1")),
            seq(tags::REFERENCED_STUDY_SEQUENCE, &reference),
            seq(tags::PERSON_IDENTIFICATION_CODE_SEQUENCE, &person),
            DataElement::new(Tag(0x6002, 0x0010), VR::US, PrimitiveValue::from(2u16)),
            DataElement::new(Tag(0x6002, 0x0040), VR::CS, PrimitiveValue::from("G")),
            DataElement::new(Tag(0x6002, 0x3000), VR::OW, PrimitiveValue::U8(vec![0xFF; 4].into())),
        ]);
        obj.put(seq(tags::ACQUISITION_CONTEXT_SEQUENCE, &person));
        let mut file = as_file(obj);
        deidentify(&mut file, &Options { clean_pixels: false, ..Options::new(b"secret".to_vec()) }).unwrap();
        let items = |t| file.element(t).ok().and_then(|e| e.items().map(|i| i.to_vec()));
        // A reference: kept, its UID replaced.
        let refs = items(tags::REFERENCED_STUDY_SEQUENCE).expect("kept");
        let uid = refs[0].element(tags::REFERENCED_SOP_INSTANCE_UID).unwrap().to_str().unwrap().to_string();
        assert!(uid.starts_with("2.25."), "{uid}");
        // D: a dummy item, nothing of the person's code left.
        let dummy = items(tags::PERSON_IDENTIFICATION_CODE_SEQUENCE).expect("a dummy item");
        assert_eq!(dummy.len(), 1);
        assert_eq!(dummy[0].element(tags::CODE_VALUE).unwrap().to_str().unwrap(), "ANONYMIZED");
        assert_eq!(dummy[0].element(tags::CODE_MEANING).unwrap().to_str().unwrap(), "ANONYMIZED");
        // XZ: emptied (Type 2 where it is required).
        assert_eq!(items(tags::ACQUISITION_CONTEXT_SEQUENCE).map(|i| i.len()), Some(0));
        // The overlay goes whole.
        assert!(file.tags().all(|t| t.group() != 0x6002), "{:?}", file.tags().collect::<Vec<_>>());
    }

    #[test]
    fn descriptors_keep_what_identifies_nobody() {
        let phi = Phi { terms: vec!["doe".into(), "st. elsewhere".into()] };
        assert_eq!(phi.scrub("CT chest w/o contrast").as_deref(), Some("CT chest w/o contrast"));
        assert_eq!(phi.scrub("Dr DOE review").as_deref(), Some("Dr *** review"));
        assert_eq!(phi.scrub("follow-up 2023-04-05"), None, "a date");
        assert_eq!(phi.scrub("MRN 12345678"), None, "an identifier");
    }

    #[test]
    fn cross_sectional_pictures_that_say_no_burned_in_text_are_not_read() {
        let obj = |modality: &str, burned: Option<&str>| {
            let mut o = InMemDicomObject::new_empty();
            o.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from(modality)));
            if let Some(b) = burned {
                o.put(DataElement::new(tags::BURNED_IN_ANNOTATION, VR::CS, PrimitiveValue::from(b)));
            }
            o
        };
        let opts = Options::new("s");
        assert!(!needs_reading(&obj("CT", Some("NO")), &opts));
        assert!(needs_reading(&obj("CT", None), &opts), "not said: read");
        assert!(needs_reading(&obj("US", Some("NO")), &opts), "a screen capture is read anyway");
        assert!(needs_reading(&obj("MR", Some("YES")), &opts));
        assert!(needs_reading(&obj("CT", Some("NO")), &Options { read_all_pictures: true, ..opts }));
    }

    #[test]
    fn header_bands_cover_the_top_of_their_modality_only() {
        let l = crate::pixels::Layout::grey(480, 640, 8, 1);
        let masks = vec![("US".to_string(), 0.1)];
        assert_eq!(header_band(&masks, "us", &l), Some((0, 0, 640, 48)));
        assert_eq!(header_band(&masks, "CT", &l), None);
        assert_eq!(header_band(&[("US".into(), 0.0)], "US", &l), None);
    }

    #[test]
    fn dates_shift_back_across_months_and_years() {
        assert_eq!(shift("20240301", VR::DA, 1), "20240229");
        assert_eq!(shift("20240101\\20240110", VR::DA, 10), "20231222\\20231231");
        assert_eq!(shift("20240301120000.5", VR::DT, 1), "20240229120000.5");
        assert_eq!(shift("garbage", VR::DA, 5), "19000101");
    }
}
