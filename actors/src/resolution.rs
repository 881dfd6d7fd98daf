//! A video key frame's picture size, read from its codec headers: VP8's key frame
//! header, H.264's sequence parameter set (with its cropping). Pure functions, for
//! the operators' stats and the router's layers.

/// The picture size of a received frame, if it is a keyframe whose codec headers
/// give it (VP8, H.264).
pub fn of_keyframe(data: &str0m::media::MediaData) -> Option<(u32, u32)> {
    if !data.is_keyframe() {
        return None;
    }
    match data.params.spec().codec {
        str0m::format::Codec::Vp8 => vp8(&data.data),
        str0m::format::Codec::H264 => h264(&data.data),
        _ => None,
    }
}

/// Width and height of a VP8 key frame (`None` for other frames).
pub fn vp8(frame: &[u8]) -> Option<(u32, u32)> {
    // Frame tag (3 bytes, bit 0 clear on key frames), start code 9d 01 2a, then
    // 14-bit width and height (2 bits of scaling each).
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

/// Width and height from the first H.264 SPS in an Annex B access unit.
pub fn h264(au: &[u8]) -> Option<(u32, u32)> {
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            let start = i + 3;
            if start < au.len() && au[start] & 0x1f == 7 {
                let end = (start..au.len().saturating_sub(2)).find(|&j| au[j] == 0 && au[j + 1] == 0 && au[j + 2] <= 1).unwrap_or(au.len());
                return sps(&au[start + 1..end]);
            }
            i = start;
        } else {
            i += 1;
        }
    }
    None
}

/// The picture size an SPS (after its NAL header) describes.
fn sps(nal: &[u8]) -> Option<(u32, u32)> {
    // Emulation prevention bytes (00 00 03) out first.
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bits(1)?;
        }
        r.ue()?;
        r.ue()?; // bit depths
        r.bits(1)?;
        if r.bits(1)? == 1 {
            return None; // scaling matrices: not read here
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?;
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?;
    }
    r.bits(1)?; // direct_8x8_inference
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = w_mbs * 16;
    let height = h_units * 16 * (2 - frame_mbs_only);
    let crop_x = (cl + cr) * sub_w;
    let crop_y = (ct + cb) * sub_h * (2 - frame_mbs_only);
    Some((width.checked_sub(crop_x)?, height.checked_sub(crop_y)?))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        Some(if k % 2 == 1 { k.div_ceil(2) as i32 } else { -((k / 2) as i32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_headers() {
        // A VP8 key frame header for 640×360.
        let mut vp8_key = vec![0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a];
        vp8_key.extend_from_slice(&640u16.to_le_bytes());
        vp8_key.extend_from_slice(&360u16.to_le_bytes());
        assert_eq!(vp8(&vp8_key), Some((640, 360)));
        vp8_key[0] |= 1;
        assert_eq!(vp8(&vp8_key), None, "not a key frame");
        // x264's SPS for 1280×720 main profile (cropping 720 from 736).
        let au = [0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x28, 0x02, 0xdd, 0x80, 0xb5, 0x01, 0x01, 0x01, 0x40, 0, 0, 0, 1, 0x68];
        assert_eq!(h264(&au), Some((1280, 720)));
        assert_eq!(h264(&[0, 0, 1, 0x65, 1, 2, 3]), None, "no SPS");
    }
}
