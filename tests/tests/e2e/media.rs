//! The media path with peers we did not write: str0m publishers and subscribers,
//! GStreamer webrtcbin over WHIP and over the signaling, ICE-TCP, a real address,
//! an SRT encoder through `casecast publish`.

use super::*;
use casecast_loadtest::{Publisher, PublisherOptions, Subscriber};

/// Waits (bounded) until a subscriber has video with a keyframe, and audio.
fn wait_for_feed(sub: &Subscriber, what: &str, limit: Duration) -> Result<()> {
    wait_for(what, limit, || {
        let st = sub.stats();
        (st.video.frames >= 30 && st.video.keyframes >= 1 && st.audio.frames >= 25).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {:?}", sub.stats()))
}

fn count(server: &Server, role: &str) -> Option<f64> {
    server.metric(&format!("casecast_participants{{role=\"{role}\"}}"))
}

#[test]
fn str0m_publisher_reaches_two_subscribers_and_a_leaver_is_freed() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-2";
    let publisher = Publisher::start(&server.url, room, &server.token(room, Role::Encoder, "enc"), PublisherOptions::default())?;
    assert!(publisher.wait_connected(Duration::from_secs(20)), "publisher connects: {:?}", publisher.stats());
    let s1 = Subscriber::start(&server.url, room, &server.token(room, Role::Viewer, "v1"))?;
    let s2 = Subscriber::start(&server.url, room, &server.token(room, Role::Viewer, "v2"))?;
    for s in [&s1, &s2] {
        assert!(s.wait_for_video(Duration::from_secs(20)), "video arrives: {:?}", s.stats());
        wait_for("a keyframe and audio at each subscriber", Duration::from_secs(20), || {
            let st = s.stats();
            (st.video.keyframes >= 1 && st.audio.frames >= 50 && st.video.frames >= 30).then_some(())
        })?;
    }
    // Both receive what the publisher sends (over two seconds, the frames in
    // flight at either end aside), however fast a loaded machine lets it send.
    let (sent0, got0) = (publisher.stats().video_bytes_sent, s1.stats().video.bytes);
    let t0 = std::time::Instant::now();
    wait_for("two seconds of video", Duration::from_secs(10), || (t0.elapsed() >= Duration::from_secs(2)).then_some(()))?;
    let (sent, got) = (publisher.stats().video_bytes_sent - sent0, s1.stats().video.bytes - got0);
    assert!(sent > 100_000, "the publisher sent {sent} B in 2 s");
    let ratio = got as f64 / sent as f64;
    assert!((0.8..1.2).contains(&ratio), "received {got} B of {sent} B sent");
    assert_eq!(count(&server, "viewer"), Some(2.0));
    assert!(server.metric("casecast_rtp_packets_forwarded_total").unwrap_or(0.0) > 100.0);

    // Only the token that started a session may end it, and only through its door.
    let other = format!("Bearer {}", server.token(room, Role::Viewer, "someone else"));
    assert_eq!(http_delete(s1.resource_url(), &[("Authorization", &other)])?, 403);
    let as_whip = publisher.resource_url().to_string();
    assert_eq!(http_delete(&as_whip.replace("/whip/", "/whep/"), &[("Authorization", &other)])?, 404);
    assert_eq!(http_delete(s1.resource_url(), &[])?, 401);
    // Browsers on other origins can read WHIP/WHEP answers and errors.
    let (_, h, _) = http_post(&format!("{}/whep/{room}", server.url), &[("Content-Type", "application/sdp")], b"v=0")?;
    assert!(h.iter().any(|(k, v)| k.eq_ignore_ascii_case("access-control-allow-origin") && v == "*"), "{h:?}");

    // A subscriber that leaves frees its actor and its routes; the other carries on.
    s2.stop();
    wait_for("the leaver to be gone", Duration::from_secs(10), || {
        (count(&server, "viewer") == Some(1.0) && server.metric("casecast_udp_routes{key=\"ufrag\"}") == Some(2.0)).then_some(())
    })?;
    let before = s1.stats().video.frames;
    wait_for("the remaining subscriber to keep receiving", Duration::from_secs(10), || (s1.stats().video.frames > before + 30).then_some(()))?;

    publisher.stop();
    s1.stop();
    wait_for("everything to be gone", Duration::from_secs(10), || {
        (server.metric("casecast_rooms") == Some(0.0)
            && count(&server, "viewer") == Some(0.0)
            && count(&server, "encoder") == Some(0.0)
            && server.metric("casecast_udp_routes{key=\"ufrag\"}") == Some(0.0)
            && server.metric("casecast_udp_routes{key=\"address\"}") == Some(0.0))
        .then_some(())
    })?;
    Ok(())
}

#[test]
fn gstreamer_webrtcbin_publishes_over_whip_to_a_str0m_subscriber() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-3";
    let whip = format!("{}/whip/{room}", server.url);
    for codec in ["vp8", "h264"] {
        let base = server.metric("casecast_rtp_packets_received_total").unwrap_or(0.0);
        let publisher = gst_publisher(&whip, &server.token(room, Role::Encoder, "enc"), &["--codec", codec, "--width", "640", "--height", "360"])?;
        wait_for("webrtcbin to publish", Duration::from_secs(40), || {
            (count(&server, "encoder") == Some(1.0) && server.metric("casecast_rtp_packets_received_total").unwrap_or(0.0) > base + 50.0).then_some(())
        })?;
        let sub = Subscriber::start(&server.url, room, &server.token(room, Role::Viewer, "v"))?;
        wait_for_feed(&sub, &format!("{codec} video with a keyframe, and audio, at the subscriber"), Duration::from_secs(40))?;
        sub.stop();
        // A clean stop DELETEs the WHIP session: the server lets go at once.
        assert!(publisher.terminate()?.success());
        wait_for("the publisher to be gone", Duration::from_secs(5), || (count(&server, "encoder") == Some(0.0)).then_some(()))?;
    }
    Ok(())
}

