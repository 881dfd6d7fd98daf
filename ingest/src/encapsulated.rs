//! Compressed (encapsulated) multi-frame pixel data, a frame at a time: an ultrasound
//! cine of a thousand JPEG frames decodes to gigabytes, which must never be in memory
//! at once. The fragments are located in the file (items of the Pixel Data sequence),
//! grouped into frames (by the Basic Offset Table, one fragment per frame, or the
//! codec's start-of-image marker), and each frame is decoded on its own, read for
//! burned-in text, cleaned and written out native.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::batch::Outcome;
use crate::deid::{self, Options};
use crate::pixels::Layout;
use crate::progress::Step;

/// Where a fragment's bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fragment {
    /// Offset of the item's header, from the start of the first fragment's item
    /// (the Basic Offset Table's origin).
    item: u64,
    /// Offset of the bytes in the file.
    at: u64,
    len: u64,
}

/// The streamed path for compressed multi-frame files; `None` when the file is not
/// one (single frame, native, no pixel data found as expected): the whole-file path
/// takes it.
pub fn streamed(path: &Path, out_dir: &Path, opts: &Options, progress: &mut dyn FnMut(Step)) -> Option<Outcome> {
    let header = dicom_object::OpenFileOptions::new().read_until(tags::PIXEL_DATA).open_file(path).ok()?;
    let ts = header.meta().transfer_syntax().trim_end_matches('\0').to_string();
    if !is_encapsulated(&ts) {
        return None;
    }
    let frames = header.element(tags::NUMBER_OF_FRAMES).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1);
    if frames < 2 {
        return None;
    }
    let (bot, fragments) = locate(path)?;
    let groups = group(&ts, &bot, &fragments, frames as usize, path)?;
    let fail = |why: String| Some(Outcome::Failed(path.to_path_buf(), why));
    let flagged = header.element(tags::BURNED_IN_ANNOTATION).ok().and_then(|e| e.to_str().ok()).is_some_and(|s| s.trim() == "YES");
    let clean = opts.clean_pixels && deid::needs_reading(&header, opts);
    let original: InMemDicomObject = (*header).clone();
    let mut file = std::fs::File::open(path).ok()?;
    // The first frame decides the decoded layout; if it cannot be decoded, the
    // whole-file path says why (or passes the file through unchecked).
    let first = decode(&original, &ts, &read_frame(&mut file, &groups[0]).ok()?).ok()?;
    let layout = Layout { frames: frames as usize, ..first.layout };
    let frame_bytes = layout.frame_bytes();
    let cleaner = clean.then(|| deid::FrameCleaner::new(&original, layout.clone(), opts));

    let mut out_header = header;
    let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
    out_header.put(us(tags::ROWS, layout.rows as u16));
    out_header.put(us(tags::COLUMNS, layout.cols as u16));
    out_header.put(us(tags::SAMPLES_PER_PIXEL, layout.samples as u16));
    out_header.put(us(tags::BITS_ALLOCATED, layout.bits_allocated as u16));
    out_header.put(us(tags::PIXEL_REPRESENTATION, u16::from(layout.signed)));
    out_header.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from(first.photometric.as_str())));
    if layout.samples > 1 {
        out_header.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
    out_header.remove_element(tags::LOSSY_IMAGE_COMPRESSION_RATIO);
    out_header.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    let mut report = match deid::deidentify(&mut out_header, &Options { render_frames: false, clean_pixels: clean, ..opts.clone() }) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    report.decompressed = true;
    let mut first = Some(first.bytes);
    Some(crate::batch::write_streamed(path, out_header, report, layout.clone(), cleaner, out_dir, progress, true, |i, frame| {
        if let Some(bytes) = first.take() {
            *frame = bytes;
            return Ok(());
        }
        let bytes = read_frame(&mut file, &groups[i]).map_err(|e| format!("frame {} cannot be read: {e}", i + 1))?;
        let d = decode(&original, &ts, &bytes).map_err(|why| {
            if flagged { format!("quarantined: frame {} cannot be checked: {why}", i + 1) } else { format!("frame {}: {why}", i + 1) }
        })?;
        if d.layout.frame_bytes() != frame_bytes {
            return Err(format!("frame {} decodes to a different size than the first", i + 1));
        }
        *frame = d.bytes;
        Ok(())
    }))
}

fn is_encapsulated(ts: &str) -> bool {
    !matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99")
}

/// The Basic Offset Table and the fragments of the file's encapsulated Pixel Data.
fn locate(path: &Path) -> Option<(Vec<u32>, Vec<Fragment>)> {
    let mut f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).ok()?);
    let size = f.get_ref().metadata().ok()?.len();
    // Pixel Data, OB, undefined length, then an item: its element header.
    let start = find(&mut f, &[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0x00, 0xE0])? + 12;
    f.seek(SeekFrom::Start(start)).ok()?;
    let item = |f: &mut std::io::BufReader<std::fs::File>| -> Option<(bool, u64)> {
        let mut h = [0u8; 8];
        f.read_exact(&mut h).ok()?;
        let len = u64::from(u32::from_le_bytes(h[4..8].try_into().ok()?));
        match h[..4] {
            [0xFE, 0xFF, 0x00, 0xE0] => Some((true, len)),
            [0xFE, 0xFF, 0xDD, 0xE0] => Some((false, 0)),
            _ => None,
        }
    };
    let (true, bot_len) = item(&mut f)? else { return None };
    if bot_len % 4 != 0 || bot_len > 64 << 20 {
        return None;
    }
    let mut bot_bytes = vec![0u8; bot_len as usize];
    f.read_exact(&mut bot_bytes).ok()?;
    let bot = bot_bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let origin = start + 8 + bot_len;
    let mut fragments = Vec::new();
    let mut pos = origin;
    loop {
        match item(&mut f)? {
            (false, _) => break,
            (true, len) => {
                if pos + 8 + len > size {
                    return None;
                }
                fragments.push(Fragment { item: pos - origin, at: pos + 8, len });
                pos += 8 + len;
                f.seek(SeekFrom::Start(pos)).ok()?;
            }
        }
    }
    Some((bot, fragments))
}

