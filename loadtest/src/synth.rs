//! Synthetic media payloads: VP8 frames and Opus packets that look valid to anything
//! inspecting their headers (keyframe detection, resolution), with filler after that.

/// Width written into synthetic VP8 keyframes.
pub const VP8_WIDTH: u16 = 1280;

/// Height written into synthetic VP8 keyframes.
pub const VP8_HEIGHT: u16 = 720;

/// The VP8 keyframe start code (RFC 6386 §9.1).
const VP8_START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];

/// Bytes of frame tag (3) plus, for keyframes, start code (3) and dimensions (4).
const VP8_KEYFRAME_HEADER: usize = 10;
const VP8_INTERFRAME_HEADER: usize = 3;

/// Size of a synthetic Opus packet (a 20 ms frame at about 40 kbit/s).
pub const OPUS_FRAME_BYTES: usize = 100;

/// A synthetic VP8 frame of `len` bytes (at least 10 for keyframes, 3 otherwise).
///
/// The 3-byte frame tag (RFC 6386 §9.1) has the keyframe bit (bit 0 of the first byte)
/// clear for keyframes and set otherwise, version 0, `show_frame` set and a plausible
/// first-partition size. Keyframes continue with the start code `9d 01 2a` and the
/// width and height as little-endian 16-bit values (scale bits 0). `seed` varies the
/// filler bytes.
pub fn vp8_frame(len: usize, keyframe: bool, width: u16, height: u16, seed: u64) -> Vec<u8> {
    let header = if keyframe {
        VP8_KEYFRAME_HEADER
    } else {
        VP8_INTERFRAME_HEADER
    };
    let len = len.max(header);
    let first_partition = u32::try_from((len - header) / 2)
        .unwrap_or(u32::MAX)
        .min(0x7_ffff);
    let tag: u32 = u32::from(!keyframe) | (1 << 4) | (first_partition << 5);

    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        frame.extend_from_slice(&VP8_START_CODE);
        frame.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        frame.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
    fill(&mut frame, len, seed);
    frame
}

/// Whether a VP8 frame is a keyframe: bit 0 of the first byte is clear.
pub fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

/// The width and height of a VP8 keyframe, if `frame` is one with a valid start code.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_vp8_keyframe(frame) || frame.len() < VP8_KEYFRAME_HEADER || frame[3..6] != VP8_START_CODE
    {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// A synthetic Opus packet of `len` bytes (at least 1).
///
/// The TOC byte `0xfc` says: configuration 31 (CELT-only, fullband, 20 ms), stereo,
/// one frame in the packet.
pub fn opus_frame(len: usize, seed: u64) -> Vec<u8> {
    let len = len.max(1);
    let mut packet = Vec::with_capacity(len);
    packet.push(0xfc);
    fill(&mut packet, len, seed);
    packet
}

/// Pads `buf` to `len` bytes with cheap pseudo-random filler (xorshift64).
fn fill(buf: &mut Vec<u8>, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (len - buf.len()).min(8);
        buf.extend_from_slice(&x.to_le_bytes()[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_header() {
        let f = vp8_frame(10_416, true, VP8_WIDTH, VP8_HEIGHT, 7);
        assert_eq!(f.len(), 10_416);
        assert_eq!(f[0] & 1, 0, "keyframe bit clear");
        assert_eq!((f[0] >> 1) & 0b111, 0, "version 0");
        assert_eq!((f[0] >> 4) & 1, 1, "show_frame");
        assert_eq!(&f[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(&f[6..10], &[0x00, 0x05, 0xd0, 0x02]); // 1280, 720 little-endian
        assert!(is_vp8_keyframe(&f));
        assert_eq!(vp8_keyframe_size(&f), Some((1280, 720)));
        let tag = u32::from_le_bytes([f[0], f[1], f[2], 0]);
        assert_eq!(tag >> 5, (10_416 - 10) / 2);
    }

    #[test]
    fn vp8_interframe_header() {
        let f = vp8_frame(5000, false, VP8_WIDTH, VP8_HEIGHT, 8);
        assert_eq!(f.len(), 5000);
        assert_eq!(f[0] & 1, 1, "keyframe bit set on interframes");
        assert!(!is_vp8_keyframe(&f));
        assert_eq!(vp8_keyframe_size(&f), None);
    }

    #[test]
    fn vp8_minimum_sizes() {
        assert_eq!(vp8_frame(0, true, 1, 1, 0).len(), 10);
        assert_eq!(vp8_frame(0, false, 1, 1, 0).len(), 3);
        assert!(!is_vp8_keyframe(&[]));
        assert_eq!(vp8_keyframe_size(&[0x10, 0, 0, 0x9d, 0x01]), None);
        // Huge frames cap the 19-bit partition size instead of overflowing into nothing.
        let f = vp8_frame(2_000_000, true, 1, 1, 0);
        assert_eq!(u32::from_le_bytes([f[0], f[1], f[2], 0]) >> 5, 0x7_ffff);
    }

    #[test]
    fn opus_packets() {
        let p = opus_frame(OPUS_FRAME_BYTES, 3);
        assert_eq!(p.len(), OPUS_FRAME_BYTES);
        assert_eq!(p[0], 0xfc);
        assert_eq!(opus_frame(0, 0), vec![0xfc]);
    }

    #[test]
    fn filler_varies_with_seed() {
        assert_ne!(
            vp8_frame(100, false, 1, 1, 1),
            vp8_frame(100, false, 1, 1, 2)
        );
    }
}
