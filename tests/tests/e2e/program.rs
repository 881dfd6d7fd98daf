//! The program: HLS written and served, played in Chromium, pushed over RTMP,
//! recorded, carried through a dropped feed and a restarted compositor, its layout,
//! labels and main source switched live, its glass-to-glass delay, its monitor feed.

use super::*;
use anyhow::Context as _;

/// The segments a playlist lists (MPEG-TS, or fMP4 for low-latency HLS).
pub(super) fn segments(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.ends_with(".ts") || (!l.starts_with('#') && l.ends_with(".m4s"))).map(str::to_string).collect()
}

/// ffprobe's view of a segment: (video line, audio line, decoded video frames).
pub(super) fn probe_segment(server: &Server, name: &str) -> Result<(String, String, u32)> {
    let resp = ureq::get(&format!("{}/hls/demo/{name}", server.url)).call()?;
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("video/mp2t"));
    let dir = TempDir::new("hls");
    let seg = dir.0.join("seg.ts");
    std::fs::write(&seg, resp.into_body().read_to_vec()?)?;
    probe_segment_file(&seg)
}

/// ffprobe's view of a segment file: (video line, audio line, decoded video frames).
pub(super) fn probe_segment_file(seg: &std::path::Path) -> Result<(String, String, u32)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,avg_frame_rate,nb_read_frames", "-of", "compact"])
        .arg(seg)
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |codec: &str| probe.lines().find(|l| l.contains(codec)).unwrap_or("").to_string();
    let (video, audio) = (line("h264"), line("aac"));
    let frames = video.split("nb_read_frames=").nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    Ok((video, audio, frames))
}

#[test]
fn the_demo_program_is_written_as_hls_and_served() -> Result<()> {
    // The compositor joins the room over the signaling (webrtcbin), mixes it and
    // writes HLS; the server serves it. Both presets; the playlist ends as VOD.
    for (preset, seconds) in [("low-latency", 1u32), ("quality", 6)] {
        let mut server = Server::demo(&["--program-preset", preset])?;
        let playlist = format!("{}/hls/demo/index.m3u8", server.url);
        let first = wait_for("two HLS segments", Duration::from_secs(90), || {
            let (code, text) = http_get(&playlist).ok()?;
            let s = segments(&text);
            (code == 200 && s.len() >= 2).then_some((s, text))
        })?;
        assert!(first.1.contains(&format!("#EXT-X-TARGETDURATION:{seconds}")), "{preset}: {}", first.1);
        // Players are held back as the preset says.
        let hold_back = seconds * if seconds >= 4 { 4 } else { 3 };
        assert!(first.1.contains(&format!("#EXT-X-SERVER-CONTROL:HOLD-BACK={hold_back}.0")), "{preset}: {}", first.1);
        // Gzipped for players that take it; segments are sent as they are.
        let gz = ureq::get(&playlist).header("Accept-Encoding", "gzip").call()?;
        assert_eq!(gz.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
        let seg = ureq::get(&format!("{}/hls/demo/{}", server.url, first.0[0])).header("Accept-Encoding", "gzip").call()?;
        assert!(seg.headers().get("content-encoding").is_none_or(|v| v == "identity"));
        // The playlist advances.
        wait_for("a newer segment", Duration::from_secs(30), || {
            let (_, text) = http_get(&playlist).ok()?;
            segments(&text).into_iter().any(|s| !first.0.contains(&s)).then_some(())
        })?;
        // A segment is playable H.264 + AAC at the program's size and rate, one GOP long.
        let (video, audio, frames) = probe_segment(&server, &first.0[1])?;
        assert!(video.contains("codec_name=h264|width=1280|height=720|avg_frame_rate=30/1"), "{video}");
        assert!(audio.contains("codec_name=aac"), "{audio}");
        // One GOP: at most the frames of its length; at least half of them even on a
        // loaded machine (the encoder drops frames it cannot keep up with, the clock
        // does not slip).
        let expected = 30 * seconds;
        assert!(frames >= expected / 2 && frames <= expected * 12 / 10, "{preset}: {frames} frames, expected about {expected}");
        let (code, _) = http_get(&format!("{}/hls/demo/..%2Fsecret", server.url))?;
        assert_eq!(code, 404);
        // The program reports itself (its rate as this machine manages it).
        wait_for("program metrics", Duration::from_secs(30), || {
            let fps = server.metric("casecast_program_fps{room=\"demo\"}")?;
            let up = server.metric("casecast_program_output_up{output=\"hls\",room=\"demo\"}")?;
            let seg = server.metric("casecast_program_hls_segments_total{room=\"demo\"}")?;
            let req = server.metric("casecast_hls_playlist_requests_total{room=\"demo\"}")?;
            let bps = server.metric("casecast_program_encoder_bitrate_bps{room=\"demo\"}")?;
            (fps > 5.0 && up == 1.0 && seg >= 2.0 && req >= 2.0 && bps > 100_000.0).then_some(())
        })?;
        // The event ends: the playlist is closed and stays playable as VOD. (A server
        // stopped mid-event leaves it live, for viewers to ride through a restart.)
        let center = server.token("*", Role::Operator, "center");
        assert_eq!(api("POST", &format!("{}/api/events/demo/end", server.url), Some(&center), None)?.0, 200);
        let path = server.data_dir().join("hls/demo/index.m3u8");
        let text = wait_for("the playlist to end", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&path).ok()?;
            text.trim_end().ends_with("#EXT-X-ENDLIST").then_some(text)
        })?;
        assert!(segments(&text).len() >= 3, "{preset}: {text}");
        assert!(server.terminate()?.success());
    }
    Ok(())
}

