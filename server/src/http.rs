//! HTTP routes: pages, signaling, WHIP/WHEP, metrics (the cases' routes are in `cases`).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use casecast_actors::{JoinError, RoomError};

use crate::state::AppState;
use crate::whip::{self, Kind};
use crate::ws;

/// The web pages, embedded so the binary runs from anywhere.
mod assets {
    pub const INDEX: &str = include_str!("../../web/index.html");
    pub const ROOM: &str = include_str!("../../web/room.html");
    pub const ROOM_JS: &str = include_str!("../../web/room.js");
    pub const STYLE: &str = include_str!("../../web/style.css");
    pub const WATCH: &str = include_str!("../../web/watch.html");
    pub const WATCH_JS: &str = include_str!("../../web/watch.js");
    pub const CASES_JS: &str = include_str!("../../web/cases.js");
    pub const CONSOLE_JS: &str = include_str!("../../web/console.js");
    pub const DOM_JS: &str = include_str!("../../web/dom.js");
    pub const MONITOR_JS: &str = include_str!("../../web/monitor.js");
    pub const HLS_JS: &str = include_str!("../../web/vendor/hls.light.min.js");
}

/// A plain-text error body, for HTTP clients and humans.
pub fn error_response(status: StatusCode, message: &str) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    r.content_type("text/plain; charset=utf-8");
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    r.body(format!("{message}\n"))
}

/// A JSON error body, `{"error": "…"}`, for the JSON APIs (cases, events).
pub fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    r.json(serde_json::json!({ "error": message }))
}

/// A failure of the server's own (database, store) as a JSON 500, logged.
pub fn json_internal(e: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %e, "request failed");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the server failed: {e}"))
}

/// The request's bearer token (`Authorization: Bearer …`), or with `query` its
/// `?token=` (pages, pictures and WebSockets, which cannot set headers).
pub fn request_token(req: &actix_web::HttpRequest, query: bool) -> Option<String> {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(casecast_signaling::whip::bearer_token);
    header.map(str::to_string).or_else(|| {
        query
            .then(|| web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok())
            .flatten()
            .and_then(|q| q.get("token").cloned())
    })
}

/// The HTTP status for a failed join.
pub fn join_error_response(e: JoinError) -> HttpResponse {
    let status = match &e {
        JoinError::Room(RoomError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
        JoinError::Room(RoomError::Refused(_)) => StatusCode::FORBIDDEN,
        JoinError::Room(_) => StatusCode::CONFLICT,
        JoinError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, &e.to_string())
}

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(html)
}

async fn index() -> HttpResponse {
    page(assets::INDEX)
}

async fn room_page() -> HttpResponse {
    page(assets::ROOM)
}

async fn watch_page() -> HttpResponse {
    page(assets::WATCH)
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, ct) = match name.as_str() {
        "room.js" => (assets::ROOM_JS, "text/javascript; charset=utf-8"),
        "watch.js" => (assets::WATCH_JS, "text/javascript; charset=utf-8"),
        "cases.js" => (assets::CASES_JS, "text/javascript; charset=utf-8"),
        "console.js" => (assets::CONSOLE_JS, "text/javascript; charset=utf-8"),
        "dom.js" => (assets::DOM_JS, "text/javascript; charset=utf-8"),
        "monitor.js" => (assets::MONITOR_JS, "text/javascript; charset=utf-8"),
        "style.css" => (assets::STYLE, "text/css; charset=utf-8"),
        "vendor/hls.light.min.js" => (assets::HLS_JS, "text/javascript; charset=utf-8"),
        _ => return error_response(StatusCode::NOT_FOUND, "no such asset"),
    };
    HttpResponse::Ok().content_type(ct).insert_header((header::CACHE_CONTROL, "no-cache")).body(body)
}

/// A private event plays with a playback token only (ES384, as IVS private
/// channels): `?token=` on the playlist, which then carries it to its segments.
/// Answers the token (private) or nothing (public), or the refusal.
#[allow(clippy::result_large_err)]
fn playback_allowed(req: &actix_web::HttpRequest, state: &AppState, room: &str) -> Result<Option<String>, HttpResponse> {
    if !state.events.is_private(room) {
        return Ok(None);
    }
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok();
    let Some(token) = q.and_then(|q| q.get("token").cloned()) else {
        return Err(error_response(StatusCode::UNAUTHORIZED, "this event is private: a playback token is needed (?token=)"));
    };
    match state.playback.verify(&token, crate::state::unix_now()) {
        Ok(c) if c.event == room => Ok(Some(token)),
        Ok(c) => Err(error_response(StatusCode::FORBIDDEN, &format!("this playback token is for event {:?}", c.event))),
        Err(e) => Err(error_response(StatusCode::UNAUTHORIZED, &e.to_string())),
    }
}

