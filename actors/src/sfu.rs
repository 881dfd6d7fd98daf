//! The SFU handle: the media arbiter, the media socket and the room registry.

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
use crate::transport::Transports;
use crate::udp::UdpMux;
use crate::{Member, PeerInfo};

/// How the SFU runs.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the media socket binds.
    pub udp_bind: SocketAddr,
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
    arbiter: ArbiterHandle,
    transports: Arc<Transports>,
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
    /// Binds the media socket and starts the media arbiter. Call inside an actix System.
    pub fn start(config: SfuConfig, metrics: Metrics) -> std::io::Result<Sfu> {
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("cannot generate the DTLS certificate"))?;
        let udp = UdpMux::bind(config.udp_bind, &config.advertise, metrics.clone())?;
        let candidates = udp.candidates();
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
        let arbiter = Arbiter::new().handle();
        let recv = udp.clone();
        arbiter.spawn(async move {
            if let Err(e) = recv.run().await {
                tracing::error!(error = %e, "media socket failed");
            }
        });
        if let Some(t) = tcp.clone() {
            arbiter.spawn(async move {
                if let Err(e) = t.run().await {
                    tracing::error!(error = %e, "ICE-TCP listener failed");
                }
            });
        }
        tracing::info!(udp = ?udp.local_addrs(), ice_tcp = ?tcp.as_ref().and_then(|t| t.local_addr()), "media sockets bound");
        let transports = Transports::new(udp, tcp);
        Ok(Sfu {
            inner: Arc::new(Inner {
                arbiter,
                transports,
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

    /// The media sockets' bound addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.inner.transports.udp().local_addrs()
    }

    /// The ICE-TCP listener's bound address, if it listens.
    pub fn ice_tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.transports.tcp().and_then(|t| t.local_addr())
    }

    /// The ICE candidates given to peers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.inner.candidates
    }

    /// The actor of an open room.
    fn room_addr(&self, room: &str) -> Option<Addr<RoomActor>> {
        self.inner.rooms.lock().unwrap().get(room).map(|e| e.addr.clone())
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

    /// Routes in the media socket's table, for leak checks: (by ufrag, by address).
    pub fn route_count(&self) -> (usize, usize) {
        self.inner.transports.route_count()
    }

    fn room(&self, id: &str, policy: &RoomPolicy) -> RoomEntry {
        let mut rooms = self.inner.rooms.lock().unwrap();
        if let Some(e) = rooms.get(id).filter(|e| e.addr.connected()) {
            return e.clone();
        }
        let router: SharedRouter = Arc::new(Mutex::new(Router::new(policy.keyframe_interval)));
        let (rid, policy, reg, metrics, r) =
            (id.to_string(), policy.clone(), Arc::downgrade(&self.inner.rooms), self.inner.metrics.clone(), router.clone());
        let addr = RoomActor::start_in_arbiter(&self.inner.arbiter, move |_| RoomActor::new(rid, policy, r, reg, metrics));
        let entry = RoomEntry { addr, router };
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
            let RoomEntry { addr: room, router } = self.room(room_id, policy);
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
                room: room.clone(),
                router,
                transports: self.inner.transports.clone(),
                metrics: self.inner.metrics.clone(),
                events: tx,
                connect_deadline: self.inner.connect_timeout,
                dtls_cert: self.inner.dtls_cert.clone(),
            };
            let o = opts.clone();
            let addr = ParticipantActor::start_in_arbiter(&self.inner.arbiter, move |_| ParticipantActor::new(id, o, wiring));
            // Routed before the offer is even answered: the first STUN request finds it.
            self.inner.transports.register(&ufrag, addr.clone().recipient());
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
