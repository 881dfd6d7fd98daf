//! End-to-end tests against a real `casecast` process. Each test starts its own
//! server on free loopback ports. This file holds the signaling tests, the two
//! commentators in Chromium and the helpers every file uses; the rest is by subject
//! in `e2e/`.

#[path = "e2e/doors.rs"]
mod doors;
#[path = "e2e/security.rs"]
mod security;
#[path = "e2e/deid.rs"]
mod deid;
#[path = "e2e/cases.rs"]
mod cases;
#[path = "e2e/ingest_workers.rs"]
mod ingest_workers;
#[path = "e2e/cluster.rs"]
mod cluster;
#[path = "e2e/event_day.rs"]
mod event_day;
#[path = "e2e/joining.rs"]
mod joining;
#[path = "e2e/https.rs"]
mod https;
#[path = "e2e/firewalls.rs"]
mod firewalls;
#[path = "e2e/roaming.rs"]
mod roaming;
#[path = "e2e/adaptation.rs"]
mod adaptation;
#[path = "e2e/media.rs"]
mod media;
#[path = "e2e/program.rs"]
mod program;
#[path = "e2e/llhls.rs"]
mod llhls;
#[path = "e2e/operators.rs"]
mod operators;
#[path = "e2e/distribution.rs"]
mod distribution;
#[path = "e2e/observability.rs"]
mod observability;
#[path = "e2e/library.rs"]
mod library;
#[path = "e2e/pacs.rs"]
mod pacs;
#[path = "e2e/deploy.rs"]
mod deploy;

use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use casecast_signaling::Role;
use casecast_tests::browser::Browser;
use casecast_tests::*;
// The program tests' helpers (segments, probes, frames) serve the other files too.
use program::*;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// For a light test whose doors may start an event (`POST /api/events/{id}/start`
/// runs its program in the server): programs small and slow enough not to load the
/// machine the media tests share.
const LIGHT_PROGRAMS: &[&str] = &["--program-width", "320", "--program-height", "180", "--program-fps", "5"];

fn ws_connect(server: &Server) -> Ws {
    let url = format!("{}/ws", server.url.replace("http://", "ws://"));
    let (ws, _) = tungstenite::connect(url).expect("websocket connects");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// The next JSON message (skipping pings), or None when the server closed.
fn ws_recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).expect("server sends JSON")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next message of type `ty`, skipping room events on the way.
fn ws_recv_type(ws: &mut Ws, ty: &str) -> Value {
    for _ in 0..50 {
        let v = ws_recv(ws).unwrap_or_else(|| panic!("connection closed while waiting for {ty}"));
        if v["type"] == ty || v["type"] == "error" {
            return v;
        }
    }
    panic!("no {ty} message in 50");
}

fn error_code(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "expected an error, got {v}");
    assert!(v["message"].as_str().is_some_and(|m| m.len() > 5), "errors explain themselves: {v}");
    v["code"].as_str().unwrap()
}

