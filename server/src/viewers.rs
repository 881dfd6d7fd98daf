//! Concurrent HLS viewers, counted once each: a viewer is the id its page sends with
//! playlist requests (`?viewer=`), or else its address and browser; it counts while
//! it has asked for the playlist in the last 20 s (players reload it every segment).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a viewer counts after its last playlist request.
const WINDOW: Duration = Duration::from_secs(20);

/// Viewers by room.
#[derive(Default)]
pub struct Viewers {
    rooms: Mutex<HashMap<String, Room>>,
}

#[derive(Default)]
struct Room {
    seen: HashMap<String, Instant>,
    pruned: Option<Instant>,
}

impl Viewers {
    /// Records a playlist request of `viewer` in `room`; returns the room's count.
    /// Every viewer asks every segment: the map is pruned once a second, not on
    /// every request.
    pub fn seen(&self, room: &str, viewer: &str) -> usize {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let r = rooms.entry(room.to_string()).or_default();
        if let Some(t) = r.seen.get_mut(viewer) {
            *t = now;
        } else {
            r.seen.insert(viewer.to_string(), now);
        }
        if r.pruned.is_none_or(|p| now.duration_since(p) >= Duration::from_secs(1)) {
            r.seen.retain(|_, t| now.duration_since(*t) < WINDOW);
            r.pruned = Some(now);
        }
        r.seen.len()
    }

    /// The room's count now.
    pub fn count(&self, room: &str) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        rooms.get(room).map(|r| r.seen.values().filter(|t| now.duration_since(**t) < WINDOW).count()).unwrap_or(0)
    }
}

/// The viewer a request comes from.
pub fn key(req: &actix_web::HttpRequest) -> String {
    let q = actix_web::web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    if let Some(v) = q.and_then(|q| q.get("viewer").cloned()).filter(|v| (8..=64).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_alphanumeric())) {
        return v;
    }
    let addr = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    format!("{addr} {agent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_viewer_counts_once() {
        let v = Viewers::default();
        assert_eq!(v.seen("a", "x"), 1);
        assert_eq!(v.seen("a", "x"), 1);
        assert_eq!(v.seen("a", "y"), 2);
        assert_eq!(v.seen("b", "x"), 1);
        assert_eq!(v.count("a"), 2);
        assert_eq!(v.count("c"), 0);
    }
}
