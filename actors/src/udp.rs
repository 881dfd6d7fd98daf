//! The UDP media port: receive, demultiplex to participants, send.
//!
//! Every participant's ICE-lite agent listens on the same port. ICE needs to know
//! which local candidate a datagram arrived on, which a socket bound to the wildcard
//! address cannot tell without `IP_PKTINFO`; so with a wildcard bind address the port
//! is bound once per advertised address (`192.0.2.10:8081`, `127.0.0.1:8081`, ...),
//! and each socket knows its candidate. An advertised address that is not on this
//! machine (a 1:1 NAT's public address) is served by one wildcard socket that reports
//! that address as its candidate. A datagram is routed
//! by the STUN USERNAME attribute (`<our ufrag>:<their ufrag>`) the first time a
//! remote address shows up, and by its source address from then on; the address is
//! learned only from a STUN request that names a known participant, so a stray or
//! spoofed datagram from an unknown address is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Recipient;

use crate::metrics::Metrics;

/// Most remote addresses one participant's connectivity checks may come from.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// A datagram for a participant.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Datagram {
    /// When it was read from the socket.
    pub at: Instant,
    /// The transport it came over (UDP, or ICE-TCP).
    pub proto: str0m::net::Protocol,
    /// Who sent it.
    pub source: SocketAddr,
    /// The local candidate it arrived on.
    pub destination: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Whom a STUN request's ufrag names, for the UDP port and ICE-TCP alike. A
/// participant is known by the ufrag it registered with (its route key) for its
/// whole life; an ICE restart adds its new ufrag as an alias of that key.
#[derive(Default)]
pub(crate) struct UfragRoutes(HashMap<String, (String, Recipient<Datagram>)>);

impl UfragRoutes {
    /// Requests naming `ufrag` go to `to`; `ufrag` is its route key.
    pub fn register(&mut self, ufrag: &str, to: Recipient<Datagram>) {
        self.0.insert(ufrag.to_string(), (ufrag.to_string(), to));
    }

    /// Requests naming `ufrag` go to the participant of route key `key` too.
    pub fn alias(&mut self, key: &str, ufrag: &str) {
        if let Some(to) = self.0.values().find(|(k, _)| k == key).map(|(_, to)| to.clone()) {
            self.0.insert(ufrag.to_string(), (key.to_string(), to));
        }
    }

    /// Requests naming `ufrag` go nowhere any more.
    pub fn retire(&mut self, ufrag: &str) {
        self.0.remove(ufrag);
    }

    /// Forgets the participant of route key `key` and its aliases.
    pub fn unregister(&mut self, key: &str) {
        self.0.retain(|_, (k, _)| k != key);
    }

    /// The route key and participant `ufrag` names.
    pub fn get(&self, ufrag: &str) -> Option<&(String, Recipient<Datagram>)> {
        self.0.get(ufrag)
    }

    /// Ufrags routed, for leak checks.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Default)]
struct Routes {
    by_ufrag: UfragRoutes,
    /// Learned address → (route key, participant).
    by_addr: HashMap<SocketAddr, (String, Recipient<Datagram>)>,
}

/// The media sockets and the routing table.
pub struct UdpMux {
    /// Each socket with the candidate address it serves.
    sockets: Vec<(UdpSocket, SocketAddr)>,
    routes: Mutex<Routes>,
    metrics: Metrics,
    /// Send and receive with `sendmmsg`/`recvmmsg` ([`crate::mmsg`]).
    batching: bool,
    /// The system call and datagram counters, looked up once.
    count: Counters,
}

/// A media socket's counters (atomic: no lookup or lock per datagram).
struct Counters {
    send_calls: prometheus::IntCounter,
    recv_calls: prometheus::IntCounter,
    sent: prometheus::IntCounter,
    received: prometheus::IntCounter,
}

impl Counters {
    fn new(m: &Metrics) -> Counters {
        Counters {
            send_calls: m.udp_syscalls.with_label_values(&["send"]),
            recv_calls: m.udp_syscalls.with_label_values(&["recv"]),
            sent: m.udp_datagrams.with_label_values(&["out"]),
            received: m.udp_datagrams.with_label_values(&["in"]),
        }
    }
}

impl UdpMux {
    /// Binds the media port for the advertised addresses (see the module docs).
    pub fn bind(bind: SocketAddr, advertise: &[IpAddr], metrics: Metrics, batching: bool) -> io::Result<Arc<UdpMux>> {
        if advertise.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no address to advertise"));
        }
        let mut sockets = Vec::new();
        if bind.ip().is_unspecified() {
            let mut port = bind.port();
            let mut remote = Vec::new();
            for &ip in advertise {
                match UdpSocket::bind(SocketAddr::new(ip, port)) {
                    Ok(s) => {
                        // Port 0: the first socket picks the port, the others share it.
                        port = s.local_addr()?.port();
                        sockets.push((s, SocketAddr::new(ip, port)));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => remote.push(ip),
                    Err(e) => return Err(e),
                }
            }
            if let Some(&public) = remote.first() {
                if remote.len() > 1 {
                    tracing::warn!(?remote, "several advertised addresses are not on this machine; only {public} is served");
                }
                if !sockets.is_empty() {
                    // The wildcard socket cannot share the port with specific ones.
                    let dropped: Vec<_> = sockets.iter().map(|(_, c)| *c).collect();
                    tracing::warn!(?dropped, %public, "advertised addresses mix local and NAT ones: only the NAT address is served");
                    sockets.clear();
                }
                let s = UdpSocket::bind(SocketAddr::new(bind.ip(), port))?;
                port = s.local_addr()?.port();
                sockets.push((s, SocketAddr::new(public, port)));
            }
        } else {
            let s = UdpSocket::bind(bind)?;
            let port = s.local_addr()?.port();
            if advertise.len() > 1 {
                tracing::warn!(%bind, "one bind address: only the first advertised address is served");
            }
            sockets.push((s, SocketAddr::new(advertise[0], port)));
        }
        for (s, _) in &sockets {
            s.set_nonblocking(true)?;
        }
        Ok(Arc::new(UdpMux { sockets, routes: Mutex::new(Routes::default()), count: Counters::new(&metrics), metrics, batching }))
    }

