//! Low-latency HLS (the `ultra-low` preset): the playlist checked by a parser
//! casecast did not write, blocking reloads and delta updates, the parts and
//! segments decoded by ffprobe, timed metadata and the live readout in Chromium's
//! watch page, and the VOD once the event ends. Its glass-to-glass delay is in
//! `program::hls_latency_of_each_preset_from_the_burned_in_clock`.

use super::*;
use super::program::probe_segment_file;

/// What `tests/fixtures/llhls_check.py` (PyPI's m3u8) makes of a playlist; fails
/// the test on any rule it finds broken.
fn check_playlist(text: &str, delta: bool) -> Result<Value> {
    use std::io::Write as _;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llhls_check.py");
    let mut child = std::process::Command::new(target_dir().join("test-venv/bin/python"))
        .arg(&script)
        .args(delta.then_some("--delta"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "the checker failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(v["errors"].as_array().is_some_and(Vec::is_empty), "LL-HLS rules broken: {}\n{text}", v["errors"]);
    Ok(v)
}

fn get_bytes(url: &str) -> Result<(u16, Vec<u8>)> {
    let (status, _, body) = http_request("GET", url, &[], None)?;
    Ok((status, body))
}

#[test]
fn ultra_low_is_low_latency_hls_that_parsers_players_and_ffprobe_take() -> Result<()> {
    let server = Server::demo(&["--program-preset", "ultra-low", "--program-recording", "false"])?;
    let base = format!("{}/hls/demo", server.url);
    let playlist = format!("{base}/index.m3u8");
    // Eight segments (16 s): enough for a delta update to leave some out.
    let text = wait_for("eight complete segments", Duration::from_secs(120), || {
        let (s, t) = http_get(&playlist).ok()?;
        (s == 200 && t.matches("#EXTINF").count() >= 8).then_some(t)
    })?;
    let full = check_playlist(&text, false)?;
    let part_target = full["part_target"].as_f64().unwrap_or(0.0);
    assert!((0.3..=0.34).contains(&part_target), "{full}");
    assert!(full["parts"].as_u64().unwrap_or(0) >= 6, "parts listed for the last segments: {full}");
    let delta = check_playlist(&http_get(&format!("{playlist}?_HLS_skip=YES"))?.1, true)?;
    assert!(delta["skipped"].as_u64().unwrap_or(0) >= 1, "{delta}");

    // A blocking reload for the part after the next: held until it exists, answered
    // well within the bound (three target durations).
    let now = check_playlist(&http_get(&playlist)?.1, false)?;
    let (msn, part) = (now["next_msn"].as_u64().unwrap(), now["next_part"].as_u64().unwrap() + 1);
    let asked = std::time::Instant::now();
    let (status, held) = http_get(&format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}"))?;
    let took = asked.elapsed();
    assert_eq!(status, 200, "{held}");
    assert!(took < Duration::from_secs(6), "the blocked reload took {took:?}");
    // The part asked for, or, had the segment ended first, the next one's first.
    let got = held.contains(&format!("part-{msn}.{part}.m4s")) || held.contains(&format!("part-{}.0.m4s", msn + 1));
    assert!(got, "asked for part {part} of {msn} after {took:?}:\n{held}");
    check_playlist(&held, false)?;
    assert_eq!(http_get(&format!("{playlist}?_HLS_msn={}", msn + 10))?.0, 400, "far beyond the live edge");
    assert_eq!(http_get(&format!("{playlist}?_HLS_part=1"))?.0, 400, "a part without its segment");
    // The preload hint's part, asked for before it is made, comes when it is.
    let hinted = check_playlist(&http_get(&playlist)?.1, false)?;
    let (status, part_bytes) = get_bytes(&format!("{base}/{}", hinted["hint"].as_str().unwrap()))?;
    assert_eq!(status, 200);
    assert!(part_bytes.windows(4).any(|w| w == b"moof"), "a CMAF fragment");

    // ffprobe decodes a segment and a part (each after the init segment): H.264 and
    // AAC at the program's size and rate; a part is a third of a second of frames.
    let dir = TempDir::new("llhls");
    let (_, init) = get_bytes(&format!("{base}/{}", now["init"].as_str().unwrap()))?;
    let probe = |name: &str, media: &[u8]| -> Result<(String, String, u32)> {
        let file = dir.0.join(name);
        std::fs::write(&file, [&init[..], media].concat())?;
        probe_segment_file(&file)
    };
    let (status, segment) = get_bytes(&format!("{base}/{}", now["last_segment"].as_str().unwrap()))?;
    assert_eq!(status, 200);
    let (video, audio, frames) = probe("segment.mp4", &segment)?;
    assert!(video.contains("codec_name=h264|width=1280|height=720|avg_frame_rate=30/1"), "{video}");
    assert!(audio.contains("codec_name=aac"), "{audio}");
    // One GOP of 2 s; at least half its frames even on a loaded machine.
    assert!((30..=66).contains(&frames), "{frames} frames in a segment");
    // Sound and picture on one timeline: the segment's audio starts with its video.
    let first = |stream: &str| -> Option<f64> {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(dir.0.join("segment.mp4"))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<f64>().ok()).reduce(f64::min)
    };
    let (v, a) = (first("v").unwrap_or(f64::NAN), first("a").unwrap_or(f64::NAN));
    assert!((v - a).abs() < 0.2, "video starts at {v} s, audio at {a} s");
    let first_part = now["last_parts"][0].as_str().unwrap();
    let (status, part) = get_bytes(&format!("{base}/{first_part}"))?;
    assert_eq!(status, 200);
    let (video, audio, frames) = probe("part.mp4", &part)?;
    assert!(video.contains("codec_name=h264") && audio.contains("codec_name=aac"), "{video} {audio}");
    assert!((1..=10).contains(&frames), "{frames} frames in a part");

    // Chromium's watch page plays it in hls.js's low-latency mode and says how far
    // behind live it is; timed metadata reaches it inside the parts (emsg ID3).
    let page = Browser::start()?;
    page.goto(&format!("{}/watch/demo", server.url))?;
    let time = |b: &Browser| b.eval("return document.getElementById('video').currentTime").ok().and_then(|v| v.as_f64());
    let first = wait_for("the program to play", Duration::from_secs(90), || time(&page).filter(|&t| t > 0.5))?;
    wait_for("playback to advance", Duration::from_secs(30), || time(&page).filter(|&t| t > first + 2.0))?;
    let latency = wait_for("the page's latency readout", Duration::from_secs(20), || {
        let l = page.eval("return window.casecastWatch.latency").ok()?;
        (l["lowLatency"] == json!(true)).then_some(l)
    })?;
    let status = page.eval("return document.getElementById('status').textContent")?;
    assert!(status.as_str().is_some_and(|s| s.starts_with("live · ") || s.contains("behind live")), "{status} {latency}");
    // A viewer who falls behind (the page held 2.5 s, then 8 s) is back near live
    // soon after: hls.js plays faster (up to 1.25×) or seeks, and the page jumps to
    // live when it is further behind than that catches up.
    let latency = |b: &Browser| b.eval("const h = window.casecastWatch.hls; return h ? h.latency : null").ok()?.as_f64();
    for held_ms in [2500u32, 8000] {
        page.eval(&format!("const v = document.getElementById('video'); v.pause(); setTimeout(() => v.play(), {held_ms}); return null"))?;
        let behind = f64::from(held_ms) / 1000.0;
        wait_for("the page to fall behind", Duration::from_secs(20), || (latency(&page)? > 0.5 + behind).then_some(()))?;
        wait_for(&format!("the page to catch up after {behind} s behind"), Duration::from_secs(40), || {
            let playing = page.eval("return !document.getElementById('video').paused").ok()? == json!(true);
            (playing && latency(&page)? < 2.5).then_some(())
        })?;
    }
    let op = server.token("demo", Role::Operator, "Ops Lia");
    let url = format!("{}/api/events/demo/metadata", server.url);
    assert_eq!(api("POST", &url, Some(&op), Some(json!({"text": "Clip applied — 2 minutes to closure"})))?.0, 202);
    let got = wait_for("the message on the watch page", Duration::from_secs(30), || {
        let m = page.eval("return window.casecastWatch.metadata").ok()?;
        (!m.as_array()?.is_empty()).then_some(m)
    })?;
    assert_eq!(got[0]["text"], "Clip applied — 2 minutes to closure", "{got}");
    drop(page);

    // Off air and back: the parts stop; back on air they go on after a discontinuity,
    // the playlist as valid as before.
    let program = format!("{}/api/events/demo/program", server.url);
    assert_eq!(api("POST", &program, Some(&op), Some(json!({"on_air": false})))?.0, 202);
    let parts = |t: &str| t.matches("#EXT-X-PART:").count() + t.matches("#EXTINF").count() * 100;
    let mut still = (0, std::time::Instant::now());
    wait_for("the parts to stop", Duration::from_secs(20), || {
        let n = parts(&http_get(&playlist).ok()?.1);
        if n != still.0 {
            still = (n, std::time::Instant::now());
        }
        (still.1.elapsed() >= Duration::from_secs(2)).then_some(())
    })?;
    assert_eq!(api("POST", &program, Some(&op), Some(json!({"on_air": true})))?.0, 202);
    let back = wait_for("parts after a discontinuity", Duration::from_secs(20), || {
        let t = http_get(&playlist).ok()?.1;
        let after = t.split("#EXT-X-DISCONTINUITY\n").nth(1)?;
        after.contains("INDEPENDENT=YES").then_some(t)
    })?;
    check_playlist(&back, false)?;

    // The event ends: the playlist is VOD (no parts, closed), and plays whole.
    let center = server.token("*", Role::Operator, "center");
    assert_eq!(api("POST", &format!("{}/api/events/demo/end", server.url), Some(&center), None)?.0, 200);
    let vod = wait_for("the playlist to end", Duration::from_secs(30), || {
        let (_, t) = http_get(&playlist).ok()?;
        t.trim_end().ends_with("#EXT-X-ENDLIST").then_some(t)
    })?;
    assert!(!vod.contains("#EXT-X-PART:") && vod.contains("#EXT-X-MAP:URI="), "{vod}");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&playlist)
        .output()?;
    let duration: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0);
    assert!(duration >= 16.0, "the VOD plays {duration} s: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
