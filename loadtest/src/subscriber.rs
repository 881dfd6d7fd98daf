//! A WHEP subscriber that counts what it receives.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::{Event, IceConnectionState, Rtc};

use crate::http::Http;
use crate::peer::{self, Bounds, MAX_WAIT, Session, Shared, Worker};
use crate::synth::is_vp8_keyframe;

/// Least time between two keyframe requests the subscriber sends.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// How a [`Subscriber`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberOptions {
    /// Address the UDP socket binds to (port 0); it is the only local candidate.
    pub bind_ip: IpAddr,
    /// Bound on each HTTP request (the WHEP POST and the DELETE).
    pub http_timeout: Duration,
    /// The connection must be up (ICE + DTLS) within this time after the POST.
    pub connect_timeout: Duration,
    /// Hard limit on the subscriber's life; it stops by itself after this.
    pub max_duration: Duration,
    /// How often str0m reports ingress stats (loss, RTP packets).
    pub stats_interval: Duration,
    /// Send a PLI (at most once a second) when video arrives with a gap, as a
    /// browser would.
    pub request_keyframes_on_loss: bool,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(600),
            stats_interval: Duration::from_secs(1),
            request_keyframes_on_loss: true,
        }
    }
}

/// What a subscriber received on one kind of media.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaStats {
    /// Frames (`Event::MediaData`: whole video frames, audio packets).
    pub frames: u64,
    /// Bytes of those frames (payload after depacketization).
    pub bytes: u64,
    /// Keyframes among the frames (video only): str0m's `MediaData::is_keyframe()`,
    /// or, for VP8, bit 0 of the first byte clear.
    pub keyframes: u64,
    /// Frames str0m flagged as not contiguous with the previous one (loss before it).
    pub discontinuities: u64,
    /// Arrival of the first frame.
    pub first_media: Option<Instant>,
    /// Arrival of the latest frame.
    pub last_media: Option<Instant>,
    /// RTP packets received, from the latest ingress stats.
    pub rtp_packets: u64,
    /// Fraction (0..=1) of packets lost in the latest receiver report period.
    pub loss: Option<f32>,
}

/// What a [`Subscriber`] received so far.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberStats {
    /// When [`Subscriber::start`] was called.
    pub started_at: Instant,
    /// When ICE and DTLS came up.
    pub connected_at: Option<Instant>,
    /// The audio m-line.
    pub audio: MediaStats,
    /// The video m-line.
    pub video: MediaStats,
    /// Keyframe requests (PLI) sent to the server.
    pub keyframe_requests_sent: u64,
    /// Why the subscriber stopped early, if it did.
    pub error: Option<String>,
    /// The worker thread has ended (stopped, failed or reached its deadline).
    pub finished: bool,
    /// The WHEP resource was deleted successfully.
    pub deleted: bool,
}

impl SubscriberStats {
    fn new(started_at: Instant) -> Self {
        SubscriberStats {
            started_at,
            connected_at: None,
            audio: MediaStats::default(),
            video: MediaStats::default(),
            keyframe_requests_sent: 0,
            error: None,
            finished: false,
            deleted: false,
        }
    }

    /// Time from `start` to the first video frame.
    pub fn time_to_first_video(&self) -> Option<Duration> {
        Some(
            self.video
                .first_media?
                .saturating_duration_since(self.started_at),
        )
    }

    /// Time from `start` to the first audio packet.
    pub fn time_to_first_audio(&self) -> Option<Duration> {
        Some(
            self.audio
                .first_media?
                .saturating_duration_since(self.started_at),
        )
    }

    /// Whether any media arrived (audio or video).
    pub fn received_media(&self) -> bool {
        self.audio.frames > 0 || self.video.frames > 0
    }
}

/// A WHEP subscriber on its own thread and UDP socket.
///
/// Stops when [`stop`](Subscriber::stop) is called, when dropped, on error, or when
/// [`SubscriberOptions::max_duration`] has passed; then it DELETEs its WHEP resource.
#[derive(Debug)]
pub struct Subscriber {
    worker: Worker<SubscriberStats>,
    resource_url: String,
}

impl Subscriber {
    /// [`Subscriber::start_with`] with default options.
    pub fn start(base_url: &str, room: &str, token: &str) -> Result<Subscriber> {
        Subscriber::start_with(base_url, room, token, SubscriberOptions::default())
    }