    /// The local candidates, one per socket.
    pub fn candidates(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(_, c)| *c).collect()
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().filter_map(|(s, _)| s.local_addr().ok()).collect()
    }

    /// Routes STUN requests naming `ufrag` to `to`; `ufrag` is its route key.
    pub fn register(&self, ufrag: &str, to: Recipient<Datagram>) {
        self.routes.lock().unwrap().by_ufrag.register(ufrag, to);
    }

    /// Routes requests naming `ufrag` (after an ICE restart) to the participant of
    /// route key `key`, as its own: addresses it learned stay its.
    pub fn alias(&self, key: &str, ufrag: &str) {
        self.routes.lock().unwrap().by_ufrag.alias(key, ufrag);
    }

    /// Stops routing requests that name `ufrag` (one a restart replaced); the
    /// addresses learned stay.
    pub fn retire(&self, ufrag: &str) {
        self.routes.lock().unwrap().by_ufrag.retire(ufrag);
    }

    /// Forgets a participant (by route key), its aliases and every address learned for it.
    pub fn unregister(&self, key: &str) {
        let mut r = self.routes.lock().unwrap();
        r.by_ufrag.unregister(key);
        r.by_addr.retain(|_, (k, _)| k != key);
    }

    /// Number of routes, for leak checks.
    pub fn route_count(&self) -> (usize, usize) {
        let r = self.routes.lock().unwrap();
        (r.by_ufrag.len(), r.by_addr.len())
    }

    /// Sends one datagram from the socket of candidate `from`, without blocking; a
    /// full socket buffer drops it.
    pub fn send(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let socket = self.socket(from);
        self.count.send_calls.inc();
        if let Err(e) = socket.send_to(data, to) {
            self.metrics.dropped.with_label_values(&["send_failed"]).inc();
            tracing::debug!(%to, error = %e, "udp send failed");
        } else {
            self.count.sent.inc();
        }
    }

    /// Sends datagrams (destination, bytes) from the socket of candidate `from`: in
    /// one `sendmmsg` call per 64 when batching, else one `send_to` each. Those the
    /// socket cannot take now (a full buffer) are dropped and counted.
    pub fn send_batch(&self, from: SocketAddr, batch: &[(SocketAddr, &[u8])]) {
        if !self.batching {
            for (to, data) in batch {
                self.send(from, *to, data);
            }
            return;
        }
        let socket = self.socket(from);
        let mut start = 0;
        while start < batch.len() {
            let rest = &batch[start..];
            self.count.send_calls.inc_by(rest.len().div_ceil(crate::mmsg::MAX_BATCH) as u64);
            let (sent, err) = crate::mmsg::send_batch(socket, rest);
            self.count.sent.inc_by(sent as u64);
            start += sent;
            let Some(e) = err else { break };
            // The one refused is dropped; after a full buffer, the rest too.
            let dropped = if e.kind() == io::ErrorKind::WouldBlock { batch.len() - start } else { 1 };
            self.metrics.dropped.with_label_values(&["send_failed"]).inc_by(dropped as u64);
            tracing::debug!(to = %batch[start].0, error = %e, dropped, "udp send failed");
            start += dropped;
        }
    }

    fn socket(&self, from: SocketAddr) -> &UdpSocket {
        &self.sockets.iter().find(|(_, c)| *c == from).unwrap_or(&self.sockets[0]).0
    }

