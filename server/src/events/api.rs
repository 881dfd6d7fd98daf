//! The events' REST doors: events (create, change, start, end, delete),
//! invitations, the audit log and playback tokens.

use super::*;

pub(crate) async fn list(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let who = match operator_claims(&req, &st) {
        Ok(c) => c,
        Err(r) => return r,
    };
    // The distribution center sees every event; an event's operator, that event.
    let list: Vec<Event> =
        st.events.all().into_iter().filter(|e| who.room == ALL_EVENTS || e.id == who.room).map(|e| as_now(&st, e)).collect();
    HttpResponse::Ok().json(list)
}

/// An event as it is now: `live` while started or while its room is open (a
/// scheduled event someone is in), else as stored; with its `state`.
pub(crate) fn as_now(st: &AppState, mut e: Event) -> Event {
    if e.status == "scheduled" && (e.started_at.is_some() || st.sfu.is_open(&e.id)) {
        e.status = "live".into();
    }
    e.state = state_of(st, &e).to_string();
    e
}

pub(crate) async fn create(req: HttpRequest, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, None);
    let new: NewEvent = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = new.id.clone().unwrap_or_else(|| slug(&new.title));
    if !valid_id(&id) || id == ALL_EVENTS {
        return error(StatusCode::BAD_REQUEST, "id must be 1 to 64 letters, digits, - or _");
    }
    let now = unix_now();
    let e = Event { id, title: new.title.trim().to_string(), starts_at: new.starts_at, ends_at: new.ends_at, policy: new.policy, status: "scheduled".into(), state: String::new(), started_at: None, program: ProgramState::default(), created_at: now, updated_at: now };
    if let Err(m) = check_event(&e) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    if st.events.event(&e.id).is_some() {
        return error(StatusCode::CONFLICT, &format!("event {:?} exists", e.id));
    }
    if let Err(m) = st.events.save(&e, true).await {
        return internal(m);
    }
    st.events.audit(&who, "event.create", Some(&e.id), json!({ "title": e.title, "policy": e.policy })).await;
    tell_preset(&st, &e.id).await;
    let e = as_now(&st, e);
    HttpResponse::Created().insert_header((header::LOCATION, format!("/api/events/{}", e.id))).json(e)
}


pub(crate) async fn get(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    match st.events.event(&id) {
        Some(e) => HttpResponse::Ok().json(as_now(&st, e)),
        None => no_event(&id),
    }
}

pub(crate) async fn update(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let change: EventChange = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(mut e) = st.events.event(&id) else { return no_event(&id) };
    if e.status == "ended" {
        return error(StatusCode::CONFLICT, "the event has ended");
    }
    if let Some(t) = &change.title {
        e.title = t.trim().to_string();
    }
    if let Some(s) = change.starts_at {
        e.starts_at = s;
    }
    if let Some(s) = change.ends_at {
        e.ends_at = s;
    }
    if let Some(p) = &change.policy {
        e.policy = p.clone();
    }
    e.updated_at = unix_now();
    if let Err(m) = check_event(&e) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    if let Err(m) = st.events.save(&e, false).await {
        return internal(m);
    }
    st.events.audit(&who, "event.update", Some(&e.id), serde_json::from_slice(&bytes).unwrap_or(Value::Null)).await;
    tell_preset(&st, &e.id).await;
    HttpResponse::Ok().json(as_now(&st, e))
}

pub(crate) async fn end(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let Some(mut e) = st.events.event(&id) else { return no_event(&id) };
    e.status = "ended".into();
    e.updated_at = unix_now();
    if let Err(m) = st.events.save(&e, false).await {
        return internal(m);
    }
    st.events.audit(&who, "event.end", Some(&e.id), Value::Null).await;
    // Its program ends: the playlist becomes VOD, the recording's file is finished.
    st.programs.end(&e.id);
    if let Some(aws) = st.distribution.aws() {
        // Harvested (if configured) and torn down in the background.
        aws.end(&e.id);
    }
    HttpResponse::Ok().json(as_now(&st, e))
}

/// `POST /api/events/{id}/start`: starts the event now: the server runs its program
/// (with the event's layout, preset and outputs) until the event ends, and again
/// after a restart. Starting a started event changes nothing (200).
pub(crate) async fn start(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    match start_event(&st, &who, &id).await {
        Ok(e) => HttpResponse::Ok().json(as_now(&st, e)),
        Err((status, m)) => error(status, &m),
    }
}

/// Starts event `id`'s program and records that it started (by `who`: an operator,
/// or the schedule).
pub(crate) async fn start_event(st: &AppState, who: &Claims, id: &str) -> std::result::Result<Event, (StatusCode, String)> {
    let Some(mut e) = st.events.event(id) else { return Err((StatusCode::NOT_FOUND, format!("no event {id:?}"))) };
    if e.status == "ended" {
        return Err((StatusCode::CONFLICT, "the event has ended; make a new one to go on air again".into()));
    }
    st.programs.start(&e).map_err(|m| (StatusCode::SERVICE_UNAVAILABLE, format!("the program could not start: {m}")))?;
    if e.started_at.is_none() {
        e.started_at = Some(unix_now());
        e.updated_at = unix_now();
        st.events.save(&e, false).await.map_err(|m| {
            tracing::error!(error = %m, "events: cannot record a start");
            (StatusCode::INTERNAL_SERVER_ERROR, "the start could not be recorded; try again".to_string())
        })?;
        st.events.audit(who, "event.start", Some(&e.id), Value::Null).await;
    }
    Ok(e)
}

