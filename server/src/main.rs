//! `casecast`: the server binary.
//!
//! Subcommands: `serve` (the server), `demo` (the server with a demo room fed by a
//! synthetic surgery feed), `token` (mint an access token), `publish` (publish a
//! test pattern to any WHIP endpoint), `routes` (every door and who may use it),
//! `ingest-worker` (run DICOM ingest jobs beside the server or on another machine).

mod cases;
mod compositor;
mod config;
mod dicomweb;
mod events;
mod directory;
mod distribution;
mod files;
mod health;
mod hls;
mod http;
mod ingest_worker;
mod library;
mod process;
mod programs;
mod resume;
mod routes;
mod state;
mod telemetry;
mod tls;
mod viewers;
mod watch;
mod whip;
mod ws;
mod ws_guard;

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use casecast_actors::publisher::{TestPatternOptions, TestPatternPublisher, VideoCodec, WhipClient};
use casecast_actors::{Metrics, Sfu, SfuConfig};
use casecast_signaling::{Role, TokenKey};
use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigArgs, parse_duration};
use crate::state::{AppState, unix_now};

#[derive(Parser)]
#[command(name = "casecast", version, about = "Real-time media server for live surgery broadcasts and case review")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(ConfigArgs),
    /// Run the server with a demo room whose surgery feed is a synthetic test pattern.
    Demo {
        #[command(flatten)]
        config: ConfigArgs,
        /// The demo room's id.
        #[arg(long, default_value = "demo")]
        room: String,
        /// Feed codec: vp8 or h264.
        #[arg(long, default_value = "vp8")]
        codec: String,
        /// Mix the room into a program and write it as HLS (`--program false` to skip).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        program: bool,
    },
    /// Mint a room-scoped access token (signed with the server's secret), or print
    /// the token Prometheus scrapes `/metrics` with (`--scrape`).
    Token {
        #[command(flatten)]
        config: ConfigArgs,
        /// Room id (`*` with role operator: all events).
        #[arg(long, required_unless_present = "scrape")]
        room: Option<String>,
        /// encoder, commentator, viewer or operator.
        #[arg(long, required_unless_present = "scrape")]
        role: Option<Role>,
        /// Display name.
        #[arg(long, default_value = "guest")]
        name: String,
        /// Lifetime, e.g. 30m, 24h, 7d (at most max_token_ttl_secs, 90 days by default).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Print the link to open instead of the bare token.
        #[arg(long)]
        link: bool,
        /// Print the scrape token for `/metrics` instead.
        #[arg(long, conflicts_with_all = ["room", "role", "link"])]
        scrape: bool,
    },
    /// Print every HTTP door of the server and who may use it.
    Routes {
        /// As JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// De-identify DICOM files offline (PS3.15 Basic Profile, as ingest does): a file or a
    /// folder in, one file per instance out, named by its new SOP Instance UID.
    Deid {
        #[command(flatten)]
        config: ConfigArgs,
        /// A DICOM file or a folder of them (searched recursively).
        input: std::path::PathBuf,
        /// The folder the de-identified files go to (made if missing).
        output: std::path::PathBuf,
        /// Keep dates, shifted back by a per-patient number of days.
        #[arg(long)]
        shift_dates: bool,
        /// Keep device serial numbers, station names and the like.
        #[arg(long)]
        retain_device_identity: bool,
        /// Remove free-text descriptors even when no PHI is found in them.
        #[arg(long)]
        no_clean_descriptors: bool,
        /// Do not read the frames for burned-in text (tags only; for benchmarks).
        #[arg(long)]
        no_ocr: bool,
        /// Read CT, MR, PET and NM pictures too when they say Burned In Annotation NO.
        #[arg(long)]
        ocr_all: bool,
        /// Also write every frame, cleaned, as PNG (`<new UID>.frameNNNN.png`).
        #[arg(long)]
        frames: bool,
        /// Black out the top of every frame of a modality whatever the OCR finds,
        /// e.g. `US=0.1` for ultrasound's header band (repeatable).
        #[arg(long = "mask", value_parser = parse_mask)]
        masks: Vec<(String, f64)>,
    },
    /// Join a room as the program compositor and write the program as HLS.
    Compositor {
        /// The server's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// Room id.
        #[arg(long)]
        room: String,
        /// Token for the room (role operator).
        #[arg(long, env = "CASECAST_COMPOSITOR_TOKEN", hide_env_values = true)]
        token: String,
        /// Directory for the playlist and segments.
        #[arg(long)]
        hls_dir: std::path::PathBuf,
        /// HLS preset: quality (6 s segments), low-latency (1 s) or ultra-low (low-latency HLS, parts of 1/3 s).
        #[arg(long, default_value = "quality")]
        preset: casecast_actors::program::HlsPreset,
        /// How far back viewers can go.
        #[arg(long, default_value = "2h", value_parser = parse_duration)]
        dvr_window: Duration,
        #[command(flatten)]
        picture: Picture,
        /// Program video bitrate, bits/s.
        #[arg(long, default_value_t = 3_000_000)]
        video_bitrate: u32,
        /// Do not publish the program back into the room (the monitor feed).
        #[arg(long)]
        no_monitor: bool,
        /// Local addresses ICE may use (repeatable; default: every interface).
        #[arg(long = "local-address")]
        local_addresses: Vec<String>,
        /// Serve the program's Prometheus metrics at http://ADDR/metrics.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// DICOM cases.
    #[command(subcommand)]
    Cases(CasesCmd),
    /// Run DICOM ingest jobs (de-identification, rendering, publishing) from the
    /// cases database and object store a server shares: beside it, or on other
    /// machines (PostgreSQL and S3, with `cases.stage_in_objects`). Stops on
    /// SIGINT/SIGTERM, putting its running jobs back in the queue.
    IngestWorker {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Publish a feed to a WHIP endpoint (GStreamer webrtcbin): a synthetic test pattern, or an encoder's SRT, RTMP or RTSP stream (`--source`).
    Publish {
        /// The WHIP URL, e.g. http://127.0.0.1:8080/whip/demo. Give it once per node
        /// of a cluster: a node that does not answer is passed over, and a session
        /// whose node stops answering starts again on another.
        #[arg(long, required = true)]
        whip: Vec<String>,
        /// Bearer token (role encoder).
        #[arg(long, env = "CASECAST_WHIP_TOKEN", hide_env_values = true)]
        token: String,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// vp8 or h264.
        #[arg(long, default_value = "vp8")]
        codec: String,
        #[command(flatten)]
        picture: Picture,
        /// Video bitrate, bits/s.
        #[arg(long, default_value_t = 2_500_000)]
        bitrate: u32,
        /// Publish a hospital encoder's stream instead of the test pattern: any URI
        /// GStreamer opens, e.g. `srt://:7001?mode=listener` (the encoder pushes SRT
        /// here), `rtmp://host/app/key` or `rtsp://camera/stream` (pulled).
        #[arg(long)]
        source: Option<String>,
    },
    /// Watch a room over WHEP with GStreamer's webrtcbin, one viewer or many, and
    /// report what each receives: bitrate, frame rate and loss (a check from another
    /// WebRTC stack that a room's feed arrives whole; the subscriber side of a
    /// benchmark). Prints a JSON summary on stdout at the end.
    Watch {
        /// The WHEP URL, e.g. http://127.0.0.1:8080/whep/demo.
        #[arg(long)]
        whep: String,
        /// Bearer token (any role that may watch). Repeat it to give viewers tokens
        /// of their own, used in turn (a token holds at most 4 sessions in a room).
        #[arg(long, env = "CASECAST_WHEP_TOKEN", hide_env_values = true, required = true)]
        token: Vec<String>,
        /// How many viewers.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Milliseconds between two viewers' joins.
        #[arg(long, default_value_t = 200)]
        spacing_ms: u64,
        /// Time after the last join before measuring.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        warmup: Duration,
        /// How long to measure.
        #[arg(long, value_parser = parse_duration, default_value = "20s")]
        duration: Duration,
    },
}

#[derive(Subcommand)]
enum CasesCmd {
    /// Ingest DICOM files, folders or ZIP archives from disk as an upload would
    /// (de-identified, rendered, stored; the originals are left where they are).
    Import {
        #[command(flatten)]
        config: ConfigArgs,
        /// The case library (room) they go to.
        #[arg(long, default_value = "demo")]
        room: String,
        /// Files, folders (searched recursively) or .zip archives.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
}

fn codec(s: &str) -> anyhow::Result<VideoCodec> {
    match s {
        "vp8" => Ok(VideoCodec::Vp8),
        "h264" => Ok(VideoCodec::H264),
        _ => anyhow::bail!("codec must be vp8 or h264, not {s:?}"),
    }
}

fn init_logs(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn,is=warn"));
    // Colours only on a terminal: a log file or the journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
    casecast_actors::log_gstreamer_warnings();
}

/// Errors end the process with their message and causes, never a stack backtrace
/// (anyhow prints one with `RUST_BACKTRACE` set, and symbolizing it takes a debug
/// build hundreds of MB): an error here is the user's to read, not a crash.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Before any thread or file: everything this process writes is its user's only.
    files::private_umask();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve(args) => {
            let config = args.load()?;
            init_logs(&config.log_format);
            serve(config, None)
        }
        Cmd::Demo { config, room, codec: c, program } => {
            let mut config = config.load()?;
            // The demo shows adaptation at work: its one-layer feed is offered as
            // three layers, unless the configuration says otherwise.
            config.room.feed_ladder.get_or_insert_with(|| vec![540, 360]);
            init_logs(&config.log_format);
            serve(config, Some(Demo { room, codec: codec(&c)?, program }))
        }
        Cmd::IngestWorker { config } => {
            let config = config.load()?;
            init_logs(&config.log_format);
            ingest_worker::run(config)
        }
        Cmd::Cases(CasesCmd::Import { config, room, paths }) => {
            let config = config.load()?;
            init_logs(&config.log_format);
            import(config, room, paths)
        }
        Cmd::Token { config, room, role, name, ttl, link, scrape } => {
            let config = config.load()?;
            if scrape {
                println!("{}", config.metrics_token()?);
                return Ok(());
            }
            let (Some(room), Some(role)) = (room, role) else { anyhow::bail!("--room and --role are needed") };
            check_ttl(ttl, config.max_token_ttl_secs)?;
            if room != events::ALL_EVENTS || role != Role::Operator {
                casecast_signaling::RoomId::parse(&room).map_err(|e| anyhow::anyhow!("--room {room:?}: {e} (or * with --role operator)"))?;
            }
            let key = TokenKey::new(config.secret()?);
            let token = key.mint(&room, role, &name, unix_now(), ttl.as_secs());
            if link {
                println!("{}", room_link(&config, &room, &token));
            } else {
                println!("{token}");
            }
            Ok(())
        }
        Cmd::Routes { json } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&routes::table_json())?);
            } else {
                for d in routes::DOORS {
                    println!("{:<8} {:<72} {}", d.method, d.path, serde_json::to_string(&d.access)?);
                }
            }
            Ok(())
        }
        Cmd::Deid { config, input, output, shift_dates, retain_device_identity, no_clean_descriptors, no_ocr, ocr_all, frames, masks } => {
            use casecast_ingest::batch::{self, Outcome};
            let config = config.load()?;
            let opts = casecast_ingest::deid::Options {
                shift_dates,
                retain_device_identity,
                clean_descriptors: !no_clean_descriptors,
                clean_pixels: !no_ocr,
                render_frames: frames,
                header_masks: masks,
                read_all_pictures: ocr_all,
                ..config.deid_limits(casecast_ingest::deid::Options::new(config.secret()?))
            };
            let files = batch::files(&input).with_context(|| format!("cannot read {}", input.display()))?;
            std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
            let (mut done, mut failed) = (0usize, 0usize);
            let started = std::time::Instant::now();
            // One line per file, each in one write (stderr is unbuffered).
            let mut err = std::io::LineWriter::new(std::io::stderr().lock());
            use std::io::Write as _;
            for (n, f) in files.iter().enumerate() {
                match batch::deidentify_file(f, &output, &opts) {
                    Outcome::Done(out, r) => {
                        done += 1;
                        // The input's name is not repeated: it may carry PHI itself.
                        let _ = writeln!(
                            err,
                            "[{}/{}] -> {} ({} removed, {} replaced, {} UIDs, {} private; {} frames read, {} burned-in words blacked out{})",
                            n + 1,
                            files.len(),
                            out.display(),
                            r.removed,
                            r.replaced,
                            r.uids,
                            r.private_removed,
                            r.frames_read,
                            r.words_blacked_out,
                            r.pixels_unchecked.map(|why| format!("; pixels NOT checked: {why}")).unwrap_or_default()
                        );
                    }
                    Outcome::Failed(p, why) => {
                        failed += 1;
                        let _ = writeln!(err, "[{}/{}] {}: FAILED: {why}", n + 1, files.len(), p.display());
                    }
                }
            }
            drop(err);
            eprintln!("{done} de-identified, {failed} failed, in {:.1} s", started.elapsed().as_secs_f64());
            if failed > 0 {
                anyhow::bail!("{failed} of {} files could not be de-identified", files.len());
            }
            Ok(())
        }
        Cmd::Compositor {
            url,
            room,
            token,
            hls_dir,
            preset,
            dvr_window,
            picture: Picture { width, height, fps },
            video_bitrate,
            no_monitor,
            local_addresses,
            metrics_listen,
            duration,
        } => {
            init_logs("text");
            let metrics = casecast_actors::metrics::Metrics::new();
            let _metrics_server = match metrics_listen {
                Some(addr) => Some(compositor::serve_metrics(addr, metrics.registry.clone())?),
                None => None,
            };
            let opts = casecast_actors::program::ProgramOptions {
                local_addresses,
                hls_dir,
                width,
                height,
                fps,
                video_bitrate,
                monitor: !no_monitor,
                segment_seconds: preset.segment_seconds(),
                parts: preset.parts(),
                dvr_window_secs: u32::try_from(dvr_window.as_secs()).unwrap_or(u32::MAX),
                ..Default::default()
            };
            let compositor = compositor::Compositor::start(&url, &room, &token, opts, Some(metrics.program.clone()));
            wait_for_signal_or(duration);
            drop(compositor);
            Ok(())
        }
        Cmd::Publish { whip, token, duration, codec: c, picture: Picture { width, height, fps }, bitrate, source } => {
            init_logs("text");
            let opts = TestPatternOptions {
                width,
                height,
                fps,
                video_bitrate: bitrate,
                codec: codec(&c)?,
                local_addresses: loopback_if_local(&whip[0]),
                source,
                ..Default::default()
            };
            let mut publisher = TestPatternPublisher::start(opts, HttpWhip::with_urls(whip, token))?;
            let deadline = duration.map(|d| std::time::Instant::now() + d);
            let stop = shutdown_signal();
            let mut last = None;
            // Report state changes until a signal, or the duration, ends it.
            while deadline.is_none_or(|d| std::time::Instant::now() < d) {
                let s = publisher.state();
                if last.as_ref() != Some(&s) {
                    eprintln!("publisher: {s:?}");
                    last = Some(s);
                }
                if stop.wait(Duration::from_millis(100)) {
                    break;
                }
            }
            publisher.stop();
            Ok(())
        }
        Cmd::Watch { whep, token, count, spacing_ms, warmup, duration } => {
            init_logs("text");
            let report = watch::run(&watch::WatchArgs { local_addresses: loopback_if_local(&whep), whep, tokens: token, count, spacing: Duration::from_millis(spacing_ms), warmup, duration })?;
            println!("{report}");
            Ok(())
        }
    }
}

