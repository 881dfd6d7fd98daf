//! `casecast-loadtest`: a WHIP publisher per room, N WHEP subscribers spread over
//! the rooms (and the rooms over the nodes given), and a report of what the
//! subscribers received and what it cost each node.

mod report;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use casecast_loadtest::{
    Publisher, PublisherOptions, Subscriber, SubscriberOptions, SubscriberStats, parse_duration,
    scrape_metrics, wait_until,
};
use casecast_signaling::{Role, TokenKey};
use clap::Parser;

use report::{
    Aggregate, ConfigReport, NodeReport, PublisherReport, Report, RoomReport, ServerReport,
    SubscriberReport, SubscriberWindow,
};

/// Bound on every HTTP request (WHIP/WHEP, DELETE, metrics).
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// ICE + DTLS must be up within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack added to the peers' hard deadline and the tokens' lifetime.
const SLACK: Duration = Duration::from_secs(60);

/// Load test a casecast server: one simulated encoder publishes synthetic VP8 + Opus
/// over WHIP, N simulated viewers receive it over WHEP, and the report shows what the
/// viewers got and what the server spent (from its /metrics).
#[derive(Debug, Parser)]
#[command(name = "casecast-loadtest", version)]
struct Args {
    /// Base URL of the server (plain http). Repeat it (or separate with commas) for
    /// several nodes: room k is published into and watched on node k mod nodes.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "CASECAST_URL", value_delimiter = ',')]
    url: Vec<String>,
    /// Room to publish into and watch (with --rooms above 1: `<room>-1`, `<room>-2`, …).
    #[arg(long, default_value = "load")]
    room: String,
    /// Rooms, each with its own publisher; subscriber i watches room i mod rooms.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rooms: u32,
    /// The server's token secret, to mint encoder and viewer tokens.
    #[arg(long, env = "CASECAST_SECRET", hide_env_values = true)]
    secret: String,
    /// The token `/metrics` is scraped with, when the server has one configured
    /// (default: the one it derives from the secret).
    #[arg(long, env = "CASECAST_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Number of subscribers.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Length of the measurement window ("30s", "2m", "1m30s" or plain seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Video bitrate the publisher sends, bit/s.
    #[arg(long, default_value_t = 2_500_000)]
    video_bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    fps: u32,
    /// Delay between subscriber starts.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    ramp: Duration,
    /// How long to wait for all subscribers to receive before measuring.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    warmup_timeout: Duration,
    /// Publish video only.
    #[arg(long)]
    no_audio: bool,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// After the window, join and leave this many subscribers one after another
    /// (each waits for its first video frame) and report the server's RSS before
    /// and after: a leak check.
    #[arg(long, default_value_t = 0)]
    cycles: usize,
}

/// The outcome of `--cycles`.
#[derive(serde::Serialize)]
struct CyclesReport {
    cycles: usize,
    failed: usize,
    seconds: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    rss_change_percent: f64,
}

