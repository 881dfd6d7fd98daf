//! Files as modalities and archives send them, made readable before anything acts on
//! them.
//!
//! Three kinds of file are rewritten, in memory, as a Part 10 file in explicit VR
//! little endian with the dictionary's VRs:
//! - a data set without a file meta group, or whose meta group lacks its Transfer
//!   Syntax UID or its group length (the parser refuses both): a meta group is built
//!   from the data set, its encoding told from its first element;
//! - a data set in implicit VR under a meta group that says explicit (some writers
//!   do this): read as what it is;
//! - the retired explicit VR big endian syntax: values swapped to little endian, so
//!   the de-identified file is written in a syntax every reader has;
//! - standard attributes encoded as UN (as archives that did not know them store
//!   them): interpreted by the dictionary before anything acts on them, so a UID in
//!   UN is mapped as a UID, not byte by byte; and a UN of undefined length, which
//!   holds a sequence in implicit VR little endian (PS3.5 6.2.2) the parser cannot
//!   read, becomes that sequence.
//!
//! A file that needs none of this is left as it is (`Ok(None)`). The rewrite reads a
//! slice: a declared length past what is left is an error at once, sequences nest
//! only [`structure::MAX_DEPTH`] deep, and files above [`MAX_BYTES`] are not rewritten.

use crate::structure::{self, LONG, SHORT, dictionary_vr, value_width};

/// Files larger than this are not rewritten (they go on as they are).
pub const MAX_BYTES: u64 = 64 << 20;

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);
const SOP_CLASS: (u16, u16) = (0x0008, 0x0016);
const SOP_INSTANCE: (u16, u16) = (0x0008, 0x0018);


#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

const IMPLICIT: Encoding = Encoding { explicit: false, big_endian: false };

/// What the rewrite did, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// The file as a Part 10 file in explicit VR little endian (or its own
    /// encapsulated syntax).
    pub bytes: Vec<u8>,
    /// A file meta group was built (there was none, or it was incomplete).
    pub meta_built: bool,
    /// The data set was big endian.
    pub from_big_endian: bool,
    /// Standard attributes that were UN, now with their own VR.
    pub un_interpreted: usize,
}

/// Reads the file at `path` and rewrites it if it needs it.
pub fn file(path: &std::path::Path) -> Result<Option<Normalized>, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?.len();
    if size > MAX_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    normalize(&bytes)
}

/// The file meta group as found: where the data set starts, and what it said.
struct Meta {
    data_set_at: usize,
    present: bool,
    has_group_length: bool,
    syntax: Option<String>,
    sop_class: Option<String>,
    sop_instance: Option<String>,
}

