//! The doors an attacker tries, each as a test that failed before its fix: frames
//! bounded before they are buffered, a room no token can fill, secrets out of
//! metrics and logs, a secret file that must be one, recordings that survive a crash,
//! upload quotas, one audited path for operator changes, errors without internals,
//! room ids that are not paths, ended events, private files, the scrape token and
//! honest viewer counts, bounded token lifetimes and revocation, HEAD.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Result;
use casecast_signaling::Role;
use casecast_tests::*;
use serde_json::{Value, json};

use super::{api, error_code, ws_connect, ws_recv, ws_recv_type, ws_send};

/// Opens `/ws` on a raw TCP connection (the handshake done by hand).
fn raw_websocket(server: &Server) -> Result<TcpStream> {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut head = [0u8; 1024];
    let n = s.read(&mut head)?;
    anyhow::ensure!(head[..n].starts_with(b"HTTP/1.1 101"), "no upgrade: {}", String::from_utf8_lossy(&head[..n]));
    Ok(s)
}

/// A masked WebSocket text frame header declaring `len` bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x81, 0x80 | 127];
    h.extend(len.to_be_bytes());
    h.extend([0, 0, 0, 0]);
    h
}

/// Finding 1: a frame declaring 2^40 bytes, followed by hundreds of megabytes, with
/// no token and no join, is refused at its header; the server holds none of it.
#[test]
fn a_websocket_frame_declaring_a_terabyte_is_refused_at_its_header() -> Result<()> {
    let server = Server::start(&[])?;
    let before = server.rss_mib().unwrap_or(0);
    let mut s = raw_websocket(&server)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&frame_header(1 << 40))?;
    // Up to 300 MiB, for at most 20 s, or until the server stops taking them.
    let chunk = vec![b'a'; 1 << 20];
    let started = Instant::now();
    let mut peak = before;
    for _ in 0..300 {
        if started.elapsed() > Duration::from_secs(20) || s.write_all(&chunk).is_err() {
            break;
        }
        peak = peak.max(server.rss_mib().unwrap_or(0));
    }
    peak = peak.max(server.rss_mib().unwrap_or(0));
    assert!(peak < before + 64, "the server grew from {before} to {peak} MiB");
    // The client was told why, and the connection ended.
    let mut s = raw_websocket(&server)?;
    s.write_all(&frame_header(1 << 40))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("too_large") && text.contains("1099511627776") && text.contains("65536"), "{text}");
    // Before a join only small frames are taken at all; after it, a message over the
    // limit is answered and the connection stays.
    let mut ws = ws_connect(&server);
    ws_send(&mut ws, &json!({"type": "ping", "pad": "x".repeat(100_000)}).to_string());
    assert_eq!(error_code(&ws_recv(&mut ws).unwrap()), "too_large");
    assert!(ws_recv(&mut ws).is_none(), "closed");
    assert_eq!(http_get(&format!("{}/healthz", server.url))?.0, 200);
    Ok(())
}

/// An SDP offer of one send-only video m-line, as an encoder makes.
fn sdp_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    let candidate = str0m::Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

/// Finding 2: one token holds a few sessions, not the room; the encoder and the
/// operators have seats viewers cannot take.
#[test]
fn one_token_cannot_fill_a_room() -> Result<()> {
    let server = Server::start(&["--room-max-participants", "6"])?;
    let room = "or-full";
    let viewer = server.token(room, Role::Viewer, "shared");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let mut ws = ws_connect(&server);
        ws_send(&mut ws, &json!({"type":"join","v":1,"room":room,"token":viewer}).to_string());
        let v = ws_recv(&mut ws).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("joined") => held.push(ws),
            _ => {
                assert_eq!(error_code(&v), "too_many_sessions", "{v}");
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (4, 26), "one token holds four sessions");
    // Others still get in, up to the room's size.
    for i in 0..2 {
        let mut ws = ws_connect(&server);
        ws_send(&mut ws, &json!({"type":"join","v":1,"room":room,"token":server.token(room, Role::Viewer, &format!("v{i}"))}).to_string());
        assert_eq!(ws_recv(&mut ws).unwrap()["type"], "joined");
        held.push(ws);
    }
    let full = super::try_join(&server, room, &server.token(room, Role::Commentator, "late"));
    assert_eq!(error_code(&full), "room_full", "the audience seats are taken");
    // The encoder's WHIP POST is not one of them: 201.
    let whip = format!("{}/whip/{room}", server.url);
    let enc = format!("Bearer {}", server.token(room, Role::Encoder, "enc"));
    let offer = sdp_offer();
    let sdp = |auth: &str| http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", auth)], offer.as_bytes());
    assert_eq!(sdp(&enc)?.0, 201, "the feed gets in while viewers fill the room");
    // Nor can one encoder token take every encoder seat: 4 sessions, then 429.
    let codes: Vec<u16> = (0..10).map(|_| sdp(&enc).map(|r| r.0).unwrap_or(0)).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 201).count(), 3, "{codes:?}");
    assert!(codes.iter().filter(|&&c| c != 201).all(|&c| c == 429), "{codes:?}");
    // An operator (the program, a console) still joins.
    let mut op = ws_connect(&server);
    ws_send(&mut op, &json!({"type":"join","v":1,"room":room,"token":server.token(room, Role::Operator, "desk")}).to_string());
    assert_eq!(ws_recv(&mut op).unwrap()["type"], "joined");
    Ok(())
}

