//! Sessions that outlive their signaling connection: a commentator whose Wi-Fi
//! drops, or who moves to a phone's hotspot, opens a new WebSocket and resumes the
//! same participant (same id, tiles, mute state, seat) with the `resume` secret its
//! `joined` message carried.
//!
//! The connection task that owns a participant registers it here. When its
//! WebSocket is lost without a `leave`, the task keeps the participant for
//! [`RESUME_GRACE`] (an orphan) and then ends it. A `resume` on a new connection
//! asks the owner, live or orphaned, to hand the participant over; a `join` by the
//! same person ends that person's orphans at once, so that someone whose browser
//! was killed can join again immediately even with one seat per person.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use casecast_actors::ParticipantHandle;
use casecast_signaling::{RESUME_GRACE_SECS, ServerMessage};
use tokio::sync::{mpsc, oneshot};

/// How long an orphaned session waits for its person to come back.
pub const RESUME_GRACE: Duration = Duration::from_secs(RESUME_GRACE_SECS);

/// How long a new connection waits for the owner to hand a session over.
const HANDOVER_WITHIN: Duration = Duration::from_secs(2);

/// What a new connection asks of a session's owner.
pub enum Request {
    /// Hand the participant over (a `resume`).
    Take(oneshot::Sender<Handover>),
    /// End the orphaned participant now (its person joined again); answered when
    /// its seat is free.
    End(oneshot::Sender<()>),
}

/// A participant passing from one connection to the next.
pub struct Handover {
    /// The participant.
    pub handle: ParticipantHandle,
    /// A message the old connection could not deliver.
    pub unsent: Option<ServerMessage>,
}

struct Entry {
    room: String,
    person: String,
    orphaned: bool,
    owner: mpsc::UnboundedSender<Request>,
}

/// The sessions that can be resumed, by their secret.
#[derive(Default)]
pub struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A connection's registration: the secret and the requests for its session.
pub struct Registration {
    /// The `resume` secret.
    pub secret: String,
    /// Requests from new connections.
    pub requests: mpsc::UnboundedReceiver<Request>,
}

impl Sessions {
    /// Registers a session of `person` in `room` under `secret` (a new one when
    /// `None`).
    pub fn add(&self, secret: Option<String>, room: &str, person: &str) -> Registration {
        let secret = secret.unwrap_or_else(|| {
            let bytes: [u8; 24] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        });
        let (owner, requests) = mpsc::unbounded_channel();
        let entry = Entry { room: room.to_string(), person: person.to_string(), orphaned: false, owner };
        self.entries.lock().unwrap().insert(secret.clone(), entry);
        Registration { secret, requests }
    }

    /// Marks a session as having lost its connection.
    pub fn orphan(&self, secret: &str) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(secret) {
            e.orphaned = true;
        }
    }

    /// Forgets a session (it ended).
    pub fn remove(&self, secret: &str) {
        self.entries.lock().unwrap().remove(secret);
    }

    /// Takes the session `secret` of `person` in `room` from its owner; `None`
    /// when there is no such session (ended, never was, or another person's).
    pub async fn take(&self, secret: &str, room: &str, person: &str) -> Option<Handover> {
        let owner = {
            let mut entries = self.entries.lock().unwrap();
            let e = entries.get(secret).filter(|e| e.room == room && e.person == person)?;
            let owner = e.owner.clone();
            entries.remove(secret);
            owner
        };
        let (tx, rx) = oneshot::channel();
        owner.send(Request::Take(tx)).ok()?;
        tokio::time::timeout(HANDOVER_WITHIN, rx).await.ok()?.ok()
    }

    /// Ends every orphaned session of `person` in `room`, and waits (bounded)
    /// until their seats are free.
    pub async fn end_orphans(&self, room: &str, person: &str) {
        let owners: Vec<_> = {
            let entries = self.entries.lock().unwrap();
            entries.values().filter(|e| e.orphaned && e.room == room && e.person == person).map(|e| e.owner.clone()).collect()
        };
        for owner in owners {
            let (tx, rx) = oneshot::channel();
            if owner.send(Request::End(tx)).is_ok() {
                let _ = tokio::time::timeout(HANDOVER_WITHIN, rx).await;
            }
        }
    }
}
