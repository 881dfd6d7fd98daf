//! The server-made ladder: a feed that arrives as one layer (a hospital encoder's
//! one RTMP or SRT stream, most WHIP encoders) is offered to subscribers as more
//! layers, made once per room, not per subscriber.
//!
//! The [`Ladder`] is a consumer of the feed's track in the room's router, like any
//! subscriber, at its source layer. It decodes that layer once, scales it to each
//! rung of the room's policy (`feed_ladder`, say 540 and 360 lines), encodes each
//! in the feed's codec ([`pipeline`]), and routes the results as more layers of the
//! same producer, named by rids (`540p`, `360p`). From there they are simulcast
//! layers like a browser's: each subscriber's allocator picks the one its link
//! holds, a switch waits for a keyframe of the target layer, and a keyframe
//! request for a rung comes back here (the router knows the ladder makes it) and
//! forces one from that rung's encoder. The source layer keeps its own frames:
//! a subscriber that can take it gets the feed as the encoder sent it.
//!
//! A feed that already sends simulcast layers, or in a codec without a ladder,
//! is forwarded as it is; rungs as tall as the feed or taller are left out.

mod pipeline;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use str0m::format::{Codec, CodecExtra, H264CodecExtra, Vp8CodecExtra};
use str0m::media::{Frequency, MediaData, MediaTime, Rid};
use str0m::rtp::{ExtensionValues, SeqNo};

pub use pipeline::{Rung, bitrate, rungs};
use pipeline::{Encoded, LadderPipeline};

use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;
use crate::participant::{Forward, SendKeyframeRequest, SharedRouter, ask_keyframe};
use crate::router::{FrameInfo, KeyframeAsk, Layer, Target};

/// How often the rungs' bitrates follow the source's, and the pipeline is checked.
const TICK: Duration = Duration::from_secs(1);

/// Pipelines that fail before the ladder gives up for this track.
const MAX_RESTARTS: u32 = 3;

/// The ladder of one feed track.
pub struct Ladder {
    room: String,
    track: TrackId,
    /// Its name as a consumer in the router.
    id: ParticipantId,
    heights: Vec<u32>,
    router: SharedRouter,
    metrics: Metrics,
    state: State,
    generation: u64,
    restarts: u32,
}

enum State {
    /// Waits for a keyframe of the source to start on.
    Waiting,
    Running(Box<Running>),
    /// Not for this track (said in the log once).
    Off,
}

struct Running {
    pipeline: LadderPipeline,
    rungs: Vec<Rung>,
    rids: Vec<Rid>,
    source_pixels: u64,
    codec: Codec,
    /// The last source frame: the made frames carry its m-line, payload type and
    /// codec parameters, so every subscriber of the feed can take them.
    source: Arc<MediaData>,
    /// The source's first timestamp (ns), taken off so the pipeline starts at 0.
    base: u64,
    last_pts: u64,
    /// Input was dropped: wait for the next keyframe.
    await_key: bool,
}

impl Ladder {
    /// A ladder for `track` of room `room`, with rungs of these heights.
    pub fn new(room: String, track: TrackId, heights: Vec<u32>, router: SharedRouter, metrics: Metrics) -> Self {
        Ladder {
            room,
            track,
            id: ParticipantId::next(),
            heights,
            router,
            metrics,
            state: State::Waiting,
            generation: 0,
            restarts: 0,
        }
    }

    fn off(&mut self, why: &str) {
        tracing::info!(room = %self.room, track = %self.track, why, "no server-made ladder for this feed; its layers are forwarded as they come");
        self.state = State::Off;
        self.router.lock().unwrap().unlink(self.track, self.id);
    }

    /// Asks the publisher for a keyframe of the source (through the router's
    /// throttle, as a subscriber would).
    fn want_source_keyframe(&self, now: Instant) {
        ask_keyframe(&self.router, &self.metrics, self.track, None, now);
    }

