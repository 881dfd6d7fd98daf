//! Native (uncompressed) pixel data: frames as 8-bit pictures for reading and
//! showing, black boxes written back into the pixel data, and PNG output.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The most frames an object may have (a header could claim any number).
pub const MAX_FRAMES: usize = 100_000;

/// The most bytes compressed pixel data is decoded to (decoding is whole-object).
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// The layout of a native pixel data element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows (height).
    pub rows: usize,
    /// Columns (width).
    pub cols: usize,
    /// 1 (grey) or 3 (colour).
    pub samples: usize,
    /// 8 or 16.
    pub bits_allocated: usize,
    /// Signed values.
    pub signed: bool,
    /// Colour planes one after the other rather than interleaved.
    pub planar: bool,
    /// MONOCHROME1: higher values are darker.
    pub inverted: bool,
    /// Frames.
    pub frames: usize,
}

impl Layout {
    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.rows * self.cols * self.samples * self.bits_allocated / 8
    }

    /// The layout of `obj`'s pixel data, if it is native and of a kind handled
    /// here (8 or 16 bits grey, 8 bits colour); the reason otherwise.
    pub fn of(obj: &InMemDicomObject) -> Result<Layout, String> {
        let uint = |t| obj.element(t).ok().and_then(|e| e.to_int::<i64>().ok());
        let text = |t| obj.element(t).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default();
        let (Some(rows), Some(cols)) = (uint(tags::ROWS), uint(tags::COLUMNS)) else {
            return Err("no Rows/Columns".into());
        };
        let photometric = text(tags::PHOTOMETRIC_INTERPRETATION);
        let l = Layout {
            rows: rows as usize,
            cols: cols as usize,
            samples: uint(tags::SAMPLES_PER_PIXEL).unwrap_or(1) as usize,
            bits_allocated: uint(tags::BITS_ALLOCATED).unwrap_or(0) as usize,
            signed: uint(tags::PIXEL_REPRESENTATION) == Some(1),
            planar: uint(tags::PLANAR_CONFIGURATION) == Some(1),
            inverted: photometric == "MONOCHROME1",
            frames: uint(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize,
        };
        let supported = match (l.samples, l.bits_allocated) {
            (1, 8 | 16) => photometric.starts_with("MONOCHROME"),
            (3, 8) => photometric == "RGB",
            _ => false,
        };
        if l.frames > MAX_FRAMES {
            return Err(format!("{} frames; at most {MAX_FRAMES} are handled", l.frames));
        }
        if !supported || l.rows == 0 || l.cols == 0 || l.rows > 16_384 || l.cols > 16_384 {
            return Err(format!("pixel data {photometric} {}×{} bits {} not handled", l.samples, l.rows, l.bits_allocated));
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
    vr: dicom_core::VR,
    words: bool,
}

impl NativePixels {
    /// Takes the native pixel data out of `obj`; `None` (and `obj` unchanged) when
    /// there is none or it is encapsulated (compressed).
    pub fn take(obj: &mut InMemDicomObject) -> Option<NativePixels> {
        let native = matches!(
            obj.element(tags::PIXEL_DATA).ok()?.value(),
            Value::Primitive(PrimitiveValue::U8(_) | PrimitiveValue::U16(_))
        );
        if !native {
            return None;
        }
        let (header, value) = obj.take(tags::PIXEL_DATA)?.into_parts();
        let (bytes, words) = match value {
            Value::Primitive(PrimitiveValue::U8(b)) => (b.into_vec(), false),
            Value::Primitive(PrimitiveValue::U16(w)) => (w.iter().flat_map(|v| v.to_le_bytes()).collect(), true),
            _ => unreachable!("checked above"),
        };
        Some(NativePixels { bytes, vr: header.vr, words })
    }

    /// Puts the (changed) pixel data back into `obj`.
    pub fn put_back(self, obj: &mut InMemDicomObject) {
        let value = if self.words {
            PrimitiveValue::U16(self.bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
        } else {
            PrimitiveValue::U8(self.bytes.into())
        };
        obj.put(dicom_core::DataElement::new(tags::PIXEL_DATA, self.vr, value));
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
pub fn decompress(file: &mut dicom_object::DefaultDicomObject) -> Result<bool, String> {
    use dicom_core::{DataElement, VR};
    use dicom_pixeldata::PixelDecoder;
    let encapsulated = matches!(file.element(tags::PIXEL_DATA).map(|e| e.value()), Ok(Value::PixelSequence(_)));
    if !encapsulated {
        return Ok(false);
    }
    // Decoded whole: bounded, so one file cannot take the memory of the server.
    let uint = |t| file.element(t).ok().and_then(|e| e.to_int::<u64>().ok()).unwrap_or(1);
    let decoded = uint(tags::ROWS) * uint(tags::COLUMNS) * uint(tags::SAMPLES_PER_PIXEL) * uint(tags::BITS_ALLOCATED).div_ceil(8) * uint(tags::NUMBER_OF_FRAMES);
    if decoded > MAX_DECODED_BYTES {
        return Err(format!("compressed pixel data that decodes to {} MB; at most {} MB are decoded", decoded >> 20, MAX_DECODED_BYTES >> 20));
    }
    if let Ok(Value::PixelSequence(seq)) = file.element(tags::PIXEL_DATA).map(|e| e.value()) {
        let declared = Declared::of(file);
        for f in seq.fragments() {
            check_codestream(f, declared)?;
        }
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
    let (bytes, rows, cols, samples, bits, photometric, signed) = std::panic::catch_unwind(decode)
        .map_err(|_| "compressed pixel data that does not match its header (the decoder gave up)".to_string())??;
    let us = |t, v: u16| DataElement::new(t, VR::US, PrimitiveValue::from(v));
    file.put(us(tags::ROWS, rows as u16));
    file.put(us(tags::COLUMNS, cols as u16));
    file.put(us(tags::SAMPLES_PER_PIXEL, samples));
    file.put(us(tags::BITS_ALLOCATED, bits));
    file.put(us(tags::PIXEL_REPRESENTATION, u16::from(signed)));
    file.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from(photometric.as_str())));
    if samples > 1 {
        file.put(us(tags::PLANAR_CONFIGURATION, 0));
    }
    let vr = if bits > 8 { VR::OW } else { VR::OB };
    file.put(DataElement::new(tags::PIXEL_DATA, vr, PrimitiveValue::U8(bytes.into())));
    file.update_meta(|m| m.transfer_syntax = "1.2.840.10008.1.2.1".to_string());
    Ok(true)
}

/// One frame as an 8-bit picture: grey (windowed with the object's first window,
/// else the frame's own range; MONOCHROME1 inverted) or, for colour, its luminance.
/// `rgb` is the colour frame interleaved, for PNG output.
pub fn frame_to_gray(l: &Layout, frame: &[u8], window: Option<(f64, f64)>) -> Vec<u8> {
    let n = l.rows * l.cols;
    if l.samples == 3 {
        return (0..n)
            .map(|i| {
                let (r, g, b) = if l.planar { (frame[i], frame[n + i], frame[2 * n + i]) } else { (frame[3 * i], frame[3 * i + 1], frame[3 * i + 2]) };
                ((u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000) as u8
            })
            .collect();
    }
    let value = |i: usize| -> f64 {
        match (l.bits_allocated, l.signed) {
            (8, _) => f64::from(frame[i]),
            (_, false) => f64::from(u16::from_le_bytes([frame[2 * i], frame[2 * i + 1]])),
            (_, true) => f64::from(i16::from_le_bytes([frame[2 * i], frame[2 * i + 1]])),
        }
    };
    let (lo, hi) = match window {
        Some((c, w)) if w > 1.0 => (c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0),
        _ => (0..n).map(value).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v))),
    };
    let span = (hi - lo).max(1.0);
    (0..n)
        .map(|i| {
            let g = (((value(i) - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8;
            if l.inverted { 255 - g } else { g }
        })
        .collect()
}

/// Blacks out `boxes` (x, y, width, height, in pixels) of one frame, in place.
pub fn black_out(l: &Layout, frame: &mut [u8], boxes: &[(usize, usize, usize, usize)]) {
    let n = l.rows * l.cols;
    let bytes = l.bits_allocated / 8;
    // Black: the lowest value, the highest for MONOCHROME1; 0 in colour.
    let black: [u8; 2] = match (l.inverted, l.signed, bytes) {
        (false, false, _) => [0, 0],
        (false, true, 1) => [0x80, 0],
        (false, true, _) => [0x00, 0x80],
        (true, false, 1) => [0xff, 0],
        (true, false, _) => [0xff, 0xff],
        (true, true, 1) => [0x7f, 0],
        (true, true, _) => [0xff, 0x7f],
    };
    for &(x, y, w, h) in boxes {
        for row in y.min(l.rows)..(y + h).min(l.rows) {
            for col in x.min(l.cols)..(x + w).min(l.cols) {
                let i = row * l.cols + col;
                if l.samples == 3 {
                    for s in 0..3 {
                        let at = if l.planar { s * n + i } else { 3 * i + s };
                        frame[at] = 0;
                    }
                } else {
                    frame[i * bytes..(i + 1) * bytes].copy_from_slice(&black[..bytes]);
                }
            }
        }
    }
}

/// One frame as a picture for the viewer: PNG (lossless, for single frames) or JPEG
/// (for cine), grey windowed as [`frame_to_gray`] does, colour as it is.
pub fn render(l: &Layout, frame: &[u8], window: Option<(f64, f64)>, jpeg: bool) -> Result<Vec<u8>, String> {
    let (pixels, colour) = if l.samples == 3 {
        let n = l.rows * l.cols;
        let rgb: Vec<u8> = if l.planar { (0..3 * n).map(|i| frame[(i % 3) * n + i / 3]).collect() } else { frame[..3 * n].to_vec() };
        (rgb, true)
    } else {
        (frame_to_gray(l, frame, window), false)
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
        Layout { rows, cols, samples: 1, bits_allocated: 16, signed: false, planar: false, inverted: false, frames: 1 }
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
        let inv = Layout { inverted: true, ..l };
        let mut f = frame;
        black_out(&inv, &mut f, &[(0, 0, 1, 1)]);
        assert_eq!(&f[..2], &[0xff, 0xff], "MONOCHROME1: black is the top value");
        assert!(png(&[0, 255, 0, 255], 2, 2).unwrap().starts_with(b"\x89PNG"));
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
