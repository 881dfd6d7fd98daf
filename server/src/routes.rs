//! The route table: every door of the HTTP server, who may use it, and its handler.
//!
//! The table is the registration: [`configure`] builds the actix routes from it, and
//! `casecast routes` prints it (`--json` for tools). The end-to-end authorization
//! matrix reads that print-out and tries every door with every kind of token, so a
//! door added here is checked by the next test run, and a door cannot exist without
//! an entry here.
//!
//! Every `GET` door answers `HEAD` too (the same status and headers, no body), as
//! HTTP asks of a server and as players and CDNs probe.

use actix_web::http::Method;
use actix_web::middleware::{Compress, DefaultHeaders};
use actix_web::{Route, guard, web};
use casecast_signaling::Role;
use serde::Serialize;

use crate::{cases, dicomweb, events, health, hls, http, library, ws};

/// Who may use a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "roles", rename_all = "snake_case")]
pub enum Access {
    /// Anyone: pages, assets, health, CORS preflights.
    Public,
    /// Anyone while the event is public; a playback token once it is private.
    Playback,
    /// The scrape token (`metrics_token`), nothing else.
    Scrape,
    /// A token for the room in the path with one of these roles (an operator token
    /// for all events, `*`, counts where operators may).
    Room(&'static [Role]),
    /// A token with one of these roles; the token's room is the case library used.
    Library(&'static [Role]),
    /// An operator token for the event in the path, or for all events.
    Event,
    /// An operator token for all events (`*`).
    AllEvents,
    /// Any operator token; what it sees is limited to its scope.
    Operator,
    /// The WebSocket signaling: the token comes in the `join` message (any role,
    /// for the room joined).
    Signaling,
    /// The token that started the session; any other needs these roles in the room
    /// and is then refused.
    SessionOwner(&'static [Role]),
}

/// One door: a method on a path.
pub struct Door {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The actix path pattern.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
    /// The largest request body taken, bytes (`None`: actix's default, or a
    /// handler that streams the body with limits of its own).
    pub body_limit: Option<usize>,
    /// The handler, with its middleware, as a route without a method guard.
    pub route: fn() -> Route,
}

const ENCODER: &[Role] = &[Role::Encoder, Role::Commentator];
const WATCH: &[Role] = &[Role::Viewer, Role::Commentator, Role::Operator];
const OPERATOR: &[Role] = &[Role::Operator];
const VIEW: &[Role] = cases::VIEW;
const UPLOAD: &[Role] = cases::UPLOAD;
const JSON: Option<usize> = Some(16 << 10);
const SDP: Option<usize> = Some(casecast_signaling::whip::MAX_SDP_BYTES);

fn whip_cors() -> DefaultHeaders {
    crate::whip::cors()
}

fn tus_headers() -> DefaultHeaders {
    DefaultHeaders::new().add(("Tus-Resumable", casecast_signaling::tus::TUS_VERSION))
}

macro_rules! door {
    ($method:literal, $path:literal, $access:expr, $handler:expr) => {
        door!($method, $path, $access, None, $handler)
    };
    ($method:literal, $path:literal, $access:expr, $limit:expr, $handler:expr) => {
        Door { method: $method, path: $path, access: $access, body_limit: $limit, route: || web::route().to($handler) }
    };
    ($method:literal, $path:literal, $access:expr, $limit:expr, $handler:expr, wrap $mw:expr) => {
        Door { method: $method, path: $path, access: $access, body_limit: $limit, route: || web::route().to($handler).wrap($mw) }
    };
}

/// Every door, in registration order (catch-all paths first: they match on their
/// method only).
pub const DOORS: &[Door] = &[
    // Catch-alls.
    door!("GET", "/assets/{name:.*}", Access::Public, http::asset),
    door!("OPTIONS", "/dicomweb/{any:.*}", Access::Public, None, cases::preflight, wrap cases::cors()),
    // Pages and health.
    door!("GET", "/", Access::Public, http::index),
    door!("GET", "/healthz", Access::Public, health::healthz),
    door!("GET", "/readyz", Access::Public, health::readyz),
    door!("GET", "/metrics", Access::Scrape, http::metrics),
    door!("GET", "/room/{room}", Access::Public, http::room_page),
    door!("GET", "/watch/{room}", Access::Public, http::watch_page),
    door!("GET", "/console", Access::Public, events::console_page),
    door!("GET", "/cases", Access::Public, cases::page),
    // The program, for viewers and operators.
    door!("GET", "/watch/{room}/source", Access::Playback, http::watch_source),
    door!("GET", "/watch/{room}/state", Access::Playback, events::watch_state),
    door!("POST", "/watch/{room}/votes", Access::Playback, Some(1024), events::vote),
    door!("GET", "/hls/{room}/{file}", Access::Playback, None, hls::hls, wrap Compress::default()),
    door!("GET", "/api/rooms/{room}/recordings", Access::Room(OPERATOR), library::recordings),
    door!("GET", "/api/rooms/{room}/recordings/{file}", Access::Room(OPERATOR), library::recording),
    door!("GET", "/api/rooms/{room}/recordings/{file}/thumbnail", Access::Room(OPERATOR), library::thumbnail),
    door!("GET", "/api/library", Access::Operator, library::library),
    door!("POST", "/api/rooms/{room}/program", Access::Room(OPERATOR), Some(4096), http::program),
    // Media: signaling, WHIP, WHEP.
    door!("GET", "/ws", Access::Signaling, ws::ws),
    door!("POST", "/whip/{room}", Access::Room(ENCODER), SDP, http::whip_post, wrap whip_cors()),
    door!("OPTIONS", "/whip/{room}", Access::Public, None, crate::whip::options, wrap whip_cors()),
    door!("DELETE", "/whip/{room}/{resource}", Access::SessionOwner(ENCODER), None, http::whip_delete, wrap whip_cors()),
    door!("PATCH", "/whip/{room}/{resource}", Access::Public, None, crate::whip::patch, wrap whip_cors()),
    door!("OPTIONS", "/whip/{room}/{resource}", Access::Public, None, crate::whip::options, wrap whip_cors()),
    door!("POST", "/whep/{room}", Access::Room(WATCH), SDP, http::whep_post, wrap whip_cors()),
    door!("OPTIONS", "/whep/{room}", Access::Public, None, crate::whip::options, wrap whip_cors()),
    door!("DELETE", "/whep/{room}/{resource}", Access::SessionOwner(WATCH), None, http::whep_delete, wrap whip_cors()),
    door!("PATCH", "/whep/{room}/{resource}", Access::Public, None, crate::whip::patch, wrap whip_cors()),
    door!("OPTIONS", "/whep/{room}/{resource}", Access::Public, None, crate::whip::options, wrap whip_cors()),
    // The operators' API.
    door!("GET", "/api/openapi.json", Access::Operator, events::openapi),
    door!("GET", "/api/playback/public-key", Access::Public, events::playback_public_key),
    door!("GET", "/api/audit", Access::AllEvents, events::audit),
    door!("GET", "/api/events", Access::Operator, JSON, events::list),
    door!("POST", "/api/events", Access::AllEvents, JSON, events::create),
    door!("GET", "/api/events/{id}", Access::Event, JSON, events::get),
    door!("PATCH", "/api/events/{id}", Access::Event, JSON, events::update),
    door!("DELETE", "/api/events/{id}", Access::AllEvents, JSON, events::delete),
    door!("POST", "/api/events/{id}/start", Access::Event, JSON, events::start),
    door!("POST", "/api/events/{id}/end", Access::Event, JSON, events::end),
    door!("GET", "/api/events/{id}/polls", Access::Event, JSON, events::polls),
    door!("GET", "/api/events/{id}/distribution", Access::Event, JSON, events::distribution),
    door!("POST", "/api/events/{id}/distribution/input", Access::Event, JSON, events::switch_input),
    door!("POST", "/api/events/{id}/playback-tokens", Access::Event, JSON, events::playback_token),
    door!("GET", "/api/events/{id}/participants", Access::Event, JSON, events::participants),
    door!("GET", "/api/events/{id}/live", Access::Event, JSON, events::live),
    door!("POST", "/api/events/{id}/program", Access::Event, JSON, events::program),
    door!("POST", "/api/events/{id}/metadata", Access::Event, JSON, events::metadata),
    door!("POST", "/api/events/{id}/participants/{participant}/remove", Access::Event, JSON, events::remove),
    door!("POST", "/api/events/{id}/participants/{participant}/mute", Access::Event, JSON, events::mute),
    door!("GET", "/api/events/{id}/invitations", Access::Event, JSON, events::invitations),
    door!("POST", "/api/events/{id}/invitations", Access::Event, JSON, events::invite),
    door!("DELETE", "/api/events/{id}/invitations/{invitation}", Access::Event, JSON, events::revoke),
    // Cases: uploads (tus), the viewer's JSON, DICOMweb.
    door!("POST", "/api/cases/uploads", Access::Library(UPLOAD), None, cases::tus_create, wrap tus_headers()),
    door!("OPTIONS", "/api/cases/uploads", Access::Public, None, cases::tus_options, wrap tus_headers()),
    door!("HEAD", "/api/cases/uploads/{upload}", Access::Library(UPLOAD), None, cases::tus_head, wrap tus_headers()),
    door!("PATCH", "/api/cases/uploads/{upload}", Access::Library(UPLOAD), None, cases::tus_patch, wrap tus_headers()),
    door!("DELETE", "/api/cases/uploads/{upload}", Access::Library(UPLOAD), None, cases::tus_delete, wrap tus_headers()),
    door!("OPTIONS", "/api/cases/uploads/{upload}", Access::Public, None, cases::tus_options, wrap tus_headers()),
    door!("GET", "/api/cases/jobs", Access::Library(VIEW), cases::jobs),
    door!("GET", "/api/cases/studies", Access::Library(VIEW), cases::studies),
    door!("GET", "/api/cases/studies/{study}", Access::Library(VIEW), cases::study),
    door!("PATCH", "/api/cases/studies/{study}", Access::Library(UPLOAD), JSON, cases::update_study),
    door!("GET", "/api/cases/studies/{study}/series/{series}/instances/{sop}/tags", Access::Library(VIEW), cases::tags),
    door!("GET", "/dicomweb/studies", Access::Library(VIEW), None, dicomweb::qido_studies, wrap cases::cors()),
    door!("POST", "/dicomweb/studies", Access::Library(UPLOAD), None, dicomweb::stow, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}", Access::Library(VIEW), None, dicomweb::wado_study, wrap cases::cors()),
    door!("POST", "/dicomweb/studies/{study}", Access::Library(UPLOAD), None, dicomweb::stow, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/metadata", Access::Library(VIEW), None, dicomweb::metadata_study, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series", Access::Library(VIEW), None, dicomweb::qido_series, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series/{series}", Access::Library(VIEW), None, dicomweb::wado_series, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series/{series}/metadata", Access::Library(VIEW), None, dicomweb::metadata_series, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series/{series}/instances", Access::Library(VIEW), None, dicomweb::qido_instances, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series/{series}/instances/{sop}", Access::Library(VIEW), None, dicomweb::wado_instance, wrap cases::cors()),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata",
        Access::Library(VIEW),
        None,
        dicomweb::metadata_instance,
        wrap cases::cors()
    ),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
        Access::Library(VIEW),
        None,
        dicomweb::frames,
        wrap cases::cors()
    ),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
        Access::Library(VIEW),
        None,
        dicomweb::rendered,
        wrap cases::cors()
    ),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/thumbnail",
        Access::Library(VIEW),
        None,
        dicomweb::thumbnail_frame,
        wrap cases::cors()
    ),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulk/{tag}",
        Access::Library(VIEW),
        None,
        dicomweb::bulk,
        wrap cases::cors()
    ),
    door!("GET", "/dicomweb/studies/{study}/thumbnail", Access::Library(VIEW), None, dicomweb::thumbnail_study, wrap cases::cors()),
    door!("GET", "/dicomweb/studies/{study}/series/{series}/thumbnail", Access::Library(VIEW), None, dicomweb::thumbnail_series, wrap cases::cors()),
    door!(
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{sop}/thumbnail",
        Access::Library(VIEW),
        None,
        dicomweb::thumbnail_instance,
        wrap cases::cors()
    ),
];

