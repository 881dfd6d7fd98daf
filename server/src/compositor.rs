//! The compositor's signaling: joins a room over the WebSocket like any client and
//! carries the program pipeline's SDP ([`casecast_actors::program::Program`]). Runs
//! in its own thread, in the server process (`demo`) or alone (`casecast compositor`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use casecast_actors::metrics::ProgramMetrics;
use casecast_actors::stop::Stop;
use casecast_actors::program::{HlsPreset, Program, ProgramOptions, Slate};
use casecast_signaling::{ClientMessage, PROTOCOL_VERSION, ServerMessage};

/// A running compositor; stops on drop.
pub struct Compositor {
    stop: Stop,
    /// Whether stopping ends the playlist (it becomes VOD): true unless the
    /// program only pauses for a server restart (see [`Compositor::pause_on_stop`]).
    end_on_stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Compositor {
    /// Joins `room` at `base_url` (`http://…`) with `token` (role operator) and writes
    /// the program as HLS; reconnects with backoff until stopped.
    pub fn start(base_url: &str, room: &str, token: &str, mut opts: ProgramOptions, metrics: Option<ProgramMetrics>) -> Compositor {
        let stop = Stop::new();
        let s = stop.clone();
        let end_on_stop = Arc::new(AtomicBool::new(true));
        let end = end_on_stop.clone();
        let url = format!("{}/ws", base_url.trim_end_matches('/').replacen("http", "ws", 1));
        let (room, token) = (room.to_string(), token.to_string());
        let thread = std::thread::Builder::new()
            .name("compositor".into())
            .spawn(move || {
                let mut backoff = Duration::from_millis(500);
                // The last program keeps writing (black or frozen) while the next
                // session is awaited; the next one continues its playlist.
                let mut last: Option<Program> = None;
                let mut carried = None;
                while !s.is_set() {
                    // A new session keeps the operator's switches (the last
                    // session's recording finishes its file first).
                    let switches = last.as_ref().map(Program::switches).or(carried.take()).unwrap_or_default();
                    drop(last.take());
                    let result = Program::start(&opts).map_err(anyhow::Error::from).and_then(|program| {
                        program.apply(switches);
                        let r = session(&program, &url, &room, &token, &opts, &s, metrics.as_ref());
                        last = Some(program);
                        r
                    });
                    match result {
                        Ok(None) => break,
                        Ok(Some(preset)) => {
                            // Another segment length is another playlist (a live
                            // playlist's target duration may not change): this one
                            // ends, and the next session starts a new one.
                            tracing::info!(?preset, "compositor: the event's latency preset; the program's HLS starts again");
                            opts.set_preset(preset);
                            if let Some(program) = last.take() {
                                let switches = program.switches();
                                if let Err(e) = program.finish() {
                                    tracing::warn!(error = %e, "compositor: playlist not closed");
                                }
                                let _ = std::fs::remove_file(opts.hls_dir.join("index.m3u8"));
                                // The switches go on; the next program takes them.
                                carried = Some(switches);
                            }
                            backoff = Duration::from_millis(500);
                            continue;
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "compositor session ended"),
                    }
                    if s.wait(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                // Stopped for good: the playlist becomes VOD. Paused (the server
                // restarts mid-event), it stays live: the next program continues it,
                // and players keep reloading it meanwhile.
                let outputs: Vec<String> = last.as_ref().map(|p| p.rtmp_states().into_iter().map(|(n, _)| n).collect()).unwrap_or_default();
                if end.load(Ordering::Relaxed)
                    && let Some(m) = &metrics
                {
                    m.forget(&room, &outputs);
                }
                if let Some(program) = last {
                    if end.load(Ordering::Relaxed) {
                        if let Err(e) = program.finish() {
                            tracing::warn!(error = %e, "compositor: playlist not closed");
                        }
                    } else {
                        program.pause();
                    }
                }
            })
            .ok();
        Compositor { stop, end_on_stop, thread }
    }

    /// From now on, stopping leaves the playlist live (a server going down
    /// mid-event) until [`Compositor::end`] says otherwise.
    pub fn pause_on_stop(&self) {
        self.end_on_stop.store(false, Ordering::Relaxed);
    }

    /// Stops it for good: the playlist ends (VOD) and the recording's file is
    /// finished.
    pub fn end(self) {
        self.end_on_stop.store(true, Ordering::Relaxed);
        drop(self);
    }
}

impl Compositor {
    /// What stops it (from a signal handler, before the server winds down: a
    /// compositor left running would join again while the server drains).
    pub fn stopper(&self) -> Stop {
        self.stop.clone()
    }
}

impl Drop for Compositor {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `registry` at `http://addr/metrics` (for a compositor running alone) until
/// the process ends.
pub fn serve_metrics(addr: std::net::SocketAddr, registry: prometheus::Registry) -> Result<JoinHandle<()>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(%addr, "compositor metrics at /metrics");
    Ok(std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let n = conn.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if request.starts_with("GET /metrics ") {
                let mut out = Vec::new();
                let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out);
                ("200 OK", out)
            } else {
                ("404 Not Found", b"only GET /metrics\n".to_vec())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body));
        }
    })?)
}

