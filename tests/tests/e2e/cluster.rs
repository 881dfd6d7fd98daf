//! Nodes sharing one Redis and one PostgreSQL: a room on one node, clients sent to
//! it from any other, the room placed again when its node dies, revocations and
//! draining seen by every node.

use super::*;
use casecast_loadtest::{Subscriber, SubscriberOptions};

/// The viewer's frames decoded of the feed.
fn frames(page: &Browser) -> f64 {
    page_stats(page)["feedFramesDecoded"].as_f64().unwrap_or(0.0)
}

fn participants(server: &Server, role: &str) -> f64 {
    server.metric(&format!("casecast_participants{{role=\"{role}\"}}")).unwrap_or(-1.0)
}

/// A commentator opening its link on node B lands in the room node A owns and sees
/// the feed; the compositor pointed at B mixes it on A; WHEP viewers through node C
/// are sent to A too (307). Node A is killed: the room is placed again on a live
/// node when the encoder's bridge (given A and C) comes back through C by itself,
/// and the commentator's page rejoins by itself (bound: 45 s, docs/deploy.md). A
/// revoked invitation is refused on every node; an event made on one node is known on the
/// others, its HLS viewers are counted on every node's console, and deleted on one
/// node it is gone from the others; an operator on another node mutes a
/// commentator (made on the room's node) and sees the room's people in the live
/// view there; a draining node sends new rooms elsewhere.
#[test]
fn a_room_lives_on_one_node_of_three_and_is_placed_again_when_it_dies() -> Result<()> {
    let redis = Redis::start()?;
    let pg = Postgres::start()?;
    let node = || Server::start(&["--redis-url", &redis.url, "--cases-database", &pg.url, "--cases-cstore-listen", "", "--media-workers", "1"]);
    let a = node()?;
    let b = node()?;
    let c = node()?;
    let room = "or-cluster";

    // The encoder publishes into node A: A owns the room. Its bridge knows node C
    // too, for when A does not answer.
    let via_c = format!("{}/whip/{room}", c.url);
    let _encoder = gst_publisher(&format!("{}/whip/{room}", a.url), &a.token(room, Role::Encoder, "OR encoder"), &["--whip", &via_c, "--width", "640", "--height", "360"])?;
    wait_for("the feed on node A", Duration::from_secs(30), || (participants(&a, "encoder") == 1.0).then_some(()))?;

    // The commentator's link names node B.
    let page = Browser::start()?;
    page.join_room(&format!("{}/room/{room}?token={}", b.url, b.token(room, Role::Commentator, "Dr. Elsewhere")))?;
    wait_for("the commentator to see the feed through node B", Duration::from_secs(60), || (frames(&page) > 30.0).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}: {}", page_stats(&page)))?;
    assert_eq!((participants(&a, "commentator"), participants(&b, "commentator")), (1.0, 0.0), "the commentator is on the room's node");

    // The program's compositor pointed at node B joins on A, and mixes the feed.
    let hls = TempDir::new("cluster-hls");
    let compositor = std::process::Command::new(casecast_bin())
        .args(["compositor", "--url", &b.url, "--room", room, "--token", &b.token(room, Role::Operator, "program")])
        .args(["--hls-dir", &hls.0.display().to_string(), "--width", "320", "--height", "180", "--fps", "5", "--no-monitor"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let compositor = Proc(compositor);
    wait_for("the compositor to join on node A", Duration::from_secs(30), || (participants(&a, "operator") == 1.0).then_some(()))?;
    wait_for("the program's first segment", Duration::from_secs(60), || {
        std::fs::read_dir(&hls.0).ok()?.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".ts")).then_some(())
    })?;
    assert_eq!(participants(&b, "operator"), 0.0, "node B carries no session");
    drop(compositor);

    // WHEP viewers through node C are sent to A (307), and watch. How long a join
    // through a node that does not own the room takes, to the first frame:
    let mut firsts = Vec::new();
    for i in 0..10 {
        let started = std::time::Instant::now();
        let v = Subscriber::start_with(&c.url, room, &c.token(room, Role::Viewer, &format!("viewer {i}")), SubscriberOptions::default())?;
        anyhow::ensure!(v.wait_for_video(Duration::from_secs(20)), "viewer {i} through node C got no video: {:?}", v.stats().error);
        firsts.push(started.elapsed().as_secs_f64() * 1000.0);
        v.stop();
    }
    firsts.sort_by(f64::total_cmp);
    println!("join through a non-owner node, to the first frame: p50 {:.0} ms, max {:.0} ms (of 10)", firsts[4], firsts[9]);
    assert_eq!(participants(&c, "viewer"), 0.0, "node C carried no session");

    // A revoked invitation is refused on every node.
    let center = a.token("*", Role::Operator, "Ops");
    let events = format!("{}/api/events", a.url);
    assert_eq!(api("POST", &events, Some(&center), Some(json!({"id": "cl-ev", "title": "Cluster event"})))?.0, 201);
    let (s, inv) = api("POST", &format!("{events}/cl-ev/invitations"), Some(&center), Some(json!({"name": "Dr. Gone", "role": "commentator"})))?;
    assert_eq!(s, 201, "{inv}");
    let gone = inv["token"].as_str().unwrap().to_string();
    let whep = |s: &Server| -> Result<u16> {
        let auth = format!("Bearer {gone}");
        Ok(http_request_unfollowed("POST", &format!("{}/whep/cl-ev", s.url), &[("Authorization", &auth), ("Content-Type", "application/sdp")], Some(b"v=0\r\n"))?.0)
    };
    for s in [&b, &c] {
        assert_ne!(whep(s)?, 401, "accepted before the revocation");
    }
    assert_eq!(api("DELETE", &format!("{events}/cl-ev/invitations/{}", inv["id"].as_str().unwrap()), Some(&center), None)?.0, 204);
    for (name, s) in [("A", &a), ("B", &b), ("C", &c)] {
        wait_for(&format!("node {name} to refuse the revoked invitation"), Duration::from_secs(10), || (whep(s).ok()? == 401).then_some(()))?;
    }

    // The event made on A is known on C (one database, read again), and HLS viewers
    // counted where the program is served add up on every node's console.
    wait_for("node C to know the event made on A", Duration::from_secs(15), || {
        (api("GET", &format!("{}/api/events/cl-ev", c.url), Some(&center), None).ok()?.0 == 200).then_some(())
    })?;
    let hls = a.data_dir().join("hls/cl-ev");
    std::fs::create_dir_all(&hls)?;
    std::fs::write(hls.join("index.m3u8"), "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n")?;
    for v in ["v1", "v2", "v3"] {
        assert_eq!(http_get(&format!("{}/hls/cl-ev/index.m3u8?viewer={v}", a.url))?.0, 200);
    }
    let counted = |s: &Server| api("GET", &format!("{}/api/events/cl-ev/distribution", s.url), Some(&center), None).map(|(_, d)| d);
    // (From one address, they count as many as `viewers_per_address` allows.)
    let on_a = counted(&a)?["viewers"].as_u64().unwrap_or(0);
    assert!(on_a >= 1, "A counts its viewers");
    wait_for("node C's console to count A's viewers", Duration::from_secs(15), || (counted(&c).ok()?["viewers"] == on_a).then_some(()))
        .map_err(|e| anyhow::anyhow!("{e}: A says {:?}, C says {:?}", counted(&a).ok(), counted(&c).ok()))?;
    // The event deleted through node B (once B has read it) is gone from every
    // node's list.
    wait_for("node B to know the event made on A", Duration::from_secs(15), || {
        (api("GET", &format!("{}/api/events/cl-ev", b.url), Some(&center), None).ok()?.0 == 200).then_some(())
    })?;
    assert_eq!(api("DELETE", &format!("{}/api/events/cl-ev", b.url), Some(&center), None)?.0, 204);
    for (name, s) in [("A", &a), ("C", &c)] {
        wait_for(&format!("node {name} to forget the event deleted on B"), Duration::from_secs(15), || {
            (api("GET", &format!("{}/api/events/cl-ev", s.url), Some(&center), None).ok()?.0 == 404).then_some(())
        })?;
    }

    // Node A dies. The encoder's bridge finds A gone and publishes through node C;
    // the commentator's page, left with nothing, joins again by itself.
    let before = frames(&page);
    a.signal("KILL")?;
    let killed = std::time::Instant::now();
    // Once A's heartbeat has lapsed, its rooms are free to be placed again.
    let nodes_left = || -> Option<usize> {
        let port = redis.url.trim_end_matches("/0").rsplit(':').next()?.to_string();
        let out = std::process::Command::new("redis-cli").args(["-p", &port, "KEYS", "casecast:node:*"]).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count())
    };
    wait_for("node A's heartbeat to lapse", Duration::from_secs(20), || (nodes_left()? == 2).then_some(()))?;
    let back = wait_for("the commentator to see the feed again", Duration::from_secs(45), || {
        (frames(&page) > before + 30.0).then(|| killed.elapsed())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_stats(&page)))?;
    println!("the room's node killed: the commentator sees the feed again after {:.1} s", back.as_secs_f64());
    let (on_b, on_c) = (participants(&b, "encoder"), participants(&c, "encoder"));
    assert!((on_b, on_c) == (1.0, 0.0) || (on_b, on_c) == (0.0, 1.0), "the room lives on one node: encoders on B {on_b}, on C {on_c}");
    let owner = if on_b == 1.0 { &b } else { &c };
    assert_eq!(participants(owner, "commentator"), 1.0, "the commentator is with the encoder");

    // An operator's console on the other node mutes the commentator: the request is
    // made on the room's node (holds live with the room).
    let other = if on_b == 1.0 { &c } else { &b };
    let ops = other.token("*", Role::Operator, "Ops");
    let (s, list) = api("GET", &format!("{}/api/events/{room}/participants", other.url), Some(&ops), None)?;
    let who = list.as_array().and_then(|l| l.iter().find(|p| p["role"] == "commentator")).map(|p| p["id"].as_str().unwrap_or_default().to_string());
    let who = who.ok_or_else(|| anyhow::anyhow!("the commentator in the list from the other node: {s} {list}"))?;
    let (s, _) = api("POST", &format!("{}/api/events/{room}/participants/{who}/mute", other.url), Some(&ops), Some(json!({"kind": "audio", "muted": true})))?;
    assert_eq!(s, 204);
    wait_for("the hold to reach the room's node", Duration::from_secs(10), || {
        let (_, list) = api("GET", &format!("{}/api/events/{room}/participants", owner.url), Some(&ops), None).ok()?;
        list.as_array()?.iter().any(|p| p["id"] == who.as_str() && p["audio_muted_by_operator"] == true).then_some(())
    })?;
    // The console's live view open on the other node shows the room's people (from
    // the room's node), the hold included.
    let (mut live, _) = tungstenite::connect(format!("{}/api/events/{room}/live?token={ops}", other.url.replace("http://", "ws://")))?;
    if let MaybeTlsStream::Plain(s) = live.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
    }
    let shown = (0..10).filter_map(|_| ws_recv(&mut live)).find(|m| {
        m["type"] == "snapshot" && m["participants"].as_array().is_some_and(|l| l.iter().any(|p| p["id"] == who.as_str() && p["audio_muted_by_operator"] == true))
    });
    assert!(shown.is_some(), "the live view on the node without the room shows its commentator, muted");

    // A draining node takes no new room: a new room's viewer is sent to the other.
    b.signal("USR1")?;
    let auth = format!("Bearer {}", b.token("or-new", Role::Viewer, "v"));
    let location = wait_for("the draining node to send a new room elsewhere", Duration::from_secs(10), || {
        let (s, hs, _) = http_request_unfollowed("POST", &format!("{}/whep/or-new", b.url), &[("Authorization", &auth), ("Content-Type", "application/sdp")], Some(b"v=0\r\n")).ok()?;
        let to = header(&hs, "location").unwrap_or_default().to_string();
        (s == 307 && to.starts_with(&c.url)).then_some(to)
    })?;
    assert!(location.ends_with("/whep/or-new"), "{location}");
    Ok(())
}
