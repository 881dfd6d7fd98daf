//! The one UDP media socket: receive, demultiplex to participants, send.
//!
//! Every participant's ICE-lite agent listens on the same port. A datagram is routed
//! by the STUN USERNAME attribute (`<our ufrag>:<their ufrag>`) the first time a
//! remote address shows up, and by its source address from then on; the address is
//! learned only from a STUN request that names a known participant, so a stray or
//! spoofed datagram from an unknown address is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Recipient;

use crate::metrics::Metrics;

/// A datagram for a participant.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Datagram {
    /// When it was read from the socket.
    pub at: Instant,
    /// Who sent it.
    pub source: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Recipient<Datagram>>,
    by_addr: HashMap<SocketAddr, (String, Recipient<Datagram>)>,
}

/// The shared media socket and its routing table.
pub struct UdpMux {
    socket: UdpSocket,
    local: SocketAddr,
    routes: Mutex<Routes>,
    metrics: Metrics,
}

impl UdpMux {
    /// Binds the media socket.
    pub fn bind(addr: SocketAddr, metrics: Metrics) -> io::Result<Arc<UdpMux>> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        Ok(Arc::new(UdpMux { socket, local, routes: Mutex::new(Routes::default()), metrics }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Routes STUN requests naming `ufrag` to `to`.
    pub fn register(&self, ufrag: &str, to: Recipient<Datagram>) {
        self.routes.lock().unwrap().by_ufrag.insert(ufrag.to_string(), to);
    }

    /// Forgets a participant and every address learned for it.
    pub fn unregister(&self, ufrag: &str) {
        let mut r = self.routes.lock().unwrap();
        r.by_ufrag.remove(ufrag);
        r.by_addr.retain(|_, (u, _)| u != ufrag);
    }

    /// Number of routes, for leak checks.
    pub fn route_count(&self) -> (usize, usize) {
        let r = self.routes.lock().unwrap();
        (r.by_ufrag.len(), r.by_addr.len())
    }

    /// Sends one datagram without blocking; a full socket buffer drops it.
    pub fn send(&self, to: SocketAddr, data: &[u8]) {
        if let Err(e) = self.socket.send_to(data, to) {
            self.metrics.dropped.with_label_values(&["send_failed"]).inc();
            tracing::debug!(%to, error = %e, "udp send failed");
        }
    }

    /// Finds the participant a datagram belongs to.
    pub fn route(&self, source: SocketAddr, data: &[u8]) -> Option<Recipient<Datagram>> {
        let mut r = self.routes.lock().unwrap();
        if let Some(ufrag) = stun_local_ufrag(data) {
            let to = r.by_ufrag.get(ufrag)?.clone();
            let ufrag = ufrag.to_string();
            r.by_addr.insert(source, (ufrag, to.clone()));
            return Some(to);
        }
        r.by_addr.get(&source).map(|(_, to)| to.clone())
    }

    /// Receives forever on the media socket, handing datagrams to participants.
    /// Runs on the media arbiter.
    pub async fn run(self: Arc<Self>) -> io::Result<()> {
        let socket = tokio::net::UdpSocket::from_std(self.socket.try_clone()?)?;
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
            match self.route(source, data) {
                Some(to) => {
                    to.do_send(Datagram { at: Instant::now(), source, data: data.to_vec() });
                }
                None => self.metrics.dropped.with_label_values(&["unroutable"]).inc(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(username: &[u8]) -> Vec<u8> {
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