fn send(ws: &mut Ws, m: &ClientMessage) -> Result<()> {
    ws.send(tungstenite::Message::text(serde_json::to_string(m)?))?;
    Ok(())
}

/// Reports the program's counters to Prometheus once a second.
struct Reporter<'a> {
    metrics: &'a ProgramMetrics,
    room: &'a str,
    fps: u32,
    last: std::time::Instant,
    frames: u64,
    bytes: u64,
    segments: u64,
    rtmp_seen: Vec<String>,
}

impl Reporter<'_> {
    fn tick(&mut self, program: &Program) {
        let dt = self.last.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let (frames, bytes, segments) = (
            program.stats.frames.load(Ordering::Relaxed),
            program.stats.bytes.load(Ordering::Relaxed),
            program.stats.segments.load(Ordering::Relaxed),
        );
        let (df, db, ds) = (frames - self.frames, bytes - self.bytes, segments - self.segments);
        let m = self.metrics;
        let r = [self.room];
        m.frames.with_label_values(&r).inc_by(df);
        m.fps.with_label_values(&r).set(df as f64 / dt);
        m.encoder_bitrate.with_label_values(&r).set(db as f64 * 8.0 / dt);
        m.hls_segments.with_label_values(&r).inc_by(ds);
        let expected = (f64::from(self.fps) * dt).round() as u64;
        m.dropped_frames.with_label_values(&r).inc_by(expected.saturating_sub(df));
        m.output_up.with_label_values(&[self.room, "hls"]).set(i64::from(df > 0));
        let rtmp = program.rtmp_states();
        for (output, state) in &rtmp {
            let up = matches!(state, casecast_actors::rtmp::RtmpState::Live);
            m.output_up.with_label_values(&[self.room, output]).set(i64::from(up));
        }
        // Outputs no longer there are no longer reported.
        for gone in self.rtmp_seen.iter().filter(|u| !rtmp.iter().any(|(output, _)| output == *u)) {
            let _ = m.output_up.remove_label_values(&[self.room, gone]);
        }
        self.rtmp_seen = rtmp.into_iter().map(|(u, _)| u).collect();
        if let Some((writing, _)) = program.recording_state() {
            m.output_up.with_label_values(&[self.room, "recording"]).set(i64::from(writing));
        }
        let s = program.switches();
        for (name, on) in [
            ("on_air", s.on_air),
            ("labels", s.labels),
            ("recording", s.recording),
            ("slate_starting", s.slate == Some(Slate::Starting)),
            ("slate_brb", s.slate == Some(Slate::Brb)),
        ] {
            m.switch.with_label_values(&[self.room, name]).set(i64::from(on));
        }
        (self.last, self.frames, self.bytes, self.segments) = (std::time::Instant::now(), frames, bytes, segments);
    }

    fn down(&self, program: &Program) {
        self.metrics.output_up.with_label_values(&[self.room, "hls"]).set(0);
        for (output, _) in program.rtmp_states() {
            self.metrics.output_up.with_label_values(&[self.room, &output]).set(0);
        }
        if program.recording_state().is_some() {
            self.metrics.output_up.with_label_values(&[self.room, "recording"]).set(0);
        }
        self.metrics.fps.with_label_values(&[self.room]).set(0.0);
    }
}

