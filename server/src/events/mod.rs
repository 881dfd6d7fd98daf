//! Events and invitations, as the distribution center's operators run them: an event
//! is a room with a title, a schedule and a policy; an invitation is a token for one
//! person, which can be revoked; every operator action goes into the audit log. Rows
//! in the server's database (the one the cases use: SQLite by default, PostgreSQL by
//! configuration), so a restart keeps them.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use casecast_actors::RoomEvent;
use casecast_ingest::store::{Db, unix_now};
use casecast_signaling::{Claims, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::state::AppState;

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "events", include_str!("../migrations/0001_events.sql"))];

/// What an event allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// `video` (low-FPS camera and microphone) or `audio` (microphone only).
    pub commentator_uplink: String,
    /// Commentators' video frame-rate ceiling.
    pub commentator_max_fps: u32,
    /// Commentators' video bitrate ceiling, bits/s.
    pub commentator_max_bitrate: u32,
    /// Viewers' latency preset: `quality` or `low-latency`.
    pub latency_preset: String,
    /// `public` or `private` viewing.
    pub viewing: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            commentator_uplink: "video".into(),
            commentator_max_fps: 5,
            commentator_max_bitrate: 300_000,
            latency_preset: "quality".into(),
            viewing: "public".into(),
        }
    }
}

impl Policy {
    fn check(&self) -> Result<()> {
        if !matches!(self.commentator_uplink.as_str(), "video" | "audio") {
            return Err(format!("policy.commentator_uplink must be \"video\" or \"audio\", not {:?}", self.commentator_uplink));
        }
        if !(1..=30).contains(&self.commentator_max_fps) {
            return Err("policy.commentator_max_fps must be 1 to 30".into());
        }
        if !(50_000..=5_000_000).contains(&self.commentator_max_bitrate) {
            return Err("policy.commentator_max_bitrate must be 50000 to 5000000 bits/s".into());
        }
        if !matches!(self.latency_preset.as_str(), "quality" | "low-latency") {
            return Err(format!("policy.latency_preset must be \"quality\" or \"low-latency\", not {:?}", self.latency_preset));
        }
        if !matches!(self.viewing.as_str(), "public" | "private") {
            return Err(format!("policy.viewing must be \"public\" or \"private\", not {:?}", self.viewing));
        }
        Ok(())
    }
}

/// An event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its id, which is its room's id (in links and tokens).
    pub id: String,
    /// Title.
    pub title: String,
    /// Scheduled start, Unix seconds.
    pub starts_at: Option<i64>,
    /// Scheduled end, Unix seconds.
    pub ends_at: Option<i64>,
    /// What it allows.
    pub policy: Policy,
    /// `scheduled` or `ended`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Event {
    fn from_row(r: &AnyRow) -> Result<Event> {
        let get = |e: sqlx::Error| e.to_string();
        let policy: String = r.try_get("policy").map_err(get)?;
        Ok(Event {
            id: r.try_get("id").map_err(get)?,
            title: r.try_get("title").map_err(get)?,
            starts_at: r.try_get("starts_at").map_err(get)?,
            ends_at: r.try_get("ends_at").map_err(get)?,
            policy: serde_json::from_str(&policy).map_err(|e| e.to_string())?,
            status: r.try_get("status").map_err(get)?,
            created_at: r.try_get("created_at").map_err(get)?,
            updated_at: r.try_get("updated_at").map_err(get)?,
        })
    }
}

/// An invitation: one person's token for an event.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    /// Its id (the token's `jti`).
    pub id: String,
    /// The event.
    pub event_id: String,
    /// Who it is for (shown to others).
    pub name: String,
    /// The role it grants.
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was revoked, Unix seconds.
    pub revoked_at: Option<i64>,
}

/// The events store, with what joins need at hand: events by id and the revoked
/// invitations, kept in memory and written through.
pub struct Events {
    db: Db,
    events: RwLock<HashMap<String, Event>>,
    revoked: RwLock<HashSet<String>>,
}

type Result<T> = std::result::Result<T, String>;

