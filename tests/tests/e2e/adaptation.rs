//! Each commentator gets the best picture their link holds. Chromium publishes the
//! feed as three simulcast layers over WHIP; one commentator watches on an open
//! link, another from a network namespace whose downlink `tbf` caps. The capped one
//! is given a lower layer and keeps decoding while the other gets the top one, and
//! once the cap is lifted it is back on the top layer within seconds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use casecast_signaling::Role;
use casecast_tests::browser::Browser;
use casecast_tests::net::Namespace;
use casecast_tests::*;
use serde_json::{Value, json};

use super::{api, page_stats};

/// `casecast serve` on the host end of `ns`, over HTTPS too (a page needs a secure
/// origin for its camera), its media socket bound on `media_ip` if one is given
/// (else on the host address); answers the server and its HTTPS base URL.
fn serve_on_host(ns: &Namespace, media_ip: &str, extra: &[&str]) -> Result<(Server, String)> {
    let host = ns.host.to_string();
    let tls_listen = format!("{host}:{}", free_tcp_port());
    let mut args = vec!["--tls-self-signed", &host, "--tls-listen", &tls_listen];
    args.extend_from_slice(extra);
    let media_ip = if media_ip.is_empty() { host.as_str() } else { media_ip };
    let server = Server::start_media_on(&host, media_ip, &args)?;
    Ok((server, format!("https://{tls_listen}")))
}

/// Publishes the fake camera from `page` (on the server's origin) over WHIP as
/// three simulcast layers: 320×180, 640×360 and 1280×720.
fn publish_simulcast(page: &Browser, token: &str, room: &str, top_kbps: u32) -> Result<()> {
    let encodings = format!(
        "[ {{ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 200000 }},
           {{ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 600000 }},
           {{ rid: 'f', maxBitrate: {} }} ]",
        top_kbps * 1000
    );
    publish(page, token, room, &encodings)
}

/// Publishes the fake camera from `page` over WHIP with these `sendEncodings`.
fn publish(page: &Browser, token: &str, room: &str, encodings: &str) -> Result<()> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const media = await navigator.mediaDevices.getUserMedia({{
             video: {{ width: 1280, height: 720, frameRate: 30 }}, audio: true }});
           const pc = new RTCPeerConnection();
           pc.addTransceiver(media.getAudioTracks()[0], {{ direction: 'sendonly' }});
           pc.addTransceiver(media.getVideoTracks()[0], {{ direction: 'sendonly', sendEncodings: {encodings} }});
           await pc.setLocalDescription(await pc.createOffer());
           await new Promise((ok) => {{
             if (pc.iceGatheringState === 'complete') return ok();
             pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && ok();
             setTimeout(ok, 3000);
           }});
           const res = await fetch('/whip/{room}', {{ method: 'POST',
             headers: {{ 'Content-Type': 'application/sdp', Authorization: 'Bearer {token}' }},
             body: pc.localDescription.sdp }});
           const answer = await res.text();
           if (!res.ok) return done({{ error: res.status + ' ' + answer }});
           await pc.setRemoteDescription({{ type: 'answer', sdp: answer }});
           window.publisher = pc;
           done({{ ok: true }});
         }})().catch((e) => done({{ error: String(e) }}));"
    );
    let r = page.eval_async(&script)?;
    anyhow::ensure!(r["ok"] == json!(true), "the WHIP publish failed: {r}");
    Ok(())
}

/// A 3 s, 1280×720, 30 fps clip of fine moving detail (a test pattern under
/// grain) for Chromium's fake camera: its top layer needs megabits, as an
/// operating field's does, where the plain fake camera needs a few hundred kbit/s.
fn fine_detail_clip(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = dir.join("field.mjpeg");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-vf", "noise=alls=20:allf=t", "-t", "3"])
        .args(["-q:v", "3", "-f", "mjpeg", "-y"])
        .arg(&path)
        .output()
        .context("ffmpeg (scripts/install-deps.sh test)")?;
    anyhow::ensure!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    Ok(path)
}

/// What the publisher sends now, per layer: rid → (frame height, fps, bytes sent).
fn sent_layers(page: &Browser) -> Value {
    page.eval_async(
        "const done = arguments[arguments.length - 1];
         window.publisher.getStats().then((s) => {
           const out = {};
           s.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video')
             out[r.rid] = { height: r.frameHeight ?? null, fps: r.framesPerSecond ?? null, bytes: r.bytesSent,
                            limit: r.qualityLimitationReason }; });
           done(out);
         }, (e) => done({ error: String(e) }));",
    )
    .unwrap_or(Value::Null)
}

