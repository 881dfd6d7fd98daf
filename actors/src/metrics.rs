//! The Prometheus metrics every actor reports to, in one registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Counters and gauges of the media plane. Cheap to clone (all handles are `Arc`s).
#[derive(Clone)]
pub struct Metrics {
    /// The registry the server renders at `/metrics`.
    pub registry: Registry,
    /// Rooms open.
    pub rooms: IntGauge,
    /// Participants connected, by role.
    pub participants: IntGaugeVec,
    /// RTP packets received from publishers.
    pub rtp_packets_in: IntCounter,
    /// RTP bytes received from publishers (UDP payload).
    pub rtp_bytes_in: IntCounter,
    /// RTP packets sent to subscribers.
    pub rtp_packets_forwarded: IntCounter,
    /// RTP bytes sent to subscribers.
    pub rtp_bytes_forwarded: IntCounter,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: IntCounter,
    /// Packets (or frames) dropped, by reason.
    pub dropped: IntCounterVec,
    /// Peers connected over ICE-TCP now (their media over TCP).
    pub ice_tcp_connections: IntGauge,
    /// Time from a frame's last packet arriving to its copies being written out.
    pub forward_latency: Histogram,
    /// Subscribers' bandwidth estimates, bits/s, sampled at each allocation.
    pub bwe_estimate: Histogram,
    /// Changes of the layer a subscriber is given of a video track, by direction
    /// (`up`, `down`, `pause`, `resume`).
    pub layer_changes: IntCounterVec,
    /// Frames the server-made ladder encoded, by rung.
    pub ladder_frames: IntCounterVec,
    /// Subscribers' bandwidth estimators started again because their estimate
    /// stood still below what the best layers need.
    pub bwe_restarts: IntCounter,
    /// UDP system calls on the media sockets, by operation (`send`, `recv`).
    pub udp_syscalls: IntCounterVec,
    /// UDP datagrams through the media sockets, by direction (`in`, `out`).
    pub udp_datagrams: IntCounterVec,
    /// Participants on each media worker (thread), by worker.
    pub worker_participants: IntGaugeVec,
    /// Rooms on each media worker, by worker.
    pub worker_rooms: IntGaugeVec,
    /// The program's metrics, by room.
    pub program: ProgramMetrics,
    /// The DICOM ingest pool's metrics.
    pub ingest: IngestMetrics,
}

/// The DICOM ingest pool's metrics.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Jobs by status (queued, running, done, failed), as recorded in the database.
    pub jobs: IntGaugeVec,
    /// Jobs this process finished, by outcome (done, failed).
    pub finished: IntCounterVec,
    /// Input bytes processed.
    pub bytes: IntCounter,
    /// Frames published (rendered) and frames read for burned-in text.
    pub frames: IntCounterVec,
    /// Seconds per job, from start of work to published.
    pub job_seconds: Histogram,
}

/// The program's (compositor's) metrics, labelled by room.
#[derive(Clone)]
pub struct ProgramMetrics {
    /// Program frames encoded.
    pub frames: IntCounterVec,
    /// Program frames per second over the last second.
    pub fps: prometheus::GaugeVec,
    /// Frames the program should have made but did not (late or dropped).
    pub dropped_frames: IntCounterVec,
    /// Encoder output bitrate over the last second, bits/s.
    pub encoder_bitrate: prometheus::GaugeVec,
    /// HLS segments written.
    pub hls_segments: IntCounterVec,
    /// 1 while an output (hls, recording, rtmp URL) works, else 0.
    pub output_up: IntGaugeVec,
    /// The operator's switches as the compositor has them: 1 on, 0 off
    /// (`switch`: on_air, labels, recording, slate_starting, slate_brb).
    pub switch: IntGaugeVec,
    /// Viewers' playlist requests.
    pub playlist_requests: IntCounterVec,
    /// Concurrent HLS viewers (each counted once, seen in the last 20 s).
    pub viewers: IntGaugeVec,
}

