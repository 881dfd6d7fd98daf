//! Native (uncompressed) pixel data: frames as 8-bit pictures for reading and
//! showing, black boxes written back into the pixel data, and PNG output.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The most frames an object may have (a header could claim any number).
pub const MAX_FRAMES: usize = 100_000;

/// How a frame's samples make a picture (Photometric Interpretation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// MONOCHROME2, or MONOCHROME1 (`inverted`: higher values are darker).
    Grey { inverted: bool },
    /// RGB.
    Rgb,
    /// YBR_FULL: full-range luminance and colour differences.
    YbrFull,
    /// YBR_FULL_422: two pixels of a row share their Cb and Cr (Y Y Cb Cr).
    YbrFull422,
    /// PALETTE COLOR: each value an index into the object's palette.
    Palette(std::sync::Arc<crate::palette::Palette>),
}

/// The layout of a native pixel data element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Rows (height).
    pub rows: usize,
    /// Columns (width).
    pub cols: usize,
    /// 1 (grey, palette) or 3 (colour).
    pub samples: usize,
    /// 1, 8, 16 or 32.
    pub bits_allocated: usize,
    /// Bits of each sample used (Bits Stored).
    pub stored: usize,
    /// Signed values.
    pub signed: bool,
    /// IEEE floats (Float or Double Float Pixel Data, 32 or 64 bits).
    pub float: bool,
    /// Colour planes one after the other rather than interleaved.
    pub planar: bool,
    /// What the samples mean.
    pub model: Model,
    /// Frames.
    pub frames: usize,
}

impl Layout {
    /// Grey pictures of `bits_allocated` bits, all used.
    pub fn grey(rows: usize, cols: usize, bits_allocated: usize, frames: usize) -> Layout {
        Layout {
            rows,
            cols,
            samples: 1,
            bits_allocated,
            stored: bits_allocated,
            signed: false,
            float: false,
            planar: false,
            model: Model::Grey { inverted: false },
            frames,
        }
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        match (&self.model, self.bits_allocated) {
            (_, 1) => (self.rows * self.cols).div_ceil(8),
            (Model::YbrFull422, _) => self.rows * self.cols * 2,
            _ => self.rows * self.cols * self.samples * self.bits_allocated / 8,
        }
    }

    /// MONOCHROME1.
    pub fn inverted(&self) -> bool {
        self.model == Model::Grey { inverted: true }
    }

