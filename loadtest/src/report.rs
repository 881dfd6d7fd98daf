//! The load test report: what each subscriber received in the measurement window and
//! what the server spent on it, as text or JSON.

use std::fmt::Write as _;
use std::time::Duration;

use casecast_loadtest::metrics::{
    BYTES_FORWARDED, FORWARD_LATENCY, PACKETS_FORWARDED, PACKETS_RECEIVED, PROCESS_CPU_SECONDS,
    PROCESS_RSS_BYTES,
};
use casecast_loadtest::{Metrics, PublisherStats, SubscriberStats, histogram_quantile};
use serde::Serialize;

const MIB: f64 = 1024.0 * 1024.0;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub config: ConfigReport,
    /// Length of the measurement window, seconds.
    pub window_s: f64,
    pub publisher: PublisherReport,
    pub subscribers: Vec<SubscriberReport>,
    pub aggregate: Aggregate,
    /// The first node's cost; `None` if its metrics could not be read at the end
    /// of the window.
    pub server: Option<ServerReport>,
    /// Each room: its node, publisher and subscribers.
    pub rooms: Vec<RoomReport>,
    /// Each node: what its rooms' subscribers got and what it cost the node.
    pub nodes: Vec<NodeReport>,
}

/// One room of the run.
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    pub room: String,
    pub node: String,
    pub publisher: PublisherReport,
    pub aggregate: Aggregate,
}

/// One node (server) of the run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub url: String,
    pub rooms: usize,
    pub aggregate: Aggregate,
    pub server: Option<ServerReport>,
}

/// The run's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub url: String,
    /// Every node's URL (the first is `url`).
    pub urls: Vec<String>,
    pub room: String,
    pub rooms: usize,
    pub subscribers: usize,
    pub duration_s: f64,
    pub video_bitrate_bps: u64,
    pub fps: u32,
    pub audio: bool,
}

/// What the publisher sent in the window.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherReport {
    pub video_frames: u64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub video_kbps: f64,
    pub audio_frames: u64,
    pub error: Option<String>,
}

/// What one subscriber received in the window.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberReport {
    pub index: usize,
    /// Whether its WHEP session was set up.
    pub started: bool,
    pub video_kbps: f64,
    pub video_fps: f64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub audio_frames: u64,
    pub audio_pps: f64,
    /// Latest loss fraction reported for video, in percent.
    pub video_loss_pct: Option<f64>,
    /// Latest loss fraction reported for audio, in percent.
    pub audio_loss_pct: Option<f64>,
    /// From starting the subscriber to its first video frame.
    pub first_frame_ms: Option<f64>,
    pub error: Option<String>,
}

/// Across subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub started: usize,
    /// Subscribers that received media in the window.
    pub receiving: usize,
    pub video_kbps_min: Option<f64>,
    pub video_kbps_median: Option<f64>,
    pub video_kbps_max: Option<f64>,
    pub video_kbps_total: f64,
    pub first_frame_ms_median: Option<f64>,
    pub first_frame_ms_max: Option<f64>,
    pub video_loss_pct_max: Option<f64>,
}

/// The server's cost in the window, from `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub cpu_seconds: Option<f64>,
    /// CPU seconds per second of window, in percent of one core.
    pub cpu_percent_of_core: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_delta_mib: Option<f64>,
    pub packets_forwarded: Option<f64>,
    pub bytes_forwarded: Option<f64>,
    pub packets_received: Option<f64>,
    /// Forwarded RTP, Mbit/s.
    pub forwarded_mbps: Option<f64>,
    /// CPU microseconds per forwarded RTP packet.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    pub forward_latency_p50_ms: Option<f64>,
    pub forward_latency_p99_ms: Option<f64>,
    /// Observations in the latency histogram during the window.
    pub forward_latency_samples: Option<f64>,
    /// UDP send system calls on the media sockets, and the datagrams they sent.
    pub udp_send_calls: Option<f64>,
    pub udp_datagrams_sent: Option<f64>,
}

/// A subscriber's stats at the start and end of the window, or why it never started.
#[allow(clippy::large_enum_variant)] // a few dozen of them, built once per run
pub enum SubscriberWindow {
    Started {
        before: SubscriberStats,
        after: SubscriberStats,
    },
    Failed(String),
}