/// Starts the events whose scheduled time has come (checked every few seconds): a
/// start time set in the future when it was set, reached now, and not past the
/// scheduled end. An event scheduled in the past is started by hand.
pub(crate) async fn start_scheduled(st: &AppState) {
    let now = unix_now();
    let due: Vec<Event> = st
        .events
        .all()
        .into_iter()
        .filter(|e| e.status == "scheduled" && e.started_at.is_none())
        .filter(|e| e.starts_at.is_some_and(|s| s <= now && s > e.created_at - 60))
        .filter(|e| e.ends_at.is_none_or(|end| now < end))
        .collect();
    let schedule = Claims { room: ALL_EVENTS.into(), role: Role::Operator, name: "schedule".into(), iat: 0, exp: 0, jti: None };
    for e in due {
        if let Err((_, m)) = start_event(st, &schedule, &e.id).await {
            tracing::warn!(event = %e.id, error = %m, "scheduled start failed; will try again");
        }
    }
}

pub(crate) async fn delete(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, None);
    if st.events.event(&id).is_none() {
        return no_event(&id);
    }
    if let Err(m) = st.events.delete(&id).await {
        return internal(m);
    }
    st.events.audit(&who, "event.delete", Some(&id), Value::Null).await;
    st.programs.end(&id);
    if let Some(aws) = st.distribution.aws() {
        aws.end(&id);
    }
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvitation {
    name: String,
    role: Role,
    /// Lifetime, hours (default 48).
    ttl_hours: Option<u64>,
}

pub(crate) async fn invitations(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    if st.events.event(&id).is_none() {
        return no_event(&id);
    }
    // Who of the invited is in the room now (and so has joined).
    let here: HashSet<String> =
        st.sfu.participants(&id).await.unwrap_or_default().into_iter().filter_map(|p| p.invitation).collect();
    st.events.mark_joined(&id, &here.iter().cloned().collect::<Vec<_>>()).await;
    match st.events.invitations(&id).await {
        Ok(list) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(
            list.into_iter()
                .map(|mut i| {
                    i.in_room = here.contains(&i.id);
                    i.joined_at = i.joined_at.or(i.in_room.then(unix_now));
                    // Viewers' and encoders' links hold no token: they can be
                    // given again; a commentator's only when made.
                    let link = match i.role.as_str() {
                        "viewer" => Some(st.link(&format!("/watch/{id}"))),
                        "encoder" => Some(st.link(&format!("/whip/{id}"))),
                        _ => None,
                    };
                    let mut v = serde_json::to_value(&i).unwrap_or(Value::Null);
                    if let Some(l) = link {
                        v["link"] = json!(l);
                    }
                    v
                })
                .collect::<Vec<_>>(),
        ),
        Err(m) => internal(m),
    }
}

pub(crate) async fn invite(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let new: NewInvitation = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(event) = st.events.event(&id) else { return no_event(&id) };
    if event.status == "ended" {
        return error(StatusCode::CONFLICT, "the event has ended");
    }
    let name = new.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 80 {
        return error(StatusCode::BAD_REQUEST, "name must be 1 to 80 characters");
    }
    let ttl = new.ttl_hours.unwrap_or(48);
    let max = (st.max_token_ttl / 3600).min(24 * 90);
    if !(1..=max).contains(&ttl) {
        return error(StatusCode::BAD_REQUEST, &format!("ttl_hours must be 1 to {max} (max_token_ttl_secs)"));
    }
    let now = crate::state::unix_now();
    let inv = Invitation {
        id: crate::state::random_id(),
        event_id: id.to_string(),
        name: name.clone(),
        role: new.role.as_str().to_string(),
        created_at: now as i64,
        expires_at: (now + ttl * 3600) as i64,
        revoked_at: None,
        joined_at: None,
        in_room: false,
    };
    if let Err(m) = st.events.add_invitation(&inv).await {
        return internal(m);
    }
    let token = st.key.sign(&Claims { room: id.to_string(), role: new.role, name, iat: now, exp: now + ttl * 3600, jti: Some(inv.id.clone()) });
    st.events.audit(&who, "invitation.create", Some(&id), json!({ "invitation": inv.id, "name": inv.name, "role": inv.role })).await;
    let mut out = serde_json::to_value(&inv).unwrap_or(Value::Null);
    out["token"] = json!(token);
    let url = match new.role {
        Role::Encoder => format!("/whip/{id}"),
        Role::Viewer => format!("/watch/{id}"),
        _ => format!("/room/{id}?token={token}"),
    };
    // The link to hand out, at the server's public URL (HTTPS when it is on).
    out["link"] = json!(st.link(&url));
    out["url"] = json!(url);
    HttpResponse::Created().json(out)
}