/// Finding 3: an RTMP URL's stream key reaches neither the metrics nor the log, and a
/// receiver that is down does not fill the log.
#[test]
fn stream_keys_never_reach_metrics_or_logs() -> Result<()> {
    const KEY: &str = "SeCrEtStReAmKeY4242";
    let port = free_tcp_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/{KEY}");
    let server = Server::demo(&["--program-rtmp", &url, "--program-recording", "false"])?;
    // The output is named by its place and reported down while nobody listens.
    wait_for("the RTMP output reported down", Duration::from_secs(90), || {
        (server.metric("casecast_program_output_up{output=\"rtmp-primary\",room=\"demo\"}") == Some(0.0)
            && server.metric("casecast_program_fps{room=\"demo\"}").is_some_and(|f| f > 0.0))
        .then_some(())
    })?;
    // Some retries later (backoff from 0.5 s, doubling)...
    let t0 = Instant::now();
    wait_for("twenty seconds of retries", Duration::from_secs(40), || (t0.elapsed() > Duration::from_secs(20)).then_some(()))?;
    let metrics = server.metrics_text().unwrap_or_default();
    let log = server.log_text();
    assert!(!metrics.contains(KEY), "the key in the metrics");
    assert!(!log.contains(KEY), "the key in the log");
    // The demo prints its links (with tokens) for whoever started it, on stdout;
    // the log itself never carries one.
    let logged = log.lines().filter(|l| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].iter().any(|level| l.contains(level)));
    assert!(logged.clone().count() > 20 && !logged.clone().any(|l| l.contains(TOKEN_START)), "a token in the log");
    let warnings = log.lines().filter(|l| l.contains("rtmp output failed") && l.contains("WARN")).count();
    assert!((1..=3).contains(&warnings), "one warning per cause, not per retry: {warnings}");
    let (_, d) = api("GET", &format!("{}/api/events/demo/distribution", server.url), Some(&server.token("demo", Role::Operator, "desk")), None)?;
    assert!(!d.to_string().contains(KEY), "{d}");
    assert!(d["outputs"].as_array().unwrap().iter().any(|o| o["output"] == "rtmp-primary"), "{d}");
    Ok(())
}

/// Finding 4: a secret file too short to be one is refused, never used; a new one is
/// written whole and private.
#[test]
fn a_secret_file_too_short_is_refused() -> Result<()> {
    let dir = TempDir::new("secret");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data)?;
    for weak in ["", "\n", "short"] {
        std::fs::write(data.join("secret"), weak)?;
        let out = std::process::Command::new(casecast_bin())
            .args(["token", "--room", "r", "--role", "operator", "--data-dir"])
            .arg(&data)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("too few") && err.contains("secret"), "{weak:?}: {err}");
        let serve = std::process::Command::new(casecast_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--udp-bind", "127.0.0.1:0", "--advertise", "127.0.0.1", "--data-dir"])
            .arg(&data)
            .output()?;
        assert!(!serve.status.success(), "the server does not start on {weak:?}");
    }
    // Made anew: 64 hex characters, 0600, nothing else left beside it.
    std::fs::remove_file(data.join("secret"))?;
    let out = std::process::Command::new(casecast_bin()).args(["token", "--room", "r", "--role", "viewer", "--data-dir"]).arg(&data).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = std::fs::read_to_string(data.join("secret"))?;
    assert_eq!(secret.trim().len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("secret"))?.permissions().mode() & 0o777, 0o600);
    let names: Vec<String> = std::fs::read_dir(&data)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["secret"], "no temporary file left");
    Ok(())
}