/// Rewrites `bytes` if it needs it (see the module's documentation).
pub fn normalize(bytes: &[u8]) -> Result<Option<Normalized>, String> {
    let meta = read_meta(bytes)?;
    let data = &bytes[meta.data_set_at..];
    let meta_ok = meta.present && meta.has_group_length && meta.syntax.is_some();
    // Some writers state an explicit syntax and write the data set in implicit VR
    // (pydicom reads such files with a warning): no known VR after the first tag,
    // where an explicit data set must have one.
    let implicit_in_fact = data.len() >= 8 && !(SHORT.contains(&&[data[4], data[5]]) || LONG.contains(&&[data[4], data[5]]));
    let (encoding, syntax_out) = match meta.syntax.as_deref() {
        Some(EXPLICIT_LE) if implicit_in_fact => (IMPLICIT, EXPLICIT_LE.to_string()),
        Some(DEFLATED) => return Ok(None),
        Some(IMPLICIT_LE) if meta_ok => return Ok(None),
        Some(IMPLICIT_LE) => (IMPLICIT, EXPLICIT_LE.to_string()),
        Some(EXPLICIT_BE) => (Encoding { explicit: true, big_endian: true }, EXPLICIT_LE.to_string()),
        Some(EXPLICIT_LE) => (Encoding { explicit: true, big_endian: false }, EXPLICIT_LE.to_string()),
        // Every encapsulated syntax encodes its data set in explicit VR little endian.
        Some(other) if other != IMPLICIT_LE && implicit_in_fact => (IMPLICIT, other.to_string()),
        Some(other) => (Encoding { explicit: true, big_endian: false }, other.to_string()),
        None => (sniff(data, meta.present)?, EXPLICIT_LE.to_string()),
    };
    // A data set that lacks its SOP UIDs takes them from a meta group that states
    // them (the meta group describes this very instance).
    let fill = [(SOP_CLASS, meta.sop_class.clone()), (SOP_INSTANCE, meta.sop_instance.clone())]
        .into_iter()
        .filter_map(|(t, v)| Some((t, v.filter(|u| !u.is_empty())?)))
        .collect();
    let mut w = Writer { out: Vec::with_capacity(bytes.len() + 256), top: Default::default(), un_interpreted: 0, fill, filled: 0 };
    let read = w.data_set(data, 0, data.len(), encoding, 0, false);
    if read.is_ok() {
        w.fill_up_to((0xFFFF, 0xFFFF));
    }
    // A file the parser reads as it is goes on as it is; it decides what is wrong
    // with it, if anything.
    if meta_ok && encoding.explicit && !encoding.big_endian && (read.is_err() || (w.un_interpreted == 0 && w.filled == 0)) {
        return Ok(None);
    }
    read?;
    if meta.syntax.is_none() && w.top.encapsulated {
        return Err("its pixel data is compressed, and it has no transfer syntax to say how".into());
    }
    let uid = |found: Option<String>, own: Option<String>| found.filter(|u| !u.is_empty()).or(own).unwrap_or_default();
    let class = uid(meta.sop_class, w.top.sop_class.clone());
    let instance = uid(meta.sop_instance, w.top.sop_instance.clone());
    if instance.is_empty() {
        return Err("not a usable DICOM instance: no SOP Instance UID (0008,0018)".into());
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend(meta_group(&class, &instance, &syntax_out));
    out.extend_from_slice(&w.out);
    Ok(Some(Normalized { bytes: out, meta_built: !meta_ok, from_big_endian: encoding.big_endian, un_interpreted: w.un_interpreted }))
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big { u16::from_be_bytes(x) } else { u16::from_le_bytes(x) })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) })
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).to_string()
}

fn ends_early(at: usize) -> String {
    format!("not readable as DICOM: it ends inside an element header, at byte {at}")
}

/// The preamble and file meta group, if any (always explicit VR little endian).
fn read_meta(b: &[u8]) -> Result<Meta, String> {
    let start = if b.len() >= 132 && &b[128..132] == b"DICM" { 132 } else { 0 };
    let mut m = Meta { data_set_at: start, present: start == 132, has_group_length: false, syntax: None, sop_class: None, sop_instance: None };
    let mut at = start;
    while u16_at(b, at, false) == Some(0x0002) {
        m.present = true;
        let element = u16_at(b, at + 2, false).ok_or_else(|| ends_early(at))?;
        let vr: [u8; 2] = b.get(at + 4..at + 6).ok_or_else(|| ends_early(at))?.try_into().unwrap_or_default();
        let (len, value_at) = if SHORT.contains(&&vr) {
            (u32::from(u16_at(b, at + 6, false).ok_or_else(|| ends_early(at))?), at + 8)
        } else {
            (u32_at(b, at + 8, false).ok_or_else(|| ends_early(at))?, at + 12)
        };
        let value = b.get(value_at..value_at.saturating_add(len as usize)).ok_or_else(|| {
            format!("not readable as DICOM: element (0002,{element:04X}) at byte {value_at} declares {len} bytes, but only {} are left", b.len().saturating_sub(value_at))
        })?;
        match element {
            0x0000 => m.has_group_length = true,
            0x0002 => m.sop_class = Some(text(value)),
            0x0003 => m.sop_instance = Some(text(value)),
            0x0010 => m.syntax = Some(text(value)).filter(|s| !s.is_empty()),
            _ => {}
        }
        at = value_at + value.len();
    }
    m.data_set_at = at;
    Ok(m)
}

