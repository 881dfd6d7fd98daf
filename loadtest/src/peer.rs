//! What publishers and subscribers share: the UDP socket and `Rtc` driving loop, the
//! WHIP/WHEP negotiation, and the worker thread with its stop flag and shared stats.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use str0m::change::{SdpAnswer, SdpApi};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::http::Http;

/// Receive buffer size; larger than any datagram the server sends.
const RECV_BUF: usize = 2048;

/// Upper bound of outputs handled in one drain, so one call cannot spin forever.
const MAX_OUTPUTS_PER_DRAIN: usize = 10_000;

/// Outputs polled after `Rtc::close()` to flush RTCP BYE and DTLS close_notify.
const MAX_CLOSE_OUTPUTS: usize = 200;

/// The longest a loop sleeps before checking its stop flag and deadline again.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(20);

/// A negotiated peer connection: the `Rtc`, its socket and the server's addresses.
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// The server's candidate addresses: the only destinations datagrams go to.
    remote: Vec<SocketAddr>,
    buf: Vec<u8>,
}

/// A WHIP/WHEP session: the peer plus what is needed to end it.
pub(crate) struct Session {
    pub(crate) peer: Peer,
    pub(crate) http: Http,
    pub(crate) token: String,
    pub(crate) resource_url: String,
}

/// Binds the socket, lets `add_media` describe the m-lines, POSTs the offer to `url`
/// and applies the answer. On failure after the POST succeeded, the resource is deleted.
pub(crate) fn negotiate(
    mut rtc: Rtc,
    bind_ip: IpAddr,
    http: Http,
    url: &str,
    token: &str,
    add_media: impl FnOnce(&mut SdpApi<'_>),
) -> Result<Session> {
    let socket = UdpSocket::bind(SocketAddr::new(bind_ip, 0))
        .with_context(|| format!("binding a UDP socket on {bind_ip}"))?;
    let local = socket
        .local_addr()
        .context("reading the UDP socket's address")?;
    let candidate = Candidate::host(local, "udp")
        .map_err(|e| anyhow!("{local} is not usable as a host candidate: {e}"))?;
    if rtc.add_local_candidate(candidate).is_none() {
        bail!("str0m refused {local} as a local candidate");
    }

    let mut api = rtc.sdp_api();
    add_media(&mut api);
    let (offer, pending) = api.apply().context("the SDP offer has no media")?;

    let negotiated = http.post_offer(url, token, &offer.to_sdp_string())?;
    let resource_url = negotiated.resource_url.clone();
    let apply = || -> Result<Vec<SocketAddr>> {
        let remote = udp_candidates(&negotiated.answer);
        if remote.is_empty() {
            bail!("the SDP answer from {url} has no UDP candidate");
        }
        let answer = SdpAnswer::from_sdp_string(&negotiated.answer)
            .with_context(|| format!("parsing the SDP answer from {url}"))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .with_context(|| format!("applying the SDP answer from {url}"))?;
        Ok(remote)
    };
    match apply() {
        Ok(remote) => Ok(Session {
            peer: Peer {
                rtc,
                socket,
                local,
                remote,
                buf: vec![0; RECV_BUF],
            },
            http,
            token: token.to_string(),
            resource_url,
        }),
        Err(e) => {
            // Best effort: the error that matters is the one above.
            let _ = http.delete(&resource_url, token);
            Err(e)
        }
    }
}

impl Peer {
    /// Polls the `Rtc` until it wants a timeout, sending datagrams and handing events
    /// to `on_event`. Returns when the `Rtc` next needs attention.
    pub(crate) fn drain(&mut self, mut on_event: impl FnMut(&mut Rtc, Event)) -> Result<Instant> {
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            if !self.rtc.is_alive() {
                return Ok(Instant::now());
            }
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => self.send(t.destination, &t.contents),
                Output::Event(e) => on_event(&mut self.rtc, e),
            }
        }
        // Still busy: come back at once, after the caller checked its flags.
        Ok(Instant::now())
    }

    /// Sends a datagram if it goes to one of the server's candidates. Send errors are
    /// not fatal: UDP is lossy anyway, and ICE notices a dead path.
    fn send(&self, destination: SocketAddr, contents: &[u8]) {
        if self.remote.contains(&destination) {
            let _ = self.socket.send_to(contents, destination);
        }
    }

    /// Waits for one datagram until `until` (at most [`MAX_WAIT`]), feeds it to the
    /// `Rtc`, then advances its clock.
    pub(crate) fn wait(&mut self, until: Instant) -> Result<()> {
        let now = Instant::now();
        let timeout = until
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), MAX_WAIT);
        self.socket.set_read_timeout(Some(timeout))?;
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, source)) if self.remote.contains(&source) => {
                // Anything str0m cannot demultiplex is not ours to handle.
                if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &self.buf[..n])
                {
                    self.rtc
                        .handle_input(Input::Receive(Instant::now(), receive))?;
                }
            }
            Ok(_) => {} // Not from the server: ignored.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e).context("receiving from the UDP socket"),
        }
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        Ok(())
    }

    /// Starts str0m's local shutdown and flushes what it wants to send.
    pub(crate) fn close(&mut self) {
        if self.rtc.close().is_err() {
            self.rtc.disconnect();
            return;
        }
        for _ in 0..MAX_CLOSE_OUTPUTS {
            if !self.rtc.is_alive() {
                break;
            }
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.send(t.destination, &t.contents),
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
        self.rtc.disconnect();
    }
}