/// Finding 5: a crash leaves the recording being written playable up to the crash,
/// and the listing says it was cut short.
#[test]
fn a_crash_leaves_a_playable_recording() -> Result<()> {
    let mut server = Server::demo(&["--program-preset", "low-latency"])?;
    let dir = server.data_dir().join("recordings/demo");
    let file = wait_for("a recording of several seconds", Duration::from_secs(120), || {
        let f = std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "mp4"))?;
        (std::fs::metadata(&f).ok()?.len() > 1_500_000).then_some(f)
    })?;
    server.crash_and_restart()?;
    // The file as the crash left it plays: H.264 at the program's size, seconds of it.
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v", "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "compact"])
        .arg(&file)
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout);
    let frames: u32 = probe.split("nb_read_frames=").nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(probe.contains("codec_name=h264|width=1280|height=720") && frames >= 60, "{probe} {}", String::from_utf8_lossy(&out.stderr));
    // The listing tells it from a finished file.
    let op = server.token("demo", Role::Operator, "desk");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let listed = wait_for("the cut file listed as interrupted", Duration::from_secs(30), || {
        let (_, v) = api("GET", &format!("{}/api/rooms/demo/recordings", server.url), Some(&op), None).ok()?;
        v["recordings"].as_array()?.iter().find(|f| f["name"] == name.as_str() && f["state"] == "interrupted").cloned()
    })?;
    assert_eq!(listed["complete"], false, "{listed}");
    Ok(())
}

/// A tus creation request declaring `length` bytes.
fn tus_create(server: &Server, token: &str, length: u64) -> Result<(u16, Value, Option<String>)> {
    let auth = format!("Bearer {token}");
    let len = length.to_string();
    let (s, h, body) = http_request(
        "POST",
        &format!("{}/api/cases/uploads", server.url),
        &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Length", &len)],
        None,
    )?;
    Ok((s, serde_json::from_slice(&body).unwrap_or(Value::Null), header(&h, "location").map(str::to_string)))
}

/// Finding 6: one token cannot reserve the server's disk with uploads it never sends.
#[test]
fn uploads_are_held_to_quotas() -> Result<()> {
    let dir = TempDir::new("quota");
    let config = dir.0.join("casecast.toml");
    std::fs::write(&config, "[cases]\nmax_open_uploads_per_token = 10\nmax_reserved_bytes_per_token = 10737418240\nmax_reserved_bytes = 16106127360\n")?;
    let server = Server::start(&["--config", config.to_str().unwrap()])?;
    let ana = server.token("lib-1", Role::Commentator, "Dr. Ana");
    // 300 creations of 64 GiB, then of 1 GiB: only what the quota takes.
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for i in 0..300 {
        let length = if i < 150 { 64 << 30 } else { 1 << 30 };
        let (s, body, location) = tus_create(&server, &ana, length)?;
        match s {
            201 => created.push((length, location.unwrap())),
            _ => refused.push((s, body)),
        }
    }
    let declared: u64 = created.iter().map(|c| c.0).sum();
    assert_eq!(created.len(), 10, "{:?}", &refused[..3]);
    assert!(declared <= 10 << 30, "{declared} bytes reserved");
    assert!(refused.iter().all(|(s, b)| (*s == 413 || *s == 429) && b["error"].as_str().is_some_and(|e| e.len() > 20)), "{:?}", &refused[..3]);
    // Cancelling frees the place; another person has a quota of their own, up to
    // the server's.
    let auth = format!("Bearer {ana}");
    assert_eq!(http_request("DELETE", &format!("{}{}", server.url, created[0].1), &[("Authorization", &auth), ("Tus-Resumable", "1.0.0")], None)?.0, 204);
    assert_eq!(tus_create(&server, &ana, 1 << 30)?.0, 201);
    let ben = server.token("lib-1", Role::Commentator, "Dr. Ben");
    let codes: Vec<u16> = (0..8).map(|_| tus_create(&server, &ben, 1 << 30).map(|r| r.0).unwrap_or(0)).collect();
    assert_eq!(codes[..5], [201; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|&c| c == 507), "the server's 15 GiB: {codes:?}");
    Ok(())
}