#[test]
fn a_subscriber_waiting_before_the_feed_starts_receives_it() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-5";
    let early = Subscriber::start(&server.url, room, &server.token(room, Role::Viewer, "early"))?;
    wait_for("the early subscriber to connect", Duration::from_secs(10), || early.stats().connected_at)?;
    let publisher = Publisher::start(&server.url, room, &server.token(room, Role::Encoder, "enc"), PublisherOptions::default())?;
    assert!(publisher.wait_connected(Duration::from_secs(20)));
    assert!(early.wait_for_video(Duration::from_secs(20)), "{:?}", early.stats());
    wait_for("a keyframe at the early subscriber", Duration::from_secs(10), || (early.stats().video.keyframes >= 1).then_some(()))?;
    assert!(publisher.stats().keyframe_requests >= 1, "the server asked the publisher for a keyframe");
    Ok(())
}

#[test]
fn the_demo_feed_reaches_a_subscriber_with_a_wildcard_media_bind() -> Result<()> {
    // `make run` binds the media port on 0.0.0.0: each advertised address gets its
    // own socket so ICE knows which candidate a datagram came in on.
    let server = Server::demo_on_wildcard(&["--program", "false"])?;
    let sub = Subscriber::start(&server.url, "demo", &server.token("demo", Role::Viewer, "v"))?;
    wait_for_feed(&sub, "the demo feed at a WHEP subscriber", Duration::from_secs(60))?;
    Ok(())
}

