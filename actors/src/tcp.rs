//! ICE-TCP: the media port over TCP, for networks that block UDP (RFC 6544 passive
//! host candidates, RFC 4571 framing: each packet behind its 2-byte length).
//!
//! Peers connect; the first frame of a connection must be a STUN binding request
//! naming a participant's ufrag within [`FIRST_FRAME_WITHIN`], else the connection
//! is closed. From then on its frames go to that participant, and what the
//! participant sends to the connection's address goes back over it. A connection
//! whose participant has gone is closed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::udp::{Datagram, MAX_ADDRS_PER_PEER, UfragRoutes, stun_local_ufrag};

/// A connection must name its participant this soon.
pub const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(10);
/// Most connections at once (named or not yet).
pub const MAX_CONNECTIONS: usize = 2048;
/// Frames queued for one connection before new ones are dropped (a slow link
/// loses packets, as UDP would, rather than holding memory).
const QUEUE_FRAMES: usize = 512;

struct Connection {
    /// The participant's route key (the ufrag it registered with).
    key: String,
    frames: mpsc::Sender<Vec<u8>>,
}

#[derive(Default)]
struct Table {
    by_ufrag: UfragRoutes,
    connections: HashMap<SocketAddr, Connection>,
    /// Accepted connections not closed yet (named or not).
    open: usize,
}

/// The ICE-TCP listener and its connections.
pub struct TcpMux {
    listener: std::net::TcpListener,
    candidates: Vec<SocketAddr>,
    table: Mutex<Table>,
    metrics: Metrics,
}

impl TcpMux {
    /// Listens on `bind`; the candidates are `advertise`'s addresses at its port.
    pub fn bind(bind: SocketAddr, advertise: &[IpAddr], metrics: Metrics) -> io::Result<Arc<TcpMux>> {
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let candidates = if bind.ip().is_unspecified() {
            advertise.iter().map(|&ip| SocketAddr::new(ip, port)).collect()
        } else {
            vec![SocketAddr::new(bind.ip(), port)]
        };
        Ok(Arc::new(TcpMux { listener, candidates, table: Mutex::new(Table::default()), metrics }))
    }

    /// The passive candidates' addresses.
    pub fn candidates(&self) -> Vec<SocketAddr> {
        self.candidates.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Routes connections whose first request names `ufrag` to `to`; `ufrag` is
    /// its route key.
    pub fn register(&self, ufrag: &str, to: Recipient<Datagram>) {
        self.table.lock().unwrap().by_ufrag.register(ufrag, to);
    }

    /// Routes connections naming `ufrag` (after an ICE restart) to the participant
    /// of route key `key`.
    pub fn alias(&self, key: &str, ufrag: &str) {
        self.table.lock().unwrap().by_ufrag.alias(key, ufrag);
    }

    /// Stops taking new connections that name `ufrag`; open ones stay.
    pub fn retire(&self, ufrag: &str) {
        self.table.lock().unwrap().by_ufrag.retire(ufrag);
    }

    /// Forgets a participant (by route key); its connections close.
    pub fn unregister(&self, key: &str) {
        let mut t = self.table.lock().unwrap();
        t.by_ufrag.unregister(key);
        t.connections.retain(|_, c| c.key != key);
        self.metrics.ice_tcp_connections.set(t.connections.len() as i64);
    }

    /// (participants, named connections), for leak checks.
    pub fn route_count(&self) -> (usize, usize) {
        let t = self.table.lock().unwrap();
        (t.by_ufrag.len(), t.connections.len())
    }

    /// Sends one packet to the connection from `to`, framed; dropped when there is
    /// no such connection or its queue is full.
    pub fn send(&self, to: SocketAddr, data: &[u8]) {
        let Ok(len) = u16::try_from(data.len()) else {
            self.metrics.dropped.with_label_values(&["tcp_too_large"]).inc();
            return;
        };
        let t = self.table.lock().unwrap();
        let Some(c) = t.connections.get(&to) else {
            self.metrics.dropped.with_label_values(&["tcp_no_connection"]).inc();
            return;
        };
        let mut frame = Vec::with_capacity(2 + data.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        if c.frames.try_send(frame).is_err() {
            self.metrics.dropped.with_label_values(&["tcp_queue_full"]).inc();
        }
    }

    /// Accepts connections forever. Runs on the media arbiter.
    pub async fn run(self: Arc<Self>) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener.try_clone()?)?;
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "ICE-TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            {
                let mut t = self.table.lock().unwrap();
                if t.open >= MAX_CONNECTIONS {
                    self.metrics.dropped.with_label_values(&["tcp_too_many"]).inc();
                    continue;
                }
                t.open += 1;
            }
            let me = self.clone();
            actix::spawn(async move {
                let _ = me.serve(stream, remote).await;
                let mut t = me.table.lock().unwrap();
                t.open -= 1;
                t.connections.remove(&remote);
                me.metrics.ice_tcp_connections.set(t.connections.len() as i64);
            });
        }
    }

    /// The local candidate a connection arrived on.
    fn candidate_for(&self, local: SocketAddr) -> SocketAddr {
        self.candidates.iter().copied().find(|c| c.ip() == local.ip()).unwrap_or(self.candidates[0])
    }

    async fn serve(&self, stream: tokio::net::TcpStream, remote: SocketAddr) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let destination = self.candidate_for(stream.local_addr()?);
        let (mut read, mut write) = stream.into_split();
        // The first frame names the participant.
        let first = tokio::time::timeout(FIRST_FRAME_WITHIN, read_frame(&mut read)).await.map_err(|_| io::ErrorKind::TimedOut)??;
        let Some(ufrag) = stun_local_ufrag(&first).map(str::to_string) else {
            self.metrics.dropped.with_label_values(&["tcp_unnamed"]).inc();
            return Ok(());
        };
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE_FRAMES);
        let to = {
            let mut t = self.table.lock().unwrap();
            let Some((key, to)) = t.by_ufrag.get(&ufrag).cloned() else {
                self.metrics.dropped.with_label_values(&["unroutable"]).inc();
                return Ok(());
            };
            if t.connections.values().filter(|c| c.key == key).count() >= MAX_ADDRS_PER_PEER {
                return Ok(());
            }
            t.connections.insert(remote, Connection { key, frames: tx });
            self.metrics.ice_tcp_connections.set(t.connections.len() as i64);
            tracing::debug!(%remote, "ICE-TCP connection");
            to
        };
        actix::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        });
        let deliver = |data: Vec<u8>| {
            to.do_send(Datagram { at: Instant::now(), proto: Protocol::Tcp, source: remote, destination, data });
        };
        deliver(first);
        loop {
            let frame = read_frame(&mut read).await?;
            // The participant has gone (unregistered): the connection ends.
            if !self.table.lock().unwrap().connections.contains_key(&remote) {
                return Ok(());
            }
            deliver(frame);
        }
    }
}

