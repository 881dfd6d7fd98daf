//! The live edge of a low-latency HLS program (RFC 8216bis), kept in memory: the
//! parts of the segment being made and of the last few, served as they are made;
//! the playlist with `EXT-X-PART`, `EXT-X-PRELOAD-HINT` and `EXT-X-SERVER-CONTROL`,
//! whole or as a delta update (`_HLS_skip`); and blocking reloads (`_HLS_msn`,
//! `_HLS_part`), which wait here until the asked-for part exists.
//!
//! Complete segments also go to disk, with a plain playlist (no parts) beside them:
//! that one is the DVR window and, once the event ends, the VOD, and it is what a
//! restarted program continues. The program's segmenter (`program::cmaf`) fills a
//! [`LiveHls`]; the server finds it by the program's HLS directory ([`live`]).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::hls::{Playlist, Segment};

/// One part (a CMAF fragment).
#[derive(Debug, Clone)]
pub struct Part {
    /// Seconds.
    pub duration: f64,
    /// Starts with a key frame.
    pub independent: bool,
    /// The fragment's bytes (shared, not copied, by every request for it).
    pub data: Bytes,
}

/// Parts are listed for the segments made in the last three target durations (and
/// for the segment being made), as the specification asks.
const SEGMENTS_WITH_PARTS: usize = 3;

struct State {
    /// The complete segments (the DVR window), as on disk.
    playlist: Playlist,
    /// Nominal part length, seconds (`PART-TARGET`).
    part_target: f64,
    /// The parts of the last complete segments: (media sequence number, parts).
    recent: VecDeque<(u64, Vec<Part>)>,
    /// The parts of the segment being made (number `playlist.next_sequence()`).
    current: Vec<Part>,
    ended: bool,
}

/// Why a blocking request was not answered with what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Asked for a segment more than two beyond the last one: a client error (400).
    TooFar,
    /// The part did not come within the bound (503).
    Late,
    /// The program ended first (the playlist is VOD now).
    Ended,
}

/// A program's low-latency HLS, live.
pub struct LiveHls {
    state: Mutex<State>,
    /// Bumped on every new part, segment and end; blocked requests wait on it.
    tick: tokio::sync::watch::Sender<u64>,
}

impl LiveHls {
    /// The live edge over `playlist` (its complete segments), with parts of
    /// `part_target` seconds.
    pub fn new(playlist: Playlist, part_target: f64) -> Arc<Self> {
        let state = State { playlist, part_target, recent: VecDeque::new(), current: Vec::new(), ended: false };
        Arc::new(LiveHls { state: Mutex::new(state), tick: tokio::sync::watch::channel(0).0 })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.tick.send_modify(|n| *n += 1);
    }

    /// A part of the segment being made is ready.
    pub fn push_part(&self, part: Part) {
        self.state().current.push(part);
        self.changed();
    }

    /// The segment being made is complete (its parts, joined, are in `uri`): it is
    /// listed. Returns the segments that left the DVR window (their files can go)
    /// and the plain playlist to write to disk.
    pub fn finish_segment(&self, uri: String, duration: f64) -> (Vec<Segment>, String) {
        let mut s = self.state();
        let msn = s.playlist.next_sequence();
        let parts = std::mem::take(&mut s.current);
        let gone = s.playlist.push(uri, duration);
        s.recent.push_back((msn, parts));
        while s.recent.len() > SEGMENTS_WITH_PARTS {
            s.recent.pop_front();
        }
        let text = s.playlist.render();
        drop(s);
        self.changed();
        (gone, text)
    }

    /// The init segment of the segments made from now on.
    pub fn set_map(&self, uri: Option<String>) {
        self.state().playlist.map = uri;
    }

    /// The next segment follows a gap (off air, or a new pipeline).
    pub fn mark_discontinuity(&self) {
        self.state().playlist.mark_discontinuity();
    }

    /// The event ended: the playlist is closed. Returns it, to write to disk.
    pub fn end(&self) -> String {
        let mut s = self.state();
        s.ended = true;
        s.playlist.ended = true;
        let text = s.playlist.render();
        drop(s);
        self.changed();
        text
    }

    /// Whether there is anything to play yet.
    pub fn has_media(&self) -> bool {
        let s = self.state();
        !s.playlist.segments.is_empty() || !s.current.is_empty()
    }

    /// The part target, seconds.
    pub fn part_target(&self) -> f64 {
        self.state().part_target
    }

    /// The target duration, seconds.
    pub fn target_duration(&self) -> u32 {
        self.state().playlist.longest_target()
    }

