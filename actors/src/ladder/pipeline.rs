//! The GStreamer half of the ladder: the feed's frames in (as they came over RTP,
//! depayloaded), decoded once, scaled to each rung and encoded again in the feed's
//! codec; each rung's frames out through a callback, on GStreamer's threads.
//!
//! ```text
//! appsrc ─ parse ─ decoder ─ tee ─┬─ queue ─ videoscale ─ encoder ─ appsink (rung 0)
//!                                 └─ queue ─ videoscale ─ encoder ─ appsink (rung 1)
//! ```
//!
//! Each rung has a queue of two pictures that drops the oldest, so a slow encoder
//! loses pictures of its own rung and never holds up the decoder or another rung.

use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use str0m::format::Codec;

/// One rung of the ladder: its size and the rid its frames carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rung {
    /// Its name as a simulcast rid (`540p`).
    pub name: String,
    /// Picture width, even.
    pub width: u32,
    /// Picture height.
    pub height: u32,
}

/// An encoded frame of one rung.
#[derive(Debug)]
pub struct Encoded {
    /// Which pipeline made it (a frame of one torn down is dropped).
    pub generation: u64,
    /// Index into the rungs.
    pub rung: usize,
    /// The frame: an H.264 access unit (Annex B, parameter sets on keyframes) or a
    /// VP8 frame.
    pub data: Arc<[u8]>,
    /// Its timestamp, nanoseconds on the source frames' timeline.
    pub pts: u64,
    /// A keyframe.
    pub keyframe: bool,
}

/// Most bytes of source frames waiting for the decoder; past this the ladder
/// drops input and starts again at the next keyframe.
pub const MAX_QUEUED_BYTES: u64 = 4_000_000;

/// A running ladder pipeline.
pub struct LadderPipeline {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    encoders: Vec<gst::Element>,
    codec: Codec,
}

impl LadderPipeline {
    /// Builds and starts the pipeline for `codec` with these rungs and initial
    /// bitrates (bits/s); `out` gets every encoded frame.
    pub fn start(
        codec: Codec,
        rungs: &[Rung],
        bitrates: &[u32],
        generation: u64,
        out: impl Fn(Encoded) + Send + Sync + Clone + 'static,
    ) -> Result<Self, String> {
        gst::init().map_err(|e| format!("GStreamer does not start: {e}"))?;
        let (caps, decode) = match codec {
            Codec::H264 => ("video/x-h264,stream-format=byte-stream,alignment=au", "h264parse ! avdec_h264 max-threads=1"),
            Codec::Vp8 => ("video/x-vp8", "vp8dec"),
            other => return Err(format!("the feed's codec ({other}) has no ladder; VP8 and H.264 do")),
        };
        // The framerate is nominal: the encoders' rate control reads it; the frames'
        // own timestamps carry their timing.
        let mut desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=false caps=\"{caps},framerate=30/1\" ! {decode} ! tee name=t "
        );
        for (i, (r, bits)) in rungs.iter().zip(bitrates).enumerate() {
            let encode = match codec {
                Codec::H264 => format!(
                    "x264enc name=enc{i} tune=zerolatency speed-preset=ultrafast key-int-max=120 aud=false threads=1 bitrate={} \
                     ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
                     ! video/x-h264,stream-format=byte-stream,alignment=au",
                    bits / 1000
                ),
                _ => format!(
                    "vp8enc name=enc{i} deadline=1 cpu-used=16 threads=1 end-usage=cbr target-bitrate={bits} keyframe-max-dist=120 error-resilient=partitions"
                ),
            };
            desc.push_str(&format!(
                "t. ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! videoscale \
                 ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1 ! {encode} \
                 ! appsink name=out{i} sync=false max-buffers=30 drop=true ",
                w = r.width,
                h = r.height
            ));
        }
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("the ladder's pipeline does not build (scripts/install-deps.sh): {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the ladder's pipeline is not a pipeline".to_string())?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("the ladder's pipeline has no source")?;
        src.set_max_bytes(MAX_QUEUED_BYTES);
        let mut encoders = Vec::new();
        for i in 0..rungs.len() {
            encoders.push(pipeline.by_name(&format!("enc{i}")).ok_or("the ladder's pipeline has no encoder")?);
            let sink = pipeline
                .by_name(&format!("out{i}"))
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or("the ladder's pipeline has no sink")?;
            let out = out.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let Some(buffer) = sample.buffer() else { return Ok(gst::FlowSuccess::Ok) };
                        let Ok(map) = buffer.map_readable() else { return Ok(gst::FlowSuccess::Ok) };
                        out(Encoded {
                            generation,
                            rung: i,
                            data: Arc::from(map.as_slice()),
                            pts: buffer.pts().map_or(0, |t| t.nseconds()),
                            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        });
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        if pipeline.set_state(gst::State::Playing).is_err() {
            let _ = pipeline.set_state(gst::State::Null);
            return Err("the ladder's pipeline does not start".into());
        }
        Ok(LadderPipeline { pipeline, src, encoders, codec })
    }