    /// The layout of `obj`'s pixel data, if it is native and of a kind handled
    /// here; the reason otherwise. Handled: grey of 1, 8, 16 or 32 bits, and grey
    /// floats of 32 or 64 bits (Float and Double Float Pixel Data, as parametric maps
    /// have them); RGB of 8, 16 or 32 bits; YBR_FULL and YBR_FULL_422 of 8 bits;
    /// PALETTE COLOR of 8 or 16 bits with its palette (whole or segmented).
    pub fn of(obj: &InMemDicomObject) -> Result<Layout, String> {
        let uint = |t| obj.element(t).ok().and_then(|e| e.to_int::<i64>().ok());
        let text = |t| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
        let (Some(rows), Some(cols)) = (uint(tags::ROWS), uint(tags::COLUMNS)) else {
            return Err("no Rows/Columns".into());
        };
        let photometric = text(tags::PHOTOMETRIC_INTERPRETATION);
        let samples = uint(tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize;
        let float = match pixel_data_tag(obj) {
            Some(t) if t == tags::FLOAT_PIXEL_DATA => Some(32),
            Some(t) if t == tags::DOUBLE_FLOAT_PIXEL_DATA => Some(64),
            _ => None,
        };
        let bits_allocated = float.unwrap_or(uint(tags::BITS_ALLOCATED).unwrap_or(0) as usize);
        let planar = uint(tags::PLANAR_CONFIGURATION) == Some(1);
        let model = match (samples, bits_allocated, photometric.as_str()) {
            (1, 32 | 64, "MONOCHROME2") if float.is_some() => Some(Model::Grey { inverted: false }),
            _ if float.is_some() => None,
            (1, 1 | 8 | 16 | 32, "MONOCHROME1") => Some(Model::Grey { inverted: true }),
            (1, 1 | 8 | 16 | 32, "MONOCHROME2") => Some(Model::Grey { inverted: false }),
            (1, 8 | 16, "PALETTE COLOR") => Some(Model::Palette(std::sync::Arc::new(crate::palette::Palette::of(obj)?))),
            (3, 8 | 16 | 32, "RGB") => Some(Model::Rgb),
            (3, 8, "YBR_FULL") => Some(Model::YbrFull),
            (3, 8, "YBR_FULL_422") if !planar && cols % 2 == 0 => Some(Model::YbrFull422),
            _ => None,
        };
        let l = Layout {
            rows: rows.max(0) as usize,
            cols: cols.max(0) as usize,
            samples,
            bits_allocated,
            stored: uint(tags::BITS_STORED).map_or(bits_allocated, |b| (b.max(1) as usize).min(bits_allocated.max(1))),
            signed: uint(tags::PIXEL_REPRESENTATION) == Some(1),
            float: float.is_some(),
            planar,
            model: model.clone().unwrap_or(Model::Grey { inverted: false }),
            frames: uint(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize,
        };
        if l.frames > MAX_FRAMES {
            return Err(format!("{} frames; at most {MAX_FRAMES} are handled", l.frames));
        }
        if model.is_none() || l.rows == 0 || l.cols == 0 || l.rows > 16_384 || l.cols > 16_384 {
            return Err(format!("pixel data {photometric} {}×{} bits {} not handled", l.samples, l.rows, l.bits_allocated));
        }
        // Frames of one bit follow each other bit by bit; handled when each starts
        // on a byte (as every SEG of even rows or columns times 4 does).
        if l.bits_allocated == 1 && !(l.rows * l.cols).is_multiple_of(8) && l.frames > 1 {
            return Err(format!("1-bit frames of {}×{} pixels that do not start on a byte", l.cols, l.rows));
        }
        Ok(l)
    }
}

/// Native pixel data taken out of an object to be worked on, and put back with
/// [`NativePixels::put_back`]; the bytes are little endian whatever the reader made
/// of them (OB bytes or OW words).
pub struct NativePixels {
    /// The pixel bytes.
    pub bytes: Vec<u8>,
    tag: dicom_core::Tag,
    vr: dicom_core::VR,
    /// How the reader held the values: bytes, or words of 2, 4 (floats) or 8
    /// (doubles) bytes.
    width: usize,
}

/// The element holding `obj`'s pixels: Pixel Data, or Float or Double Float Pixel
/// Data.
pub fn pixel_data_tag(obj: &InMemDicomObject) -> Option<dicom_core::Tag> {
    [tags::PIXEL_DATA, tags::FLOAT_PIXEL_DATA, tags::DOUBLE_FLOAT_PIXEL_DATA].into_iter().find(|&t| obj.element(t).is_ok())
}

impl NativePixels {
    /// Takes the native pixel data out of `obj`; `None` (and `obj` unchanged) when
    /// there is none or it is encapsulated (compressed).
    pub fn take(obj: &mut InMemDicomObject) -> Option<NativePixels> {
        let tag = pixel_data_tag(obj)?;
        let native = matches!(
            obj.element(tag).ok()?.value(),
            Value::Primitive(PrimitiveValue::U8(_) | PrimitiveValue::U16(_) | PrimitiveValue::F32(_) | PrimitiveValue::F64(_))
        );
        if !native {
            return None;
        }
        let (header, value) = obj.take(tag)?.into_parts();
        let (bytes, width) = match value {
            Value::Primitive(PrimitiveValue::U8(b)) => (b.into_vec(), 1),
            Value::Primitive(PrimitiveValue::U16(w)) => (w.iter().flat_map(|v| v.to_le_bytes()).collect(), 2),
            Value::Primitive(PrimitiveValue::F32(w)) => (w.iter().flat_map(|v| v.to_le_bytes()).collect(), 4),
            Value::Primitive(PrimitiveValue::F64(w)) => (w.iter().flat_map(|v| v.to_le_bytes()).collect(), 8),
            _ => unreachable!("checked above"),
        };
        Some(NativePixels { bytes, tag, vr: header.vr, width })
    }

    /// Puts the (changed) pixel data back into `obj`.
    pub fn put_back(self, obj: &mut InMemDicomObject) {
        let b = &self.bytes;
        let value = match self.width {
            2 => PrimitiveValue::U16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
            4 => PrimitiveValue::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            8 => PrimitiveValue::F64(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
            _ => PrimitiveValue::U8(self.bytes.into()),
        };
        obj.put(dicom_core::DataElement::new(self.tag, self.vr, value));
    }
}

/// What a compressed frame's own header states about its picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codestream {
    pub columns: u32,
    pub rows: u32,
    /// Components (samples per pixel).
    pub components: u32,
    /// Bits a sample.
    pub precision: u32,
}

/// The picture a compressed frame's own header states: a JPEG's start of frame
/// (baseline, extended, lossless, JPEG-LS), or a JPEG 2000 codestream's SIZ. `None`
/// for what has no such header (RLE) or is not read here.
pub fn codestream(frame: &[u8]) -> Option<Codestream> {
    let be16 = |b: &[u8], i: usize| b.get(i..i + 2).map(|x| u32::from(u16::from_be_bytes([x[0], x[1]])));
    let be32 = |b: &[u8], i: usize| b.get(i..i + 4).map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
    let byte = |b: &[u8], i: usize| b.get(i).map(|&x| u32::from(x));
    match frame.get(..4)? {
        // JPEG 2000: SOC then SIZ: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, the tile
        // sizes and offsets, Csiz, then each component's Ssiz (precision - 1).
        [0xFF, 0x4F, 0xFF, 0x51] => {
            let (x, y, xo, yo) = (be32(frame, 8)?, be32(frame, 12)?, be32(frame, 16)?, be32(frame, 20)?);
            Some(Codestream {
                columns: x.checked_sub(xo)?,
                rows: y.checked_sub(yo)?,
                components: be16(frame, 40)?,
                precision: (byte(frame, 42)? & 0x7F) + 1,
            })
        }
        // JPEG: SOI, then markers up to a start of frame: length, P, Y, X, Nf.
        [0xFF, 0xD8, ..] => {
            let mut i = 2;
            while i + 4 <= frame.len() && frame[i] == 0xFF {
                let marker = frame[i + 1];
                let len = be16(frame, i + 2)? as usize;
                let sof = matches!(marker, 0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC)) || marker == 0xF7;
                if sof {
                    return Some(Codestream {
                        columns: be16(frame, i + 7)?,
                        rows: be16(frame, i + 5)?,
                        components: byte(frame, i + 9)?,
                        precision: byte(frame, i + 4)?,
                    });
                }
                i += 2 + len;
            }
            None
        }
        _ => None,
    }
}

/// The header's Rows, Columns, SamplesPerPixel and BitsAllocated, 0 where absent.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub rows: u64,
    pub columns: u64,
    pub samples: u64,
    pub bits: u64,
}

