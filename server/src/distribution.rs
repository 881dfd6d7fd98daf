//! Distribution: how the program reaches viewers, chosen by config.
//!
//! - `local` (the embedded default): the compositor writes HLS, this server serves it.
//! - `aws`: per event, a [`EventDistribution`] actor drives MediaLive and
//!   MediaPackage (crate `casecast-aws`): on air it provisions what the event needs
//!   (or finds it), starts the channel, waits until it runs and points the
//!   compositor's RTMP push at the input; off air it stops the channel; when the
//!   event ends it harvests (live-to-VOD, if configured) and tears everything down.
//!   Viewers watch through CloudFront. A channel left running with no live event is
//!   stopped after `aws.idle_stop_secs`. Each actor works one order at a time; what
//!   it knows is kept beside it for the API, so status never waits on AWS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use casecast_actors::{RoomEvent, Sfu};
use casecast_aws::{Aws, AwsConfig, ChannelStatus, Packaging, Preset, Provisioned, cloudfront};
use serde::Serialize;

/// How often each event's channel is looked at (state, alerts, idle time).
const TICK: Duration = Duration::from_secs(5);

/// What an event's AWS distribution is doing, as the console shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AwsState {
    /// `idle`, `provisioning`, `starting`, `running`, `stopping`, `stopped`,
    /// `tearing_down`, `torn_down`, or `failed`.
    pub phase: String,
    /// The channel as AWS last said.
    pub channel: Option<ChannelStatus>,
    /// What the event has in AWS.
    pub resources: Option<Provisioned>,
    /// Where viewers watch (CloudFront), once provisioned.
    pub viewer_url: Option<String>,
    /// The last failure, with what to fix.
    pub error: Option<String>,
    /// When the channel was stopped for running with no live event (Unix seconds).
    pub auto_stopped_at: Option<u64>,
    /// The last harvest job (live-to-VOD).
    pub harvest_job: Option<String>,
}

/// The configured distribution.
pub enum Distribution {
    /// The compositor's HLS, served by this server.
    Local,
    /// MediaLive, MediaPackage and CloudFront.
    Aws(Box<AwsDistribution>),
}

/// The channel's state as metrics, by room (event).
#[derive(Clone)]
struct ChannelMetrics {
    /// 1 while the channel runs (or starts).
    running: prometheus::IntGaugeVec,
    /// Pipelines running.
    pipelines: prometheus::IntGaugeVec,
    /// Alerts set now.
    alerts: prometheus::IntGaugeVec,
}