    /// Hands it a source frame with timestamp `pts` (ns). False if it was
    /// dropped: the decoder is behind by more than [`MAX_QUEUED_BYTES`].
    pub fn push(&self, frame: &Arc<[u8]>, pts: u64) -> bool {
        if self.src.current_level_bytes() >= MAX_QUEUED_BYTES {
            return false;
        }
        let mut buffer = gst::Buffer::from_slice(FrameBytes(frame.clone()));
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
        }
        self.src.push_buffer(buffer).is_ok()
    }

    /// Has rung `i`'s encoder make a keyframe now.
    pub fn force_keyframe(&self, i: usize) {
        if let Some(pad) = self.encoders.get(i).and_then(|e| e.static_pad("src")) {
            let s = gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build();
            // Sent into the encoder's output pad, as a downstream element's
            // request would come.
            pad.send_event(gst::event::CustomUpstream::new(s));
        }
    }

    /// Sets rung `i`'s bitrate, bits/s (both encoders take it while running).
    pub fn set_bitrate(&self, i: usize, bits: u32) {
        let Some(e) = self.encoders.get(i) else { return };
        match self.codec {
            Codec::H264 => e.set_property("bitrate", (bits / 1000).max(1)),
            _ => e.set_property("target-bitrate", bits as i32),
        }
    }

    /// The first error the pipeline reported since the last call, if any.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(e.error().to_string());
            }
        }
        None
    }
}

impl Drop for LadderPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A source frame's bytes, handed to GStreamer without a copy.
struct FrameBytes(Arc<[u8]>);

impl AsRef<[u8]> for FrameBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The rungs of `heights` that are smaller than a `width`×`height` source, each
/// with the source's aspect ratio (an even width).
pub fn rungs(heights: &[u32], width: u32, height: u32) -> Vec<Rung> {
    let mut v: Vec<Rung> = heights
        .iter()
        .copied()
        .filter(|h| *h >= 90 && *h < height)
        .map(|h| {
            let h = h & !1;
            let w = ((u64::from(width) * u64::from(h) / u64::from(height.max(1))) as u32 + 1) & !1;
            Rung { name: format!("{h}p"), width: w.max(2), height: h }
        })
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.height));
    v.dedup_by_key(|r| r.height);
    v
}

