//! What operators see of a peer: its bitrates, loss, round trip, frame rate,
//! picture size and audio level, kept from str0m's stats events and its media.

use std::time::{Duration, Instant};

use str0m::media::MediaData;
use str0m::stats::{MediaIngressStats, PeerStats};

/// What an operator sees of a participant: its connection and media, as of the last
/// stats tick (every 2 s).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ParticipantStats {
    /// Participant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Media connected.
    pub connected: bool,
    /// Bits/s received from it.
    pub bitrate_in: u64,
    /// Bits/s sent to it.
    pub bitrate_out: u64,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Fraction of its packets lost on the way in (0..1).
    pub loss_in: Option<f32>,
    /// Fraction of packets lost on the way to it (0..1).
    pub loss_out: Option<f32>,
    /// Jitter of its video (or audio), ms.
    pub jitter_ms: Option<f64>,
    /// Video frames per second received from it.
    pub fps_in: f64,
    /// Of those, the frames per second let into the room (fewer when it sends
    /// above the room's frame-rate ceiling).
    pub fps_forwarded: f64,
    /// The simulcast layers it sends, best first (`f,h,q`), if it sends several;
    /// for a one-layer feed the server makes a ladder of, `source,540p,360p`.
    pub layer: Option<String>,
    /// The layer it is given of the first video it receives (the feed): rid and
    /// picture size (`h 640×360`), `single` for a one-layer track (`source` for the
    /// feed as its encoder sends it, when the server makes a ladder of it), `paused`
    /// when its link holds not even the lowest layer, `best` before its first
    /// bandwidth estimate.
    pub receiving: Option<String>,
    /// What the path to it carries, as the server estimates it, kbit/s.
    pub estimate_kbps: Option<u64>,
    /// Of that, GCC's delay-based estimate alone, kbit/s: above `estimate_kbps`
    /// while the loss-based part holds the estimate down.
    pub delay_estimate_kbps: Option<u64>,
    /// The picture size of its video, from its last key frame.
    pub width: Option<u32>,
    /// Height, likewise.
    pub height: Option<u32>,
    /// Its audio level, 0 (silence) to 1 (loudest), from the RTP audio-level header.
    pub audio_level: Option<f64>,
    /// Speaking now (audio above -50 dBov in the last second).
    pub speaking: bool,
    /// It muted its microphone.
    pub audio_muted: bool,
    /// It turned its camera off.
    pub video_muted: bool,
    /// An operator muted its audio (the server drops it).
    pub audio_muted_by_operator: bool,
    /// An operator muted its video (the server drops it).
    pub video_muted_by_operator: bool,
    /// Kinds it publishes.
    pub publishing: Vec<String>,
    /// It raised its hand (a commentator asking for the floor).
    pub hand_raised: bool,
    /// The invitation it joined with, if any (the console shows who of the invited
    /// have joined).
    pub invitation: Option<String>,
}

/// The connection and media figures, updated as events come.
#[derive(Debug, Default)]
pub(super) struct StatsTracker {
    stats: ParticipantStats,
    /// Bytes received and sent at the last peer stats tick.
    last_peer: Option<(Instant, u64, u64)>,
    /// Video frames received since the last tick.
    frames_in: u64,
    /// Of those, the frames let into the room.
    frames_forwarded: u64,
    /// The last audio level heard (dBov, 0 = loudest) and when.
    audio_level: Option<(i8, Instant)>,
}

impl StatsTracker {
    /// str0m's peer stats tick (every 2 s).
    pub fn peer(&mut self, now: Instant, p: &PeerStats) {
        if let Some((at, rx, tx)) = self.last_peer {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            self.stats.bitrate_in = ((p.peer_bytes_rx.saturating_sub(rx)) as f64 * 8.0 / secs) as u64;
            self.stats.bitrate_out = ((p.peer_bytes_tx.saturating_sub(tx)) as f64 * 8.0 / secs) as u64;
            self.stats.fps_in = (self.frames_in as f64 / secs * 10.0).round() / 10.0;
            self.stats.fps_forwarded = (self.frames_forwarded as f64 / secs * 10.0).round() / 10.0;
        }
        self.frames_in = 0;
        self.frames_forwarded = 0;
        self.last_peer = Some((now, p.peer_bytes_rx, p.peer_bytes_tx));
        self.stats.rtt_ms = p.rtt.map(|d| d.as_secs_f64() * 1000.0);
        self.stats.loss_in = p.ingress_loss_fraction;
        self.stats.loss_out = p.egress_loss_fraction;
    }

    /// An m-line's ingress stats: jitter (video preferred) and a round trip if the
    /// peer stats had none.
    pub fn ingress(&mut self, video: bool, m: &MediaIngressStats) {
        // Jitter is in RTP clock units: 90 kHz for video, 48 kHz for audio.
        if video || self.stats.jitter_ms.is_none() {
            self.stats.jitter_ms = Some(f64::from(m.jitter) / if video { 90.0 } else { 48.0 });
        }
        if m.rtt.is_some() && self.stats.rtt_ms.is_none() {
            self.stats.rtt_ms = m.rtt.map(|d| d.as_secs_f64() * 1000.0);
        }
    }

    /// A video frame of the layer forwarded: counted, and sized at key frames.
    pub fn video_frame(&mut self, data: &MediaData) {
        self.frames_in += 1;
        if let Some((w, h)) = crate::resolution::of_keyframe(data) {
            (self.stats.width, self.stats.height) = (Some(w), Some(h));
        }
    }

    /// A video frame of the layer counted in `fps_in` was let into the room.
    pub fn video_frame_forwarded(&mut self) {
        self.frames_forwarded += 1;
    }

    /// An audio frame: its level, from the RTP audio-level header.
    pub fn audio(&mut self, now: Instant, data: &MediaData) {
        if let Some(level) = data.ext_vals.audio_level {
            self.audio_level = Some((level, now));
        }
    }

    /// The figures as of `now` (the audio level holds for one second).
    pub fn snapshot(&self, now: Instant) -> ParticipantStats {
        let mut s = self.stats.clone();
        // dBov: 0 is the loudest, -127 silence.
        let recent = self.audio_level.filter(|(_, at)| now.saturating_duration_since(*at) < Duration::from_secs(1));
        s.audio_level = recent.map(|(l, _)| ((127.0 + f64::from(l.max(-127))) / 127.0 * 100.0).round() / 100.0);
        s.speaking = recent.is_some_and(|(l, _)| l > -50);
        s
    }
}