/// Finding 7: a layout change through the rooms door is audited as through the
/// events door.
#[test]
fn every_operator_change_is_audited() -> Result<()> {
    let server = Server::start(&[])?;
    let room = "or-audit";
    // An operator that publishes the program (a compositor) is in the room.
    let mut mixer = ws_connect(&server);
    ws_send(&mut mixer, &json!({"type":"join","v":1,"room":room,"token":server.token(room, Role::Operator, "program")}).to_string());
    assert_eq!(ws_recv(&mut mixer).unwrap()["type"], "joined");
    let desk = server.token(room, Role::Operator, "Desk Dana");
    let (s, _) = api("POST", &format!("{}/api/rooms/{room}/program", server.url), Some(&desk), Some(json!({"layout": "grid"})))?;
    assert_eq!(s, 202);
    assert_eq!(ws_recv_type(&mut mixer, "program_layout")["layout"], "grid", "the compositor was told");
    let center = server.token("*", Role::Operator, "center");
    let (_, log) = api("GET", &format!("{}/api/audit", server.url), Some(&center), None)?;
    let entry = log.as_array().unwrap().iter().find(|e| e["action"] == "program.layout").cloned();
    let entry = entry.unwrap_or_else(|| panic!("no program.layout entry: {log}"));
    assert_eq!((entry["actor"].as_str(), entry["event_id"].as_str()), (Some("Desk Dana"), Some(room)));
    assert_eq!(entry["detail"]["layout"], "grid");
    Ok(())
}

/// Finding 8: SDP the server cannot read is refused with words, not the parser's
/// internals (heap offsets), on both doors.
#[test]
fn sdp_errors_say_what_is_wrong_without_internals() -> Result<()> {
    let server = Server::start(&[])?;
    let auth = format!("Bearer {}", server.token("or-sdp", Role::Encoder, "enc"));
    let whip = format!("{}/whip/or-sdp", server.url);
    let bad_values = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video nine UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    let bad_line = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nthis is not sdp\r\n";
    for (offer, says) in [(bad_values, "not understood"), (bad_line, "line 4")] {
        let (s, _, body) = http_post(&whip, &[("Content-Type", "application/sdp"), ("Authorization", &auth)], offer.as_bytes())?;
        assert_eq!(s, 400, "{body}");
        assert!(body.contains(says), "{body}");
        assert!(!body.contains("0x") && !body.contains("Pointer") && !body.contains("Offset"), "{body}");
    }
    let mut ws = ws_connect(&server);
    ws_send(&mut ws, &json!({"type":"join","v":1,"room":"or-sdp","token":server.token("or-sdp", Role::Commentator, "c")}).to_string());
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "joined");
    ws_send(&mut ws, &json!({"type":"offer","sdp":bad_values}).to_string());
    let e = ws_recv_type(&mut ws, "error");
    assert_eq!(error_code(&e), "sdp_rejected");
    let m = e["message"].as_str().unwrap();
    assert!(!m.contains("0x") && !m.contains("Pointer"), "{m}");
    Ok(())
}

/// Finding 9: a room id is an id: an encoded path in its place finds nothing.
#[test]
fn room_ids_are_ids_not_paths() -> Result<()> {
    let server = Server::start(&[])?;
    let outside = TempDir::new("outside");
    std::fs::write(outside.0.join("secret-patient.mp4"), b"not for you")?;
    let center = format!("Bearer {}", server.token("*", Role::Operator, "center"));
    let encoded = outside.0.display().to_string().replace('/', "%2F");
    for path in [
        format!("/api/rooms/{encoded}/recordings"),
        format!("/api/rooms/..%2F..%2F{}/recordings", outside.0.file_name().unwrap().to_string_lossy()),
        format!("/api/rooms/{encoded}/recordings/secret-patient.mp4"),
        "/hls/..%2F..%2Fetc/passwd".to_string(),
        "/whip/%2E%2E".to_string(),
        "/watch/a%20b/source".to_string(),
    ] {
        let (s, _, body) = http_request("GET", &format!("{}{path}", server.url), &[("Authorization", &center)], None)?;
        let body = String::from_utf8_lossy(&body);
        assert!(s == 404 || s == 405, "{path}: {s} {body}");
        assert!(!body.contains("secret-patient"), "{path}: {body}");
    }
    Ok(())
}

