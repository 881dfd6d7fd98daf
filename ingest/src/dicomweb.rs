//! DICOMweb bodies (PS3.18): DICOM JSON for QIDO-RS and metadata, and the
//! `multipart/related` bodies WADO-RS sends and STOW-RS receives.

use dicom_object::InMemDicomObject;
use serde_json::{Value, json};

use crate::store::{Instance, Study};

/// An object's data set as DICOM JSON (PS3.18 F.2); pixel data is not in it.
pub fn to_json(obj: &InMemDicomObject) -> Value {
    let mut v = dicom_json::to_value(obj).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        m.remove("7FE00010");
    }
    v
}

fn attr(vr: &str, values: Vec<Value>) -> Value {
    if values.is_empty() { json!({ "vr": vr }) } else { json!({ "vr": vr, "Value": values }) }
}

fn text(vr: &str, s: &str) -> Value {
    if s.is_empty() { attr(vr, vec![]) } else { attr(vr, vec![json!(s)]) }
}

fn int(vr: &str, n: Option<i64>) -> Value {
    attr(vr, n.map(|n| vec![json!(n)]).unwrap_or_default())
}

/// A study's QIDO-RS attributes.
pub fn study_json(s: &Study) -> Value {
    json!({
        "0020000D": text("UI", &s.study_uid),
        "00100010": attr("PN", vec![json!({ "Alphabetic": s.patient })]),
        "00100020": text("LO", &s.patient_id),
        "00080050": attr("SH", vec![]),
        "00080020": text("DA", &s.study_date),
        "00081030": text("LO", &s.description),
        "00080061": attr("CS", s.modalities.iter().map(|m| json!(m)).collect()),
        "00201206": int("IS", Some(s.series_count)),
        "00201208": int("IS", Some(s.instance_count)),
    })
}

/// A series' QIDO-RS attributes, from its instances (at least one).
pub fn series_json(instances: &[&Instance]) -> Value {
    let i = instances[0];
    json!({
        "0020000D": text("UI", &i.study_uid),
        "0020000E": text("UI", &i.series_uid),
        "00080060": text("CS", &i.modality),
        "0008103E": text("LO", &i.series_description),
        "00200011": int("IS", i.series_number),
        "00201209": int("IS", Some(instances.len() as i64)),
    })
}

/// An instance's QIDO-RS attributes.
pub fn instance_json(i: &Instance) -> Value {
    json!({
        "0020000D": text("UI", &i.study_uid),
        "0020000E": text("UI", &i.series_uid),
        "00080016": text("UI", &i.sop_class),
        "00080018": text("UI", &i.sop_uid),
        "00200013": int("IS", i.number),
        "00280008": int("IS", Some(i.frames)),
        "00280010": int("US", Some(i.rows)),
        "00280011": int("US", Some(i.cols)),
    })
}

/// Value representations whose values are bulk data (PS3.18 F.2.6): in metadata they
/// are given by reference (`BulkDataURI`), not inline.
const BULK_VRS: [&str; 7] = ["OB", "OD", "OF", "OL", "OV", "OW", "UN"];

/// Pixel Data's tag in DICOM JSON.
pub const PIXEL_DATA_TAG: &str = "7FE00010";

/// One instance's metadata as WADO-RS answers it: its top-level bulk elements (the
/// binary VRs, which the stored header holds inline) replaced by a `BulkDataURI` of
/// `{instance_url}/bulk/{tag}`, and, when `pixel_vr` is given (the object's pixel
/// data is native and served), Pixel Data by reference too. Elements inside
/// sequences stay inline.
pub fn with_bulk_data(item: &mut Value, instance_url: &str, pixel_vr: Option<&str>) {
    let Some(map) = item.as_object_mut() else { return };
    for (tag, attr) in map.iter_mut() {
        let Some(a) = attr.as_object_mut() else { continue };
        let bulk = a.get("vr").and_then(Value::as_str).is_some_and(|vr| BULK_VRS.contains(&vr));
        if bulk && a.remove("InlineBinary").is_some() {
            a.insert("BulkDataURI".into(), json!(format!("{instance_url}/bulk/{tag}")));
        }
    }
    if let Some(vr) = pixel_vr {
        map.insert(PIXEL_DATA_TAG.into(), json!({ "vr": vr, "BulkDataURI": format!("{instance_url}/bulk/{PIXEL_DATA_TAG}") }));
    }
}