/// One RFC 4571 frame.
async fn read_frame(read: &mut tokio::net::tcp::OwnedReadHalf) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    read.read_exact(&mut len).await?;
    let mut data = vec![0u8; u16::from_be_bytes(len) as usize];
    read.read_exact(&mut data).await?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::stun_request as stun;
    use actix::Actor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut f = (data.len() as u16).to_be_bytes().to_vec();
        f.extend(data);
        f
    }

    /// Hands each datagram's length on, as the participant would get it.
    struct Sink(mpsc::UnboundedSender<usize>);
    impl Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<Datagram> for Sink {
        type Result = ();
        fn handle(&mut self, d: Datagram, _: &mut Self::Context) {
            assert_eq!(d.proto, Protocol::Tcp);
            let _ = self.0.send(d.data.len());
        }
    }

    /// Reads until the server closes the connection (bounded).
    async fn closed(s: &mut tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    #[actix::test]
    async fn only_a_named_participant_gets_a_connection_and_its_frames() {
        let mux = TcpMux::bind("127.0.0.1:0".parse().unwrap(), &["127.0.0.1".parse().unwrap()], Metrics::new()).unwrap();
        let addr = mux.local_addr().unwrap();
        let (tx, mut got) = mpsc::unbounded_channel();
        mux.register("aaaa", Sink(tx).start().recipient());
        actix::spawn(mux.clone().run());
        // Garbage first: closed, nothing delivered.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed(&[0x80; 40])).await.unwrap();
        assert!(closed(&mut s).await);
        // A request naming nobody: closed.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed(&stun(b"zzzz:x"))).await.unwrap();
        assert!(closed(&mut s).await);
        assert!(got.try_recv().is_err(), "nothing delivered");
        // Named: its frames arrive, and what the participant sends comes back framed.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&framed(&stun(b"aaaa:x"))).await.unwrap();
        s.write_all(&framed(&[0x80; 100])).await.unwrap();
        let local = s.local_addr().unwrap();
        let bound = Duration::from_secs(5);
        assert_eq!(tokio::time::timeout(bound, got.recv()).await.unwrap(), Some(stun(b"aaaa:x").len()), "the request first");
        assert_eq!(tokio::time::timeout(bound, got.recv()).await.unwrap(), Some(100), "then the frame after it");
        assert_eq!(mux.route_count(), (1, 1));
        mux.send(local, &[1, 2, 3]);
        let mut back = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, [0, 3, 1, 2, 3]);
        // The participant leaves: its connection closes.
        mux.unregister("aaaa");
        s.write_all(&framed(&[0x80; 10])).await.unwrap();
        assert!(closed(&mut s).await);
        assert_eq!(mux.route_count(), (0, 0));
    }
}