/// Refuses a token lifetime of nothing or past the server's limit.
fn check_ttl(ttl: Duration, max_secs: u64) -> anyhow::Result<()> {
    if ttl.is_zero() {
        anyhow::bail!("--ttl 0 would make a token that is expired already; give a lifetime such as 30m, 24h or 7d");
    }
    if ttl.as_secs() > max_secs {
        anyhow::bail!(
            "--ttl {}d is longer than this server accepts ({}d, max_token_ttl_secs); a token that long would be refused",
            ttl.as_secs() / 86400,
            max_secs / 86400
        );
    }
    Ok(())
}

/// Blocks until SIGINT/SIGTERM or, if given, `duration` has passed.
fn wait_for_signal_or(duration: Option<Duration>) {
    // Without a duration, wait "forever" (a century).
    shutdown_signal().wait(duration.unwrap_or(Duration::from_secs(100 * 365 * 86400)));
}

/// A stop signal set by SIGINT or SIGTERM, for the synchronous commands (`publish`,
/// `compositor`), via a tiny Tokio runtime on a thread of its own.
/// `MODALITY=FRACTION`, e.g. `US=0.1`.
fn parse_mask(s: &str) -> Result<(String, f64), String> {
    let (m, f) = s.split_once('=').ok_or("use MODALITY=FRACTION, e.g. US=0.1")?;
    let f: f64 = f.parse().map_err(|_| format!("{f:?} is not a fraction"))?;
    if !(0.0..=1.0).contains(&f) || m.trim().is_empty() {
        return Err("use MODALITY=FRACTION with a fraction from 0 to 1".into());
    }
    Ok((m.trim().to_uppercase(), f))
}