impl Declared {
    pub fn of(obj: &InMemDicomObject) -> Declared {
        let uint = |t| obj.element(t).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(0);
        Declared { rows: uint(tags::ROWS), columns: uint(tags::COLUMNS), samples: uint(tags::SAMPLES_PER_PIXEL), bits: uint(tags::BITS_ALLOCATED) }
    }
}

/// Refuses a compressed frame whose own header disagrees with the object's in a way
/// that makes the decoders write past what the header sizes, all found by fuzzing:
/// a JPEG 2000 codestream claiming 6 million rows in an 11 KB file made the decoder
/// take 7.7 GB; a JPEG of 3 components under SamplesPerPixel 1 made it panic. The
/// decoders size their output from the codestream, so this is checked before any of
/// them runs. A value the header lacks (0) is not compared.
pub fn check_codestream(frame: &[u8], declared: Declared) -> Result<(), String> {
    let Some(c) = codestream(frame) else { return Ok(()) };
    let Declared { rows, columns, samples, bits } = declared;
    if u64::from(c.columns) > columns || u64::from(c.rows) > rows {
        return Err(format!("compressed picture of {}×{} where the header says {columns}×{rows}", c.columns, c.rows));
    }
    if samples != 0 && u64::from(c.components) != samples {
        return Err(format!("compressed picture of {} components where the header says {samples} samples per pixel", c.components));
    }
    if bits != 0 && u64::from(c.precision) > bits {
        return Err(format!("compressed picture of {} bits a sample where the header allocates {bits}", c.precision));
    }
    Ok(())
}