impl Session {
    /// DELETEs the resource, then closes the peer connection. (Closing first would
    /// let the server end the session on DTLS close_notify and answer the DELETE 404.)
    pub(crate) fn end(mut self) -> Result<()> {
        let deleted = self.http.delete(&self.resource_url, &self.token);
        self.peer.close();
        deleted
    }
}

/// The UDP host/srflx/relay candidate addresses in an SDP (`a=candidate:` lines).
/// Candidates with hostnames (mDNS) are skipped.
pub(crate) fn udp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(rest) = line.trim().strip_prefix("a=candidate:") else {
            continue;
        };
        // foundation component transport priority address port "typ" type ...
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [_, _, transport, _, address, port, ..] = fields.as_slice() else {
            continue;
        };
        if !transport.eq_ignore_ascii_case("udp") {
            continue;
        }
        let (Ok(ip), Ok(port)) = (address.parse::<IpAddr>(), port.parse::<u16>()) else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if port != 0 && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The worker thread's state that its handle can see: the stop flag and the stats.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    stop: AtomicBool,
    stats: Mutex<S>,
}

impl<S: Clone> Shared<S> {
    pub(crate) fn new(stats: S) -> Arc<Self> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats: Mutex::new(stats),
        })
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Locks the stats; a panicked worker does not make them unreadable.
    pub(crate) fn stats(&self) -> MutexGuard<'_, S> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self) -> S {
        self.stats().clone()
    }
}

/// A worker thread plus its shared state; stopping joins the thread.
#[derive(Debug)]
pub(crate) struct Worker<S> {
    pub(crate) shared: Arc<Shared<S>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Clone + Send + 'static> Worker<S> {
    /// Spawns `run` on a named thread.
    pub(crate) fn spawn(
        name: String,
        shared: Arc<Shared<S>>,
        run: impl FnOnce(Arc<Shared<S>>) + Send + 'static,
    ) -> Result<Worker<S>> {
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(for_thread))
            .context("spawning a peer thread")?;
        Ok(Worker {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether the thread is still running.
    pub(crate) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Asks the thread to stop and waits for it (its loop checks the flag every
    /// [`MAX_WAIT`]; the DELETE that follows is bounded by the HTTP timeout).
    pub(crate) fn stop(&mut self) -> S {
        self.shared.request_stop();
        if let Some(thread) = self.thread.take() {
            // A panic in the worker is already reflected in the stats it left.
            let _ = thread.join();
        }
        self.shared.snapshot()
    }
}

impl<S> Drop for Worker<S> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `done` every 10 ms until it is true or `timeout` passed.
pub fn wait_until(timeout: Duration, done: impl FnMut() -> bool) -> bool {
    poll_until(timeout, Duration::from_millis(10), done)
}

/// Polls `done` every `interval` until it is true or `timeout` passed: the one
/// bounded wait for an outcome in the project (the end-to-end tests use it too).
pub fn poll_until(timeout: Duration, interval: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(interval));
    }
}

/// The bounds every peer loop checks each turn: a hard deadline, a connect deadline,
/// and the connection still being alive.
pub(crate) struct Bounds {
    deadline: Instant,
    connect_deadline: Instant,
    connect_timeout: Duration,
}

impl Bounds {
    /// The hard deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Bounds counted from now.
    pub(crate) fn new(max_duration: Duration, connect_timeout: Duration) -> Bounds {
        let now = Instant::now();
        Bounds { deadline: now + max_duration, connect_deadline: now + connect_timeout, connect_timeout }
    }

    /// `Ok(false)` when the loop should end quietly (stop asked, or the hard deadline),
    /// an error when the session failed, `Ok(true)` to go on.
    pub(crate) fn check(&self, now: Instant, stop: bool, rtc: &Rtc, connected: bool, disconnected: bool) -> Result<bool> {
        if stop || now >= self.deadline {
            return Ok(false);
        }
        if disconnected {
            bail!("the server disconnected (ICE)");
        }
        if !rtc.is_alive() {
            bail!("the connection closed");
        }
        if !connected && now >= self.connect_deadline {
            bail!("not connected within {:?} (ICE/DTLS)", self.connect_timeout);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_from_sdp() {
        let sdp = "v=0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 ::1 40001 typ host\r\n\
            a=candidate:3 1 tcp 2130706431 127.0.0.1 40002 typ host tcptype passive\r\n\
            a=candidate:4 1 udp 2130706431 abc.local 40003 typ host\r\n\
            a=candidate:5 1 udp 2130706431 127.0.0.1\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";
        let got = udp_candidates(sdp);
        assert_eq!(
            got,
            vec![
                "127.0.0.1:40000".parse().unwrap(),
                "[::1]:40001".parse().unwrap()
            ]
        );
        assert!(udp_candidates("v=0\r\n").is_empty());
    }

    #[test]
    fn wait_until_is_bounded() {
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(30), || false));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(wait_until(Duration::from_secs(5), || true));
    }
}
