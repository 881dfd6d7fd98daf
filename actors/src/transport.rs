//! The transports a participant's ICE agent is reached over: the UDP media port and,
//! beside it, ICE-TCP. A participant registers, sends and learns its candidates
//! through this seam, never through a socket of its own; a TURN-relayed transport
//! goes here too.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Recipient;
use str0m::Candidate;
use str0m::net::{Protocol, TcpType, Transmit};

use crate::tcp::TcpMux;
use crate::udp::{Datagram, UdpMux};

/// The media ports of the server.
pub struct Transports {
    udp: Arc<UdpMux>,
    tcp: Option<Arc<TcpMux>>,
}

impl Transports {
    /// UDP, and ICE-TCP when it listens.
    pub fn new(udp: Arc<UdpMux>, tcp: Option<Arc<TcpMux>>) -> Arc<Transports> {
        Arc::new(Transports { udp, tcp })
    }

    /// The UDP port.
    pub fn udp(&self) -> &Arc<UdpMux> {
        &self.udp
    }

    /// The ICE-TCP listener, if any.
    pub fn tcp(&self) -> Option<&Arc<TcpMux>> {
        self.tcp.as_ref()
    }

    /// Routes what names `ufrag`, on every transport, to `to`.
    pub fn register(&self, ufrag: &str, to: Recipient<Datagram>) {
        self.udp.register(ufrag, to.clone());
        if let Some(t) = &self.tcp {
            t.register(ufrag, to);
        }
    }

    /// Routes what names `ufrag` (a participant's new ufrag after an ICE restart)
    /// to the participant registered as `key`, on every transport.
    pub fn alias(&self, key: &str, ufrag: &str) {
        self.udp.alias(key, ufrag);
        if let Some(t) = &self.tcp {
            t.alias(key, ufrag);
        }
    }

    /// Stops routing new checks that name `ufrag` (replaced by a restart).
    pub fn retire(&self, ufrag: &str) {
        self.udp.retire(ufrag);
        if let Some(t) = &self.tcp {
            t.retire(ufrag);
        }
    }

    /// Forgets a participant (by the ufrag it registered with) on every transport.
    pub fn unregister(&self, key: &str) {
        self.udp.unregister(key);
        if let Some(t) = &self.tcp {
            t.unregister(key);
        }
    }

    /// Sends what a participant's `Rtc` transmits, over the transport it names.
    pub fn send(&self, proto: Protocol, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        match (proto, &self.tcp) {
            (Protocol::Udp, _) => self.udp.send(from, to, data),
            (Protocol::Tcp, Some(t)) => t.send(to, data),
            _ => tracing::debug!(?proto, "no transport for this protocol"),
        }
    }

    /// Sends what a participant's turn produced and empties `out`: consecutive UDP
    /// datagrams from one socket in one batch (`sendmmsg`), ICE-TCP ones each on its
    /// connection.
    pub fn send_all(&self, out: &mut Vec<Transmit>) {
        let mut i = 0;
        while i < out.len() {
            let (proto, from) = (out[i].proto, out[i].source);
            if proto != Protocol::Udp {
                self.send(proto, from, out[i].destination, &out[i].contents);
                i += 1;
                continue;
            }
            let end = out[i..].iter().position(|t| t.proto != Protocol::Udp || t.source != from).map_or(out.len(), |k| i + k);
            let batch: Vec<(SocketAddr, &[u8])> = out[i..end].iter().map(|t| (t.destination, &t.contents[..])).collect();
            self.udp.send_batch(from, &batch);
            i = end;
        }
        out.clear();
    }

    /// The local ICE candidates: UDP host candidates first (preferred), then
    /// passive TCP ones.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for addr in self.udp.candidates() {
            match Candidate::host(addr, "udp") {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!(%addr, error = ?e, "unusable candidate address"),
            }
        }
        for addr in self.tcp.iter().flat_map(|t| t.candidates()) {
            match Candidate::builder().tcp().host(addr).tcptype(TcpType::Passive).build() {
                Ok(c) => out.push(c),
                Err(e) => tracing::warn!(%addr, error = ?e, "unusable ICE-TCP candidate address"),
            }
        }
        out
    }

    /// (participants, learned addresses or connections) over all transports, for
    /// leak checks.
    pub fn route_count(&self) -> (usize, usize) {
        let (a, b) = self.udp.route_count();
        let (c, d) = self.tcp.as_ref().map(|t| t.route_count()).unwrap_or((0, 0));
        (a.max(c), b + d)
    }
}