/// A picture's size and rate, for the commands that make video.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Picture {
    /// Width in pixels.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
}

fn shutdown_signal() -> casecast_actors::stop::Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = casecast_actors::stop::Stop::new();
    let s = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match runtime {
        Ok(rt) => {
            std::thread::spawn(move || {
                rt.block_on(async {
                    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                        return;
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    s.set();
                })
            });
        }
        Err(e) => tracing::warn!(error = %e, "no signal handling: stop with the duration or kill"),
    }
    stop
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
async fn shutdown_requested() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The URL the server's own clients dial: its listening address, or loopback
/// when it listens on every address.
fn own_url(listen: std::net::SocketAddr, port: u16) -> String {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, port))
}

/// The ICE addresses of the server's own WebRTC clients: loopback when the media
/// port is offered there (`advertise` has it), else every interface libnice finds
/// (it skips loopback), which reach a server offered on a real address.
fn own_ice_addresses(candidates: &[std::net::SocketAddr]) -> Vec<String> {
    if candidates.iter().any(|c| c.ip().is_loopback()) { vec!["127.0.0.1".into()] } else { Vec::new() }
}

/// ICE on loopback for a WHIP URL on this machine (libnice skips loopback otherwise).
fn loopback_if_local(url: &str) -> Vec<String> {
    let host = url.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
    if host == "localhost" || host.starts_with("127.") { vec!["127.0.0.1".into()] } else { Vec::new() }
}