    fn start_pipeline(&mut self, first: &Arc<MediaData>, pts: u64, ctx: &mut Context<Self>) -> Result<Running, String> {
        let codec = first.params.spec().codec;
        // A keyframe whose size cannot be read is taken for 720p.
        let (w, h) = crate::resolution::of_keyframe(first).unwrap_or((1280, 720));
        let rungs = rungs(&self.heights, w, h);
        if rungs.is_empty() {
            return Err(format!("the feed ({w}×{h}) is no taller than the ladder's rungs"));
        }
        let source_pixels = u64::from(w) * u64::from(h);
        let source_bits = self.source_bitrate(Instant::now());
        let bitrates: Vec<u32> = rungs.iter().map(|r| bitrate(r, source_bits, source_pixels)).collect();
        self.generation += 1;
        let me = ctx.address();
        let pipeline = LadderPipeline::start(codec, &rungs, &bitrates, self.generation, move |e| me.do_send(Made(e)))?;
        let rids: Vec<Rid> = rungs.iter().map(|r| Rid::from(r.name.as_str())).collect();
        let mut router = self.router.lock().unwrap();
        for rid in &rids {
            router.add_made_layer(self.track, Some(*rid), ctx.address().recipient());
        }
        drop(router);
        let names: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
        tracing::info!(room = %self.room, track = %self.track, source = %format!("{w}x{h}"), %codec, rungs = ?names, kbps = ?bitrates.iter().map(|b| b / 1000).collect::<Vec<_>>(), "server-made ladder started");
        Ok(Running { pipeline, rungs, rids, source_pixels, codec, source: first.clone(), base: pts, last_pts: pts, await_key: false })
    }

    /// The source layer's bitrate as the router measures it.
    fn source_bitrate(&self, now: Instant) -> Option<u64> {
        let layers = self.router.lock().unwrap().layers(self.track, now);
        layers.iter().find(|l| l.layer.is_none() && l.active).map(|l| l.bitrate)
    }

    fn source_frame(&mut self, data: Arc<MediaData>, time: MediaTime, ctx: &mut Context<Self>) {
        if matches!(self.state, State::Off) {
            return;
        }
        tracing::trace!(room = %self.room, keyframe = data.is_keyframe(), rid = ?data.rid, "ladder input");
        if let Some(rid) = data.rid {
            // Its own rungs reach it as they reach every consumer of the track.
            if let State::Running(r) = &self.state
                && r.rids.contains(&rid)
            {
                return;
            }
            if matches!(self.state, State::Waiting) {
                self.off("the publisher sends simulcast layers of its own");
            }
            return;
        }
        let now = Instant::now();
        let pts = (u128::from(time.numer()) * 1_000_000_000 / u128::from(time.denom().max(1))) as u64;
        if let State::Running(r) = &self.state
            && pts < r.last_pts
        {
            tracing::info!(room = %self.room, track = %self.track, "the feed's timeline started again; so does its ladder, at its next keyframe");
            self.state = State::Waiting;
        }
        if matches!(self.state, State::Waiting) {
            if !data.is_keyframe() {
                return;
            }
            match self.start_pipeline(&data, pts, ctx) {
                Ok(r) => self.state = State::Running(Box::new(r)),
                Err(e) => {
                    self.off(&e);
                    return;
                }
            }
        }
        let State::Running(r) = &mut self.state else { return };
        let keyframe = data.is_keyframe();
        if r.await_key && !keyframe {
            return;
        }
        if !data.contiguous && !keyframe {
            // Frames of the source were lost: its decoder needs a fresh start.
            r.await_key = true;
            self.want_source_keyframe(now);
            return;
        }
        r.await_key = false;
        if !r.pipeline.push(&data.data, pts.saturating_sub(r.base)) {
            r.await_key = true;
            self.metrics.dropped.with_label_values(&["ladder_behind"]).inc();
            self.want_source_keyframe(now);
            return;
        }
        r.last_pts = pts;
        r.source = data;
    }

    fn made_frame(&mut self, e: Encoded, ctx: &mut Context<Self>) {
        if e.generation != self.generation {
            return;
        }
        let State::Running(r) = &self.state else { return };
        let Some(rung) = r.rungs.get(e.rung) else { return };
        let rid = r.rids[e.rung];
        let now = Instant::now();
        let ns = u128::from(e.pts + r.base);
        let time = MediaTime::new((ns * 90_000 / 1_000_000_000) as u64, Frequency::NINETY_KHZ);
        let codec_extra = match r.codec {
            Codec::H264 => CodecExtra::H264(H264CodecExtra { is_keyframe: e.keyframe }),
            _ => CodecExtra::Vp8(Vp8CodecExtra {
                discardable: false,
                sync: e.keyframe,
                layer_index: 0,
                picture_id: None,
                tl0_picture_id: None,
                is_keyframe: e.keyframe,
            }),
        };
        let bytes = e.data.len();
        let size = e.keyframe.then_some((rung.width, rung.height));
        let data = Arc::new(MediaData {
            mid: r.source.mid,
            pt: r.source.pt,
            rid: Some(rid),
            params: r.source.params,
            time,
            network_time: now,
            seq_range: SeqNo::from(0)..=SeqNo::from(0),
            contiguous: true,
            data: e.data,
            ext_vals: ExtensionValues::default(),
            codec_extra,
            last_sender_info: None,
            audio_start_of_talk_spurt: false,
        });
        self.metrics.ladder_frames.with_label_values(&[rung.name.as_str()]).inc();
        let track = self.track;
        let frame = FrameInfo { layer: Some(rid), time, keyframe: e.keyframe, bytes, size };
        let wants = self.router.lock().unwrap().route(track, frame, now, |to, time| {
            to.do_send(Forward { track, data: data.clone(), time });
        });
        if wants {
            self.want_rung_keyframe(Some(rid), now, ctx);
        }
    }

