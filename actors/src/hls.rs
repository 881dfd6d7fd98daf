//! The program's HLS playlist, written by casecast rather than by the segmenter, so that
//! it outlives the pipeline: when the compositor's session restarts (its connection
//! to the server dropped, the pipeline failed, the server restarted after a crash),
//! the new pipeline's segments continue the same playlist after an
//! `#EXT-X-DISCONTINUITY`, with the media sequence going on, and viewers keep
//! watching, DVR window included. A playlist closed with `#EXT-X-ENDLIST` (the event
//! ended) is not continued: the next program starts a new one.
//!
//! Pure apart from [`Playlist::write`], [`Playlist::load`] and [`mark_id3_stream`];
//! a `splitmuxsink` cuts and writes the segments.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// One segment in the playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// File name, relative to the playlist.
    pub uri: String,
    /// Length in seconds.
    pub duration: f64,
    /// The first segment of a new pipeline (timestamps restart).
    pub discontinuity: bool,
    /// Its init segment (`#EXT-X-MAP`; fMP4 segments only).
    pub map: Option<String>,
}

/// A live (sliding-window) HLS playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    /// Nominal segment length, seconds.
    pub target_duration: u32,
    /// Segments listed at most (the DVR window).
    pub window: usize,
    /// Sequence number of the first listed segment.
    pub media_sequence: u64,
    /// Discontinuities that have left the window.
    pub discontinuity_sequence: u64,
    /// The listed segments, oldest first.
    pub segments: VecDeque<Segment>,
    /// Closed: the event ended.
    pub ended: bool,
    /// The init segment of the segments pushed from now on (fMP4 only).
    pub map: Option<String>,
    next_discontinuity: bool,
}

impl Playlist {
    /// An empty playlist.
    pub fn new(target_duration: u32, window: usize) -> Self {
        Playlist {
            target_duration,
            window: window.max(3),
            media_sequence: 0,
            discontinuity_sequence: 0,
            segments: VecDeque::new(),
            ended: false,
            map: None,
            next_discontinuity: false,
        }
    }