/// The value of the top-level bulk element `tag` (`GGGGEEEE`, any case) of a stored
/// header, as its bytes; `None` when it has none inline (absent, empty, or not
/// binary).
pub fn bulk_value(item: &Value, tag: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let attr = item.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag))?.1;
    let vr = attr.get("vr").and_then(Value::as_str)?;
    if !BULK_VRS.contains(&vr) {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(attr.get("InlineBinary")?.as_str()?).ok()
}

/// The longest side of a thumbnail when the client names no viewport.
pub const THUMBNAIL_SIDE: usize = 128;

/// A thumbnail (PS3.18 "thumbnail" resources) of one native frame of the object
/// whose header (DICOM JSON, as stored) is `header`: the frame as the viewer renders
/// it (grey windowed with `window`, in stored values; colour as it is), scaled down
/// to fit `max` (width, height; never up) and encoded as JPEG.
pub fn thumbnail(header: &Value, frame: &[u8], window: Option<(f64, f64)>, max: (usize, usize)) -> Result<Vec<u8>, String> {
    use crate::pixels::{Layout, frame_to_gray, frame_to_rgb};
    let obj: InMemDicomObject = dicom_json::from_value(header.clone()).map_err(|e| format!("the stored header is not readable: {e}"))?;
    let l = Layout::of(&obj)?;
    if frame.len() < l.frame_bytes() {
        return Err(format!("a frame of {} bytes where {} were expected", frame.len(), l.frame_bytes()));
    }
    let (pixels, channels) = match frame_to_rgb(&l, frame) {
        Some(rgb) => (rgb, 3),
        None => (frame_to_gray(&l, frame, window), 1),
    };
    let (w, h, small) = shrink(&pixels, channels, l.cols, l.rows, max);
    let (w, h) = (u16::try_from(w).map_err(|_| "too wide for JPEG")?, u16::try_from(h).map_err(|_| "too high for JPEG")?);
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&small, w, h, if channels == 3 { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma })
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Scales an 8-bit picture of `channels` interleaved samples down to fit `max`,
/// keeping its proportions, each output pixel the mean of the pixels it covers.
/// Returns the new width, height and samples.
fn shrink(pixels: &[u8], channels: usize, w: usize, h: usize, max: (usize, usize)) -> (usize, usize, Vec<u8>) {
    let scale = (max.0.max(1) as f64 / w as f64).min(max.1.max(1) as f64 / h as f64).min(1.0);
    let (nw, nh) = (((w as f64 * scale).round() as usize).clamp(1, w), ((h as f64 * scale).round() as usize).clamp(1, h));
    if (nw, nh) == (w, h) {
        return (w, h, pixels.to_vec());
    }
    let mut out = Vec::with_capacity(nw * nh * channels);
    for y in 0..nh {
        let (y0, y1) = (y * h / nh, ((y + 1) * h / nh).max(y * h / nh + 1));
        for x in 0..nw {
            let (x0, x1) = (x * w / nw, ((x + 1) * w / nw).max(x * w / nw + 1));
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            for c in 0..channels {
                let sum: u64 = (y0..y1).flat_map(|yy| (x0..x1).map(move |xx| (yy * w + xx) * channels + c)).map(|i| u64::from(pixels[i])).sum();
                out.push(((sum + n / 2) / n) as u8);
            }
        }
    }
    (nw, nh, out)
}

/// One row of the viewer's metadata table.
#[derive(Debug, serde::Serialize)]
pub struct TagRow {
    /// `(GGGG,EEEE)`.
    pub tag: String,
    /// The dictionary's keyword, or empty.
    pub keyword: String,
    /// Value representation.
    pub vr: String,
    /// The value as text.
    pub value: String,
}

/// The rows of a DICOM JSON object, in tag order.
pub fn tag_rows(obj: &Value) -> Vec<TagRow> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let dict = dicom_dictionary_std::StandardDataDictionary;
    let Some(map) = obj.as_object() else { return Vec::new() };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|k| {
            let a = &map[k];
            let (g, e) = (u16::from_str_radix(k.get(0..4)?, 16).ok()?, u16::from_str_radix(k.get(4..8)?, 16).ok()?);
            let keyword = dict.by_tag(dicom_core::Tag(g, e)).map(|d| d.alias().to_string()).unwrap_or_default();
            let vr = a.get("vr").and_then(Value::as_str).unwrap_or("").to_string();
            let value = match (a.get("Value"), a.get("InlineBinary")) {
                (Some(Value::Array(v)), _) if vr == "SQ" => format!("(sequence of {} items)", v.len()),
                (Some(Value::Array(v)), _) => v
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => s.clone(),
                        Value::Object(o) => o.get("Alphabetic").and_then(Value::as_str).unwrap_or("").to_string(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\\"),
                (_, Some(Value::String(b))) => format!("({} bytes)", b.len() * 3 / 4),
                _ => String::new(),
            };
            Some(TagRow { tag: format!("({g:04X},{e:04X})"), keyword, vr, value })
        })
        .collect()
}