    /// Finds the participant a datagram belongs to.
    ///
    /// The STUN request is not authenticated here (its participant's `Rtc` checks
    /// MESSAGE-INTEGRITY), so learning is careful: an address that belongs to one
    /// participant is never taken over by a request naming another, and one
    /// participant learns at most [`MAX_ADDRS_PER_PEER`] addresses.
    pub fn route(&self, source: SocketAddr, data: &[u8]) -> Option<Recipient<Datagram>> {
        Self::route_in(&mut self.routes.lock().unwrap(), source, data)
    }

    fn route_in(r: &mut Routes, source: SocketAddr, data: &[u8]) -> Option<Recipient<Datagram>> {
        if let Some(ufrag) = stun_local_ufrag(data) {
            let (key, to) = r.by_ufrag.get(ufrag)?.clone();
            match r.by_addr.get(&source) {
                Some((owner, _)) if *owner != key => return None,
                Some(_) => {}
                None => {
                    if r.by_addr.values().filter(|(k, _)| *k == key).count() >= MAX_ADDRS_PER_PEER {
                        return None;
                    }
                    r.by_addr.insert(source, (key, to.clone()));
                }
            }
            return Some(to);
        }
        r.by_addr.get(&source).map(|(_, to)| to.clone())
    }

    /// Receives forever on every media socket, handing datagrams to participants.
    /// Runs on the media arbiter.
    pub async fn run(self: Arc<Self>) -> io::Result<()> {
        let mut loops = Vec::new();
        for i in 0..self.sockets.len() {
            let socket = tokio::net::UdpSocket::from_std(self.sockets[i].0.try_clone()?)?;
            loops.push(self.clone().receive(socket, self.sockets[i].1));
        }
        futures_util::future::join_all(loops).await;
        Ok(())
    }

    async fn receive(self: Arc<Self>, socket: tokio::net::UdpSocket, destination: SocketAddr) {
        if self.batching {
            return self.receive_batched(socket, destination).await;
        }
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, source) = match socket.recv_from(&mut buf).await {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors surface as recv errors on some systems: not fatal.
                    tracing::debug!(error = %e, "udp recv error");
                    continue;
                }
            };
            let data = &buf[..n];
            self.count.recv_calls.inc();
            self.count.received.inc();
            match self.route(source, data) {
                Some(to) => {
                    to.do_send(Datagram { at: Instant::now(), proto: str0m::net::Protocol::Udp, source, destination, data: data.to_vec() });
                }
                None => self.metrics.dropped.with_label_values(&["unroutable"]).inc(),
            }
        }
    }
}

impl UdpMux {
    /// The receive loop with `recvmmsg`: when the socket is readable, everything
    /// waiting on it (up to 64 datagrams a call), routed under one lock.
    async fn receive_batched(self: Arc<Self>, socket: tokio::net::UdpSocket, destination: SocketAddr) {
        let mut batch = crate::mmsg::RecvBatch::default();
        let mut routed = Vec::with_capacity(crate::mmsg::MAX_BATCH);
        loop {
            if let Err(e) = socket.readable().await {
                tracing::debug!(error = %e, "udp readiness error");
                continue;
            }
            let n = match socket.try_io(tokio::io::Interest::READABLE, || batch.recv(&socket)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // ICMP errors surface as recv errors on some systems: not fatal.
                    tracing::debug!(error = %e, "udp recv error");
                    continue;
                }
            };
            let at = Instant::now();
            self.count.recv_calls.inc();
            self.count.received.inc_by(n as u64);
            {
                let mut routes = self.routes.lock().unwrap();
                for i in 0..n {
                    let Some((source, data)) = batch.get(i) else { continue };
                    routed.push((Self::route_in(&mut routes, source, data), source, data.to_vec()));
                }
            }
            for (to, source, data) in routed.drain(..) {
                match to {
                    Some(to) => to.do_send(Datagram { at, proto: str0m::net::Protocol::Udp, source, destination, data }),
                    None => self.metrics.dropped.with_label_values(&["unroutable"]).inc(),
                }
            }
        }
    }
}

/// If `data` is a STUN binding request, the local (our) part of its USERNAME.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    // RFC 5389: 20-byte header; type 0x0001 (binding request); magic cookie.
    if data.len() < 20 || data[0] != 0x00 || data[1] != 0x01 {
        return None;
    }
    if data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == 0x0006 {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next();
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// True if a datagram is RTP (not STUN, DTLS or RTCP).
pub fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1])
}

