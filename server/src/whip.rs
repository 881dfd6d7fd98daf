//! WHIP (RFC 9725) ingest for the hospital encoder, and WHEP egress for watch-only
//! clients. One POST carries the whole offer (no trickle: the server is ICE-lite and
//! learns the client's address from its connectivity checks), the answer comes back
//! with `201 Created` and the session's `Location`; `DELETE` on it ends the session.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use casecast_actors::{AcceptOffer, Close, ParticipantEvent};
use casecast_signaling::{Role, RoomId};
use casecast_signaling::whip::{SDP_CONTENT_TYPE, bearer_token, check_sdp_offer};

use crate::http::{error_response, join_error_response};
use crate::state::{AccessError, AppState, Resource, participant_options};

/// Which door.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Publish (WHIP).
    Whip,
    /// Watch (WHEP).
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
    fn roles(self) -> &'static [Role] {
        match self {
            // A commentator may publish its camera from a WHIP client too.
            Kind::Whip => &[Role::Encoder, Role::Commentator],
            Kind::Whep => &[Role::Viewer, Role::Commentator, Role::Operator],
        }
    }
}

fn token(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token)
}

fn access(e: AccessError) -> HttpResponse {
    error_response(e.status(), e.message())
}

/// `POST /whip/{room}` and `POST /whep/{room}`.
pub async fn post(
    kind: Kind,
    req: HttpRequest,
    room: web::Path<RoomId>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let room = room.into_inner().to_string();
    let claims = match state.authorize(token(&req), &room, kind.roles()) {
        Ok(c) => c,
        Err(e) => return access(e),
    };
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with(SDP_CONTENT_TYPE) {
        return error_response(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type must be {SDP_CONTENT_TYPE}, not {ct:?}"),
        );
    }
    // The room may live on another node: the client is sent there (307 keeps the
    // method and the offer).
    match state.directory.place(&room).await {
        Ok(crate::directory::Placement::Here) => {}
        Ok(crate::directory::Placement::There(base)) => {
            let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(req.path());
            return HttpResponse::TemporaryRedirect().insert_header((header::LOCATION, format!("{base}{path}"))).finish();
        }
        Err(e) => return error_response(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, &e),
    }
    // Checked before anyone joins, so a bad offer leaves no trace in the room.
    let offer = match check_sdp_offer(&body).and_then(|o| {
        casecast_actors::sdp::parse_offer(o)?;
        Ok(o)
    }) {
        Ok(o) => o.to_string(),
        Err(m) => return error_response(actix_web::http::StatusCode::BAD_REQUEST, &m),
    };
    let mut opts = participant_options(&claims, token(&req).unwrap_or_default(), None, false, kind == Kind::Whep);
    match kind {
        // WHEP is watch-only, whatever the role could do elsewhere.
        Kind::Whep => opts.publish = None,
        // WHIP is publish-only: nothing is sent back on it.
        Kind::Whip => opts.subscribe = casecast_actors::Subscribe::None,
    }
    let handle = match state.sfu.join(&room, &state.room_policy(&room), opts).await {
        Ok(h) => h,
        Err(e) => return join_error_response(e),
    };
    let answer = match handle.addr.send(AcceptOffer(offer)).await {
        Ok(Ok(a)) => a,
        Ok(Err(m)) => {
            handle.addr.do_send(Close("offer rejected".into()));
            return error_response(actix_web::http::StatusCode::BAD_REQUEST, &m);
        }
        Err(_) => {
            return error_response(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "the session ended while starting; try again");
        }
    };
    let resource = handle.id.to_string();
    let location = format!("/{}/{room}/{resource}", kind.path());
    let entry = Resource {
        door: kind.path(),
        room: room.clone(),
        token: token(&req).unwrap_or_default().to_string(),
        addr: handle.addr.clone(),
    };
    state.resources.lock().unwrap().insert(resource.clone(), entry);
    state.directory.add_resource(&resource).await;
    // TURN servers for this session (RFC 9725 §4.6), for a client behind a firewall
    // that lets neither UDP nor direct TCP through; it may restart ICE with them.
    let ice_servers = state.ice_servers(&resource);
    // Forget the resource when the session ends by itself (network loss, timeout).
    let st = state.clone();
    let mut events = handle.events;
    actix_web::rt::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let ParticipantEvent::Closed(reason) = ev {
                tracing::info!(%resource, %reason, "session ended");
                break;
            }
        }
        st.resources.lock().unwrap().remove(&resource);
        st.directory.remove_resource(&resource).await;
    });
    tracing::info!(%room, role = claims.role.as_str(), name = %claims.name, %location, "{} session started", kind.path());
    let mut created = HttpResponse::Created();
    created.content_type(SDP_CONTENT_TYPE).insert_header((header::LOCATION, location));
    for server in ice_servers {
        created.append_header((header::LINK, server.link_header()));
    }
    created.body(answer)
}

/// `DELETE /whip/{room}/{resource}` and `DELETE /whep/{room}/{resource}`.
pub async fn delete(
    kind: Kind,
    req: HttpRequest,
    path: web::Path<(RoomId, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (room, resource) = path.into_inner();
    let room = room.to_string();
    let entry = {
        let r = state.resources.lock().unwrap();
        r.get(&resource).filter(|e| e.room == room && e.door == kind.path()).cloned()
    };
    // A session on another node of the cluster is ended there.
    if entry.is_none()
        && let Some(base) = state.directory.resource_node(&resource).await
    {
        return HttpResponse::TemporaryRedirect().insert_header((header::LOCATION, format!("{base}{}", req.path()))).finish();
    }
    // The token that started the session may end it even after it expired; any other
    // request must carry a valid token for the room first.
    let same_token = entry.as_ref().is_some_and(|e| Some(e.token.as_str()) == token(&req));
    if !same_token
        && let Err(e) = state.authorize(token(&req), &room, kind.roles()) {
            return access(e);
        }
    match entry {
        Some(e) if Some(e.token.as_str()) != token(&req) => error_response(
            actix_web::http::StatusCode::FORBIDDEN,
            "only the token that started this session may end it",
        ),
        Some(e) => {
            e.addr.do_send(Close("ended by the client (DELETE)".into()));
            state.resources.lock().unwrap().remove(&resource);
            HttpResponse::Ok().finish()
        }
        None => error_response(actix_web::http::StatusCode::NOT_FOUND, "no such session (it may have ended already)"),
    }
}

/// `PATCH` (trickle ICE / ICE restart) is not supported: the whole offer comes in the POST.
pub async fn patch() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "DELETE"))
        .body("trickle ICE and ICE restarts are not supported: send the full offer in the POST\n")
}

/// CORS preflight and `Accept-Post`, for browser-based WHIP/WHEP clients (the CORS
/// headers of the other responses come from [`cors`]).
pub async fn options() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Accept-Post", SDP_CONTENT_TYPE))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, DELETE, PATCH, OPTIONS"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type"))
        .finish()
}

/// CORS headers for every WHIP/WHEP response, errors included, so a browser on
/// another origin can read answers, `Location` and error texts. Access is by bearer
/// token, never by cookie, so any origin may call.
pub fn cors() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .add((header::ACCESS_CONTROL_EXPOSE_HEADERS, "Location, Link"))
}
