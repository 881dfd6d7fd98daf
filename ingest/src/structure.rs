//! A walk over a DICOM file's element headers, before any parser reads it.
//!
//! The DICOM parser reserves (and zero-fills) the length an element declares before
//! it reads the element, so a file of a few kilobytes that declares gigabytes takes
//! gigabytes of memory and tens of seconds (found by fuzzing: 3.9 KB, 2.2 GB, 21 s).
//! Every upload is walked here first, headers only: each declared length must fit in
//! what is left of the file (or of the item or sequence around it), sequences may nest
//! only so deep, and a deflated data set may inflate only so far. A file that passes
//! holds nothing a parser would allocate beyond its own size.
//!
//! Transfer syntaxes: implicit VR little endian, explicit VR little and big endian
//! (the encapsulated ones are explicit little endian), and deflated explicit little
//! endian (walked as it inflates).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Deepest nesting of sequences taken.
pub const MAX_DEPTH: usize = 32;

/// The most a deflated data set may inflate to.
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

/// The VRs with a 16-bit length in explicit VR (PS3.5 7.1.2).
pub(crate) const SHORT: [&[u8; 2]; 21] =
    [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"];
/// The VRs with two reserved bytes and a 32-bit length.
pub(crate) const LONG: [&[u8; 2]; 13] = [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"];

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);

/// Why a file is refused: what in it, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not readable as DICOM: {0}")]
pub struct StructureError(String);

type Result<T> = std::result::Result<T, StructureError>;

fn bad(what: impl Into<String>) -> StructureError {
    StructureError(what.into())
}

/// Checks the file at `path`.
pub fn check(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
    check_reader(io::BufReader::new(f))
}

/// Checks a whole file given as bytes.
pub fn check_bytes(bytes: &[u8]) -> Result<()> {
    check_reader(io::Cursor::new(bytes))
}

fn check_reader<R: Read + Seek>(r: R) -> Result<()> {
    check_reader_with(r, MAX_INFLATED_BYTES)
}

fn check_reader_with<R: Read + Seek>(mut r: R, max_inflated: u64) -> Result<()> {
    let end = r.seek(SeekFrom::End(0)).map_err(io_err)?;
    // A Part 10 file has a 128-byte preamble and "DICM"; a bare one starts with its
    // meta group.
    let mut head = [0u8; 132];
    r.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let start = if end >= 132 && r.read_exact(&mut head).is_ok() && &head[128..] == b"DICM" { 132 } else { 0 };
    r.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut src = Source { r, at: start, end: Some(end) };
    let syntax = meta(&mut src)?;
    match syntax {
        Syntax::Deflated => {
            let rest = src.at;
            let mut file = src.r;
            file.seek(SeekFrom::Start(rest)).map_err(io_err)?;
            let inflated = flate2::read::DeflateDecoder::new(file).take(max_inflated + 1);
            let mut src = Source { r: Unseekable(inflated), at: 0, end: None };
            let walked = walk(&mut src, Encoding::EXPLICIT_LE, None, 0);
            // The cap reached: whatever the walk said, it is too big.
            if src.r.0.limit() == 0 {
                return Err(bad(format!("its deflated data set inflates past {} MB", max_inflated >> 20)));
            }
            walked
        }
        Syntax::Plain(encoding) => walk(&mut src, encoding, Some(end), 0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

impl Encoding {
    const EXPLICIT_LE: Encoding = Encoding { explicit: true, big_endian: false };
    const IMPLICIT_LE: Encoding = Encoding { explicit: false, big_endian: false };
}

enum Syntax {
    Plain(Encoding),
    Deflated,
}

/// Bytes being walked: a file (seekable) or an inflating stream (skipped by reading).
struct Source<R> {
    r: R,
    at: u64,
    end: Option<u64>,
}

/// A reader that cannot seek: skips by reading.
struct Unseekable<R>(R);

impl<R: Read> Read for Unseekable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Seek for Unseekable<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(n) if n >= 0 => {
                let skipped = io::copy(&mut (&mut self.0).take(n as u64), &mut io::sink())?;
                if skipped < n as u64 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(0)
            }
            _ => Err(io::Error::other("a stream only skips forward")),
        }
    }
}

fn io_err(e: io::Error) -> StructureError {
    bad(format!("cannot read it: {e}"))
}

impl<R: Read + Seek> Source<R> {
    fn read<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|_| bad(format!("it ends inside an element header, at byte {}", self.at)))?;
        self.at += N as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.r.seek(SeekFrom::Current(n as i64)).map_err(|_| bad(format!("it ends inside a value, at byte {}", self.at)))?;
        self.at += n;
        Ok(())
    }

    fn value(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v).map_err(|_| bad(format!("it ends inside a value, at byte {}", self.at)))?;
        self.at += n as u64;
        Ok(v)
    }
}