    /// Waits (at most `bound`) until the playlist holds part `part` of segment `msn`
    /// (or segment `msn` whole, with no part asked for). A part past a segment's
    /// last is the next segment's first.
    pub async fn wait_for(&self, msn: u64, part: Option<u64>, bound: Duration) -> Result<(), Wait> {
        let deadline = tokio::time::Instant::now() + bound;
        let mut rx = self.tick.subscribe();
        loop {
            {
                let s = self.state();
                let next = s.playlist.next_sequence();
                if msn > next + 2 {
                    return Err(Wait::TooFar);
                }
                let there = match part {
                    None => msn < next,
                    Some(p) => match msn.cmp(&next) {
                        std::cmp::Ordering::Less => {
                            // Complete: its parts are all there, and one past its
                            // last is the next segment's first.
                            let count = s.recent.iter().find(|(m, _)| *m == msn).map_or(0, |(_, v)| v.len() as u64);
                            p < count || msn + 1 < next || !s.current.is_empty()
                        }
                        std::cmp::Ordering::Equal => p < s.current.len() as u64,
                        std::cmp::Ordering::Greater => false,
                    },
                };
                if there {
                    return Ok(());
                }
                if s.ended {
                    return Err(Wait::Ended);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(Wait::Late),
            }
        }
    }

    /// A part's bytes by its name (`part-{msn}.{index}.m4s`), waiting (at most
    /// `bound`) for the next one to be made (the preload hint). `None`: there is no
    /// such part (any more, or it was never made).
    pub async fn part(&self, name: &str, bound: Duration) -> Option<Bytes> {
        let (msn, index) = part_name(name)?;
        let deadline = tokio::time::Instant::now() + bound;
        let mut rx = self.tick.subscribe();
        loop {
            {
                let s = self.state();
                let next = s.playlist.next_sequence();
                if msn < next {
                    let (_, parts) = s.recent.iter().find(|(m, _)| *m == msn)?;
                    return parts.get(index).map(|p| p.data.clone());
                }
                if msn > next || index > s.current.len() || s.ended {
                    return None;
                }
                if let Some(p) = s.current.get(index) {
                    return Some(p.data.clone());
                }
            }
            tokio::time::timeout_at(deadline, rx.changed()).await.ok()?.ok()?;
        }
    }

    /// The playlist: with `skip`, a delta update (segments older than
    /// `CAN-SKIP-UNTIL` from the end are left out).
    pub fn render(&self, skip: bool) -> String {
        use std::fmt::Write;
        let s = self.state();
        let p = &s.playlist;
        let target = p.longest_target();
        let can_skip_until = 6.0 * f64::from(target);
        // Rounded up, so that no part is longer; the hold-back a little over three.
        let part_target = (s.part_target * 1e5).ceil() / 1e5;
        let part_hold_back = (3.0 * part_target * 1e3).floor() / 1e3 + 0.001;
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.5}");
        // Players start three parts from the live edge (the specification's
        // recommendation); without parts, three target durations.
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={can_skip_until:.1},HOLD-BACK={:.1},PART-HOLD-BACK={part_hold_back:.3}",
            3.0 * f64::from(target),
        );
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
        let skipped = if skip {
            let current: f64 = s.current.iter().map(|x| x.duration).sum();
            let mut after: f64 = p.segments.iter().map(|x| x.duration).sum::<f64>() + current;
            p.segments
                .iter()
                .take_while(|x| {
                    after -= x.duration;
                    after >= can_skip_until
                })
                .count()
        } else {
            0
        };
        let write_parts = |out: &mut String, msn: u64, parts: &[Part]| {
            for (i, part) in parts.iter().enumerate() {
                let independent = if part.independent { ",INDEPENDENT=YES" } else { "" };
                let _ = writeln!(out, "#EXT-X-PART:DURATION={:.5},URI=\"part-{msn}.{i}.m4s\"{independent}", part.duration);
            }
        };
        p.render_segments(&mut out, skipped, |out, msn| {
            if let Some((_, parts)) = s.recent.iter().find(|(m, _)| *m == msn) {
                write_parts(out, msn, parts);
            }
        });
        if s.ended {
            out.push_str("#EXT-X-ENDLIST\n");
            return out;
        }
        let next = p.next_sequence();
        if p.pending_discontinuity() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if p.map.is_some() && p.segments.back().and_then(|x| x.map.as_ref()) != p.map.as_ref() {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", p.map.as_deref().unwrap_or_default());
        }
        write_parts(&mut out, next, &s.current);
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-{next}.{}.m4s\"", s.current.len());
        out
    }
}

