//! Rooms: the sans-IO [`RoomCore`] (who may join and publish, who receives what) and
//! the [`RoomActor`] shell around it, which writes its decisions into the room's
//! [`Router`](crate::router::Router).

mod actor;
mod core;

pub use actor::*;
pub use core::{RoomCore, RoomError, RoomOutput, RoomPolicy};
