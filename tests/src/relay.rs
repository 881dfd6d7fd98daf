//! Delay and jitter for UDP, in user space (this kernel has no netem): a relay that
//! stands where the server's media address is advertised and passes each datagram
//! on after a delay of its own.
//!
//! The server binds its media socket on loopback and advertises the relay's
//! address; every client then sends to the relay, which keeps one upstream socket
//! per client, so the server sees each client as a distinct address. Datagrams to
//! and from clients at the impaired address wait `delay` plus a uniform random
//! part of up to `jitter`: in order (a queue whose wait varies, as on a radio
//! link), or each on its own, reordered; everyone else's pass at once. Loss is
//! left to nftables.

use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, mpsc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Most clients, and most datagrams waiting: a bound on what a test can make it hold.
const MAX_CLIENTS: usize = 64;
const MAX_WAITING: usize = 20_000;

/// A running relay; stopped when dropped.
pub struct JitterRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Due {
    at: Instant,
    seq: u64,
    /// `None`: to the server through this client's upstream socket; `Some`: to the
    /// client from the front socket.
    to_client: Option<SocketAddr>,
    client: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    // The earliest first out of a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A datagram read by one of the relay's sockets.
enum Read {
    FromClient(SocketAddr, Vec<u8>),
    FromServer(SocketAddr, Vec<u8>),
}

/// How long a socket's reader blocks before it looks whether the relay stopped.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Reads `socket` into `tx` until `stop`, each datagram made a [`Read`] by `wrap`.
fn reader(socket: UdpSocket, stop: Arc<AtomicBool>, tx: mpsc::Sender<Read>, wrap: impl Fn(SocketAddr, Vec<u8>) -> Read + Send + 'static) {
    std::thread::spawn(move || {
        let _ = socket.set_read_timeout(Some(READ_TIMEOUT));
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf)
                && tx.send(wrap(from, buf[..n].to_vec())).is_err()
            {
                return;
            }
        }
    });
}

impl JitterRelay {
    /// Relays `listen` to `server`, delaying what goes to and from clients at
    /// `impaired` by `delay` plus up to `jitter`; `reorder`: each datagram on its
    /// own, else in order.
    pub fn start(listen: SocketAddr, server: SocketAddr, impaired: IpAddr, delay: Duration, jitter: Duration, reorder: bool) -> Result<JitterRelay> {
        let front = UdpSocket::bind(listen).with_context(|| format!("the relay cannot bind {listen}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        reader(front.try_clone()?, stop.clone(), tx.clone(), Read::FromClient);
        let halt = stop.clone();
        // The scheduler: takes what the readers read, and sends each datagram when
        // its time comes (waiting for the next read or the next due time, whichever
        // is first).
        let thread = std::thread::spawn(move || {
            let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut waiting: BinaryHeap<Due> = BinaryHeap::new();
            let mut seq = 0u64;
            let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let mut rng = (clock.as_nanos() as u64 | 1) ^ u64::from(listen.port());
            // The last time given to each client's datagrams, each way: a datagram
            // never passes the one before it (a queue whose wait varies, as a
            // radio link's does), unless reordering is asked for.
            let mut last: HashMap<(SocketAddr, bool), Instant> = HashMap::new();
            let mut due_at = |client: &SocketAddr, to_client: bool, now: Instant, rng: &mut u64| -> Instant {
                if client.ip() != impaired {
                    return now;
                }
                // xorshift64: enough randomness for a jitter, no dependency.
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                let at = now + delay + jitter.mul_f64((*rng % 10_000) as f64 / 10_000.0);
                if reorder {
                    return at;
                }
                let prev = last.entry((*client, to_client)).or_insert(at);
                *prev = (*prev).max(at);
                *prev
            };
            while !halt.load(Ordering::Relaxed) {
                let wait = waiting.peek().map_or(READ_TIMEOUT, |d| d.at.saturating_duration_since(Instant::now()));
                let read = rx.recv_timeout(wait);
                let now = Instant::now();
                match read {
                    Ok(Read::FromClient(client, data)) => {
                        if !upstream.contains_key(&client) {
                            if upstream.len() >= MAX_CLIENTS {
                                continue;
                            }
                            let Ok(s) = UdpSocket::bind((server.ip(), 0)).and_then(|s| s.connect(server).map(|_| s)) else { continue };
                            let Ok(r) = s.try_clone() else { continue };
                            reader(r, halt.clone(), tx.clone(), move |_, data| Read::FromServer(client, data));
                            upstream.insert(client, s);
                        }
                        if waiting.len() < MAX_WAITING {
                            seq += 1;
                            waiting.push(Due { at: due_at(&client, false, now, &mut rng), seq, to_client: None, client, data });
                        }
                    }
                    Ok(Read::FromServer(client, data)) => {
                        if waiting.len() < MAX_WAITING {
                            seq += 1;
                            waiting.push(Due { at: due_at(&client, true, now, &mut rng), seq, to_client: Some(client), client, data });
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                while waiting.peek().is_some_and(|d| d.at <= now) {
                    let d = waiting.pop().expect("peeked");
                    match d.to_client {
                        Some(to) => {
                            let _ = front.send_to(&d.data, to);
                        }
                        None => {
                            if let Some(s) = upstream.get(&d.client) {
                                let _ = s.send(&d.data);
                            }
                        }
                    }
                }
            }
        });
        Ok(JitterRelay { stop, thread: Some(thread) })
    }
}

impl Drop for JitterRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
