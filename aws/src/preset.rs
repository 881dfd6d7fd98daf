//! An event's latency preset as MediaLive encoder settings and a MediaPackage
//! endpoint: segment length and GOP, the bitrate ladder, the playlist, DVR
//! (startover) window and time delay, and which MediaPackage packages it: v1's HLS
//! for `quality` and `low-latency`, v2's low-latency HLS (from CMAF ingest) for
//! `ultra-low`.

/// Which MediaPackage packages the event, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Packaging {
    /// MediaPackage v1: HLS ingest, an HLS origin endpoint (TS segments).
    #[default]
    HlsV1,
    /// MediaPackage v2: CMAF ingest from MediaLive into a channel of a channel group,
    /// and an origin endpoint with a low-latency HLS manifest (CMAF segments, parts,
    /// blocking reload).
    LowLatencyHlsV2,
}

/// One H.264 rendition of the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// Its name in the channel (`video_720p30`).
    pub name: &'static str,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// Bits per second (CBR).
    pub bitrate: i32,
    /// H.264 profile and level MediaLive is told.
    pub profile: &'static str,
    /// H.264 level (`H264_LEVEL_3_1`…).
    pub level: &'static str,
}

/// What a preset sets in AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// `quality`, `low-latency` or `ultra-low`.
    pub name: &'static str,
    /// Which MediaPackage, and which kind of HLS.
    pub packaging: Packaging,
    /// MediaPackage HLS segment length, seconds.
    pub segment_seconds: i32,
    /// MediaLive GOP, seconds (the segment is a whole number of GOPs, so every
    /// segment starts with a key frame).
    pub gop_seconds: f64,
    /// How much of the live edge the playlist lists, seconds.
    pub playlist_window_seconds: i32,
    /// How far back viewers can go (startover, DVR), seconds; also what a harvest
    /// job can take.
    pub startover_window_seconds: i32,
    /// Extra delay MediaPackage adds, seconds.
    pub time_delay_seconds: i32,
    /// Frames per second.
    pub fps: i32,
    /// The ladder, best first.
    pub ladder: Vec<Rendition>,
    /// AAC bitrate, bits/s.
    pub audio_bitrate: f64,
}

const LADDER: [Rendition; 3] = [
    Rendition { name: "video_720p30", width: 1280, height: 720, bitrate: 3_500_000, profile: "HIGH", level: "H264_LEVEL_3_1" },
    Rendition { name: "video_540p30", width: 960, height: 540, bitrate: 2_000_000, profile: "MAIN", level: "H264_LEVEL_3_1" },
    Rendition { name: "video_360p30", width: 640, height: 360, bitrate: 800_000, profile: "MAIN", level: "H264_LEVEL_3" },
];

/// Two hours back, as the local HLS offers.
const DVR_SECONDS: i32 = 2 * 3600;

impl Preset {
    /// The preset of that name (`quality` for anything else, which the event's policy
    /// check never lets through).
    pub fn named(name: &str) -> Preset {
        match name {
            // Low-latency HLS through MediaPackage v2: MediaLive sends CMAF segments
            // of one 1 s GOP, which MediaPackage serves as they arrive, in parts, with
            // blocking playlist reload; players hold a few parts back, not segments.
            "ultra-low" => Preset {
                name: "ultra-low",
                packaging: Packaging::LowLatencyHlsV2,
                segment_seconds: 1,
                ..Preset::named("low-latency")
            },
            // 2 s segments of 1 s GOPs; players hold three segments back: about 8 s
            // behind live, glass to glass.
            "low-latency" => Preset {
                name: "low-latency",
                packaging: Packaging::HlsV1,
                segment_seconds: 2,
                gop_seconds: 1.0,
                playlist_window_seconds: 30,
                startover_window_seconds: DVR_SECONDS,
                time_delay_seconds: 0,
                fps: 30,
                ladder: LADDER.to_vec(),
                audio_bitrate: 128_000.0,
            },
            // 6 s segments of 2 s GOPs; players hold three segments back, plus the
            // segment being made and the encoder: about 30 s behind live, riding out
            // long network trouble.
            _ => Preset {
                name: "quality",
                packaging: Packaging::HlsV1,
                segment_seconds: 6,
                gop_seconds: 2.0,
                playlist_window_seconds: 60,
                startover_window_seconds: DVR_SECONDS,
                time_delay_seconds: 0,
                fps: 30,
                ladder: LADDER.to_vec(),
                audio_bitrate: 128_000.0,
            },
        }
    }