impl SubscriberReport {
    pub fn new(index: usize, window: &SubscriberWindow, secs: f64) -> Self {
        let (before, after) = match window {
            SubscriberWindow::Started { before, after } => (before, after),
            SubscriberWindow::Failed(error) => {
                return SubscriberReport {
                    index,
                    started: false,
                    video_kbps: 0.0,
                    video_fps: 0.0,
                    video_frames: 0,
                    keyframes: 0,
                    audio_frames: 0,
                    audio_pps: 0.0,
                    video_loss_pct: None,
                    audio_loss_pct: None,
                    first_frame_ms: None,
                    error: Some(error.clone()),
                };
            }
        };
        let video_bytes = after.video.bytes.saturating_sub(before.video.bytes);
        let video_frames = after.video.frames.saturating_sub(before.video.frames);
        let audio_frames = after.audio.frames.saturating_sub(before.audio.frames);
        SubscriberReport {
            index,
            started: true,
            video_kbps: per_second(video_bytes as f64 * 8.0 / 1000.0, secs),
            video_fps: per_second(video_frames as f64, secs),
            video_frames,
            keyframes: after.video.keyframes.saturating_sub(before.video.keyframes),
            audio_frames,
            audio_pps: per_second(audio_frames as f64, secs),
            video_loss_pct: after.video.loss.map(|l| f64::from(l) * 100.0),
            audio_loss_pct: after.audio.loss.map(|l| f64::from(l) * 100.0),
            first_frame_ms: after.time_to_first_video().map(millis),
            error: after.error.clone(),
        }
    }

    fn received(&self) -> bool {
        self.video_frames > 0 || self.audio_frames > 0
    }
}

impl PublisherReport {
    pub fn new(before: &PublisherStats, after: &PublisherStats, secs: f64) -> Self {
        let bytes = after
            .video_bytes_sent
            .saturating_sub(before.video_bytes_sent);
        PublisherReport {
            video_frames: after
                .video_frames_sent
                .saturating_sub(before.video_frames_sent),
            keyframes: after.keyframes_sent.saturating_sub(before.keyframes_sent),
            keyframe_requests: after
                .keyframe_requests
                .saturating_sub(before.keyframe_requests),
            video_kbps: per_second(bytes as f64 * 8.0 / 1000.0, secs),
            audio_frames: after
                .audio_frames_sent
                .saturating_sub(before.audio_frames_sent),
            error: after.error.clone(),
        }
    }
}

impl Aggregate {
    pub fn new(subscribers: &[SubscriberReport]) -> Self {
        let receiving: Vec<&SubscriberReport> =
            subscribers.iter().filter(|s| s.received()).collect();
        let mut kbps: Vec<f64> = receiving.iter().map(|s| s.video_kbps).collect();
        let mut first: Vec<f64> = subscribers
            .iter()
            .filter_map(|s| s.first_frame_ms)
            .collect();
        let losses = subscribers.iter().filter_map(|s| s.video_loss_pct);
        Aggregate {
            started: subscribers.iter().filter(|s| s.started).count(),
            receiving: receiving.len(),
            video_kbps_min: kbps.iter().copied().reduce(f64::min),
            video_kbps_max: kbps.iter().copied().reduce(f64::max),
            video_kbps_median: median(&mut kbps),
            video_kbps_total: kbps.iter().sum(),
            first_frame_ms_max: first.iter().copied().reduce(f64::max),
            first_frame_ms_median: median(&mut first),
            video_loss_pct_max: losses.reduce(f64::max),
        }
    }
}