#[test]
fn chromium_plays_the_program_on_the_watch_page() -> Result<()> {
    let server = Server::demo(&["--program-preset", "low-latency"])?;
    let page = Browser::start()?;
    page.goto(&format!("{}/watch/demo", server.url))?;
    let time = |b: &Browser| b.eval("return document.getElementById('video').currentTime").ok().and_then(|v| v.as_f64());
    let first = wait_for("the program to play", Duration::from_secs(90), || time(&page).filter(|&t| t > 1.0))?;
    wait_for("playback to advance", Duration::from_secs(30), || time(&page).filter(|&t| t > first + 2.0))?;
    let status = page.eval("return document.getElementById('status').textContent")?;
    assert!(status.as_str().is_some_and(|s| s == "live" || s.contains("behind live")), "{status}");
    // The page's playlist reloads carry its viewer id: one viewer, counted once.
    assert_eq!(server.metric("casecast_hls_viewers{room=\"demo\"}"), Some(1.0));
    // Timed metadata from the operators' API reaches the page inside the stream (ID3
    // in the segments): a message, then a poll.
    let op = server.token("demo", Role::Operator, "Ops Fay");
    let url = format!("{}/api/events/demo/metadata", server.url);
    assert_eq!(api("POST", &url, Some(&op), Some(json!({"text": ""})))?.0, 400);
    assert_eq!(api("POST", &url, Some(&op), Some(json!({"text": "Incision at 10:42 — watch the left port"})))?.0, 202);
    assert_eq!(api("POST", &url, Some(&op), Some(json!({"poll": {"question": "Convert to open?", "options": ["Yes", "No"]}})))?.0, 202);
    let got = wait_for("the message and the poll on the watch page", Duration::from_secs(30), || {
        let m = page.eval("return window.casecastWatch.metadata").ok()?;
        (m.as_array()?.len() >= 2).then_some(m)
    })?;
    assert_eq!(got[0]["text"], "Incision at 10:42 — watch the left port", "{got}");
    assert_eq!(got[1]["question"], "Convert to open?", "{got}");
    let text = page.eval("return document.getElementById('metadata').textContent")?;
    assert!(text.as_str().is_some_and(|t| t.contains("watch the left port") && t.contains("Convert to open?")), "{text}");
    // ffmpeg's demuxer, like Safari's native player, takes the stream as timed ID3
    // only from its metadata descriptor: it names it so.
    let hls = server.data_dir().join("hls/demo");
    let last = segments(&std::fs::read_to_string(hls.join("index.m3u8"))?).last().cloned().unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name", "-of", "compact"])
        .arg(hls.join(&last))
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(probe.contains("codec_name=timed_id3|codec_type=data"), "{probe}");
    Ok(())
}

/// An RTMP receiver, as an ingest point is: `ffmpeg -listen 1` takes one connection
/// and ends with it, so it is started again whenever it ends (the push retries after a
/// failed session, and an ingest point takes it back). Each connection is written to
/// a file of its own, `<stem>-<n>.flv`. Stopped on drop.
pub(super) struct RtmpReceiver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    files: std::sync::Arc<std::sync::Mutex<Vec<std::path::PathBuf>>>,
}

impl RtmpReceiver {
    /// The largest file received so far, with its size.
    pub(super) fn largest(&self) -> Option<(std::path::PathBuf, u64)> {
        let files = self.files.lock().unwrap();
        files.iter().map(|f| (f.clone(), file_size(f))).max_by_key(|(_, n)| *n)
    }

    /// How many connections it has taken (or is waiting for).
    pub(super) fn sessions(&self) -> usize {
        self.files.lock().unwrap().len()
    }
}