/// One element's header.
struct Header {
    tag: (u16, u16),
    vr: [u8; 2],
    len: u32,
}

/// The next element's header, or `None` at the end of the stream.
fn header<R: Read + Seek>(src: &mut Source<R>, enc: Encoding) -> Result<Option<Header>> {
    let mut first = [0u8; 1];
    let n = loop {
        match src.r.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // An inflating stream that is not deflate data says so here.
                if src.end.is_none() && src.at > 0 && e.kind() == io::ErrorKind::UnexpectedEof {
                    return Ok(None);
                }
                return Err(io_err(e));
            }
        }
    };
    if n == 0 {
        return Ok(None);
    }
    src.at += 1;
    let rest: [u8; 3] = src.read()?;
    let t = [first[0], rest[0], rest[1], rest[2]];
    let u16_of = |b: [u8; 2]| if enc.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) };
    let u32_of = |b: [u8; 4]| if enc.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
    let tag = (u16_of([t[0], t[1]]), u16_of([t[2], t[3]]));
    // Items and delimiters have no VR in any encoding; implicit VR takes the
    // dictionary's, as the parser does (a sequence of defined length is walked inside,
    // as the parser will read it).
    if tag.0 == 0xFFFE {
        return Ok(Some(Header { tag, vr: *b"  ", len: u32_of(src.read()?) }));
    }
    if !enc.explicit {
        return Ok(Some(Header { tag, vr: dictionary_vr(tag), len: u32_of(src.read()?) }));
    }
    // As the parser reads it: a 16-bit length for the short VRs (PS3.5 7.1.2), two
    // reserved bytes and a 32-bit length for the others; a VR it does not know is UN.
    let mut vr: [u8; 2] = src.read()?;
    let len = if SHORT.contains(&&vr) {
        u32::from(u16_of(src.read()?))
    } else {
        if !LONG.contains(&&vr) {
            vr = *b"UN";
        }
        let _reserved: [u8; 2] = src.read()?;
        u32_of(src.read()?)
    };
    Ok(Some(Header { tag, vr, len }))
}

/// The VR the parser gives a tag in implicit VR: OW for Pixel Data and overlay
/// data, else the standard dictionary's (relaxed), else UN; as dicom-rs does.
pub(crate) fn dictionary_vr(tag: (u16, u16)) -> [u8; 2] {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    let vr = if tag == (0x7FE0, 0x0010) || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        VR::OW
    } else {
        dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1)).map(|e| e.vr().relaxed()).unwrap_or(VR::UN)
    };
    vr.to_bytes()
}

/// The size of one value of a binary VR the parser reads as numbers; a length not
/// a multiple of it leaves the parser out of step with the file.
pub(crate) fn value_width(vr: &[u8; 2]) -> Option<u32> {
    match vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" | b"AT" => Some(4),
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => Some(8),
        _ => None,
    }
}

/// The next header, where one must come.
fn due<R: Read + Seek>(src: &mut Source<R>, enc: Encoding, what: &str) -> Result<Header> {
    header(src, enc)?.ok_or_else(|| bad(format!("it ends inside {what}, at byte {}", src.at)))
}