impl ChannelMetrics {
    fn register(registry: &prometheus::Registry) -> anyhow::Result<ChannelMetrics> {
        let gauge = |name: &str, help: &str| -> anyhow::Result<prometheus::IntGaugeVec> {
            let g = prometheus::IntGaugeVec::new(prometheus::Opts::new(name, help), &["room"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(ChannelMetrics {
            running: gauge("casecast_medialive_channel_running", "1 while the event's MediaLive channel runs (it costs by the hour)")?,
            pipelines: gauge("casecast_medialive_pipelines_running", "Pipelines of the event's MediaLive channel running")?,
            alerts: gauge("casecast_medialive_alerts", "Alerts set on the event's MediaLive channel")?,
        })
    }

    fn set(&self, room: &str, s: Option<&ChannelStatus>) {
        let running = s.is_some_and(|s| s.state == "RUNNING" || s.state == "STARTING");
        self.running.with_label_values(&[room]).set(i64::from(running));
        self.pipelines.with_label_values(&[room]).set(if running { s.map_or(0, |s| i64::from(s.pipelines_running)) } else { 0 });
        self.alerts.with_label_values(&[room]).set(s.map_or(0, |s| s.alerts.len() as i64));
    }
}

/// The AWS distribution: an actor per event, and what each knows.
pub struct AwsDistribution {
    aws: Aws,
    sfu: Sfu,
    metrics: ChannelMetrics,
    signer: Option<cloudfront::Signer>,
    actors: Mutex<HashMap<String, Addr<EventDistribution>>>,
    states: Arc<Mutex<HashMap<String, AwsState>>>,
}

impl Distribution {
    /// The distribution `kind` (`local` or `aws`) names.
    pub async fn open(kind: &str, cfg: &AwsConfig, sfu: Sfu) -> anyhow::Result<Distribution> {
        match kind {
            "local" => Ok(Distribution::Local),
            "aws" => {
                cfg.check().map_err(anyhow::Error::msg)?;
                let signer = match (&cfg.cloudfront_key_pair_id, &cfg.cloudfront_private_key) {
                    (Some(id), Some(path)) => {
                        let pem = std::fs::read_to_string(path)
                            .map_err(|e| anyhow::anyhow!("cannot read aws.cloudfront_private_key {}: {e}", path.display()))?;
                        Some(cloudfront::Signer::from_pem(id, &pem).map_err(anyhow::Error::msg)?)
                    }
                    _ => None,
                };
                let aws = Aws::new(cfg.clone()).await;
                let metrics = ChannelMetrics::register(&sfu.metrics().registry)?;
                let d = AwsDistribution { aws, sfu, metrics, signer, actors: Mutex::default(), states: Arc::default() };
                d.adopt().await;
                Ok(Distribution::Aws(Box::new(d)))
            }
            other => anyhow::bail!("distribution must be local or aws, not {other:?}"),
        }
    }

    /// The AWS side, if that is the distribution.
    pub fn aws(&self) -> Option<&AwsDistribution> {
        match self {
            Distribution::Aws(a) => Some(a),
            Distribution::Local => None,
        }
    }
}

impl AwsDistribution {
    fn actor(&self, event: &str) -> Addr<EventDistribution> {
        let mut actors = self.actors.lock().unwrap();
        if let Some(a) = actors.get(event).filter(|a| a.connected()) {
            return a.clone();
        }
        let a = EventDistribution {
            event: event.to_string(),
            aws: self.aws.clone(),
            sfu: self.sfu.clone(),
            metrics: self.metrics.clone(),
            states: self.states.clone(),
            resources: None,
            live: false,
            running_since_idle: None,
            live_since: None,
            cloudfront: self.aws.config().cloudfront_domain.clone(),
        }
        .start();
        actors.insert(event.to_string(), a.clone());
        a
    }

    /// On air (provision, start, push) or off air (stop), in the background.
    pub fn set_live(&self, event: &str, live: bool, preset: &str) {
        self.actor(event).do_send(Live { live, preset: Preset::named(preset) });
    }

    /// The event ended: stop, harvest if configured, tear down; in the background.
    pub fn end(&self, event: &str) {
        self.actor(event).do_send(End);
    }

    /// Timed metadata through the channel's schedule (a JSON text, as ID3).
    pub fn metadata(&self, event: &str, id: &str, text: &str) {
        use base64::Engine;
        let id3 = base64::engine::general_purpose::STANDARD.encode(casecast_actors::program::id3_tag(text));
        self.actor(event).do_send(Metadata { id: id.to_string(), id3 });
    }

    /// Switches the channel to the primary or backup input; answers at once with
    /// what is known (no channel yet: an error).
    pub fn switch_input(&self, event: &str, backup: bool) -> Result<(), String> {
        if self.state(event).and_then(|s| s.resources).is_none() {
            return Err("this event has no MediaLive channel yet (it has not been on air)".into());
        }
        self.actor(event).do_send(SwitchInput { backup });
        Ok(())
    }

    /// What the console sees of an event.
    pub fn state(&self, event: &str) -> Option<AwsState> {
        self.states.lock().unwrap().get(event).cloned()
    }

    /// The RTMP URLs the compositor pushes to while the event runs (told again to a
    /// compositor that joins).
    pub async fn tell_outputs(&self, event: &str) {
        if let Some(s) = self.state(event).filter(|s| s.phase == "running")
            && let Some(r) = s.resources.filter(|r| !r.rtmp_urls.is_empty())
        {
            self.sfu.to_operators(event, RoomEvent::ProgramOutputs(r.rtmp_urls)).await;
        }
    }

    /// Where a viewer of `event` watches: the CloudFront playlist URL, and for a
    /// private event the signed query (valid `ttl`); `None` before provisioning.
    pub fn viewer_source(&self, event: &str, private: bool, ttl: Duration) -> Option<Result<(String, Option<String>), String>> {
        let url = self.state(event)?.viewer_url?;
        if !private {
            return Some(Ok((url, None)));
        }
        let Some(signer) = &self.signer else {
            return Some(Err("this private event streams through CloudFront, but aws.cloudfront_key_pair_id is not set".into()));
        };
        let resource = format!("{}*", &url[..url.rfind('/').map_or(url.len(), |i| i + 1)]);
        let expires = crate::state::unix_now() + ttl.as_secs();
        Some(signer.query(&resource, expires).map(|q| (url, Some(q))))
    }

    /// At start: channels tagged for an event that run with no live event here (the
    /// server went down while live) are watched, and stopped once idle too long.
    async fn adopt(&self) {
        match self.aws.channels().await {
            Ok(channels) => {
                for (event, channel_id, state) in channels {
                    tracing::info!(%event, %channel_id, %state, "aws: found a channel");
                    self.actor(&event).do_send(Adopt(Provisioned { event: event.clone(), channel_id, ..Provisioned::default() }));
                }
            }
            Err(e) => tracing::warn!(error = %e, "aws: the channels could not be listed at start"),
        }
    }
}

/// One event's distribution through AWS.
pub struct EventDistribution {
    event: String,
    aws: Aws,
    sfu: Sfu,
    metrics: ChannelMetrics,
    states: Arc<Mutex<HashMap<String, AwsState>>>,
    resources: Option<Provisioned>,
    /// An operator put the event on air (and has not taken it off).
    live: bool,
    /// Since when the channel runs while nothing is live.
    running_since_idle: Option<Instant>,
    /// When the event first ran (Unix seconds): where a harvest starts.
    live_since: Option<u64>,
    cloudfront: Option<String>,
}

impl Actor for EventDistribution {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |_, ctx| ctx.notify(Tick));
    }
}

impl EventDistribution {
    fn update(&self, f: impl FnOnce(&mut AwsState)) {
        let mut states = self.states.lock().unwrap();
        f(states.entry(self.event.clone()).or_default());
    }