#[test]
fn the_demo_runs_on_a_real_address_with_its_feed_and_program() -> Result<()> {
    // `casecast demo --listen 10.x.y.z:port`: the demo's own feed and program
    // reach the server where it listens (not at 127.0.0.1, where nothing is).
    let addr = casecast_tests::net::LocalAddress::new()?;
    let ip = addr.ip.to_string();
    let server = Server::demo_at(&ip, &[])?;
    let options = casecast_loadtest::SubscriberOptions { bind_ip: addr.ip.into(), ..Default::default() };
    let sub = Subscriber::start_with(&server.url, "demo", &server.token("demo", Role::Viewer, "v"), options)?;
    wait_for_feed(&sub, "the demo feed at a subscriber on the same address", Duration::from_secs(60))?;
    wait_for("the program's HLS playlist", Duration::from_secs(90), || {
        let (code, text) = http_get(&format!("{}/hls/demo/index.m3u8", server.url)).ok()?;
        (code == 200 && segments(&text).len() >= 2).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", server.log_text()))?;
    Ok(())
}

#[test]
fn webrtcbin_joins_over_websocket_signaling_and_decodes_the_feed() -> Result<()> {
    // A second WebRTC stack on our signaling protocol, receiving through m-lines
    // it offered itself (the way the compositor joins), as webrtcbin comes: with
    // the RSA DTLS certificate OpenSSL-based stacks present, where browsers present
    // ECDSA ones. The demo's feed arrives the same way, over WHIP.
    let server = Server::demo(&["--program", "false"])?;
    let viewer = casecast_tests::gst_peer::WebrtcbinViewer::join(&server.url, "demo", &server.token("demo", Role::Operator, "compositor"), 1)?;
    wait_for("webrtcbin to decode the feed", Duration::from_secs(60), || {
        (viewer.video() >= 30 && viewer.audio() >= 25).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: video {}, audio {}", viewer.video(), viewer.audio()))?;
    assert!(!server.log_text().contains("DTLS handshake failed"));
    viewer.stop()?;
    wait_for("the operator to leave", Duration::from_secs(10), || (count(&server, "operator") == Some(0.0)).then_some(()))?;
    Ok(())
}

#[test]
fn casecast_watch_reports_the_feed_each_webrtcbin_viewer_receives() -> Result<()> {
    // `casecast watch`: webrtcbin viewers over WHEP, as an operator checks a room
    // from a terminal. Each receives the demo's feed (about 2.5 Mbit/s of VP8 and
    // Opus at 30 fps); the JSON summary says so.
    let server = Server::demo(&["--program", "false"])?;
    let out = std::process::Command::new(casecast_bin())
        .args(["watch", "--whep", &format!("{}/whep/demo", server.url), "--count", "2", "--warmup", "3s", "--duration", "5s"])
        .args(["--token", &server.token("demo", Role::Viewer, "watcher 1"), "--token", &server.token("demo", Role::Viewer, "watcher 2")])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "casecast watch failed: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).map_err(|e| anyhow::anyhow!("{e}: {stderr}"))?;
    assert_eq!((r["joined"].as_u64(), r["connected"].as_u64()), (Some(2), Some(2)), "{r}\n{stderr}");
    // Bounds a viewer would notice, not an idle machine's figures.
    assert!(r["bitrate_bps"]["min"].as_f64().unwrap_or(0.0) > 1_000_000.0, "{r}");
    assert!(r["fps"]["min"].as_f64().unwrap_or(0.0) > 10.0, "{r}");
    // The session ends with the viewers: their seats are given back.
    wait_for("the viewers to leave", Duration::from_secs(10), || (count(&server, "viewer") == Some(0.0)).then_some(()))?;
    Ok(())
}

#[test]
fn a_peer_without_udp_gets_the_feed_over_ice_tcp() -> Result<()> {
    // libnice (webrtcbin) with ICE over UDP switched off, as behind a firewall
    // that drops UDP: it connects to the server's passive TCP candidate (RFC
    // 6544, RFC 4571 framing) and decodes the feed.
    let tcp = free_tcp_port().to_string();
    let server = Server::demo(&["--program", "false", "--ice-tcp-port", &tcp])?;
    // The demo's publisher (libnice too, UDP allowed) may open TCP checks of its own.
    wait_for("the demo feed", Duration::from_secs(60), || {
        (server.metric("casecast_rtp_packets_received_total").unwrap_or(0.0) > 100.0).then_some(())
    })?;
    let before = server.metric("casecast_ice_tcp_connections").unwrap_or(0.0);
    let viewer = casecast_tests::gst_peer::WebrtcbinViewer::join_over(&server.url, "demo", &server.token("demo", Role::Operator, "tcp viewer"), 1, false)?;
    wait_for("webrtcbin to decode the feed over ICE-TCP", Duration::from_secs(60), || {
        (viewer.video() >= 30 && viewer.audio() >= 25).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: video {}, audio {}\n{}", viewer.video(), viewer.audio(), server.log_text()))?;
    let during = server.metric("casecast_ice_tcp_connections").unwrap_or(0.0);
    assert!(during > before, "the media came over TCP: {before} then {during} connections");
    viewer.stop()?;
    wait_for("the TCP connections to close with the session", Duration::from_secs(10), || {
        (server.metric("casecast_ice_tcp_connections")? <= before).then_some(())
    })?;
    Ok(())
}

#[test]
fn an_m_line_the_client_offered_carries_the_next_feed_without_renegotiation() -> Result<()> {
    // The compositor's way of joining: when the encoder reconnects, the new feed
    // arrives on the same m-lines (the viewer fails on any server offer).
    let server = Server::start(&[])?;
    let room = "or-6";
    let whip = format!("{}/whip/{room}", server.url);
    let viewer = casecast_tests::gst_peer::WebrtcbinViewer::join(&server.url, room, &server.token(room, Role::Operator, "mixer"), 1)?;
    for round in 0..2 {
        let before = viewer.video();
        let publisher = gst_publisher(&whip, &server.token(room, Role::Encoder, "enc"), &["--width", "320", "--height", "180"])?;
        wait_for(&format!("feed {round} decoded by webrtcbin"), Duration::from_secs(60), || {
            (viewer.video() >= before + 30).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: video {}, audio {}", viewer.video(), viewer.audio()))?;
        assert!(publisher.terminate()?.success());
        wait_for("the encoder to leave", Duration::from_secs(10), || (count(&server, "encoder") == Some(0.0)).then_some(()))?;
    }
    viewer.stop()?;
    Ok(())
}

#[test]
fn join_leave_cycles_leave_nothing_behind() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-4";
    let publisher = Publisher::start(&server.url, room, &server.token(room, Role::Encoder, "enc"), PublisherOptions::default())?;
    assert!(publisher.wait_connected(Duration::from_secs(20)));
    for i in 0..25 {
        let s = Subscriber::start(&server.url, room, &server.token(room, Role::Viewer, &format!("v{i}")))?;
        assert!(s.wait_for_video(Duration::from_secs(20)), "cycle {i}: {:?}", s.stats());
        if i % 2 == 0 {
            s.stop(); // DELETE
        } else {
            drop(s); // also DELETE, from Drop
        }
    }
    wait_for("no subscriber left", Duration::from_secs(15), || {
        (count(&server, "viewer") == Some(0.0)
            && server.metric("casecast_udp_routes{key=\"ufrag\"}") == Some(1.0)
            && server.metric("casecast_udp_routes{key=\"address\"}") == Some(1.0))
        .then_some(())
    })?;
    assert_eq!(server.metric("casecast_rooms"), Some(1.0));
    Ok(())
}

/// A hospital encoder that speaks SRT (ffmpeg: H.264 + AAC in MPEG-TS, pushed as an
/// SRT caller) reaches the room through `casecast publish --source srt://…?mode=listener`:
/// the room's operators see the feed arrive at its size and full frame rate, with
/// its sound.
#[test]
fn an_encoder_pushes_srt_into_the_room() -> Result<()> {
    let server = Server::start(&[])?;
    let port = free_udp_port();
    let _bridge = gst_publisher(
        &format!("{}/whip/or-9", server.url),
        &server.token("or-9", Role::Encoder, "OR 9 (SRT)"),
        &["--source", &format!("srt://127.0.0.1:{port}?mode=listener"), "--width", "640", "--height", "360", "--fps", "25"],
    )?;
    let bound = || {
        let want = format!(":{port:04X}");
        std::fs::read_to_string("/proc/net/udp").unwrap_or_default().lines().any(|l| l.split_whitespace().nth(1).is_some_and(|local| local.ends_with(&want)))
    };
    wait_for("the SRT listener", Duration::from_secs(20), || bound().then_some(()))?;
    let encoder = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50", "-c:a", "aac", "-f", "mpegts"])
        .arg(format!("srt://127.0.0.1:{port}?mode=caller"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let _encoder = Proc(encoder);
    let op = server.token("or-9", Role::Operator, "Ops Hal");
    let url = format!("{}/api/events/or-9/participants", server.url);
    let feed = wait_for("the SRT feed in the room at full rate", Duration::from_secs(45), || {
        let (_, list) = api("GET", &url, Some(&op), None).ok()?;
        list.as_array()?.iter().find(|p| p["role"] == "encoder" && p["fps_in"].as_f64().unwrap_or(0.0) >= 10.0 && p["width"] == 640).cloned()
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", api("GET", &url, Some(&op), None).map(|r| r.1).unwrap_or_default()))?;
    assert_eq!(feed["height"], 360);
    assert!(feed["bitrate_in"].as_u64().unwrap_or(0) > 200_000, "{feed}");
    assert!(feed["publishing"].as_array().is_some_and(|k| k.iter().any(|k| k == "audio") && k.iter().any(|k| k == "video")), "{feed}");
    Ok(())
}

#[test]
fn rooms_are_spread_over_the_media_workers_and_each_carries_its_feed() -> Result<()> {
    // Two events at once on a server with two media workers: each room lives on a
    // worker of its own (its own thread and UDP port), and each room's viewer
    // decodes its feed, one over UDP, one over ICE-TCP (the listener is shared).
    let server = Server::start(&["--media-workers", "2"])?;
    let mut viewers = Vec::new();
    let mut publishers = Vec::new();
    for (room, udp) in [("or-a", true), ("or-b", false)] {
        publishers.push(gst_publisher(&format!("{}/whip/{room}", server.url), &server.token(room, Role::Encoder, "OR encoder"), &["--width", "640", "--height", "360"])?);
        viewers.push(casecast_tests::gst_peer::WebrtcbinViewer::join_over(&server.url, room, &server.token(room, Role::Operator, "monitor"), 1, udp)?);
    }
    for (viewer, room) in viewers.iter().zip(["or-a", "or-b"]) {
        wait_for(&format!("the viewer of {room} to decode its feed"), Duration::from_secs(60), || (viewer.video() >= 30 && viewer.audio() >= 25).then_some(()))
            .map_err(|e| anyhow::anyhow!("{e}: video {}, audio {}", viewer.video(), viewer.audio()))?;
    }
    for w in ["0", "1"] {
        let rooms = server.metric(&format!("casecast_media_worker_rooms{{worker=\"{w}\"}}"));
        let people = server.metric(&format!("casecast_media_worker_participants{{worker=\"{w}\"}}"));
        assert_eq!((rooms, people), (Some(1.0), Some(2.0)), "worker {w}: one room, its encoder and its viewer");
    }
    // Each worker's socket: the media port and the one after it.
    let udp = std::fs::read_to_string("/proc/net/udp")?;
    for port in [server.udp_port, server.udp_port + 1] {
        assert!(udp.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&format!(":{port:04X}")))), "port {port} bound");
    }
    for v in viewers {
        v.stop()?;
    }
    drop(publishers);
    wait_for("the rooms to close on both workers", Duration::from_secs(20), || {
        ["0", "1"]
            .iter()
            .all(|w| server.metric(&format!("casecast_media_worker_participants{{worker=\"{w}\"}}")) == Some(0.0))
            .then_some(())
    })?;
    Ok(())
}

#[test]
fn the_load_test_spreads_rooms_over_nodes_and_reports_each_node() -> Result<()> {
    // Two servers (nodes) with two media workers each; `casecast-loadtest` puts four
    // rooms on them (two each, publisher and subscribers on the room's node) and
    // reports every room and node: each node's rooms spread over its two workers.
    use anyhow::Context as _;
    let a = Server::start(&["--media-workers", "2"])?;
    let b = Server::start(&["--media-workers", "2"])?;
    let bin = target_dir().join("debug/casecast-loadtest");
    let run = std::process::Command::new(&bin)
        .args(["--url", &a.url, "--url", &b.url, "--secret", SECRET, "--metrics-token", METRICS_TOKEN, "--rooms", "4", "--subscribers", "8"])
        .args(["--duration", "4s", "--video-bitrate", "800000", "--ramp", "20ms", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} (cargo build --workspace --bins)", bin.display()))?;
    let mut run = Proc(run);
    // While it runs, each node has a room on each of its workers.
    for s in [&a, &b] {
        wait_for("each worker of the node to carry a room", Duration::from_secs(60), || {
            ["0", "1"].iter().all(|w| s.metric(&format!("casecast_media_worker_rooms{{worker=\"{w}\"}}")) == Some(1.0)).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e} (is the load test running? {:?})", run.0.try_wait()))?;
    }
    let child = &mut run.0;
    let status = wait_for("the load test to end", Duration::from_secs(120), || child.try_wait().ok().flatten())?;
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().context("stdout")?, &mut out).ok();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().context("stderr")?, &mut err).ok();
    anyhow::ensure!(status.success(), "the load test failed: {err}");
    let r: Value = serde_json::from_str(&out).map_err(|e| anyhow::anyhow!("{e}: {err}"))?;
    assert_eq!(r["rooms"].as_array().map(Vec::len), Some(4), "{r}");
    for (n, url) in [&a.url, &b.url].iter().enumerate() {
        let node = &r["nodes"][n];
        assert_eq!((node["url"].as_str(), node["rooms"].as_u64()), (Some(url.as_str()), Some(2)), "{node}");
        assert_eq!(node["aggregate"]["receiving"].as_u64(), Some(4), "every subscriber of node {n} receives: {node}");
        assert!(node["aggregate"]["video_kbps_min"].as_f64().unwrap_or(0.0) > 400.0, "{node}");
        assert!(node["server"]["packets_forwarded"].as_f64().unwrap_or(0.0) > 0.0, "node {n}'s own cost: {node}");
    }
    Ok(())
}
