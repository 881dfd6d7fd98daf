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

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "events", include_str!("../../migrations/0001_events.sql")),
    (2, "event program and polls", include_str!("../../migrations/0002_event_program.sql")),
];

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
    /// Viewers' latency preset: `quality`, `low-latency` or `ultra-low`.
    pub latency_preset: String,
    /// `public` or `private` viewing.
    pub viewing: String,
    /// Heights of the layers the server makes of a single-layer feed (`[540,
    /// 360]`; `[]` for none); absent: the server's `[room] feed_ladder`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_ladder: Option<Vec<u32>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            commentator_uplink: "video".into(),
            commentator_max_fps: 5,
            commentator_max_bitrate: 300_000,
            latency_preset: "quality".into(),
            viewing: "public".into(),
            feed_ladder: None,
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
        if !matches!(self.latency_preset.as_str(), "quality" | "low-latency" | "ultra-low") {
            return Err(format!(
                "policy.latency_preset must be \"quality\", \"low-latency\" or \"ultra-low\", not {:?}",
                self.latency_preset
            ));
        }
        if !matches!(self.viewing.as_str(), "public" | "private") {
            return Err(format!("policy.viewing must be \"public\" or \"private\", not {:?}", self.viewing));
        }
        if let Some(l) = &self.feed_ladder {
            crate::config::check_ladder(l).map_err(|e| format!("policy.feed_ladder: {e}"))?;
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
    /// `scheduled`, `live` (started, or someone is in its room) or `ended`.
    pub status: String,
    /// What everyone is told: `scheduled` (not started), `starting` (its program
    /// is coming up), `on_air`, `off_air`, or `ended` (see [`Event::state`]).
    #[serde(skip_deserializing)]
    pub state: String,
    /// When it was started (its program runs from then until it ends), Unix seconds.
    pub started_at: Option<i64>,
    /// The operator's last switches and layout, given to its program whenever it
    /// (re)joins.
    pub program: ProgramState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// What the operator last set of an event's program (absent: never set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgramState {
    /// On or off air.
    pub on_air: Option<bool>,
    /// Name labels shown.
    pub labels: Option<bool>,
    /// Recording.
    pub recording: Option<bool>,
    /// The slate shown: `starting`, `brb`, or `off`.
    pub slate: Option<String>,
    /// The layout's name.
    pub layout: Option<String>,
    /// The main source (a participant; absent: the feed).
    pub main: Option<String>,
}