/// A STUN binding request whose USERNAME is `username` (for tests of the
/// transports' routing).
#[cfg(test)]
pub(crate) fn stun_request(username: &[u8]) -> Vec<u8> {
    let mut attrs = vec![0x00, 0x06];
    attrs.extend((username.len() as u16).to_be_bytes());
    attrs.extend(username);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    // A PRIORITY attribute after it, to check padding is skipped right.
    attrs.extend([0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
    let mut m = vec![0x00, 0x01];
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend([0x21, 0x12, 0xA4, 0x42]);
    m.extend([7u8; 12]);
    m.extend(attrs);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &[u8]) -> Vec<u8> {
        stun_request(username)
    }

    #[test]
    fn finds_our_ufrag() {
        assert_eq!(stun_local_ufrag(&stun(b"abcd:efgh")), Some("abcd"));
        assert_eq!(stun_local_ufrag(&stun(b"abc:e")), Some("abc"));
    }

    #[test]
    fn ignores_non_stun_and_garbage() {
        assert_eq!(stun_local_ufrag(&[]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut m = stun(b"abcd:efgh");
        m[3] = 0xff; // length past the end
        assert_eq!(stun_local_ufrag(&m), None);
        let mut m = stun(b"abcd:efgh");
        m.truncate(26); // attribute cut short
        m[2] = 0;
        m[3] = 6;
        assert_eq!(stun_local_ufrag(&m), None);
    }

    struct Sink;
    impl actix::Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<Datagram> for Sink {
        type Result = ();
        fn handle(&mut self, _: Datagram, _: &mut Self::Context) {}
    }

    #[actix::test]
    async fn learning_addresses_is_careful() {
        use actix::Actor;
        let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), &["127.0.0.1".parse().unwrap()], Metrics::new(), false).unwrap();
        let (a, b) = (Sink.start().recipient(), Sink.start().recipient());
        mux.register("aaaa", a.clone());
        mux.register("bbbb", b.clone());
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert!(mux.route(addr(1000), &stun(b"aaaa:x")).is_some_and(|r| r == a));
        assert!(mux.route(addr(1000), &[0x80; 40]).is_some_and(|r| r == a), "then by address");
        // Another participant's request cannot take the address over.
        assert!(mux.route(addr(1000), &stun(b"bbbb:x")).is_none());
        assert!(mux.route(addr(1000), &[0x80; 40]).is_some_and(|r| r == a));
        // Unknown ufrags and unknown addresses go nowhere.
        assert!(mux.route(addr(1001), &stun(b"cccc:x")).is_none());
        assert!(mux.route(addr(1002), &[0x80; 40]).is_none());
        // At most MAX_ADDRS_PER_PEER addresses per participant.
        for p in 2000..2100 {
            mux.route(addr(p), &stun(b"bbbb:x"));
        }
        assert_eq!(mux.route_count(), (2, 1 + MAX_ADDRS_PER_PEER));
        mux.unregister("bbbb");
        assert_eq!(mux.route_count(), (1, 1));
        assert!(mux.route(addr(2000), &[0x80; 40]).is_none());
    }

    #[actix::test]
    async fn an_ice_restart_keeps_the_participant_and_its_addresses() {
        use actix::Actor;
        let mux = UdpMux::bind("127.0.0.1:0".parse().unwrap(), &["127.0.0.1".parse().unwrap()], Metrics::new(), false).unwrap();
        let (a, b) = (Sink.start().recipient(), Sink.start().recipient());
        mux.register("aaaa", a.clone());
        mux.register("bbbb", b.clone());
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert!(mux.route(addr(1000), &stun(b"aaaa:x")).is_some_and(|r| r == a));
        // Restarted: the new ufrag is the same participant, from the old address
        // (same network) or a new one (moved), and the old ufrag stops naming it.
        mux.alias("aaaa", "a2a2");
        assert!(mux.route(addr(1000), &stun(b"a2a2:y")).is_some_and(|r| r == a));
        assert!(mux.route(addr(1001), &stun(b"a2a2:y")).is_some_and(|r| r == a));
        mux.retire("aaaa");
        assert!(mux.route(addr(1002), &stun(b"aaaa:x")).is_none());
        assert!(mux.route(addr(1001), &[0x80; 40]).is_some_and(|r| r == a));
        // A second restart chains; another participant still cannot take its addresses.
        mux.alias("aaaa", "a3a3");
        assert!(mux.route(addr(1003), &stun(b"a3a3:z")).is_some_and(|r| r == a));
        assert!(mux.route(addr(1001), &stun(b"bbbb:x")).is_none());
        // Leaving forgets every alias and address.
        mux.unregister("aaaa");
        assert_eq!(mux.route_count(), (1, 0));
        assert!(mux.route(addr(1003), &stun(b"a3a3:z")).is_none());
    }

    #[test]
    fn rtp_versus_rtcp() {
        let mut p = [0u8; 20];
        p[0] = 0x80;
        p[1] = 96;
        assert!(is_rtp(&p));
        p[1] = 200; // sender report
        assert!(!is_rtp(&p));
        p[0] = 0x16; // DTLS
        assert!(!is_rtp(&p));
    }
}