    /// A consumer waits for a keyframe of `layer`: through the router's throttle,
    /// as a publisher's would be.
    fn want_rung_keyframe(&mut self, layer: Layer, now: Instant, ctx: &mut Context<Self>) {
        let ask = match self.router.lock().unwrap().want_keyframe(self.track, layer, now) {
            KeyframeAsk::Now(_) => Some(None),
            KeyframeAsk::At(_, at) => Some(Some(at)),
            KeyframeAsk::Nothing => None,
        };
        match ask {
            Some(None) => self.force_keyframe(layer),
            Some(Some(at)) => self.force_keyframe_at(layer, at, ctx),
            None => {}
        }
    }

    fn force_keyframe_at(&mut self, layer: Layer, at: Instant, ctx: &mut Context<Self>) {
        ctx.run_later(at.saturating_duration_since(Instant::now()), move |act, _| {
            if act.router.lock().unwrap().keyframe_due(act.track, layer, Instant::now()).is_some() {
                act.force_keyframe(layer);
            }
        });
    }

    fn force_keyframe(&self, layer: Layer) {
        if let State::Running(r) = &self.state
            && let Some(i) = r.rids.iter().position(|rid| Some(*rid) == layer)
        {
            r.pipeline.force_keyframe(i);
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let source_bits = self.source_bitrate(now);
        let State::Running(r) = &self.state else { return };
        if let Some(e) = r.pipeline.error() {
            self.restarts += 1;
            tracing::warn!(room = %self.room, track = %self.track, error = %e, restarts = self.restarts, "the ladder's pipeline failed");
            self.generation += 1;
            if self.restarts >= MAX_RESTARTS {
                self.off("its pipeline failed again and again");
            } else {
                self.state = State::Waiting;
                self.want_source_keyframe(now);
            }
            return;
        }
        if source_bits.is_some() {
            for (i, rung) in r.rungs.iter().enumerate() {
                r.pipeline.set_bitrate(i, bitrate(rung, source_bits, r.source_pixels));
            }
        }
    }
}

impl Actor for Ladder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(room = %self.room, track = %self.track, heights = ?self.heights, "ladder waits for the feed's first keyframe");
        let now = Instant::now();
        let mut router = self.router.lock().unwrap();
        router.link(self.track, self.id, ctx.address().recipient());
        // Always the source, never a rung of its own.
        router.set_target(self.track, self.id, Target::Layer(None), now);
        drop(router);
        ctx.run_interval(TICK, |act, _| act.tick());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.router.lock().unwrap().unlink(self.track, self.id);
        // Dropping the pipeline stops it.
        self.state = State::Off;
    }
}

impl Ladder {
    /// Runs `f`; a panic in it ends the ladder (the feed goes on as it came), not
    /// the media thread every room shares.
    fn guarded(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Self, &mut Context<Self>)) {
        if catch_unwind(AssertUnwindSafe(|| f(self, ctx))).is_err() {
            tracing::error!(room = %self.room, track = %self.track, "the ladder panicked; the feed goes on without it");
            self.state = State::Off;
            ctx.stop();
        }
    }
}

impl Handler<Forward> for Ladder {
    type Result = ();
    fn handle(&mut self, f: Forward, ctx: &mut Context<Self>) {
        if f.track == self.track {
            self.guarded(ctx, |act, ctx| act.source_frame(f.data, f.time, ctx));
        }
    }
}

/// A frame one rung's encoder made (from GStreamer's thread).
#[derive(Message)]
#[rtype(result = "()")]
struct Made(Encoded);

impl Handler<Made> for Ladder {
    type Result = ();
    fn handle(&mut self, m: Made, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| act.made_frame(m.0, ctx));
    }
}

impl Handler<SendKeyframeRequest> for Ladder {
    type Result = ();
    fn handle(&mut self, m: SendKeyframeRequest, ctx: &mut Context<Self>) {
        match m.at {
            None => self.force_keyframe(m.layer),
            Some(at) => self.force_keyframe_at(m.layer, at, ctx),
        }
    }
}

/// The feed's track ended, or its room closed: the ladder stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopLadder;

impl Handler<StopLadder> for Ladder {
    type Result = ();
    fn handle(&mut self, _: StopLadder, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