/// Decompresses encapsulated pixel data in place (JPEG baseline/extended/lossless,
/// RLE), so its frames can be read and cleaned like native ones: the pixel data,
/// its attributes and the transfer syntax (now Explicit VR Little Endian) change
/// together. `Ok(false)` when the pixel data is native already or absent.
pub fn decompress(file: &mut dicom_object::DefaultDicomObject, max_decoded_bytes: u64) -> Result<bool, String> {
    use dicom_core::{DataElement, VR};
    use dicom_pixeldata::PixelDecoder;
    let encapsulated = matches!(file.element(tags::PIXEL_DATA).map(|e| e.value()), Ok(Value::PixelSequence(_)));
    if !encapsulated {
        return Ok(false);
    }
    // Decoded whole: bounded, so one file cannot take the memory of the server.
    let uint = |t| file.element(t).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1);
    let decoded = uint(tags::ROWS) * uint(tags::COLUMNS) * uint(tags::SAMPLES_PER_PIXEL) * uint(tags::BITS_ALLOCATED).div_ceil(8) * uint(tags::NUMBER_OF_FRAMES);
    if decoded > max_decoded_bytes {
        return Err(format!(
            "compressed pixel data that decodes to {} MB; at most {} MB are decoded (cases.max_decoded_mb)",
            decoded >> 20,
            max_decoded_bytes >> 20
        ));
    }
    if let Ok(Value::PixelSequence(seq)) = file.element(tags::PIXEL_DATA).map(|e| e.value()) {
        let declared = Declared::of(file);
        for f in seq.fragments() {
            check_codestream(f, declared)?;
        }
    }
    if file.meta().transfer_syntax().trim_end_matches('\0') == crate::rle::TRANSFER_SYNTAX {
        return decompress_rle(file).map(|()| true);
    }
    // The decoders panic on some hostile input (a JPEG whose components disagree
    // with the header): that must fail this file, not the process.
    let decode = std::panic::AssertUnwindSafe(|| {
        let d = file.decode_pixel_data().map_err(|e| format!("compressed pixel data that cannot be decoded: {e}"))?;
        Ok::<_, String>((
            d.data().to_vec(),
            d.rows(),
            d.columns(),
            d.samples_per_pixel(),
            d.bits_allocated(),
            d.photometric_interpretation().as_str().to_string(),
            matches!(d.pixel_representation(), dicom_pixeldata::PixelRepresentation::Signed),
        ))
    });
    let decoded = std::panic::catch_unwind(decode)
        .map_err(|_| "compressed pixel data that does not match its header (the decoder gave up)".to_string())
        .and_then(|r| r);
    let (bytes, rows, cols, samples, bits, photometric, signed) = match decoded {
        Ok(d) => d,
        // JPEG of 12 bits a sample (extended, process 4): the Rust decoder reads
        // 8-bit DCT only; dcmtk's does.
        Err(why) if twelve_bit_jpeg(file) => return decompress_with_dcmtk(file).map(|()| true).map_err(|e| format!("{why}; {e}")),
        Err(why) => return Err(why),
    };
    put_decoded(file, Decoded { rows, cols, samples, bits, signed, photometric: &photometric });
    let vr = if bits > 8 { VR::OW } else { VR::OB };
    file.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::U8(bytes.into())));
    file.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    Ok(true)
}

/// What a decoder made of compressed pixels.
pub struct Decoded<'a> {
    pub rows: u32,
    pub cols: u32,
    pub samples: u16,
    pub bits: u16,
    pub signed: bool,
    pub photometric: &'a str,
}

/// Puts the attributes that describe decoded (native, interleaved) pixels into
/// `obj`, for the whole-file and the frame-at-a-time paths alike.
pub fn put_decoded(obj: &mut InMemDicomObject, d: Decoded) {
    use dicom_core::{DataElement, VR};
    let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::ROWS, d.rows as u16));
    obj.put(us(tags::COLUMNS, d.cols as u16));
    obj.put(us(tags::SAMPLES_PER_PIXEL, d.samples));
    obj.put(us(tags::BITS_ALLOCATED, d.bits));
    obj.put(us(tags::PIXEL_REPRESENTATION, u16::from(d.signed)));
    obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from(d.photometric)));
    if d.samples > 1 {
        obj.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
}

/// Whether `file` holds JPEG (DCT) frames of more than 8 bits a sample.
fn twelve_bit_jpeg(file: &dicom_object::DefaultDicomObject) -> bool {
    let ts = file.meta().transfer_syntax().trim_end_matches('\0');
    let first = match file.element(tags::PIXEL_DATA).map(|e| e.value()) {
        Ok(Value::PixelSequence(seq)) => seq.fragments().first().and_then(|f| codestream(f)),
        _ => None,
    };
    matches!(ts, "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.50") && first.is_some_and(|c| c.precision > 8)
}

