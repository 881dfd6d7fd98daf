//! Fragmented MP4 (CMAF) boxes for the program's low-latency HLS, written by hand:
//! an init segment (`ftyp` + `moov` with an H.264 and an AAC track) and fragments
//! (`emsg`s, then `moof` + `mdat`), each fragment an HLS part.
//!
//! Why by hand: Debian 12's GStreamer 1.22 has no `cmafmux`; the `gst-plugin-fmp4`
//! crate that builds against 1.22 needs gstreamer-rs 0.24 (casecast uses 0.25), its
//! successor needs GStreamer 1.26, and its `cmafmux` takes one track and writes no
//! `emsg`. The program's encoders already give access units (AVC, length-prefixed)
//! and raw AAC frames with their codec headers, so what is left is a few boxes.
//!
//! Pure: bytes in, bytes out.

/// An H.264 track's setup.
#[derive(Debug, Clone)]
pub struct VideoTrack {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The `AVCDecoderConfigurationRecord` (GStreamer's `codec_data` in AVC caps).
    pub avcc: Vec<u8>,
}

/// An AAC track's setup.
#[derive(Debug, Clone)]
pub struct AudioTrack {
    /// Samples per second (also the track's timescale).
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// The `AudioSpecificConfig` (GStreamer's `codec_data` in raw AAC caps).
    pub asc: Vec<u8>,
}

/// Video timescale: 90 kHz, as RTP and MPEG-TS use.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Track ids in the init segment.
pub const VIDEO_TRACK: u32 = 1;
/// Track ids in the init segment.
pub const AUDIO_TRACK: u32 = 2;

/// One sample (an access unit or an AAC frame).
#[derive(Debug, Clone)]
pub struct Sample {
    /// Decode time in the track's timescale.
    pub dts: u64,
    /// In the track's timescale.
    pub duration: u32,
    /// Presentation minus decode time (0 without B-frames).
    pub cts_offset: i32,
    /// A sync sample (IDR).
    pub key: bool,
    /// The sample's bytes as they go in `mdat`.
    pub data: Vec<u8>,
}

/// A timed metadata message for the fragment (`emsg` version 1).
#[derive(Debug, Clone)]
pub struct Event {
    /// `https://aomedia.org/emsg/ID3` for ID3 tags (hls.js reads it as ID3).
    pub scheme: &'static str,
    /// Presentation time, in [`VIDEO_TIMESCALE`].
    pub time: u64,
    /// The message (an ID3 tag).
    pub data: Vec<u8>,
    /// An id, unique per message.
    pub id: u32,
}

/// The ID3 scheme of `emsg` (AOM's "Carriage of ID3 Timed Metadata in CMAF").
pub const ID3_SCHEME: &str = "https://aomedia.org/emsg/ID3";

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    /// A box: its size and type, then what `body` writes.
    fn boxed(&mut self, kind: &[u8; 4], body: impl FnOnce(&mut Writer)) -> &mut Self {
        let at = self.0.len();
        self.u32(0).bytes(kind);
        body(self);
        let size = (self.0.len() - at) as u32;
        self.0[at..at + 4].copy_from_slice(&size.to_be_bytes());
        self
    }
    /// A full box: a box with a version and flags.
    fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Writer)) -> &mut Self {
        self.boxed(kind, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
            body(w);
        })
    }
}

/// The unity matrix of `mvhd` and `tkhd`.
fn matrix(w: &mut Writer) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        w.u32(v);
    }
}

