//! What the console watches and does to people: the live WebSocket, the
//! participants (mute, remove), and the console's page and API document.

use super::*;

/// `GET /api/events/{id}/live?token=…` (WebSocket): what the console shows, pushed
/// every second: `{"type":"snapshot","participants":[…],"distribution":{…}}`, and
/// `{"type":"audit","entry":{…}}` for each new audit entry. The token is checked at
/// the upgrade (browsers cannot set headers on WebSockets: `?token=` or the header).
pub(crate) async fn live(req: HttpRequest, id: web::Path<String>, body: web::Payload, st: web::Data<AppState>) -> actix_web::Result<HttpResponse> {
    let Some(token) = crate::http::request_token(&req, true) else {
        return Ok(error(StatusCode::UNAUTHORIZED, "an operator token is required (?token= or Authorization: Bearer)"));
    };
    let claims = match st.verify(&token) {
        Err(e) => return Ok(error(e.status(), e.message())),
        Ok(c) => c,
    };
    if claims.role != Role::Operator || (claims.room != ALL_EVENTS && claims.room != *id) {
        return Ok(error(StatusCode::FORBIDDEN, "an operator token for this event is needed"));
    }
    // The console sends nothing but pings: small frames only.
    let (resp, mut session, stream, _limit) = crate::ws_guard::handle(&req, body, 4096).await?;
    let mut stream = stream.max_frame_size(4096);
    let id = id.into_inner();
    actix_web::rt::spawn(async move {
        use futures_util::StreamExt;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut seen: HashSet<String> = HashSet::new();
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A token revoked, expired or of an ended event ends the view.
                    if let Err(e) = st.verify(&token) {
                        let _ = session.text(json!({ "type": "closed", "reason": e.message() }).to_string()).await;
                        break;
                    }
                    // In a cluster the room may live on another node: its list comes
                    // from there.
                    let participants = match crate::directory::participants_elsewhere(&st, &id, &token).await {
                        Some(list) => list,
                        None => serde_json::to_value(st.sfu.participants(&id).await.unwrap_or_default()).unwrap_or_else(|_| json!([])),
                    };
                    let invited: Vec<String> = participants
                        .as_array()
                        .map(|l| l.iter().filter_map(|p| p["invitation"].as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    st.events.mark_joined(&id, &invited).await;
                    let distribution = distribution_of(&st, &id);
                    // The event as it is now (its state: starting, on air, …) and
                    // its polls' counts.
                    let event = st.events.event(&id).map(|e| as_now(&st, e));
                    let polls = st.events.poll_results(&id).await.unwrap_or_default();
                    let snapshot = json!({
                        "type": "snapshot", "event": id, "state": event, "participants": participants,
                        "distribution": distribution, "polls": polls,
                    });
                    if session.text(snapshot.to_string()).await.is_err() {
                        break;
                    }
                    // New audit entries, oldest first (the first round sends the last 50).
                    let entries = st.events.audit_log(Some(&id), 50).await.unwrap_or_default();
                    for e in entries.iter().rev() {
                        let key = e.to_string();
                        if seen.insert(key) && session.text(json!({ "type": "audit", "entry": e, "backlog": first }).to_string()).await.is_err() {
                            return;
                        }
                    }
                    first = false;
                }
                msg = stream.next() => match msg {
                    Some(Ok(actix_ws::Message::Ping(b))) => { let _ = session.pong(&b).await; }
                    Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(resp)
}

/// `GET /api/events/{id}/participants`: who is in the event's room now, with their
/// connection and media (updated every 2 s).
pub(crate) async fn participants(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    if let Some(r) = crate::directory::forward_to_owner(&st, &req, &id, &[]).await {
        return r;
    }
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(st.sfu.participants(&id).await.unwrap_or_default())
}

/// 409 for the program and the operators' consoles (they are the event's own
/// machinery, not people: never removed or muted from here).
async fn a_person(st: &AppState, room: &str, participant: &str) -> std::result::Result<(), HttpResponse> {
    let list = st.sfu.participants(room).await.unwrap_or_default();
    match list.iter().find(|p| p.id == participant) {
        Some(p) if p.role == "operator" => Err(error(
            StatusCode::CONFLICT,
            "this is the program or an operator's console, not a person: it cannot be removed or muted (end the event to stop the program)",
        )),
        _ => Ok(()),
    }
}

/// `POST /api/events/{id}/participants/{participant}/remove`: ends a participant's
/// session (their page says they were removed; the token still works unless its
/// invitation is revoked too).
pub(crate) async fn remove(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let (id, participant) = p.into_inner();
    let who = op!(req, st, Some(&id));
    if let Some(r) = crate::directory::forward_to_owner(&st, &req, &id, &[]).await {
        return r;
    }
    if let Err(r) = a_person(&st, &id, &participant).await {
        return r;
    }
    if !st.sfu.remove(&id, &participant).await {
        return error(StatusCode::NOT_FOUND, "no such participant in this event's room");
    }
    st.events.audit(&who, "participant.remove", Some(&id), json!({ "participant": participant })).await;
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteChange {
    kind: String,
    muted: bool,
}

/// `POST /api/events/{id}/participants/{participant}/mute` `{"kind": "audio" |
/// "video", "muted": bool}`: the server stops (or resumes) forwarding what the
/// participant sends of that kind; the room sees it muted, and the participant is
/// told it was the operator and cannot unmute it itself.
pub(crate) async fn mute(req: HttpRequest, p: web::Path<(String, String)>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let (id, participant) = p.into_inner();
    let who = op!(req, st, Some(&id));
    if let Some(r) = crate::directory::forward_to_owner(&st, &req, &id, &bytes).await {
        return r;
    }
    let m: MuteChange = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let kind = match m.kind.as_str() {
        "audio" => casecast_actors::MediaKind::Audio,
        "video" => casecast_actors::MediaKind::Video,
        other => return error(StatusCode::BAD_REQUEST, &format!("kind {other:?}: use audio or video")),
    };
    if let Err(r) = a_person(&st, &id, &participant).await {
        return r;
    }
    if !st.sfu.hold(&id, &participant, kind, m.muted).await {
        return error(StatusCode::NOT_FOUND, "no such participant in this event's room");
    }
    let action = if m.muted { "participant.mute" } else { "participant.unmute" };
    st.events.audit(&who, action, Some(&id), json!({ "participant": participant, "kind": m.kind })).await;
    HttpResponse::NoContent().finish()
}

/// `GET /console?token=…`: the distribution center's console (the page asks the API
/// with the token; the page itself is public).
pub(crate) async fn console_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../../web/console.html"))
}

/// `GET /api/openapi.json` (any operator token): this API's OpenAPI document.
pub(crate) async fn openapi(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = operator_claims(&req, &st) {
        return r;
    }
    HttpResponse::Ok().content_type("application/json").body(include_str!("../openapi.json"))
}

/// Query strings that do not parse get this API's JSON error.
pub fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        let msg = format!("invalid query string: {e}");
        actix_web::error::InternalError::from_response(e, error(StatusCode::BAD_REQUEST, &msg)).into()
    })
}
