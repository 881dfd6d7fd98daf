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
}