/// Finding 10: after an event ends, the distribution center still reads its
/// recordings, and its own tokens are refused everywhere.
#[test]
fn an_ended_events_recordings_stay_readable_and_its_tokens_stop() -> Result<()> {
    let server = Server::start(&[])?;
    let center = server.token("*", Role::Operator, "center");
    let base = format!("{}/api/events", server.url);
    assert_eq!(api("POST", &base, Some(&center), Some(json!({"id": "hip-9", "title": "Hip"})))?.0, 201);
    let (_, inv) = api("POST", &format!("{base}/hip-9/invitations"), Some(&center), Some(json!({"name": "Dr. C", "role": "commentator"})))?;
    let commentator = inv["token"].as_str().unwrap().to_string();
    let event_op = server.token("hip-9", Role::Operator, "event desk");
    let recordings = server.data_dir().join("recordings/hip-9");
    std::fs::create_dir_all(&recordings)?;
    std::fs::write(recordings.join("program-00000.mp4"), b"\0\0\0\x08ftyp")?;
    assert_eq!(tus_create(&server, &commentator, 10)?.0, 201, "works while the event runs");
    assert_eq!(api("POST", &format!("{base}/hip-9/end"), Some(&center), None)?.0, 200);
    // The center lists and downloads.
    let (s, list) = api("GET", &format!("{}/api/rooms/hip-9/recordings", server.url), Some(&center), None)?;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["recordings"][0]["name"], "program-00000.mp4");
    let auth = format!("Bearer {center}");
    assert_eq!(http_request("GET", &format!("{}/api/rooms/hip-9/recordings/program-00000.mp4", server.url), &[("Authorization", &auth)], None)?.0, 200);
    // The event's tokens are refused, at every door.
    assert_eq!(tus_create(&server, &commentator, 10)?.0, 403);
    let c = format!("Bearer {commentator}");
    assert_eq!(http_request("GET", &format!("{}/dicomweb/studies", server.url), &[("Authorization", &c)], None)?.0, 403);
    assert_eq!(http_request("GET", &format!("{}/api/cases/studies", server.url), &[("Authorization", &c)], None)?.0, 403);
    assert_eq!(error_code(&super::try_join(&server, "hip-9", &commentator)), "forbidden");
    assert_eq!(api("GET", &format!("{}/api/rooms/hip-9/recordings", server.url), Some(&event_op), None)?.0, 403);
    assert_eq!(api("GET", &format!("{base}/hip-9"), Some(&event_op), None)?.0, 403);
    Ok(())
}