/// Decodes `file`'s pixel data in place with dcmtk's `dcmdjpeg` (Debian package
/// dcmtk), run on a private temporary copy, bounded in time; the decoded pixel data
/// and the attributes that describe it replace the compressed ones.
fn decompress_with_dcmtk(file: &mut dicom_object::DefaultDicomObject) -> Result<(), String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir().join(format!("casecast-dcmdjpeg-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let (input, output) = (base.with_extension("in.dcm"), base.with_extension("out.dcm"));
    let run = crate::batch::write_file(file, &input).and_then(|()| {
        std::process::Command::new("timeout")
            .args(["120", "dcmdjpeg"])
            .arg(&input)
            .arg(&output)
            .output()
            .map_err(|e| format!("12-bit JPEG needs dcmtk's dcmdjpeg (Debian package dcmtk): {e}"))
    });
    let _ = std::fs::remove_file(&input);
    let decoded = run.and_then(|out| {
        if out.status.success() {
            dicom_object::open_file(&output).map_err(|e| format!("dcmdjpeg's output: {e}"))
        } else {
            Err(format!("dcmdjpeg could not decode it ({})", String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("").trim()))
        }
    });
    let _ = std::fs::remove_file(&output);
    let decoded = decoded?;
    for t in [
        tags::ROWS,
        tags::COLUMNS,
        tags::SAMPLES_PER_PIXEL,
        tags::PHOTOMETRIC_INTERPRETATION,
        tags::PLANAR_CONFIGURATION,
        tags::BITS_ALLOCATED,
        tags::BITS_STORED,
        tags::HIGH_BIT,
        tags::PIXEL_REPRESENTATION,
        tags::PIXEL_DATA,
    ] {
        match decoded.element(t) {
            Ok(e) => {
                file.put(e.clone());
            }
            Err(_) => {
                file.remove_element(t);
            }
        }
    }
    if !matches!(file.element(tags::PIXEL_DATA).map(|e| e.value()), Ok(Value::Primitive(_))) {
        return Err("dcmdjpeg left the pixel data compressed".into());
    }
    file.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    Ok(())
}

/// RLE pixel data decoded in place: a frame a fragment, each as many bytes as the
/// header says ([`crate::rle`]); the attributes stay (now interleaved).
fn decompress_rle(file: &mut dicom_object::DefaultDicomObject) -> Result<(), String> {
    use dicom_core::{DataElement, VR};
    let d = Declared::of(file);
    let frames = file.element(tags::NUMBER_OF_FRAMES).ok().and_then(|e| e.to_int::<usize>().ok()).unwrap_or(1).max(1);
    let bytes = usize::try_from(d.bits.div_ceil(8)).unwrap_or(0);
    let samples = d.samples as usize;
    // One bit a pixel: the segment holds the packed bytes.
    let pixels = if d.bits == 1 { ((d.rows * d.columns) as usize).div_ceil(8) } else { (d.rows * d.columns) as usize };
    let Ok(Value::PixelSequence(seq)) = file.element(tags::PIXEL_DATA).map(|e| e.value()) else { return Ok(()) };
    if seq.fragments().len() != frames {
        return Err(format!("RLE pixel data of {} fragments for {frames} frames (one each)", seq.fragments().len()));
    }
    let mut out = Vec::with_capacity(pixels * samples * bytes * frames);
    for f in seq.fragments() {
        out.extend(crate::rle::decode_frame(f, pixels, samples, bytes)?);
    }
    if samples > 1 {
        file.put(DataElement::new(tags::PLANAR_CONFIGURATION, VR::US, PrimitiveValue::from(0u16)));
    }
    let vr = if bytes > 1 { VR::OW } else { VR::OB };
    file.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::U8(out.into())));
    file.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    Ok(())
}

/// One sample of a frame as an integer: the `i`th value of `bits` bits.
fn sample(frame: &[u8], i: usize, bits: usize, signed: bool) -> i64 {
    match (bits, signed) {
        (1, _) => i64::from((frame[i / 8] >> (i % 8)) & 1),
        (8, false) => i64::from(frame[i]),
        (8, true) => i64::from(frame[i] as i8),
        (16, false) => i64::from(u16::from_le_bytes([frame[2 * i], frame[2 * i + 1]])),
        (16, true) => i64::from(i16::from_le_bytes([frame[2 * i], frame[2 * i + 1]])),
        (_, false) => i64::from(u32::from_le_bytes([frame[4 * i], frame[4 * i + 1], frame[4 * i + 2], frame[4 * i + 3]])),
        (_, true) => i64::from(i32::from_le_bytes([frame[4 * i], frame[4 * i + 1], frame[4 * i + 2], frame[4 * i + 3]])),
    }
}

