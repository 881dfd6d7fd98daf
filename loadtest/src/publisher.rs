//! A WHIP publisher sending synthetic VP8 video and Opus audio.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::{Event, IceConnectionState, Rtc};

use crate::http::Http;
use crate::peer::{self, Bounds, MAX_WAIT, Session, Shared, Worker};
use crate::synth::{OPUS_FRAME_BYTES, VP8_HEIGHT, VP8_WIDTH, opus_frame, vp8_frame};

/// Audio packet duration: 20 ms, 50 packets per second.
const AUDIO_PERIOD: Duration = Duration::from_millis(20);
/// RTP ticks per audio packet at 48 kHz.
const AUDIO_TICKS: u64 = 960;
/// When a loop falls further behind its media schedule than this, it skips ahead
/// instead of sending a burst.
const MAX_LAG: Duration = Duration::from_millis(500);
/// Frames written per kind in one loop iteration at most, to catch up gently.
const MAX_CATCH_UP: usize = 3;

/// How a [`Publisher`] sends.
#[derive(Debug, Clone, PartialEq)]
pub struct PublisherOptions {
    /// Target video bitrate; every frame is `video_bitrate_bps / 8 / fps` bytes.
    pub video_bitrate_bps: u64,
    /// Video frames per second (at least 1).
    pub fps: u32,
    /// Whether to send Opus audio (100-byte packets every 20 ms) besides video.
    pub audio: bool,
    /// Time between periodic keyframes (rounded to whole frames, at least one).
    pub keyframe_interval: Duration,
    /// Address the UDP socket binds to (port 0); it is the only local candidate.
    pub bind_ip: IpAddr,
    /// Bound on each HTTP request (the WHIP POST and the DELETE).
    pub http_timeout: Duration,
    /// The connection must be up (ICE + DTLS) within this time after the POST.
    pub connect_timeout: Duration,
    /// Hard limit on the publisher's life; it stops by itself after this.
    pub max_duration: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            video_bitrate_bps: 2_500_000,
            fps: 30,
            audio: true,
            keyframe_interval: Duration::from_secs(2),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(600),
        }
    }
}

impl PublisherOptions {
    /// Bytes of every synthetic video frame.
    pub fn frame_bytes(&self) -> usize {
        let per_frame = self.video_bitrate_bps / 8 / u64::from(self.fps.max(1));
        usize::try_from(per_frame).unwrap_or(usize::MAX)
    }

    /// Frames from one periodic keyframe to the next.
    pub fn keyframe_interval_frames(&self) -> u64 {
        let frames = self.keyframe_interval.as_secs_f64() * f64::from(self.fps.max(1));
        (frames.round() as u64).max(1)
    }
}

/// What a [`Publisher`] did so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublisherStats {
    /// When ICE and DTLS came up.
    pub connected_at: Option<Instant>,
    /// Video frames handed to str0m.
    pub video_frames_sent: u64,
    /// Of those, keyframes.
    pub keyframes_sent: u64,
    /// Bytes of video frames handed to str0m (payload, before RTP packetization).
    pub video_bytes_sent: u64,
    /// Opus packets handed to str0m.
    pub audio_frames_sent: u64,
    /// Bytes of Opus packets handed to str0m.
    pub audio_bytes_sent: u64,
    /// Keyframe requests (PLI/FIR) received for the video track.
    pub keyframe_requests: u64,
    /// Why the publisher stopped early, if it did.
    pub error: Option<String>,
    /// The worker thread has ended (stopped, failed or reached its deadline).
    pub finished: bool,
    /// The WHIP resource was deleted successfully.
    pub deleted: bool,
}

impl PublisherStats {
    /// Video plus audio bytes sent.
    pub fn bytes_sent(&self) -> u64 {
        self.video_bytes_sent + self.audio_bytes_sent
    }
}

/// A WHIP publisher on its own thread and UDP socket.
///
/// Stops when [`stop`](Publisher::stop) is called, when dropped, on error, or when
/// [`PublisherOptions::max_duration`] has passed; then it DELETEs its WHIP resource.
#[derive(Debug)]
pub struct Publisher {
    worker: Worker<PublisherStats>,
    resource_url: String,
}

impl Publisher {
    /// Binds a UDP socket, POSTs a WHIP offer (sendonly Opus audio if enabled, sendonly
    /// VP8 video) to `{base_url}/whip/{room}` with `token` (role `encoder`), applies the
    /// answer and starts sending on a new thread once connected.
    ///
    /// Returns an error if the server is unreachable or refuses the offer, or if the
    /// answer lacks VP8 (or Opus when audio is on) or a UDP candidate.
    pub fn start(
        base_url: &str,
        room: &str,
        token: &str,
        options: PublisherOptions,
    ) -> Result<Publisher> {
        if options.fps == 0 {
            bail!("fps must be at least 1");
        }
        let http = Http::new(base_url, options.http_timeout)?;
        let url = http.endpoint("whip", room);
        let rtc = Rtc::builder().build(Instant::now());
        let mut mids = (None, None);
        let session = peer::negotiate(rtc, options.bind_ip, http, &url, token, |api| {
            if options.audio {
                mids.0 = Some(api.add_media(
                    MediaKind::Audio,
                    Direction::SendOnly,
                    Some("casecast-loadtest".into()),
                    Some("audio".into()),
                    None,
                ));
            }
            mids.1 = Some(api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some("casecast-loadtest".into()),
                Some("video".into()),
                None,
            ));
        })?;
        let (audio_mid, video_mid) = mids;
        let resource_url = session.resource_url.clone();