/// The init segment: `ftyp` and `moov` (video track 1, audio track 2, `mvex` for
/// fragments).
pub fn init_segment(video: &VideoTrack, audio: &AudioTrack) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1024));
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6").u32(0).bytes(b"iso6").bytes(b"cmfc").bytes(b"mp41");
    });
    w.boxed(b"moov", |w| {
        w.full(b"mvhd", 0, 0, |w| {
            w.u32(0).u32(0).u32(1000).u32(0).u32(0x0001_0000).u16(0x0100).zeros(10);
            matrix(w);
            w.zeros(24).u32(AUDIO_TRACK + 1);
        });
        track(w, VIDEO_TRACK, VIDEO_TIMESCALE, Some((video.width, video.height)), |w| {
            w.full(b"vmhd", 0, 1, |w| {
                w.zeros(8);
            });
        }, |w| {
            w.boxed(b"avc1", |w| {
                w.zeros(6).u16(1).zeros(16).u16(video.width as u16).u16(video.height as u16);
                w.u32(0x0048_0000).u32(0x0048_0000).u32(0).u16(1).zeros(32).u16(0x18).u16(0xffff);
                w.boxed(b"avcC", |w| {
                    w.bytes(&video.avcc);
                });
            });
        });
        track(w, AUDIO_TRACK, audio.rate, None, |w| {
            w.full(b"smhd", 0, 0, |w| {
                w.u32(0);
            });
        }, |w| {
            w.boxed(b"mp4a", |w| {
                w.zeros(6).u16(1).zeros(8).u16(audio.channels).u16(16).u32(0).u32(audio.rate.min(0xffff) << 16);
                w.full(b"esds", 0, 0, |w| esds(w, &audio.asc));
            });
        });
        w.boxed(b"mvex", |w| {
            for id in [VIDEO_TRACK, AUDIO_TRACK] {
                w.full(b"trex", 0, 0, |w| {
                    w.u32(id).u32(1).u32(0).u32(0).u32(0);
                });
            }
        });
    });
    w.0
}

/// A `trak` with no samples (they come in fragments): `handler` is the media
/// header box, `entry` the sample entry.
fn track(
    w: &mut Writer,
    id: u32,
    timescale: u32,
    size: Option<(u32, u32)>,
    header: impl FnOnce(&mut Writer),
    entry: impl FnOnce(&mut Writer),
) {
    w.boxed(b"trak", |w| {
        w.full(b"tkhd", 0, 3, |w| {
            w.u32(0).u32(0).u32(id).u32(0).u32(0).zeros(8).u16(0).u16(0);
            w.u16(if size.is_some() { 0 } else { 0x0100 }).u16(0);
            matrix(w);
            let (width, height) = size.unwrap_or((0, 0));
            w.u32(width << 16).u32(height << 16);
        });
        w.boxed(b"mdia", |w| {
            w.full(b"mdhd", 0, 0, |w| {
                // Language "und", packed.
                w.u32(0).u32(0).u32(timescale).u32(0).u16(0x55c4).u16(0);
            });
            let (kind, name): (&[u8; 4], &[u8]) = if size.is_some() { (b"vide", b"casecast video\0") } else { (b"soun", b"casecast audio\0") };
            w.full(b"hdlr", 0, 0, |w| {
                w.u32(0).bytes(kind).zeros(12).bytes(name);
            });
            w.boxed(b"minf", |w| {
                header(w);
                w.boxed(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1).full(b"url ", 0, 1, |_| {});
                    });
                });
                w.boxed(b"stbl", |w| {
                    w.full(b"stsd", 0, 0, |w| {
                        w.u32(1);
                        entry(w);
                    });
                    w.full(b"stts", 0, 0, |w| {
                        w.u32(0);
                    });
                    w.full(b"stsc", 0, 0, |w| {
                        w.u32(0);
                    });
                    w.full(b"stsz", 0, 0, |w| {
                        w.u32(0).u32(0);
                    });
                    w.full(b"stco", 0, 0, |w| {
                        w.u32(0);
                    });
                });
            });
        });
    });
}

/// The `esds` body: an MPEG-4 audio (AAC) elementary stream descriptor.
fn esds(w: &mut Writer, asc: &[u8]) {
    let asc = &asc[..asc.len().min(100)];
    let dsi = 2 + asc.len();
    let dcd = 2 + 13 + dsi;
    let es = 3 + dcd + 3;
    w.u8(0x03).u8(es as u8).u16(0).u8(0);
    w.u8(0x04).u8((13 + dsi) as u8).u8(0x40).u8(0x15).zeros(3).u32(0).u32(0);
    w.u8(0x05).u8(asc.len() as u8).bytes(asc);
    w.u8(0x06).u8(1).u8(0x02);
}

/// Sample flags: a sync sample depends on no other; any other depends on one and is
/// not a sync sample.
fn sample_flags(key: bool) -> u32 {
    if key { 0x0200_0000 } else { 0x0101_0000 }
}