    /// Continues the playlist at `path` if there is an open one (its next segment
    /// is marked as a discontinuity), else starts a new one.
    pub fn load(path: &Path, target_duration: u32, window: usize) -> Self {
        let mut p = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| Playlist::parse(&text))
            .filter(|p| !p.ended)
            .unwrap_or_else(|| Playlist::new(target_duration, window));
        p.target_duration = p.target_duration.max(target_duration);
        p.window = window.max(3);
        p.next_discontinuity = !p.segments.is_empty();
        p
    }

    /// Removes the program's segment files (`seg-*.ts`, `seg-*.m4s` and their
    /// `init-*.mp4`, and `segment*.ts` of earlier versions) in `dir` that this
    /// playlist does not list: left by an earlier event
    /// whose playlist this one replaces, or cut short by a pipeline that stopped.
    /// Other files are left alone. Returns how many went.
    pub fn remove_unlisted(&self, dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        let listed: std::collections::HashSet<&str> =
            self.segments.iter().flat_map(|s| std::iter::once(s.uri.as_str()).chain(s.map.as_deref())).collect();
        let ours = |n: &str| {
            ((n.starts_with("seg-") || n.starts_with("segment")) && (n.ends_with(".ts") || n.ends_with(".m4s")))
                || (n.starts_with("init-") && n.ends_with(".mp4"))
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| ours(n) && !listed.contains(n)))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Reads a playlist this module wrote; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "#EXTM3U" {
            return None;
        }
        let mut p = Playlist::new(1, usize::MAX);
        let (mut duration, mut discontinuity, mut map) = (None, false, None);
        let plain = |uri: &str| !uri.contains('/') && !uri.contains("..");
        for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                p.discontinuity_sequence = v.parse().ok()?;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = Some(v.split(',').next()?.parse().ok()?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                let uri = v.strip_suffix('"')?;
                if !plain(uri) {
                    return None;
                }
                map = Some(uri.to_string());
            } else if line == "#EXT-X-DISCONTINUITY" {
                discontinuity = true;
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !line.starts_with('#') {
                let uri = line.to_string();
                if !plain(&uri) {
                    return None;
                }
                p.segments.push_back(Segment { uri, duration: duration.take()?, discontinuity, map: map.clone() });
                discontinuity = false;
            }
        }
        Some(p)
    }

    /// Whether the next segment is marked as a discontinuity.
    pub fn pending_discontinuity(&self) -> bool {
        self.next_discontinuity
    }

    /// The next segment follows a gap (the program was off air): it is marked as a
    /// discontinuity.
    pub fn mark_discontinuity(&mut self) {
        self.next_discontinuity = true;
    }

    /// Adds a finished segment; returns the segments that left the window (their
    /// files can go).
    pub fn push(&mut self, uri: String, duration: f64) -> Vec<Segment> {
        let discontinuity = std::mem::take(&mut self.next_discontinuity);
        self.segments.push_back(Segment { uri, duration, discontinuity, map: self.map.clone() });
        let mut gone = Vec::new();
        while self.segments.len() > self.window {
            let s = self.segments.pop_front().expect("longer than the window");
            self.media_sequence += 1;
            if s.discontinuity {
                self.discontinuity_sequence += 1;
            }
            gone.push(s);
        }
        gone
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        // EXT-X-MAP in a playlist without I-frames only needs version 6; 7 is what
        // fMP4 playlists commonly say.
        let version = if self.segments.iter().any(|s| s.map.is_some()) { 7 } else { 3 };
        let mut out = format!("#EXTM3U\n#EXT-X-VERSION:{version}\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.longest_target());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if !self.ended {
            let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:HOLD-BACK={}.0", self.hold_back());
        }
        self.render_segments(&mut out, 0, |_, _| {});
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// The target duration to announce: a segment may run a little over the nominal
    /// length (it ends at a keyframe), so it covers the longest, rounded, as HLS
    /// requires.
    pub fn longest_target(&self) -> u32 {
        self.target_duration.max(self.segments.iter().map(|s| s.duration.round() as u32).max().unwrap_or(0))
    }

    /// Writes the discontinuity sequence and the segments after the first `skip`
    /// (with their discontinuities and init segments); `before` writes what goes
    /// before a segment's `#EXTINF` (its parts), given its media sequence number.
    pub fn render_segments(&self, out: &mut String, skip: usize, mut before: impl FnMut(&mut String, u64)) {
        use std::fmt::Write;
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_sequence);
        }
        if skip > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}");
        }
        let mut map: Option<&str> = None;
        for (i, s) in self.segments.iter().enumerate().skip(skip) {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if s.map.is_some() && s.map.as_deref() != map {
                map = s.map.as_deref();
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", map.unwrap_or_default());
            }
            before(out, self.media_sequence + i as u64);
            let _ = writeln!(out, "#EXTINF:{:.3},\n{}", s.duration, s.uri);
        }
    }

    /// The media sequence number the next segment will have.
    pub fn next_sequence(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// How far behind the live edge players start (`#EXT-X-SERVER-CONTROL:HOLD-BACK`,
    /// honoured by hls.js and Safari), seconds: four target durations for long
    /// segments (quality: 24 s + the segment being written ≈ 30 s), three — the least
    /// the HLS specification allows — for short ones.
    pub fn hold_back(&self) -> u32 {
        let target = self.longest_target();
        target * if target >= 4 { 4 } else { 3 }
    }

    /// Writes the playlist to `path` whole (a temporary file renamed over it), so a
    /// player never reads half of one.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp: PathBuf = path.with_extension("m3u8.tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_window_keeps_its_sequence_numbers() {
        let mut p = Playlist::new(6, 3);
        for i in 0..5 {
            let gone = p.push(format!("s{i}.ts"), 6.0);
            assert_eq!(gone.len(), usize::from(i >= 3));
        }
        assert_eq!(p.media_sequence, 2);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-SERVER-CONTROL:HOLD-BACK=24.0\n#EXTINF:6.000,\ns2.ts\n"), "{text}");
        assert!(!text.contains("ENDLIST") && !text.contains("DISCONTINUITY"));
        assert_eq!(Playlist::parse(&text).unwrap(), Playlist { window: usize::MAX, ..p });
    }

    #[test]
    fn a_restarted_program_continues_after_a_discontinuity() {
        let dir = std::env::temp_dir().join(format!("casecast-hls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("index.m3u8");
        let mut first = Playlist::new(2, 4);
        for i in 0..3 {
            first.push(format!("a-{i}.ts"), 2.0);
        }
        first.write(&path).unwrap();

        let mut second = Playlist::load(&path, 2, 4);
        second.push("b-0.ts".into(), 2.1);
        second.push("b-1.ts".into(), 2.0);
        let text = second.render();
        assert!(text.contains("a-2.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.100,\nb-0.ts\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "the sequence goes on: {text}");
        assert!(text.contains("HOLD-BACK=6.0"), "short segments: three target durations: {text}");
        // The discontinuity leaves the window: it is counted.
        for i in 2..6 {
            second.push(format!("b-{i}.ts"), 2.0);
        }
        assert_eq!(second.discontinuity_sequence, 1);
        assert!(second.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));

        // An ended playlist is not continued; the new one clears the old segments.
        second.ended = true;
        assert!(!second.render().contains("HOLD-BACK"), "VOD has no live edge");
        second.write(&path).unwrap();
        let third = Playlist::load(&path, 2, 4);
        assert!(third.segments.is_empty() && third.media_sequence == 0);
        std::fs::write(dir.join("seg-b-5.ts"), b"old").unwrap();
        std::fs::write(dir.join("other.ts"), b"not ours").unwrap();
        assert_eq!(third.remove_unlisted(&dir), 1);
        assert!(!dir.join("seg-b-5.ts").exists() && dir.join("other.ts").exists() && path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn long_segments_raise_the_target_duration_and_junk_is_refused() {
        let mut p = Playlist::new(6, 10);
        p.push("x.ts".into(), 7.4);
        assert!(p.render().contains("#EXT-X-TARGETDURATION:7\n"));
        assert!(Playlist::parse("not a playlist").is_none());
        assert!(Playlist::parse("#EXTM3U\n#EXTINF:6,\n../../etc/passwd\n").is_none());
    }
}

/// Marks a segment's metadata stream as ID3 timed metadata, in place: the muxer
/// writes it as private data (PES stream type 0x06, registered `KLVA`); players
/// read ID3 from stream type 0x15 with a metadata descriptor (0x26, format `ID3 `:
/// Apple's "Timed Metadata for HTTP Live Streaming", which Safari's native player
/// needs; hls.js reads the stream type). Every PMT packet's entry is rewritten (the
/// section grows by 9 bytes into the packet's stuffing) and its CRC recomputed; the
/// PES carry the ID3 tags as they are, with their PTS.
pub fn mark_id3_stream(path: &Path) -> std::io::Result<bool> {
    let mut ts = std::fs::read(path)?;
    let mut pmt_pid = None;
    let mut changed = false;
    for at in (0..ts.len().saturating_sub(187)).step_by(188) {
        let p = &mut ts[at..at + 188];
        if p[0] != 0x47 || p[1] & 0x40 == 0 {
            continue;
        }
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let mut off = 4;
        if (p[3] >> 4) & 2 != 0 {
            off += 1 + p[4] as usize;
        }
        if off >= 188 {
            continue;
        }
        let sec = off + 1 + p[off] as usize; // after the pointer field
        if sec + 12 > 188 {
            continue;
        }
        if pid == 0 && p[sec] == 0x00 {
            // PAT: the first program's PMT PID.
            pmt_pid = Some((u16::from(p[sec + 10] & 0x1f) << 8) | u16::from(p[sec + 11]));
            continue;
        }
        if Some(pid) != pmt_pid || p[sec] != 0x02 {
            continue;
        }
        if let Some(section) = id3_pmt(&p[sec..]) {
            changed |= put_section(p, sec, &section);
        }
    }
    if changed {
        let tmp = path.with_extension("ts.id3");
        std::fs::write(&tmp, &ts)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(changed)
}

/// Puts a grown PSI `section` in place of the one at `sec` in packet `p`: into the
/// stuffing after it, or, where the muxer stuffed the adaptation field instead (it
/// ends the section at the packet's end), into room taken from that stuffing. False
/// if it does not fit.
fn put_section(p: &mut [u8], sec: usize, section: &[u8]) -> bool {
    let old_len = 3 + (((p[sec + 1] as usize & 0x0f) << 8) | p[sec + 2] as usize);
    let Some(extra) = section.len().checked_sub(old_len) else { return false };
    // Only stuffing may follow (another section would be overwritten).
    let after = p.get(sec + old_len..).unwrap_or(&[]);
    if after.iter().any(|&b| b != 0xff) {
        return false;
    }
    let free_after = after.len();
    let mut sec = sec;
    if extra > free_after {
        let need = extra - free_after;
        let has_af = (p[3] >> 4) & 2 != 0;
        let af_len = if has_af { p[4] as usize } else { 0 };
        // Stuffing bytes end the adaptation field, after its flags byte.
        let stuffing = if af_len >= 1 { p[6..5 + af_len].iter().rev().take_while(|&&b| b == 0xff).count() } else { 0 };
        if need > stuffing {
            return false;
        }
        // Shift the pointer field (and what it skips) back by `need`.
        let payload = 5 + af_len;
        p.copy_within(payload..sec, payload - need);
        p[4] = (af_len - need) as u8;
        sec -= need;
    }
    p[sec..sec + section.len()].copy_from_slice(section);
    p[sec + section.len()..].fill(0xff);
    true
}

/// The metadata descriptor of an ID3 stream (tag 0x26, 13 bytes): application
/// format 0xFFFF and format 0xFF, both identified as `ID3 `, service 0, no decoder
/// config, no DSM-CC.
const ID3_METADATA_DESCRIPTOR: [u8; 15] = [0x26, 13, 0xff, 0xff, b'I', b'D', b'3', b' ', 0xff, b'I', b'D', b'3', b' ', 0x00, 0x0f];

/// A PMT section (from its table id, within one packet: `rest` is the packet from
/// there on) with its `KLVA` private streams made ID3 streams, and the new CRC; `None`
/// when it has none or would not fit.
fn id3_pmt(rest: &[u8]) -> Option<Vec<u8>> {
    let section_len = ((rest[1] as usize & 0x0f) << 8) | rest[2] as usize;
    let end = 3 + section_len; // the CRC is the last 4 bytes
    if end > rest.len() || section_len < 13 {
        return None;
    }
    let body = &rest[..end - 4];
    let info_len = ((body[10] as usize & 0x0f) << 8) | body[11] as usize;
    let mut out = body[..(12 + info_len).min(body.len())].to_vec();
    let mut es = 12 + info_len;
    let mut patched = false;
    while es + 5 <= body.len() {
        let es_info = ((body[es + 3] as usize & 0x0f) << 8) | body[es + 4] as usize;
        let descriptors = body.get(es + 5..es + 5 + es_info)?;
        if body[es] == 0x06 && descriptors.starts_with(&[0x05, 4, b'K', b'L', b'V', b'A']) {
            let mut d = ID3_METADATA_DESCRIPTOR.to_vec();
            d.extend_from_slice(&descriptors[6..]);
            out.extend_from_slice(&[0x15, body[es + 1], body[es + 2], 0xf0 | (d.len() >> 8) as u8, d.len() as u8]);
            out.extend_from_slice(&d);
            patched = true;
        } else {
            out.extend_from_slice(&body[es..es + 5 + es_info]);
        }
        es += 5 + es_info;
    }
    let new_len = out.len() + 4 - 3;
    if !patched || new_len > 1021 {
        return None;
    }
    out[1] = (out[1] & 0xf0) | (new_len >> 8) as u8;
    out[2] = new_len as u8;
    let crc = crc32_mpeg2(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, initial all ones), as PSI
/// sections carry it.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod id3_tests {
    use super::*;

    #[test]
    fn crc_of_a_known_pat() {
        // A PAT for program 1 on PID 0x1000, as mpegtsmux writes it, ends in this CRC.
        let pat = [0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00];
        assert_eq!(crc32_mpeg2(&pat), 0x2ab104b2);
    }

    #[test]
    fn a_klv_stream_becomes_an_id3_stream_with_its_descriptor() {
        // PMT: program 1, PCR PID 0x41, H.264 on 0x41, AAC on 0x42, KLV on 0x43.
        let mut section = vec![0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe0, 0x41, 0xf0, 0x00];
        section.extend_from_slice(&[0x1b, 0xe0, 0x41, 0xf0, 0x00]);
        section.extend_from_slice(&[0x0f, 0xe0, 0x42, 0xf0, 0x00]);
        section.extend_from_slice(&[0x06, 0xe0, 0x43, 0xf0, 0x06, 0x05, 0x04, b'K', b'L', b'V', b'A']);
        section[2] = (section.len() + 4 - 3) as u8;
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let out = id3_pmt(&section).expect("patched");
        assert_eq!(out.len(), section.len() + 9, "the registration (6 bytes) became the descriptor (15)");
        assert_eq!(usize::from(out[2]) + 3, out.len());
        let es = 12 + 10;
        assert_eq!(&out[es..es + 5], &[0x15, 0xe0, 0x43, 0xf0, 15]);
        assert_eq!(&out[es + 5..es + 20], &ID3_METADATA_DESCRIPTOR);
        assert_eq!(crc32_mpeg2(&out), 0, "a section with its CRC checks to zero");
        assert_eq!(&out[12..22], &section[12..22], "the other streams as they were");
        // Done already (or no KLV): nothing to do.
        assert!(id3_pmt(&out).is_none());
        // In a packet whose adaptation field is all stuffing up to the section (as
        // mpegtsmux writes it), the section takes room from that stuffing.
        let mut packet = vec![0x47, 0x40, 0x20, 0x30];
        let af_len = 188 - 5 - 1 - section.len();
        packet.push(af_len as u8);
        packet.push(0x00);
        packet.resize(5 + af_len, 0xff);
        packet.push(0x00); // pointer field
        packet.extend_from_slice(&section);
        assert_eq!(packet.len(), 188);
        assert!(put_section(&mut packet, 188 - section.len(), &out));
        assert_eq!(packet[4] as usize, af_len - 9);
        let sec = 5 + packet[4] as usize + 1;
        assert_eq!(packet[sec - 1], 0, "the pointer field moved with it");
        assert_eq!(&packet[sec..], &out[..]);
        // No room at all: left alone.
        let mut full = vec![0x47, 0x40, 0x20, 0x10, 0x00];
        full.extend_from_slice(&section);
        full.resize(188, 0xaa);
        let before = full.clone();
        assert!(!put_section(&mut full, 5, &out));
        assert_eq!(full, before);
    }
}
