//! PALETTE COLOR lookup tables (PS3.3 C.7.6.3.1.5–6 and C.7.9): each pixel value is
//! an index into three tables, red, green and blue, given whole or as segments
//! (`Segmented … Palette Color Lookup Table Data`, as some ultrasound machines write
//! them). Pictures of this kind are read, blacked out (with the palette's darkest
//! entry, so the output stays PALETTE COLOR) and rendered through the table.

use dicom_core::Tag;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_object::InMemDicomObject;

/// The most entries a table may have (its descriptor's 0 means 65536).
const MAX_ENTRIES: usize = 1 << 16;

/// A palette: the first pixel value it maps, and the colour of each entry (8 bits a
/// channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    first: i64,
    rgb: Vec<[u8; 3]>,
}

const DESCRIPTORS: [Tag; 3] = [Tag(0x0028, 0x1101), Tag(0x0028, 0x1102), Tag(0x0028, 0x1103)];
const DATA: [Tag; 3] = [Tag(0x0028, 0x1201), Tag(0x0028, 0x1202), Tag(0x0028, 0x1203)];
const SEGMENTED: [Tag; 3] = [Tag(0x0028, 0x1221), Tag(0x0028, 0x1222), Tag(0x0028, 0x1223)];

impl Palette {
    /// The palette of `obj`; the reason when it has none that can be used.
    pub fn of(obj: &InMemDicomObject) -> Result<Palette, String> {
        let mut channels: Vec<Vec<u8>> = Vec::with_capacity(3);
        let mut first = 0;
        for c in 0..3 {
            let d = obj
                .element(DESCRIPTORS[c])
                .ok()
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() == 3)
                .ok_or("PALETTE COLOR without its lookup table descriptors")?;
            let entries = if d[0] == 0 { MAX_ENTRIES } else { usize::try_from(d[0]).map_err(|_| "a palette of a negative size")? };
            let bits = d[2];
            if !matches!(bits, 8 | 16) || entries > MAX_ENTRIES {
                return Err(format!("a palette of {entries} entries of {bits} bits"));
            }
            // A first mapped value is US or SS as the pixels are.
            first = if d[1] < 0 { d[1] } else { d[1] & 0xFFFF };
            let values = match words(obj, DATA[c], bits, entries) {
                Some(v) => v,
                None => match words(obj, SEGMENTED[c], 16, 0) {
                    Some(seg) => expand(&seg, entries)?,
                    None => return Err("PALETTE COLOR without its lookup table data".into()),
                },
            };
            if values.len() < entries {
                return Err(format!("a palette of {} entries where its descriptor says {entries}", values.len()));
            }
            // To 8 bits: 16-bit tables by their top byte; 8-bit tables are sometimes
            // written a value a word, sometimes in the words' top bytes.
            let top = bits == 16 || values.iter().any(|&v| v > 0xFF);
            channels.push(values[..entries].iter().map(|&v| if top { (v >> 8) as u8 } else { v as u8 }).collect());
        }
        let n = channels.iter().map(Vec::len).min().unwrap_or(0);
        let rgb = (0..n).map(|i| [channels[0][i], channels[1][i], channels[2][i]]).collect();
        Ok(Palette { first, rgb })
    }

    /// The colour of pixel value `v` (values outside the table take its ends).
    pub fn colour(&self, v: i64) -> [u8; 3] {
        let i = (v - self.first).clamp(0, self.rgb.len() as i64 - 1);
        self.rgb[i as usize]
    }

    /// The pixel value of the darkest entry: what a blacked-out box is filled with.
    pub fn darkest(&self) -> i64 {
        let luma = |c: &[u8; 3]| 299 * u32::from(c[0]) + 587 * u32::from(c[1]) + 114 * u32::from(c[2]);
        let i = (0..self.rgb.len()).min_by_key(|&i| luma(&self.rgb[i])).unwrap_or(0);
        self.first + i as i64
    }
}