/// A fragment (one HLS part): the `emsg`s, then `moof` (sequence number `sequence`)
/// and `mdat` with the video samples, then the audio samples. A track with no
/// samples is left out.
pub fn fragment(sequence: u32, video: &[Sample], audio: &[Sample], events: &[Event]) -> Vec<u8> {
    let size: usize = video.iter().chain(audio).map(|s| s.data.len()).sum();
    let mut w = Writer(Vec::with_capacity(size + 512));
    for e in events {
        w.full(b"emsg", 1, 0, |w| {
            w.u32(VIDEO_TIMESCALE).u64(e.time).u32(0).u32(e.id).bytes(e.scheme.as_bytes()).u8(0).u8(0).bytes(&e.data);
        });
    }
    let moof_at = w.0.len();
    // Where each track's data-offset field is, to fill in once moof's size is known.
    let mut offsets = Vec::new();
    w.boxed(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| {
            w.u32(sequence);
        });
        for (id, samples) in [(VIDEO_TRACK, video), (AUDIO_TRACK, audio)] {
            if samples.is_empty() {
                continue;
            }
            w.boxed(b"traf", |w| {
                // default-base-is-moof
                w.full(b"tfhd", 0, 0x02_0000, |w| {
                    w.u32(id);
                });
                w.full(b"tfdt", 1, 0, |w| {
                    w.u64(samples[0].dts);
                });
                // data offset, and per sample: duration, size, flags, composition offset.
                w.full(b"trun", 1, 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800, |w| {
                    w.u32(samples.len() as u32);
                    offsets.push(w.0.len());
                    w.u32(0);
                    for s in samples {
                        w.u32(s.duration).u32(s.data.len() as u32).u32(sample_flags(s.key)).u32(s.cts_offset as u32);
                    }
                });
            });
        }
    });
    let moof_size = w.0.len() - moof_at;
    let mut data_at = moof_size + 8;
    for (at, samples) in offsets.into_iter().zip([video, audio].into_iter().filter(|s| !s.is_empty())) {
        w.0[at..at + 4].copy_from_slice(&(data_at as u32).to_be_bytes());
        data_at += samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    w.u32((8 + size) as u32).bytes(b"mdat");
    for s in video.iter().chain(audio) {
        w.bytes(&s.data);
    }
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes at the top level of `data`: (type, size).
    fn top(data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned(), size));
            assert!(size >= 8, "a box of size {size}");
            at += size;
        }
        assert_eq!(at, data.len(), "the boxes fill the data exactly");
        out
    }

    #[test]
    fn a_fragment_points_each_track_at_its_data() {
        let v = |dts, key, byte| Sample { dts, duration: 3000, cts_offset: 0, key, data: vec![byte; 10] };
        let a = |dts| Sample { dts, duration: 1024, cts_offset: 0, key: true, data: vec![0xaa; 4] };
        let events = [Event { scheme: ID3_SCHEME, time: 9000, data: b"ID3tag".to_vec(), id: 7 }];
        let f = fragment(3, &[v(9000, true, 1), v(12000, false, 2)], &[a(4800), a(5824)], &events);
        let boxes = top(&f);
        assert_eq!(boxes.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["emsg", "moof", "mdat"]);
        let moof_at = boxes[0].1;
        let mdat_at = moof_at + boxes[1].1;
        // The first trun's data offset (from moof) lands on the first video byte.
        let trun = f.windows(4).position(|w| w == b"trun").unwrap() - 4;
        let offset = u32::from_be_bytes(f[trun + 16..trun + 20].try_into().unwrap()) as usize;
        assert_eq!(moof_at + offset, mdat_at + 8);
        assert_eq!(&f[mdat_at + 8..mdat_at + 18], &[1; 10]);
        let second = f[trun + 8..].windows(4).position(|w| w == b"trun").unwrap() + trun + 4;
        let offset = u32::from_be_bytes(f[second + 16..second + 20].try_into().unwrap()) as usize;
        assert_eq!(&f[moof_at + offset..moof_at + offset + 4], &[0xaa; 4], "audio after the video");
        assert!(f.windows(ID3_SCHEME.len()).any(|w| w == ID3_SCHEME.as_bytes()));
    }

    #[test]
    fn the_init_segment_is_ftyp_then_moov() {
        let init = init_segment(
            &VideoTrack { width: 1280, height: 720, avcc: vec![1, 0x4d, 0, 0x1f, 0xff, 0xe0, 0] },
            &AudioTrack { rate: 48_000, channels: 2, asc: vec![0x11, 0x90] },
        );
        assert_eq!(top(&init).iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), ["ftyp", "moov"]);
        for kind in [&b"avcC"[..], b"esds", b"trex", b"mvex"] {
            assert!(init.windows(4).any(|w| w == kind), "{}", String::from_utf8_lossy(kind));
        }
    }
}