fn height(page: &Browser) -> u64 {
    page_stats(page)["feedFrameHeight"].as_u64().unwrap_or(0)
}

fn frames(page: &Browser) -> f64 {
    page_stats(page)["feedFramesDecoded"].as_f64().unwrap_or(0.0)
}

/// The feed's frames decoded and freeze time over `window`, sampled every second,
/// with the feed's height on `page` and on the page `beside` it at each sample.
struct Watched {
    frames: f64,
    freezes: f64,
    freeze_seconds: f64,
    heights: Vec<u64>,
    beside: Vec<u64>,
}

impl Watched {
    /// The page beside was on the top layer (720p) in most samples: a loaded
    /// machine's GCC dips now and then even on an open link, and the step back up
    /// waits its hold.
    fn beside_mostly_at_720(&self) -> bool {
        self.beside.iter().filter(|h| **h == 720).count() * 2 > self.beside.len()
    }
}

fn watch(page: &Browser, window: Duration, beside: Option<&Browser>) -> Watched {
    let before = page_stats(page);
    let started = Instant::now();
    let (mut heights, mut beside_heights) = (Vec::new(), Vec::new());
    // The window is the scenario's length, not a wait for an outcome: sampled
    // until it has passed.
    while started.elapsed() < window {
        heights.push(height(page));
        beside_heights.extend(beside.map(height));
        std::thread::sleep(Duration::from_millis(1000));
    }
    let after = page_stats(page);
    let d = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
    Watched {
        frames: d("feedFramesDecoded"),
        freezes: d("feedFreezeCount"),
        freeze_seconds: d("feedFreezesSeconds"),
        heights,
        beside: beside_heights,
    }
}