impl Events {
    /// Brings the tables up to date and loads events and revocations.
    pub async fn open(db: Db) -> anyhow::Result<Events> {
        db.apply_migrations("events_schema_migrations", MIGRATIONS).await?;
        let rows = sqlx::query("SELECT * FROM events").fetch_all(db.pool()).await?;
        let events = rows.iter().map(Event::from_row).collect::<Result<Vec<_>>>().map_err(anyhow::Error::msg)?;
        let revoked: Vec<String> =
            sqlx::query_scalar("SELECT id FROM invitations WHERE revoked_at IS NOT NULL").fetch_all(db.pool()).await?;
        Ok(Events {
            db,
            events: RwLock::new(events.into_iter().map(|e| (e.id.clone(), e)).collect()),
            revoked: RwLock::new(revoked.into_iter().collect()),
        })
    }

    /// Whether the invitation `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).contains(jti)
    }

    /// Whether room `id` is a private event's (its HLS needs a playback token).
    pub fn is_private(&self, id: &str) -> bool {
        self.events.read().unwrap_or_else(|e| e.into_inner()).get(id).is_some_and(|e| e.policy.viewing == "private")
    }

    /// Whether room `id` is an event that has ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.events.read().unwrap_or_else(|e| e.into_inner()).get(id).is_some_and(|e| e.status == "ended")
    }

    /// The event of room `id`, if it is one.
    pub fn event(&self, id: &str) -> Option<Event> {
        self.events.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn all(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self.events.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
        v
    }

    async fn save(&self, e: &Event, new: bool) -> Result<()> {
        let policy = serde_json::to_string(&e.policy).map_err(|e| e.to_string())?;
        let sql = if new {
            "INSERT INTO events (title, starts_at, ends_at, policy, status, created_at, updated_at, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        } else {
            "UPDATE events SET title = $1, starts_at = $2, ends_at = $3, policy = $4, status = $5, created_at = $6, updated_at = $7 WHERE id = $8"
        };
        sqlx::query(sql)
            .bind(&e.title)
            .bind(e.starts_at)
            .bind(e.ends_at)
            .bind(policy)
            .bind(&e.status)
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(&e.id)
            .execute(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        self.events.write().unwrap_or_else(|e| e.into_inner()).insert(e.id.clone(), e.clone());
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let mut tx = self.db.pool().begin().await.map_err(|e| e.to_string())?;
        // Its invitations stop working: they are revoked before the rows go.
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM invitations WHERE event_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("UPDATE invitations SET revoked_at = $1 WHERE event_id = $2 AND revoked_at IS NULL")
            .bind(unix_now())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("DELETE FROM events WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        self.revoked.write().unwrap_or_else(|e| e.into_inner()).extend(ids);
        self.events.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        Ok(())
    }

    async fn invitations(&self, event: &str) -> Result<Vec<Invitation>> {
        let rows = sqlx::query("SELECT * FROM invitations WHERE event_id = $1 ORDER BY created_at, id")
            .bind(event)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| {
                let get = |e: sqlx::Error| e.to_string();
                Ok(Invitation {
                    id: r.try_get("id").map_err(get)?,
                    event_id: r.try_get("event_id").map_err(get)?,
                    name: r.try_get("name").map_err(get)?,
                    role: r.try_get("role").map_err(get)?,
                    created_at: r.try_get("created_at").map_err(get)?,
                    expires_at: r.try_get("expires_at").map_err(get)?,
                    revoked_at: r.try_get("revoked_at").map_err(get)?,
                })
            })
            .collect()
    }

    async fn add_invitation(&self, i: &Invitation) -> Result<()> {
        sqlx::query("INSERT INTO invitations (id, event_id, name, role, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)")
            .bind(&i.id)
            .bind(&i.event_id)
            .bind(&i.name)
            .bind(&i.role)
            .bind(i.created_at)
            .bind(i.expires_at)
            .execute(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn revoke(&self, event: &str, id: &str) -> Result<bool> {
        let n = sqlx::query("UPDATE invitations SET revoked_at = $1 WHERE id = $2 AND event_id = $3 AND revoked_at IS NULL")
            .bind(unix_now())
            .bind(id)
            .bind(event)
            .execute(self.db.pool())
            .await
            .map_err(|e| e.to_string())?
            .rows_affected();
        if n == 1 {
            self.revoked.write().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
        }
        Ok(n == 1)
    }

    /// Records an operator's action.
    async fn audit(&self, who: &Claims, action: &str, event: Option<&str>, detail: Value) {
        // Ids sort as the actions happened (nanoseconds, then a random tail).
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let id = format!("{nanos:024}-{}", &crate::state::random_id()[..8]);
        let r = sqlx::query("INSERT INTO audit (id, at, actor, actor_role, actor_scope, action, event_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id)
            .bind(unix_now())
            .bind(&who.name)
            .bind(who.role.as_str())
            .bind(&who.room)
            .bind(action)
            .bind(event)
            .bind(detail.to_string())
            .execute(self.db.pool())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
        tracing::info!(actor = %who.name, action, event = event.unwrap_or(""), "operator action");
    }

    async fn audit_log(&self, event: Option<&str>, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT * FROM audit WHERE ($1 = '' OR event_id = $1) ORDER BY id DESC LIMIT $2")
            .bind(event.unwrap_or(""))
            .bind(limit)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| {
                let get = |e: sqlx::Error| e.to_string();
                let detail: String = r.try_get("detail").map_err(get)?;
                Ok(json!({
                    "at": r.try_get::<i64, _>("at").map_err(get)?,
                    "actor": r.try_get::<String, _>("actor").map_err(get)?,
                    "actor_role": r.try_get::<String, _>("actor_role").map_err(get)?,
                    "actor_scope": r.try_get::<String, _>("actor_scope").map_err(get)?,
                    "action": r.try_get::<String, _>("action").map_err(get)?,
                    "event_id": r.try_get::<Option<String>, _>("event_id").map_err(get)?,
                    "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
                }))
            })
            .collect()
    }
}

use crate::http::{json_error as error, json_internal as internal};

/// The scope of all events: an operator token for room `*` runs the distribution
/// center; one for a room runs that event only.
pub const ALL_EVENTS: &str = "*";

/// An operator's token (any scope).
#[allow(clippy::result_large_err)]
fn operator_claims(req: &HttpRequest, st: &AppState) -> std::result::Result<Claims, HttpResponse> {
    let Some(token) = crate::http::request_token(req, false) else {
        return Err(error(StatusCode::UNAUTHORIZED, "an operator token is required (Authorization: Bearer <token>)"));
    };
    let claims = st.verify(&token).map_err(|e| error(e.status(), e.message()))?;
    if claims.role != Role::Operator {
        return Err(error(StatusCode::FORBIDDEN, &format!("role {} may not run events; an operator token is needed", claims.role.as_str())));
    }
    Ok(claims)
}

/// An operator's token, for `event` (or for all events when `None`).
#[allow(clippy::result_large_err)]
fn operator(req: &HttpRequest, st: &AppState, event: Option<&str>) -> std::result::Result<Claims, HttpResponse> {
    if let Some(e) = event
        && !valid_id(e)
    {
        return Err(error(StatusCode::NOT_FOUND, "no such event (ids are 1 to 64 letters, digits, - or _)"));
    }
    let claims = operator_claims(req, st)?;
    match event {
        _ if claims.room == ALL_EVENTS => Ok(claims),
        Some(e) if claims.room == e => Ok(claims),
        Some(e) => Err(error(StatusCode::FORBIDDEN, &format!("this token is for event {:?}, not {e:?}", claims.room))),
        None => Err(error(StatusCode::FORBIDDEN, "this needs an operator token for all events (room \"*\")")),
    }
}

macro_rules! op {
    ($req:expr, $st:expr, $event:expr) => {
        match operator(&$req, &$st, $event) {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

/// A JSON body, or a 400 that says what is wrong with it.
#[allow(clippy::result_large_err)]
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, HttpResponse> {
    serde_json::from_slice(bytes).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent {
    id: Option<String>,
    title: String,
    starts_at: Option<i64>,
    ends_at: Option<i64>,
    #[serde(default)]
    policy: Policy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventChange {
    title: Option<String>,
    starts_at: Option<Option<i64>>,
    ends_at: Option<Option<i64>>,
    policy: Option<Policy>,
}

fn check_event(e: &Event) -> Result<()> {
    if e.title.trim().is_empty() || e.title.chars().count() > 200 {
        return Err("title must be 1 to 200 characters".into());
    }
    if let (Some(a), Some(b)) = (e.starts_at, e.ends_at)
        && b <= a
    {
        return Err("ends_at must be after starts_at".into());
    }
    e.policy.check()
}

/// A room id: letters, digits, `-` and `_`, 1 to 64.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

fn slug(title: &str) -> String {
    let mut s: String = title.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let s: String = s.chars().take(40).collect();
    let suffix = &crate::state::random_id()[..6];
    if s.is_empty() { format!("event-{suffix}") } else { format!("{s}-{suffix}") }
}

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

/// An event as it is now: `live` while its room is open (a scheduled event someone
/// is in), else as stored.
fn as_now(st: &AppState, mut e: Event) -> Event {
    if e.status == "scheduled" && st.sfu.is_open(&e.id) {
        e.status = "live".into();
    }
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
    let e = Event { id, title: new.title.trim().to_string(), starts_at: new.starts_at, ends_at: new.ends_at, policy: new.policy, status: "scheduled".into(), created_at: now, updated_at: now };
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
    HttpResponse::Created().insert_header((header::LOCATION, format!("/api/events/{}", e.id))).json(e)
}

fn no_event(id: &str) -> HttpResponse {
    error(StatusCode::NOT_FOUND, &format!("no event {id:?}"))
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
    HttpResponse::Ok().json(e)
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
    if let Some(aws) = st.distribution.aws() {
        // Harvested (if configured) and torn down in the background.
        aws.end(&e.id);
    }
    HttpResponse::Ok().json(e)
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
    match st.events.invitations(&id).await {
        Ok(list) => HttpResponse::Ok().json(list),
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
    };
    if let Err(m) = st.events.add_invitation(&inv).await {
        return internal(m);
    }
    let token = st.key.sign(&Claims { room: id.to_string(), role: new.role, name, iat: now, exp: now + ttl * 3600, jti: Some(inv.id.clone()) });
    st.events.audit(&who, "invitation.create", Some(&id), json!({ "invitation": inv.id, "name": inv.name, "role": inv.role })).await;
    let mut out = serde_json::to_value(&inv).unwrap_or(Value::Null);
    out["token"] = json!(token);
    out["url"] = match new.role {
        Role::Encoder => json!(format!("/whip/{id}")),
        Role::Viewer => json!(format!("/watch/{id}")),
        _ => json!(format!("/room/{id}?token={token}")),
    };
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

/// A change of the program: any of its switches, and its layout with the main
/// source.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProgramChange {
    /// On or off air.
    pub on_air: Option<bool>,
    /// Name labels shown.
    pub labels: Option<bool>,
    /// Recording.
    pub recording: Option<bool>,
    /// The layout's name.
    pub layout: Option<String>,
    /// The main source: absent, the feed; with `layout` only.
    #[serde(default, deserialize_with = "present")]
    pub main: Option<Option<String>>,
}

/// Tells a field given as `null` from one left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /api/events/{id}/program` `{"on_air", "labels", "recording", "layout",
/// "main"}` (any of them): the program's switches (on or off air, name labels,
/// recording) and its layout with the main source; told to the compositor through
/// the room, each change audited.
pub(crate) async fn program(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let change: ProgramChange = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match change_program(&st, &who, &id, change).await {
        Ok(done) => HttpResponse::Accepted().json(done),
        Err((status, message)) => error(status, &message),
    }
}

/// Carries out an operator's change of a room's program: checked, told to its
/// compositor, and audited, whichever door it came through. Answers what changed.
pub async fn change_program(st: &AppState, who: &Claims, room: &str, change: ProgramChange) -> std::result::Result<Value, (StatusCode, String)> {
    let ProgramChange { on_air, labels, recording, layout, main } = change;
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    if on_air.is_none() && labels.is_none() && recording.is_none() && layout.is_none() {
        return Err(bad("nothing to change: give on_air, labels, recording or layout"));
    }
    if main.is_some() && layout.is_none() {
        return Err(bad("main goes with layout: give both"));
    }
    let main = main.flatten();
    let layout_order = layout.as_deref().map(|l| layout_order(l, main.clone())).transpose().map_err(|e| bad(&e))?;
    // One order per kind of change, only for what changes.
    let mut orders = Vec::new();
    if on_air.is_some() || labels.is_some() || recording.is_some() {
        orders.push(RoomEvent::ProgramSwitches { on_air, labels, recording });
    }
    orders.extend(layout_order);
    let mut told = None;
    for order in orders {
        told = st.sfu.to_operators(room, order).await;
        if told.is_none_or(|n| n == 0) {
            break;
        }
    }
    compositor_told(told, room)?;
    let switch = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    let changes = [
        on_air.map(|on| (switch(on, "program.on_air", "program.off_air"), Value::Null)),
        labels.map(|on| (switch(on, "program.labels_on", "program.labels_off"), Value::Null)),
        recording.map(|on| (switch(on, "program.recording_on", "program.recording_off"), Value::Null)),
        layout.as_ref().map(|l| ("program.layout", json!({ "layout": l, "main": main }))),
    ];
    for (action, detail) in changes.into_iter().flatten() {
        st.events.audit(who, action, Some(room), detail).await;
    }
    if let (Some(aws), Some(live)) = (st.distribution.aws(), on_air) {
        // MediaLive starts (or stops) in the background; the distribution says how far.
        let preset = st.events.event(room).map_or_else(|| "quality".to_string(), |e| e.policy.latency_preset);
        aws.set_live(room, live, &preset);
    }
    let mut out = serde_json::Map::new();
    for (k, v) in [("on_air", on_air), ("labels", labels), ("recording", recording)] {
        if let Some(v) = v {
            out.insert(k.into(), v.into());
        }
    }
    if let Some(l) = layout {
        out.insert("layout".into(), l.into());
        out.insert("main".into(), main.into());
    }
    Ok(Value::Object(out))
}

/// The order that sets the program's layout and main source (`None`: the feed),
/// checked.
fn layout_order(layout: &str, main: Option<String>) -> std::result::Result<RoomEvent, String> {
    if main.as_ref().is_some_and(|m| m.is_empty() || m.len() > 64) {
        return Err("main: not a participant id".into());
    }
    layout.parse::<casecast_actors::program::LayoutKind>()?;
    Ok(RoomEvent::ProgramLayout { layout: layout.to_string(), main })
}

/// What telling a room's compositor came to: not open (404), no compositor in it
/// (409), or told.
fn compositor_told(told: Option<usize>, room: &str) -> std::result::Result<(), (StatusCode, String)> {
    match told {
        None => Err((StatusCode::NOT_FOUND, format!("the room {room:?} is not open (no program yet)"))),
        Some(0) => Err((StatusCode::CONFLICT, "no compositor is in the room".into())),
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Poll {
    question: String,
    options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    text: Option<String>,
    poll: Option<Poll>,
}

/// `POST /api/events/{id}/metadata` `{"text"}` or `{"poll": {"question", "options"}}`:
/// timed metadata for viewers, carried in the program's HLS segments as ID3 (as
/// Amazon IVS's Timed Metadata), shown by the watch page when it plays there.
pub(crate) async fn metadata(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let m: Metadata = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let msg_id = crate::state::random_id()[..12].to_string();
    let data = match (m.text, m.poll) {
        (Some(t), None) if !t.trim().is_empty() && t.chars().count() <= 500 => json!({ "type": "message", "id": msg_id, "text": t.trim() }),
        (None, Some(p))
            if !p.question.trim().is_empty()
                && p.question.chars().count() <= 300
                && (2..=6).contains(&p.options.len())
                && p.options.iter().all(|o| !o.trim().is_empty() && o.chars().count() <= 100) =>
        {
            json!({ "type": "poll", "id": msg_id, "question": p.question.trim(), "options": p.options.iter().map(|o| o.trim()).collect::<Vec<_>>() })
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "send {\"text\": 1 to 500 characters} or {\"poll\": {\"question\": 1 to 300 characters, \"options\": 2 to 6 of 1 to 100}}",
            );
        }
    };
    match compositor_told(st.sfu.to_operators(&id, RoomEvent::ProgramMetadata(data.to_string())).await, &id) {
        Err((status, message)) => error(status, &message),
        Ok(()) => {
            st.events.audit(&who, "metadata.send", Some(&id), data.clone()).await;
            if let Some(aws) = st.distribution.aws() {
                // Also into MediaPackage's segments, through the channel's schedule.
                aws.metadata(&id, &msg_id, &data.to_string());
            }
            HttpResponse::Accepted().json(data)
        }
    }
}

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
                    let participants = st.sfu.participants(&id).await.unwrap_or_default();
                    let distribution = distribution_of(&st, &id);
                    let snapshot = json!({ "type": "snapshot", "event": id, "participants": participants, "distribution": distribution });
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
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(st.sfu.participants(&id).await.unwrap_or_default())
}

/// `POST /api/events/{id}/participants/{participant}/remove`: ends a participant's
/// session (their page says they were removed; the token still works unless its
/// invitation is revoked too).
pub(crate) async fn remove(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let (id, participant) = p.into_inner();
    let who = op!(req, st, Some(&id));
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
    let m: MuteChange = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let kind = match m.kind.as_str() {
        "audio" => casecast_actors::MediaKind::Audio,
        "video" => casecast_actors::MediaKind::Video,
        other => return error(StatusCode::BAD_REQUEST, &format!("kind {other:?}: use audio or video")),
    };
    if !st.sfu.hold(&id, &participant, kind, m.muted).await {
        return error(StatusCode::NOT_FOUND, "no such participant in this event's room");
    }
    let action = if m.muted { "participant.mute" } else { "participant.unmute" };
    st.events.audit(&who, action, Some(&id), json!({ "participant": participant, "kind": m.kind })).await;
    HttpResponse::NoContent().finish()
}

/// Tells the compositors in an event's room the event's latency preset (nothing if
/// the room has no event or is not open).
pub async fn tell_preset(st: &AppState, room: &str) {
    if let Some(e) = st.events.event(room) {
        st.sfu.to_operators(room, RoomEvent::ProgramPreset(e.policy.latency_preset.clone())).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputChoice {
    input: String,
}

/// `POST /api/events/{id}/distribution/input` `{"input": "primary" | "backup"}`: the
/// MediaLive channel takes that input now (an input switch in its schedule).
pub(crate) async fn switch_input(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let choice: InputChoice = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let backup = match choice.input.as_str() {
        "primary" => false,
        "backup" => true,
        other => return error(StatusCode::BAD_REQUEST, &format!("input {other:?}: use primary or backup")),
    };
    let Some(aws) = st.distribution.aws() else {
        return error(StatusCode::CONFLICT, "the distribution is local: there are no inputs to switch (distribution = \"aws\" has)");
    };
    if let Err(m) = aws.switch_input(&id, backup) {
        return error(StatusCode::CONFLICT, &m);
    }
    st.events.audit(&who, "distribution.input", Some(&id), json!({ "input": choice.input })).await;
    HttpResponse::Accepted().json(json!({ "input": choice.input }))
}

/// `GET /api/events/{id}/distribution`: each output's state (from the program's
/// metrics: local HLS, RTMP pushes) and the concurrent HLS viewers.
pub(crate) async fn distribution(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(distribution_of(&st, &id))
}

fn distribution_of(st: &AppState, id: &str) -> Value {
    // What the compositor reports through the metrics: each output's state and the
    // operator's switches as it has them (none until a compositor reports).
    let mut outputs = Vec::new();
    let mut program = serde_json::Map::new();
    for family in st.sfu.metrics().registry.gather() {
        let name = family.name();
        if name != "casecast_program_output_up" && name != "casecast_program_switch" {
            continue;
        }
        for m in family.get_metric() {
            let label = |n: &str| m.get_label().iter().find(|l| l.name() == n).map(|l| l.value().to_string()).unwrap_or_default();
            if label("room") != id {
                continue;
            }
            let on = m.get_gauge().get_value() >= 1.0;
            if name == "casecast_program_switch" {
                program.insert(label("switch"), on.into());
            } else {
                outputs.push(json!({ "output": label("output"), "up": on }));
            }
        }
    }
    let playlist = st.hls_root.join(id).join("index.m3u8");
    json!({
        "event": id,
        "hls": { "url": format!("/hls/{id}/index.m3u8"), "playlist": playlist.exists() },
        "outputs": outputs,
        "program": if program.is_empty() { Value::Null } else { Value::Object(program) },
        "viewers": st.viewers.count(id),
        "kind": if st.distribution.aws().is_some() { "aws" } else { "local" },
        "aws": st.distribution.aws().map(|a| serde_json::to_value(a.state(id).unwrap_or_default()).unwrap_or(Value::Null)),
    })
}

/// `GET /console?token=…`: the distribution center's console (the page asks the API
/// with the token; the page itself is public).
pub(crate) async fn console_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../web/console.html"))
}

/// `GET /api/openapi.json` (any operator token): this API's OpenAPI document.
pub(crate) async fn openapi(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    if let Err(r) = operator_claims(&req, &st) {
        return r;
    }
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}

/// Query strings that do not parse get this API's JSON error.
pub fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        let msg = format!("invalid query string: {e}");
        actix_web::error::InternalError::from_response(e, error(StatusCode::BAD_REQUEST, &msg)).into()
    })
}