    /// About how far behind live a player is, seconds. HLS: three segments held back,
    /// the segment being made, the GOP in the encoder, the time delay. Low-latency
    /// HLS: the player holds back parts of the segment being made instead of whole
    /// segments (at most one segment), plus the ingest segment in flight.
    pub fn expected_latency_seconds(&self) -> f64 {
        let held = match self.packaging {
            Packaging::HlsV1 => 4 * self.segment_seconds,
            Packaging::LowLatencyHlsV2 => 2 * self.segment_seconds,
        };
        f64::from(held + self.time_delay_seconds) + self.gop_seconds + 3.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the AWS documentation asks of these settings.
    fn check(p: &Preset) {
        // MediaPackage: the segment is a whole number of the encoder's GOPs (else
        // segments are cut where no key frame is), 1..=30 s.
        let gops = f64::from(p.segment_seconds) / p.gop_seconds;
        assert!((gops - gops.round()).abs() < 1e-9 && gops >= 1.0, "{}: segment {} s, GOP {} s", p.name, p.segment_seconds, p.gop_seconds);
        assert!((1..=30).contains(&p.segment_seconds));
        // HLS: the playlist lists at least three segments.
        assert!(p.playlist_window_seconds >= 3 * p.segment_seconds, "{}", p.name);
        // MediaPackage: startover up to 14 days, time delay up to 24 h.
        assert!((0..=1_209_600).contains(&p.startover_window_seconds));
        assert!((0..=86_400).contains(&p.time_delay_seconds));
        // MediaLive H.264: GOP in seconds, whole frames; 1000..=80 000 000 bit/s
        // (well within an HD input's 20 Mbit/s here), even sizes, 16:9, best first.
        assert!((p.gop_seconds * f64::from(p.fps)).fract() == 0.0);
        for r in &p.ladder {
            assert!((1_000..=20_000_000).contains(&r.bitrate), "{r:?}");
            assert!(r.width % 2 == 0 && r.height % 2 == 0 && r.width * 9 == r.height * 16, "{r:?}");
        }
        assert!(p.ladder.windows(2).all(|w| w[0].bitrate > w[1].bitrate && w[0].height > w[1].height));
        // The top rendition is the program's own size: nothing is upscaled.
        assert_eq!((p.ladder[0].width, p.ladder[0].height), (1280, 720));
        assert!((64_000.0..=320_000.0).contains(&p.audio_bitrate));
    }

    #[test]
    fn every_preset_meets_the_documented_constraints() {
        check(&Preset::named("quality"));
        check(&Preset::named("low-latency"));
        let ultra = Preset::named("ultra-low");
        check(&ultra);
        // MediaLive's MediaPackage v2 group: whole-second segments of whole GOPs.
        assert_eq!(ultra.packaging, Packaging::LowLatencyHlsV2);
        assert_eq!(f64::from(ultra.segment_seconds), ultra.gop_seconds);
    }

    #[test]
    fn the_quality_preset_is_about_thirty_seconds_behind_live() {
        let q = Preset::named("quality").expected_latency_seconds();
        assert!((25.0..=35.0).contains(&q), "{q}");
        let l = Preset::named("low-latency").expected_latency_seconds();
        assert!(l < 15.0 && l < q, "{l}");
        assert_eq!(Preset::named("anything").name, "quality");
        let u = Preset::named("ultra-low").expected_latency_seconds();
        assert!(u < l && u <= 6.0, "{u}");
    }
}