    fn phase(&self, phase: &str) {
        self.update(|s| s.phase = phase.to_string());
    }

    /// Runs `call` on the event's channel (nothing without one); a failure is shown.
    fn on_channel<F>(&self, call: impl FnOnce(Aws, Provisioned) -> F) -> AtomicResponse<Self, ()>
    where
        F: std::future::Future<Output = Result<(), casecast_aws::AwsError>> + 'static,
    {
        let call = self.resources.clone().map(|p| call(self.aws.clone(), p));
        AtomicResponse::new(Box::pin(
            async move {
                match call {
                    Some(c) => c.await,
                    None => Ok(()),
                }
            }
            .into_actor(self)
            .map(|r, act, _| {
                if let Err(e) = r {
                    act.update(|s| s.error = Some(e.to_string()));
                }
            }),
        ))
    }

    fn failed(&self, e: &casecast_aws::AwsError) {
        tracing::warn!(event = %self.event, error = %e, "aws distribution");
        let message = e.to_string();
        self.update(|s| {
            s.phase = "failed".into();
            s.error = Some(message);
        });
    }
}

/// On or off air.
#[derive(Message)]
#[rtype(result = "()")]
struct Live {
    live: bool,
    preset: Preset,
}

impl Handler<Live> for EventDistribution {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, m: Live, _: &mut Context<Self>) -> Self::Result {
        self.live = m.live;
        let (aws, event, known) = (self.aws.clone(), self.event.clone(), self.resources.clone());
        if m.live {
            self.phase(if known.is_some() { "starting" } else { "provisioning" });
        } else {
            self.phase("stopping");
        }
        AtomicResponse::new(Box::pin(
            async move {
                if !m.live {
                    return match known {
                        Some(p) => aws.stop(&p).await.map(|()| None),
                        None => Ok(None),
                    };
                }
                let p = match known {
                    // Made for the other MediaPackage: the preset changed since.
                    Some(p) if !p.input_id.is_empty() && p.channel_group.is_some() != (m.preset.packaging == Packaging::LowLatencyHlsV2) => {
                        let was = if p.channel_group.is_some() { "ultra-low" } else { "quality or low-latency" };
                        return Err(casecast_aws::AwsError::Other {
                            what: "Provision".into(),
                            message: format!(
                                "this event's channel was made for the {was} preset's MediaPackage, not {}'s; end the event (which tears it down) or set its preset back",
                                m.preset.name
                            ),
                        });
                    }
                    Some(p) if !p.input_id.is_empty() => p,
                    _ => aws.provision(&event, &m.preset).await?,
                };
                aws.start(&p).await?;
                Ok(Some(p))
            }
            .into_actor(self)
            .map(move |r: Result<Option<Provisioned>, casecast_aws::AwsError>, act, _| match r {
                Err(e) => act.failed(&e),
                Ok(None) => {
                    act.phase("stopped");
                    act.update(|s| s.error = None);
                }
                Ok(Some(p)) => {
                    let viewer = act.cloudfront.as_deref().zip(p.playlist_path()).map(|(d, path)| cloudfront::viewer_url(d, &path));
                    let urls = p.rtmp_urls.clone();
                    act.resources = Some(p.clone());
                    act.live_since.get_or_insert_with(crate::state::unix_now);
                    act.update(|s| {
                        s.phase = "running".into();
                        s.error = if urls.is_empty() { Some("the input reports no RTMP URLs to push to".into()) } else { None };
                        s.resources = Some(p);
                        s.viewer_url = viewer;
                    });
                    // The compositor pushes to the input now (with no URLs it keeps
                    // its own outputs).
                    if !urls.is_empty() {
                        let (sfu, event) = (act.sfu.clone(), act.event.clone());
                        actix::spawn(async move {
                            sfu.to_operators(&event, RoomEvent::ProgramOutputs(urls)).await;
                        });
                    }
                }
            }),
        ))
    }
}

/// The event ended.
#[derive(Message)]
#[rtype(result = "()")]
struct End;