/// A table's values as 16-bit words: OW words as they are; OB (or a reader's bytes)
/// a byte a value when there are exactly `entries` of them, else pairs of bytes.
fn words(obj: &InMemDicomObject, tag: Tag, bits: i64, entries: usize) -> Option<Vec<u16>> {
    match obj.element(tag).ok()?.value() {
        Value::Primitive(PrimitiveValue::U16(w)) => Some(w.to_vec()),
        Value::Primitive(PrimitiveValue::U8(b)) if bits == 8 && b.len() == entries => Some(b.iter().map(|&x| u16::from(x)).collect()),
        Value::Primitive(PrimitiveValue::U8(b)) => Some(b.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect()),
        _ => None,
    }
}

/// A segmented table expanded (PS3.3 C.7.9.2): discrete segments (opcode 0: a count
/// and that many values) and linear ones (opcode 1: a count and the value reached).
fn expand(seg: &[u16], entries: usize) -> Result<Vec<u16>, String> {
    let mut out: Vec<u16> = Vec::with_capacity(entries);
    let mut i = 0;
    while i + 1 < seg.len() && out.len() < entries {
        let (op, n) = (seg[i], usize::from(seg[i + 1]));
        match op {
            0 => {
                let values = seg.get(i + 2..i + 2 + n).ok_or("a segmented palette cut short")?;
                out.extend_from_slice(values);
                i += 2 + n;
            }
            1 => {
                let start = f64::from(*out.last().ok_or("a segmented palette starting with a linear segment")?);
                let end = f64::from(*seg.get(i + 2).ok_or("a segmented palette cut short")?);
                out.extend((1..=n).map(|k| (start + (end - start) * k as f64 / n as f64).round() as u16));
                i += 3;
            }
            _ => return Err("a segmented palette with indirect segments, not handled".into()),
        }
    }
    out.truncate(entries);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, VR};

    fn with_tables(first: u16, data: [(Tag, Vec<u16>); 3], bits: u16, entries: u16) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        for (c, (tag, values)) in data.into_iter().enumerate() {
            obj.put(DataElement::new(DESCRIPTORS[c], VR::US, PrimitiveValue::U16([entries, first, bits].as_slice().into())));
            obj.put(DataElement::new(tag, VR::OW, PrimitiveValue::U16(values.into())));
        }
        obj
    }

    #[test]
    fn whole_tables_of_16_bits_map_values_from_the_first() {
        let ramp: Vec<u16> = (0..256).map(|i| i * 257).collect();
        let obj = with_tables(100, [(DATA[0], ramp.clone()), (DATA[1], vec![0; 256]), (DATA[2], vec![0xFFFF; 256])], 16, 256);
        let p = Palette::of(&obj).unwrap();
        assert_eq!(p.colour(100), [0, 0, 255]);
        assert_eq!(p.colour(355), [255, 0, 255]);
        assert_eq!(p.colour(0), [0, 0, 255], "below the table: its first entry");
        assert_eq!(p.darkest(), 100);
    }

    #[test]
    fn segmented_tables_expand_discrete_and_linear_segments() {
        // 0..=255 as: one discrete value 0, then linear up to 0xFF00 over 255 entries.
        let seg = vec![0, 1, 0, 1, 255, 0xFF00];
        assert_eq!(expand(&seg, 256).unwrap().len(), 256);
        let obj = with_tables(0, [(SEGMENTED[0], seg.clone()), (SEGMENTED[1], seg.clone()), (SEGMENTED[2], seg)], 16, 256);
        let p = Palette::of(&obj).unwrap();
        assert_eq!(p.colour(0), [0, 0, 0]);
        assert_eq!(p.colour(255), [255, 255, 255]);
        assert!(expand(&[2, 1, 0, 0], 4).unwrap_err().contains("indirect"));
        assert!(expand(&[0, 9, 1], 4).unwrap_err().contains("cut short"));
    }
}