fn tag_text(tag: (u16, u16)) -> String {
    format!("({:04X},{:04X})", tag.0, tag.1)
}

/// The file meta group (explicit VR little endian): its lengths, and the transfer
/// syntax it names.
fn meta<R: Read + Seek>(src: &mut Source<R>) -> Result<Syntax> {
    let mut syntax = None;
    loop {
        let mark = src.at;
        let group: [u8; 2] = src.read()?;
        src.r.seek(SeekFrom::Start(mark)).map_err(io_err)?;
        src.at = mark;
        if u16::from_le_bytes(group) != 0x0002 {
            break;
        }
        let h = due(src, Encoding::EXPLICIT_LE, "its file meta group")?;
        fits(src, &h, src.end)?;
        if h.tag == (0x0002, 0x0010) {
            if h.len > 64 {
                return Err(bad("its Transfer Syntax UID is longer than a UID may be"));
            }
            let v = src.value(h.len as usize)?;
            syntax = Some(String::from_utf8_lossy(&v).trim_end_matches(['\0', ' ']).to_string());
        } else {
            src.skip(u64::from(h.len))?;
        }
    }
    let uid = syntax.ok_or_else(|| bad("it has no file meta group with a Transfer Syntax UID"))?;
    Ok(match uid.as_str() {
        "1.2.840.10008.1.2" => Syntax::Plain(Encoding::IMPLICIT_LE),
        "1.2.840.10008.1.2.2" => Syntax::Plain(Encoding { explicit: true, big_endian: true }),
        "1.2.840.10008.1.2.1.99" => Syntax::Deflated,
        // Explicit VR little endian, and every encapsulated syntax.
        _ => Syntax::Plain(Encoding::EXPLICIT_LE),
    })
}

/// Whether an element's defined length fits in what is left of `limit`.
fn fits<R>(src: &Source<R>, h: &Header, limit: Option<u64>) -> Result<()> {
    if h.len != UNDEFINED
        && let Some(limit) = limit
        && src.at + u64::from(h.len) > limit
    {
        return Err(bad(format!(
            "element {} at byte {} declares {} bytes, but only {} are left",
            tag_text(h.tag),
            src.at,
            h.len,
            limit.saturating_sub(src.at)
        )));
    }
    Ok(())
}

/// Walks elements until `limit` (a defined-length container's end) or, with `None`,
/// until the stream's end or a delimiter (returned to the caller through `Ok`).
fn walk<R: Read + Seek>(src: &mut Source<R>, enc: Encoding, limit: Option<u64>, depth: usize) -> Result<()> {
    loop {
        if let Some(l) = limit.or(src.end)
            && src.at >= l
        {
            return Ok(());
        }
        let h = match header(src, enc)? {
            Some(h) => h,
            // The end of a stream, between elements, at the top level only.
            None if limit.is_none() => return Ok(()),
            None => return Err(bad(format!("it ends inside an item, at byte {}", src.at))),
        };
        // Items and delimiters belong in sequences only (found by fuzzing: the
        // parser takes an item among elements, and the file written of it does not
        // read back).
        if h.tag.0 == 0xFFFE {
            return Err(bad(format!("an item or delimiter {} outside a sequence, at byte {}", tag_text(h.tag), src.at)));
        }
        element(src, enc, &h, limit.or(src.end), depth)?;
    }
}