impl ServerReport {
    pub fn new(before: &Metrics, after: &Metrics, secs: f64) -> Self {
        let cpu_seconds = after.delta(before, PROCESS_CPU_SECONDS);
        let packets_forwarded = after.delta(before, PACKETS_FORWARDED);
        let bytes_forwarded = after.delta(before, BYTES_FORWARDED);
        let rss_end = after.get(PROCESS_RSS_BYTES);
        let rss_start = before.get(PROCESS_RSS_BYTES);
        let latency = after.histogram_delta(before, FORWARD_LATENCY);
        let latency_samples = latency.last().map(|b| b.count);
        let cpu_us_per_forwarded_packet = match (cpu_seconds, packets_forwarded) {
            (Some(cpu), Some(packets)) if packets > 0.0 => Some(cpu * 1e6 / packets),
            _ => None,
        };
        ServerReport {
            cpu_seconds,
            cpu_percent_of_core: cpu_seconds.map(|c| per_second(c * 100.0, secs)),
            rss_end_mib: rss_end.map(|b| b / MIB),
            rss_delta_mib: rss_end
                .zip(rss_start)
                .map(|(end, start)| (end - start) / MIB),
            packets_forwarded,
            bytes_forwarded,
            packets_received: after.delta(before, PACKETS_RECEIVED),
            forwarded_mbps: bytes_forwarded.map(|b| per_second(b * 8.0 / 1e6, secs)),
            cpu_us_per_forwarded_packet,
            forward_latency_p50_ms: histogram_quantile(0.5, &latency).map(|s| s * 1000.0),
            forward_latency_p99_ms: histogram_quantile(0.99, &latency).map(|s| s * 1000.0),
            forward_latency_samples: latency_samples,
            udp_send_calls: after.delta(before, "casecast_udp_syscalls_total{op=\"send\"}"),
            udp_datagrams_sent: after.delta(before, "casecast_udp_datagrams_total{direction=\"out\"}"),
        }
    }
}

impl Report {
    /// Whether any subscriber received media in the window.
    pub fn any_received(&self) -> bool {
        self.aggregate.receiving > 0
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "casecast load test: {} room {:?} ({} room(s) on {} node(s)), {} subscribers, {:.1} s window, video {:.0} kbit/s @ {} fps, audio {}",
            c.url,
            c.room,
            c.rooms,
            c.urls.len(),
            c.subscribers,
            self.window_s,
            c.video_bitrate_bps as f64 / 1000.0,
            c.fps,
            if c.audio { "on" } else { "off" },
        );
        let p = &self.publisher;
        let _ = writeln!(
            out,
            "publisher: {} video frames ({} keyframes, {} keyframe requests), {:.0} kbit/s video, {} audio packets{}",
            p.video_frames,
            p.keyframes,
            p.keyframe_requests,
            p.video_kbps,
            p.audio_frames,
            p.error
                .as_deref()
                .map(|e| format!("; error: {e}"))
                .unwrap_or_default(),
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>4}  {:>10}  {:>6}  {:>5}  {:>8}  {:>6}  {:>12}  {:>10}  error",
            "sub", "video kbps", "fps", "keys", "audio", "aud/s", "loss v/a %", "first ms"
        );
        for s in &self.subscribers {
            let loss = format!("{}/{}", opt(s.video_loss_pct, 1), opt(s.audio_loss_pct, 1));
            let _ = writeln!(
                out,
                "{:>4}  {:>10.1}  {:>6.1}  {:>5}  {:>8}  {:>6.1}  {:>12}  {:>10}  {}",
                s.index,
                s.video_kbps,
                s.video_fps,
                s.keyframes,
                s.audio_frames,
                s.audio_pps,
                loss,
                opt(s.first_frame_ms, 0),
                s.error.as_deref().unwrap_or(""),
            );
        }
        let a = &self.aggregate;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "aggregate: {}/{} started, {} received media; video kbps min {} / median {} / max {}, total {:.0}",
            a.started,
            self.subscribers.len(),
            a.receiving,
            opt(a.video_kbps_min, 1),
            opt(a.video_kbps_median, 1),
            opt(a.video_kbps_max, 1),
            a.video_kbps_total,
        );
        let _ = writeln!(
            out,
            "           first frame ms median {} / max {}; worst video loss {} %",
            opt(a.first_frame_ms_median, 0),
            opt(a.first_frame_ms_max, 0),
            opt(a.video_loss_pct_max, 1),
        );
        if self.rooms.len() > 1 {
            for r in &self.rooms {
                let a = &r.aggregate;
                let _ = writeln!(
                    out,
                    "room {:?} on {}: {}/{} receiving, video kbps min {} / median {}, worst loss {} %",
                    r.room,
                    r.node,
                    a.receiving,
                    a.started,
                    opt(a.video_kbps_min, 1),
                    opt(a.video_kbps_median, 1),
                    opt(a.video_loss_pct_max, 1),
                );
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if self.nodes.len() > 1 {
                let _ = writeln!(
                    out,
                    "node {} {}: {} room(s), {}/{} receiving, video kbps min {} / median {}",
                    i + 1,
                    n.url,
                    n.rooms,
                    n.aggregate.receiving,
                    n.aggregate.started,
                    opt(n.aggregate.video_kbps_min, 1),
                    opt(n.aggregate.video_kbps_median, 1),
                );
            }
            server_text(&mut out, n.server.as_ref());
        }
        out
    }
}