    /// Binds a UDP socket, POSTs a WHEP offer (recvonly audio, recvonly video) to
    /// `{base_url}/whep/{room}` with `token` (role `viewer`), applies the answer and
    /// receives on a new thread.
    ///
    /// Returns an error if the server is unreachable or refuses the offer, or if the
    /// answer has no UDP candidate.
    pub fn start_with(
        base_url: &str,
        room: &str,
        token: &str,
        options: SubscriberOptions,
    ) -> Result<Subscriber> {
        let started_at = Instant::now();
        let http = Http::new(base_url, options.http_timeout)?;
        let url = http.endpoint("whep", room);
        let rtc = Rtc::builder()
            .set_stats_interval(Some(options.stats_interval))
            .build(Instant::now());
        let mut mids = None;
        let session = peer::negotiate(rtc, options.bind_ip, http, &url, token, |api| {
            let audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            mids = Some(Mids { audio, video });
        })?;
        let Some(mids) = mids else {
            let _ = session.end();
            bail!("no m-lines were offered");
        };
        let resource_url = session.resource_url.clone();
        let shared = Shared::new(SubscriberStats::new(started_at));
        let worker = Worker::spawn("casecast-subscriber".into(), shared, move |shared| {
            run(session, mids, options, &shared);
        })?;
        Ok(Subscriber {
            worker,
            resource_url,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriberStats {
        self.worker.shared.snapshot()
    }

    /// The WHEP resource URL (from the `Location` header, made absolute).
    pub fn resource_url(&self) -> &str {
        &self.resource_url
    }

    /// Whether the worker thread is still running.
    pub fn is_running(&self) -> bool {
        self.worker.is_running()
    }

    /// Waits (polling, bounded by `timeout`) until at least one video frame arrived;
    /// false if none did in time or the subscriber ended.
    pub fn wait_for_video(&self, timeout: Duration) -> bool {
        peer::wait_until(timeout, || {
            let stats = self.worker.shared.stats();
            stats.video.frames > 0 || stats.finished
        }) && self.stats().video.frames > 0
    }

    /// Asks the worker to stop without waiting for it; [`stop`](Subscriber::stop) or
    /// dropping then finishes quickly. Use it to stop many peers at once.
    pub fn request_stop(&self) {
        self.worker.shared.request_stop();
    }

    /// Stops receiving, closes the connection, DELETEs the WHEP resource and returns
    /// the final counters.
    pub fn stop(mut self) -> SubscriberStats {
        self.worker.stop()
    }
}

#[derive(Debug, Clone, Copy)]
struct Mids {
    audio: Mid,
    video: Mid,
}

impl Mids {
    fn stats<'a>(&self, stats: &'a mut SubscriberStats, mid: Mid) -> Option<&'a mut MediaStats> {
        if mid == self.audio {
            Some(&mut stats.audio)
        } else if mid == self.video {
            Some(&mut stats.video)
        } else {
            None
        }
    }
}

fn run(
    mut session: Session,
    mids: Mids,
    options: SubscriberOptions,
    shared: &Shared<SubscriberStats>,
) {
    let result = drive(&mut session, mids, &options, shared);
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

/// Whether a received frame is a keyframe.
fn is_keyframe(data: &MediaData) -> bool {
    data.is_keyframe() || (data.params.spec().codec == Codec::Vp8 && is_vp8_keyframe(&data.data))
}

fn drive(
    session: &mut Session,
    mids: Mids,
    options: &SubscriberOptions,
    shared: &Shared<SubscriberStats>,
) -> Result<()> {
    let bounds = Bounds::new(options.max_duration, options.connect_timeout);
    let mut connected = false;
    let mut disconnected = false;
    let mut last_keyframe_request: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if !bounds.check(now, shared.stop_requested(), &session.peer.rtc, connected, disconnected)? {
            return Ok(());
        }

        let rtc_wants = session.peer.drain(|rtc, event| match event {
            Event::Connected => {
                connected = true;
                shared.stats().connected_at = Some(Instant::now());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                disconnected = true
            }
            Event::MediaData(data) => {
                let arrived = Instant::now();
                let gap = !data.contiguous;
                let is_video = data.mid == mids.video;
                {
                    let mut stats = shared.stats();
                    let Some(media) = mids.stats(&mut stats, data.mid) else {
                        return;
                    };
                    media.frames += 1;
                    media.bytes += data.data.len() as u64;
                    media.keyframes += u64::from(is_video && is_keyframe(&data));
                    media.discontinuities += u64::from(gap);
                    media.first_media.get_or_insert(arrived);
                    media.last_media = Some(arrived);
                }
                let throttled =
                    last_keyframe_request.is_some_and(|t| arrived - t < KEYFRAME_REQUEST_INTERVAL);
                if is_video && gap && options.request_keyframes_on_loss && !throttled {
                    let requested = rtc.writer(data.mid).is_some_and(|mut w| {
                        w.request_keyframe(data.rid, KeyframeRequestKind::Pli)
                            .is_ok()
                    });
                    if requested {
                        last_keyframe_request = Some(arrived);
                        shared.stats().keyframe_requests_sent += 1;
                    }
                }
            }
            Event::MediaIngressStats(ingress) => {
                let mut stats = shared.stats();
                if let Some(media) = mids.stats(&mut stats, ingress.mid) {
                    media.rtp_packets = ingress.packets;
                    if ingress.loss.is_some() {
                        media.loss = ingress.loss;
                    }
                }
            }
            _ => {}
        })?;

        session
            .peer
            .wait(rtc_wants.min(bounds.deadline()).min(Instant::now() + MAX_WAIT))?;
    }
}