fn room_link(config: &Config, room: &str, token: &str) -> String {
    format!("{}/room/{room}?token={token}", config.public_url())
}

/// WHIP over HTTP/1.1 with ureq.
pub(crate) struct HttpWhip {
    /// The WHIP URLs it may use (a cluster's nodes), tried in turn when one does not
    /// answer; `at` is the one that last did.
    urls: Vec<String>,
    at: usize,
    token: String,
    location: Option<String>,
    agent: ureq::Agent,
}

impl HttpWhip {
    pub(crate) fn new(url: String, token: String) -> Self {
        Self::with_urls(vec![url], token)
    }

    pub(crate) fn with_urls(urls: Vec<String>, token: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            // Redirects are followed here, with the token (a cluster's node sends
            // the encoder to the room's node).
            .max_redirects(0)
            .build()
            .new_agent();
        HttpWhip { urls, at: 0, token, location: None, agent }
    }
}

impl WhipClient for HttpWhip {
    fn post(&mut self, offer: &str) -> Result<String, String> {
        // The URL that answered last, then the others in turn: a node that is down
        // is passed over.
        let n = self.urls.len().max(1);
        let mut last = String::new();
        for i in 0..n {
            let at = (self.at + i) % n;
            match self.post_to(at, offer) {
                Err(PostError::Unreachable(e)) => last = e,
                Err(PostError::Answered(e)) => return Err(e),
                Ok(answer) => {
                    self.at = at;
                    return Ok(answer);
                }
            }
        }
        Err(last)
    }

