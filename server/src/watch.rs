//! `casecast watch`: webrtcbin viewers over WHEP ([`casecast_actors::watcher`]),
//! measured over a window and reported.

use std::time::{Duration, Instant};

use casecast_actors::watcher::{Snapshot, Watcher, rates, start_many};
use serde_json::json;

use crate::HttpWhip;

/// What `casecast watch` was asked.
pub struct WatchArgs {
    pub whep: String,
    /// Used in turn, one per viewer.
    pub tokens: Vec<String>,
    pub count: usize,
    pub spacing: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub local_addresses: Vec<String>,
}

/// Joins the viewers, waits out the warm-up, measures, and returns the summary as
/// JSON. Progress goes to stderr.
pub fn run(a: &WatchArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(a.count >= 1, "--count must be at least 1");
    anyhow::ensure!(!a.duration.is_zero(), "--duration must be more than 0");
    anyhow::ensure!(!a.tokens.is_empty(), "a token is needed (--token)");
    let mut tokens = a.tokens.iter().cycle();
    let started = start_many(a.count, a.spacing, &a.local_addresses, || {
        Box::new(HttpWhip::new(a.whep.clone(), tokens.next().cloned().unwrap_or_default()))
    });
    let mut failed = Vec::new();
    let viewers: Vec<Watcher> = started
        .into_iter()
        .filter_map(|r| r.map_err(|e| failed.push(e)).ok())
        .collect();
    for e in failed.iter().take(3) {
        eprintln!("a viewer could not join: {e}");
    }
    eprintln!("{} of {} viewers joined; measuring after {:?} for {:?}", viewers.len(), a.count, a.warmup, a.duration);
    std::thread::sleep(a.warmup);
    let before: Vec<Snapshot> = viewers.iter().map(Watcher::snapshot).collect();
    let t0 = Instant::now();
    let until = t0 + a.duration;
    while Instant::now() < until {
        std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_secs(5)));
        let now: Vec<Snapshot> = viewers.iter().map(Watcher::snapshot).collect();
        let connected = now.iter().filter(|s| s.connected).count();
        let mut bits: Vec<f64> = before.iter().zip(&now).map(|(b, n)| rates(b, n, t0.elapsed()).bitrate).collect();
        bits.sort_by(f64::total_cmp);
        eprintln!(
            "{:>4.0} s: {connected} connected, bitrate min {:.0} / median {:.0} kbit/s",
            t0.elapsed().as_secs_f64(),
            bits.first().copied().unwrap_or(0.0) / 1e3,
            bits.get(bits.len() / 2).copied().unwrap_or(0.0) / 1e3
        );
    }
    let elapsed = t0.elapsed();
    let after: Vec<Snapshot> = viewers.iter().map(Watcher::snapshot).collect();
    let per: Vec<_> = before.iter().zip(&after).map(|(b, n)| (n.connected, rates(b, n, elapsed))).collect();
    for (i, v) in viewers.iter().enumerate() {
        if let Some(e) = v.error() {
            eprintln!("viewer {i}: {e}");
        }
    }
    let stat = |f: &dyn Fn(&casecast_actors::watcher::Rates) -> f64| {
        let mut v: Vec<f64> = per.iter().map(|(_, r)| f(r)).collect();
        v.sort_by(f64::total_cmp);
        json!({
            "min": v.first().copied().unwrap_or(0.0),
            "median": v.get(v.len() / 2).copied().unwrap_or(0.0),
            "max": v.last().copied().unwrap_or(0.0),
        })
    };
    Ok(json!({
        "viewers": a.count,
        "joined": viewers.len(),
        "connected": per.iter().filter(|(c, _)| *c).count(),
        "window_secs": elapsed.as_secs_f64(),
        "bitrate_bps": stat(&|r| r.bitrate),
        "fps": stat(&|r| r.fps),
        "loss": stat(&|r| r.loss),
        "per_viewer_bitrate_bps": per.iter().map(|(_, r)| r.bitrate.round()).collect::<Vec<_>>(),
    }))
}