/// Finding 11: staged originals, the database and the secrets are the server's
/// user's only, even when it was started with a permissive umask, and a data folder
/// an earlier version left open is closed.
#[test]
fn patient_data_on_disk_is_private_whatever_the_umask() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    let server = Server::start_with_umask(0o000, &[])?;
    let data = server.data_dir().to_path_buf();
    // A first chunk of an upload: the staged original exists.
    let token = server.token("lib-2", Role::Commentator, "Dr. D");
    let (s, _, location) = tus_create(&server, &token, 1000)?;
    assert_eq!(s, 201);
    let auth = format!("Bearer {token}");
    let (s, _, _) = http_request(
        "PATCH",
        &format!("{}{}", server.url, location.unwrap()),
        &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", "application/offset+octet-stream")],
        Some(&[7u8; 500]),
    )?;
    assert_eq!(s, 204);
    let staged: Vec<_> = walk(&data.join("cases/staging")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "part")).collect();
    assert_eq!(staged.len(), 1);
    for p in staged.iter().chain([data.join("cases.db"), data.join("playback-key.p8")].iter()) {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&data), 0o700);
    // Everything but the harness's own log and output of the server.
    for p in walk(&data).into_iter().filter(|p| !p.ends_with("server.log") && !p.ends_with("server.out")) {
        let m = mode(&p);
        assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
    }
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Finding 12: `/metrics` needs the scrape token (or its own address), and one
/// client with made-up viewer ids counts as few viewers.
#[test]
fn metrics_need_the_scrape_token_and_viewers_cannot_be_inflated() -> Result<()> {
    let metrics_port = free_tcp_port();
    let server = Server::start(&["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])?;
    let url = format!("{}/metrics", server.url);
    assert_eq!(http_get(&url)?.0, 401);
    let op = format!("Bearer {}", server.token("*", Role::Operator, "center"));
    assert_eq!(http_request("GET", &url, &[("Authorization", &op)], None)?.0, 401, "a room token is not the scrape token");
    assert!(server.metrics_text().is_some_and(|t| t.contains("casecast_rooms")));
    let (s, apart) = http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"))?;
    assert!(s == 200 && apart.contains("casecast_rooms"), "served apart without a token");
    // A program's playlist, and a thousand made-up viewers from one address.
    let hls = server.data_dir().join("hls/or-v");
    std::fs::create_dir_all(&hls)?;
    std::fs::write(hls.join("index.m3u8"), "#EXTM3U\n#EXT-X-TARGETDURATION:1\n")?;
    for i in 0..1000 {
        http_get(&format!("{}/hls/or-v/index.m3u8?viewer=madeup{i:06}", server.url))?;
    }
    let counted = server.metric("casecast_hls_viewers{room=\"or-v\"}").unwrap_or(-1.0);
    assert!((1.0..=16.0).contains(&counted), "{counted} viewers counted");
    let (_, d) = api("GET", &format!("{}/api/events/or-v/distribution", server.url), Some(&server.token("*", Role::Operator, "c")), None)?;
    assert!(d["viewers"].as_u64().is_some_and(|n| (1..=16).contains(&n)), "{d}");
    Ok(())
}

/// Finding 13: token lifetimes are bounded when minted and when checked, and a
/// revoked invitation's live session ends.
#[test]
fn token_lifetimes_are_bounded_and_revocation_ends_sessions() -> Result<()> {
    let dir = TempDir::new("ttl");
    for (ttl, says) in [("100000d", "longer than"), ("0s", "expired already")] {
        let out = std::process::Command::new(casecast_bin())
            .args(["token", "--room", "r", "--role", "viewer", "--secret", SECRET, "--ttl", ttl, "--data-dir"])
            .arg(&dir.0)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "--ttl {ttl}: {err}");
    }
    let server = Server::start(&[])?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let forever = server.key.mint("or-t", Role::Commentator, "x", now, 100_000 * 86400);
    let refused = super::try_join(&server, "or-t", &forever);
    assert_eq!(error_code(&refused), "unauthorized");
    assert!(refused["message"].as_str().unwrap().contains("longer than this server allows (90 days"), "{refused}");
    // Revoked while in the room: the session ends at once.
    let center = server.token("*", Role::Operator, "center");
    let base = format!("{}/api/events", server.url);
    assert_eq!(api("POST", &base, Some(&center), Some(json!({"id": "knee-3", "title": "Knee"})))?.0, 201);
    let (_, inv) = api("POST", &format!("{base}/knee-3/invitations"), Some(&center), Some(json!({"name": "Dr. E", "role": "commentator"})))?;
    let mut ws = ws_connect(&server);
    ws_send(&mut ws, &json!({"type":"join","v":1,"room":"knee-3","token":inv["token"]}).to_string());
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "joined");
    assert_eq!(api("DELETE", &format!("{base}/knee-3/invitations/{}", inv["id"].as_str().unwrap()), Some(&center), None)?.0, 204);
    // The server says the session is closed (ws_connect reads with a 10 s bound).
    let mut closed = false;
    while let Some(v) = ws_recv(&mut ws) {
        if v["type"] == "connection" && v["state"] == "closed" {
            closed = true;
            break;
        }
    }
    assert!(closed, "the revoked session was closed by the server");
    let (_, people) = api("GET", &format!("{base}/knee-3/participants"), Some(&center), None)?;
    assert_eq!(people.as_array().map(Vec::len), Some(0), "{people}");
    Ok(())
}

/// Finding 15: HEAD is answered wherever GET is: the same status and headers, no
/// body.
#[test]
fn head_is_answered_where_get_is() -> Result<()> {
    let server = Server::start(&[])?;
    let hls = server.data_dir().join("hls/or-h");
    std::fs::create_dir_all(&hls)?;
    std::fs::write(hls.join("index.m3u8"), "#EXTM3U\n#EXT-X-TARGETDURATION:1\n")?;
    for path in ["/hls/or-h/index.m3u8", "/watch/or-h", "/assets/watch.js", "/healthz", "/watch/or-h/source"] {
        let url = format!("{}{path}", server.url);
        let (gs, gh, gbody) = http_request("GET", &url, &[], None)?;
        let (hs, hh, hbody) = http_request("HEAD", &url, &[], None)?;
        assert_eq!((gs, hs), (200, 200), "{path}");
        assert!(hbody.is_empty() && !gbody.is_empty(), "{path}");
        assert_eq!(header(&gh, "content-type"), header(&hh, "content-type"), "{path}");
    }
    Ok(())
}