fn session(
    program: &Program,
    url: &str,
    room: &str,
    token: &str,
    opts: &ProgramOptions,
    stop: &Stop,
    metrics: Option<&ProgramMetrics>,
) -> Result<Option<HlsPreset>> {
    let (mut ws, _) = tungstenite::connect(url).with_context(|| format!("cannot reach {url}"))?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    let room_id = casecast_signaling::RoomId::parse(room).map_err(|e| anyhow::anyhow!("room {room:?}: {e}"))?;
    let join = ClientMessage::Join { v: PROTOCOL_VERSION, room: room_id, token: token.into(), name: Some("program".into()), receive_only: false };
    // On a cluster, the room may live on another node: the join is sent there.
    let mut hops = 0;
    let first = loop {
        send(&mut ws, &join)?;
        match first_answer(&mut ws)? {
            FirstAnswer::Redirect(to) if hops < 3 => {
                tracing::info!(url = %to, "compositor: the room is on another node");
                let (next, _) = tungstenite::connect(to.as_str()).with_context(|| format!("cannot reach the room's node at {to}"))?;
                if let tungstenite::stream::MaybeTlsStream::Plain(s) = next.get_ref() {
                    s.set_read_timeout(Some(Duration::from_millis(200)))?;
                }
                ws = next;
                hops += 1;
            }
            FirstAnswer::Redirect(_) => bail!("redirected more than three times"),
            FirstAnswer::Message(m) => break *m,
        }
    };
    let mut ping = std::time::Instant::now();
    let mut reporter = metrics.map(|metrics| Reporter {
        metrics,
        room,
        fps: opts.fps,
        last: std::time::Instant::now(),
        frames: 0,
        bytes: 0,
        segments: 0,
        rtmp_seen: Vec::new(),
    });
    let result = run_session(program, &mut ws, first, room, opts, stop, &mut ping, reporter.as_mut());
    if let Some(r) = &reporter {
        r.down(program);
    }
    let preset = result?;
    let _ = send(&mut ws, &ClientMessage::Leave);
    Ok(preset)
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// The first answer to a join.
enum FirstAnswer {
    /// Join again there (a cluster's node that holds the room).
    Redirect(String),
    /// Anything else, for the session to handle first.
    Message(Box<ServerMessage>),
}

/// Waits (bounded) for the join's first answer.
fn first_answer(ws: &mut Ws) -> Result<FirstAnswer> {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                return match serde_json::from_str::<ServerMessage>(t.as_str()) {
                    Ok(ServerMessage::Redirect { url }) => Ok(FirstAnswer::Redirect(url)),
                    Ok(other) => Ok(FirstAnswer::Message(Box::new(other))),
                    Err(e) => bail!("signaling: not a server message: {e}"),
                };
            }
            Ok(tungstenite::Message::Close(_)) => bail!("the server closed the signaling connection"),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => bail!("signaling: {e}"),
        }
    }
    bail!("no answer to the join within 15 s")
}


