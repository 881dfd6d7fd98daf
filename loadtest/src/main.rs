//! `casecast-loadtest`: one WHIP publisher, N WHEP subscribers, and a report of what
//! the subscribers received and what it cost the server.

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
    Aggregate, ConfigReport, PublisherReport, Report, ServerReport, SubscriberReport,
    SubscriberWindow,
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
    /// Base URL of the server (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "CASECAST_URL")]
    url: String,
    /// Room to publish into and watch.
    #[arg(long, default_value = "load")]
    room: String,
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
    let rss = || -> Result<f64> {
        let m = scrape_metrics(&args.url, args.scrape_token(), HTTP_TIMEOUT)?;
        m.get("process_resident_memory_bytes").map(|b| b / 1_048_576.0).context("the server reports no process_resident_memory_bytes")
    };
    let viewers = || scrape_metrics(&args.url, args.scrape_token(), HTTP_TIMEOUT).ok().and_then(|m| m.get("casecast_participants{role=\"viewer\"}"));
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
        match Subscriber::start_with(&args.url, &args.room, &token(i), options.clone()) {
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
    if !args.url.starts_with("http://") {
        bail!("--url must be a plain http:// URL, not {:?}", args.url);
    }
    scrape_metrics(&args.url, args.scrape_token(), HTTP_TIMEOUT).with_context(|| {
        format!(
            "the server at {} is unreachable (GET /metrics failed)",
            args.url
        )
    })?;

    let ramp_total = args
        .ramp
        .saturating_mul(u32::try_from(args.subscribers).unwrap_or(u32::MAX));
    let lifetime = CONNECT_TIMEOUT + ramp_total + args.warmup_timeout + args.duration + SLACK;
    let key = TokenKey::new(&args.secret);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let mint = |role, name: &str| key.mint(&args.room, role, name, now, lifetime.as_secs());

    progress(format_args!(
        "publishing {} kbit/s @ {} fps into room {:?} at {}",
        args.video_bitrate / 1000,
        args.fps,
        args.room,
        args.url
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
    let publisher = Publisher::start(
        &args.url,
        &args.room,
        &mint(Role::Encoder, "loadtest-publisher"),
        publisher_options,
    )
    .context("starting the publisher")?;
    if !publisher.wait_connected(CONNECT_TIMEOUT) {
        let stats = publisher.stop();
        bail!(
            "the publisher did not connect: {}",
            stats.error.as_deref().unwrap_or("timed out")
        );
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
        let token = mint(Role::Viewer, &format!("loadtest-viewer-{i}"));
        let started =
            Subscriber::start_with(&args.url, &args.room, &token, subscriber_options.clone());
        if let Err(e) = &started {
            progress(format_args!("subscriber {i} failed to start: {e:#}"));
        }
        subscribers.push(started.map_err(|e| format!("{e:#}")));
    }
    if !subscribers.iter().any(Result::is_ok) {
        publisher.stop();
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
        let sent = publisher.stats();
        let first_error = subscribers.iter().flatten().find_map(|s| s.stats().error);
        stop_all(publisher, subscribers);
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
    let metrics_before = scrape_metrics(&args.url, args.scrape_token(), HTTP_TIMEOUT)
        .context("reading /metrics at the start of the window")?;
    let window_start = Instant::now();
    let publisher_before = publisher.stats();
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
    let publisher_after = publisher.stats();
    let window = window_start.elapsed().as_secs_f64();
    let metrics_after = scrape_metrics(&args.url, args.scrape_token(), HTTP_TIMEOUT);

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
        let token = |i: usize| mint(Role::Viewer, &format!("loadtest-cycle-{i}"));
        Some(run_cycles(args, &token, &subscriber_options, args.cycles, Duration::from_secs(600))?)
    } else {
        None
    };
    progress("stopping");
    stop_all(publisher, subscribers);

    let subscriber_reports: Vec<SubscriberReport> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| SubscriberReport::new(i, w, window))
        .collect();
    let server = match metrics_after {
        Ok(m) => Some(ServerReport::new(&metrics_before, &m, window)),
        Err(e) => {
            progress(format_args!(
                "reading /metrics at the end of the window failed: {e:#}"
            ));
            None
        }
    };
    let report = Report {
        config: ConfigReport {
            url: args.url.clone(),
            room: args.room.clone(),
            subscribers: args.subscribers,
            duration_s: args.duration.as_secs_f64(),
            video_bitrate_bps: args.video_bitrate,
            fps: args.fps,
            audio,
        },
        window_s: window,
        publisher: PublisherReport::new(&publisher_before, &publisher_after, window),
        aggregate: Aggregate::new(&subscriber_reports),
        subscribers: subscriber_reports,
        server,
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
fn stop_all(publisher: Publisher, subscribers: Vec<Result<Subscriber, String>>) {
    publisher.request_stop();
    for s in subscribers.iter().flatten() {
        s.request_stop();
    }
    for s in subscribers.into_iter().flatten() {
        if let Some(e) = s.stop().error {
            progress(format_args!("subscriber: {e}"));
        }
    }
    if let Some(e) = publisher.stop().error {
        progress(format_args!("publisher: {e}"));
    }
}
