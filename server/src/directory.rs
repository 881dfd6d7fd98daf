//! Which node owns a room (LiveKit's way): with `redis_url` set, nodes share one
//! Redis. Each node registers and heartbeats with its load; a room is placed on one
//! node by a lease, and a client, encoder or compositor that reaches another node is
//! sent to the owner (WHIP/WHEP answer 307, the WebSocket answers `redirect`). With
//! no Redis, this node owns every room, as a single server always did.
//!
//! Keys (all under `casecast:`):
//! - `node:<id>`: the node's JSON (`url`, `rooms`, `participants`, `draining`), set
//!   with a [`NODE_TTL`] expiry and refreshed every [`HEARTBEAT`]: a node without a
//!   heartbeat for [`NODE_TTL`] is dead. `nodes` is the set of node ids.
//! - `room:<room>`: the owning node's id, taken with `SET NX PX` ([`ROOM_LEASE`]),
//!   refreshed by its owner every [`HEARTBEAT`] while it holds the room, and released
//!   by a compare-and-delete (Lua) when the room has been empty a while. A room whose
//!   owner is dead is taken over by the next join, on whichever node it arrives.
//! - `resource:<id>`: the node of a WHIP/WHEP session, so that its `DELETE` reaching
//!   another node is sent there.
//! - `revoked`: invitations revoked (`<room> <invitation id>`), read by every node
//!   each [`HEARTBEAT`]: refused everywhere, and their sessions ended where they are.
//! - `viewers:<id>`: a hash of each room's HLS viewers counted by node `<id>`,
//!   written at its heartbeat and expiring with it; every node sums the others'
//!   into what its console shows.
//!
//! A node that drains (SIGUSR1) takes no new room: a join for a room nobody owns is
//! sent to the least-loaded node that does not drain. Rooms it owns go on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// How often a node refreshes its heartbeat, its rooms' leases and the revocations.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long is dead.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How long a room stays its owner's without a refresh.
pub const ROOM_LEASE: Duration = Duration::from_secs(5);
/// How long a room is kept by its owner after it was last seen open (a client may
/// be on its way back, or redirected here and not yet joined).
const ROOM_GRACE: Duration = Duration::from_secs(30);

const PREFIX: &str = "casecast:";

/// Where a room's clients go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node owns it.
    Here,
    /// Another node does: its base URL (`http://10.0.0.2:8080`).
    There(String),
}

/// A node as the others see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id (host and listening address).
    pub id: String,
    /// Where clients are sent to reach it.
    pub url: String,
    /// Rooms open on it.
    pub rooms: usize,
    /// Participants on it.
    pub participants: usize,
    /// It takes no new rooms.
    pub draining: bool,
}

/// The room directory: local (no Redis) or shared.
#[derive(Clone, Default)]
pub struct Directory {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    redis: redis::aio::ConnectionManager,
    me: NodeInfo,
    draining: std::sync::atomic::AtomicBool,
    /// Rooms this node holds the lease of, and when each was last seen open.
    held: Mutex<HashMap<String, Instant>>,
    /// Revocations already applied here.
    revoked: Mutex<HashSet<String>>,
    /// HLS viewers counted by the other nodes, by room (as of the last heartbeat).
    remote_viewers: Mutex<HashMap<String, usize>>,
    /// When this node's last heartbeat reached Redis, Unix seconds (0: not yet).
    last_beat: std::sync::atomic::AtomicU64,
}

fn key(kind: &str, id: &str) -> String {
    format!("{PREFIX}{kind}:{id}")
}

/// Deletes `KEYS[1]` only if it still holds `ARGV[1]`: a node releases only its own
/// lease, never one another node took since.
const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// Extends `KEYS[1]` by `ARGV[2]` ms only if it still holds `ARGV[1]`.
const COMPARE_AND_EXTEND: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

type Result<T> = std::result::Result<T, String>;