        let tracks = match Tracks::find(&session.peer.rtc, audio_mid, video_mid) {
            Ok(tracks) => tracks,
            Err(e) => {
                let _ = session.end();
                return Err(e.context(format!("negotiating with {url}")));
            }
        };

        let shared = Shared::new(PublisherStats::default());
        let worker = Worker::spawn("casecast-publisher".into(), shared, move |shared| {
            run(session, tracks, options, &shared);
        })?;
        Ok(Publisher {
            worker,
            resource_url,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PublisherStats {
        self.worker.shared.snapshot()
    }

    /// The WHIP resource URL (from the `Location` header, made absolute).
    pub fn resource_url(&self) -> &str {
        &self.resource_url
    }

    /// Whether the worker thread is still running.
    pub fn is_running(&self) -> bool {
        self.worker.is_running()
    }

    /// Waits (polling, bounded by `timeout`) until the connection is up; false if it
    /// did not come up in time or the publisher ended.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        peer::wait_until(timeout, || {
            let stats = self.worker.shared.stats();
            stats.connected_at.is_some() || stats.finished
        }) && self.stats().connected_at.is_some()
    }

    /// Asks the worker to stop without waiting for it; [`stop`](Publisher::stop) or
    /// dropping then finishes quickly. Use it to stop many peers at once.
    pub fn request_stop(&self) {
        self.worker.shared.request_stop();
    }

    /// Stops sending, closes the connection, DELETEs the WHIP resource and returns the
    /// final counters.
    pub fn stop(mut self) -> PublisherStats {
        self.worker.stop()
    }
}

/// The negotiated tracks and their payload types.
struct Tracks {
    video: (Mid, Pt),
    audio: Option<(Mid, Pt)>,
}

impl Tracks {
    fn find(rtc: &Rtc, audio_mid: Option<Mid>, video_mid: Option<Mid>) -> Result<Tracks> {
        let video_mid = video_mid.context("no video m-line was offered")?;
        let video_pt = negotiated_pt(rtc, video_mid, Codec::Vp8)
            .context("the answer did not accept VP8 video")?;
        let audio = match audio_mid {
            Some(mid) => Some((
                mid,
                negotiated_pt(rtc, mid, Codec::Opus)
                    .context("the answer did not accept Opus audio")?,
            )),
            None => None,
        };
        Ok(Tracks {
            video: (video_mid, video_pt),
            audio,
        })
    }
}

/// The payload type of `codec` on `mid` as negotiated with the server.
fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    rtc.codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
        .map(|p| p.pt())
}

/// A media clock: slot `k` is due at `start + k * period`.
struct Ticker {
    start: Instant,
    period: Duration,
    next: u64,
}

impl Ticker {
    fn new(start: Instant, period: Duration) -> Ticker {
        Ticker {
            start,
            period,
            next: 0,
        }
    }

    fn due_at(&self) -> Instant {
        self.start + slot_offset(self.period, self.next)
    }

    /// The next due slot, if any is due at `now`; skips ahead when far behind.
    fn poll(&mut self, now: Instant) -> Option<u64> {
        let due = self.due_at();
        if due > now {
            return None;
        }
        if now - due > MAX_LAG {
            let elapsed = (now - self.start).as_nanos();
            self.next = u64::try_from(elapsed / self.period.as_nanos().max(1)).unwrap_or(u64::MAX);
        }
        let slot = self.next;
        self.next = self.next.saturating_add(1);
        Some(slot)
    }
}