#[test]
fn hostile_signaling_gets_clear_errors_and_harms_nothing() -> Result<()> {
    let server = Server::start(&[])?;
    let good = server.token("or-1", Role::Commentator, "Dr. A");

    let mut ws = ws_connect(&server);
    for (bad, code) in [
        ("not json", "bad_request"),
        ("{}", "bad_request"),
        (r#"{"type":"join","v":"one"}"#, "bad_request"),
        (r#"{"type":"offer","sdp":"v=0"}"#, "not_joined"),
        (r#"{"type":"answer","sdp":"v=0"}"#, "not_joined"),
        (&"[".repeat(50_000), "bad_request"),
    ] {
        ws_send(&mut ws, bad);
        assert_eq!(error_code(&ws_recv(&mut ws).unwrap()), code, "for {:.40}", bad);
    }
    // Still usable: ping works, and a proper join succeeds on the same connection.
    ws_send(&mut ws, r#"{"type":"ping"}"#);
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "pong");
    ws_send(&mut ws, &json!({"type":"join","v":1,"room":"or-1","token":good}).to_string());
    let joined = ws_recv(&mut ws).unwrap();
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["role"], "commentator");
    assert_eq!(joined["policy"]["max_fps"], 5);
    ws_send(&mut ws, &json!({"type":"join","v":1,"room":"or-1","token":good}).to_string());
    assert_eq!(error_code(&ws_recv(&mut ws).unwrap()), "already_joined");
    // A joined client's message over the limit is answered, and the connection stays
    // (before a join only small frames are taken: `security`).
    let huge = json!({"type":"offer","sdp": "a".repeat(300_000)}).to_string();
    ws_send(&mut ws, &huge);
    assert_eq!(error_code(&ws_recv_type(&mut ws, "error")), "too_large");
    ws_send(&mut ws, r#"{"type":"offer","sdp":"garbage"}"#);
    assert_eq!(error_code(&ws_recv(&mut ws).unwrap()), "sdp_rejected");
    // A flood is refused politely, and the connection stays.
    let mut flood = ws_connect(&server);
    for _ in 0..100 {
        ws_send(&mut flood, r#"{"type":"ping"}"#);
    }
    let replies: Vec<Value> = (0..100).map(|_| ws_recv(&mut flood).unwrap()).collect();
    assert!(replies.iter().any(|v| v["type"] == "error" && v["code"] == "rate_limited"));
    assert!(replies.iter().filter(|v| v["type"] == "pong").count() >= 30, "a burst gets through");

    // Refusals that end the connection, with nothing joined.
    for (msg, code) in [
        (json!({"type":"join","v":1,"room":"or-1","token":"abc"}), "unauthorized"),
        (json!({"type":"join","v":1,"room":"or-2","token":good}), "forbidden"),
        (json!({"type":"join","v":2,"room":"or-1","token":good}), "unsupported_version"),
        (json!({"type":"join","v":1,"room":"or-1","token":server.key.mint("or-1", Role::Viewer, "x", 1, 10)}), "unauthorized"),
    ] {
        let mut w = ws_connect(&server);
        ws_send(&mut w, &msg.to_string());
        assert_eq!(error_code(&ws_recv(&mut w).unwrap()), code);
        assert!(ws_recv(&mut w).is_none(), "connection closes after {code}");
    }
    assert_eq!(server.metric("casecast_participants{role=\"commentator\"}"), Some(1.0), "only the good join counts");

    // WHIP refusals.
    let whip = format!("{}/whip/or-1", server.url);
    let enc = server.token("or-1", Role::Encoder, "enc");
    let sdp = [("Content-Type", "application/sdp")];
    let (s, h, body) = http_post(&whip, &sdp, b"v=0\r\n")?;
    assert_eq!(s, 401, "{body}");
    assert!(h.iter().any(|(k, v)| k.eq_ignore_ascii_case("www-authenticate") && v == "Bearer"));
    let auth = format!("Bearer {enc}");
    let (s, _, body) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], b"hello")?;
    assert_eq!(s, 400);
    assert!(body.contains("v=0"), "says what is wrong: {body}");
    let (s, _, _) = http_post(&whip, &[("Content-Type", "text/plain"), ("Authorization", &auth)], b"v=0")?;
    assert_eq!(s, 415);
    let garbage = b"v=0\r\no=- 0 0 IN IP4 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=nonsense\r\n\x01\x02";
    let (s, _, body) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], garbage)?;
    assert_eq!(s, 400, "{body}");
    let other = format!("Bearer {}", server.token("or-2", Role::Encoder, "enc"));
    let (s, _, _) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &other)], b"v=0\r\nm=x")?;
    assert_eq!(s, 403);
    let viewer = format!("Bearer {}", server.token("or-1", Role::Viewer, "v"));
    let (s, _, body) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &viewer)], b"v=0\r\nm=x")?;
    assert_eq!(s, 403);
    assert!(body.contains("viewer"), "{body}");
    let (s, _, _) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], &vec![b'v'; 200_000])?;
    assert!(s == 413 || s == 400, "oversized SDP refused, got {s}");

    // The first connection is still joined and answered; the server is healthy.
    ws_send(&mut ws, r#"{"type":"ping"}"#);
    assert_eq!(ws_recv_type(&mut ws, "pong")["type"], "pong");
    assert_eq!(http_get(&format!("{}/healthz", server.url))?.0, 200);
    ws_send(&mut ws, r#"{"type":"leave"}"#);
    assert!(ws_recv(&mut ws).is_none());
    wait_for("the participant to be gone", Duration::from_secs(10), || {
        (server.metric("casecast_participants{role=\"commentator\"}") == Some(0.0) && server.metric("casecast_rooms") == Some(0.0)).then_some(())
    })?;
    Ok(())
}

#[test]
fn token_command_mints_tokens_the_server_accepts() -> Result<()> {
    let dir = TempDir::new("token");
    let out = std::process::Command::new(casecast_bin())
        .args(["token", "--room", "or-7", "--role", "operator", "--name", "Desk", "--ttl", "1h", "--secret", SECRET])
        .arg("--data-dir")
        .arg(&dir.0)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    let claims = casecast_signaling::TokenKey::new(SECRET).verify(&token, 0)?;
    assert_eq!((claims.room.as_str(), claims.role, claims.name.as_str()), ("or-7", Role::Operator, "Desk"));
    assert!(claims.exp - claims.iat == 3600);
    let bad = std::process::Command::new(casecast_bin()).args(["token", "--room", "r", "--role", "king"]).output()?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("commentator"), "lists the roles");
    Ok(())
}