#[test]
fn commentators_on_different_links_get_different_layers_and_the_capped_one_climbs_back() -> Result<()> {
    let ns = Namespace::new()?;
    let (server, base) = serve_on_host(&ns, "", &[])?;
    let room = "simulcast";

    // The feed: a detailed moving picture (a test pattern under grain, as fine as
    // an operating field) from Chromium's fake camera as three layers, the top one
    // at up to 3 Mbit/s.
    let dir = TempDir::new("simulcast");
    let clip = fine_detail_clip(&dir.0)?;
    let publisher = Browser::start_with(&["--ignore-certificate-errors", &format!("--use-file-for-fake-video-capture={}", clip.display())])?;
    publisher.goto(&format!("{base}/"))?;
    publish_simulcast(&publisher, &server.token(room, Role::Encoder, "OR 1 simulcast"), room, 3000)?;
    wait_for("the publisher to send its top layer at 720p", Duration::from_secs(60), || {
        let s = sent_layers(&publisher);
        (s["f"]["height"].as_u64() == Some(720) && s["f"]["fps"].as_f64().unwrap_or(0.0) > 5.0).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; sent: {}", sent_layers(&publisher)))?;

    let (open, capped) = open_and_capped(&ns, &server, &base, room)?;

    // Both at the same time, for 10 s: the capped one keeps decoding.
    let capped_seen = watch(&capped, Duration::from_secs(10), Some(&open));
    println!(
        "capped at 1.5 Mbit/s: {:.0} frames in 10 s, {} freezes, {:.2} s frozen, heights {:?}; open link at {:?}",
        capped_seen.frames, capped_seen.freezes, capped_seen.freeze_seconds, capped_seen.heights, capped_seen.beside
    );
    assert!(capped_seen.beside_mostly_at_720(), "the open link keeps the top layer: {:?}", capped_seen.beside);
    assert!(capped_seen.heights.iter().all(|h| *h < 720), "the capped link stays below the top layer: {:?}", capped_seen.heights);
    // Bounds (docs/benchmarks.md): Chromium's fake camera at 30 fps; a user sees a
    // moving picture, not a stalled one.
    assert!(capped_seen.frames >= 100.0, "the capped link decoded only {} frames in 10 s", capped_seen.frames);
    assert!(capped_seen.freeze_seconds < 2.0, "the capped link froze for {:.2} s of 10", capped_seen.freeze_seconds);

    // The server says so: the layer each is given, and the capped one's estimate.
    let stats = server_participants(&server, room)?;
    let capped_row = stats.iter().find(|p| p["name"] == json!("Dr. Capped")).context("the capped commentator in the stats")?;
    let receiving = capped_row["receiving"].as_str().unwrap_or_default();
    assert!(receiving.starts_with('h') || receiving.starts_with('q'), "{capped_row}");
    let estimate = capped_row["estimate_kbps"].as_u64().unwrap_or(0);
    assert!(estimate > 0 && estimate < 2000, "the capped link's estimate: {capped_row}");
    let feed_row = stats.iter().find(|p| p["role"] == json!("encoder")).context("the feed in the stats")?;
    assert_eq!(feed_row["layer"], json!("f,h,q"), "{feed_row}");
    assert!(server.metric("casecast_layer_changes_total{direction=\"down\"}").unwrap_or(0.0) >= 1.0);

    // The cap is lifted: back on the top layer.
    ns.unlimit_downlink()?;
    let lifted = Instant::now();
    // The climb, as the server sees it (estimate and layer) every half second.
    let mut climb: Vec<String> = Vec::new();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let back = wait_for("the capped link to climb back to the top layer", Duration::from_secs(30), || {
        if last_sample.elapsed() >= Duration::from_millis(500) {
            last_sample = Instant::now();
            let row = server_participants(&server, room).ok().and_then(|v| v.into_iter().find(|p| p["name"] == json!("Dr. Capped")));
            if let Some(r) = row {
                climb.push(format!(
                    "{:.1}s {}k (delay-based {}k, loss {}) {}",
                    lifted.elapsed().as_secs_f64(),
                    r["estimate_kbps"],
                    r["delay_estimate_kbps"],
                    r["loss_out"],
                    r["receiving"].as_str().unwrap_or("?")
                ));
            }
        }
        (height(&capped) == 720).then(|| lifted.elapsed())
    })
    .map_err(|e| anyhow::anyhow!("{e}; stats: {}; climb: {climb:?}", page_stats(&capped)))?;
    println!("the cap lifted, the top layer was back after {back:?}; climb: {}", climb.join(", "));
    // The aim is 5 s (docs/benchmarks.md: median 4.3 s of 10, 1.7-6.1 s, most of
    // it the estimate climbing); the bound leaves room for a loaded machine.
    assert!(back < Duration::from_secs(20), "the top layer took {back:?} to come back");
    let before = frames(&capped);
    wait_for("the top layer to keep playing", Duration::from_secs(10), || (frames(&capped) >= before + 30.0).then_some(()))?;
    Ok(())
}

/// One commentator on an open link and one in `ns` whose downlink holds 1.5 Mbit/s
/// join `room`; answered once the open one shows the feed at 720p and the capped
/// one a lower layer.
fn open_and_capped(ns: &Namespace, server: &Server, base: &str, room: &str) -> Result<(Browser, Browser)> {
    let open = Browser::start_with(&["--ignore-certificate-errors"])?;
    open.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Open")))?;
    ns.limit_downlink(1500)?;
    let capped = Browser::start_in(ns, &["--ignore-certificate-errors"])?;
    capped.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Capped")))?;
    wait_for("the open link to get the top layer", Duration::from_secs(60), || (height(&open) == 720).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&open)))?;
    wait_for("the capped link to settle on a lower layer", Duration::from_secs(60), || {
        let h = height(&capped);
        (h > 0 && h < 720).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; stats: {}; the server: {:?}", page_stats(&capped), server_participants(server, room)))?;
    // The capped one's Chromium starting up on a 2-core machine can make the open
    // link's estimate dip for a few seconds: both as they should be, at once.
    wait_for("the open link on the top layer and the capped one below it at once", Duration::from_secs(30), || {
        let (o, c) = (height(&open), height(&capped));
        (o == 720 && c > 0 && c < 720).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; the server: {:?}", server_participants(server, room)))?;
    Ok((open, capped))
}

#[test]
fn a_browser_encoder_on_the_websocket_sends_simulcast_and_each_commentator_gets_what_its_link_holds() -> Result<()> {
    // The feed from a browser (a laptop's camera in the theatre) on the room page:
    // the server's policy asks it for three layers, over the WebSocket's offer.
    let ns = Namespace::new()?;
    let (server, base) = serve_on_host(&ns, "", &[])?;
    let room = "browser-encoder";
    let dir = TempDir::new("browser-encoder");
    let clip = fine_detail_clip(&dir.0)?;
    let encoder = Browser::start_with(&["--ignore-certificate-errors", &format!("--use-file-for-fake-video-capture={}", clip.display())])?;
    encoder.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Encoder, "OR 3 laptop")))?;
    wait_for("the feed's three layers at the server", Duration::from_secs(60), || {
        let rows = server_participants(&server, room).ok()?;
        rows.iter().any(|p| p["role"] == "encoder" && p["layer"] == "f,h,q").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; the server: {:?}", server_participants(&server, room)))?;

    let (open, capped) = open_and_capped(&ns, &server, &base, room)?;
    let seen = watch(&capped, Duration::from_secs(6), Some(&open));
    let rows = server_participants(&server, room)?;
    let receiving = |name: &str| {
        rows.iter().find(|p| p["name"] == name).and_then(|p| p["receiving"].as_str().map(str::to_string)).unwrap_or_default()
    };
    println!(
        "a browser's feed over the WebSocket: the open link receives {} ({:?}), the capped one {} ({:?}; {:.0} frames in 6 s, {:.2} s frozen)",
        receiving("Dr. Open"),
        seen.beside,
        receiving("Dr. Capped"),
        seen.heights,
        seen.frames,
        seen.freeze_seconds
    );
    assert!(seen.beside_mostly_at_720(), "the open link keeps the top layer: {:?}", seen.beside);
    assert!(seen.heights.iter().all(|h| *h > 0 && *h < 720), "the capped link stays on a lower layer: {:?}", seen.heights);
    assert!(receiving("Dr. Capped").starts_with("h ") || receiving("Dr. Capped").starts_with("q "), "{rows:?}");
    assert!(seen.frames >= 60.0, "the capped link decoded only {} frames in 6 s", seen.frames);
    Ok(())
}

/// The operators' view of a room's participants (`GET /api/events/{room}/participants`).
fn server_participants(server: &Server, room: &str) -> Result<Vec<Value>> {
    let token = server.token(room, Role::Operator, "Checking operator");
    let url = format!("{}/api/events/{room}/participants", server.url);
    let (status, v) = api("GET", &url, Some(&token), None)?;
    anyhow::ensure!(status == 200, "{url}: {status} {v}");
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Does on a joined commentator's page what a page that ignores the room's policy
/// would: swaps in a `width`×`height` camera at 30 fps, sets `set` on each of its
/// video sender's encodings (`e`) and asks it to keep its frame rate.
fn raise_sender(page: &Browser, width: u32, height: u32, set: &str) -> Result<()> {
    let r = page.eval_async(&format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const sender = window.casecast.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
           if (!sender) return done({{ error: 'no video sender' }});
           const media = await navigator.mediaDevices.getUserMedia({{ video: {{ width: {width}, height: {height}, frameRate: 30 }} }});
           await sender.replaceTrack(media.getVideoTracks()[0]);
           const p = sender.getParameters();
           p.encodings.forEach((e) => {{ {set} }});
           p.degradationPreference = 'maintain-framerate';
           await sender.setParameters(p);
           window.raised = sender;
           done({{ ok: true, encodings: sender.getParameters().encodings }});
         }})().catch((e) => done({{ error: String(e) }}));"
    ))?;
    anyhow::ensure!(r["ok"] == json!(true), "the page could not raise its sender: {r}");
    Ok(())
}