/// Carries the session until stopped (`None`) or until the event asks for another
/// latency preset than the program's (`Some`).
#[allow(clippy::too_many_arguments)]
fn run_session(
    program: &Program,
    ws: &mut Ws,
    first: ServerMessage,
    room: &str,
    opts: &ProgramOptions,
    stop: &Stop,
    ping: &mut std::time::Instant,
    mut reporter: Option<&mut Reporter>,
) -> Result<Option<HlsPreset>> {
    let ws = &mut *ws;
    let mut pending = Some(first);
    while !stop.is_set() {
        if let Some(e) = program.error() {
            bail!("program pipeline: {e}");
        }
        if let Some(r) = reporter.as_mut() {
            r.tick(program);
        }
        if ping.elapsed() > Duration::from_secs(10) {
            send(ws, &ClientMessage::Ping)?;
            *ping = std::time::Instant::now();
        }
        let message = match pending.take() {
            Some(m) => m,
            None => match ws.read() {
                Ok(tungstenite::Message::Text(t)) => serde_json::from_str::<ServerMessage>(t.as_str())?,
                Ok(tungstenite::Message::Close(_)) => bail!("the server closed the signaling connection"),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => bail!("signaling: {e}"),
            },
        };
        match message {
            ServerMessage::Joined { .. } => {
                tracing::info!(%room, "compositor joined");
                let sdp = program.offer()?;
                tracing::debug!(%sdp, "compositor offer");
                send(ws, &ClientMessage::Offer { sdp })?;
            }
            ServerMessage::Answer { sdp } => {
                tracing::debug!(%sdp, "compositor answer");
                program.set_answer(&sdp)?
            }
            ServerMessage::ProgramSwitches { on_air, labels, recording, slate } => {
                if let Some(on) = on_air {
                    program.set_on_air(on);
                }
                match slate.as_deref().map(Slate::parse) {
                    Some(Ok(s)) => program.set_slate(s),
                    Some(Err(e)) => tracing::warn!(error = %e, "compositor: slate ignored"),
                    None => {}
                }
                if let Some(on) = labels {
                    program.set_labels(on);
                }
                if recording.is_some_and(|on| !program.set_recording(on)) {
                    tracing::warn!("compositor: recording asked for, but no recording directory is set");
                }
            }
            ServerMessage::ProgramMetadata { data } => program.send_metadata(&data),
            ServerMessage::ProgramOutputs { rtmp } => program.set_rtmp_urls(&rtmp),
            ServerMessage::ProgramPreset { latency_preset } => match latency_preset.parse::<HlsPreset>() {
                Ok(p) if !opts.has_preset(p) => return Ok(Some(p)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "compositor: preset ignored"),
            },
            ServerMessage::ProgramLayout { layout, main } => {
                program.set_main(main);
                match layout.parse() {
                    Ok(kind) => program.set_layout(kind),
                    Err(e) => tracing::warn!(error = %e, "compositor: layout ignored"),
                }
            }
            ServerMessage::TrackBound { track } => {
                if let Some(mid) = &track.mid {
                    program.bind(
                        mid,
                        track.kind == casecast_signaling::MediaKind::Video,
                        track.source == casecast_signaling::TrackSource::Feed,
                        &track.participant_id,
                        &track.name,
                    );
                }
            }
            ServerMessage::ParticipantLeft { participant_id } => program.participant_left(&participant_id),
            ServerMessage::Muted { participant_id, kind: casecast_signaling::MediaKind::Video, muted } => {
                program.camera_muted(&participant_id, muted)
            }
            ServerMessage::Offer { sdp, tracks } => {
                // More tracks than the offered slots: take the offer so the session
                // stays healthy (those tracks are not mixed yet).
                tracing::info!(extra = tracks.len(), "compositor: more tracks than program slots");
                send(ws, &ClientMessage::Answer { sdp: program.answer(&sdp)? })?;
            }
            ServerMessage::Error { code, message } => bail!("server error {code:?}: {message}"),
            ServerMessage::Connection { state } if state == "closed" => bail!("the server ended the compositor's session"),
            _ => {}
        }
    }
    Ok(None)
}