/// The encoding of a data set with no transfer syntax, from its first element: a
/// known VR after the tag says explicit; a group that reads small only big endian
/// says big endian (group numbers of a data set's first element are small).
fn sniff(data: &[u8], meta_present: bool) -> Result<Encoding, String> {
    let lacking = if meta_present { "a file meta group with no transfer syntax" } else { "no file meta group" };
    if data.len() < 8 {
        return Err(format!("not readable as DICOM: {lacking}, and no data set after it"));
    }
    let vr: [u8; 2] = [data[4], data[5]];
    let explicit = SHORT.contains(&&vr) || LONG.contains(&&vr);
    let big_endian = data[0] == 0 && data[1] != 0;
    // A data set's first element is of a low, even group (0004 in a directory, 0008
    // in an instance): anything else is not a data set (or not at its start).
    let group = if big_endian { u16::from_be_bytes([data[0], data[1]]) } else { u16::from_le_bytes([data[0], data[1]]) };
    if group > 0x0010 || group % 2 == 1 || (big_endian && !explicit) {
        return Err(format!("not readable as DICOM: {lacking}, and no DICOM data set where one would start"));
    }
    Ok(Encoding { explicit, big_endian })
}

fn meta_group(class: &str, instance: &str, syntax: &str) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend(0x0002u16.to_le_bytes());
        out.extend(element.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend([0, 0]);
            out.extend((v.len() as u32).to_le_bytes());
        } else {
            out.extend((v.len() as u16).to_le_bytes());
        }
        out.extend(v);
    }
    let mut group = Vec::new();
    element(&mut group, 0x0001, b"OB", &[0, 1], 0);
    element(&mut group, 0x0002, b"UI", class.as_bytes(), 0);
    element(&mut group, 0x0003, b"UI", instance.as_bytes(), 0);
    element(&mut group, 0x0010, b"UI", syntax.as_bytes(), 0);
    element(&mut group, 0x0012, b"UI", crate::deid::IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    element(&mut group, 0x0013, b"SH", b"casecast", b' ');
    let mut out = Vec::with_capacity(group.len() + 12);
    out.extend([0x02, 0x00, 0x00, 0x00]);
    out.extend_from_slice(b"UL");
    out.extend(4u16.to_le_bytes());
    out.extend((group.len() as u32).to_le_bytes());
    out.extend(group);
    out
}

/// What the top level of the data set says, for the meta group.
#[derive(Default)]
struct Top {
    sop_class: Option<String>,
    sop_instance: Option<String>,
    encapsulated: bool,
}

/// The data set as it is written, in explicit VR little endian.
struct Writer {
    out: Vec<u8>,
    top: Top,
    un_interpreted: usize,
    /// Top-level UIDs to write where the data set lacks them, in tag order.
    fill: Vec<((u16, u16), String)>,
    filled: usize,
}

/// One element's header as read.
struct Header {
    tag: (u16, u16),
    vr: [u8; 2],
    len: u32,
    value_at: usize,
}

fn header(src: &[u8], at: usize, enc: Encoding) -> Result<Header, String> {
    let big = enc.big_endian;
    let tag = (u16_at(src, at, big).ok_or_else(|| ends_early(at))?, u16_at(src, at + 2, big).ok_or_else(|| ends_early(at))?);
    if tag.0 == 0xFFFE || !enc.explicit {
        let len = u32_at(src, at + 4, big).ok_or_else(|| ends_early(at))?;
        let vr = if tag.0 == 0xFFFE { *b"  " } else { dictionary_vr(tag) };
        return Ok(Header { tag, vr, len, value_at: at + 8 });
    }
    let vr: [u8; 2] = src.get(at + 4..at + 6).ok_or_else(|| ends_early(at))?.try_into().unwrap_or_default();
    if SHORT.contains(&&vr) {
        return Ok(Header { tag, vr, len: u32::from(u16_at(src, at + 6, big).ok_or_else(|| ends_early(at))?), value_at: at + 8 });
    }
    // A VR the parser does not know is UN to it, with a 32-bit length.
    let vr = if LONG.contains(&&vr) { vr } else { *b"UN" };
    Ok(Header { tag, vr, len: u32_at(src, at + 8, big).ok_or_else(|| ends_early(at))?, value_at: at + 12 })
}

fn tag_text(tag: (u16, u16)) -> String {
    format!("({:04X},{:04X})", tag.0, tag.1)
}

impl Writer {
    /// Writes the UIDs to fill whose tags come before `tag`, unless the data set
    /// had them.
    fn fill_up_to(&mut self, tag: (u16, u16)) {
        while self.fill.first().is_some_and(|(t, _)| *t < tag) {
            let (t, uid) = self.fill.remove(0);
            let have = if t == SOP_CLASS { &mut self.top.sop_class } else { &mut self.top.sop_instance };
            if have.is_some() {
                continue;
            }
            *have = Some(uid.clone());
            self.filled += 1;
            let mut v = uid.into_bytes();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            self.put_header(t, b"UI", v.len() as u32);
            self.out.extend(v);
        }
    }

