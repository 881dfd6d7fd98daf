//! Simulcast layers: what a producer measures of each layer of its track, and the
//! switch that moves one consumer from layer to layer.
//!
//! A simulcast publisher (a browser with `sendEncodings`, an encoder with WHIP
//! simulcast) sends the same picture as two or three encodings, each its own RTP
//! stream named by a rid (RFC 8853). The producer measures each as its frames pass
//! ([`Layers`]); each consumer receives one of them at a time ([`LayerSwitch`]). A
//! consumer moves to another layer only at a keyframe of that layer, since a
//! decoder cannot start mid-stream on a picture it never saw, and the RTP times it
//! is given run on across the switch: each layer has its own random timestamp
//! origin, and a jump would throw the receiver's jitter buffer.

use std::time::{Duration, Instant};

use str0m::media::{MediaTime, Rid};

/// One layer of a video track: its simulcast rid, or `None` for a track sent as a
/// single layer.
pub type Layer = Option<Rid>;

/// A layer with no frame for this long counts as stopped. Browsers stop their top
/// layers when their uplink or CPU is short, and start them again later.
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(1200);

/// Each bitrate sample covers this much time; a layer's bitrate is the mean of
/// the last [`METER_SAMPLES`] (2 s: a keyframe does not make it look twice as
/// dear, and the allocation built on it does not waver).
const METER_WINDOW: Duration = Duration::from_millis(500);
const METER_SAMPLES: usize = 4;

/// What is known of one layer now.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    /// Which layer.
    pub layer: Layer,
    /// Its bitrate over about the last second, bits per second.
    pub bitrate: u64,
    /// Its picture size, read from its last keyframe.
    pub size: Option<(u32, u32)>,
    /// Its frames arrive (one came within [`LAYER_TIMEOUT`]).
    pub active: bool,
}

#[derive(Debug)]
struct Meter {
    layer: Layer,
    window_start: Instant,
    bytes: u64,
    samples: std::collections::VecDeque<u64>,
    bitrate: u64,
    size: Option<(u32, u32)>,
    last_frame: Instant,
}

/// The layers of one producer, measured as its frames pass.
#[derive(Debug, Default)]
pub struct Layers {
    meters: Vec<Meter>,
}

impl Layers {
    /// A frame of `layer` (`bytes` long; `size` if it is a keyframe whose picture
    /// size could be read) passed at `now`.
    pub fn frame(&mut self, layer: Layer, bytes: usize, size: Option<(u32, u32)>, now: Instant) {
        let i = match self.meters.iter().position(|m| m.layer == layer) {
            Some(i) => i,
            None => {
                self.meters.push(Meter {
                    layer,
                    window_start: now,
                    bytes: 0,
                    samples: std::collections::VecDeque::with_capacity(METER_SAMPLES),
                    bitrate: 0,
                    size: None,
                    last_frame: now,
                });
                self.meters.len() - 1
            }
        };
        let m = &mut self.meters[i];
        m.bytes += bytes as u64;
        m.last_frame = now;
        if size.is_some() {
            m.size = size;
        }
        let span = now.saturating_duration_since(m.window_start);
        if span >= METER_WINDOW {
            let sample = ((m.bytes * 8) as f64 / span.as_secs_f64()) as u64;
            if m.samples.len() == METER_SAMPLES {
                m.samples.pop_front();
            }
            m.samples.push_back(sample);
            m.bitrate = m.samples.iter().sum::<u64>() / m.samples.len() as u64;
            m.window_start = now;
            m.bytes = 0;
        } else if m.samples.is_empty() && !span.is_zero() {
            // A layer just started: a first guess until a window is full.
            m.bitrate = ((m.bytes * 8) as f64 / span.max(Duration::from_millis(100)).as_secs_f64()) as u64;
        }
    }

    /// The layers seen, lowest first: by picture size, then bitrate.
    pub fn info(&self, now: Instant) -> Vec<LayerInfo> {
        let mut v: Vec<LayerInfo> = self
            .meters
            .iter()
            .map(|m| LayerInfo {
                layer: m.layer,
                bitrate: m.bitrate,
                size: m.size,
                active: now.saturating_duration_since(m.last_frame) < LAYER_TIMEOUT,
            })
            .collect();
        v.sort_by_key(|l| (l.size.map_or(0, |(w, h)| u64::from(w) * u64::from(h)), l.bitrate));
        v
    }

    /// The best layer whose frames arrive now, if any.
    pub fn best_active(&self, now: Instant) -> Option<Layer> {
        // Asked per consumer per frame: no allocation, the same order as `info`.
        self.meters
            .iter()
            .filter(|m| now.saturating_duration_since(m.last_frame) < LAYER_TIMEOUT)
            .max_by_key(|m| (m.size.map_or(0, |(w, h)| u64::from(w) * u64::from(h)), m.bitrate))
            .map(|m| m.layer)
    }