/// What the sender [`raise_sender`] raised sends now (Chromium's outbound-rtp).
fn raised_sender_stats(page: &Browser) -> Value {
    page.eval_async(
        "const done = arguments[arguments.length - 1];
         window.raised.getStats().then((s) => { let o = null;
           s.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') o = r; });
           done(o && { bytes: o.bytesSent, fps: o.framesPerSecond, height: o.frameHeight, target: o.targetBitrate,
                       limit: o.qualityLimitationReason, mode: o.scalabilityMode ?? null }); });",
    )
    .unwrap_or(Value::Null)
}

/// A commentator's frame rates at the server, as its stats show them: (arriving,
/// let into the room).
fn commentator_rates(server: &Server, room: &str, name: &str) -> Result<Option<(f64, f64)>> {
    let ps = server_participants(server, room)?;
    Ok(ps.iter().find(|p| p["name"] == name).map(|p| (p["fps_in"].as_f64().unwrap_or(0.0), p["fps_forwarded"].as_f64().unwrap_or(0.0))))
}

#[test]
fn a_page_that_ignores_the_rooms_ceiling_cannot_push_more_than_it() -> Result<()> {
    // The default room policy: commentators send at most 300 kbit/s (and 5 fps).
    let server = Server::start(&[])?;
    let room = "ceiling";
    let dir = TempDir::new("ceiling");
    let clip = fine_detail_clip(&dir.0)?;
    let page = Browser::start_with(&[&format!("--use-file-for-fake-video-capture={}", clip.display())])?;
    page.join_room(&format!("{}/room/{room}?token={}", server.url, server.token(room, Role::Commentator, "Dr. Greedy")))?;
    let received = || server.metric("casecast_rtp_bytes_received_total").unwrap_or(0.0);
    let before = received();
    wait_for("the commentator's media at the server", Duration::from_secs(60), || (received() > before + 50_000.0).then_some(()))?;

    // Its audio goes with Opus in-band FEC: a lost packet is rebuilt from the next.
    let answer = page.eval("return window.casecast.pc.remoteDescription.sdp")?;
    let answer = answer.as_str().unwrap_or_default();
    let opus_pt = answer.lines().find_map(|l| l.strip_prefix("a=rtpmap:").filter(|l| l.contains("opus/48000")).and_then(|l| l.split(' ').next()));
    let fmtp = opus_pt.and_then(|pt| answer.lines().find(|l| l.starts_with(&format!("a=fmtp:{pt} "))));
    assert!(fmtp.is_some_and(|l| l.contains("useinbandfec=1")), "the server's answer: {answer}");

    // The page then does what a page that ignores the policy would: a 720p camera
    // at 30 fps, its sender asked for 2 Mbit/s.
    raise_sender(&page, 1280, 720, "e.maxBitrate = 2000000; e.maxFramerate = 30; e.scaleResolutionDownBy = 1;")?;
    let sent = || raised_sender_stats(&page);
    // Its encoder takes the server's ceiling (the REMB comes once a second):
    // waited for, bounded, on what the browser says it aims at.
    wait_for("the page's encoder to aim at the ceiling", Duration::from_secs(30), || {
        sent()["target"].as_f64().filter(|t| *t > 0.0 && *t < 450_000.0).map(|_| ())
    })
    .map_err(|e| anyhow::anyhow!("{e}; the page's sender: {}", sent()))?;
    // The server measures a second before it holds the frame rate: waited for
    // until its stats show a tick that is held (bounded).
    let thinned = || server.metric("casecast_dropped_packets_total{reason=\"over_frame_rate_ceiling\"}").unwrap_or(0.0);
    wait_for("the server to hold the page's frame rate", Duration::from_secs(20), || {
        let (arriving, let_in) = commentator_rates(&server, room, "Dr. Greedy").ok().flatten()?;
        (thinned() > 0.0 && arriving > 10.0 && let_in <= 5.0 * 1.2).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; at the server: {:?}", commentator_rates(&server, room, "Dr. Greedy")))?;
    // Then 10 s measured: the window's length is the scenario, not a wait for an
    // outcome. The server's figures for the commentator (its stats tick every 2 s)
    // are read along the way: the frame rate arriving and the one let in.
    let (server_before, page_before, t0) = (received(), sent(), Instant::now());
    let frames_before = thinned();
    let mut rates = Vec::new();
    while t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_secs(2));
        rates.extend(commentator_rates(&server, room, "Dr. Greedy")?);
    }
    let (server_after, page_after, span) = (received(), sent(), t0.elapsed().as_secs_f64());
    let at_server = (server_after - server_before) * 8.0 / span;
    let from_page = (page_after["bytes"].as_f64().unwrap_or(0.0) - page_before["bytes"].as_f64().unwrap_or(0.0)) * 8.0 / span;
    let dropped = server.metric("casecast_dropped_packets_total{reason=\"over_uplink_ceiling\"}").unwrap_or(0.0);
    println!(
        "asked for 2 Mbit/s at 30 fps: the page sent {:.0} kbit/s of video ({page_after}); the server received {:.0} kbit/s in all (audio too); {dropped} frames dropped over the bitrate ceiling",
        from_page / 1000.0,
        at_server / 1000.0
    );
    // 300 kbit/s of video and Opus's few tens, with a margin for RTP headers and a
    // keyframe; without the server's ceiling the page sends about 2 Mbit/s.
    assert!(at_server < 450_000.0, "the server received {:.0} kbit/s from a commentator held to 300", at_server / 1000.0);
    assert!(at_server > 50_000.0, "nothing arrived: {at_server}");

    // The frame rate: the page sends far more than 5 fps (no browser obeys a
    // receiver's frame-rate cap), and the room is let in no more than the ceiling.
    let thinned = thinned() - frames_before;
    println!("frame rates at the server, (arriving, let into the room) per stats tick: {rates:?}; {thinned} frames held back");
    let arriving = rates.iter().map(|r| r.0).sum::<f64>() / rates.len().max(1) as f64;
    anyhow::ensure!(arriving > 10.0, "the page did not send above the ceiling, so the test shows nothing: {rates:?}");
    let most = rates.iter().map(|r| r.1).fold(0.0, f64::max);
    assert!(most <= 5.0 * 1.2, "the room was let in {most} fps of a commentator held to 5: {rates:?}");
    assert!(rates.iter().any(|r| r.1 > 0.0), "the commentator's picture stopped altogether: {rates:?}");
    assert!(thinned > 0.0, "no frame counted as held back");
    Ok(())
}