impl Drop for RtmpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts an [`RtmpReceiver`] on `port` writing `dir/<stem>-<n>.flv`; waits until it
/// listens (read from /proc: a test connection would be taken as the one RTMP client
/// it accepts), and fails if it cannot (the port was taken).
pub(super) fn rtmp_receiver(port: u16, dir: &std::path::Path, stem: &str) -> Result<RtmpReceiver> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listen = move |out: &std::path::Path| -> Result<Proc> {
        let child = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-listen", "1", "-timeout", "120", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/program"))
            .args(["-c", "copy", "-f", "flv"])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut receiver = Proc(child);
        let listening = || {
            let want = format!(":{port:04X} ");
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split_whitespace().nth(1).is_some_and(|local| format!("{local} ").ends_with(&want)) && l.split_whitespace().nth(3) == Some("0A"))
        };
        wait_for("the RTMP receiver to listen", Duration::from_secs(15), || {
            if let Ok(Some(status)) = receiver.0.try_wait() {
                return Some(Err(anyhow::anyhow!("ffmpeg -listen on port {port} exited: {status}")));
            }
            listening().then_some(Ok(()))
        })??;
        Ok(receiver)
    };
    let (dir, stem) = (dir.to_path_buf(), stem.to_string());
    let file = move |n: usize| dir.join(format!("{stem}-{n}.flv"));
    let mut current = listen(&file(0))?;
    let files = std::sync::Arc::new(std::sync::Mutex::new(vec![file(0)]));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (f, s) = (files.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            if let Ok(Some(_)) = current.0.try_wait() {
                let n = f.lock().unwrap().len();
                match listen(&file(n)) {
                    Ok(next) => {
                        f.lock().unwrap().push(file(n));
                        current = next;
                    }
                    Err(e) => {
                        eprintln!("the RTMP receiver did not start again: {e}");
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(RtmpReceiver { stop, thread: Some(thread), files })
}

pub(super) fn file_size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn the_program_is_pushed_over_rtmp_and_reconnects_when_the_receiver_restarts() -> Result<()> {
    let dir = TempDir::new("rtmp");
    let port = free_tcp_port();
    let receiver = rtmp_receiver(port, &dir.0, "first")?;
    let url = format!("rtmp://127.0.0.1:{port}/live/program");
    let _server = Server::demo(&["--program-preset", "low-latency", "--program-rtmp", &url])?;
    let received = |r: &RtmpReceiver| r.largest().filter(|(_, n)| *n > 500_000).map(|(f, _)| f);
    let first = wait_for("the receiver to get the program", Duration::from_secs(90), || received(&receiver))
        .with_context(|| format!("{} connection(s) taken, largest {:?}", receiver.sessions(), receiver.largest()))?;
    if receiver.sessions() > 1 {
        // Not a failure a viewer sees (the push came back), but worth a look.
        eprintln!("the push took {} connections to deliver the program", receiver.sessions());
    }

    // The receiver goes away and comes back: the push reconnects by itself.
    drop(receiver);
    let second = rtmp_receiver(port, &dir.0, "second")?;
    wait_for("the push to reconnect", Duration::from_secs(60), || received(&second))
        .with_context(|| format!("{} connection(s) taken, largest {:?}", second.sessions(), second.largest()))?;

    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height,avg_frame_rate", "-of", "compact"])
        .arg(&first)
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(probe.contains("codec_name=h264|width=1280|height=720|avg_frame_rate="), "{probe}");
    // FLV stamps frames in whole milliseconds (33 or 34 ms at 30 fps): over a short
    // recording ffprobe may average to 1000/33 rather than 30/1.
    let fps = probe
        .lines()
        .find(|l| l.contains("codec_name=h264"))
        .and_then(|l| l.split("avg_frame_rate=").nth(1))
        .and_then(|r| r.trim().split_once('/'))
        .and_then(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?))
        .unwrap_or(0.0);
    assert!((fps - 30.0).abs() < 0.5, "30 fps expected: {probe}");
    assert!(probe.contains("codec_name=aac"), "{probe}");
    Ok(())
}

/// A segment's frames, scaled down to 64×36 grey.
pub(super) fn grey_frames(seg: &std::path::Path) -> Vec<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(seg)
        .args(["-vf", "scale=64:36,format=gray", "-f", "rawvideo", "-"])
        .output();
    out.map(|o| o.stdout.chunks_exact(64 * 36).map(<[u8]>::to_vec).collect()).unwrap_or_default()
}

/// True if a segment shows a live picture: not black, and moving.
pub(super) fn shows_live_feed(seg: &std::path::Path) -> bool {
    let frames = grey_frames(seg);
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else { return false };
    let mean = last.iter().map(|&v| v as u64).sum::<u64>() / last.len() as u64;
    let diff: u64 = first.iter().zip(last).map(|(a, b)| a.abs_diff(*b) as u64).sum();
    mean > 50 && diff > 64 * 36 * 4
}

#[test]
fn the_program_keeps_going_while_the_feed_drops_and_shows_it_again() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-9";
    let hls = TempDir::new("program");
    let playlist = hls.0.join("index.m3u8");
    let metrics_port = free_tcp_port();
    let _compositor = compositor_process(&server, room, &hls.0, &["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])?;
    let whip = format!("{}/whip/{room}", server.url);
    let listed = || segments(&std::fs::read_to_string(&playlist).unwrap_or_default());
    let latest_is_live = || listed().last().is_some_and(|s| shows_live_feed(&hls.0.join(s)));

    let publisher = gst_publisher(&whip, &server.token(room, Role::Encoder, "enc"), &["--width", "640", "--height", "360"])?;
    wait_for("the program to show the feed", Duration::from_secs(90), || latest_is_live().then_some(()))?;
    // The compositor running alone reports its own metrics.
    let scrape = |name: &str| {
        let (_, text) = http_get(&format!("http://127.0.0.1:{metrics_port}/metrics")).ok()?;
        metric_value(&text, name)
    };
    wait_for("the compositor's metrics", Duration::from_secs(20), || {
        let fps = scrape(&format!("casecast_program_fps{{room=\"{room}\"}}"))?;
        let segments = scrape(&format!("casecast_program_hls_segments_total{{room=\"{room}\"}}"))?;
        (fps > 5.0 && segments >= 1.0).then_some(())
    })?;

    assert!(!slate_says(&hls.0.join(listed().last().unwrap()), "interrupted"));
    // The feed drops: the program goes on, segment after segment, and says so.
    assert!(publisher.terminate()?.success());
    let before = listed().len();
    wait_for("8 s of program without the feed", Duration::from_secs(40), || (listed().len() >= before + 8).then_some(()))?;
    wait_for("the slate over the last frame", Duration::from_secs(20), || {
        slate_says(&hls.0.join(listed().last()?), "interrupted").then_some(())
    })?;

    // It comes back, and the program shows it live again.
    let _publisher = gst_publisher(&whip, &server.token(room, Role::Encoder, "enc"), &["--width", "640", "--height", "360"])?;
    let back = listed().len();
    wait_for("the program to show the returning feed", Duration::from_secs(60), || {
        (listed().len() > back && latest_is_live()).then_some(())
    })?;
    wait_for("the slate to go", Duration::from_secs(20), || (!slate_says(&hls.0.join(listed().last()?), "interrupted")).then_some(()))?;
    Ok(())
}

/// A standalone compositor for `room` writing HLS into `hls`.
pub(super) fn compositor_process(server: &Server, room: &str, hls: &std::path::Path, extra: &[&str]) -> Result<Proc> {
    Ok(Proc(
        std::process::Command::new(casecast_bin())
            .args(["compositor", "--url", &server.url, "--room", room, "--preset", "low-latency"])
            .args(["--local-address", "127.0.0.1", "--token", &server.token(room, Role::Operator, "program")])
            .arg("--hls-dir")
            .arg(hls)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    ))
}

#[test]
fn a_restarted_compositor_continues_the_playlist() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-12";
    let hls = TempDir::new("program");
    let playlist = hls.0.join("index.m3u8");
    let read = || std::fs::read_to_string(&playlist).unwrap_or_default();
    let _publisher = gst_publisher(&format!("{}/whip/{room}", server.url), &server.token(room, Role::Encoder, "enc"), &["--width", "640", "--height", "360"])?;
    let first = compositor_process(&server, room, &hls.0, &[])?;
    let before = wait_for("three segments", Duration::from_secs(90), || {
        let s = segments(&read());
        (s.len() >= 3).then_some(s)
    })?;
    // The compositor dies without a word (no ENDLIST); another takes over.
    drop(first);
    let _second = compositor_process(&server, room, &hls.0, &[])?;
    let text = wait_for("segments of the new compositor", Duration::from_secs(90), || {
        let text = read();
        (segments(&text).iter().filter(|s| !before.contains(s)).count() >= 3).then_some(text)
    })?;
    // The same playlist goes on: the old segments, a discontinuity, the new ones.
    let listed = segments(&text);
    assert_eq!(listed[..before.len()], before[..], "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    for s in [&listed[0], listed.last().unwrap()] {
        let (video, _, _) = probe_segment_file(&hls.0.join(s))?;
        assert!(video.contains("codec_name=h264"), "{s}: {video}");
    }
    Ok(())
}

/// Whether the slate (white words on a dark band near the top of the program) of a
/// segment's last frame says `word`, read with tesseract.
pub(super) fn slate_says(seg: &std::path::Path, word: &str) -> bool {
    let png = seg.with_extension("slate.png");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(seg)
        .args(["-update", "1", "-vf", "crop=iw*0.6:ih/8:iw*0.2:ih/12,format=gray,lutyuv=y='if(gt(val,200),0,255)'"])
        .arg(&png)
        .status()
        .is_ok_and(|s| s.success());
    let text = made
        .then(|| std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(&png).args(["stdout", "--psm", "6"]).output().ok())
        .flatten()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_lowercase())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&png);
    text.contains(word)
}

