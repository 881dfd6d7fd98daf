//! The SFU handle: the media workers (threads with their sockets, `worker`), the
//! ICE-TCP listener and the room registry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use crate::ids::ParticipantId;
use crate::metrics::Metrics;
use crate::participant::{ParticipantActor, ParticipantHandle, ParticipantOptions, Wiring};
use crate::room::{Join, MemberCount, RoomActor, RoomEntry, RoomError, RoomPolicy, RoomRegistry};
use crate::participant::SharedRouter;
use crate::router::Router;
use crate::tcp::TcpMux;
use crate::worker::{MediaWorker, least_loaded};
use crate::{Member, PeerInfo};

/// How the SFU runs.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the media sockets bind: worker `i` on this port plus `i`.
    pub udp_bind: SocketAddr,
    /// Media worker threads (at least 1), each with its own UDP socket(s).
    pub media_workers: usize,
    /// Batched UDP system calls (`sendmmsg`, `recvmmsg`).
    pub udp_batching: bool,
    /// Addresses advertised as ICE host candidates (port taken from the socket).
    pub advertise: Vec<std::net::IpAddr>,
    /// A participant with no media connection after this long is ended.
    pub connect_timeout: Duration,
    /// ICE-TCP (passive candidates beside the UDP ones) on this port of the UDP
    /// bind address: `Some(0)` for the UDP port's own number (skipped with a
    /// warning if that TCP port is taken), `None` for no ICE-TCP.
    pub ice_tcp_port: Option<u16>,
}

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The room refused.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// The media arbiter is gone (server shutting down).
    #[error("the media service is shutting down")]
    Unavailable,
}

struct Inner {
    workers: Vec<MediaWorker>,
    tcp: Option<Arc<TcpMux>>,
    candidates: Vec<SocketAddr>,
    rooms: Arc<RoomRegistry>,
    metrics: Metrics,
    connect_timeout: Duration,
    dtls_cert: str0m::config::DtlsCert,
}

/// A cheap-to-clone handle on the media plane.
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

