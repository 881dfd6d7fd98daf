//! HTTP handlers: pages, the program's HLS and recordings, WHIP/WHEP, metrics, and
//! the helpers every door uses (errors, tokens). The route table is in `routes`;
//! the cases' and the events' handlers are in their own modules.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use casecast_actors::{JoinError, RoomError};
use casecast_signaling::RoomId;

use crate::state::AppState;
use crate::whip::{self, Kind};

/// The web pages, embedded so the binary runs from anywhere.
mod assets {
    pub const INDEX: &str = include_str!("../../web/index.html");
    pub const ROOM: &str = include_str!("../../web/room.html");
    pub const ROOM_JS: &str = include_str!("../../web/room.js");
    pub const ROOM_CORE_JS: &str = include_str!("../../web/room-core.js");
    pub const ROOM_PREJOIN_JS: &str = include_str!("../../web/room-prejoin.js");
    pub const ROOM_CONNECTION_JS: &str = include_str!("../../web/room-connection.js");
    pub const ROOM_LOCAL_JS: &str = include_str!("../../web/room-local.js");
    pub const ROOM_PEOPLE_JS: &str = include_str!("../../web/room-people.js");
    pub const STYLE: &str = include_str!("../../web/style.css");
    pub const WATCH: &str = include_str!("../../web/watch.html");
    pub const WATCH_JS: &str = include_str!("../../web/watch.js");
    pub const WATCH_RECORDING: &str = include_str!("../../web/watch-recording.html");
    pub const WATCH_RECORDING_JS: &str = include_str!("../../web/watch-recording.js");
    pub const CASES_JS: &str = include_str!("../../web/cases.js");
    pub const CONSOLE_JS: &str = include_str!("../../web/console.js");
    pub const CONSOLE_CORE_JS: &str = include_str!("../../web/console-core.js");
    pub const CONSOLE_PEOPLE_JS: &str = include_str!("../../web/console-people.js");
    pub const CONSOLE_PROGRAM_JS: &str = include_str!("../../web/console-program.js");
    pub const CONSOLE_LIBRARY_JS: &str = include_str!("../../web/console-library.js");
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

/// A failure of the server's own (database, store) as a JSON 500. The cause is
/// logged under a reference the caller is given; its text (paths, SQL, addresses)
/// is never sent out.
pub fn json_internal(e: impl std::fmt::Display) -> HttpResponse {
    let reference = &crate::state::random_id()[..12];
    tracing::error!(error = %e, %reference, "request failed");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("the server failed; try again, and if it goes on, give the operators this reference: {reference}"),
    )
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
        JoinError::Room(RoomError::Full(_) | RoomError::NoSeat { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        JoinError::Room(RoomError::TooManySessions(..)) => StatusCode::TOO_MANY_REQUESTS,
        JoinError::Room(RoomError::Refused(_)) => StatusCode::FORBIDDEN,
        JoinError::Room(_) => StatusCode::CONFLICT,
        JoinError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, &e.to_string())
}

/// With HTTPS on, a page asked for over plain HTTP from another machine is sent to
/// the HTTPS address (browsers open cameras and microphones only on `https://` or
/// `localhost`, and tokens should not cross a network in the clear). `localhost`
/// and a trusted proxy that says the client used HTTPS (`X-Forwarded-Proto`) stay.
/// The API and the media doors are not redirected (a POST cannot follow one).
pub(crate) async fn https_pages(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if let Some(to) = https_address(req.request()) {
        let response = HttpResponse::PermanentRedirect().insert_header((header::LOCATION, to)).finish();
        return Ok(req.into_response(response));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn https_address(req: &actix_web::HttpRequest) -> Option<String> {
    let st = req.app_data::<web::Data<AppState>>()?;
    if !st.tls || req.app_config().secure() || req.method() != actix_web::http::Method::GET {
        return None;
    }
    if !matches!(req.path().split('/').nth(1), Some("" | "room" | "watch" | "console" | "cases")) {
        return None;
    }
    let public = st.public_url.get().filter(|u| u.starts_with("https://"))?;
    let client = crate::viewers::client_address(req, &st.proxies)?;
    let forwarded_https = req.peer_addr().is_some_and(|p| st.proxies.contains(&p.ip()))
        && req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if client.is_loopback() || forwarded_https {
        return None;
    }
    let query = match req.query_string() {
        "" => String::new(),
        q => format!("?{q}"),
    };
    Some(format!("{public}{}{query}", req.path()))
}

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(html)
}

pub(crate) async fn index() -> HttpResponse {
    page(assets::INDEX)
}

pub(crate) async fn room_page() -> HttpResponse {
    page(assets::ROOM)
}

/// `GET /watch/{room}`: the program's player; with `?recording=<file>`, a recorded
/// file's player with its chapters (the library's, `library.rs`).
pub(crate) async fn watch_page(req: actix_web::HttpRequest) -> HttpResponse {
    let recording = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).is_ok_and(|q| q.contains_key("recording"));
    page(if recording { assets::WATCH_RECORDING } else { assets::WATCH })
}

pub(crate) async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, ct) = match name.as_str() {
        "room.js" => (assets::ROOM_JS, "text/javascript; charset=utf-8"),
        "room-core.js" => (assets::ROOM_CORE_JS, "text/javascript; charset=utf-8"),
        "room-prejoin.js" => (assets::ROOM_PREJOIN_JS, "text/javascript; charset=utf-8"),
        "room-connection.js" => (assets::ROOM_CONNECTION_JS, "text/javascript; charset=utf-8"),
        "room-local.js" => (assets::ROOM_LOCAL_JS, "text/javascript; charset=utf-8"),
        "room-people.js" => (assets::ROOM_PEOPLE_JS, "text/javascript; charset=utf-8"),
        "watch.js" => (assets::WATCH_JS, "text/javascript; charset=utf-8"),
        "watch-recording.js" => (assets::WATCH_RECORDING_JS, "text/javascript; charset=utf-8"),
        "cases.js" => (assets::CASES_JS, "text/javascript; charset=utf-8"),
        "console.js" => (assets::CONSOLE_JS, "text/javascript; charset=utf-8"),
        "console-core.js" => (assets::CONSOLE_CORE_JS, "text/javascript; charset=utf-8"),
        "console-people.js" => (assets::CONSOLE_PEOPLE_JS, "text/javascript; charset=utf-8"),
        "console-program.js" => (assets::CONSOLE_PROGRAM_JS, "text/javascript; charset=utf-8"),
        "console-library.js" => (assets::CONSOLE_LIBRARY_JS, "text/javascript; charset=utf-8"),
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
pub(crate) fn playback_allowed(req: &actix_web::HttpRequest, state: &AppState, room: &str) -> Result<Option<String>, HttpResponse> {
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
pub(crate) async fn watch_source(req: actix_web::HttpRequest, room: web::Path<RoomId>, state: web::Data<AppState>) -> HttpResponse {
    let room = room.into_inner().to_string();
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

#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
fn operator(req: &actix_web::HttpRequest, state: &AppState, room: &str) -> Result<casecast_signaling::Claims, HttpResponse> {
    let token = request_token(req, false);
    state.authorize(token.as_deref(), room, &[casecast_signaling::Role::Operator]).map_err(|e| error_response(e.status(), e.message()))
}

/// A file or room name that cannot leave its directory.
pub(crate) fn safe_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `POST /api/rooms/{room}/program` `{"layout": "grid"}` with an operator token:
/// switches the program's layout while live (the events door's layout change, for
/// rooms that are not events: one path, audited alike).
pub(crate) async fn program(
    req: actix_web::HttpRequest,
    room: web::Path<RoomId>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let room = room.into_inner().to_string();
    let who = match operator(&req, &state, &room) {
        Ok(c) => c,
        Err(r) => return r,
    };
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
    let change = crate::events::ProgramChange { layout: Some(layout), main: Some(main), ..Default::default() };
    match crate::events::change_program(&state, &who, &room, change).await {
        Ok(done) => HttpResponse::Accepted().json(done),
        Err((status, message)) => error_response(status, &message),
    }
}

/// `GET /metrics`: Prometheus's text, for the scrape token only (`Authorization:
/// Bearer <metrics_token>`); served without it on `metrics_listen` if configured.
pub(crate) async fn metrics(req: actix_web::HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let given = request_token(&req, false).unwrap_or_default();
    if !crate::state::same_secret(&given, &state.metrics_token) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "the metrics need the scrape token (Authorization: Bearer <metrics_token>; `casecast token --scrape` prints it)",
        );
    }
    metrics_text(&state).await
}

/// The metrics exposition itself: the actors' counters, and the rooms' figures read
/// at this scrape.
pub(crate) async fn metrics_text(state: &AppState) -> HttpResponse {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let mut families = state.sfu.metrics().registry.gather();
    families.extend(crate::telemetry::room_families(state).await);
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "cannot encode the metrics");
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be encoded; the server's log says why");
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

pub(crate) async fn whip_post(req: actix_web::HttpRequest, room: web::Path<RoomId>, body: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    whip::post(Kind::Whip, req, room, body, st).await
}
pub(crate) async fn whep_post(req: actix_web::HttpRequest, room: web::Path<RoomId>, body: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    whip::post(Kind::Whep, req, room, body, st).await
}
pub(crate) async fn whip_delete(req: actix_web::HttpRequest, p: web::Path<(RoomId, String)>, st: web::Data<AppState>) -> HttpResponse {
    whip::delete(Kind::Whip, req, p, st).await
}
pub(crate) async fn whep_delete(req: actix_web::HttpRequest, p: web::Path<(RoomId, String)>, st: web::Data<AppState>) -> HttpResponse {
    whip::delete(Kind::Whep, req, p, st).await
}