/// Mean grey level of a frame's columns `x0..x1` (64×36 frames).
pub(super) fn mean_of_columns(frame: &[u8], x0: usize, x1: usize) -> u64 {
    let vals: Vec<u64> = (0..36).flat_map(|y| (x0..x1).map(move |x| (y, x))).map(|(y, x)| frame[y * 64 + x] as u64).collect();
    vals.iter().sum::<u64>() / vals.len() as u64
}

#[test]
fn the_operator_switches_the_layout_while_live() -> Result<()> {
    let server = Server::demo(&["--program-preset", "low-latency"])?;
    let hls = server.data_dir().join("hls/demo");
    let listed = || segments(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default());
    let right_third = |seg: &str| grey_frames(&hls.join(seg)).last().map(|f| mean_of_columns(f, 44, 64));
    wait_for("the program to show the feed full frame", Duration::from_secs(90), || {
        listed().last().and_then(|s| right_third(s)).filter(|&m| m > 60).map(|_| ())
    })?;

    let api = format!("{}/api/rooms/demo/program", server.url);
    let op = format!("Bearer {}", server.token("demo", Role::Operator, "desk"));
    let json = ("Content-Type", "application/json");
    let (s, _, _) = http_post(&api, &[json], br#"{"layout":"side_by_side"}"#)?;
    assert_eq!(s, 401);
    let viewer = format!("Bearer {}", server.token("demo", Role::Viewer, "v"));
    assert_eq!(http_post(&api, &[json, ("Authorization", &viewer)], br#"{"layout":"grid"}"#)?.0, 403);
    let (s, _, body) = http_post(&api, &[json, ("Authorization", &op)], br#"{"layout":"mosaic"}"#)?;
    assert_eq!(s, 400);
    assert!(body.contains("side_by_side"), "names the layouts: {body}");
    let other = format!("Bearer {}", server.token("nowhere", Role::Operator, "desk"));
    let url = format!("{}/api/rooms/nowhere/program", server.url);
    assert_eq!(http_post(&url, &[json, ("Authorization", &other)], br#"{"layout":"grid"}"#)?.0, 404);

    let before = listed().len();
    let (s, _, body) = http_post(&api, &[json, ("Authorization", &op)], br#"{"layout":"side_by_side"}"#)?;
    assert_eq!(s, 202, "{body}");
    // Segments keep coming, and the feed now leaves the right third empty.
    wait_for("the new layout in the program", Duration::from_secs(30), || {
        let l = listed();
        (l.len() > before + 1 && right_third(l.last()?)? < 30).then_some(())
    })?;
    Ok(())
}

#[test]
fn the_program_is_recorded_as_mp4_files_listed_per_event() -> Result<()> {
    let server = Server::demo(&["--program-preset", "low-latency", "--program-recording-split-secs", "5"])?;
    let list = format!("{}/api/rooms/demo/recordings", server.url);
    let op = format!("Bearer {}", server.token("demo", Role::Operator, "desk"));
    let get = |url: &str, auth: &str| -> Option<(u16, Vec<u8>)> {
        let mut r = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent().get(url).header("Authorization", auth).call().ok()?;
        Some((r.status().as_u16(), r.body_mut().read_to_vec().ok()?))
    };
    // A file is finished once the next one has started: the recorder closes it in
    // the background (async-finalize), so for a moment both may show "recording".
    let files = wait_for("a recorded file finished and the next one started", Duration::from_secs(90), || {
        let (code, body) = get(&list, &op)?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        let files = v["recordings"].as_array()?.clone();
        (code == 200 && files.len() >= 2 && files[0]["state"] != "recording").then_some(files)
    })?;
    // The one cut off by the next is finished; the last is being written.
    assert_eq!((files[0]["state"].as_str(), files[0]["complete"].as_bool()), (Some("complete"), Some(true)), "{files:?}");
    assert_eq!(files.last().unwrap()["state"], "recording", "{files:?}");
    let viewer = format!("Bearer {}", server.token("demo", Role::Viewer, "v"));
    assert_eq!(get(&list, &viewer).map(|r| r.0), Some(403));
    // The operator stops the recording: its last file is finished at once (it
    // plays), and no file grows while it is off; back on, a new file starts.
    let op_token = server.token("demo", Role::Operator, "desk");
    let switches = format!("{}/api/events/demo/program", server.url);
    let recorded = || -> Vec<(String, u64)> {
        let dir = server.data_dir().join("recordings/demo");
        let mut v: Vec<_> = std::fs::read_dir(dir).map(|d| d.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), file_size(&e.path()))).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let distribution = format!("{}/api/events/demo/distribution", server.url);
    wait_for("the recording reported on", Duration::from_secs(20), || {
        let (_, d) = api("GET", &distribution, Some(&op_token), None).ok()?;
        (d["program"]["recording"] == true && d["outputs"].as_array()?.iter().any(|o| o["output"] == "recording" && o["up"] == true)).then_some(())
    })?;
    assert_eq!(api("POST", &switches, Some(&op_token), Some(json!({"recording": false})))?, (202, json!({"recording": false})));
    let off = wait_for("the recording reported off", Duration::from_secs(20), || {
        let (_, d) = api("GET", &distribution, Some(&op_token), None).ok()?;
        (d["program"]["recording"] == false).then(&recorded)
    })?;
    let last = server.data_dir().join("recordings/demo").join(&off.last().unwrap().0);
    let probe = std::process::Command::new("ffprobe").args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(&last).output()?;
    let secs: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
    assert!(probe.status.success() && secs > 0.5, "the last file is finished and plays: {secs} s, {}", String::from_utf8_lossy(&probe.stderr));
    // Off for two segments' worth of program: nothing is written.
    let hls_dir = server.data_dir().join("hls/demo");
    let seg_count = || std::fs::read_dir(&hls_dir).map(|d| d.count()).unwrap_or(0);
    let segs = seg_count();
    wait_for("two more segments while the recording is off", Duration::from_secs(30), || (seg_count() >= segs + 2).then_some(()))?;
    assert_eq!(recorded(), off, "nothing recorded while off");
    assert_eq!(api("POST", &switches, Some(&op_token), Some(json!({"recording": true})))?.0, 202);
    wait_for("a new file once back on", Duration::from_secs(30), || {
        let now = recorded();
        (now.len() > off.len() && now.last()?.1 > 0).then_some(())
    })?;
    let (_, log) = api("GET", &format!("{}/api/audit?event=demo", server.url), Some(&op_token), None)?;
    let actions: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(&actions[..2], ["program.recording_on", "program.recording_off"], "{log}");
    for bad in [json!({}), json!({"main": "x"}), json!({"layout": "mosaic"}), json!({"recording": "yes"}), json!({"on_air": true, "volume": 3})] {
        let (code, body) = api("POST", &switches, Some(&op_token), Some(bad.clone()))?;
        assert!(code == 400 && body["error"].is_string(), "{bad} → {code} {body}");
    }
    let url = format!("{}{}", server.url, files[0]["url"].as_str().unwrap());
    let (code, mp4) = get(&url, &op).unwrap();
    assert_eq!(code, 200);
    let dir = TempDir::new("rec");
    let path = dir.0.join("first.mp4");
    std::fs::write(&path, mp4)?;
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height:format=duration", "-of", "compact"])
        .arg(&path)
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(probe.contains("codec_name=h264|width=1280|height=720"), "{probe}");
    assert!(probe.contains("codec_name=aac"), "{probe}");
    let duration: f64 = probe.lines().find_map(|l| l.strip_prefix("format|duration=")).and_then(|d| d.trim().parse().ok()).unwrap_or(0.0);
    assert!((3.0..=12.0).contains(&duration), "a split file lasts about 5 s: {duration}");
    Ok(())
}

/// The last frame of a segment, 64×36 RGB.
pub(super) fn last_rgb_frame(seg: &std::path::Path) -> Option<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(seg)
        .args(["-vf", "scale=64:36,format=rgb24", "-f", "rawvideo", "-"])
        .output()
        .ok()?;
    out.stdout.chunks_exact(64 * 36 * 3).last().map(<[u8]>::to_vec)
}

/// Mean (r, g, b) of the frame's central quarter.
pub(super) fn centre_colour(f: &[u8]) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    let mut n = 0;
    for y in 9..27 {
        for x in 16..48 {
            let i = (y * 64 + x) * 3;
            sum = (sum.0 + f[i] as u64, sum.1 + f[i + 1] as u64, sum.2 + f[i + 2] as u64);
            n += 1;
        }
    }
    (sum.0 / n, sum.1 / n, sum.2 / n)
}

/// A rectangle of a segment's last frame, RGB.
pub(super) fn last_region(seg: &std::path::Path, (x, y, w, h): (u32, u32, u32, u32)) -> Option<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(seg)
        .args(["-vf", &format!("crop={w}:{h}:{x}:{y},format=rgb24"), "-f", "rawvideo", "-"])
        .output()
        .ok()?;
    out.stdout.chunks_exact((w * h * 3) as usize).last().map(<[u8]>::to_vec)
}

/// White pixels (all channels above 200) in a rectangle of a segment's last frame.
pub(super) fn white_pixels(seg: &std::path::Path, rect: (u32, u32, u32, u32)) -> Option<usize> {
    Some(last_region(seg, rect)?.chunks_exact(3).filter(|p| p.iter().all(|&c| c > 200)).count())
}

/// Whether most of a rectangle of a segment's last frame is Chromium's fake-camera green.
pub(super) fn mostly_green(seg: &std::path::Path, rect: (u32, u32, u32, u32)) -> Option<bool> {
    let region = last_region(seg, rect)?;
    let green = region.chunks_exact(3).filter(|p| p[1] > 100 && p[0] < 90 && p[2] < 90).count();
    Some(green * 2 > region.len() / 3)
}

#[test]
fn the_operator_makes_a_commentator_the_main_source() -> Result<()> {
    let server = Server::demo(&["--program-preset", "low-latency"])?;
    let hls = server.data_dir().join("hls/demo");
    let latest = || segments(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default()).last().cloned();
    let page = Browser::start()?;
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Green")))?;
    let id = wait_for("the commentator to join", Duration::from_secs(60), || {
        let id = page.eval("return window.casecast.participantId").ok()?;
        let live = page.eval("return document.body.dataset.state").ok()? == "live";
        (live && id.is_string()).then_some(id.as_str()?.to_string())
    })?;
    // The program comes back into the room: the commentator's page decodes the
    // monitor, at the program's size.
    wait_for("the program monitor to decode in the commentator's page", Duration::from_secs(60), || {
        page_stats(&page)["programFramesDecoded"].as_f64().filter(|&n| n > 30.0)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_stats(&page)))?;
    let size = page.eval("const v = document.querySelector('.tile.program video'); return [v.videoWidth, v.videoHeight]")?;
    assert_eq!(size, json!([1280, 720]), "the monitor is the program itself");
    // In picture-in-picture the commentator's tile (bottom left, 256×144 from
    // (16, 560)) carries a name label along its bottom edge: white text where the
    // fake camera has none (its rotating figure, in the middle, stays above y 676).
    let label = (16, 676, 160, 28);
    wait_for("the commentator's name label in the program", Duration::from_secs(60), || {
        let n = white_pixels(&hls.join(latest()?), label)?;
        (n > 40).then_some(())
    })?;
    // The operator hides the labels, and shows them again.
    let op_token = server.token("demo", Role::Operator, "desk");
    let switches = format!("{}/api/events/demo/program", server.url);
    for (on, what) in [(false, "the label gone"), (true, "the label back")] {
        assert_eq!(api("POST", &switches, Some(&op_token), Some(json!({"labels": on})))?, (202, json!({"labels": on})));
        wait_for(what, Duration::from_secs(60), || {
            let n = white_pixels(&hls.join(latest()?), label)?;
            (if on { n > 40 } else { n < 5 }).then_some(())
        })?;
    }
    let layout_api = format!("{}/api/rooms/demo/program", server.url);
    let op = format!("Bearer {op_token}");
    let body = json!({"layout": "pip", "main": id}).to_string();
    // Chromium's fake camera is green: the centre of the program turns green when the
    // commentator is the main source (and the bars' centre is not).
    let green = |f: &[u8]| {
        let (r, g, b) = centre_colour(f);
        g > 150 && r < 100 && b < 100
    };
    wait_for("the feed in the program, not green", Duration::from_secs(60), || {
        let f = last_rgb_frame(&hls.join(latest()?))?;
        (!green(&f)).then_some(())
    })?;
    wait_for("the commentator as the main source", Duration::from_secs(60), || {
        // Repeated until it lands: the commentator's track may bind after the join.
        let (s, _, _) = http_post(&layout_api, &[("Content-Type", "application/json"), ("Authorization", &op)], body.as_bytes()).ok()?;
        let f = last_rgb_frame(&hls.join(latest()?))?;
        (s == 202 && green(&f)).then_some(())
    })?;
    // And back to the feed.
    let back = json!({"layout": "pip"}).to_string();
    let (s, _, _) = http_post(&layout_api, &[("Content-Type", "application/json"), ("Authorization", &op)], back.as_bytes())?;
    assert_eq!(s, 202);
    wait_for("the feed as the main source again", Duration::from_secs(30), || {
        let f = last_rgb_frame(&hls.join(latest()?))?;
        (!green(&f)).then_some(())
    })?;
    // The commentator's tile (bottom left) leaves the program while an operator
    // mutes their camera (the server drops it; the page says who did it), and with
    // the commentator.
    let tile = (40, 580, 200, 100);
    wait_for("the commentator's tile in the program", Duration::from_secs(30), || mostly_green(&hls.join(latest()?), tile)?.then_some(()))?;
    let mute = format!("{}/api/events/demo/participants/{}/mute", server.url, id);
    assert_eq!(api("POST", &mute, Some(&op_token), Some(json!({"kind": "video", "muted": true})))?.0, 204);
    wait_for("the muted camera's tile out of the program", Duration::from_secs(30), || {
        (!mostly_green(&hls.join(latest()?), tile)?).then_some(())
    })?;
    let said = page.eval("return document.querySelector('#btn-cam').disabled && document.querySelector('#banner-text').textContent")?;
    assert!(said.as_str().is_some_and(|t| t.contains("operator")), "the page says the operator muted the camera: {said}");
    // Leaving and joining again does not undo it: the new session is held too.
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Green")))?;
    let participants = format!("{}/api/events/demo/participants", server.url);
    let again = wait_for("the commentator back, camera arriving and still held", Duration::from_secs(60), || {
        let (_, list) = api("GET", &participants, Some(&op_token), None).ok()?;
        let p = list.as_array()?.iter().find(|p| p["name"] == "Dr. Green" && p["id"] != json!(id))?.clone();
        (p["video_muted_by_operator"] == true && p["fps_in"].as_f64()? > 0.0).then_some(p)
    })?;
    let label = page.eval("return document.querySelector('#btn-cam .label').textContent")?;
    assert_eq!(label, json!("Muted by operator"));
    let segs = segments(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default()).len();
    wait_for("three more segments", Duration::from_secs(30), || {
        (segments(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default()).len() >= segs + 3).then_some(())
    })?;
    assert_eq!(mostly_green(&hls.join(latest().unwrap()), tile), Some(false), "the held camera stays out of the program");
    let mute = format!("{}/api/events/demo/participants/{}/mute", server.url, again["id"].as_str().unwrap());
    assert_eq!(api("POST", &mute, Some(&op_token), Some(json!({"kind": "video", "muted": false})))?.0, 204);
    wait_for("the tile back", Duration::from_secs(30), || mostly_green(&hls.join(latest()?), tile)?.then_some(()))?;
    assert_eq!(api("POST", &mute, Some(&op_token), Some(json!({"kind": "screen", "muted": true})))?.0, 400);
    drop(page);
    wait_for("the tile to leave with the commentator", Duration::from_secs(60), || {
        (!mostly_green(&hls.join(latest()?), tile)?).then_some(())
    })?;
    Ok(())
}

/// Reads the clock the demo feed burns into the middle of the picture, as the
/// page's `video` element shows it now: (the page's wall clock, seconds of the day
/// UTC; the clock read, seconds of the day).
pub(super) fn read_burned_in_clock(page: &Browser, dir: &std::path::Path, video: &str) -> Option<(f64, u32)> {
    use base64::Engine;
    let shot = page
        .eval(&format!("const v = document.querySelector('{video}');
             {READ_CLOCK}"))
        .ok()?;
    let now_ms = shot[0].as_f64()?;
    let png = base64::engine::general_purpose::STANDARD.decode(shot[1].as_str()?.strip_prefix("data:image/png;base64,")?).ok()?;
    let file = dir.join("clock.png");
    std::fs::write(&file, png).ok()?;
    let out = std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1")
        .arg(&file)
        .args(["stdout", "--psm", "7", "-c", "tessedit_char_whitelist=0123456789:"])
        .output()
        .ok()?;
    let digits: Vec<u32> = String::from_utf8_lossy(&out.stdout).chars().filter_map(|c| c.to_digit(10)).collect();
    let [h1, h2, m1, m2, s1, s2] = digits[..] else { return None };
    let (h, m, s) = (h1 * 10 + h2, m1 * 10 + m2, s1 * 10 + s2);
    (h < 24 && m < 60 && s < 60).then_some(((now_ms / 1000.0) % 86400.0, h * 3600 + m * 60 + s))
}

/// The page script that grabs the middle of video `v` (the burned-in clock) for OCR.
const READ_CLOCK: &str = "if (v.readyState < 2 || !v.videoWidth) return null;
             const w = v.videoWidth, h = v.videoHeight, cw = Math.round(w * 0.9), ch = Math.round(h * 0.3);
             // A quarter size with a margin reads best (tesseract likes ~30 px glyphs).
             const c = document.createElement('canvas'); c.width = cw / 4 + 40; c.height = ch / 4 + 40;
             const now = Date.now(), g = c.getContext('2d');
             g.fillStyle = '#000'; g.fillRect(0, 0, c.width, c.height);
             g.drawImage(v, (w - cw) / 2, (h - ch) / 2, cw, ch, 20, 20, cw / 4, ch / 4);
             // Black text on white for the OCR: the clock is white on a dark box.
             const img = g.getImageData(0, 0, c.width, c.height), d = img.data;
             for (let i = 0; i < d.length; i += 4) {
               const on = d[i] > 170 && d[i + 1] > 170 && d[i + 2] > 170;
               d[i] = d[i + 1] = d[i + 2] = on ? 0 : 255;
             }
             g.putImageData(img, 0, 0);
             return [now, c.toDataURL('image/png')];";

/// Glass-to-glass delay of the program in Chromium's `/watch` page (hls.js with its
/// defaults), from the wall clock the demo feed burns in: the median of eight
/// readings of different seconds. Each preset's target is in the issues: ultra-low
/// (low-latency HLS) under 3 s, low-latency under about 6 s, quality about 30 s. The
/// numbers go to docs/benchmarks.md. The low-latency bound leaves a segment's room
/// above the target: hls.js starts three segments back from the live edge, so where
/// in a segment a viewer comes adds up to one segment (1 s): runs of the same build
/// measured 5.5 to 7.1 s. Low-latency HLS starts three parts back and keeps there.
#[test]
fn hls_latency_of_each_preset_from_the_burned_in_clock() -> Result<()> {
    let scratch = TempDir::new("latency");
    let mut report = Vec::new();
    for (preset, segments_before, bound) in [("ultra-low", 3, 0.3..3.0), ("low-latency", 5, 2.0..7.5), ("quality", 6, 20.0..40.0)] {
        let server = Server::demo(&["--program-preset", preset, "--program-recording", "false"])?;
        // A viewer who comes once the event runs (the first one could only start
        // as far back as the playlist then goes).
        let playlist = format!("{}/hls/demo/index.m3u8", server.url);
        wait_for("the playlist to fill", Duration::from_secs(90), || {
            (segments(&http_get(&playlist).ok()?.1).len() >= segments_before).then_some(())
        })?;
        let page = Browser::start()?;
        page.goto(&format!("{}/watch/demo", server.url))?;
        let time = |b: &Browser| b.eval("return document.getElementById('video').currentTime").ok().and_then(|v| v.as_f64());
        let first = wait_for("the program to play", Duration::from_secs(120), || time(&page).filter(|&t| t > 0.5))?;
        wait_for("playback to settle", Duration::from_secs(30), || time(&page).filter(|&t| t > first + 3.0))?;
        let median = median_delay(&page, &scratch.0, "#video", preset)?;
        report.push((preset, median));
        assert!(bound.contains(&median), "{preset}: {median:.1} s behind live, expected {bound:?}");
        if preset == "low-latency" {
            // The console's preview, the program monitor over WebRTC, read the same way.
            let center = server.token("*", Role::Operator, "Ops Ida");
            // The demo is an event of its own (with the server's preset).
            let (s, e) = api("GET", &format!("{}/api/events/demo", server.url), Some(&center), None)?;
            assert_eq!((s, e["policy"]["latency_preset"].as_str()), (200, Some("low-latency")), "{e}");
            let console = Browser::start()?;
            console.goto(&format!("{}/console?token={center}#event=demo", server.url))?;
            let monitor = median_delay(&console, &scratch.0, "#preview", "console monitor")?;
            report.push(("console monitor (WebRTC)", monitor));
            assert!(monitor < 2.0, "the console's monitor is {monitor:.1} s behind live");
        }
    }
    eprintln!("{report:?}");
    Ok(())
}

/// The median of eight readings (of different seconds) of how far behind the burned-in
/// clock the page's `video` is, seconds.
pub(super) fn median_delay(page: &Browser, dir: &std::path::Path, video: &str, what: &str) -> Result<f64> {
    let mut delays: Vec<f64> = Vec::new();
    let mut last = None;
    for n in 0..8 {
        // The clock shows whole seconds: the frame is from the middle of one. A
        // misread (a delay over two minutes) is read again.
        let (clock, delay) = wait_for(&format!("reading {n} of the burned-in clock ({what})"), Duration::from_secs(60), || {
            let (now, clock) = read_burned_in_clock(page, dir, video)?;
            let delay = (now - f64::from(clock) - 0.5).rem_euclid(86400.0);
            (Some(clock) != last && delay < 120.0).then_some((clock, delay))
        })?;
        last = Some(clock);
        delays.push(delay);
    }
    delays.sort_by(f64::total_cmp);
    let median = (delays[3] + delays[4]) / 2.0;
    eprintln!("latency {what}: median {median:.1} s, min {:.1} s, max {:.1} s ({delays:.1?})", delays[0], delays[7]);
    Ok(median)
}

/// Key frames in a segment's video.
pub(super) fn key_frames(seg: &std::path::Path) -> usize {
    std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "frame=key_frame", "-of", "csv"])
        .arg(seg)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("frame,1")).count())
        .unwrap_or(0)
}

/// With 6 s segments the program has a key frame every 6 s; a commentator who starts
/// watching the monitor asks for one (RTCP PLI through the SFU to the encoder) and
/// gets the picture at once. The extra key frame shows in the HLS segment too.
#[test]
fn a_commentator_gets_the_program_monitor_at_once() -> Result<()> {
    let server = Server::demo(&["--program-recording", "false"])?;
    let hls = server.data_dir().join("hls/demo");
    let listed = || segments(&std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default());
    let before = wait_for("three segments", Duration::from_secs(90), || (listed().len() >= 3).then(listed))?;
    // The first segment may hold the start-up key frame too: the steady state is after.
    for s in &before[1..] {
        assert_eq!(key_frames(&hls.join(s)), 1, "{s}: one key frame per segment, at its start");
    }
    let page = Browser::start()?;
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Late")))?;
    wait_for("the program monitor to decode", Duration::from_secs(60), || {
        page_stats(&page)["programFramesDecoded"].as_f64().filter(|&n| n > 0.0)
    })?;
    wait_for("a segment with the requested key frame", Duration::from_secs(40), || {
        listed().iter().filter(|s| !before.contains(s)).any(|s| key_frames(&hls.join(s)) >= 2).then_some(())
    })?;
    Ok(())
}
