//! How far one job is, as its work reports it: what it is doing ([`Stage`]), on which
//! frame (or archive entry) of how many, and the fraction of the whole job done.
//!
//! The work calls a `&mut dyn FnMut(Step)` as it goes (each frame: decoded, read for
//! burned-in text, written; then rendered for the viewer). It never waits on the
//! listener: the pool in `actors/` keeps only the latest step and writes it to the
//! job's row a few times a second, so a long stage is seen for as long as it lasts.

use serde::Serialize;

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The file's header is read and checked; nothing per frame yet.
    Opening,
    /// An archive's entries are written out as files of their own (`frame` counts
    /// entries).
    Expanding,
    /// Compressed pixels are decoded (a frame of a cine, or a whole picture).
    Decoding,
    /// A frame is read for burned-in text (OCR) and what is PHI blacked out.
    ReadingText,
    /// The de-identified object is written (frame by frame when streamed).
    Writing,
    /// Frames are rendered (PNG or JPEG) for the viewer.
    Rendering,
    /// What was made is stored: objects, then the instance's row.
    Publishing,
}

impl Stage {
    /// The name the API and the job row use (`reading_text`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Opening => "opening",
            Stage::Expanding => "expanding",
            Stage::Decoding => "decoding",
            Stage::ReadingText => "reading_text",
            Stage::Writing => "writing",
            Stage::Rendering => "rendering",
            Stage::Publishing => "publishing",
        }
    }

    /// Where in a frame's work this stage lies (0..1): a frame is decoded, then read,
    /// then written, so the fraction rises through a frame as well as across them.
    fn within_frame(self) -> f64 {
        match self {
            Stage::Opening | Stage::Expanding | Stage::Decoding | Stage::Rendering | Stage::Publishing => 0.0,
            Stage::ReadingText => 0.1,
            Stage::Writing => 0.9,
        }
    }
}

/// One report of a job's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// What it is doing.
    pub stage: Stage,
    /// The frame (or archive entry) worked on, from 1; 0 when the stage is not per
    /// frame.
    pub frame: u64,
    /// Frames (or entries) in all; 0 when not known yet.
    pub frames: u64,
    /// How much of the whole job is done, 0..1.
    pub fraction: f64,
}

impl Step {
    /// Work on `frame` (from 1) of `frames` at `stage`, its fraction that of this pass.
    pub fn at(stage: Stage, frame: u64, frames: u64) -> Step {
        let fraction = if frames == 0 || frame == 0 {
            0.0
        } else {
            ((frame.min(frames) - 1) as f64 + stage.within_frame()) / frames as f64
        };
        Step { stage, frame, frames, fraction }
    }

    /// A stage that is not per frame, at `fraction` of its pass.
    pub fn whole(stage: Stage, frames: u64, fraction: f64) -> Step {
        Step { stage, frame: 0, frames, fraction }
    }

    /// This step's fraction mapped into `lo..hi` of the whole job (a pass's share).
    pub fn within(self, lo: f64, hi: f64) -> Step {
        Step { fraction: lo + (hi - lo) * self.fraction.clamp(0.0, 1.0), ..self }
    }
}

/// A listener that ignores every step.
pub fn ignore(_: Step) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_rises_through_every_stage_of_every_frame() {
        let mut last = -1.0;
        for frame in 1..=24 {
            for stage in [Stage::Decoding, Stage::ReadingText, Stage::Writing] {
                let f = Step::at(stage, frame, 24).within(0.0, 0.8).fraction;
                assert!(f > last && f < 0.8, "frame {frame} {stage:?}: {f} after {last}");
                last = f;
            }
        }
        assert_eq!(Step::at(Stage::Rendering, 1, 24).within(0.8, 1.0).fraction, 0.8);
        assert_eq!(Step::at(Stage::ReadingText, 0, 0).fraction, 0.0);
        assert_eq!(Stage::ReadingText.as_str(), "reading_text");
    }
}