    /// Whether `layer` arrives now.
    pub fn is_active(&self, layer: Layer, now: Instant) -> bool {
        self.meters.iter().any(|m| m.layer == layer && now.saturating_duration_since(m.last_frame) < LAYER_TIMEOUT)
    }
}

/// Which layer a consumer should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The best layer that arrives (subscribers without bandwidth estimation, and
    /// every subscriber before its first estimate).
    Best,
    /// This layer.
    Layer(Layer),
    /// None: its link does not hold even the lowest layer (its audio goes on).
    Paused,
}

/// What a consumer does with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Send it, with this RTP time.
    Send(MediaTime),
    /// Not this one: another layer's, or this layer's before its first keyframe.
    Skip,
    /// Not this one, and a keyframe of its layer is wanted (the consumer waits to
    /// switch to it).
    SkipWantKeyframe,
}

/// One consumer's position among the layers of its track.
#[derive(Debug, Clone)]
pub struct LayerSwitch {
    target: Target,
    /// The layer it receives now (`None` before its first frame, or paused).
    current: Option<Layer>,
    /// Added to a frame's RTP time (in its clock's ticks) since the last switch.
    offset: i128,
    /// The last RTP time it was given, and when.
    last_out: Option<(u64, Instant)>,
    switches: u64,
}

impl Default for LayerSwitch {
    fn default() -> Self {
        LayerSwitch { target: Target::Best, current: None, offset: 0, last_out: None, switches: 0 }
    }
}

impl LayerSwitch {
    /// What it should get from now on. Answers true if that is a change.
    pub fn set_target(&mut self, target: Target) -> bool {
        let changed = self.target != target;
        self.target = target;
        if target == Target::Paused {
            self.current = None;
        }
        changed
    }

    /// What it should get.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The layer it receives now.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// Layer changes so far (the first layer not counted).
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The layer it moves to, given the producer's layers at `now`.
    pub fn wanted(&self, layers: &Layers, now: Instant) -> Option<Layer> {
        match self.target {
            Target::Best => layers.best_active(now),
            Target::Layer(l) if layers.is_active(l, now) => Some(l),
            // Its layer stopped (the publisher dropped it): the best one below it
            // that still arrives, else the lowest that does.
            Target::Layer(l) => {
                let info = layers.info(now);
                let at = info.iter().position(|i| i.layer == l);
                let below = at.and_then(|at| info[..at].iter().rev().find(|i| i.active));
                below.or_else(|| info.iter().find(|i| i.active)).map(|i| i.layer)
            }
            Target::Paused => None,
        }
    }

    /// A frame of `layer` with RTP time `time` (a keyframe or not) arrives at
    /// `now`: send it (and with which RTP time) or not.
    pub fn pass(&mut self, layer: Layer, time: MediaTime, keyframe: bool, layers: &Layers, now: Instant) -> Pass {
        let wanted = self.wanted(layers, now);
        if self.current == Some(layer) {
            // On its layer: it stays there until a keyframe of the wanted one.
            if wanted.is_none() {
                self.current = None;
                return Pass::Skip;
            }
            return Pass::Send(self.out_time(time, now));
        }
        if wanted != Some(layer) {
            return Pass::Skip;
        }
        // A single-layer track needs no switch: its decoder asks for a keyframe
        // itself, and the server asks for one when a subscriber starts. A move
        // from another layer (to the source of a server-made ladder, whose layer
        // has no rid) waits for a keyframe as any switch does.
        if (layer.is_some() || self.current.is_some()) && !keyframe {
            return Pass::SkipWantKeyframe;
        }
        if self.current.is_some() {
            self.switches += 1;
        }
        self.current = Some(layer);
        // The new layer's first frame comes as long after the last one sent as it
        // did in real time, at least one tick.
        self.offset = match self.last_out {
            Some((last, at)) => {
                let hz = u128::from(time.frequency().get());
                let ticks = (now.saturating_duration_since(at).as_micros() * hz / 1_000_000).max(1);
                (i128::from(last) + ticks as i128) - i128::from(time.numer())
            }
            None => 0,
        };
        Pass::Send(self.out_time(time, now))
    }

    fn out_time(&mut self, time: MediaTime, now: Instant) -> MediaTime {
        let t = (i128::from(time.numer()) + self.offset).max(0) as u64;
        self.last_out = Some((t, now));
        MediaTime::new(t, time.frequency())
    }
}
