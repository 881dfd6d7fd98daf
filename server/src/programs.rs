//! The events' programs, run and supervised by the server: an event that starts
//! gets its compositor (in this process, joined to its room like any client, at the
//! address the server listens on) with the event's preset and outputs; it goes on,
//! reconnecting by itself, until the event ends. A server that stops mid-event leaves
//! the programs' playlists live, and starts the programs again when it comes back
//! (see [`Programs::resume`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use casecast_actors::metrics::ProgramMetrics;
use casecast_actors::program::HlsPreset;
use casecast_ingest::store::unix_now;
use casecast_signaling::{Role, TokenKey};

use crate::compositor::Compositor;
use crate::config::Config;
use crate::events::Event;

/// The name the program joins its room with (never shown as a person, never
/// removable).
pub const PROGRAM_NAME: &str = "program";

/// The running programs, by event.
pub struct Programs {
    running: Mutex<HashMap<String, Compositor>>,
    /// The URL and ICE addresses this server's own clients use, once it listens.
    base: OnceLock<(String, Vec<String>)>,
    key: TokenKey,
    config: Config,
    metrics: Option<ProgramMetrics>,
}

impl Programs {
    /// Programs minted with `key`'s tokens and made from `config`'s `[program]`.
    pub fn new(key: TokenKey, config: Config, metrics: Option<ProgramMetrics>) -> Programs {
        Programs { running: Mutex::new(HashMap::new()), base: OnceLock::new(), key, config, metrics }
    }

    /// The server listens at `url`, and its media is reached from ICE addresses
    /// `ice` (empty: any interface): programs can start from now on.
    pub fn listening(&self, url: String, ice: Vec<String>) {
        let _ = self.base.set((url, ice));
    }

    /// Whether `event`'s program runs here.
    pub fn is_running(&self, event: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(event)
    }

    /// Starts `event`'s program (nothing if it runs already). Its switches and
    /// layout come from the event when it joins the room (see `tell_compositor`).
    pub fn start(&self, event: &Event) -> Result<(), String> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(&event.id) {
            return Ok(());
        }
        let most = self.config.program.max_running;
        if running.len() >= most {
            return Err(format!(
                "{most} events' programs run on this server already (program.max_running); end one first, or raise the limit"
            ));
        }
        let Some((base, ice)) = self.base.get() else {
            return Err("the server is not listening yet; try again in a moment".into());
        };
        let preset: HlsPreset = event.policy.latency_preset.parse()?;
        let opts = self.config.program_options(&event.id).map_err(|e| format!("the program's settings: {e:#}"))?;
        let mut opts = casecast_actors::program::ProgramOptions {
            // Same host: ICE over loopback where the media is offered there.
            local_addresses: ice.clone(),
            ..opts
        };
        opts.set_preset(preset);
        // A token for as long as an event may run; it dies with the event anyway
        // (an ended event's tokens are refused).
        let ttl = self.config.max_token_ttl_secs.min(30 * 86400);
        let token = self.key.mint(&event.id, Role::Operator, PROGRAM_NAME, unix_now() as u64, ttl);
        let compositor = Compositor::start(base, &event.id, &token, opts, self.metrics.clone());
        compositor.pause_on_stop();
        tracing::info!(event = %event.id, "program started");
        running.insert(event.id.clone(), compositor);
        Ok(())
    }

    /// Ends `event`'s program for good (in the background): its playlist becomes
    /// VOD and its recording's file is finished.
    pub fn end(&self, event: &str) {
        let c = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(event);
        if let Some(c) = c {
            tracing::info!(%event, "program ended");
            std::thread::spawn(move || c.end());
        }
    }

    /// Starts the programs of the events that were running when the server last
    /// stopped (started, not ended). Answers how many.
    pub fn resume(&self, events: &[Event]) -> usize {
        let mut n = 0;
        for e in events.iter().filter(|e| e.started_at.is_some() && e.status != "ended") {
            match self.start(e) {
                Ok(()) => n += 1,
                Err(m) => tracing::error!(event = %e.id, error = %m, "program not resumed"),
            }
        }
        n
    }

    /// Stops every program without ending its event (the server is going down):
    /// their playlists stay live for the restart. Returns when they have stopped.
    pub fn pause_all(&self) {
        let all: Vec<Compositor> = self.running.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, c)| c).collect();
        // Stop them all at once, then wait for each.
        for c in &all {
            c.stopper().set();
        }
        drop(all);
    }

    /// Signals every program to stop now (from a signal handler, so that none
    /// joins again while the server drains).
    pub fn stop_signal(&self) {
        for c in self.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
            c.stopper().set();
        }
    }
}
