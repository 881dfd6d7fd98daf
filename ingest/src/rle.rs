//! RLE Lossless (PS3.5 Annex G), decoded here for every sample size the standard
//! allows: dicom-pixeldata's RLE decoder takes 8 and 16 bits only, and RT Doses and
//! 32-bit pictures arrive RLE-compressed. A frame is one fragment: a header of up to
//! 15 segment offsets, then one PackBits segment for each byte of each sample, most
//! significant byte first. The output is native, little endian, interleaved.

/// The RLE Lossless transfer syntax.
pub const TRANSFER_SYNTAX: &str = "1.2.840.10008.1.2.5";

/// One frame of `pixels` pixels of `samples` samples of `bytes` bytes each.
pub fn decode_frame(fragment: &[u8], pixels: usize, samples: usize, bytes: usize) -> Result<Vec<u8>, String> {
    let u32_at = |i: usize| fragment.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let segments = u32_at(0).ok_or("an RLE frame shorter than its header")?;
    let want = samples * bytes;
    if segments != want || !(1..=15).contains(&segments) {
        return Err(format!("an RLE frame of {segments} segments where {samples} samples of {bytes} bytes need {want}"));
    }
    let offsets: Vec<usize> = (0..segments).map(|i| u32_at(4 + 4 * i).unwrap_or(0)).collect();
    let mut out = vec![0u8; pixels * want];
    for (k, &start) in offsets.iter().enumerate() {
        let end = offsets.get(k + 1).copied().unwrap_or(fragment.len());
        let seg = fragment.get(start..end).filter(|_| start >= 64).ok_or_else(|| format!("RLE segment {} out of its frame", k + 1))?;
        let plane = unpack(seg, pixels).map_err(|e| format!("RLE segment {}: {e}", k + 1))?;
        // Segment k holds byte (bytes - 1 - k % bytes) of sample k / bytes.
        let (sample, byte) = (k / bytes, bytes - 1 - k % bytes);
        for (p, &v) in plane.iter().enumerate() {
            out[(p * samples + sample) * bytes + byte] = v;
        }
    }
    Ok(out)
}

/// A PackBits segment decoded to exactly `len` bytes (what follows is padding).
fn unpack(seg: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while out.len() < len && i < seg.len() {
        let n = seg[i] as i8;
        i += 1;
        match n {
            0..=127 => {
                let run = seg.get(i..i + n as usize + 1).ok_or("a literal run past the segment's end")?;
                out.extend_from_slice(run);
                i += run.len();
            }
            -127..=-1 => {
                let v = *seg.get(i).ok_or("a repeat run past the segment's end")?;
                out.extend(std::iter::repeat_n(v, 1 + n.unsigned_abs() as usize));
                i += 1;
            }
            -128 => {}
        }
    }
    if out.len() < len {
        return Err(format!("{} bytes where {len} are expected", out.len()));
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as the standard's example encodes it, two pixels of one 32-bit
    /// sample: four segments, most significant byte first.
    #[test]
    fn a_32_bit_frame_decodes_little_endian() {
        let mut frame = vec![0u8; 64];
        frame[0] = 4;
        let segs: [&[u8]; 4] = [&[0xFF, 0x12], &[0x01, 0x34, 0x56], &[0xFF, 0x00], &[0x01, 0x78, 0x9A]];
        let mut at = 64;
        for (i, s) in segs.iter().enumerate() {
            frame[4 + 4 * i..8 + 4 * i].copy_from_slice(&(at as u32).to_le_bytes());
            at += s.len();
        }
        for s in segs {
            frame.extend_from_slice(s);
        }
        let out = decode_frame(&frame, 2, 1, 4).unwrap();
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 0x1234_0078);
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 0x1256_009A);
        assert!(decode_frame(&frame, 3, 1, 4).unwrap_err().contains("2 bytes where 3"));
        assert!(decode_frame(&frame, 2, 3, 1).unwrap_err().contains("4 segments where 3 samples"));
        assert!(decode_frame(&frame[..10], 2, 1, 4).is_err());
    }
}