#[test]
fn a_commentator_sending_temporal_layers_above_the_frame_rate_is_thinned_and_stays_smooth() -> Result<()> {
    // A room held to 15 fps (and 1 Mbit/s, out of the way); a page that sends VP8
    // in three temporal layers at 30 fps (7.5 + 7.5 + 15 fps). The server drops the
    // top layer: the room gets 15 fps that decode without a freeze.
    let server = Server::start(&["--room-commentator-max-fps", "15", "--room-commentator-max-bitrate", "1000000"])?;
    let room = "layered";
    let dir = TempDir::new("layered");
    let clip = fine_detail_clip(&dir.0)?;
    // The clip is a 30 fps camera (Chromium's own fake camera gives 20).
    let sender = Browser::start_with(&[&format!("--use-file-for-fake-video-capture={}", clip.display())])?;
    sender.join_room(&format!("{}/room/{room}?token={}", server.url, server.token(room, Role::Commentator, "Dr. Layered")))?;
    let watcher = Browser::start()?;
    watcher.join_room(&format!("{}/room/{room}?token={}", server.url, server.token(room, Role::Commentator, "Dr. Watching")))?;
    raise_sender(&sender, 640, 360, "e.maxBitrate = 900000; e.maxFramerate = 30; e.scalabilityMode = 'L1T3';")?;
    let seen = || -> (f64, f64, f64) {
        let s = page_stats(&watcher);
        let v = s["inbound"].as_array().and_then(|a| a.iter().find(|r| r["kind"] == "video" && r["name"] == "Dr. Layered").cloned());
        let f = |k: &str| v.as_ref().and_then(|v| v[k].as_f64()).unwrap_or(0.0);
        (f("framesDecoded"), f("freezeCount"), f("totalFreezesDuration"))
    };
    // The page sends its layers at 30 fps and the server's stats have measured a
    // thinned tick: waited for, bounded.
    wait_for("the layers at 30 fps, thinned at the server", Duration::from_secs(45), || {
        let sent = raised_sender_stats(&sender);
        let rates = commentator_rates(&server, room, "Dr. Layered").ok().flatten()?;
        (sent["mode"] == "L1T3" && rates.0 >= 24.0 && rates.1 > 0.0 && rates.1 < rates.0 * 0.7 && seen().0 > 0.0).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; the sender: {}; at the server: {:?}", raised_sender_stats(&sender), commentator_rates(&server, room, "Dr. Layered")))?;
    // 10 s watched: the window is the scenario's length.
    let (before, t0) = (seen(), Instant::now());
    let mut rates = Vec::new();
    while t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_secs(2));
        rates.extend(commentator_rates(&server, room, "Dr. Layered")?);
    }
    let (after, span) = (seen(), t0.elapsed().as_secs_f64());
    let fps = (after.0 - before.0) / span;
    println!(
        "sent in L1T3 at 30 fps into a room held to 15: at the server (arriving, let in) {rates:?}; \
         the other commentator decoded {fps:.1} fps, {} freezes ({:.2} s)",
        after.1 - before.1,
        after.2 - before.2
    );
    let most = rates.iter().map(|r| r.1).fold(0.0, f64::max);
    assert!(most <= 15.0 * 1.2, "the room was let in {most} fps of a commentator held to 15: {rates:?}");
    assert!((10.0..=18.0).contains(&fps), "the other commentator decoded {fps:.1} fps (the base two layers are 15)");
    assert!(after.2 - before.2 < 0.5, "the thinned picture froze for {:.2} s", after.2 - before.2);
    Ok(())
}