impl Sfu {
    /// Binds the media sockets and starts the media workers. Call inside an actix System.
    pub fn start(config: SfuConfig, metrics: Metrics) -> std::io::Result<Sfu> {
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("cannot generate the DTLS certificate"))?;
        // Worker i's socket(s) on the media port plus i (any free port each with 0).
        let mut sockets = Vec::new();
        for i in 0..config.media_workers.max(1) {
            let base = config.udp_bind.port();
            let port = if base == 0 { Some(0) } else { u16::try_from(i).ok().and_then(|i| base.checked_add(i)) };
            let Some(port) = port else {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("media worker {i}: no UDP port above {base}")));
            };
            let udp = crate::udp::UdpMux::bind(SocketAddr::new(config.udp_bind.ip(), port), &config.advertise, metrics.clone(), config.udp_batching).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("media worker {i}: cannot bind UDP port {port}: {e} (worker i takes udp_bind's port + i: free that range, or set media_workers)"),
                )
            })?;
            sockets.push(udp);
        }
        let candidates: Vec<SocketAddr> = sockets.iter().flat_map(|u| u.candidates()).collect();
        let tcp = match config.ice_tcp_port {
            None => None,
            Some(port) => {
                let same = port == 0;
                let port = if same { candidates.first().map(|c| c.port()).unwrap_or(0) } else { port };
                match TcpMux::bind(SocketAddr::new(config.udp_bind.ip(), port), &config.advertise, metrics.clone()) {
                    Ok(t) => Some(t),
                    Err(e) if same => {
                        tracing::warn!(port, error = %e, "no ICE-TCP: the media port's number is taken for TCP (set ice_tcp_port)");
                        None
                    }
                    Err(e) => return Err(std::io::Error::new(e.kind(), format!("cannot listen for ICE-TCP on port {port}: {e}"))),
                }
            }
        };
        let workers: Vec<MediaWorker> = sockets.into_iter().enumerate().map(|(i, udp)| MediaWorker::start(i, udp, tcp.clone(), &metrics)).collect();
        if let Some(t) = tcp.clone() {
            workers[0].arbiter.spawn(async move {
                if let Err(e) = t.run().await {
                    tracing::error!(error = %e, "ICE-TCP listener failed");
                }
            });
        }
        let udp: Vec<SocketAddr> = workers.iter().flat_map(|w| w.transports.udp().local_addrs()).collect();
        tracing::info!(workers = workers.len(), ?udp, ice_tcp = ?tcp.as_ref().and_then(|t| t.local_addr()), "media sockets bound");
        Ok(Sfu {
            inner: Arc::new(Inner {
                workers,
                tcp,
                candidates,
                rooms: Arc::new(Mutex::new(HashMap::new())),
                metrics,
                connect_timeout: config.connect_timeout,
                dtls_cert,
            }),
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The media sockets' bound addresses, worker by worker.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.inner.workers.iter().flat_map(|w| w.transports.udp().local_addrs()).collect()
    }

    /// The ICE-TCP listener's bound address, if it listens.
    pub fn ice_tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp.as_ref().and_then(|t| t.local_addr())
    }

    /// How many media workers run.
    pub fn media_workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// How many media workers answer within `limit`: each worker's thread runs a
    /// task that answers, so a worker whose thread died or is stuck does not.
    pub async fn media_workers_answering(&self, limit: std::time::Duration) -> usize {
        let answers = self.inner.workers.iter().filter_map(|w| {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            w.arbiter.spawn(async move {
                let _ = tx.send(());
            }).then_some(rx)
        });
        let answers: Vec<_> = answers.collect();
        let all = futures_util::future::join_all(answers.into_iter().map(|rx| tokio::time::timeout(limit, rx)));
        all.await.into_iter().filter(|r| matches!(r, Ok(Ok(())))).count()
    }

    /// The media worker an open room lives on.
    pub fn room_worker(&self, room: &str) -> Option<usize> {
        self.inner.rooms.lock().unwrap().get(room).filter(|e| e.addr.connected()).map(|e| e.worker)
    }

    /// The ICE candidates given to peers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.inner.candidates
    }

    /// The actor of an open room.
    fn room_addr(&self, room: &str) -> Option<Addr<RoomActor>> {
        self.inner.rooms.lock().unwrap().get(room).map(|e| e.addr.clone())
    }

    /// The ids of the open rooms.
    pub fn open_rooms(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.rooms.lock().unwrap().iter().filter(|(_, e)| e.addr.connected()).map(|(k, _)| k.clone()).collect();
        ids.sort();
        ids
    }

    /// Open rooms and their member counts.
    pub async fn rooms(&self) -> Vec<(String, usize)> {
        let rooms: Vec<_> = self.inner.rooms.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.addr.clone())).collect();
        let mut out = Vec::new();
        for (id, addr) in rooms {
            if let Ok(n) = addr.send(MemberCount).await {
                out.push((id, n));
            }
        }
        out.sort();
        out
    }

    /// Tells the operators of an open room (the compositor among them) what the
    /// program is to do (`RoomEvent::ProgramLayout`, `ProgramSwitches`,
    /// `ProgramMetadata`); `None` if the room is not open, else how many were told.
    pub async fn to_operators(&self, room: &str, event: crate::RoomEvent) -> Option<usize> {
        let addr = self.room_addr(room)?;
        addr.send(crate::room::ToOperators(event)).await.ok()
    }

    /// The stats of an open room's members; `None` if the room is not open.
    pub async fn participants(&self, room: &str) -> Option<Vec<crate::ParticipantStats>> {
        let addr = self.room_addr(room)?;
        addr.send(crate::room::Participants).await.ok()
    }

    /// Removes a member of an open room; whether there was one.
    pub async fn remove(&self, room: &str, participant: &str) -> bool {
        let Some(addr) = self.room_addr(room) else { return false };
        addr.send(crate::room::Remove(participant.to_string())).await.unwrap_or(false)
    }

    /// Whether a room is open (someone is in it).
    pub fn is_open(&self, room: &str) -> bool {
        self.inner.rooms.lock().unwrap().get(room).is_some_and(|e| e.addr.connected())
    }

    /// Mutes (holds) or releases one kind of a participant's media, as an operator;
    /// false when it is not in the room.
    pub async fn hold(&self, room: &str, participant: &str, kind: crate::MediaKind, held: bool) -> bool {
        let Some(addr) = self.room_addr(room) else { return false };
        addr.send(crate::room::Hold { participant: participant.to_string(), kind, held }).await.unwrap_or(false)
    }

    /// Ends every session of one person (`identity`) in an open room, saying why:
    /// a revoked invitation. Answers how many were ended.
    pub async fn end_sessions(&self, room: &str, identity: &str, reason: &str) -> usize {
        let Some(addr) = self.room_addr(room) else { return 0 };
        addr.send(crate::room::EndSessions { identity: identity.to_string(), reason: reason.to_string() }).await.unwrap_or(0)
    }

    /// Routes in the media sockets' tables, for leak checks: (by ufrag, by address).
    pub fn route_count(&self) -> (usize, usize) {
        // UDP routes are each worker's own; the ICE-TCP table is shared.
        let (ufrags, addrs) = self.inner.workers.iter().map(|w| w.transports.udp().route_count()).fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        let (tcp_ufrags, conns) = self.inner.tcp.as_ref().map(|t| t.route_count()).unwrap_or((0, 0));
        (ufrags.max(tcp_ufrags), addrs + conns)
    }

    /// The open room `id`, or a new one on the least-loaded worker.
    fn room(&self, id: &str, policy: &RoomPolicy) -> RoomEntry {
        let mut rooms = self.inner.rooms.lock().unwrap();
        if let Some(e) = rooms.get(id).filter(|e| e.addr.connected()) {
            return e.clone();
        }
        let workers = &self.inner.workers;
        let mut open = vec![0; workers.len()];
        for e in rooms.values().filter(|e| e.addr.connected()) {
            open[e.worker] += 1;
        }
        let participants: Vec<usize> = workers.iter().map(|w| w.participants()).collect();
        let worker = &workers[least_loaded(&participants, &open)];
        let router: SharedRouter = Arc::new(Mutex::new(Router::new(policy.keyframe_interval)));
        let (rid, policy, reg, metrics, r, seat) =
            (id.to_string(), policy.clone(), Arc::downgrade(&self.inner.rooms), self.inner.metrics.clone(), router.clone(), worker.open_room());
        let addr = RoomActor::start_in_arbiter(&worker.arbiter, move |_| RoomActor::new(rid, policy, r, reg, metrics, seat));
        tracing::debug!(room = id, worker = worker.index, "room placed");
        let entry = RoomEntry { addr, router, worker: worker.index };
        rooms.insert(id.to_string(), entry.clone());
        entry
    }

    /// Adds a participant to a room (created with `policy` if it is not open).
    pub async fn join(
        &self,
        room_id: &str,
        policy: &RoomPolicy,
        opts: ParticipantOptions,
    ) -> Result<ParticipantHandle, JoinError> {
        // A room that stops between lookup and join is replaced: try twice.
        for _ in 0..2 {
            let RoomEntry { addr: room, router, worker } = self.room(room_id, policy);
            // Its room's worker: the participant's packets never leave that thread.
            let worker = &self.inner.workers[worker];
            let id = ParticipantId::next();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let member = Member {
                info: PeerInfo { id, name: opts.name.clone(), role: opts.role },
                publish: opts.publish,
                subscribe: opts.subscribe,
                identity: opts.identity.clone(),
                credential: opts.credential.clone(),
            };
            let creds = str0m::IceCreds::new();
            let ufrag = creds.ufrag.clone();
            let wiring = Wiring {
                creds,
                room_id: room_id.to_string(),
                room: room.clone(),
                router,
                transports: worker.transports.clone(),
                metrics: self.inner.metrics.clone(),
                events: tx,
                connect_deadline: self.inner.connect_timeout,
                dtls_cert: self.inner.dtls_cert.clone(),
                seat: worker.enter(),
            };
            let o = opts.clone();
            let addr = ParticipantActor::start_in_arbiter(&worker.arbiter, move |_| ParticipantActor::new(id, o, wiring));
            // Routed before the offer is even answered: the first STUN request finds it.
            worker.transports.register(&ufrag, addr.clone().recipient());
            match room.send(Join { member, addr: addr.clone() }).await {
                Ok(Ok(peers)) => return Ok(ParticipantHandle { id, peers, addr, events: rx }),
                Ok(Err(e)) => {
                    addr.do_send(crate::participant::Close(e.to_string()));
                    return Err(e.into());
                }
                Err(_) => {
                    addr.do_send(crate::participant::Close("room closed".into()));
                    continue;
                }
            }
        }
        Err(JoinError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participant::{Explode, ParticipantEvent};
    use crate::{RoomEvent, Subscribe, TrackSource};

    fn sfu() -> Sfu {
        let config = SfuConfig {
            udp_bind: "127.0.0.1:0".parse().unwrap(),
            advertise: vec!["127.0.0.1".parse().unwrap()],
            connect_timeout: Duration::from_secs(30),
            ice_tcp_port: Some(0),
            media_workers: 2,
            udp_batching: true,
        };
        Sfu::start(config, Metrics::new()).unwrap()
    }

    fn commentator(name: &str) -> ParticipantOptions {
        ParticipantOptions {
            name: name.into(),
            role: "commentator",
            publish: Some(TrackSource::Commentator),
            subscribe: Subscribe::All,
            renegotiate: true,
            identity: format!("commentator:{name}"),
            credential: format!("tok:{name}"),
        }
    }

    async fn next_event(h: &mut ParticipantHandle) -> ParticipantEvent {
        tokio::time::timeout(Duration::from_secs(5), h.events.recv()).await.expect("an event in time").expect("events open")
    }

    #[actix::test]
    async fn a_panicking_participant_ends_alone() {
        let sfu = sfu();
        let policy = RoomPolicy::default();
        let mut a = sfu.join("r", &policy, commentator("a")).await.unwrap();
        let mut b = sfu.join("r", &policy, commentator("b")).await.unwrap();
        assert_eq!(b.peers.len(), 1);
        assert!(matches!(next_event(&mut a).await, ParticipantEvent::Room(RoomEvent::PeerJoined(_))));

        a.addr.send(Explode).await.unwrap();
        match next_event(&mut a).await {
            // The client is told of an internal error, not the panic's text (logged).
            ParticipantEvent::Closed(reason) => assert!(reason.starts_with("internal error") && !reason.contains("simulated bug"), "{reason}"),
            e => panic!("expected Closed, got {e:?}"),
        }
        assert_eq!(next_event(&mut b).await, ParticipantEvent::Room(RoomEvent::PeerLeft(a.id)));
        // The room, the other participant and the media thread carry on.
        assert_eq!(sfu.rooms().await, vec![("r".to_string(), 1)]);
        let mut c = sfu.join("r", &policy, commentator("c")).await.unwrap();
        assert_eq!(c.peers.len(), 1);
        assert!(matches!(next_event(&mut b).await, ParticipantEvent::Room(RoomEvent::PeerJoined(p)) if p.id == c.id));
        assert_eq!(sfu.rooms().await, vec![("r".to_string(), 2)]);
        c.addr.send(crate::participant::Close("bye".into())).await.unwrap();
        assert!(matches!(next_event(&mut c).await, ParticipantEvent::Closed(_)));
        b.addr.send(crate::participant::Close("bye".into())).await.unwrap();
        assert!(matches!(next_event(&mut b).await, ParticipantEvent::Room(_) | ParticipantEvent::Closed(_)));
    }

    #[actix::test]
    async fn empty_rooms_close_and_routes_are_released() {
        let sfu = sfu();
        let policy = RoomPolicy::default();
        let mut handles = Vec::new();
        for i in 0..20 {
            handles.push(sfu.join(&format!("room-{}", i % 4), &policy, commentator(&format!("x{i}"))).await.unwrap());
        }
        assert_eq!(sfu.rooms().await.len(), 4);
        assert_eq!(sfu.route_count().0, 20);
        // Four rooms on two workers: two each.
        let on: Vec<usize> = (0..4).filter_map(|i| sfu.room_worker(&format!("room-{i}"))).collect();
        assert_eq!((on.iter().filter(|&&w| w == 0).count(), on.iter().filter(|&&w| w == 1).count()), (2, 2), "{on:?}");
        for h in &handles {
            h.addr.do_send(crate::participant::Close("done".into()));
        }
        for mut h in handles {
            while !matches!(next_event(&mut h).await, ParticipantEvent::Closed(_)) {}
        }
        // Each Leave reached its room before the Closed event was sent, so the rooms
        // have stopped by the time they are asked.
        assert!(sfu.rooms().await.is_empty());
        assert_eq!(sfu.route_count(), (0, 0));
    }
}