/// `GET /watch/{room}/source[?token=…]`: where the watch page plays from: this
/// server's HLS, or CloudFront when the event distributes through AWS (signed for a
/// private event, after its playback token is checked).
async fn watch_source(req: actix_web::HttpRequest, room: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let room = room.into_inner();
    let token = match playback_allowed(&req, &state, &room) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let cloudfront = state.distribution.aws().and_then(|a| a.viewer_source(&room, token.is_some(), std::time::Duration::from_secs(6 * 3600)));
    let body = match cloudfront {
        Some(Ok((url, query))) => serde_json::json!({ "via": "cloudfront", "url": url, "query": query }),
        Some(Err(m)) => return error_response(StatusCode::SERVICE_UNAVAILABLE, &m),
        None => serde_json::json!({
            "via": "local",
            "url": format!("/hls/{room}/index.m3u8"),
            "query": token.map(|t| format!("token={t}")),
        }),
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

/// `GET /hls/{room}/{file}`: the program's playlist and segments. The playlist is
/// never cached (it changes every segment); segments never change once written.
async fn hls(req: actix_web::HttpRequest, path: web::Path<(String, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (room, file) = path.into_inner();
    if !safe_name(&room) || !safe_name(&file) {
        return error_response(StatusCode::NOT_FOUND, "no such file");
    }
    let (ct, cache) = if file.ends_with(".m3u8") {
        ("application/vnd.apple.mpegurl", "no-cache")
    } else if file.ends_with(".ts") {
        ("video/mp2t", "public, max-age=86400, immutable")
    } else {
        return error_response(StatusCode::NOT_FOUND, "no such file");
    };
    let playback_token = match playback_allowed(&req, &state, &room) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match tokio::fs::read(state.hls_root.join(&room).join(&file)).await {
        Ok(body) => {
            let body = match (&playback_token, file.ends_with(".m3u8")) {
                (Some(t), true) => with_token(&body, t),
                _ => body,
            };
            let mut res = HttpResponse::Ok();
            res.content_type(ct)
                .insert_header((header::CACHE_CONTROL, cache))
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
            if !file.ends_with(".m3u8") {
                // Segments are compressed video already.
                return res.insert_header(header::ContentEncoding::Identity).body(body);
            }
            // Counted only for playlists that exist: a label per real room.
            state.sfu.metrics().program.playlist_requests.with_label_values(&[&room]).inc();
            let n = state.viewers.seen(&room, &crate::viewers::key(&req));
            state.sfu.metrics().program.viewers.with_label_values(&[&room]).set(n as i64);
            // A long DVR window makes a long playlist, fetched every segment by every
            // viewer: it is gzipped for those who accept it (about 8× smaller).
            res.body(body)
        }
        Err(_) => error_response(StatusCode::NOT_FOUND, "no such file (the program may not have started)"),
    }
}

/// A playlist whose URIs carry the playback token (segments are fetched with it).
fn with_token(playlist: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let mut out = String::with_capacity(text.len() + 64 * text.lines().count());
    for line in text.lines() {
        out.push_str(line);
        if !line.is_empty() && !line.starts_with('#') {
            out.push_str(if line.contains('?') { "&token=" } else { "?token=" });
            out.push_str(token);
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
fn operator(req: &actix_web::HttpRequest, state: &AppState, room: &str) -> Result<(), HttpResponse> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(casecast_signaling::whip::bearer_token);
    match state.authorize(token, room, &[casecast_signaling::Role::Operator]) {
        Ok(_) => Ok(()),
        Err(crate::state::AccessError::Unauthorized(m)) => Err(error_response(StatusCode::UNAUTHORIZED, &m)),
        Err(crate::state::AccessError::Forbidden(m)) => Err(error_response(StatusCode::FORBIDDEN, &m)),
    }
}

/// `GET /api/rooms/{room}/recordings` (operator token): the room's recorded files.
async fn recordings(req: actix_web::HttpRequest, room: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let room = room.into_inner();
    if let Err(r) = operator(&req, &state, &room) {
        return r;
    }
    let mut files = Vec::new();
    if let Ok(mut dir) = tokio::fs::read_dir(state.recordings_root.join(&room)).await {
        while let Ok(Some(e)) = dir.next_entry().await {
            let name = e.file_name().to_string_lossy().to_string();
            if let (true, Ok(meta)) = (name.ends_with(".mp4"), e.metadata().await) {
                files.push(serde_json::json!({
                    "name": name,
                    "bytes": meta.len(),
                    "url": format!("/api/rooms/{room}/recordings/{name}"),
                }));
            }
        }
    }
    files.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    HttpResponse::Ok().json(serde_json::json!({ "room": room, "recordings": files }))
}

/// `GET /api/rooms/{room}/recordings/{file}` (operator token): one recorded file.
async fn recording(req: actix_web::HttpRequest, path: web::Path<(String, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (room, file) = path.into_inner();
    if let Err(r) = operator(&req, &state, &room) {
        return r;
    }
    if !safe_name(&room) || !safe_name(&file) || !file.ends_with(".mp4") {
        return error_response(StatusCode::NOT_FOUND, "no such recording");
    }
    match tokio::fs::read(state.recordings_root.join(&room).join(&file)).await {
        Ok(body) => HttpResponse::Ok().content_type("video/mp4").body(body),
        Err(_) => error_response(StatusCode::NOT_FOUND, "no such recording"),
    }
}

/// A file or room name that cannot leave its directory.
fn safe_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `POST /api/rooms/{room}/program` `{"layout": "grid"}` with an operator token:
/// switches the program's layout while live.
async fn program(
    req: actix_web::HttpRequest,
    room: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let room = room.into_inner();
    if let Err(r) = operator(&req, &state, &room) {
        return r;
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        layout: String,
        #[serde(default)]
        main: Option<String>,
    }
    let (layout, main) = match serde_json::from_slice::<Body>(&body) {
        Ok(b) => (b.layout, b.main),
        Err(e) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("expected {{\"layout\": \"…\", \"main\": participant id or null}}: {e}"));
        }
    };
    let order = match layout_order(&layout, main.clone()) {
        Ok(o) => o,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e),
    };
    let told = state.sfu.to_operators(&room, order).await;
    match compositor_told(told, &room) {
        Ok(()) => HttpResponse::Accepted().json(serde_json::json!({ "layout": layout, "main": main })),
        Err((status, message)) => error_response(status, &message),
    }
}

/// The order that sets the program's layout and main source (`None`: the feed),
/// checked; both program doors give it.
pub fn layout_order(layout: &str, main: Option<String>) -> Result<casecast_actors::RoomEvent, String> {
    if main.as_ref().is_some_and(|m| m.is_empty() || m.len() > 64) {
        return Err("main: not a participant id".into());
    }
    layout.parse::<casecast_actors::program::LayoutKind>()?;
    Ok(casecast_actors::RoomEvent::ProgramLayout { layout: layout.to_string(), main })
}

/// What telling a room's compositor came to: not open (404), no compositor in it
/// (409), or told.
pub fn compositor_told(told: Option<usize>, room: &str) -> Result<(), (StatusCode, String)> {
    match told {
        None => Err((StatusCode::NOT_FOUND, format!("the room {room:?} is not open (no program yet)"))),
        Some(0) => Err((StatusCode::CONFLICT, "no compositor is in the room".into())),
        Some(_) => Ok(()),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let families = state.sfu.metrics().registry.gather();
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut buf) {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    buf.extend(crate::process::render().into_bytes());
    let (ufrags, addrs) = state.sfu.route_count();
    buf.extend(
        format!(
            "# HELP casecast_udp_routes Routes in the media socket's table, by key.\n# TYPE casecast_udp_routes gauge\ncasecast_udp_routes{{key=\"ufrag\"}} {ufrags}\ncasecast_udp_routes{{key=\"address\"}} {addrs}\n"
        )
        .into_bytes(),
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(buf)
}

async fn whip_post(req: actix_web::HttpRequest, room: web::Path<String>, body: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    whip::post(Kind::Whip, req, room, body, st).await
}
async fn whep_post(req: actix_web::HttpRequest, room: web::Path<String>, body: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    whip::post(Kind::Whep, req, room, body, st).await
}
async fn whip_delete(req: actix_web::HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    whip::delete(Kind::Whip, req, p, st).await
}
async fn whep_delete(req: actix_web::HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    whip::delete(Kind::Whep, req, p, st).await
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let sdp_limit = web::PayloadConfig::new(casecast_signaling::whip::MAX_SDP_BYTES);
    crate::cases::routes(cfg);
    crate::events::routes(cfg);
    cfg.route("/", web::get().to(index))
        .route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route("/room/{id}", web::get().to(room_page))
        .route("/watch/{room}", web::get().to(watch_page))
        .route("/watch/{room}/source", web::get().to(watch_source))
        .route("/assets/{name:.*}", web::get().to(asset))
        .route("/ws", web::get().to(ws::ws))
        .service(web::resource("/hls/{room}/{file}").wrap(actix_web::middleware::Compress::default()).route(web::get().to(hls)))
        .route("/api/rooms/{room}/recordings", web::get().to(recordings))
        .route("/api/rooms/{room}/recordings/{file}", web::get().to(recording))
        .service(web::resource("/api/rooms/{room}/program").app_data(web::PayloadConfig::new(4096)).route(web::post().to(program)))
        .service(
            web::resource("/whip/{room}")
                .wrap(whip::cors())
                .app_data(sdp_limit.clone())
                .route(web::post().to(whip_post))
                .route(web::method(actix_web::http::Method::OPTIONS).to(whip::options)),
        )
        .service(
            web::resource("/whip/{room}/{resource}")
                .wrap(whip::cors())
                .route(web::delete().to(whip_delete))
                .route(web::patch().to(whip::patch))
                .route(web::method(actix_web::http::Method::OPTIONS).to(whip::options)),
        )
        .service(
            web::resource("/whep/{room}")
                .wrap(whip::cors())
                .app_data(sdp_limit)
                .route(web::post().to(whep_post))
                .route(web::method(actix_web::http::Method::OPTIONS).to(whip::options)),
        )
        .service(
            web::resource("/whep/{room}/{resource}")
                .wrap(whip::cors())
                .route(web::delete().to(whep_delete))
                .route(web::patch().to(whip::patch))
                .route(web::method(actix_web::http::Method::OPTIONS).to(whip::options)),
        );
}