    fn put_header(&mut self, tag: (u16, u16), vr: &[u8; 2], len: u32) {
        self.out.extend(tag.0.to_le_bytes());
        self.out.extend(tag.1.to_le_bytes());
        if tag.0 == 0xFFFE {
            self.out.extend(len.to_le_bytes());
            return;
        }
        self.out.extend_from_slice(vr);
        if SHORT.contains(&vr) {
            self.out.extend((len as u16).to_le_bytes());
        } else {
            self.out.extend([0, 0]);
            self.out.extend(len.to_le_bytes());
        }
    }

    /// The elements of `src[at..end]`; with `in_item` (an item of undefined length),
    /// up to and past its delimiter. Returns where reading stopped.
    fn data_set(&mut self, src: &[u8], mut at: usize, end: usize, enc: Encoding, depth: usize, in_item: bool) -> Result<usize, String> {
        loop {
            if at >= end {
                return if in_item { Err(format!("not readable as DICOM: it ends inside an item, at byte {at}")) } else { Ok(at) };
            }
            let h = header(src, at, enc)?;
            if h.tag == ITEM_END && in_item {
                return Ok(h.value_at);
            }
            if h.tag.0 == 0xFFFE {
                return Err(format!("not readable as DICOM: an item or delimiter {} outside a sequence, at byte {at}", tag_text(h.tag)));
            }
            if depth == 0 {
                self.fill_up_to(h.tag);
            }
            at = self.element(src, &h, end, enc, depth)?;
        }
    }

    fn element(&mut self, src: &[u8], h: &Header, end: usize, enc: Encoding, depth: usize) -> Result<usize, String> {
        let dictionary = dictionary_vr(h.tag);
        let from_un = enc.explicit && &h.vr == b"UN" && (dictionary != *b"UN" || h.len == UNDEFINED);
        if from_un {
            self.un_interpreted += 1;
        }
        let mut vr = if from_un && dictionary != *b"UN" { dictionary } else { h.vr };
        // A UN value is implicit VR little endian; so is what it nests.
        let inner = if from_un { IMPLICIT } else { enc };
        if h.len == UNDEFINED {
            if h.tag == PIXEL_DATA && depth == 0 {
                self.top.encapsulated = true;
                return self.fragments(src, h.value_at, end);
            }
            // Undefined length is a sequence's (a UN's holds one too).
            vr = *b"SQ";
        }
        let value_end = if h.len == UNDEFINED {
            None
        } else {
            let e = h.value_at.checked_add(h.len as usize).filter(|&e| e <= end).ok_or_else(|| {
                format!(
                    "not readable as DICOM: element {} at byte {} declares {} bytes, but only {} are left",
                    tag_text(h.tag),
                    h.value_at,
                    h.len,
                    end.saturating_sub(h.value_at)
                )
            })?;
            Some(e)
        };
        if &vr == b"SQ" {
            if depth >= structure::MAX_DEPTH {
                return Err(format!("not readable as DICOM: sequences nested more than {} deep", structure::MAX_DEPTH));
            }
            self.put_header(h.tag, b"SQ", UNDEFINED);
            let after = self.items(src, h.value_at, value_end.unwrap_or(end), inner, depth + 1, value_end.is_none())?;
            self.put_header(SEQUENCE_END, b"  ", 0);
            return Ok(value_end.unwrap_or(after));
        }
        let value_end = value_end.unwrap_or(h.value_at);
        // Group lengths are retired, and wrong once lengths change.
        if h.tag.1 == 0x0000 {
            return Ok(value_end);
        }
        let mut value = src[h.value_at..value_end].to_vec();
        if enc.big_endian && !from_un {
            let width = if &vr == b"AT" { Some(2) } else { value_width(&vr) };
            if let Some(w) = width {
                value.chunks_exact_mut(w as usize).for_each(|c| c.reverse());
            }
        }
        if depth == 0 {
            match h.tag {
                SOP_CLASS => self.top.sop_class = Some(text(&value)),
                SOP_INSTANCE => self.top.sop_instance = Some(text(&value)),
                _ => {}
            }
        }
        // A value too long for a 16-bit length keeps its bytes as OW/UN.
        if SHORT.contains(&&vr) && value.len() > 0xFFFF {
            vr = if value_width(&vr) == Some(2) { *b"OW" } else { *b"UN" };
        }
        self.put_header(h.tag, &vr, value.len() as u32);
        self.out.extend(value);
        Ok(value_end)
    }

