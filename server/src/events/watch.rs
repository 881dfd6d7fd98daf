//! The viewers' doors of an event: what state it is in (the watch page follows
//! it: starting soon, on air, back shortly, ended) and their votes in polls. Open
//! to anyone while the event is public; a private event's need its playback token.

use super::*;

/// `GET /watch/{id}/state`: the event's title, schedule and state for its viewers
/// (`scheduled`, `starting`, `on_air`, `off_air`, `ended`), and whether its program
/// has a playlist to play (live, or VOD once ended). Nothing else (no policy, no
/// people). A private event's need its playback token, or a token of the event's
/// own people (the commentator page follows the state with its invitation).
pub(crate) async fn watch_state(req: HttpRequest, id: web::Path<casecast_signaling::RoomId>, st: web::Data<AppState>) -> HttpResponse {
    let id = id.into_inner().to_string();
    if let Err(r) = crate::http::playback_allowed(&req, &st, &id) {
        // The event's own people (a commentator's page follows the state too) need
        // no playback token.
        let own = crate::http::request_token(&req, true).is_some_and(|t| st.authorize(Some(&t), &id, &Role::ALL).is_ok());
        if !own {
            return r;
        }
    }
    let playlist = st.hls_root.join(&id).join("index.m3u8").exists() || st.distribution.aws().is_some();
    let body = match st.events.event(&id) {
        Some(e) => {
            let e = as_now(&st, e);
            json!({ "event": e.id, "title": e.title, "state": e.state, "starts_at": e.starts_at, "ends_at": e.ends_at, "playlist": playlist })
        }
        // A room made without an event (tokens from the command line): it plays if
        // a program writes it.
        None if playlist => json!({ "event": id, "title": null, "state": "on_air", "starts_at": null, "ends_at": null, "playlist": true }),
        None => return error(StatusCode::NOT_FOUND, &format!("There is no event called {id:?} on this server. Check the link you were given.")),
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    poll: String,
    choice: usize,
    viewer: String,
}

/// `POST /watch/{id}/votes` `{"poll", "choice", "viewer"}`: a viewer's vote (the
/// option's index). One per viewer (the page's own random id, kept by the browser)
/// and poll: a second vote changes the first. 204; 404 for no such poll or option.
pub(crate) async fn vote(req: HttpRequest, id: web::Path<casecast_signaling::RoomId>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let id = id.into_inner().to_string();
    if let Err(r) = crate::http::playback_allowed(&req, &st, &id) {
        return r;
    }
    let v: Vote = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ok_id = |s: &str, max: usize| (8..=max).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric());
    if !ok_id(&v.viewer, 64) || !ok_id(&v.poll, 64) {
        return error(StatusCode::BAD_REQUEST, "poll and viewer are ids of 8 to 64 letters and digits");
    }
    match st.events.event(&id) {
        None => return error(StatusCode::NOT_FOUND, "no such poll"),
        Some(e) if e.status == "ended" => return error(StatusCode::CONFLICT, "the event has ended; its polls are closed"),
        Some(_) => {}
    }
    let address = crate::viewers::client_address(&req, &st.proxies).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if !st.voters.admit(&v.poll, address, &v.viewer, st.viewers.per_address()) {
        return error(StatusCode::TOO_MANY_REQUESTS, "too many voters from one address");
    }
    match st.events.vote(&id, &v.poll, &v.viewer, v.choice).await {
        Ok(true) => HttpResponse::NoContent().finish(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such poll or option"),
        Err(m) => internal(m),
    }
}