#[test]
fn server_stops_cleanly_on_sigterm() -> Result<()> {
    let mut server = Server::start(&[])?;
    assert!(server.is_running());
    let status = server.terminate()?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// Polls a page's `window.casecast.stats()`.
fn page_stats(b: &Browser) -> Value {
    b.eval_async(
        "const done = arguments[arguments.length - 1];
         (window.casecast && window.casecast.stats ? window.casecast.stats() : Promise.resolve(null))
           .then(s => done(s), e => done({error: String(e)}));",
    )
    .unwrap_or(Value::Null)
}

#[test]
fn two_commentators_in_chromium_watch_the_feed_and_hear_each_other() -> Result<()> {
    let server = Server::demo(&["--program", "false"])?;
    // The demo feed (webrtcbin over WHIP) is in the room before anyone joins.
    wait_for("the demo feed to publish", Duration::from_secs(60), || {
        (server.metric("casecast_participants{role=\"encoder\"}") == Some(1.0)
            && server.metric("casecast_rtp_packets_received_total").unwrap_or(0.0) > 100.0)
            .then_some(())
    })?;
    let a = Browser::start()?;
    let b = Browser::start()?;
    a.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. A")))?;
    b.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. B")))?;

    let mut seen = [0.0f64; 2];
    for (i, page) in [&a, &b].into_iter().enumerate() {
        let first = wait_for("the surgery feed to decode in the browser", Duration::from_secs(60), || {
            let s = page_stats(page);
            s["feedFramesDecoded"].as_f64().filter(|&n| n > 10.0)
        })
        .map_err(|e| anyhow::anyhow!("{e}; page {i} stats: {}", page_stats(page)))?;
        let later = wait_for("more frames to decode (the feed is live)", Duration::from_secs(30), || {
            page_stats(page)["feedFramesDecoded"].as_f64().filter(|&n| n > first + 30.0)
        })?;
        wait_for("audio from the other commentator", Duration::from_secs(60), || {
            page_stats(page)["audioPacketsReceivedFromCommentators"].as_f64().filter(|&n| n > 50.0)
        })
        .map_err(|e| anyhow::anyhow!("{e}; page {i} stats: {}", page_stats(page)))?;
        seen[i] = later;
    }
    assert!(seen.iter().all(|&n| n > 40.0));
    assert_eq!(server.metric("casecast_participants{role=\"commentator\"}"), Some(2.0));
    // Commentators see each other too: low-FPS camera video decodes in the other page.
    for page in [&a, &b] {
        wait_for("the other commentator's camera to decode", Duration::from_secs(30), || {
            let s = page_stats(page);
            let frames: f64 = s["inbound"].as_array()?.iter()
                .filter(|i| i["kind"] == "video" && i["source"] == "commentator")
                .filter_map(|i| i["frames"].as_f64().or(i["framesDecoded"].as_f64()))
                .sum();
            (frames >= 3.0).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: {}", page_stats(page)))?;
    }

    // Closing one browser ends its participant, and the other page's session drops
    // its tracks (the server renegotiates them away).
    let b_id = b.eval("return window.casecast.participantId")?;
    assert!(b_id.is_string());
    drop(b);
    wait_for("the closed page's participant to end", Duration::from_secs(40), || {
        (server.metric("casecast_participants{role=\"commentator\"}") == Some(1.0)).then_some(())
    })?;
    wait_for("the remaining page to drop the leaver's tracks", Duration::from_secs(20), || {
        let tracks = a.eval("return window.casecast.tracks").ok()?;
        let left = tracks.as_object()?.values().filter(|t| t["participant_id"] == b_id).count();
        (left == 0).then_some(())
    })?;
    Ok(())
}

#[test]
fn the_commentator_page_reconnects_after_the_server_drops() -> Result<()> {
    let mut server = Server::demo(&["--program", "false"])?;
    let page = Browser::start()?;
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. C")))?;
    wait_for("the feed to decode", Duration::from_secs(60), || page_stats(&page)["feedFramesDecoded"].as_f64().filter(|&n| n > 10.0))?;
    let first = page.eval("return window.casecast.participantId")?;

    server.crash_and_restart()?;
    wait_for("the page to notice", Duration::from_secs(30), || {
        let s = page.eval("return document.body.dataset.state").ok()?;
        (s != "live").then_some(())
    })?;
    wait_for("the page to rejoin and decode the feed again", Duration::from_secs(90), || {
        let id = page.eval("return window.casecast.participantId").ok()?;
        let live = page.eval("return document.body.dataset.state").ok()? == "live";
        (live && id != first && page_stats(&page)["feedFramesDecoded"].as_f64()? > 10.0).then_some(())
    })
    .map_err(|e| {
        let log = server.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        anyhow::anyhow!("{e}: state {:?}, stats {}\n{}", page.eval("return document.body.dataset.state").ok(), page_stats(&page), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    })?;
    Ok(())
}

// The operators' API: events, invitations, the audit log.

fn api(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Result<(u16, Value)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = body.map(|b| b.to_string());
    let (s, _, bytes) = http_request(method, url, &headers, body.as_deref().map(str::as_bytes))?;
    Ok((s, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Joins `room` over the signaling with `token`: "joined" (with the uplink policy) or
/// the error's code.
fn try_join(server: &Server, room: &str, token: &str) -> Value {
    let mut ws = ws_connect(server);
    ws_send(&mut ws, &json!({"type":"join","v":1,"room":room,"token":token}).to_string());
    ws_recv(&mut ws).unwrap_or(Value::Null)
}