    /// The items of a sequence in `src[at..end]`; with `undefined`, up to and past
    /// its delimiter.
    fn items(&mut self, src: &[u8], mut at: usize, end: usize, enc: Encoding, depth: usize, undefined: bool) -> Result<usize, String> {
        loop {
            if !undefined && at >= end {
                return Ok(at);
            }
            if at >= end {
                return Err(format!("not readable as DICOM: it ends inside a sequence, at byte {at}"));
            }
            let h = header(src, at, Encoding { explicit: false, ..enc })?;
            match h.tag {
                SEQUENCE_END if undefined => return Ok(h.value_at),
                ITEM => {}
                t => return Err(format!("not readable as DICOM: {} where a sequence item must be, at byte {at}", tag_text(t))),
            }
            self.put_header(ITEM, b"  ", UNDEFINED);
            at = if h.len == UNDEFINED {
                self.data_set(src, h.value_at, end, enc, depth, true)?
            } else {
                let item_end = h.value_at.checked_add(h.len as usize).filter(|&e| e <= end).ok_or_else(|| {
                    format!("not readable as DICOM: an item at byte {} declares {} bytes, but only {} are left", h.value_at, h.len, end.saturating_sub(h.value_at))
                })?;
                self.data_set(src, h.value_at, item_end, enc, depth, false)?;
                item_end
            };
            self.put_header(ITEM_END, b"  ", 0);
        }
    }

    /// Encapsulated pixel data: its fragments copied as they are.
    fn fragments(&mut self, src: &[u8], mut at: usize, end: usize) -> Result<usize, String> {
        self.put_header(PIXEL_DATA, b"OB", UNDEFINED);
        loop {
            let h = header(src, at, IMPLICIT)?;
            match h.tag {
                SEQUENCE_END => {
                    self.put_header(SEQUENCE_END, b"  ", 0);
                    return Ok(h.value_at);
                }
                ITEM => {}
                t => return Err(format!("not readable as DICOM: {} among the pixel data's fragments, at byte {at}", tag_text(t))),
            }
            let e = h.value_at.checked_add(h.len as usize).filter(|&e| e <= end && h.len != UNDEFINED).ok_or_else(|| {
                format!("not readable as DICOM: a pixel data fragment at byte {} declares {} bytes, but only {} are left", h.value_at, h.len, end.saturating_sub(h.value_at))
            })?;
            self.put_header(ITEM, b"  ", h.len);
            self.out.extend_from_slice(&src[h.value_at..e]);
            at = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_le(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut w = Writer { out: Vec::new(), top: Top::default(), un_interpreted: 0, fill: Vec::new(), filled: 0 };
        w.put_header(tag, vr, value.len() as u32);
        w.out.extend_from_slice(value);
        w.out
    }

    fn read(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
        dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(std::io::Cursor::new(bytes))
            .expect("the rewritten file reads")
    }

    fn str_of(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
        obj.element(tag).unwrap().to_str().unwrap().trim_end_matches(['\0', ' ']).to_string()
    }

    /// A data set with no meta group, in implicit VR, and the same in explicit VR
    /// big endian: both become Part 10 files the parser reads, values intact.
    #[test]
    fn a_bare_data_set_gets_a_meta_group() {
        use dicom_dictionary_std::tags;
        let mut implicit = Vec::new();
        for (tag, v) in [((0x0008u16, 0x0016u16), &b"1.2.840.10008.5.1.4.1.1.7\0"[..]), ((0x0008, 0x0018), b"1.2.3.4"), ((0x0028, 0x0010), &[0x00, 0x02])] {
            implicit.extend(tag.0.to_le_bytes());
            implicit.extend(tag.1.to_le_bytes());
            implicit.extend((v.len() as u32 + v.len() as u32 % 2).to_le_bytes());
            implicit.extend_from_slice(v);
            if v.len() % 2 == 1 {
                implicit.push(0);
            }
        }
        let n = normalize(&implicit).unwrap().expect("rewritten");
        assert!(n.meta_built && !n.from_big_endian);
        let obj = read(&n.bytes);
        assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), EXPLICIT_LE);
        assert_eq!(obj.meta().media_storage_sop_instance_uid.trim_end_matches('\0'), "1.2.3.4");
        assert_eq!(obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 512);

        let mut big = Vec::new();
        for (tag, vr, v) in [((0x0008u16, 0x0018u16), b"UI", &b"1.2.3.4\0"[..]), ((0x0028, 0x0010), b"US", &[0x02, 0x00])] {
            big.extend(tag.0.to_be_bytes());
            big.extend(tag.1.to_be_bytes());
            big.extend_from_slice(vr);
            big.extend((v.len() as u16).to_be_bytes());
            big.extend_from_slice(v);
        }
        let n = normalize(&big).unwrap().expect("rewritten");
        assert!(n.meta_built && n.from_big_endian);
        assert_eq!(read(&n.bytes).element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 512);
    }