pub(crate) async fn revoke(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let (id, inv) = p.into_inner();
    let who = op!(req, st, Some(&id));
    match st.events.revoke(&id, &inv).await {
        Ok(true) => {
            // Its sessions end now, not at their next join: an invitation's person is
            // its id (see `state::person`).
            let ended = st.sfu.end_sessions(&id, &inv, "your invitation was revoked by the organisers").await;
            // And on every other node (refused there, its sessions there ended).
            if let Err(e) = st.directory.revoke(&id, &inv).await {
                tracing::error!(error = %e, "the revocation could not be shared with the other nodes");
            }
            st.events.audit(&who, "invitation.revoke", Some(&id), json!({ "invitation": inv, "sessions_ended": ended })).await;
            HttpResponse::NoContent().finish()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "no such invitation for this event (or it was revoked already)"),
        Err(m) => internal(m),
    }
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    event: Option<String>,
    /// Parsed here, so a bad one gets this API's JSON error.
    limit: Option<String>,
}

pub(crate) async fn audit(req: HttpRequest, q: web::Query<AuditQuery>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, q.event.as_deref());
    let limit = match q.limit.as_deref().map(str::parse::<i64>) {
        None => 200,
        Some(Ok(n)) => n,
        Some(Err(_)) => 0,
    };
    if !(1..=10_000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit must be 1 to 10000");
    }
    match st.events.audit_log(q.event.as_deref(), limit).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(m) => internal(m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPlaybackToken {
    /// Who it is for (recorded in the audit log and the token).
    viewer: Option<String>,
    /// Lifetime, hours (default 24).
    ttl_hours: Option<u64>,
}

/// `POST /api/events/{id}/playback-tokens`: a signed playback token (ES384) for a
/// private event's HLS, and the watch link carrying it.
pub(crate) async fn playback_token(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let new: NewPlaybackToken = if bytes.is_empty() { NewPlaybackToken { viewer: None, ttl_hours: None } } else {
        match body(&bytes) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    if st.events.event(&id).is_none() {
        return no_event(&id);
    }
    let ttl = new.ttl_hours.unwrap_or(24);
    if !(1..=24 * 30).contains(&ttl) {
        return error(StatusCode::BAD_REQUEST, "ttl_hours must be 1 to 720");
    }
    let now = crate::state::unix_now();
    let token = st.playback.mint(&id, new.viewer.as_deref(), now, ttl * 3600);
    st.events.audit(&who, "playback_token.create", Some(&id), json!({ "viewer": new.viewer, "ttl_hours": ttl })).await;
    HttpResponse::Created().json(json!({
        "token": token,
        "url": format!("/watch/{}?token={token}", *id),
        "link": st.link(&format!("/watch/{}?token={token}", *id)),
        "expires_at": now + ttl * 3600,
    }))
}

/// `GET /api/playback/public-key`: the key that checks playback tokens (SPKI DER,
/// base64, and PEM), for whoever else must check them.
pub(crate) async fn playback_public_key(st: web::Data<AppState>) -> HttpResponse {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.encode(st.playback.public_key_der());
    let pem: Vec<String> = der.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).to_string()).collect();
    HttpResponse::Ok().json(json!({
        "algorithm": "ES384",
        "spki_der_base64": der,
        "pem": format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", pem.join("\n")),
    }))
}

/// The demo's event (`casecast demo`): made on first start with the server's room
/// settings and program preset as its policy, and made new again if it had ended,
/// so the demo is an ordinary event the console lists and runs.
pub(crate) async fn ensure_demo_event(st: &AppState, config: &crate::config::Config, id: &str) -> std::result::Result<(), String> {
    let now = unix_now();
    let policy = Policy {
        commentator_uplink: if config.room.commentator_video { "video" } else { "audio" }.into(),
        commentator_max_fps: config.room.commentator_max_fps.clamp(1, 30),
        commentator_max_bitrate: config.room.commentator_max_bitrate.clamp(50_000, 5_000_000),
        latency_preset: config.program.preset.clone(),
        viewing: "public".into(),
        feed_ladder: None,
    };
    let title = "Demo surgery (synthetic feed)".to_string();
    match st.events.event(id) {
        Some(e) if e.status != "ended" => {
            // The server's settings may have changed since: the demo follows them.
            let e = Event { policy, updated_at: now, ..e };
            st.events.save(&e, false).await
        }
        old => {
            let e = Event {
                id: id.to_string(),
                title,
                starts_at: None,
                ends_at: None,
                policy,
                status: "scheduled".into(),
                state: String::new(),
                started_at: None,
                program: ProgramState::default(),
                created_at: now,
                updated_at: now,
            };
            check_event(&e)?;
            st.events.save(&e, old.is_none()).await
        }
    }
}