    fn delete(&mut self) {
        if let Some(l) = self.location.take() {
            let _ = self.agent.delete(&l).header("Authorization", &format!("Bearer {}", self.token)).call();
        }
    }

    fn alive(&mut self) -> bool {
        // Any answer will do (OPTIONS, the resource's CORS door, which changes
        // nothing): only a node that does not answer at all is gone.
        let Some(l) = &self.location else { return true };
        self.agent.options(l).config().timeout_global(Some(Duration::from_millis(1500))).build().call().is_ok()
    }
}

/// Why a WHIP POST failed: the node did not answer (another may), or it refused.
enum PostError {
    Unreachable(String),
    Answered(String),
}

impl HttpWhip {
    fn post_to(&mut self, at: usize, offer: &str) -> Result<String, PostError> {
        let mut url = self.urls.get(at).cloned().unwrap_or_default();
        let mut hops = 0;
        let mut resp = loop {
            let resp = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", "application/sdp")
                .send(offer)
                .map_err(|e| PostError::Unreachable(format!("WHIP POST to {url} failed: {e}")))?;
            let to = resp.headers().get("location").and_then(|v| v.to_str().ok()).filter(|l| l.starts_with("http://") || l.starts_with("https://"));
            match (resp.status().as_u16(), to) {
                (307 | 308, Some(to)) if hops < 3 => {
                    tracing::info!(from = %url, to, "the room is on another node");
                    url = to.to_string();
                    hops += 1;
                }
                _ => break resp,
            }
        };
        let status = resp.status();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if status.as_u16() != 201 {
            return Err(PostError::Answered(format!("WHIP POST answered {status}: {}", body.trim())));
        }
        self.location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(|l| {
            if l.starts_with("http") {
                l.to_string()
            } else {
                // Relative to the (last) WHIP URL's origin.
                let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{l}")
            }
        });
        Ok(body)
    }
}