    /// A SOP Instance UID stored as UN is a UID again, and a UN of undefined length
    /// is read as the implicit VR sequence it holds.
    #[test]
    fn un_is_read_by_the_dictionary() {
        use dicom_dictionary_std::tags;
        let mut data = explicit_le((0x0008, 0x0016), b"UN", b"1.2.840.10008.5.1.4.1.1.7\0");
        data.extend(explicit_le((0x0008, 0x0018), b"UN", b"1.2.3.4\0"));
        // (0008,1115) Referenced Series Sequence as UN, undefined length, holding an
        // item with a Series Instance UID in implicit VR.
        data.extend([0x08, 0x00, 0x15, 0x11, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        data.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        data.extend([0x20, 0x00, 0x0E, 0x00, 8, 0, 0, 0]);
        data.extend(b"1.2.3.5\0");
        data.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let mut file = vec![0u8; 128];
        file.extend(b"DICM");
        file.extend(meta_group("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", EXPLICIT_LE));
        file.extend(&data);
        let n = normalize(&file).unwrap().expect("rewritten");
        assert_eq!((n.un_interpreted, n.meta_built), (3, false));
        let obj = read(&n.bytes);
        assert_eq!(obj.element(tags::SOP_INSTANCE_UID).unwrap().vr(), dicom_core::VR::UI);
        assert_eq!(str_of(&obj, tags::SOP_INSTANCE_UID), "1.2.3.4");
        let seq = obj.element(tags::REFERENCED_SERIES_SEQUENCE).unwrap().items().expect("a sequence");
        assert_eq!(seq[0].element(tags::SERIES_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0'), "1.2.3.5");

        // A file that needs nothing is left alone.
        let mut plain = vec![0u8; 128];
        plain.extend(b"DICM");
        plain.extend(meta_group("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", EXPLICIT_LE));
        let meta_end = plain.len();
        plain.extend(explicit_le((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.7\0"));
        plain.extend(explicit_le((0x0008, 0x0018), b"UI", b"1.2.3.4\0"));
        assert_eq!(normalize(&plain), Ok(None));
        // One whose data set lacks the SOP UIDs its meta group states takes them.
        let mut lacking = plain[..meta_end].to_vec();
        lacking.extend(explicit_le((0x0010, 0x0020), b"LO", b"PID1"));
        let n = normalize(&lacking).unwrap().expect("rewritten");
        let obj = read(&n.bytes);
        assert_eq!((str_of(&obj, tags::SOP_CLASS_UID), str_of(&obj, tags::SOP_INSTANCE_UID)), ("1.2.840.10008.5.1.4.1.1.7".into(), "1.2.3.4".into()));
        assert_eq!(str_of(&obj, tags::PATIENT_ID), "PID1");
    }

    /// Hostile lengths fail at once, with where.
    #[test]
    fn lengths_past_the_end_fail_at_once() {
        let mut data = explicit_le((0x0008, 0x0018), b"UI", b"1.2.3.4\0");
        data.extend([0x10, 0x00, 0x10, 0x00, b'U', b'N', 0, 0, 0xF0, 0xFF, 0xFF, 0x7F]);
        let e = normalize(&data).unwrap_err();
        assert!(e.contains("(0010,0010)") && e.contains("declares"), "{e}");
        let mut deep = explicit_le((0x0008, 0x0018), b"UI", b"1.2.3.4\0");
        for _ in 0..100 {
            deep.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(normalize(&deep).unwrap_err().contains("nested"));
        assert!(normalize(b"abc").is_err());
    }
}