/// One float sample of a frame (not-a-number and infinities read as 0).
fn float_sample(frame: &[u8], i: usize, bits: usize) -> f64 {
    let v = if bits == 64 {
        f64::from_le_bytes(frame[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]))
    } else {
        f64::from(f32::from_le_bytes([frame[4 * i], frame[4 * i + 1], frame[4 * i + 2], frame[4 * i + 3]]))
    };
    if v.is_finite() { v } else { 0.0 }
}

/// One frame of a colour model (RGB, YBR, palette) as 8-bit RGB, interleaved;
/// `None` for grey.
pub fn frame_to_rgb(l: &Layout, frame: &[u8]) -> Option<Vec<u8>> {
    let n = l.rows * l.cols;
    // The `s`th sample of pixel `i`, interleaved or planar.
    let at = |i: usize, s: usize| if l.planar { s * n + i } else { 3 * i + s };
    let to8 = |v: i64| -> u8 { if l.stored > 8 { (v >> (l.stored - 8)).clamp(0, 255) as u8 } else { v.clamp(0, 255) as u8 } };
    let ybr = |y: u8, cb: u8, cr: u8| -> [u8; 3] {
        let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
        let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
        [c(y + 1.402 * cr), c(y - 0.344_136 * cb - 0.714_136 * cr), c(y + 1.772 * cb)]
    };
    let mut out = Vec::with_capacity(3 * n);
    match &l.model {
        Model::Grey { .. } => return None,
        Model::Rgb => {
            for i in 0..n {
                out.extend((0..3).map(|s| to8(sample(frame, at(i, s), l.bits_allocated, false))));
            }
        }
        Model::YbrFull => {
            for i in 0..n {
                out.extend(ybr(frame[at(i, 0)], frame[at(i, 1)], frame[at(i, 2)]));
            }
        }
        Model::YbrFull422 => {
            for i in 0..n {
                let pair = 4 * (i / 2);
                out.extend(ybr(frame[pair + i % 2], frame[pair + 2], frame[pair + 3]));
            }
        }
        Model::Palette(p) => {
            for i in 0..n {
                out.extend(p.colour(sample(frame, i, l.bits_allocated, l.signed)));
            }
        }
    }
    Some(out)
}