/// One element: its value skipped, or its items walked.
fn element<R: Read + Seek>(src: &mut Source<R>, enc: Encoding, h: &Header, limit: Option<u64>, depth: usize) -> Result<()> {
    fits(src, h, limit)?;
    // Found by fuzzing: the parser reads len / width values of a numeric VR, so a
    // length that is not a multiple puts it out of step with the file, reading the
    // next header a byte early (and then gigabytes).
    if let Some(w) = value_width(&h.vr)
        && h.len != UNDEFINED
        && !h.len.is_multiple_of(w)
    {
        return Err(bad(format!(
            "element {} ({}) has {} bytes, not a multiple of its values' {w}",
            tag_text(h.tag),
            String::from_utf8_lossy(&h.vr),
            h.len
        )));
    }
    let sequence = &h.vr == b"SQ" || (!enc.explicit && h.len == UNDEFINED);
    // Only Pixel Data is encapsulated (found by fuzzing: another OB of undefined
    // length made the parser reserve 4 GB).
    let encapsulated = h.len == UNDEFINED && matches!(&h.vr, b"OB" | b"OW") && h.tag == (0x7FE0, 0x0010);
    if h.len == UNDEFINED && !sequence && !encapsulated && &h.vr != b"UN" {
        return Err(bad(format!("element {} has an undefined length, which only sequences and compressed pixel data may have", tag_text(h.tag))));
    }
    if !(sequence || encapsulated || (&h.vr == b"UN" && h.len == UNDEFINED)) {
        return src.skip(u64::from(h.len));
    }
    if depth >= MAX_DEPTH {
        return Err(bad(format!("sequences nested more than {MAX_DEPTH} deep")));
    }
    // An undefined-length UN is a sequence in implicit VR little endian (PS3.5 6.2.2).
    let inner = if &h.vr == b"UN" { Encoding::IMPLICIT_LE } else { enc };
    let end = (h.len != UNDEFINED).then(|| src.at + u64::from(h.len));
    loop {
        if let Some(e) = end
            && src.at >= e
        {
            return Ok(());
        }
        let item = due(src, inner, "a sequence")?;
        match item.tag {
            SEQUENCE_END if end.is_none() => return Ok(()),
            ITEM => {
                fits(src, &item, end.or(limit))?;
                if encapsulated {
                    // A fragment: its bytes, never parsed as elements.
                    if item.len == UNDEFINED {
                        return Err(bad("a compressed pixel data fragment of undefined length"));
                    }
                    src.skip(u64::from(item.len))?;
                } else if item.len == UNDEFINED {
                    items(src, inner, end.or(limit), depth + 1)?;
                } else {
                    let item_end = src.at + u64::from(item.len);
                    walk(src, inner, Some(item_end), depth + 1)?;
                    if src.at != item_end {
                        return Err(bad(format!("an item of {} ends past its length", tag_text(h.tag))));
                    }
                }
            }
            other => {
                return Err(bad(format!("{} inside sequence {} where an item was due, at byte {}", tag_text(other), tag_text(h.tag), src.at)));
            }
        }
    }
}