impl Handler<End> for EventDistribution {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: End, _: &mut Context<Self>) -> Self::Result {
        self.live = false;
        self.phase("tearing_down");
        let (aws, event, known, started_at) = (self.aws.clone(), self.event.clone(), self.resources.clone(), self.live_since);
        AtomicResponse::new(Box::pin(
            async move {
                // What exists is found again by name (a restarted server knows
                // nothing); nothing is made only to be torn down.
                let p = match known {
                    Some(p) if !p.input_id.is_empty() => Some(p),
                    _ => aws.find(&event).await?,
                };
                let Some(p) = p else { return Ok(None) };
                let now = crate::state::unix_now();
                let job = match started_at {
                    Some(start) if start < now && !p.origin_endpoint_id.is_empty() => {
                        if !p.channel_id.is_empty() {
                            aws.stop(&p).await?;
                        }
                        aws.harvest(&p, &rfc3339(start), &rfc3339(now)).await?
                    }
                    _ => None,
                };
                aws.teardown(&p).await?;
                Ok(job)
            }
            .into_actor(self)
            .map(|r: Result<Option<String>, casecast_aws::AwsError>, act, ctx| match r {
                Err(e) => act.failed(&e),
                Ok(job) => {
                    act.metrics.set(&act.event, None);
                    act.resources = None;
                    act.update(|s| {
                        s.phase = "torn_down".into();
                        s.channel = None;
                        s.error = None;
                        s.harvest_job = job;
                    });
                    // Nothing left to watch.
                    ctx.stop();
                }
            }),
        ))
    }
}

/// Timed metadata (ID3, base64).
#[derive(Message)]
#[rtype(result = "()")]
struct Metadata {
    id: String,
    id3: String,
}

impl Handler<Metadata> for EventDistribution {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, m: Metadata, _: &mut Context<Self>) -> Self::Result {
        self.on_channel(move |aws, p| async move { aws.send_metadata(&p, &m.id, &m.id3).await })
    }
}

/// The operator forces an input.
#[derive(Message)]
#[rtype(result = "()")]
struct SwitchInput {
    backup: bool,
}

impl Handler<SwitchInput> for EventDistribution {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, m: SwitchInput, _: &mut Context<Self>) -> Self::Result {
        let action = crate::state::random_id()[..8].to_string();
        self.on_channel(move |aws, p| async move { aws.switch_input(&p, m.backup, &action).await })
    }
}

/// A channel found at start.
#[derive(Message)]
#[rtype(result = "()")]
struct Adopt(Provisioned);

impl Handler<Adopt> for EventDistribution {
    type Result = ();
    fn handle(&mut self, m: Adopt, _: &mut Context<Self>) {
        if self.resources.is_none() {
            self.resources = Some(m.0.clone());
            self.update(|s| {
                s.phase = "found".into();
                s.resources = Some(m.0);
            });
        }
    }
}

/// Look at the channel: its state for the console, and whether it runs idle.
#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

impl Handler<Tick> for EventDistribution {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) -> Self::Result {
        let Some(p) = self.resources.clone() else { return AtomicResponse::new(Box::pin(actix::fut::ready(()))) };
        let aws = self.aws.clone();
        let idle_limit = Duration::from_secs(aws.config().idle_stop_secs);
        AtomicResponse::new(Box::pin(
            async move { aws.status(&p).await }.into_actor(self).then(move |r, act, _| {
                let mut stop = None;
                match r {
                    Ok(status) => {
                        act.metrics.set(&act.event, Some(&status));
                        let running = status.state == "RUNNING" || status.state == "STARTING";
                        act.update(|s| s.channel = Some(status));
                        if running && !act.live {
                            let since = *act.running_since_idle.get_or_insert_with(Instant::now);
                            if since.elapsed() >= idle_limit {
                                stop = act.resources.clone();
                            }
                        } else {
                            act.running_since_idle = None;
                        }
                    }
                    Err(e) if e.is_not_found() => {
                        act.metrics.set(&act.event, None);
                        act.resources = None;
                        act.update(|s| s.channel = None);
                    }
                    Err(e) => tracing::debug!(event = %act.event, error = %e, "aws: channel not read"),
                }
                let aws = act.aws.clone();
                async move {
                    match stop {
                        Some(p) => Some(aws.stop(&p).await),
                        None => None,
                    }
                }
                .into_actor(act)
                .map(|r, act, _| match r {
                    Some(Ok(())) => {
                        tracing::warn!(event = %act.event, "aws: the channel ran with no live event; stopped");
                        act.running_since_idle = None;
                        act.update(|s| {
                            s.phase = "stopped".into();
                            s.auto_stopped_at = Some(crate::state::unix_now());
                        });
                    }
                    Some(Err(e)) => act.failed(&e),
                    None => {}
                })
            }),
        ))
    }
}

/// Unix seconds as RFC 3339 (UTC), as the harvest job takes times.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