#[test]
fn loss_on_the_publishers_link_is_repaired_before_it_reaches_the_commentators() -> Result<()> {
    // The encoder's link loses 5 % of its datagrams each way; a commentator on a
    // clean link watches. NACK/RTX between the encoder and the server repair the
    // feed before it goes on: the commentator sees it as the server has it.
    let ns = Namespace::new()?;
    let (server, base) = serve_on_host(&ns, "", &[])?;
    let room = "lossy-encoder";
    let publisher = Browser::start_in(&ns, &["--ignore-certificate-errors"])?;
    publisher.goto(&format!("{base}/"))?;
    ns.lose_udp(5)?;
    publish(&publisher, &server.token(room, Role::Encoder, "OR 2 lossy"), room, "[{ maxBitrate: 1500000 }]")?;
    let viewer = Browser::start_with(&["--ignore-certificate-errors"])?;
    viewer.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Clean")))?;
    wait_for("the feed to play", Duration::from_secs(60), || (frames(&viewer) > 30.0).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&viewer)))?;

    let lost_before = ns.udp_lost()?;
    let seen = watch(&viewer, Duration::from_secs(10), None);
    let lost = ns.udp_lost()? - lost_before;
    let rows = server_participants(&server, room)?;
    let feed = rows.iter().find(|p| p["role"] == json!("encoder")).context("the encoder in the stats")?;
    let loss_in = feed["loss_in"].as_f64().unwrap_or(0.0);
    let inbound = page_stats(&viewer)["inbound"].clone();
    let video = inbound.as_array().and_then(|v| v.iter().find(|r| r["kind"] == json!("video") && r["source"] == json!("feed")).cloned()).unwrap_or_default();
    let (lost_leg, got) = (video["packetsLost"].as_f64().unwrap_or(0.0), video["packetsReceived"].as_f64().unwrap_or(0.0));
    println!(
        "encoder's link losing 5 %: {lost} datagrams dropped in 10 s (the server's stats say {:.1} % lost after repair); the commentator decoded {:.0} frames in 10 s, {} freezes, {:.2} s frozen, {lost_leg} of {} packets lost on its own leg",
        loss_in * 100.0, seen.frames, seen.freezes, seen.freeze_seconds, lost_leg + got
    );
    assert!(lost > 20, "the encoder's link lost only {lost} datagrams in 10 s");
    assert!(seen.frames >= 100.0, "the commentator decoded only {} frames in 10 s", seen.frames);
    assert!(seen.freeze_seconds < 2.0, "the commentator's feed froze for {:.2} s of 10", seen.freeze_seconds);
    Ok(())
}

