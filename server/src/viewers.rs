//! Concurrent HLS viewers, counted once each: a viewer is the id its page sends with
//! playlist requests (`?viewer=`), or else its browser; it counts while it has asked
//! for the playlist in the last 20 s (players reload it every segment).
//!
//! The id comes from the client, so one client could make up as many as it likes:
//! viewers are counted per client address, at most `per_address` from one (a
//! hospital's NAT holds several real viewers; a script holds no more). The address
//! is the connection's, or the `X-Forwarded-For` a trusted proxy adds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a viewer counts after its last playlist request.
const WINDOW: Duration = Duration::from_secs(20);

/// Viewers by room.
pub struct Viewers {
    rooms: Mutex<HashMap<String, Room>>,
    per_address: usize,
}

#[derive(Default)]
struct Room {
    /// Viewers by client address, then by id: when each was last seen.
    seen: HashMap<String, HashMap<String, Instant>>,
    pruned: Option<Instant>,
}

impl Room {
    fn count(&self, now: Instant, per_address: usize) -> usize {
        self.seen.values().map(|ids| ids.values().filter(|t| now.duration_since(**t) < WINDOW).count().min(per_address)).sum()
    }
}

impl Viewers {
    /// Counting at most `per_address` viewers from one client address.
    pub fn new(per_address: usize) -> Viewers {
        Viewers { rooms: Mutex::default(), per_address }
    }

    /// How many viewers one client address counts for at most.
    pub fn per_address(&self) -> usize {
        self.per_address
    }

    /// Records a playlist request of `viewer` from `address` in `room`; returns the
    /// room's count. Every viewer asks every segment: the map is pruned once a
    /// second, not on every request.
    pub fn seen(&self, room: &str, address: &str, viewer: &str) -> usize {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let r = rooms.entry(room.to_string()).or_default();
        let ids = r.seen.entry(address.to_string()).or_default();
        if let Some(t) = ids.get_mut(viewer) {
            *t = now;
        } else if ids.len() < self.per_address {
            ids.insert(viewer.to_string(), now);
        }
        if r.pruned.is_none_or(|p| now.duration_since(p) >= Duration::from_secs(1)) {
            for ids in r.seen.values_mut() {
                ids.retain(|_, t| now.duration_since(*t) < WINDOW);
            }
            r.seen.retain(|_, ids| !ids.is_empty());
            r.pruned = Some(now);
        }
        r.count(now, self.per_address)
    }

    /// Every room's count now (rooms with none left are not listed).
    pub fn counts(&self) -> Vec<(String, usize)> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        rooms.iter().map(|(id, r)| (id.clone(), r.count(now, self.per_address))).filter(|(_, n)| *n > 0).collect()
    }

    /// The room's count now.
    pub fn count(&self, room: &str) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).map(|r| r.count(Instant::now(), self.per_address)).unwrap_or(0)
    }
}

/// The client a request comes from: the connection's address, or, when that is a
/// trusted proxy, the last address its `X-Forwarded-For` names that is not one.
pub fn client_address(req: &actix_web::HttpRequest, proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let hops: Vec<IpAddr> = forwarded.split(',').filter_map(|h| h.trim().parse().ok()).collect();
    Some(hops.into_iter().rev().find(|ip| !proxies.contains(ip)).unwrap_or(peer))
}

/// The viewer a request comes from: (its client address, its id).
pub fn key(req: &actix_web::HttpRequest, proxies: &[IpAddr]) -> (String, String) {
    let address = client_address(req, proxies).map(|a| a.to_string()).unwrap_or_default();
    let q = actix_web::web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    if let Some(v) = q.and_then(|q| q.get("viewer").cloned()).filter(|v| (8..=64).contains(&v.len()) && v.bytes().all(|c| c.is_ascii_alphanumeric())) {
        return (address, v);
    }
    let agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    (address, agent.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_viewer_counts_once() {
        let v = Viewers::new(16);
        assert_eq!(v.seen("a", "10.0.0.1", "x"), 1);
        assert_eq!(v.seen("a", "10.0.0.1", "x"), 1);
        assert_eq!(v.seen("a", "10.0.0.1", "y"), 2);
        assert_eq!(v.seen("a", "10.0.0.2", "x"), 3, "the same id from elsewhere is someone else");
        assert_eq!(v.seen("b", "10.0.0.1", "x"), 1);
        assert_eq!(v.count("a"), 3);
        assert_eq!(v.count("c"), 0);
    }

    #[test]
    fn one_address_cannot_inflate_the_count() {
        let v = Viewers::new(4);
        for i in 0..1000 {
            v.seen("a", "192.0.2.7", &format!("viewer{i:05}"));
        }
        assert_eq!(v.count("a"), 4);
        for i in 0..3 {
            v.seen("a", &format!("198.51.100.{i}"), "someone");
        }
        assert_eq!(v.count("a"), 7);
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_proxies() {
        use actix_web::test::TestRequest;
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let via_proxy = TestRequest::default()
            .peer_addr("10.0.0.9:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.5, 10.0.0.9"))
            .to_http_request();
        assert_eq!(client_address(&via_proxy, &[proxy]), Some("203.0.113.5".parse().unwrap()));
        assert_eq!(client_address(&via_proxy, &[]), Some(proxy), "not trusted: the connection's address");
        let direct = TestRequest::default()
            .peer_addr("198.51.100.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "1.2.3.4"))
            .to_http_request();
        assert_eq!(client_address(&direct, &[proxy]), Some("198.51.100.1".parse().unwrap()), "a client cannot claim an address");
    }
}
