//! Rooms: the sans-IO [`RoomCore`] and the [`RoomActor`] shell around it.

mod actor;
mod core;
pub(crate) mod keyframe;

pub use actor::*;
pub use core::{RoomCore, RoomError, RoomOutput, RoomPolicy};
pub use keyframe::{DEFAULT_KEYFRAME_INTERVAL, KeyframeDecision, KeyframeThrottle};