fn failed(e: redis::RedisError) -> String {
    format!("the room directory (Redis) failed: {e}")
}

impl Directory {
    /// No Redis: this node owns every room.
    pub fn local() -> Directory {
        Directory::default()
    }

    /// Connects to Redis at `url` and registers this node (`id`, reachable at
    /// `node_url`).
    pub async fn connect(url: &str, id: &str, node_url: &str) -> anyhow::Result<Directory> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)));
        let redis = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Redis at the configured redis_url: {e}"))?;
        let me = NodeInfo { id: id.to_string(), url: node_url.trim_end_matches('/').to_string(), rooms: 0, participants: 0, draining: false };
        let shared = Arc::new(Shared {
            redis,
            me,
            draining: Default::default(),
            held: Mutex::default(),
            revoked: Mutex::default(),
            remote_viewers: Mutex::default(),
            last_beat: Default::default(),
        });
        let d = Directory { shared: Some(shared) };
        d.heartbeat(0, 0).await.map_err(anyhow::Error::msg)?;
        tracing::info!(node = id, url = node_url, "registered in the room directory (Redis)");
        Ok(d)
    }

    /// Whether rooms are shared with other nodes.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether Redis answers `PING` (`None` without Redis).
    pub async fn ping(&self) -> Option<Result<()>> {
        let s = self.shared.as_ref()?;
        let mut r = s.redis.clone();
        Some(redis::cmd("PING").query_async::<String>(&mut r).await.map(|_| ()).map_err(failed))
    }

    /// This node's id, when shared.
    pub fn node_id(&self) -> Option<&str> {
        self.shared.as_ref().map(|s| s.me.id.as_str())
    }

    /// Takes no new rooms from now on.
    pub fn drain(&self) {
        if let Some(s) = &self.shared {
            s.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!("draining: this node takes no new rooms; the rooms it has go on");
        }
    }

    /// Where `room`'s clients go: here (taking the room if nobody has it), or the
    /// owner's URL. Fails only when Redis does (the join is then refused: two nodes
    /// must never both hold a room).
    pub async fn place(&self, room: &str) -> Result<Placement> {
        let Some(s) = &self.shared else { return Ok(Placement::Here) };
        let mut r = s.redis.clone();
        let room_key = key("room", room);
        for _ in 0..3 {
            let owner: Option<String> = r.get(&room_key).await.map_err(failed)?;
            match owner {
                Some(id) if id == s.me.id => {
                    s.held.lock().unwrap().insert(room.to_string(), Instant::now());
                    return Ok(Placement::Here);
                }
                Some(id) => match node(&mut r, &id).await? {
                    Some(n) => return Ok(Placement::There(n.url)),
                    None => {
                        // Its owner is dead: the lease goes, and the room is placed again.
                        tracing::info!(room, dead = %id, "the room's node is gone; placing the room again");
                        let _: i64 = redis::Script::new(COMPARE_AND_DELETE).key(&room_key).arg(&id).invoke_async(&mut r).await.map_err(failed)?;
                    }
                },
                None => {
                    if s.draining.load(std::sync::atomic::Ordering::Relaxed)
                        && let Some(n) = self.least_loaded_other().await?
                    {
                        return Ok(Placement::There(n.url));
                    }
                    let taken: Option<String> = redis::cmd("SET")
                        .arg(&room_key)
                        .arg(&s.me.id)
                        .arg("NX")
                        .arg("PX")
                        .arg(ROOM_LEASE.as_millis() as u64)
                        .query_async(&mut r)
                        .await
                        .map_err(failed)?;
                    if taken.is_some() {
                        s.held.lock().unwrap().insert(room.to_string(), Instant::now());
                        tracing::info!(room, "room placed on this node");
                        return Ok(Placement::Here);
                    }
                }
            }
        }
        Err("the room directory is busy with this room; try again".into())
    }

    /// The URL of the node that holds `room`, if another live one (nothing is
    /// taken: for requests about a room, not joins).
    pub async fn owner_elsewhere(&self, room: &str) -> Option<String> {
        self.held_elsewhere(&key("room", room)).await
    }

    /// The URL of the live node other than this one whose id is stored at `k`.
    async fn held_elsewhere(&self, k: &str) -> Option<String> {
        let s = self.shared.as_ref()?;
        let mut r = s.redis.clone();
        let owner: Option<String> = r.get(k).await.ok()?;
        let owner = owner.filter(|o| *o != s.me.id)?;
        node(&mut r, &owner).await.ok().flatten().map(|n| n.url)
    }

    /// The live nodes.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let Some(s) = &self.shared else { return Ok(Vec::new()) };
        let mut r = s.redis.clone();
        let ids: Vec<String> = r.smembers(format!("{PREFIX}nodes")).await.map_err(failed)?;
        let mut out = Vec::new();
        for id in ids {
            match node(&mut r, &id).await? {
                Some(n) => out.push(n),
                None => {
                    let _: i64 = r.srem(format!("{PREFIX}nodes"), &id).await.map_err(failed)?;
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn least_loaded_other(&self) -> Result<Option<NodeInfo>> {
        let me = self.node_id().unwrap_or_default().to_string();
        Ok(self.nodes().await?.into_iter().filter(|n| n.id != me && !n.draining).min_by_key(|n| (n.participants, n.rooms)))
    }

    /// Records where a WHIP/WHEP session lives (its `DELETE` may reach another node).
    pub async fn add_resource(&self, id: &str) {
        let Some(s) = &self.shared else { return };
        let mut r = s.redis.clone();
        let set: redis::RedisResult<()> = r.set_ex(key("resource", id), &s.me.id, 86_400).await;
        if let Err(e) = set {
            tracing::warn!(error = %e, "cannot record a session in the room directory");
        }
    }

    /// Forgets a WHIP/WHEP session.
    pub async fn remove_resource(&self, id: &str) {
        let Some(s) = &self.shared else { return };
        let mut r = s.redis.clone();
        let _: redis::RedisResult<i64> = r.del(key("resource", id)).await;
    }

    /// The URL of the node a WHIP/WHEP session lives on, if another live one.
    pub async fn resource_node(&self, id: &str) -> Option<String> {
        self.held_elsewhere(&key("resource", id)).await
    }

    /// Tells every node an invitation was revoked.
    pub async fn revoke(&self, room: &str, invitation: &str) -> Result<()> {
        let Some(s) = &self.shared else { return Ok(()) };
        let mut r = s.redis.clone();
        let entry = format!("{room} {invitation}");
        s.revoked.lock().unwrap().insert(entry.clone());
        r.sadd::<_, _, i64>(format!("{PREFIX}revoked"), entry).await.map_err(failed)?;
        Ok(())
    }

    /// HLS viewers of `room` counted by the other nodes.
    pub fn remote_viewers(&self, room: &str) -> usize {
        self.shared.as_ref().and_then(|s| s.remote_viewers.lock().unwrap().get(room).copied()).unwrap_or(0)
    }

    /// One heartbeat: this node's load, the leases of the rooms it holds (`open`:
    /// rooms open here now), its HLS viewers by room, and the revocations it has not
    /// applied yet (answered).
    pub async fn beat(&self, open: &[(String, usize)], viewers: &[(String, usize)]) -> Result<Vec<(String, String)>> {
        let Some(s) = &self.shared else { return Ok(Vec::new()) };
        let participants = open.iter().map(|(_, n)| n).sum();
        self.heartbeat(open.len(), participants).await?;
        let mut r = s.redis.clone();
        // Viewers: this node's counts out, the others' in.
        let mine = key("viewers", &s.me.id);
        let mut pipe = redis::pipe();
        pipe.del(&mine).ignore();
        for (room, n) in viewers.iter().filter(|(_, n)| *n > 0) {
            pipe.hset(&mine, room, *n).ignore();
        }
        pipe.pexpire(&mine, NODE_TTL.as_millis() as i64).ignore();
        let _: () = pipe.query_async(&mut r).await.map_err(failed)?;
        let mut remote: HashMap<String, usize> = HashMap::new();
        for n in self.nodes().await?.into_iter().filter(|n| n.id != s.me.id) {
            let counts: HashMap<String, usize> = r.hgetall(key("viewers", &n.id)).await.map_err(failed)?;
            for (room, c) in counts {
                *remote.entry(room).or_default() += c;
            }
        }
        *s.remote_viewers.lock().unwrap() = remote;
        let now = Instant::now();
        let held: Vec<String> = {
            let mut held = s.held.lock().unwrap();
            for (room, _) in open {
                held.insert(room.clone(), now);
            }
            held.keys().cloned().collect()
        };
        for room in held {
            let seen = s.held.lock().unwrap().get(&room).copied().unwrap_or(now);
            let room_key = key("room", &room);
            if now.duration_since(seen) > ROOM_GRACE {
                let _: i64 = redis::Script::new(COMPARE_AND_DELETE).key(&room_key).arg(&s.me.id).invoke_async(&mut r).await.map_err(failed)?;
                s.held.lock().unwrap().remove(&room);
                tracing::info!(room, "room released (empty)");
                continue;
            }
            let kept: i64 = redis::Script::new(COMPARE_AND_EXTEND)
                .key(&room_key)
                .arg(&s.me.id)
                .arg(ROOM_LEASE.as_millis() as u64)
                .invoke_async(&mut r)
                .await
                .map_err(failed)?;
            if kept == 0 {
                // Lost (this node was unreachable longer than the lease): whoever
                // took it owns it now.
                s.held.lock().unwrap().remove(&room);
                tracing::warn!(room, "the room's lease was lost to another node");
            }
        }
        let all: Vec<String> = r.smembers(format!("{PREFIX}revoked")).await.map_err(failed)?;
        let mut applied = s.revoked.lock().unwrap();
        let fresh: Vec<(String, String)> = all
            .into_iter()
            .filter(|e| applied.insert(e.clone()))
            .filter_map(|e| e.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
        Ok(fresh)
    }

    async fn heartbeat(&self, rooms: usize, participants: usize) -> Result<()> {
        let Some(s) = &self.shared else { return Ok(()) };
        let mut r = s.redis.clone();
        let info = NodeInfo { rooms, participants, draining: s.draining.load(std::sync::atomic::Ordering::Relaxed), ..s.me.clone() };
        let json = serde_json::to_string(&info).unwrap_or_default();
        let _: () = redis::cmd("SET").arg(key("node", &s.me.id)).arg(json).arg("PX").arg(NODE_TTL.as_millis() as u64).query_async(&mut r).await.map_err(failed)?;
        let _: i64 = r.sadd(format!("{PREFIX}nodes"), &s.me.id).await.map_err(failed)?;
        s.last_beat.store(casecast_ingest::store::unix_now() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// When this node's last heartbeat reached Redis, Unix seconds (`None` without
    /// Redis, 0 before the first).
    pub fn last_heartbeat(&self) -> Option<u64> {
        self.shared.as_ref().map(|s| s.last_beat.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Leaves the directory at a clean stop: the node and its rooms' leases go at once
    /// (the rooms are placed again on their next join, elsewhere).
    pub async fn leave(&self) {
        let Some(s) = &self.shared else { return };
        let mut r = s.redis.clone();
        let rooms: Vec<String> = s.held.lock().unwrap().drain().map(|(k, _)| k).collect();
        for room in rooms {
            let _: redis::RedisResult<i64> = redis::Script::new(COMPARE_AND_DELETE).key(key("room", &room)).arg(&s.me.id).invoke_async(&mut r).await;
        }
        let _: redis::RedisResult<i64> = r.del(key("node", &s.me.id)).await;
        let _: redis::RedisResult<i64> = r.srem(format!("{PREFIX}nodes"), &s.me.id).await;
    }
}

/// Node `id`, if alive.
async fn node(r: &mut redis::aio::ConnectionManager, id: &str) -> Result<Option<NodeInfo>> {
    let json: Option<String> = r.get(key("node", id)).await.map_err(failed)?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Makes an operator's request about a room on the node that holds it (a cluster),
/// with the same method, path, token and body, and answers what that node answers:
/// `None` when the room is here or nowhere else. Holds, removals and the list of
/// participants live with the room.
pub async fn forward_to_owner(st: &crate::state::AppState, req: &actix_web::HttpRequest, room: &str, body: &[u8]) -> Option<actix_web::HttpResponse> {
    if !st.directory.is_shared() || st.sfu.is_open(room) {
        return None;
    }
    let base = st.directory.owner_elsewhere(room).await?;
    let url = format!("{base}{}", req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(req.path()));
    let method = req.method().as_str().to_string();
    let auth = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let ctype = req.headers().get(actix_web::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let answer = ask(url, method, auth, ctype, body.to_vec()).await;
    let unreachable = |why: String| {
        tracing::warn!(room, error = %why, "cannot reach the room's node");
        crate::http::json_error(actix_web::http::StatusCode::BAD_GATEWAY, "the node that holds this room does not answer; try again in a few seconds")
    };
    Some(match answer {
        Ok((status, ct, bytes)) => actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY))
            .content_type(ct)
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .body(bytes),
        Err(e) => unreachable(e),
    })
}

/// The participants of a room another node holds, as that node lists them (the
/// console's live view open on a node that does not hold the room). `None` when the
/// room is here, held nowhere else, or its node does not answer.
pub async fn participants_elsewhere(st: &crate::state::AppState, room: &str, token: &str) -> Option<serde_json::Value> {
    // (A room's name goes into the path as it is: only names a room can have.)
    let plain = room.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !st.directory.is_shared() || !plain || st.sfu.is_open(room) {
        return None;
    }
    let base = st.directory.owner_elsewhere(room).await?;
    let url = format!("{base}/api/events/{room}/participants");
    match ask(url, "GET".into(), Some(format!("Bearer {token}")), None, Vec::new()).await {
        Ok((200, _, bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes).ok().filter(|v| v.is_array()),
        Ok((status, _, _)) => {
            tracing::debug!(room, status, "the room's node did not list its participants");
            None
        }
        Err(e) => {
            tracing::debug!(room, error = %e, "cannot reach the room's node");
            None
        }
    }
}

/// One HTTP request to another node (blocking client, off the event loop; no
/// redirects followed; answers up to 16 MiB): its status, content type and body.
async fn ask(url: String, method: String, auth: Option<String>, ctype: Option<String>, body: Vec<u8>) -> std::result::Result<(u16, String, Vec<u8>), String> {
    let answer = tokio::task::spawn_blocking(move || -> std::result::Result<(u16, String, Vec<u8>), String> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).http_status_as_error(false).max_redirects(0).build().into();
        let mut rq = ureq::http::Request::builder().method(method.as_str()).uri(&url);
        if let Some(a) = &auth {
            rq = rq.header("Authorization", a);
        }
        if let Some(c) = &ctype {
            rq = rq.header("Content-Type", c);
        }
        let rq = rq.body(body).map_err(|e| e.to_string())?;
        let mut r = agent.run(rq).map_err(|e| e.to_string())?;
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
        let bytes = r.body_mut().with_config().limit(16 << 20).read_to_vec().map_err(|e| e.to_string())?;
        Ok((r.status().as_u16(), ct, bytes))
    })
    .await;
    answer.map_err(|e| e.to_string()).and_then(|r| r)
}