/// Joins and leaves `n` subscribers in turn, bounded by `limit` in all.
fn run_cycles(args: &Args, token: &dyn Fn(usize) -> String, options: &SubscriberOptions, n: usize, limit: Duration) -> Result<CyclesReport> {
    let url = &args.url[0];
    let rss = || -> Result<f64> {
        let m = scrape_metrics(url, args.scrape_token(), HTTP_TIMEOUT)?;
        m.get("process_resident_memory_bytes").map(|b| b / 1_048_576.0).context("the server reports no process_resident_memory_bytes")
    };
    let viewers = || scrape_metrics(url, args.scrape_token(), HTTP_TIMEOUT).ok().and_then(|m| m.get("casecast_participants{role=\"viewer\"}"));
    let viewers_before = viewers();
    let before = rss()?;
    let start = Instant::now();
    let mut failed = 0;
    let mut done = 0;
    for i in 0..n {
        if start.elapsed() > limit {
            progress(format_args!("cycles: stopped at {i} after {limit:?}"));
            break;
        }
        match Subscriber::start_with(url, &args.room_name(0), &token(i), options.clone()) {
            Ok(s) => {
                if !s.wait_for_video(Duration::from_secs(5)) {
                    failed += 1;
                }
                s.stop();
            }
            Err(_) => failed += 1,
        }
        done += 1;
        if (i + 1) % 100 == 0 {
            progress(format_args!("cycles: {} / {n}", i + 1));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Read the RSS once the server has ended the last cycle's session (bounded).
    if !wait_until(Duration::from_secs(10), || viewers() == viewers_before) {
        progress("cycles: the server still counts cycle viewers after 10 s");
    }
    let after = rss()?;
    Ok(CyclesReport {
        cycles: done,
        failed,
        seconds,
        rss_before_mib: before,
        rss_after_mib: after,
        rss_change_percent: (after - before) / before * 100.0,
    })
}

impl Args {
    /// The token `/metrics` takes: as given, or derived from the secret as the
    /// server derives it (settled once, in `main`).
    fn scrape_token(&self) -> &str {
        self.metrics_token.as_deref().unwrap_or_default()
    }

    /// Room `k`'s name.
    fn room_name(&self, k: usize) -> String {
        if self.rooms == 1 { self.room.clone() } else { format!("{}-{}", self.room, k + 1) }
    }

    /// The node room `k` is on.
    fn node_of(&self, k: usize) -> &str {
        &self.url[k % self.url.len()]
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.metrics_token.is_none() {
        args.metrics_token = Some(casecast_signaling::token::derived_scrape_token(&args.secret));
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("casecast-loadtest: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: impl std::fmt::Display) {
    eprintln!("[casecast-loadtest] {msg}");
}

fn run(args: &Args) -> Result<ExitCode> {
    for url in &args.url {
        if !url.starts_with("http://") {
            bail!("--url must be a plain http:// URL, not {url:?}");
        }
        scrape_metrics(url, args.scrape_token(), HTTP_TIMEOUT)
            .with_context(|| format!("the server at {url} is unreachable (GET /metrics failed)"))?;
    }
    let rooms = args.rooms as usize;

    let ramp_total = args
        .ramp
        .saturating_mul(u32::try_from(args.subscribers).unwrap_or(u32::MAX));
    let lifetime = CONNECT_TIMEOUT + ramp_total + args.warmup_timeout + args.duration + SLACK;
    let key = TokenKey::new(&args.secret);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let mint = |room: &str, role, name: &str| key.mint(room, role, name, now, lifetime.as_secs());

    progress(format_args!(
        "publishing {} kbit/s @ {} fps into {} room(s) from {:?} on {} node(s)",
        args.video_bitrate / 1000,
        args.fps,
        rooms,
        args.room,
        args.url.len(),
    ));
    let publisher_options = PublisherOptions {
        video_bitrate_bps: args.video_bitrate,
        fps: args.fps,
        audio: !args.no_audio,
        http_timeout: HTTP_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        max_duration: lifetime,
        ..PublisherOptions::default()
    };
    let mut publishers = Vec::with_capacity(rooms);
    for k in 0..rooms {
        let room = args.room_name(k);
        let started = Publisher::start(args.node_of(k), &room, &mint(&room, Role::Encoder, "loadtest-publisher"), publisher_options.clone())
            .with_context(|| format!("starting the publisher of room {room:?}"));
        match started {
            Ok(p) => publishers.push(p),
            Err(e) => {
                stop_all(publishers, Vec::new());
                return Err(e);
            }
        }
    }
    for (k, p) in publishers.iter().enumerate() {
        if !p.wait_connected(CONNECT_TIMEOUT) {
            let why = p.stats().error.unwrap_or_else(|| "timed out".into());
            stop_all(publishers, Vec::new());
            bail!("the publisher of room {:?} did not connect: {why}", args.room_name(k));
        }
    }

    progress(format_args!(
        "starting {} subscribers, {:?} apart",
        args.subscribers, args.ramp
    ));
    let subscriber_options = SubscriberOptions {
        http_timeout: HTTP_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        max_duration: lifetime,
        ..SubscriberOptions::default()
    };
    let mut subscribers: Vec<Result<Subscriber, String>> = Vec::with_capacity(args.subscribers);
    for i in 0..args.subscribers {
        if i > 0 {
            std::thread::sleep(args.ramp);
        }
        let (k, room) = (i % rooms, args.room_name(i % rooms));
        let token = mint(&room, Role::Viewer, &format!("loadtest-viewer-{i}"));
        let started = Subscriber::start_with(args.node_of(k), &room, &token, subscriber_options.clone());
        if let Err(e) = &started {
            progress(format_args!("subscriber {i} failed to start: {e:#}"));
        }
        subscribers.push(started.map_err(|e| format!("{e:#}")));
    }
    if !subscribers.iter().any(Result::is_ok) {
        stop_all(publishers, subscribers);
        bail!("no subscriber could start");
    }

    let audio = !args.no_audio;
    let receiving = wait_receiving(&subscribers, audio, args.warmup_timeout);
    let started = subscribers.iter().filter(|s| s.is_ok()).count();
    progress(format_args!("{receiving}/{started} subscribers receiving"));
    if receiving == 0
        && !subscribers
            .iter()
            .flatten()
            .any(|s| s.stats().received_media())
    {
        let sent = publishers[0].stats();
        let first_error = subscribers.iter().flatten().find_map(|s| s.stats().error);
        stop_all(publishers, subscribers);
        bail!(
            "no subscriber received media within {:?} (publisher sent {} video frames{}){}",
            args.warmup_timeout,
            sent.video_frames_sent,
            sent.error
                .map(|e| format!(", publisher error: {e}"))
                .unwrap_or_default(),
            first_error
                .map(|e| format!("; first subscriber error: {e}"))
                .unwrap_or_default(),
        );
    }

    // The measurement window.
    let mut metrics_before = Vec::new();
    for url in &args.url {
        metrics_before.push(
            scrape_metrics(url, args.scrape_token(), HTTP_TIMEOUT)
                .with_context(|| format!("reading {url}/metrics at the start of the window"))?,
        );
    }
    let window_start = Instant::now();
    let publishers_before: Vec<_> = publishers.iter().map(Publisher::stats).collect();
    let before: Vec<Option<SubscriberStats>> = subscribers
        .iter()
        .map(|s| s.as_ref().ok().map(Subscriber::stats))
        .collect();
    progress(format_args!("measuring for {:?}", args.duration));
    sleep_reporting(args.duration);
    let after: Vec<Option<SubscriberStats>> = subscribers
        .iter()
        .map(|s| s.as_ref().ok().map(Subscriber::stats))
        .collect();
    let publishers_after: Vec<_> = publishers.iter().map(Publisher::stats).collect();
    let window = window_start.elapsed().as_secs_f64();
    let metrics_after: Vec<_> = args.url.iter().map(|url| scrape_metrics(url, args.scrape_token(), HTTP_TIMEOUT)).collect();

    let windows: Vec<SubscriberWindow> = subscribers
        .iter()
        .zip(before.into_iter().zip(after))
        .map(|(s, stats)| match (s, stats) {
            (Ok(_), (Some(before), Some(after))) => SubscriberWindow::Started { before, after },
            (Err(e), _) => SubscriberWindow::Failed(e.clone()),
            (Ok(_), _) => SubscriberWindow::Failed("no stats".into()),
        })
        .collect();
    let cycles = if args.cycles > 0 {
        progress(format_args!("{} join/leave cycles", args.cycles));
        let token = |i: usize| mint(&args.room_name(0), Role::Viewer, &format!("loadtest-cycle-{i}"));
        Some(run_cycles(args, &token, &subscriber_options, args.cycles, Duration::from_secs(600))?)
    } else {
        None
    };
    progress("stopping");
    stop_all(publishers, subscribers);

    let subscriber_reports: Vec<SubscriberReport> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| SubscriberReport::new(i, w, window))
        .collect();
    let servers: Vec<Option<ServerReport>> = metrics_before
        .iter()
        .zip(metrics_after)
        .zip(&args.url)
        .map(|((before, after), url)| match after {
            Ok(m) => Some(ServerReport::new(before, &m, window)),
            Err(e) => {
                progress(format_args!("reading {url}/metrics at the end of the window failed: {e:#}"));
                None
            }
        })
        .collect();
    let of = |keep: &dyn Fn(usize) -> bool| -> Vec<SubscriberReport> {
        subscriber_reports.iter().filter(|s| keep(s.index)).cloned().collect()
    };
    let room_reports: Vec<RoomReport> = (0..rooms)
        .map(|k| RoomReport {
            room: args.room_name(k),
            node: args.node_of(k).to_string(),
            publisher: PublisherReport::new(&publishers_before[k], &publishers_after[k], window),
            aggregate: Aggregate::new(&of(&|i| i % rooms == k)),
        })
        .collect();
    let nodes = args.url.len();
    let node_reports: Vec<NodeReport> = args
        .url
        .iter()
        .zip(servers.iter())
        .enumerate()
        .map(|(n, (url, server))| NodeReport {
            url: url.clone(),
            rooms: (0..rooms).filter(|k| k % nodes == n).count(),
            aggregate: Aggregate::new(&of(&|i| (i % rooms) % nodes == n)),
            server: server.clone(),
        })
        .collect();
    let report = Report {
        config: ConfigReport {
            url: args.url[0].clone(),
            urls: args.url.clone(),
            room: args.room.clone(),
            rooms,
            subscribers: args.subscribers,
            duration_s: args.duration.as_secs_f64(),
            video_bitrate_bps: args.video_bitrate,
            fps: args.fps,
            audio,
        },
        window_s: window,
        publisher: PublisherReport::new(&publishers_before[0], &publishers_after[0], window),
        aggregate: Aggregate::new(&subscriber_reports),
        subscribers: subscriber_reports,
        server: servers[0].clone(),
        rooms: room_reports,
        nodes: node_reports,
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(c), Some(obj)) = (&cycles, v.as_object_mut()) {
            obj.insert("cycles".into(), serde_json::to_value(c)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report.to_text());
        if let Some(c) = &cycles {
            println!(
                "join/leave cycles: {} ({} failed) in {:.1} s; server RSS {:.1} MiB -> {:.1} MiB ({:+.1}%)",
                c.cycles, c.failed, c.seconds, c.rss_before_mib, c.rss_after_mib, c.rss_change_percent
            );
        }
    }
    if !report.any_received() {
        eprintln!(
            "casecast-loadtest: error: no subscriber received media in the measurement window"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until every started subscriber receives video (and audio, if sent) or has
/// ended, bounded by `timeout`; returns how many are receiving.
fn wait_receiving(
    subscribers: &[Result<Subscriber, String>],
    audio: bool,
    timeout: Duration,
) -> usize {
    let is_receiving = |s: &SubscriberStats| s.video.frames > 0 && (!audio || s.audio.frames > 0);
    let stats = || subscribers.iter().flatten().map(Subscriber::stats).collect::<Vec<_>>();
    wait_until(timeout, || stats().iter().all(|s| is_receiving(s) || s.finished));
    stats().iter().filter(|s| is_receiving(s)).count()
}

/// Sleeps for `duration`, printing the elapsed time every 10 s.
fn sleep_reporting(duration: Duration) {
    let start = Instant::now();
    let mut next_report = Duration::from_secs(10);
    while let Some(left) = duration
        .checked_sub(start.elapsed())
        .filter(|d| !d.is_zero())
    {
        std::thread::sleep(left.min(Duration::from_millis(500)));
        if start.elapsed() >= next_report && start.elapsed() < duration {
            progress(format_args!(
                "{:.0} s / {:.0} s",
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64()
            ));
            next_report += Duration::from_secs(10);
        }
    }
}

/// Stops everything at once, then waits for each (every stop DELETEs its resource).
fn stop_all(publishers: Vec<Publisher>, subscribers: Vec<Result<Subscriber, String>>) {
    for p in &publishers {
        p.request_stop();
    }
    for s in subscribers.iter().flatten() {
        s.request_stop();
    }
    for s in subscribers.into_iter().flatten() {
        if let Some(e) = s.stop().error {
            progress(format_args!("subscriber: {e}"));
        }
    }
    for p in publishers {
        if let Some(e) = p.stop().error {
            progress(format_args!("publisher: {e}"));
        }
    }
}