/// `casecast cases import`: the files become jobs, processed here by a pool of
/// this process (a server sharing the database may take some of them too).
fn import(config: Config, room: String, paths: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    use casecast_ingest::store::NewJob;
    let mut files = Vec::new();
    for p in &paths {
        let found = casecast_ingest::batch::files(p).with_context(|| format!("cannot read {}", p.display()))?;
        files.extend(found.into_iter().map(|f| std::fs::canonicalize(&f).unwrap_or(f)));
    }
    if files.is_empty() {
        anyhow::bail!("no files found in {paths:?}");
    }
    actix_web::rt::System::new().block_on(async move {
        let cases = cases::open(&config, None, false).await?;
        let batch = cases::random_id();
        let mut jobs = Vec::with_capacity(files.len());
        if cases.stage_in_objects {
            eprintln!("staging {} file(s) in the object store", files.len());
        }
        for f in &files {
            let id = cases::random_id();
            // A worker on another machine takes it from the object store; the
            // original stays where it is.
            let staging = cases.stage(&id, f).await.map_err(anyhow::Error::msg)?;
            jobs.push(NewJob {
                id,
                room: room.clone(),
                source: "import".into(),
                kind: if f.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) { "zip" } else { "dicom" }.into(),
                bytes: std::fs::metadata(f).map(|m| m.len() as i64).unwrap_or(0),
                staging,
                batch: Some(batch.clone()),
            });
        }
        cases.db.insert_jobs(&jobs).await?;
        cases.pool.do_send(casecast_actors::ingest::Wake);
        eprintln!("importing {} file(s) into the case library {room:?}", jobs.len());
        let names: std::collections::HashMap<String, String> = jobs.iter().zip(&files).map(|(j, f)| (j.id.clone(), f.display().to_string())).collect();
        let mut reported = std::collections::HashSet::new();
        let (mut done, mut failed) = (0usize, 0usize);
        // Bounded: a job that does not move for this long is held by a process that
        // went away (the server requeues it when it starts).
        const STALL: Duration = Duration::from_secs(600);
        let mut moved = (0i64, std::time::Instant::now());
        loop {
            // Our jobs, and those made of our archives (they carry our batch).
            let ours = cases.db.batch_jobs(&room, &batch).await?;
            let latest = ours.iter().map(|j| j.updated_at).max().unwrap_or(0);
            if latest != moved.0 {
                moved = (latest, std::time::Instant::now());
            } else if moved.1.elapsed() > STALL {
                anyhow::bail!("no job of this import moved for {} minutes; another process may hold them", STALL.as_secs() / 60);
            }
            for j in &ours {
                if (j.status == "done" || j.status == "failed") && reported.insert(j.id.clone()) {
                    let what = names.get(&j.id).cloned().unwrap_or_else(|| format!("archive entry {}", j.id));
                    if j.status == "done" {
                        done += 1;
                        if j.kind == "dicom" {
                            eprintln!("done    {what} -> study {}", j.study_uid.as_deref().unwrap_or("?"));
                        }
                    } else {
                        failed += 1;
                        eprintln!("failed  {what}: {}", j.error.as_deref().unwrap_or("?"));
                    }
                }
            }
            if ours.iter().all(|j| j.status == "done" || j.status == "failed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("{done} done, {failed} failed");
        if failed > 0 {
            anyhow::bail!("{failed} file(s) failed");
        }
        Ok(())
    })
}

/// Serves `/metrics` alone, without a token, on `addr` (`metrics_listen`: an
/// address on the monitoring network only).
fn serve_metrics_apart(addr: std::net::SocketAddr, state: actix_web::web::Data<state::AppState>) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().app_data(state.clone()).route(
            "/metrics",
            actix_web::web::get().to(|st: actix_web::web::Data<state::AppState>| async move { http::metrics_text(&st).await }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("cannot listen for metrics on {addr} (metrics_listen)"))?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, "metrics served apart, without a token");
    Ok(handle)
}

/// What `casecast demo` adds to the server.
struct Demo {
    room: String,
    codec: VideoCodec,
    program: bool,
}

