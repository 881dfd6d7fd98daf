//! Media workers, one thread per core by default (mediasoup's model): each is an
//! actix arbiter (a thread with its own event loop) with its own UDP media socket(s)
//! and route table. A room and all its participants live on one worker, so a packet
//! walks from the socket it arrived on to its subscribers' sockets without leaving
//! the thread, and no lock is shared between workers on that walk (each worker's
//! route table is its own, taken by that thread and by joins). Rooms are placed on
//! the worker with the fewest participants (then the fewest rooms).
//!
//! Worker `i` binds the media port plus `i` (`udp_bind` 8081 with 4 workers: UDP
//! 8081–8084); a participant's ICE candidates name its room's worker's port. ICE-TCP
//! keeps one listener, on the first port: a connection is handed to its
//! participant's worker by the participant's actor address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

use crate::metrics::Metrics;
use crate::tcp::TcpMux;
use crate::transport::Transports;
use crate::udp::UdpMux;

/// One media worker.
pub(crate) struct MediaWorker {
    /// Its number, from 0 (the metrics' `worker` label).
    pub index: usize,
    /// Its thread.
    pub arbiter: ArbiterHandle,
    /// Its sockets and routes (ICE-TCP shared).
    pub transports: Arc<Transports>,
    /// How many participants it carries.
    participants: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl MediaWorker {
    /// Starts worker `index` on its bound UDP socket(s): its thread, receiving.
    pub fn start(index: usize, udp: Arc<UdpMux>, tcp: Option<Arc<TcpMux>>, metrics: &Metrics) -> MediaWorker {
        let arbiter = Arbiter::new().handle();
        let recv = udp.clone();
        arbiter.spawn(async move {
            if let Err(e) = recv.run().await {
                tracing::error!(worker = index, error = %e, "media socket failed");
            }
        });
        metrics.worker_participants.with_label_values(&[&index.to_string()]).set(0);
        metrics.worker_rooms.with_label_values(&[&index.to_string()]).set(0);
        MediaWorker { index, arbiter, transports: Transports::new(udp, tcp), participants: Arc::new(AtomicUsize::new(0)), metrics: metrics.clone() }
    }

    /// Participants on it now.
    pub fn participants(&self) -> usize {
        self.participants.load(Ordering::Relaxed)
    }

    /// Counts a participant on this worker until the seat is dropped (with its actor).
    pub fn enter(&self) -> WorkerSeat {
        self.participants.fetch_add(1, Ordering::Relaxed);
        let gauge = self.metrics.worker_participants.with_label_values(&[&self.index.to_string()]);
        gauge.inc();
        WorkerSeat { count: self.participants.clone(), gauge }
    }

    /// Counts a room on this worker until the seat is dropped (with its actor).
    pub fn open_room(&self) -> RoomSeat {
        let gauge = self.metrics.worker_rooms.with_label_values(&[&self.index.to_string()]);
        gauge.inc();
        RoomSeat(gauge)
    }
}

/// A participant counted on its worker.
pub(crate) struct WorkerSeat {
    count: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl Drop for WorkerSeat {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

/// A room counted on its worker.
pub(crate) struct RoomSeat(prometheus::IntGauge);

impl Drop for RoomSeat {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The worker a new room goes to: the fewest participants, then the fewest rooms
/// (`rooms[i]`: rooms open on worker `i`), then the lowest number.
pub(crate) fn least_loaded(participants: &[usize], rooms: &[usize]) -> usize {
    (0..participants.len()).min_by_key(|&i| (participants[i], rooms.get(i).copied().unwrap_or(0), i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_goes_to_the_least_loaded_worker() {
        assert_eq!(least_loaded(&[0, 0], &[0, 0]), 0);
        assert_eq!(least_loaded(&[0, 0], &[1, 0]), 1, "an empty new room counts");
        assert_eq!(least_loaded(&[40, 3], &[1, 5]), 1, "participants first");
        assert_eq!(least_loaded(&[2, 2, 1], &[0, 0, 3]), 2);
        assert_eq!(least_loaded(&[7], &[9]), 0);
    }
}