/// `part-{msn}.{index}.m4s` → (msn, index).
fn part_name(name: &str) -> Option<(u64, usize)> {
    let (msn, index) = name.strip_prefix("part-")?.strip_suffix(".m4s")?.split_once('.')?;
    Some((msn.parse().ok()?, index.parse().ok()?))
}

/// The live programs, by HLS directory.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<LiveHls>>> {
    static LIVE: OnceLock<Mutex<HashMap<PathBuf, Weak<LiveHls>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// Makes `live` the live edge of the HLS in `dir` (for as long as it exists). The
/// server looks it up by the same path (`<data_dir>/hls/<room>`), as it was given.
pub fn register(dir: &Path, live: &Arc<LiveHls>) {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|_, w| w.strong_count() > 0);
    r.insert(dir.to_path_buf(), Arc::downgrade(live));
}

/// The live edge of the HLS in `dir`, if a low-latency program writes there now.
pub fn live(dir: &Path) -> Option<Arc<LiveHls>> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).get(dir).and_then(Weak::upgrade)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(independent: bool) -> Part {
        Part { duration: 1.0 / 3.0, independent, data: Bytes::from(vec![independent as u8]) }
    }

    fn live_with(segments: usize) -> Arc<LiveHls> {
        let live = LiveHls::new(Playlist::new(2, 100), 1.0 / 3.0);
        live.set_map(Some("init-a.mp4".into()));
        for n in 0..segments {
            for i in 0..6 {
                live.push_part(part(i == 0));
            }
            live.finish_segment(format!("seg-a-{n:05}.m4s"), 2.0);
        }
        live
    }

    #[test]
    fn the_playlist_lists_recent_parts_and_hints_the_next() {
        let live = live_with(5);
        live.push_part(part(true));
        let text = live.render(false);
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.33334\n"), "{text}");
        assert!(text.contains("CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0,PART-HOLD-BACK=1.001"), "{text}");
        assert_eq!(text.matches("#EXT-X-MAP:URI=\"init-a.mp4\"").count(), 1, "{text}");
        // Parts for the last three complete segments and the one being made.
        assert_eq!(text.matches("#EXT-X-PART:").count(), 3 * 6 + 1, "{text}");
        assert!(!text.contains("part-1.0.m4s") && text.contains("part-2.0.m4s\",INDEPENDENT=YES"), "{text}");
        assert!(text.ends_with("#EXTINF:2.000,\nseg-a-00004.m4s\n#EXT-X-PART:DURATION=0.33333,URI=\"part-5.0.m4s\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-5.1.m4s\"\n"), "{text}");
    }

    #[test]
    fn a_delta_update_skips_what_is_older_than_can_skip_until() {
        let live = live_with(10);
        let text = live.render(true);
        // 20 s listed, 12 s may not be skipped: the first four segments go.
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXTINF:2.000,\nseg-a-00004.m4s"), "{text}");
        assert!(!live.render(false).contains("SKIP:"));
    }

    #[test]
    fn blocking_requests_wait_for_their_part_within_the_bound() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let live = live_with(2);
        rt.block_on(async {
            let quick = Duration::from_millis(50);
            assert_eq!(live.wait_for(1, Some(3), quick).await, Ok(()), "made already");
            assert_eq!(live.wait_for(1, Some(6), quick).await, Err(Wait::Late), "the next segment's first part");
            assert_eq!(live.wait_for(9, None, quick).await, Err(Wait::TooFar));
            // A request for the next part waits; the part is made once it does.
            let l = live.clone();
            let waiter = tokio::spawn(async move { l.wait_for(2, Some(0), Duration::from_secs(5)).await });
            for _ in 0..1000 {
                if live.tick.receiver_count() > 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(live.tick.receiver_count(), 1, "the request is waiting");
            let t = tokio::time::Instant::now();
            live.push_part(part(true));
            assert_eq!(waiter.await.unwrap(), Ok(()));
            assert!(t.elapsed() < Duration::from_secs(1), "answered as the part came");
            assert_eq!(live.wait_for(1, Some(6), quick).await, Ok(()), "one past the last is the next's first");
            assert_eq!(live.part("part-2.0.m4s", quick).await.as_deref(), Some(&[1u8][..]));
            assert_eq!(live.part("part-2.1.m4s", quick).await, None, "the hinted part did not come in time");
            assert_eq!(live.part("part-1.5.m4s", quick).await.as_deref(), Some(&[0u8][..]));
            assert_eq!(live.part("part-1.6.m4s", quick).await, None);
            assert_eq!(live.part("../x", quick).await, None);
            live.end();
            assert_eq!(live.wait_for(2, Some(3), quick).await, Err(Wait::Ended));
        });
        assert!(live.render(false).ends_with("#EXT-X-ENDLIST\n"));
    }
}