/// A door's method guard: `GET` doors take `HEAD` too.
fn method_guard(method: &str) -> guard::AnyGuard {
    let m: Method = method.parse().expect("the table names HTTP methods");
    let any = guard::Any(guard::Method(m.clone()));
    if m == Method::GET { any.or(guard::Head()) } else { any }
}

/// Registers every door: one resource per path (so a method it does not take gets
/// 405 with the ones it does), catch-all paths with their method as the resource's
/// guard (so they never hide a more specific path).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<&str> = Vec::new();
    for d in DOORS {
        if !paths.contains(&d.path) {
            paths.push(d.path);
        }
    }
    for path in paths {
        let doors: Vec<&Door> = DOORS.iter().filter(|d| d.path == path).collect();
        let mut resource = web::resource(path);
        if path.contains(":.*}") {
            let d = doors[0];
            resource = resource.guard(method_guard(d.method));
        }
        if let Some(limit) = doors.iter().filter_map(|d| d.body_limit).max() {
            resource = resource.app_data(web::PayloadConfig::new(limit));
        }
        for d in doors {
            resource = resource.route((d.route)().guard(method_guard(d.method)));
        }
        cfg.service(resource);
    }
}

/// The table as JSON: `[{"method", "path", "access": {"kind", "roles"}}]`.
pub fn table_json() -> serde_json::Value {
    serde_json::Value::Array(
        DOORS
            .iter()
            .map(|d| serde_json::json!({ "method": d.method, "path": d.path, "access": d.access, "body_limit": d.body_limit }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    fn sample(path: &str) -> String {
        path.split('/')
            .map(|seg| match seg {
                s if s.starts_with('{') && s.contains(":.*") => "style.css",
                "{file}" => "index.m3u8",
                s if s.starts_with('{') => "id-1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every door is reached by its method on its path: no door is hidden by
    /// another, and each `GET` door answers `HEAD`.
    #[actix_web::test]
    async fn every_door_is_routed() {
        let app = test::init_service(actix_web::App::new().configure(configure)).await;
        // The WHIP/WHEP PATCH doors answer 405 themselves: no trickle ICE.
        for d in DOORS.iter().filter(|d| !(d.method == "PATCH" && d.path.starts_with("/wh"))) {
            let path = sample(d.path);
            let mut methods = vec![d.method];
            if d.method == "GET" {
                methods.push("HEAD");
            }
            for m in methods {
                let req = test::TestRequest::default().method(m.parse().unwrap()).uri(&path).to_request();
                let status = test::call_service(&app, req).await.status();
                // Without the server's state, a routed request fails in its
                // extractors (500) or answers by itself; never 404/405 from routing.
                assert!(status != 404 && status != 405, "{m} {path}: {status}");
            }
        }
        // A method the path does not take gets 405.
        let req = test::TestRequest::default().method(Method::PUT).uri("/api/events").to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 405);
    }
}