/// Offset of the first occurrence of `needle`, reading in chunks.
fn find(f: &mut std::io::BufReader<std::fs::File>, needle: &[u8]) -> Option<u64> {
    f.seek(SeekFrom::Start(0)).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut base = 0u64;
    let mut keep = 0usize;
    loop {
        let n = f.read(&mut buf[keep..]).ok()?;
        if n == 0 {
            return None;
        }
        let filled = keep + n;
        if let Some(i) = buf[..filled].windows(needle.len()).position(|w| w == needle) {
            return Some(base + i as u64);
        }
        keep = (needle.len() - 1).min(filled);
        buf.copy_within(filled - keep..filled, 0);
        base += (filled - keep) as u64;
    }
}

/// The fragments of each frame.
fn group(ts: &str, bot: &[u32], fragments: &[Fragment], frames: usize, path: &Path) -> Option<Vec<Vec<Fragment>>> {
    let groups: Vec<Vec<Fragment>> = if bot.len() == frames {
        let mut starts: Vec<u64> = bot.iter().map(|&o| u64::from(o)).collect();
        starts.push(u64::MAX);
        (0..frames).map(|i| fragments.iter().copied().filter(|f| f.item >= starts[i] && f.item < starts[i + 1]).collect()).collect()
    } else if fragments.len() == frames {
        fragments.iter().map(|f| vec![*f]).collect()
    } else {
        // A frame starts where the codec's start marker is.
        let marker: &[u8] = match ts {
            "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70"
            | "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => &[0xFF, 0xD8],
            "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => &[0xFF, 0x4F],
            _ => return None,
        };
        let mut file = std::fs::File::open(path).ok()?;
        let mut groups: Vec<Vec<Fragment>> = Vec::new();
        for f in fragments {
            let mut head = [0u8; 2];
            file.seek(SeekFrom::Start(f.at)).ok()?;
            file.read_exact(&mut head).ok()?;
            if head == marker || groups.is_empty() {
                groups.push(Vec::new());
            }
            groups.last_mut()?.push(*f);
        }
        groups
    };
    (groups.len() == frames && groups.iter().all(|g| !g.is_empty())).then_some(groups)
}

fn read_frame(file: &mut std::fs::File, fragments: &[Fragment]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(fragments.iter().map(|f| f.len as usize).sum());
    for f in fragments {
        file.seek(SeekFrom::Start(f.at))?;
        let start = out.len();
        out.resize(start + f.len as usize, 0);
        file.read_exact(&mut out[start..])?;
    }
    Ok(out)
}

struct Decoded {
    bytes: Vec<u8>,
    layout: Layout,
    photometric: String,
}

/// Decodes one frame's compressed bytes with the object's attributes.
fn decode(header: &InMemDicomObject, ts: &str, bytes: &[u8]) -> Result<Decoded, String> {
    use dicom_pixeldata::PixelDecoder;
    let declared = crate::pixels::Declared::of(header);
    crate::pixels::check_codestream(bytes, declared)?;
    if ts == crate::rle::TRANSFER_SYNTAX {
        let mut one = header.clone();
        one.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("1")));
        one.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
        let layout = Layout::of(&one)?;
        let per_sample = layout.bits_allocated.div_ceil(8);
        let bytes = crate::rle::decode_frame(bytes, layout.frame_bytes() / (layout.samples * per_sample), layout.samples, per_sample)?;
        let photometric = one.element(tags::PHOTOMETRIC_INTERPRETATION).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
        return Ok(Decoded { bytes, layout, photometric });
    }
    let mut one = header.clone();
    one.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("1")));
    one.put(DataElement::new(tags::PIXEL_DATA, VR::OB, Value::PixelSequence(PixelFragmentSequence::new_fragments(vec![bytes.to_vec()]))));
    let meta = dicom_object::meta::FileMetaTableBuilder::new()
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
        .media_storage_sop_instance_uid("1.2.3")
        .transfer_syntax(ts)
        .build()
        .map_err(|e| e.to_string())?;
    let file = one.with_exact_meta(meta);
    let decode = std::panic::AssertUnwindSafe(|| file.decode_pixel_data().map_err(|e| format!("compressed frame that cannot be decoded: {e}")).map(|d| {
        (d.data().to_vec(), d.rows(), d.columns(), d.samples_per_pixel(), d.bits_allocated(), d.photometric_interpretation().as_str().to_string(),
         matches!(d.pixel_representation(), dicom_pixeldata::PixelRepresentation::Signed))
    }));
    let (data, rows, cols, samples, bits, photometric, signed) =
        std::panic::catch_unwind(decode).map_err(|_| "compressed frame that does not match its header (the decoder gave up)".to_string())??;
    // The decoded frame's layout: the header's (its palette, its Bits Stored) with
    // what the decoder made of the pixels.
    let mut decoded = header.clone();
    crate::pixels::put_decoded(&mut decoded, crate::pixels::Decoded { rows, cols, samples, bits, signed, photometric: &photometric });
    decoded.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    decoded.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("1")));
    let layout = Layout::of(&decoded)?;
    if data.len() < layout.frame_bytes() {
        return Err("a frame decodes to fewer bytes than its size".into());
    }
    let mut data = data;
    data.truncate(layout.frame_bytes());
    Ok(Decoded { bytes: data, layout, photometric })
}