impl Event {
    fn from_row(r: &AnyRow) -> Result<Event> {
        let get = |e: sqlx::Error| e.to_string();
        let policy: String = r.try_get("policy").map_err(get)?;
        let program: Option<String> = r.try_get("program").map_err(get)?;
        Ok(Event {
            id: r.try_get("id").map_err(get)?,
            title: r.try_get("title").map_err(get)?,
            starts_at: r.try_get("starts_at").map_err(get)?,
            ends_at: r.try_get("ends_at").map_err(get)?,
            policy: serde_json::from_str(&policy).map_err(|e| e.to_string())?,
            status: r.try_get("status").map_err(get)?,
            state: String::new(),
            started_at: r.try_get("started_at").map_err(get)?,
            program: program.map(|p| serde_json::from_str(&p).unwrap_or_default()).unwrap_or_default(),
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
    /// When its holder first joined the event's room, Unix seconds.
    pub joined_at: Option<i64>,
    /// Its holder is in the room now (as of the answer).
    #[serde(default)]
    pub in_room: bool,
}

/// The events store, with what joins need at hand: events by id and the revoked
/// invitations, kept in memory and written through.
pub struct Events {
    db: Db,
    events: RwLock<HashMap<String, Event>>,
    revoked: RwLock<HashSet<String>>,
    /// Invitations whose holders have joined (recorded already).
    joined: RwLock<HashSet<String>>,
}

type Result<T> = std::result::Result<T, String>;

/// Every column of `events`, named: SQLite's connections keep a `SELECT *`'s columns
/// from when it was first prepared, and a column added since (a migration) would be
/// read past their end.
const EVENT_COLUMNS: &str = "SELECT id, title, starts_at, ends_at, policy, status, created_at, updated_at, started_at, program FROM events";

impl Events {
    /// Brings the tables up to date and loads events and revocations.
    pub async fn open(db: Db) -> anyhow::Result<Events> {
        db.apply_migrations("events_schema_migrations", MIGRATIONS).await?;
        let rows = sqlx::query(EVENT_COLUMNS).fetch_all(db.pool()).await?;
        let events = rows.iter().map(Event::from_row).collect::<Result<Vec<_>>>().map_err(anyhow::Error::msg)?;
        let revoked: Vec<String> =
            sqlx::query_scalar("SELECT id FROM invitations WHERE revoked_at IS NOT NULL").fetch_all(db.pool()).await?;
        Ok(Events {
            db,
            events: RwLock::new(events.into_iter().map(|e| (e.id.clone(), e)).collect()),
            revoked: RwLock::new(revoked.into_iter().collect()),
            joined: RwLock::default(),
        })
    }

    /// Reads the events and revocations again (a cluster: other nodes write them in
    /// the same database): new events, changes such as a start or an end, and
    /// events deleted on another node (returned, for their programs to end here).
    pub async fn reload(&self) -> anyhow::Result<Vec<String>> {
        // The events known before the read: one of them missing from the read was
        // deleted elsewhere. One made here after this point is not in the set and
        // stays, whether or not the read saw it.
        let known: HashSet<String> = self.events.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let rows = sqlx::query(EVENT_COLUMNS).fetch_all(self.db.pool()).await?;
        let events = rows.iter().map(Event::from_row).collect::<Result<Vec<_>>>().map_err(anyhow::Error::msg)?;
        let revoked: Vec<String> =
            sqlx::query_scalar("SELECT id FROM invitations WHERE revoked_at IS NOT NULL").fetch_all(self.db.pool()).await?;
        let read: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
        let mut map = self.events.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = known.into_iter().filter(|id| !read.contains(id) && map.contains_key(id)).collect();
        for id in &gone {
            map.remove(id);
        }
        map.extend(events.into_iter().map(|e| (e.id.clone(), e)));
        drop(map);
        self.revoked.write().unwrap_or_else(|e| e.into_inner()).extend(revoked);
        Ok(gone)
    }

    /// Records that invitation `jti` was revoked (on another node).
    pub fn mark_revoked(&self, jti: &str) {
        self.revoked.write().unwrap_or_else(|e| e.into_inner()).insert(jti.to_string());
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

    /// The events started and not ended (their programs run).
    pub fn all_started(&self) -> Vec<Event> {
        self.all().into_iter().filter(|e| e.started_at.is_some() && e.status != "ended").collect()
    }

    /// Every event, by scheduled start.
    pub(crate) fn all(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self.events.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
        v
    }

    async fn save(&self, e: &Event, new: bool) -> Result<()> {
        let policy = serde_json::to_string(&e.policy).map_err(|e| e.to_string())?;
        let program = serde_json::to_string(&e.program).map_err(|e| e.to_string())?;
        let sql = if new {
            "INSERT INTO events (title, starts_at, ends_at, policy, status, created_at, updated_at, started_at, program, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        } else {
            "UPDATE events SET title = $1, starts_at = $2, ends_at = $3, policy = $4, status = $5, created_at = $6, updated_at = $7, started_at = $8, program = $9 WHERE id = $10"
        };
        sqlx::query(sql)
            .bind(&e.title)
            .bind(e.starts_at)
            .bind(e.ends_at)
            .bind(policy)
            .bind(&e.status)
            .bind(e.created_at)
            .bind(e.updated_at)
            .bind(e.started_at)
            .bind(program)
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
        let rows = sqlx::query("SELECT id, event_id, name, role, created_at, expires_at, revoked_at, joined_at FROM invitations WHERE event_id = $1 ORDER BY created_at, id")
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
                    joined_at: r.try_get("joined_at").map_err(get)?,
                    in_room: false,
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

    /// Records that the holders of these invitations have joined event `event`'s
    /// room (the first time only).
    async fn mark_joined(&self, event: &str, invitations: &[String]) {
        for id in invitations {
            if self.joined.read().unwrap_or_else(|e| e.into_inner()).contains(id) {
                continue;
            }
            let r = sqlx::query("UPDATE invitations SET joined_at = $1 WHERE id = $2 AND event_id = $3 AND joined_at IS NULL")
                .bind(unix_now())
                .bind(id)
                .bind(event)
                .execute(self.db.pool())
                .await;
            match r {
                Ok(_) => {
                    self.joined.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
                }
                Err(e) => tracing::warn!(error = %e, "events: an invitation's join not recorded"),
            }
        }
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

    /// The timed metadata sent during an event, oldest first: when (Unix seconds) and
    /// what (`{"type": "message", "text"}` or `{"type": "poll", "question", …}`), as
    /// the audit log kept it. The recordings' chapters are made of it.
    pub(crate) async fn timed_metadata(&self, event: &str) -> Result<Vec<(i64, Value)>> {
        let rows = sqlx::query("SELECT at, detail FROM audit WHERE event_id = $1 AND action = 'metadata.send' ORDER BY id LIMIT 10000")
            .bind(event)
            .fetch_all(self.db.pool())
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("at").map_err(|e| e.to_string())?;
                let detail: String = r.try_get("detail").map_err(|e| e.to_string())?;
                Ok((at, serde_json::from_str(&detail).unwrap_or(Value::Null)))
            })
            .collect()
    }

    async fn audit_log(&self, event: Option<&str>, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT at, actor, actor_role, actor_scope, action, event_id, detail FROM audit WHERE ($1 = '' OR event_id = $1) ORDER BY id DESC LIMIT $2")
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

/// 404: no event with this id.
fn no_event(id: &str) -> HttpResponse {
    error(StatusCode::NOT_FOUND, &format!("no event {id:?}"))
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

pub(crate) mod api;
mod live;
mod polls;
mod program;
mod watch;

pub(crate) use api::*;
pub(crate) use live::*;
pub use polls::Voters;
pub(crate) use polls::polls;
pub(crate) use watch::*;
pub use program::{ProgramChange, change_program, tell_compositor, tell_preset};
pub(crate) use program::*;