/// One frame as an 8-bit picture: grey (windowed with the object's first window,
/// else the frame's own range; MONOCHROME1 inverted) or, for colour, its luminance.
pub fn frame_to_gray(l: &Layout, frame: &[u8], window: Option<(f64, f64)>) -> Vec<u8> {
    let n = l.rows * l.cols;
    if let Some(rgb) = frame_to_rgb(l, frame) {
        return rgb.chunks_exact(3).map(|c| ((u32::from(c[0]) * 299 + u32::from(c[1]) * 587 + u32::from(c[2]) * 114) / 1000) as u8).collect();
    }
    let value = |i: usize| if l.float { float_sample(frame, i, l.bits_allocated) } else { sample(frame, i, l.bits_allocated, l.signed) as f64 };
    let (lo, hi) = match window {
        Some((c, w)) if w > 1.0 && l.bits_allocated > 1 => (c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0),
        _ => (0..n).map(value).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v))),
    };
    let span = (hi - lo).max(1.0);
    (0..n)
        .map(|i| {
            let g = (((value(i) - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
            if l.inverted() { 255 - g } else { g }
        })
        .collect()
}

/// Blacks out `boxes` (x, y, width, height, in pixels) of one frame, in place, in
/// the frame's own encoding: the lowest value (the highest for MONOCHROME1), zero
/// RGB, Y 0 with neutral colour differences, the palette's darkest entry.
pub fn black_out(l: &Layout, frame: &mut [u8], boxes: &[(usize, usize, usize, usize)]) {
    let n = l.rows * l.cols;
    let bytes = l.bits_allocated.div_ceil(8);
    // A grey or palette value, as its bytes (little endian).
    let value: i64 = match &l.model {
        Model::Palette(p) => p.darkest(),
        _ => match (l.inverted(), l.signed) {
            (false, false) => 0,
            (false, true) => -(1i64 << (l.bits_allocated - 1)),
            (true, false) => (1i64 << l.bits_allocated) - 1,
            (true, true) => (1i64 << (l.bits_allocated - 1)) - 1,
        },
    };
    let mut le = value.to_le_bytes();
    if l.float {
        // Floats: the frame's lowest value, so its range (and its rendering) stays.
        let lowest = (0..n).map(|i| float_sample(frame, i, l.bits_allocated)).fold(f64::MAX, f64::min);
        le = if l.bits_allocated == 64 { lowest.to_le_bytes() } else { let b = (lowest as f32).to_le_bytes(); [b[0], b[1], b[2], b[3], 0, 0, 0, 0] };
    }
    for &(x, y, w, h) in boxes {
        for row in y.min(l.rows)..(y + h).min(l.rows) {
            for col in x.min(l.cols)..(x + w).min(l.cols) {
                let i = row * l.cols + col;
                match l.model {
                    Model::Rgb => {
                        for s in 0..3 {
                            let at = if l.planar { s * n + i } else { 3 * i + s };
                            frame[at * bytes..(at + 1) * bytes].fill(0);
                        }
                    }
                    Model::YbrFull => {
                        for (s, v) in [0u8, 128, 128].into_iter().enumerate() {
                            frame[if l.planar { s * n + i } else { 3 * i + s }] = v;
                        }
                    }
                    Model::YbrFull422 => {
                        let pair = 4 * (i / 2);
                        frame[pair + i % 2] = 0;
                        frame[pair + 2] = 128;
                        frame[pair + 3] = 128;
                    }
                    _ if l.bits_allocated == 1 => {
                        let bit = 1u8 << (i % 8);
                        if value & 1 == 1 { frame[i / 8] |= bit } else { frame[i / 8] &= !bit }
                    }
                    _ => frame[i * bytes..(i + 1) * bytes].copy_from_slice(&le[..bytes]),
                }
            }
        }
    }
}

/// One frame as a picture for the viewer: PNG (lossless, for single frames) or JPEG
/// (for cine), grey windowed as [`frame_to_gray`] does, colour (palette applied) as
/// it is.
pub fn render(l: &Layout, frame: &[u8], window: Option<(f64, f64)>, jpeg: bool) -> Result<Vec<u8>, String> {
    let (pixels, colour) = match frame_to_rgb(l, frame) {
        Some(rgb) => (rgb, true),
        None => (frame_to_gray(l, frame, window), false),
    };
    if !jpeg {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, l.cols as u32, l.rows as u32);
            enc.set_color(if colour { png::ColorType::Rgb } else { png::ColorType::Grayscale });
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(|e| e.to_string())?;
            w.write_image_data(&pixels).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    let (w, h) = (u16::try_from(l.cols).map_err(|_| "too wide for JPEG")?, u16::try_from(l.rows).map_err(|_| "too high for JPEG")?);
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 88)
        .encode(&pixels, w, h, if colour { jpeg_encoder::ColorType::Rgb } else { jpeg_encoder::ColorType::Luma })
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// An 8-bit grey picture as PNG.
pub fn png(gray: &[u8], width: usize, height: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(gray).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey16(rows: usize, cols: usize) -> Layout {
        Layout::grey(rows, cols, 16, 1)
    }

    #[test]
    fn frames_window_and_black_out() {
        let l = grey16(2, 2);
        let frame: Vec<u8> = [0u16, 1000, 2000, 4000].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(frame_to_gray(&l, &frame, None), vec![0, 64, 128, 255]);
        assert_eq!(frame_to_gray(&l, &frame, Some((1000.5, 1000.0))), vec![0, 128, 255, 255]);
        let mut f = frame.clone();
        black_out(&l, &mut f, &[(1, 0, 5, 1)]);
        assert_eq!(f, [0u16, 0, 2000, 4000].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
        let inv = Layout { model: Model::Grey { inverted: true }, ..l.clone() };
        let mut f = frame;
        black_out(&inv, &mut f, &[(0, 0, 1, 1)]);
        assert_eq!(&f[..2], &[0xff, 0xff], "MONOCHROME1: black is the top value");
        assert!(png(&[0, 255, 0, 255], 2, 2).unwrap().starts_with(b"\x89PNG"));
    }

    /// Each colour model read as RGB and blacked out in its own encoding.
    #[test]
    fn colour_models_read_and_black_out_in_their_own_encoding() {
        let l = |model: Model, samples: usize, bits: usize| Layout { samples, model, ..Layout::grey(1, 2, bits, 1) };
        // YBR_FULL_422: Y0 Y1 Cb Cr; white and grey, then the first pixel black.
        let ybr = l(Model::YbrFull422, 3, 8);
        let mut f = vec![255, 128, 128, 128];
        assert_eq!(frame_to_rgb(&ybr, &f).unwrap(), vec![255, 255, 255, 128, 128, 128]);
        black_out(&ybr, &mut f, &[(0, 0, 1, 1)]);
        assert_eq!(f, vec![0, 128, 128, 128]);
        // YBR_FULL: pure red.
        let full = l(Model::YbrFull, 3, 8);
        assert_eq!(&frame_to_rgb(&full, &[76, 85, 255, 0, 128, 128]).unwrap()[..3], &[254, 0, 0]);
        // RGB of 16 bits, 12 stored: scaled to 8.
        let rgb16 = Layout { stored: 12, ..l(Model::Rgb, 3, 16) };
        let f: Vec<u8> = [4095u16, 0, 2048, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(frame_to_rgb(&rgb16, &f).unwrap(), vec![255, 0, 128, 0, 0, 0]);
        // One bit a pixel, first pixel in the lowest bit.
        let bits = Layout::grey(1, 8, 1, 1);
        assert_eq!(frame_to_gray(&bits, &[0b0000_0101], None), vec![255, 0, 255, 0, 0, 0, 0, 0]);
        let mut f = vec![0xFF];
        black_out(&bits, &mut f, &[(1, 0, 2, 1)]);
        assert_eq!(f, vec![0b1111_1001]);
        // Floats: read by their range, black is the frame's lowest value.
        let f32s = Layout { float: true, ..Layout::grey(1, 3, 32, 1) };
        let mut f: Vec<u8> = [-1.5f32, 0.5, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(frame_to_gray(&f32s, &f, None), vec![0, 255, 191]);
        black_out(&f32s, &mut f, &[(1, 0, 1, 1)]);
        assert_eq!(f32::from_le_bytes([f[4], f[5], f[6], f[7]]), -1.5);
        // 32-bit grey, signed: black is the lowest value.
        let g32 = Layout { signed: true, ..Layout::grey(1, 1, 32, 1) };
        let mut f = vec![1, 2, 3, 4];
        black_out(&g32, &mut f, &[(0, 0, 1, 1)]);
        assert_eq!(i32::from_le_bytes([f[0], f[1], f[2], f[3]]), i32::MIN);
    }

    /// Found by fuzzing: a JPEG 2000 codestream stating a picture far bigger than
    /// the header's, a JPEG of more components than the header's; and the JPEG
    /// start of frame read past other markers.
    #[test]
    fn codestreams_state_their_picture() {
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for v in [320u32, 0x005B_00A0, 0, 0, 320, 160, 0, 0] {
            j2k.extend(v.to_be_bytes());
        }
        j2k.extend([0, 1, 7, 1, 1]);
        let gray8 = Declared { rows: 160, columns: 320, samples: 1, bits: 8 };
        assert_eq!(codestream(&j2k), Some(Codestream { columns: 320, rows: 0x005B_00A0, components: 1, precision: 8 }));
        assert!(check_codestream(&j2k, gray8).unwrap_err().contains("320×5963936"));
        let jpeg = |nf: u8, p: u8| vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0, 0xFF, 0xC0, 0x00, 0x11, p, 0x00, 0xA0, 0x01, 0x40, nf];
        assert_eq!(codestream(&jpeg(1, 8)), Some(Codestream { columns: 320, rows: 160, components: 1, precision: 8 }));
        assert!(check_codestream(&jpeg(1, 8), gray8).is_ok());
        assert!(check_codestream(&jpeg(3, 8), gray8).unwrap_err().contains("3 components where the header says 1"));
        assert!(check_codestream(&jpeg(1, 12), gray8).unwrap_err().contains("12 bits a sample where the header allocates 8"));
        assert!(check_codestream(&jpeg(1, 12), Declared { bits: 16, ..gray8 }).is_ok());
        assert_eq!(codestream(b"RLE segments"), None);
        assert_eq!(codestream(&[0xFF, 0xD8, 0xFF]), None);
    }
}