/// A node's cost, as text.
fn server_text(out: &mut String, server: Option<&ServerReport>) {
    {
        match server {
            None => {
                let _ = writeln!(
                    out,
                    "server:    metrics unavailable at the end of the window"
                );
            }
            Some(s) => {
                let _ = writeln!(
                    out,
                    "server:    CPU {} s in window ({} % of one core); RSS {} MiB at end ({} MiB)",
                    opt(s.cpu_seconds, 2),
                    opt(s.cpu_percent_of_core, 1),
                    opt(s.rss_end_mib, 1),
                    s.rss_delta_mib.map_or("n/a".into(), |d| format!("{d:+.1}")),
                );
                let _ = writeln!(
                    out,
                    "           RTP packets forwarded {} ({} Mbit/s), received {}",
                    opt(s.packets_forwarded, 0),
                    opt(s.forwarded_mbps, 1),
                    opt(s.packets_received, 0),
                );
                let _ = writeln!(
                    out,
                    "           CPU per forwarded packet: {} µs",
                    opt(s.cpu_us_per_forwarded_packet, 2),
                );
                let _ = writeln!(
                    out,
                    "           forward latency p50 {} ms, p99 {} ms ({} samples)",
                    opt(s.forward_latency_p50_ms, 3),
                    opt(s.forward_latency_p99_ms, 3),
                    opt(s.forward_latency_samples, 0),
                );
                if let (Some(calls), Some(sent)) = (s.udp_send_calls, s.udp_datagrams_sent) {
                    let _ = writeln!(
                        out,
                        "           UDP: {sent:.0} datagrams sent in {calls:.0} system calls ({:.2} a call)",
                        if calls > 0.0 { sent / calls } else { 0.0 },
                    );
                }
            }
        }
    }
}

fn per_second(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 { amount / secs } else { 0.0 }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `n/a` or the value with `decimals` decimals.
fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// The median (mean of the middle two for even counts); sorts `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn server_report_from_metrics() {
        let before = Metrics::parse(
            "process_cpu_seconds_total 10\n\
             process_resident_memory_bytes 104857600\n\
             casecast_rtp_packets_forwarded_total 1000\n\
             casecast_rtp_bytes_forwarded_total 0\n\
             casecast_forward_latency_seconds_bucket{le=\"0.001\"} 0\n\
             casecast_forward_latency_seconds_bucket{le=\"+Inf\"} 0\n",
        );
        let after = Metrics::parse(
            "process_cpu_seconds_total 12\n\
             process_resident_memory_bytes 115343360\n\
             casecast_rtp_packets_forwarded_total 21000\n\
             casecast_rtp_bytes_forwarded_total 25000000\n\
             casecast_forward_latency_seconds_bucket{le=\"0.001\"} 100\n\
             casecast_forward_latency_seconds_bucket{le=\"+Inf\"} 100\n",
        );
        let r = ServerReport::new(&before, &after, 10.0);
        assert_eq!(r.cpu_seconds, Some(2.0));
        assert_eq!(r.cpu_percent_of_core, Some(20.0));
        assert_eq!(r.rss_end_mib, Some(110.0));
        assert_eq!(r.rss_delta_mib, Some(10.0));
        assert_eq!(r.packets_forwarded, Some(20_000.0));
        assert_eq!(r.cpu_us_per_forwarded_packet, Some(100.0));
        assert_eq!(r.forwarded_mbps, Some(20.0));
        assert_eq!(r.packets_received, None);
        assert_eq!(r.forward_latency_p50_ms, Some(0.5));
        assert_eq!(r.forward_latency_samples, Some(100.0));
    }
}