/// A boundary for a multipart body.
pub fn boundary() -> String {
    use rand::Rng;
    let n: u128 = rand::rng().random();
    format!("casecast-{n:032x}")
}

/// The opening of one part of a `multipart/related` body.
pub fn part_head(boundary: &str, content_type: &str) -> Vec<u8> {
    format!("--{boundary}\r\nContent-Type: {content_type}\r\n\r\n").into_bytes()
}

/// The end of a `multipart/related` body.
pub fn closing(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

/// The boundary named by a `multipart/related` Content-Type, if any.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/related") {
        return None;
    }
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits a `multipart/related` stream into parts as it arrives, writing each part's
/// body where [`MultipartSplitter::feed`]'s caller says, so a multi-GB STOW-RS body
/// is never held whole.
pub struct MultipartSplitter {
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: SplitState,
}

#[derive(PartialEq, Eq, Debug)]
enum SplitState {
    Preamble,
    Headers,
    Body,
    Done,
}

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub enum PartEvent {
    /// A part begins, with its Content-Type (empty when none).
    Begin(String),
    /// Bytes of the current part's body.
    Data(Vec<u8>),
    /// The current part is complete.
    End,
}

impl MultipartSplitter {
    /// For the given boundary.
    pub fn new(boundary: &str) -> Self {
        MultipartSplitter { delimiter: format!("\r\n--{boundary}").into_bytes(), buf: b"\r\n".to_vec(), state: SplitState::Preamble }
    }