fn slot_offset(period: Duration, slot: u64) -> Duration {
    let nanos = period.as_nanos().saturating_mul(u128::from(slot));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The sending state once connected.
struct Sender {
    video: Ticker,
    audio: Option<Ticker>,
    frames_since_keyframe: u64,
    keyframe_wanted: bool,
}

fn run(
    mut session: Session,
    tracks: Tracks,
    options: PublisherOptions,
    shared: &Shared<PublisherStats>,
) {
    let result = drive(&mut session, &tracks, &options, shared);
    let deleted = session.end();
    let mut stats = shared.stats();
    if let Err(e) = result {
        stats.error = Some(format!("{e:#}"));
    }
    match deleted {
        Ok(()) => stats.deleted = true,
        Err(e) if stats.error.is_none() => stats.error = Some(format!("{e:#}")),
        Err(_) => {}
    }
    stats.finished = true;
}

fn drive(
    session: &mut Session,
    tracks: &Tracks,
    options: &PublisherOptions,
    shared: &Shared<PublisherStats>,
) -> Result<()> {
    let bounds = Bounds::new(options.max_duration, options.connect_timeout);
    let frame_bytes = options.frame_bytes();
    let keyframe_every = options.keyframe_interval_frames();
    let video_period = Duration::from_secs(1) / options.fps.max(1);
    let video_ticks_per_frame = 90_000 / u64::from(options.fps.max(1));
    let (video_mid, video_pt) = tracks.video;

    let mut sender: Option<Sender> = None;
    let mut connected = false;
    let mut disconnected = false;

    loop {
        let now = Instant::now();
        if !bounds.check(now, shared.stop_requested(), &session.peer.rtc, connected, disconnected)? {
            return Ok(());
        }

        if connected {
            let s = sender.get_or_insert_with(|| Sender {
                video: Ticker::new(now, video_period),
                audio: tracks.audio.map(|_| Ticker::new(now, AUDIO_PERIOD)),
                frames_since_keyframe: 0,
                keyframe_wanted: true,
            });
            for _ in 0..MAX_CATCH_UP {
                let Some(slot) = s.video.poll(now) else { break };
                let keyframe = s.keyframe_wanted || s.frames_since_keyframe >= keyframe_every;
                let frame = vp8_frame(frame_bytes, keyframe, VP8_WIDTH, VP8_HEIGHT, slot);
                let len = frame.len() as u64;
                let rtp_time = MediaTime::new(
                    slot.wrapping_mul(video_ticks_per_frame),
                    Frequency::NINETY_KHZ,
                );
                let writer = session
                    .peer
                    .rtc
                    .writer(video_mid)
                    .context("the video track is gone")?;
                writer
                    .write(video_pt, Instant::now(), rtp_time, frame)
                    .context("writing a video frame")?;
                if keyframe {
                    s.keyframe_wanted = false;
                    s.frames_since_keyframe = 1;
                } else {
                    s.frames_since_keyframe += 1;
                }
                let mut stats = shared.stats();
                stats.video_frames_sent += 1;
                stats.video_bytes_sent += len;
                stats.keyframes_sent += u64::from(keyframe);
            }
            if let (Some(ticker), Some((audio_mid, audio_pt))) = (s.audio.as_mut(), tracks.audio) {
                for _ in 0..MAX_CATCH_UP {
                    let Some(slot) = ticker.poll(now) else { break };
                    let packet = opus_frame(OPUS_FRAME_BYTES, slot);
                    let len = packet.len() as u64;
                    let rtp_time =
                        MediaTime::new(slot.wrapping_mul(AUDIO_TICKS), Frequency::FORTY_EIGHT_KHZ);
                    let writer = session
                        .peer
                        .rtc
                        .writer(audio_mid)
                        .context("the audio track is gone")?;
                    writer
                        .write(audio_pt, Instant::now(), rtp_time, packet)
                        .context("writing an audio packet")?;
                    let mut stats = shared.stats();
                    stats.audio_frames_sent += 1;
                    stats.audio_bytes_sent += len;
                }
            }
        }

        let rtc_wants = session.peer.drain(|_, event| match event {
            Event::Connected => {
                connected = true;
                shared.stats().connected_at = Some(Instant::now());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                disconnected = true
            }
            Event::KeyframeRequest(req) if req.mid == video_mid => {
                if let Some(s) = sender.as_mut() {
                    s.keyframe_wanted = true;
                }
                shared.stats().keyframe_requests += 1;
            }
            _ => {}
        })?;

        let mut wake = rtc_wants.min(bounds.deadline()).min(Instant::now() + MAX_WAIT);
        if let Some(s) = &sender {
            wake = wake.min(s.video.due_at());
            if let Some(audio) = &s.audio {
                wake = wake.min(audio.due_at());
            }
        }
        session.peer.wait(wake)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_defaults() {
        let o = PublisherOptions::default();
        assert_eq!(o.video_bitrate_bps, 2_500_000);
        assert_eq!(o.fps, 30);
        assert!(o.audio);
        assert_eq!(o.frame_bytes(), 2_500_000 / 8 / 30);
        assert_eq!(o.keyframe_interval_frames(), 60);
        let o = PublisherOptions {
            fps: 1,
            keyframe_interval: Duration::ZERO,
            ..o
        };
        assert_eq!(o.keyframe_interval_frames(), 1);
    }

    #[test]
    fn ticker_schedule() {
        let start = Instant::now();
        let mut t = Ticker::new(start, Duration::from_millis(20));
        assert_eq!(t.poll(start), Some(0));
        assert_eq!(t.poll(start), None);
        assert_eq!(t.due_at(), start + Duration::from_millis(20));
        assert_eq!(t.poll(start + Duration::from_millis(45)), Some(1));
        assert_eq!(t.poll(start + Duration::from_millis(45)), Some(2));
        assert_eq!(t.poll(start + Duration::from_millis(45)), None);
        // Far behind: skip to the current slot instead of bursting.
        assert_eq!(t.poll(start + Duration::from_millis(2010)), Some(100));
        assert_eq!(t.poll(start + Duration::from_millis(2010)), None);
    }
}