#[test]
fn a_one_layer_encoder_is_offered_as_a_ladder_the_server_makes() -> Result<()> {
    // Most hospital encoders push one stream. With the room's ladder on, the
    // server decodes it once and makes 540p and 360p of it: a commentator on an
    // open link gets the encoder's own 720p, one whose downlink holds 1.5 Mbit/s a
    // rung of the ladder, at the same time.
    let ns = Namespace::new()?;
    let (server, base) = serve_on_host(&ns, "", &["--room-feed-ladder", "540,360"])?;
    let room = "ladder";
    // GStreamer's webrtcbin, as a hardware encoder would send: H.264 720p at 4 Mbit/s.
    let whip = format!("{}/whip/{room}", server.url);
    let _encoder = gst_publisher(&whip, &server.token(room, Role::Encoder, "OR 3 encoder"), &["--codec", "h264", "--bitrate", "4000000"])?;
    wait_for("the ladder's rungs to be made", Duration::from_secs(60), || {
        (server.metric("casecast_ladder_frames_total{layer=\"360p\"}").unwrap_or(0.0) > 30.0).then_some(())
    })?;

    let open = Browser::start_with(&["--ignore-certificate-errors"])?;
    open.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Open")))?;
    ns.limit_downlink(1500)?;
    let capped = Browser::start_in(&ns, &["--ignore-certificate-errors"])?;
    capped.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Capped")))?;

    wait_for("the open link to get the encoder's 720p", Duration::from_secs(60), || (height(&open) == 720).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&open)))?;
    wait_for("the capped link to settle on a rung of the ladder", Duration::from_secs(60), || {
        let h = height(&capped);
        (h == 540 || h == 360).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&capped)))?;

    let capped_seen = watch(&capped, Duration::from_secs(10), Some(&open));
    println!(
        "a one-layer 4 Mbit/s encoder, the ladder on: the capped link decoded {:.0} frames in 10 s, {} freezes, {:.2} s frozen, heights {:?}; the open link at {:?}",
        capped_seen.frames, capped_seen.freezes, capped_seen.freeze_seconds, capped_seen.heights, capped_seen.beside
    );
    assert!(capped_seen.beside_mostly_at_720(), "the open link keeps the encoder's own picture: {:?}", capped_seen.beside);
    assert!(capped_seen.heights.iter().all(|h| *h == 540 || *h == 360), "the capped link stays on the ladder: {:?}", capped_seen.heights);
    // Bounds (docs/benchmarks.md): the test pattern at 30 fps.
    assert!(capped_seen.frames >= 100.0, "the capped link decoded only {} frames in 10 s", capped_seen.frames);
    assert!(capped_seen.freeze_seconds < 2.0, "the capped link froze for {:.2} s of 10", capped_seen.freeze_seconds);
    let stats = server_participants(&server, room)?;
    let capped_row = stats.iter().find(|p| p["name"] == json!("Dr. Capped")).context("the capped commentator in the stats")?;
    let receiving = capped_row["receiving"].as_str().unwrap_or_default();
    assert!(receiving.starts_with("540p") || receiving.starts_with("360p"), "the server says the capped one gets {receiving:?}: {capped_row}");
    // The open one's layer as the server gives it (after a dip, within its hold).
    wait_for("the server to give the open link the source", Duration::from_secs(10), || {
        let rows = server_participants(&server, room).ok()?;
        rows.iter().any(|p| p["name"] == "Dr. Open" && p["receiving"] == "source 1280×720").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {:?}", server_participants(&server, room)))?;
    let feed_row = stats.iter().find(|p| p["role"] == json!("encoder")).context("the feed in the stats")?;
    assert_eq!(feed_row["layer"], json!("source,540p,360p"), "{feed_row}");
    Ok(())
}

#[test]
fn a_commentator_on_a_lossy_jittery_link_keeps_watching_and_hearing() -> Result<()> {
    // A commentator at home on a poor radio link: 5 %, then 10 % of the UDP
    // datagrams into and out of its namespace dropped at random (nftables), and
    // every datagram to and from it delayed by 20 ms plus up to 100 ms more, in
    // order (a relay in user space: a queue whose wait varies). The feed is a
    // one-layer 720p encoder at 1.5 Mbit/s with the server's ladder on.
    // Bounds (docs/benchmarks.md), by loss: the most seconds of 20 frozen. Both are
    // loose on purpose: they guard that the picture goes on, and a full run once
    // froze 7.44 s at 5 % (a third of the frames late) where alone it is 0.7-3.6 s.
    for (loss, max_frozen) in [(5, 10.0), (10, 14.0)] {
        let ns = Namespace::new()?;
        let (server, base) = serve_on_host(&ns, "127.0.0.1", &["--room-feed-ladder", "540,360"])?;
        let _relay = casecast_tests::relay::JitterRelay::start(
            (ns.host, server.udp_port).into(),
            ([127, 0, 0, 1], server.udp_port).into(),
            ns.ip.into(),
            Duration::from_millis(20),
            Duration::from_millis(100),
            false,
        )?;
        let room = "lossy";
        let whip = format!("{}/whip/{room}", server.url);
        let _encoder = gst_publisher(&whip, &server.token(room, Role::Encoder, "OR 4 encoder"), &["--bitrate", "1500000"])?;
        ns.lose_udp(loss)?;
        let page = Browser::start_in(&ns, &["--ignore-certificate-errors"])?;
        page.join_room(&format!("{base}/room/{room}?token={}", server.token(room, Role::Commentator, "Dr. Radio")))?;
        wait_for("the feed to play over the lossy link", Duration::from_secs(60), || (frames(&page) > 30.0).then_some(()))
            .map_err(|e| anyhow::anyhow!("{e}; stats: {}", page_stats(&page)))?;

        let audio = |p: &Browser| page_stats(p)["audioPacketsReceived"].as_f64().unwrap_or(0.0);
        let (audio_before, lost_before) = (audio(&page), ns.udp_lost()?);
        let seen = watch(&page, Duration::from_secs(20), None);
        let (heard, lost) = (audio(&page) - audio_before, ns.udp_lost()? - lost_before);
        println!(
            "{loss} % loss, 20-120 ms delay: {lost} datagrams dropped in 20 s; the commentator decoded {:.0} frames, {} freezes, {:.2} s frozen ({:.1} % of the time), heights {:?}; {heard:.0} audio packets",
            seen.frames,
            seen.freezes,
            seen.freeze_seconds,
            seen.freeze_seconds * 100.0 / 20.0,
            seen.heights
        );
        assert!(lost > 50, "the link lost only {lost} datagrams in 20 s at {loss} %");
        // Bounds (docs/benchmarks.md): a picture that moves, and speech that goes
        // on (Opus sends 50 packets a second; up to the loss itself and its repair
        // may be missing).
        assert!(seen.frames >= 150.0, "{loss} %: decoded only {} frames in 20 s", seen.frames);
        assert!(seen.freeze_seconds < max_frozen, "{loss} %: frozen for {:.2} s of 20", seen.freeze_seconds);
        assert!(heard >= 700.0, "{loss} %: only {heard} audio packets in 20 s");
    }
    Ok(())
}