    /// Feeds bytes; returns what they completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<PartEvent>, String> {
        self.buf.extend_from_slice(data);
        let mut events = Vec::new();
        loop {
            match self.state {
                SplitState::Preamble => match find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        self.buf.drain(..at + self.delimiter.len());
                        self.state = SplitState::Headers;
                    }
                    None => {
                        let keep = self.buf.len().min(self.delimiter.len());
                        self.buf.drain(..self.buf.len() - keep);
                        return Ok(events);
                    }
                },
                SplitState::Headers => {
                    if self.buf.len() >= 2 && &self.buf[..2] == b"--" {
                        self.state = SplitState::Done;
                        continue;
                    }
                    let Some(at) = find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > 16 << 10 {
                            return Err("a part's headers exceed 16 KiB".into());
                        }
                        return Ok(events);
                    };
                    let head = String::from_utf8_lossy(&self.buf[..at]).to_string();
                    self.buf.drain(..at + 4);
                    let ct = head
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim().to_string()))
                        .unwrap_or_default();
                    events.push(PartEvent::Begin(ct));
                    self.state = SplitState::Body;
                }
                SplitState::Body => match find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        if at > 0 {
                            events.push(PartEvent::Data(self.buf[..at].to_vec()));
                        }
                        events.push(PartEvent::End);
                        self.buf.drain(..at + self.delimiter.len());
                        self.state = SplitState::Headers;
                    }
                    None => {
                        let safe = self.buf.len().saturating_sub(self.delimiter.len());
                        if safe > 0 {
                            events.push(PartEvent::Data(self.buf[..safe].to_vec()));
                            self.buf.drain(..safe);
                        }
                        return Ok(events);
                    }
                },
                SplitState::Done => {
                    self.buf.clear();
                    return Ok(events);
                }
            }
        }
    }

    /// Whether the closing delimiter was seen.
    pub fn finished(&self) -> bool {
        self.state == SplitState::Done
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multipart_fed_byte_by_byte() {
        let b = "xyz";
        let mut body = b"preamble\r\n".to_vec();
        body.extend(part_head(b, "application/dicom"));
        body.extend(b"first\r\n--xy body\r\n");
        body.extend(part_head(b, "application/dicom"));
        body.extend(b"second");
        body.extend(closing(b));
        for chunk in [1usize, 3, 1000] {
            let mut s = MultipartSplitter::new(b);
            let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
            for c in body.chunks(chunk) {
                for e in s.feed(c).unwrap() {
                    match e {
                        PartEvent::Begin(ct) => parts.push((ct, Vec::new())),
                        PartEvent::Data(d) => parts.last_mut().unwrap().1.extend(d),
                        PartEvent::End => {}
                    }
                }
            }
            assert!(s.finished());
            assert_eq!(parts.len(), 2, "chunk {chunk}");
            assert_eq!(parts[0], ("application/dicom".to_string(), b"first\r\n--xy body".to_vec()));
            assert_eq!(parts[1].1, b"second");
        }
        assert_eq!(boundary_of("multipart/related; type=\"application/dicom\"; boundary=\"abc\"").as_deref(), Some("abc"));
        assert_eq!(boundary_of("application/json"), None);
    }

    /// Metadata gives bulk elements by reference, and the reference's value is the
    /// element's bytes; elements in sequences stay inline.
    #[test]
    fn metadata_gives_bulk_data_by_reference() {
        let stored = json!({
            "00080018": { "vr": "UI", "Value": ["2.25.1"] },
            "00282000": { "vr": "OB", "InlineBinary": "AAECAw==" },
            "00091010": { "vr": "UN", "InlineBinary": "YWJj" },
            "00081140": { "vr": "SQ", "Value": [{ "00282000": { "vr": "OB", "InlineBinary": "AA==" } }] },
            "00280010": { "vr": "US", "Value": [2] },
        });
        assert_eq!(bulk_value(&stored, "00282000"), Some(vec![0, 1, 2, 3]));
        assert_eq!(bulk_value(&stored, "00091010"), Some(b"abc".to_vec()));
        assert_eq!(bulk_value(&stored, "00280010"), None, "not a bulk element");
        assert_eq!(bulk_value(&stored, "7FE00010"), None, "pixel data is not in the stored header");
        let mut item = stored.clone();
        with_bulk_data(&mut item, "http://h/dicomweb/studies/1/series/2/instances/3", Some("OW"));
        assert_eq!(item["00282000"], json!({ "vr": "OB", "BulkDataURI": "http://h/dicomweb/studies/1/series/2/instances/3/bulk/00282000" }));
        assert_eq!(item["00091010"]["BulkDataURI"], "http://h/dicomweb/studies/1/series/2/instances/3/bulk/00091010");
        assert_eq!(item["7FE00010"], json!({ "vr": "OW", "BulkDataURI": "http://h/dicomweb/studies/1/series/2/instances/3/bulk/7FE00010" }));
        assert_eq!(item["00081140"], stored["00081140"], "nested elements stay inline");
        assert_eq!(item["00280010"], stored["00280010"]);
        let mut no_pixels = stored;
        with_bulk_data(&mut no_pixels, "u", None);
        assert!(no_pixels.get("7FE00010").is_none());
    }

    /// A thumbnail is the frame scaled down to fit, as JPEG; a small picture is not
    /// scaled up.
    #[test]
    fn thumbnails_fit_the_viewport() {
        let header = json!({
            "00280002": { "vr": "US", "Value": [1] },
            "00280004": { "vr": "CS", "Value": ["MONOCHROME2"] },
            "00280010": { "vr": "US", "Value": [160] },
            "00280011": { "vr": "US", "Value": [320] },
            "00280100": { "vr": "US", "Value": [16] },
            "00280101": { "vr": "US", "Value": [12] },
            "00280103": { "vr": "US", "Value": [0] },
        });
        let frame: Vec<u8> = (0..160 * 320).flat_map(|i: u32| ((i % 320) as u16 * 12).to_le_bytes()).collect();
        let jpeg = thumbnail(&header, &frame, None, (THUMBNAIL_SIDE, THUMBNAIL_SIDE)).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let (h, w) = (u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]), u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]));
        assert_eq!((w, h), (128, 64));
        assert!(thumbnail(&header, &frame[..100], None, (64, 64)).is_err(), "a short frame");
        // The mean of what each pixel covers; never scaled up.
        let (w, h, px) = shrink(&[0, 100, 200, 255], 1, 2, 2, (1, 1));
        assert_eq!((w, h, px), (1, 1, vec![139]));
        assert_eq!(shrink(&[1, 2, 3], 3, 1, 1, (500, 500)), (1, 1, vec![1, 2, 3]));
    }
}