impl ProgramMetrics {
    /// Drops a room's program series when its program ends for good (its event
    /// ended): an ended program is not a program down, and alerts on `fps` or
    /// `output_up` must not fire for it. `outputs`: its RTMP outputs' names.
    pub fn forget(&self, room: &str, outputs: &[String]) {
        for g in [&self.frames, &self.dropped_frames, &self.hls_segments] {
            let _ = g.remove_label_values(&[room]);
        }
        for g in [&self.fps, &self.encoder_bitrate] {
            let _ = g.remove_label_values(&[room]);
        }
        for output in ["hls", "recording"].into_iter().chain(outputs.iter().map(String::as_str)) {
            let _ = self.output_up.remove_label_values(&[room, output]);
        }
        for switch in ["on_air", "labels", "recording", "slate_starting", "slate_brb"] {
            let _ = self.switch.remove_label_values(&[room, switch]);
        }
    }
}

impl Metrics {
    /// Creates the metrics in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let rooms = IntGauge::new("casecast_rooms", "Rooms open").unwrap();
        let participants = IntGaugeVec::new(
            Opts::new("casecast_participants", "Participants connected, by role"),
            &["role"],
        )
        .unwrap();
        let c = |name: &str, help: &str| IntCounter::new(name, help).unwrap();
        let rtp_packets_in = c("casecast_rtp_packets_received_total", "RTP packets received from publishers");
        let rtp_bytes_in = c("casecast_rtp_bytes_received_total", "RTP bytes received from publishers");
        let rtp_packets_forwarded =
            c("casecast_rtp_packets_forwarded_total", "RTP packets sent to subscribers");
        let rtp_bytes_forwarded =
            c("casecast_rtp_bytes_forwarded_total", "RTP bytes sent to subscribers");
        let keyframe_requests =
            c("casecast_keyframe_requests_total", "Keyframe requests (PLI) sent to publishers");
        let dropped = IntCounterVec::new(
            Opts::new("casecast_dropped_packets_total", "Packets or frames dropped, by reason"),
            &["reason"],
        )
        .unwrap();
        let ice_tcp_connections =
            IntGauge::new("casecast_ice_tcp_connections", "ICE-TCP connections carrying a participant's media").unwrap();
        let forward_latency = Histogram::with_opts(
            HistogramOpts::new(
                "casecast_forward_latency_seconds",
                "Time from a frame's arrival at the server to its copies being sent",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
            ]),
        )
        .unwrap();
        let bwe_estimate = Histogram::with_opts(
            HistogramOpts::new("casecast_bwe_estimate_bits", "Subscribers' bandwidth estimates, bits/s, at each allocation")
                .buckets(vec![100e3, 250e3, 500e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 8e6, 15e6, 30e6]),
        )
        .unwrap();
        let layer_changes = IntCounterVec::new(
            Opts::new("casecast_layer_changes_total", "Changes of the video layer a subscriber is given, by direction"),
            &["direction"],
        )
        .unwrap();
        let ladder_frames = IntCounterVec::new(
            Opts::new("casecast_ladder_frames_total", "Frames the server-made ladder encoded, by rung"),
            &["layer"],
        )
        .unwrap();
        let bwe_restarts = c(
            "casecast_bwe_restarts_total",
            "Subscribers' bandwidth estimators started again because their estimate stood still below what the best layers need",
        );
        let worker_participants = IntGaugeVec::new(
            Opts::new("casecast_media_worker_participants", "Participants on each media worker (thread)"),
            &["worker"],
        )
        .unwrap();
        let udp_syscalls =
            IntCounterVec::new(Opts::new("casecast_udp_syscalls_total", "UDP system calls on the media sockets, by operation"), &["op"]).unwrap();
        let udp_datagrams =
            IntCounterVec::new(Opts::new("casecast_udp_datagrams_total", "UDP datagrams through the media sockets, by direction"), &["direction"])
                .unwrap();
        let worker_rooms = IntGaugeVec::new(Opts::new("casecast_media_worker_rooms", "Rooms on each media worker (thread)"), &["worker"]).unwrap();
        // Registering distinct names in a fresh registry cannot fail.
        for m in [
            Box::new(rooms.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(participants.clone()),
            Box::new(rtp_packets_in.clone()),
            Box::new(rtp_bytes_in.clone()),
            Box::new(rtp_packets_forwarded.clone()),
            Box::new(rtp_bytes_forwarded.clone()),
            Box::new(keyframe_requests.clone()),
            Box::new(dropped.clone()),
            Box::new(ice_tcp_connections.clone()),
            Box::new(forward_latency.clone()),
            Box::new(bwe_estimate.clone()),
            Box::new(layer_changes.clone()),
            Box::new(ladder_frames.clone()),
            Box::new(bwe_restarts.clone()),
            Box::new(worker_participants.clone()),
            Box::new(worker_rooms.clone()),
            Box::new(udp_syscalls.clone()),
            Box::new(udp_datagrams.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        let room = &["room"];
        let program = ProgramMetrics {
            frames: IntCounterVec::new(Opts::new("casecast_program_frames_total", "Program frames encoded"), room).unwrap(),
            fps: prometheus::GaugeVec::new(Opts::new("casecast_program_fps", "Program frames per second"), room).unwrap(),
            dropped_frames: IntCounterVec::new(
                Opts::new("casecast_program_dropped_frames_total", "Program frames late or dropped"),
                room,
            )
            .unwrap(),
            encoder_bitrate: prometheus::GaugeVec::new(
                Opts::new("casecast_program_encoder_bitrate_bps", "Program encoder output bitrate"),
                room,
            )
            .unwrap(),
            hls_segments: IntCounterVec::new(Opts::new("casecast_program_hls_segments_total", "HLS segments written"), room)
                .unwrap(),
            output_up: IntGaugeVec::new(
                Opts::new("casecast_program_output_up", "1 while a program output works"),
                &["room", "output"],
            )
            .unwrap(),
            switch: IntGaugeVec::new(
                Opts::new("casecast_program_switch", "The program's switches as the compositor has them (1 on, 0 off)"),
                &["room", "switch"],
            )
            .unwrap(),
            playlist_requests: IntCounterVec::new(
                Opts::new("casecast_hls_playlist_requests_total", "Viewers' HLS playlist requests"),
                room,
            )
            .unwrap(),
            viewers: IntGaugeVec::new(Opts::new("casecast_hls_viewers", "Concurrent HLS viewers, each counted once"), room).unwrap(),
        };
        for m in [
            Box::new(program.frames.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(program.fps.clone()),
            Box::new(program.dropped_frames.clone()),
            Box::new(program.encoder_bitrate.clone()),
            Box::new(program.hls_segments.clone()),
            Box::new(program.output_up.clone()),
            Box::new(program.switch.clone()),
            Box::new(program.playlist_requests.clone()),
            Box::new(program.viewers.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        let ingest = IngestMetrics {
            jobs: IntGaugeVec::new(Opts::new("casecast_ingest_jobs", "Ingest jobs by status"), &["status"]).unwrap(),
            finished: IntCounterVec::new(Opts::new("casecast_ingest_jobs_finished_total", "Ingest jobs finished here, by outcome"), &["outcome"])
                .unwrap(),
            bytes: c("casecast_ingest_bytes_total", "Input bytes processed by ingest"),
            frames: IntCounterVec::new(Opts::new("casecast_ingest_frames_total", "Frames published or read for burned-in text"), &["kind"])
                .unwrap(),
            job_seconds: Histogram::with_opts(
                HistogramOpts::new("casecast_ingest_job_seconds", "Seconds per ingest job")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
            )
            .unwrap(),
        };
        for m in [
            Box::new(ingest.jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ingest.finished.clone()),
            Box::new(ingest.bytes.clone()),
            Box::new(ingest.frames.clone()),
            Box::new(ingest.job_seconds.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        for status in ["queued", "running", "done", "failed"] {
            ingest.jobs.with_label_values(&[status]).set(0);
        }
        for outcome in ["done", "failed"] {
            ingest.finished.with_label_values(&[outcome]).inc_by(0);
        }
        for role in ["encoder", "commentator", "viewer", "operator"] {
            participants.with_label_values(&[role]).set(0);
        }
        for reason in ["unroutable", "send_failed", "codec_mismatch", "not_negotiated"] {
            dropped.with_label_values(&[reason]).inc_by(0);
        }
        for direction in ["up", "down", "pause", "resume"] {
            layer_changes.with_label_values(&[direction]).inc_by(0);
        }
        Metrics {
            registry,
            rooms,
            participants,
            rtp_packets_in,
            rtp_bytes_in,
            rtp_packets_forwarded,
            rtp_bytes_forwarded,
            keyframe_requests,
            dropped,
            ice_tcp_connections,
            forward_latency,
            bwe_estimate,
            layer_changes,
            ladder_frames,
            bwe_restarts,
            worker_participants,
            worker_rooms,
            udp_syscalls,
            udp_datagrams,
            program,
            ingest,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