/// A rung's bitrate for a source of `source_bits` at `source_pixels`: its share
/// of the source's pixels, with 15 % off (a smaller picture needs a little more
/// per pixel, but a rung above its source's rate would carry nothing more), and
/// at least 100 kbit/s. Without a measured source: 0.075 bits per pixel at 30 fps.
pub fn bitrate(rung: &Rung, source_bits: Option<u64>, source_pixels: u64) -> u32 {
    let pixels = u64::from(rung.width) * u64::from(rung.height);
    let bits = match source_bits.filter(|b| *b > 0) {
        Some(b) => b * pixels * 85 / (100 * source_pixels.max(1)),
        None => pixels * 30 * 75 / 1000,
    };
    bits.clamp(100_000, 8_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_keep_the_aspect_and_skip_what_is_not_smaller() {
        let r = rungs(&[360, 540, 720], 1280, 720);
        assert_eq!(r, [Rung { name: "540p".into(), width: 960, height: 540 }, Rung { name: "360p".into(), width: 640, height: 360 }]);
        let r = rungs(&[540, 360], 1920, 1080);
        assert_eq!((r[0].width, r[1].width), (960, 640));
        assert!(rungs(&[540, 360], 640, 360).is_empty(), "nothing below a 360p source");
        assert_eq!(rungs(&[240], 1440, 1080)[0].width, 320, "4:3");
        assert_eq!(rungs(&[121], 1280, 720)[0], Rung { name: "120p".into(), width: 214, height: 120 }, "even sizes");
    }

    #[test]
    fn a_rung_takes_its_share_of_the_source() {
        let r = &rungs(&[540, 360], 1280, 720);
        assert_eq!(bitrate(&r[0], Some(2_500_000), 1280 * 720), 1_195_312);
        assert_eq!(bitrate(&r[1], Some(2_500_000), 1280 * 720), 531_250);
        assert_eq!(bitrate(&r[1], Some(200_000), 1280 * 720), 100_000, "a floor");
        assert_eq!(bitrate(&r[0], None, 1280 * 720), 1_166_400);
    }

    /// Encodes `frames` of a 640×360 test pattern with `encoder`, as a publisher
    /// would send them.
    fn source(encoder: &str, frames: u32) -> Vec<(Arc<[u8]>, u64)> {
        gst::init().unwrap();
        let desc = format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! {encoder} ! appsink name=out sync=false"
        );
        let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
        let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            let b = s.buffer().unwrap();
            out.push((Arc::from(b.map_readable().unwrap().as_slice()), b.pts().unwrap().nseconds()));
        }
        p.set_state(gst::State::Null).unwrap();
        out
    }

    /// Runs the ladder on `frames` with one 180p rung: what it made.
    fn made(codec: Codec, frames: &[(Arc<[u8]>, u64)]) -> Vec<Encoded> {
        let rung = rungs(&[180], 640, 360);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let tx = Arc::new(tx);
        let ladder = LadderPipeline::start(codec, &rung, &[300_000], 7, move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        // Each source frame goes in once the one before has come out (a queue
        // that drops its oldest picture is not overrun by a test that pushes
        // faster than a network would): waited for, bounded, 10 s for the first
        // and 2 s for each after it.
        let mut got = Vec::new();
        let mut wait = std::time::Duration::from_secs(10);
        for (data, pts) in frames {
            assert!(ladder.push(data, *pts));
            if let Ok(e) = rx.recv_timeout(wait) {
                got.push(e);
            }
            wait = std::time::Duration::from_secs(2);
        }
        while let Ok(e) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            got.push(e);
        }
        assert!(ladder.error().is_none());
        got
    }

    #[test]
    fn h264_and_vp8_feeds_come_out_as_smaller_pictures_of_the_same_codec() {
        for (codec, encoder) in [
            (Codec::H264, "x264enc tune=zerolatency key-int-max=30 ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au"),
            (Codec::Vp8, "vp8enc deadline=1 keyframe-max-dist=30"),
        ] {
            let frames = source(encoder, 40);
            assert_eq!(frames.len(), 40);
            let out = made(codec, &frames);
            // Queues drop pictures only when an encoder is behind; on a loaded
            // machine a few may go.
            assert!(out.len() >= 30, "{codec}: {} of 40 pictures made", out.len());
            assert!(out.iter().all(|e| e.generation == 7 && e.rung == 0));
            let first = &out[0];
            assert!(first.keyframe, "{codec}: it starts with a keyframe");
            let size = match codec {
                Codec::H264 => crate::resolution::h264(&first.data),
                _ => crate::resolution::vp8(&first.data),
            };
            assert_eq!(size, Some((320, 180)), "{codec}");
            assert!(out.windows(2).all(|w| w[1].pts > w[0].pts), "{codec}: timestamps run on");
            assert!(out.iter().any(|e| e.pts >= frames[30].1), "{codec}: the source's timeline");
        }
    }
}