fn serve(config: Config, demo: Option<Demo>) -> anyhow::Result<()> {
    // The data directory holds secrets and patient data: its user's only, whatever
    // made it before (see `files`).
    files::private_dir(&config.data_dir).with_context(|| format!("cannot make {} private", config.data_dir.display()))?;
    for sensitive in [config.cases_staging(), config.data_dir.join("secret"), config.data_dir.join("playback-key.p8")] {
        files::make_private(&sensitive).with_context(|| format!("cannot make {} private", sensitive.display()))?;
    }
    let db = config.cases_database();
    if !db.contains("://") || db.starts_with("sqlite:") {
        let path = db.trim_start_matches("sqlite://").trim_start_matches("sqlite:").split('?').next().unwrap_or("").to_string();
        for f in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            files::make_private(std::path::Path::new(&f)).with_context(|| format!("cannot make {f} private"))?;
        }
    }
    let secret = config.secret()?;
    let metrics_token = config.metrics_token()?;
    let advertise = config.advertise_ips()?;
    let certificate = tls::from_config(&config)?;
    actix_web::rt::System::new().block_on(async move {
        let metrics = Metrics::new();
        let sfu = Sfu::start(
            SfuConfig {
                udp_bind: config.udp_bind,
                media_workers: config.media_workers(),
                udp_batching: config.udp_batching,
                advertise: advertise.clone(),
                connect_timeout: Duration::from_secs(config.connect_timeout_secs),
                ice_tcp_port: config.ice_tcp.then_some(config.ice_tcp_port),
            },
            metrics,
        )
        .with_context(|| format!("cannot bind the UDP media socket on {}", config.udp_bind))?;
        let cases = cases::open(&config, Some(sfu.metrics().ingest.clone()), true).await?;
        let events = events::Events::open(cases.db.clone()).await.context("cannot open the events tables")?;
        let distribution = distribution::Distribution::open(&config.distribution, &config.aws, sfu.clone())
            .await
            .context("cannot set up the distribution")?;
        let directory = match &config.redis_url {
            Some(url) => {
                let node_url = config.node_url.clone().unwrap_or_else(|| config.public_url());
                directory::Directory::connect(url, &config.node_name(), &node_url).await?
            }
            None => directory::Directory::local(),
        };
        let state = actix_web::web::Data::new(AppState {
            directory,
            sfu: sfu.clone(),
            key: TokenKey::new(&secret),
            policy: config.room_policy(),
            resources: Mutex::new(Default::default()),
            hls_root: config.data_dir.join("hls"),
            recordings_root: config.data_dir.join("recordings"),
            cases,
            events,
            viewers: viewers::Viewers::new(config.program.viewers_per_address),
            playback: config.playback_key()?,
            distribution,
            max_token_ttl: config.max_token_ttl_secs,
            metrics_token: metrics_token.clone(),
            proxies: config.proxies()?,
            programs: programs::Programs::new(TokenKey::new(&secret), config.clone(), Some(sfu.metrics().program.clone())),
            voters: Default::default(),
            public_url: Default::default(),
            tls: certificate.is_some(),
            turn: config.turn()?,
            sessions: Default::default(),
        });
        let cstore = match cases::start_cstore(&config, state.clone()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "DICOM C-STORE receiver not started");
                None
            }
        };
        let metrics_server = match config.metrics_listen {
            Some(addr) => Some(serve_metrics_apart(addr, state.clone())?),
            None => None,
        };
        let st = state.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(st.clone())
                .app_data(events::query_errors())
                .wrap(actix_web::middleware::from_fn(http::https_pages))
                // Outermost: every line logged for a request carries its id, the
                // access line too (its path only: query strings carry tokens).
                .wrap(actix_web::middleware::from_fn(telemetry::request_span))
                .configure(routes::configure)
        })
        .workers(2)
        .shutdown_timeout(5)
        .bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
        // HTTPS beside it, on its own port, with the same routes.
        let server = match &certificate {
            Some(cert) => server
                .bind_rustls_0_23(config.tls_listen, cert.server_config()?)
                .with_context(|| format!("cannot listen for HTTPS on {} (tls_listen)", config.tls_listen))?,
            None => server,
        };
        let bound = server.addrs_with_scheme();
        let port = bound.iter().find(|(_, s)| *s == "http").map(|(a, _)| a.port()).unwrap_or(config.listen.port());
        let https_port = bound.iter().find(|(_, s)| *s == "https").map(|(a, _)| a.port());
        // How the server's own clients (the programs, the demo's feed) reach it: at
        // the address it listens on, loopback only when it listens on all of them.
        let local = own_url(config.listen, port);
        let ice_local = own_ice_addresses(sfu.candidates());
        let public = config.public_url_on(port, https_port);
        let _ = state.public_url.set(public.clone());
        if certificate.is_some() && config.public_url.is_none() && config.tls_self_signed.is_empty() {
            tracing::warn!(links = %public, "public_url is not set: the links handed out name this address, not the certificate's host name; set public_url");
        }
        tracing::info!(http = %public, https = ?https_port, udp = ?sfu.udp_addrs(), ice_tcp = ?sfu.ice_tcp_addr(), candidates = ?sfu.candidates(), cstore = ?cstore, "casecast listening");
        let server = server.run();

        // The events' programs: started from now on when an event starts, and
        // at once for those that were running when the server last stopped.
        state.programs.listening(local.clone(), ice_local.clone());
        let resumed = state.programs.resume(&state.events.all_started());
        if resumed > 0 {
            tracing::info!(programs = resumed, "events' programs started again after a restart");
        }
        // On SIGINT/SIGTERM the programs stop first (their playlists stay live for
        // the restart), so none joins again while the server drains.
        let st = state.clone();
        actix_web::rt::spawn(async move {
            shutdown_requested().await;
            st.programs.stop_signal();
        });
        // SIGHUP loads the certificate again (a renewal is also seen by itself).
        if let Some(cert) = certificate.clone() {
            actix_web::rt::spawn(async move {
                let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
                while hup.recv().await.is_some() {
                    if let Err(e) = cert.reload() {
                        tracing::error!(error = format!("{e:#}"), "SIGHUP: the TLS certificate does not load; the previous one stays in use");
                    }
                }
            });
        }
        // The cluster: this node's heartbeat and rooms' leases, revocations made on
        // other nodes; SIGUSR1 drains it (no new rooms).
        if state.directory.is_shared() {
            let st = state.clone();
            actix_web::rt::spawn(async move {
                let mut tick = tokio::time::interval(directory::HEARTBEAT);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut beats = 0u64;
                loop {
                    tick.tick().await;
                    beats += 1;
                    // Events created, changed, ended or deleted on other nodes (one
                    // database): a deleted event's program and distribution end here too.
                    if beats.is_multiple_of(5) {
                        match st.events.reload().await {
                            Ok(gone) => {
                                for id in gone {
                                    tracing::info!(event = %id, "the event was deleted on another node");
                                    st.programs.end(&id);
                                    if let Some(aws) = st.distribution.aws() {
                                        aws.end(&id);
                                    }
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot read the events again"),
                        }
                    }
                    let open = st.sfu.rooms().await;
                    match st.directory.beat(&open, &st.viewers.counts()).await {
                        Ok(revoked) => {
                            for (room, invitation) in revoked {
                                st.events.mark_revoked(&invitation);
                                let ended = st.sfu.end_sessions(&room, &invitation, "your invitation was revoked by the organisers").await;
                                if ended > 0 {
                                    tracing::info!(%room, ended, "sessions of an invitation revoked on another node ended");
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "room directory heartbeat failed"),
                    }
                }
            });
            let st = state.clone();
            actix_web::rt::spawn(async move {
                let Ok(mut usr1) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) else { return };
                while usr1.recv().await.is_some() {
                    st.directory.drain();
                }
            });
        }
        // Events whose scheduled start comes.
        let st = state.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                events::start_scheduled(&st).await;
            }
        });

        let mut feed = None;
        if let Some(Demo { room, codec, program }) = demo {
            let key = TokenKey::new(&secret);
            let now = unix_now();
            // The demo is an ordinary event, listed in the console, with the
            // server's room settings as its policy.
            events::ensure_demo_event(&state, &config, &room).await.map_err(|m| anyhow::anyhow!("cannot make the demo event: {m}"))?;
            if program {
                let who = casecast_signaling::Claims { room: events::ALL_EVENTS.into(), role: Role::Operator, name: "demo".into(), iat: now, exp: now, jti: None };
                events::start_event(&state, &who, &room).await.map_err(|(_, m)| anyhow::anyhow!("cannot start the demo's program: {m}"))?;
            }
            let enc = key.mint(&room, Role::Encoder, "demo encoder", now, 30 * 86400);
            let whip_url = format!("{local}/whip/{room}");
            let opts = TestPatternOptions { codec, local_addresses: ice_local.clone(), ..Default::default() };
            feed = Some(TestPatternPublisher::start(opts, HttpWhip::new(whip_url, enc.clone()))?);
            let c1 = key.mint(&room, Role::Commentator, "Dr. Demo", now, 86400);
            let c2 = key.mint(&room, Role::Commentator, "Dr. Second", now, 86400);
            let viewer = key.mint(&room, Role::Viewer, "viewer", now, 86400);
            let center = key.mint(events::ALL_EVENTS, Role::Operator, "Distribution center", now, 86400);
            println!(
                "\ncasecast demo is running.\n\n  Commentator: {public}/room/{room}?token={c1}\n  Second commentator: {public}/room/{room}?token={c2}\n  WHIP (encoder): {public}/whip/{room}   Authorization: Bearer {enc}\n  WHEP (viewer):  {public}/whep/{room}   Authorization: Bearer {viewer}\n  Watch the program: {public}/watch/{room}   (HLS: /hls/{room}/index.m3u8)\n  Metrics: {public}/metrics   Authorization: Bearer {metrics_token}\n  DICOM cases (upload and viewer): {public}/cases?token={c1}\n  Operator API: {public}/api/events   Authorization: Bearer {center}   (document: {public}/api/openapi.json)\n  Console: {public}/console?token={center}\n\nPress Ctrl-C to stop.\n"
            );
        }
        let r = server.await.context("http server failed");
        tracing::info!("shutting down");
        state.directory.leave().await;
        if let Some(m) = metrics_server {
            m.stop(true).await;
        }
        if let Some(mut f) = feed {
            tokio::task::spawn_blocking(move || f.stop()).await.ok();
        }
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.programs.pause_all()).await.ok();
        r
    })
}
