//! The authorization matrix: every door of the route table (`casecast routes
//! --json`, the table the server registers its routes from) tried with no token, a
//! malformed one, an expired one, one for another room, and each role, and answered
//! as the door's access rule says. A door added to the server is in the table, so
//! the next run of this test tries it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use casecast_signaling::Role;
use casecast_tests::*;
use serde_json::{Value, json};

use super::{LIGHT_PROGRAMS, api, error_code, ws_connect, ws_recv, ws_send};

/// A token a request carries.
#[derive(Debug, Clone)]
enum Variant {
    None,
    Malformed,
    Expired,
    /// A token for another room, with this role.
    OtherRoom(Role),
    /// A token for the door's room.
    Role(Role),
    /// An operator token for all events.
    Center,
}

impl Variant {
    fn token(&self, server: &Server, room: &str) -> Option<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        match self {
            Variant::None => None,
            Variant::Malformed => Some("not.a-token".into()),
            Variant::Expired => Some(server.key.mint(room, Role::Operator, "late", now - 7200, 3600)),
            Variant::OtherRoom(r) => Some(server.token("elsewhere", *r, "stranger")),
            Variant::Role(r) => Some(server.token(room, *r, &format!("{} of {room}", r.as_str()))),
            Variant::Center => Some(server.token("*", Role::Operator, "center")),
        }
    }
}

/// What a door's rule says of a variant: `Some(status)` when it must be refused
/// (401 or 403), `None` when it must get past the check (any other status).
fn expected(access: &Value, variant: &Variant) -> Option<u16> {
    let kind = access["kind"].as_str().unwrap();
    let roles: Vec<Role> = access["roles"].as_array().map(|a| a.iter().map(|r| r.as_str().unwrap().parse().unwrap()).collect()).unwrap_or_default();
    let unauthenticated = matches!(variant, Variant::None | Variant::Malformed | Variant::Expired);
    match kind {
        "public" | "playback" => None,
        "scrape" => Some(401),
        _ if unauthenticated => Some(401),
        // Signaling takes every role, for the room joined.
        "signaling" => match variant {
            Variant::Role(_) | Variant::Center => None,
            _ => Some(403),
        },
        "room" | "session_owner" => match variant {
            Variant::Role(r) if roles.contains(r) => None,
            Variant::Center if roles.contains(&Role::Operator) => None,
            _ => Some(403),
        },
        "library" => match variant {
            Variant::Role(r) | Variant::OtherRoom(r) if roles.contains(r) => None,
            Variant::Center if roles.contains(&Role::Operator) => None,
            _ => Some(403),
        },
        "event" => match variant {
            Variant::Role(Role::Operator) | Variant::Center => None,
            _ => Some(403),
        },
        // Any operator: what it sees is its scope's (another event's operator
        // lists its own event).
        "operator" => match variant {
            Variant::Role(Role::Operator) | Variant::OtherRoom(Role::Operator) | Variant::Center => None,
            _ => Some(403),
        },
        "all_events" => match variant {
            Variant::Center => None,
            _ => Some(403),
        },
        other => panic!("an access rule this test does not know: {other}"),
    }
}