/// The elements of an undefined-length item, up to its delimiter.
fn items<R: Read + Seek>(src: &mut Source<R>, enc: Encoding, limit: Option<u64>, depth: usize) -> Result<()> {
    loop {
        if let Some(l) = limit
            && src.at >= l
        {
            return Err(bad("an item without its end"));
        }
        let h = due(src, enc, "an item")?;
        if h.tag == ITEM_END {
            return Ok(());
        }
        if h.tag.0 == 0xFFFE {
            return Err(bad(format!("{} inside an item, at byte {}", tag_text(h.tag), src.at)));
        }
        element(src, enc, &h, limit, depth)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Part 10 file: preamble, meta group with `syntax`, then `body`.
    fn file(syntax: &str, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend(b"DICM");
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        f.extend([0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        f.extend((uid.len() as u16).to_le_bytes());
        f.extend(uid);
        f.extend(body);
        f
    }

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend(tag.0.to_le_bytes());
        e.extend(tag.1.to_le_bytes());
        e.extend(vr);
        if matches!(vr, b"OB" | b"SQ" | b"UN" | b"UT") {
            e.extend([0, 0]);
            e.extend((value.len() as u32).to_le_bytes());
        } else {
            e.extend((value.len() as u16).to_le_bytes());
        }
        e.extend(value);
        e
    }

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    #[test]
    fn a_plain_file_passes() {
        let mut body = explicit((0x0010, 0x0010), b"PN", b"DOE^JOHN");
        body.extend(explicit((0x7FE0, 0x0010), b"OB", &[7; 64]));
        assert_eq!(check_bytes(&file(EXPLICIT, &body)), Ok(()));
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_any_parser_reserves_it() {
        let mut body = explicit((0x0010, 0x0010), b"PN", b"DOE^JOHN");
        let mut huge = explicit((0x7FE0, 0x0010), b"OB", &[7; 8]);
        let at = huge.len() - 8 - 4;
        huge[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        body.extend(huge);
        let e = check_bytes(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.to_string().contains("(7FE0,0010)") && e.to_string().contains("4294967280"), "{e}");
    }

    #[test]
    fn sequences_are_walked_and_bounded() {
        // An undefined-length sequence of one undefined-length item.
        let mut seq = Vec::new();
        seq.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        seq.extend(UNDEFINED.to_le_bytes());
        seq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend(UNDEFINED.to_le_bytes());
        seq.extend(explicit((0x0008, 0x1150), b"UI", b"1.2.3\0"));
        seq.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        seq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check_bytes(&file(EXPLICIT, &seq)), Ok(()));
        // Nested deeper than allowed.
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            deep.extend(UNDEFINED.to_le_bytes());
            deep.extend([0xFE, 0xFF, 0x00, 0xE0]);
            deep.extend(UNDEFINED.to_le_bytes());
        }
        assert!(check_bytes(&file(EXPLICIT, &deep)).unwrap_err().to_string().contains("nested"));
        // An item that claims more than its sequence holds.
        let mut liar = Vec::new();
        liar.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        liar.extend(16u32.to_le_bytes());
        liar.extend([0xFE, 0xFF, 0x00, 0xE0]);
        liar.extend(1000u32.to_le_bytes());
        liar.extend([0; 8]);
        assert!(check_bytes(&file(EXPLICIT, &liar)).is_err());
    }

    #[test]
    fn implicit_and_deflated_data_sets() {
        let mut implicit = Vec::new();
        implicit.extend([0x10, 0x00, 0x10, 0x00]);
        implicit.extend(8u32.to_le_bytes());
        implicit.extend(b"DOE^JOHN");
        assert_eq!(check_bytes(&file("1.2.840.10008.1.2", &implicit)), Ok(()));
        implicit[4..8].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(check_bytes(&file("1.2.840.10008.1.2", &implicit)).is_err());
        // Found by fuzzing: in implicit VR a sequence of defined length looks like
        // bytes without the dictionary; inside it, an element declaring 4 GB made the
        // parser reserve them (4.2 GB, 62 s, from 1.6 KB).
        let mut seq = Vec::new();
        seq.extend([0x08, 0x00, 0x15, 0x11]); // Referenced Study Sequence (SQ)
        seq.extend(24u32.to_le_bytes());
        seq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend(16u32.to_le_bytes());
        seq.extend([0x08, 0x00, 0x50, 0x00]); // Accession Number, declaring 4 GB
        seq.extend(0xFFFF_FD08u32.to_le_bytes());
        seq.extend(*b"ACC99887");
        let e = check_bytes(&file("1.2.840.10008.1.2", &seq)).unwrap_err();
        assert!(e.to_string().contains("(0008,0050)"), "{e}");
        // Found by fuzzing: a VR the parser does not know is UN to it, with a 32-bit
        // length; read with a 16-bit one, the walk saw another file than the parser.
        let mut unknown = Vec::new();
        unknown.extend([0xE0, 0x7F, 0x10, 0x19, 0, 0, 0, 0]);
        unknown.extend(0xFFFF_0000u32.to_le_bytes());
        let e = check_bytes(&file(EXPLICIT, &unknown)).unwrap_err();
        assert!(e.to_string().contains("(7FE0,1910)"), "{e}");
        // Found by fuzzing: an item among the elements of the data set.
        let mut stray = explicit((0x0010, 0x0010), b"PN", b"DOE^JOHN");
        stray.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        assert!(check_bytes(&file(EXPLICIT, &stray)).unwrap_err().to_string().contains("outside a sequence"));
        // Found by fuzzing: 241 bytes of an UL (the group length), read as 60 values.
        let mut group = Vec::new();
        group.extend([0x00, 0x00, 0x00, 0x00]);
        group.extend(5u32.to_le_bytes());
        group.extend([1, 2, 3, 4, 5]);
        let e = check_bytes(&file("1.2.840.10008.1.2", &group)).unwrap_err();
        assert!(e.to_string().contains("not a multiple"), "{e}");
        // Found by fuzzing: an OB of undefined length that is not Pixel Data.
        let mut ob = Vec::new();
        ob.extend([0xFF, 0xFF, 0xFF, 0x03, b'O', b'B', 0, 0]);
        ob.extend(UNDEFINED.to_le_bytes());
        ob.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(check_bytes(&file(EXPLICIT, &ob)).unwrap_err().to_string().contains("undefined length"));
        // A deflate bomb: a little compressed, a lot inflated, in one huge value.
        use std::io::Write;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&explicit((0x0010, 0x0010), b"PN", b"DOE^JOHN")).unwrap();
        let mut big = Vec::new();
        big.extend([0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        big.extend(0xFFFF_FFF0u32.to_le_bytes());
        z.write_all(&big).unwrap();
        for _ in 0..64 {
            z.write_all(&[0u8; 1 << 20]).unwrap();
        }
        let deflated = z.finish().unwrap();
        assert!(deflated.len() < 1 << 20);
        let bomb = file("1.2.840.10008.1.2.1.99", &deflated);
        let e = check_reader_with(io::Cursor::new(&bomb), 16 << 20).unwrap_err();
        assert!(e.to_string().contains("inflates past"), "{e}");
        // A deflated data set that ends cleanly passes.
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&explicit((0x0010, 0x0010), b"PN", b"DOE^JOHN")).unwrap();
        assert_eq!(check_bytes(&file("1.2.840.10008.1.2.1.99", &z.finish().unwrap())), Ok(()));
    }

    /// What fuzzing found (`fuzz/regressions/dicom/`), kept: each file fails alone,
    /// at once, with its reason; none reaches a parser that would reserve gigabytes.
    #[test]
    fn fuzz_findings_fail_alone_and_fast() {
        use crate::batch::{Outcome, deidentify_file};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/dicom");
        let out = std::env::temp_dir().join(format!("casecast-regressions-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let opts = crate::deid::Options {
            clean_pixels: false,
            render_frames: true,
            read_all_pictures: true,
            ..crate::deid::Options::new(b"fuzz-secret".to_vec())
        };
        let mut seen = 0;
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            let started = std::time::Instant::now();
            let outcome = deidentify_file(&f.path(), &out, &opts);
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?} took {:?}", f.path(), started.elapsed());
            match &outcome {
                Outcome::Failed(_, why) => assert!(why.len() > 20, "a reason: {why}"),
                // What is written reads back.
                Outcome::Done(out, _) => assert!(dicom_object::open_file(out).is_ok(), "{:?} wrote a file that does not read back", f.path()),
            }
            if f.file_name().to_string_lossy().contains("sop-instance-uid-of-two-values") {
                assert!(matches!(&outcome, Outcome::Failed(_, why) if why.contains("SOP Instance UID of 2 values")), "{outcome:?}");
            }
            if f.file_name().to_string_lossy().contains("declares-gigabytes") {
                assert!(matches!(&outcome, Outcome::Failed(_, why) if why.contains("declares")), "refused by the walk");
            }
            seen += 1;
        }
        assert!(seen >= 5);
        let _ = std::fs::remove_dir_all(out);
    }
}