/// The door's path with sample parameters, in its own room.
fn fill(path: &str, room: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{room}" | "{id}" => room.to_string(),
            "{file}" if path.starts_with("/hls") => "index.m3u8".into(),
            "{file}" => "program-00000.mp4".into(),
            "{name:.*}" => "style.css".into(),
            "{any:.*}" => "studies".into(),
            "{upload}" => "fedcba9876543210".into(),
            "{frames}" => "1".into(),
            "{study}" | "{series}" | "{sop}" => "1.2.826.0.1".into(),
            s if s.starts_with('{') => "abc".into(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The table the server registers its routes from.
fn route_table() -> Result<Vec<Value>> {
    let out = std::process::Command::new(casecast_bin()).args(["routes", "--json"]).output()?;
    anyhow::ensure!(out.status.success(), "casecast routes: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice::<Value>(&out.stdout)?.as_array().cloned().unwrap_or_default())
}

#[test]
fn every_door_answers_every_token_as_its_rule_says() -> Result<()> {
    let server = Server::start(LIGHT_PROGRAMS)?;
    let doors = route_table()?;
    assert!(doors.len() >= 60, "{} doors", doors.len());
    let center = server.token("*", Role::Operator, "center");
    let mut variants = vec![Variant::None, Variant::Malformed, Variant::Expired];
    variants.extend(Role::ALL.map(Variant::OtherRoom));
    variants.extend(Role::ALL.map(Variant::Role));
    variants.push(Variant::Center);
    let mut failures = Vec::new();
    let mut tried = 0;
    for (n, door) in doors.iter().enumerate() {
        let (method, path, access) = (door["method"].as_str().unwrap(), door["path"].as_str().unwrap(), &door["access"]);
        // Each door in an event of its own: what one door changes (ends, deletes)
        // touches no other.
        let room = format!("door-{n}");
        let (s, _) = api("POST", &format!("{}/api/events", server.url), Some(&center), Some(json!({"id": room, "title": path})))?;
        assert_eq!(s, 201);
        for variant in &variants {
            let token = variant.token(&server, &room);
            let want = expected(access, variant);
            let got = if access["kind"] == "signaling" {
                signaling(&server, &room, token.as_deref())
            } else {
                request(&server, method, &fill(path, &room), token.as_deref())?
            };
            tried += 1;
            let ok = match (want, got) {
                (Some(w), g) => w == g,
                (None, g) => g != 401 && g != 403,
            };
            if !ok {
                failures.push(format!("{method} {path} with {variant:?}: {got}, expected {}", want.map_or("not 401/403".into(), |w| w.to_string())));
            }
            // GET doors answer HEAD alike (WebSocket doors need an upgrade: GET only).
            if method == "GET" && !path.ends_with("/live") && path != "/ws" {
                let head = request(&server, "HEAD", &fill(path, &room), token.as_deref())?;
                if head != got {
                    failures.push(format!("HEAD {path} with {variant:?}: {head}, GET gave {got}"));
                }
            }
        }
        // The scrape door opens to its token only.
        if access["kind"] == "scrape" {
            let (s, _, _) = http_request(method, &format!("{}{path}", server.url), &[("Authorization", &format!("Bearer {METRICS_TOKEN}"))], None)?;
            assert_eq!(s, 200, "{path} with the scrape token");
        }
    }
    assert!(failures.is_empty(), "{} of {tried} answers were wrong:\n{}", failures.len(), failures.join("\n"));
    // Hundreds of tokens went by; none is in the log (every one starts with
    // TOKEN_START, its header: a bare "eyJ" can turn up in random SDP strings).
    assert!(!server.log_text().contains(TOKEN_START), "a token in the server's log");
    Ok(())
}

/// One HTTP request with `token` as a bearer token: its status.
fn request(server: &Server, method: &str, path: &str, token: Option<&str>) -> Result<u16> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json"), ("Tus-Resumable", "1.0.0")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let body = matches!(method, "POST" | "PATCH").then_some(b"{}".as_slice());
    Ok(http_request(method, &format!("{}{path}", server.url), &headers, body)?.0)
}

/// A join over the signaling with `token`, as a status: 200 joined, 401 or 403 as
/// the error code says, 400 for anything else.
fn signaling(server: &Server, room: &str, token: Option<&str>) -> u16 {
    let mut ws = ws_connect(server);
    let mut join = json!({"type": "join", "v": 1, "room": room});
    if let Some(t) = token {
        join["token"] = json!(t);
    }
    ws_send(&mut ws, &join.to_string());
    let reply = ws_recv(&mut ws).unwrap_or(Value::Null);
    match reply["type"].as_str() {
        Some("joined") => 200,
        Some("error") => match error_code(&reply) {
            "unauthorized" => 401,
            "forbidden" => 403,
            // A join without a token is not a join message at all.
            "bad_request" if token.is_none() => 401,
            _ => 400,
        },
        _ => 400,
    }
}
