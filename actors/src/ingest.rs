//! The DICOM ingest pool: an [`IngestPool`] supervisor on the async side (database,
//! object store, metrics) and a [`SyncArbiter`] of [`IngestWorker`] threads doing the
//! CPU work (de-identification, OCR, rendering), apart from the media actors.
//!
//! Jobs are rows before work starts (the routes that accept uploads write them); the
//! pool claims queued rows as workers come free, each under a lease in the pool's
//! name (30 s by default, [`LEASE`]) that it renews while the job runs, so a restart
//! resumes what was left, and several processes may share one database (the server,
//! `casecast ingest-worker`s on other machines): a job is worked on by one pool at a
//! time, and a pool that dies lets go of its jobs when their leases run out. A job's
//! input is a local file, or an object any machine's pool fetches first
//! ([`casecast_ingest::staging`]). A pool that finds it lost a lease (it could not renew it in time) abandons
//! that job's work: nothing of it is recorded. A job that fails is marked failed
//! with its reason; the others go on. Publishing is idempotent (objects and rows are
//! keyed by the new UIDs), so a job interrupted after publishing and run again shows
//! nothing twice.
//!
//! Progress: a worker reports every step of its job (each frame decoded, read for
//! burned-in text, written, rendered) into a slot it shares with the pool, never
//! waiting; the pool samples the slots a few times a second and writes what changed
//! into the jobs' rows. The row is where the page and the API read it, whichever
//! process (this server, `casecast cases import`, another worker on the same
//! database) runs the job; a step lost to a stop is of no consequence, as the job
//! starts again from zero.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use casecast_ingest::cases::{self, Published, ZipLimits};
use casecast_ingest::deid::Options;
use casecast_ingest::progress::{Stage, Step};
use casecast_ingest::staging::{self, Staged};
use casecast_ingest::store::{Db, Job, NewJob, Objects, StoreError};

use crate::metrics::IngestMetrics;

/// How the pool works.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Worker threads.
    pub workers: usize,
    /// The local staging folder: uploads arrive here, and archives' entries wait here
    /// unless inputs are staged in the object store. Only what lies in it is removed
    /// when its job ends (`cases import` reads files where they are).
    pub staging: PathBuf,
    /// This process's own work area: inputs fetched from the object store
    /// (`fetched/`), work folders (`work/`), and archives expanded before their
    /// entries are staged in the object store (`zip/`). The server's is its staging
    /// folder; an `ingest-worker`'s is its own.
    pub scratch: PathBuf,
    /// Stage archives' entries in the object store, where any machine's pool can take
    /// them (the server stages uploads there too).
    pub stage_in_objects: bool,
    /// Keep originals after processing (they are never served).
    pub keep_originals: bool,
    /// De-identification settings.
    pub deid: Options,
    /// Limits on archives.
    pub zip: ZipLimits,
    /// A job interrupted this many times (the process stopped while it ran) fails.
    pub max_attempts: i64,
    /// At start, queue again the jobs a stop left running and sweep the staging
    /// area: the server does; `casecast cases import`, beside a running server, not.
    pub recover: bool,
    /// This node's name (host and listening address): the pool's leases are in its
    /// name, and at a start with `recover` the jobs an earlier process of the same
    /// node left running are queued again at once.
    pub node: String,
    /// How long a claimed job is the pool's without a renewal; renewed every third
    /// of it. A worker that dies holds its jobs this long.
    pub lease: Duration,
}

/// The default lease.
pub const LEASE: Duration = Duration::from_secs(30);

/// What a worker made of a job.
enum Work {
    Published(Box<Published>),
    Expanded(Vec<PathBuf>),
}

/// The latest step of a job, shared by its worker (which writes it) and the pool
/// (which samples it).
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<Step>>>);

impl Slot {
    fn put(&self, step: Step) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(step);
    }

    fn latest(&self) -> Option<Step> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How often the pool writes the running jobs' latest steps into their rows.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Work for a worker.
#[derive(Message)]
#[rtype(result = "Result<WorkDone, String>")]
struct Process {
    job: Job,
    /// The input, on local disk.
    input: PathBuf,
    progress: Slot,
}

/// A worker's result, with the time it took.
pub struct WorkDone {
    work: Work,
    seconds: f64,
}

/// A worker thread.
pub struct IngestWorker {
    cfg: IngestConfig,
}

impl Actor for IngestWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Process> for IngestWorker {
    type Result = Result<WorkDone, String>;

    fn handle(&mut self, msg: Process, _: &mut SyncContext<Self>) -> Self::Result {
        let started = Instant::now();
        let job = msg.job;
        let slot = msg.progress;
        let mut progress = |step: Step| slot.put(step);
        let input = msg.input.as_path();
        // A decoder that panics on hostile data fails this job, not the thread.
        let work = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job.kind.as_str() {
            "zip" => cases::expand_zip(input, &zip_dir(&self.cfg, &job.id), self.cfg.zip, &mut progress).map(Work::Expanded),
            _ => {
                let work = work_dir(&self.cfg, &job.id);
                let _ = std::fs::remove_dir_all(&work);
                cases::process(input, &work, &self.cfg.deid, &mut progress).map(|p| Work::Published(Box::new(p)))
            }
        }))
        .unwrap_or_else(|_| Err("internal error while processing this file (the worker recovered; see the server log)".into()));
        if work.is_err() {
            let _ = std::fs::remove_dir_all(work_dir(&self.cfg, &job.id));
            let _ = std::fs::remove_dir_all(zip_dir(&self.cfg, &job.id));
        }
        let work = work?;
        Ok(WorkDone { work, seconds: started.elapsed().as_secs_f64() })
    }
}

/// Wakes the pool: new jobs were recorded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// A job being worked on, as the pool follows it.
struct Running {
    slot: Slot,
    /// The step last written into the job's row.
    written: Option<Step>,
    /// A write of its row is under way.
    writing: bool,
}

/// The pool's supervisor.
pub struct IngestPool {
    db: Db,
    objects: Objects,
    cfg: IngestConfig,
    metrics: Option<IngestMetrics>,
    workers: Option<Addr<IngestWorker>>,
    /// Jobs being worked on: their progress slots.
    running: HashMap<String, Running>,
    claiming: bool,
    /// The name its leases are in: the node's, this process's and this pool's.
    owner: String,
}

impl IngestPool {
    /// A pool over `db` and `objects`; start it with [`Actor::start`].
    pub fn new(db: Db, objects: Objects, cfg: IngestConfig, metrics: Option<IngestMetrics>) -> IngestPool {
        let owner = lease_owner(&cfg.node);
        IngestPool { db, objects, cfg, metrics, workers: None, running: HashMap::new(), claiming: false, owner }
    }

    /// The name its leases are in.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims as many queued jobs as there are idle workers and hands them out.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        // As many as there are workers: a claimed job is a started one, so its
        // attempts count only what really ran.
        let free = self.cfg.workers.saturating_sub(self.running.len());
        if free == 0 || self.claiming {
            return;
        }
        self.claiming = true;
        let (db, owner, max_attempts, lease) = (self.db.clone(), self.owner.clone(), self.cfg.max_attempts, self.cfg.lease);
        ctx.spawn(async move { db.claim(&owner, free, lease, max_attempts).await }.into_actor(self).map(|claimed, pool, ctx| {
            pool.claiming = false;
            match claimed {
                Ok(jobs) => {
                    for job in jobs {
                        pool.start_job(job, ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim ingest jobs"),
            }
        }));
    }

    fn start_job(&mut self, job: Job, ctx: &mut Context<Self>) {
        let Some(workers) = self.workers.clone() else { return };
        tracing::info!(job = %job.id, kind = %job.kind, bytes = job.bytes, attempt = job.attempts, "ingest job started");
        let progress = Slot::default();
        self.running.insert(job.id.clone(), Running { slot: progress.clone(), written: None, writing: false });
        let (db, objects, cfg, metrics) = (self.db.clone(), self.objects.clone(), self.cfg.clone(), self.metrics.clone());
        let owner = self.owner.clone();
        let fut = async move {
            let outcome = run_job(&workers, &db, &objects, &cfg, &owner, &job, &progress).await;
            let _ = tokio::fs::remove_file(fetched_path(&cfg, &job.id)).await;
            let outcome = match outcome {
                Ok(done) => Ok(done),
                Err(Finish::LeaseLost) => {
                    tracing::warn!(job = %job.id, "the job's lease was lost to another worker: this work is abandoned");
                    return job.id;
                }
                // The store may be back soon: the job waits in the queue, its
                // input kept, unless it has been tried enough.
                Err(Finish::Retry(why)) if job.attempts < cfg.max_attempts => {
                    tracing::warn!(job = %job.id, error = %why, "the job is queued again");
                    if let Err(e) = db.requeue(&owner, &job.id, &why).await {
                        tracing::error!(job = %job.id, error = %e, "cannot queue the job again");
                    }
                    return job.id;
                }
                Err(Finish::Retry(why) | Finish::Failed(why)) => Err(why),
            };
            if let Some(m) = &metrics {
                m.bytes.inc_by(job.bytes.max(0) as u64);
            }
            match outcome {
                Ok((seconds, (published, read))) => {
                    tracing::info!(job = %job.id, seconds, frames = published, frames_read = read, "ingest job done");
                    if let Some(m) = &metrics {
                        m.finished.with_label_values(&["done"]).inc();
                        m.job_seconds.observe(seconds);
                        m.frames.with_label_values(&["published"]).inc_by(published as u64);
                        m.frames.with_label_values(&["read"]).inc_by(read as u64);
                    }
                }
                Err(why) => {
                    tracing::warn!(job = %job.id, error = %why, "ingest job failed");
                    match db.job_failed(&owner, &job.id, &why).await {
                        Ok(()) => {}
                        Err(StoreError::LeaseLost) => {
                            tracing::warn!(job = %job.id, "the job's lease was lost to another worker: its failure is not recorded");
                            return job.id;
                        }
                        Err(e) => tracing::error!(job = %job.id, error = %e, "cannot record the job's failure"),
                    }
                    if let Some(m) = &metrics {
                        m.finished.with_label_values(&["failed"]).inc();
                    }
                }
            }
            remove_staged(&objects, &cfg, &job).await;
            job.id
        };
        ctx.spawn(fut.into_actor(self).map(|id, pool, ctx| {
            pool.running.remove(&id);
            pool.pump(ctx);
        }));
    }

    /// Writes the running jobs' latest steps into their rows: those that changed
    /// since last written, one write at a time per job (a slow database makes the
    /// writes fewer, not queued).
    fn write_progress(&mut self, ctx: &mut Context<Self>) {
        let mut writes = Vec::new();
        for (id, r) in self.running.iter_mut() {
            let Some(step) = r.slot.latest() else { continue };
            if r.writing || r.written == Some(step) {
                continue;
            }
            (r.writing, r.written) = (true, Some(step));
            writes.push((id.clone(), step));
        }
        for (id, step) in writes {
            let (db, owner) = (self.db.clone(), self.owner.clone());
            ctx.spawn(
                async move {
                    if let Err(e) = db.set_progress(&owner, &id, &step).await {
                        tracing::debug!(job = %id, error = %e, "cannot record a job's progress");
                    }
                    id
                }
                .into_actor(self)
                .map(|id, pool, _| {
                    if let Some(r) = pool.running.get_mut(&id) {
                        r.writing = false;
                    }
                }),
            );
        }
    }

    fn refresh_counts(&mut self, ctx: &mut Context<Self>) {
        let (Some(m), db) = (self.metrics.clone(), self.db.clone()) else { return };
        ctx.spawn(
            async move {
                if let Ok(counts) = db.job_counts().await {
                    for status in ["queued", "running", "done", "failed"] {
                        let n = counts.iter().find(|(s, _)| s == status).map(|(_, n)| *n).unwrap_or(0);
                        m.jobs.with_label_values(&[status]).set(n);
                    }
                }
            }
            .into_actor(self),
        );
    }

    /// Renews the leases of the jobs it works on. A job whose lease was lost stays
    /// in `running` until its worker is done (a worker thread cannot be stopped
    /// midway); what it made is then not recorded.
    fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let (db, owner, lease) = (self.db.clone(), self.owner.clone(), self.cfg.lease);
        ctx.spawn(
            async move {
                match db.renew(&owner, &ids, lease).await {
                    Ok(lost) => {
                        for id in lost {
                            tracing::warn!(job = %id, "the job's lease was lost (not renewed in time): its work will be abandoned");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the ingest jobs' leases"),
                }
            }
            .into_actor(self),
        );
    }
}

/// A name for a pool's leases: its node's, then this process's and a random part.
fn lease_owner(node: &str) -> String {
    format!("{node}/{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// Why a job did not end done.
enum Finish {
    /// The lease was lost: another worker may have the job.
    LeaseLost,
    /// A store failed (the reason): the job may be tried again.
    Retry(String),
    /// The job's input cannot be made anything of (the reason).
    Failed(String),
}

impl From<StoreError> for Finish {
    fn from(e: StoreError) -> Finish {
        match e {
            StoreError::LeaseLost => Finish::LeaseLost,
            e => Finish::Retry(format!("cannot publish: {e}")),
        }
    }
}

/// Where a job's input fetched from the object store is kept while it runs.
fn fetched_path(cfg: &IngestConfig, job_id: &str) -> PathBuf {
    cfg.scratch.join("fetched").join(job_id)
}

/// A job's work folder.
fn work_dir(cfg: &IngestConfig, job_id: &str) -> PathBuf {
    cfg.scratch.join("work").join(job_id)
}

/// Where an archive is expanded: beside the uploads when its entries wait on local
/// disk, in this process's scratch when they go to the object store.
fn zip_dir(cfg: &IngestConfig, job_id: &str) -> PathBuf {
    if cfg.stage_in_objects { cfg.scratch.join("zip") } else { cfg.staging.join("zip") }.join(job_id)
}

/// Runs a claimed job: its input fetched if staged in the object store, worked on by
/// a worker thread, the result published. Answers (seconds of work, (frames
/// published, frames read for text)).
async fn run_job(
    workers: &Addr<IngestWorker>,
    db: &Db,
    objects: &Objects,
    cfg: &IngestConfig,
    owner: &str,
    job: &Job,
    progress: &Slot,
) -> Result<(f64, (usize, usize)), Finish> {
    let input = match staging::parse(&job.staging) {
        Staged::File(path) => path.to_path_buf(),
        Staged::Object(key) => {
            let path = fetched_path(cfg, &job.id);
            match objects.get_to_file(key, &path).await {
                Ok(_) => path,
                Err(e) if e.is_not_found() => return Err(Finish::Failed("the staged upload is gone from the object store".into())),
                Err(e) => return Err(Finish::Retry(format!("cannot fetch the staged upload: {e}"))),
            }
        }
    };
    let done = workers
        .send(Process { job: job.clone(), input, progress: progress.clone() })
        .await
        .unwrap_or_else(|e| Err(format!("the worker stopped: {e}")))
        .map_err(Finish::Failed)?;
    let last = progress.latest();
    let (frames, at) = (last.map_or(0, |s| s.frames), last.map_or(0.0, |s| s.fraction));
    progress.put(Step::whole(Stage::Publishing, frames, at.max(cases::PUBLISHING_AT)));
    let seconds = done.seconds;
    Ok((seconds, finish(db, objects, cfg, owner, job, done).await?))
}

/// Publishes a worker's result and records the job done. Returns (frames published,
/// frames read for text).
async fn finish(db: &Db, objects: &Objects, cfg: &IngestConfig, owner: &str, job: &Job, done: WorkDone) -> Result<(usize, usize), Finish> {
    match done.work {
        Work::Expanded(files) => {
            let mut jobs = Vec::with_capacity(files.len());
            let staged = async {
                for (i, f) in files.iter().enumerate() {
                    let id = format!("{}-{}", job.id, i + 1);
                    // Keyed by the entry's job id: an archive expanded again (its
                    // lease lost midway) stages each entry in the same place.
                    let staging = if cfg.stage_in_objects { staging::put(objects, &id, f).await? } else { f.display().to_string() };
                    jobs.push(NewJob {
                        id,
                        room: job.room.clone(),
                        source: "zip".into(),
                        kind: "dicom".into(),
                        bytes: std::fs::metadata(f).map(|m| m.len() as i64).unwrap_or(0),
                        staging,
                        batch: Some(job.batch.clone().unwrap_or_else(|| job.id.clone())),
                    });
                }
                db.zip_expanded(owner, &job.id, &jobs).await
            }
            .await;
            if cfg.stage_in_objects {
                let _ = std::fs::remove_dir_all(zip_dir(cfg, &job.id));
            }
            staged?;
            Ok((0, 0))
        }
        Work::Published(p) => {
            let i = &p.instance;
            let key = format!("{}/{}/{}/{}.dcm", job.room, i.study_uid, i.series_uid, i.sop_uid);
            let publish = async {
                // Still this pool's job? (A worker that outlived its lease publishes
                // nothing.)
                if !db.renew(owner, std::slice::from_ref(&job.id), cfg.lease).await?.is_empty() {
                    return Err(StoreError::LeaseLost);
                }
                for (n, frame) in p.frames.iter().enumerate() {
                    let fk = casecast_ingest::store::frame_key(&key, n as i64 + 1, &i.rendered);
                    objects.put_file(&fk, frame).await?;
                }
                objects.put_file(&key, &p.dicom).await?;
                db.put_instance(&job.room, i, &p.dicom_json, &key, &job.id).await?;
                db.job_done(owner, &job.id, Some(&i.study_uid)).await
            };
            let result = publish.await.map_err(Finish::from);
            let _ = std::fs::remove_dir_all(work_dir(cfg, &job.id));
            result.map(|_| (p.frames.len(), p.frames_read))
        }
    }
}

/// Removes a finished job's staged input, unless originals are kept.
async fn remove_staged(objects: &Objects, cfg: &IngestConfig, job: &Job) {
    if cfg.keep_originals {
        return;
    }
    let path = match staging::parse(&job.staging) {
        Staged::Object(key) => {
            if let Err(e) = objects.delete(key).await {
                tracing::warn!(job = %job.id, error = %e, "cannot remove the job's staged input from the object store (removed at the next start)");
            }
            return;
        }
        Staged::File(path) => path,
    };
    // Only what lies in staging is ours to remove (`cases import` reads files in place).
    if path.starts_with(&cfg.staging) {
        let _ = std::fs::remove_file(path);
        if job.kind == "zip" {
            // The expanded files are jobs of their own; the folder goes when empty.
        } else if let Some(parent) = path.parent()
            && parent.parent().is_some_and(|p| p.ends_with("zip"))
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl Actor for IngestPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.workers.is_none() {
            let cfg = self.cfg.clone();
            self.workers = Some(SyncArbiter::start(cfg.workers.max(1), move || IngestWorker { cfg: cfg.clone() }));
        }
        ctx.run_interval(PROGRESS_EVERY, |pool, ctx| pool.write_progress(ctx));
        ctx.run_interval(self.cfg.lease / 3, |pool, ctx| pool.renew_leases(ctx));
        let (db, objects, cfg, owner) = (self.db.clone(), self.objects.clone(), self.cfg.clone(), self.owner.clone());
        if !cfg.recover {
            ctx.run_interval(Duration::from_secs(1), |pool, ctx| pool.pump(ctx));
            self.pump(ctx);
            return;
        }
        // Work folders and fetched inputs of jobs a stop interrupted: their jobs start
        // again from scratch.
        for dir in ["work", "fetched"] {
            let _ = std::fs::remove_dir_all(cfg.scratch.join(dir));
        }
        ctx.wait(
            async move {
                // This node's earlier process is gone: its jobs are queued again now,
                // not when their leases run out.
                match db.recover(&format!("{}/", cfg.node), &owner, cfg.max_attempts).await {
                    Ok((0, 0)) => {}
                    Ok((requeued, failed)) => tracing::info!(requeued, failed, "ingest jobs interrupted by the last stop"),
                    Err(e) => tracing::error!(error = %e, "cannot requeue interrupted ingest jobs"),
                }
                if !cfg.keep_originals
                    && let Ok(paths) = db.finished_staging().await
                {
                    for p in paths.iter().map(Path::new).filter(|p| p.starts_with(&cfg.staging) && p.exists()) {
                        let _ = std::fs::remove_file(p);
                    }
                }
                if !cfg.keep_originals {
                    sweep_staged_objects(&db, &objects).await;
                }
            }
            .into_actor(self),
        );
        // Uploads abandoned for a week are forgotten, their parts removed.
        ctx.run_interval(Duration::from_secs(3600), |pool, ctx| {
            let (db, staging) = (pool.db.clone(), pool.cfg.staging.clone());
            ctx.spawn(
                async move {
                    let week = Duration::from_secs(7 * 86400);
                    let week_ago = casecast_ingest::store::unix_now() - week.as_secs() as i64;
                    let Ok(ids) = db.stale_uploads(week_ago).await else { return };
                    let mut removed = 0;
                    for id in &ids {
                        let part = staging.join("uploads").join(format!("{id}.part"));
                        // A week without a byte, not a week since it began.
                        let idle = std::fs::metadata(&part).and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > week).unwrap_or(true);
                        if idle && db.forget_incomplete_upload(id).await.unwrap_or(false) {
                            let _ = std::fs::remove_file(&part);
                            removed += 1;
                        }
                    }
                    if removed > 0 {
                        tracing::info!(count = removed, "abandoned uploads removed");
                    }
                }
                .into_actor(pool),
            );
        });
        // Other processes (`casecast cases import`, a second server) may add jobs.
        ctx.run_interval(Duration::from_secs(1), |pool, ctx| {
            pool.pump(ctx);
            pool.refresh_counts(ctx);
        });
        self.pump(ctx);
    }
}

/// Removes the inputs staged in the object store whose jobs are over (left by a stop
/// between a job's end and their removal), and those no job was recorded for within
/// an hour (a stop between staging and recording).
async fn sweep_staged_objects(db: &Db, objects: &Objects) {
    let staged = match objects.list(staging::PREFIX).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the inputs staged in the object store");
            return;
        }
    };
    let hour_ago = casecast_ingest::store::unix_now() - 3600;
    let mut removed = 0;
    for (key, modified) in staged {
        let Some(id) = key.strip_prefix(staging::PREFIX).map(|k| k.trim_start_matches('/')) else { continue };
        let over = match db.job(id).await {
            Ok(Some(job)) => job.status == "done" || job.status == "failed",
            Ok(None) => modified < hour_ago,
            Err(_) => false,
        };
        if over && objects.delete(&key).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(count = removed, "staged inputs of finished jobs removed from the object store");
    }
}

/// Stops the pool taking jobs and puts those it runs back in the queue, for another
/// pool to take at once (not when their leases run out): a worker being stopped.
/// Answers how many were put back.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Release;

impl Handler<Release> for IngestPool {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Release, _: &mut Context<Self>) -> Self::Result {
        self.cfg.workers = 0;
        let ids: Vec<String> = self.running.keys().cloned().collect();
        let (db, owner) = (self.db.clone(), self.owner.clone());
        Box::pin(
            async move {
                let mut released = 0;
                for id in ids {
                    if db.requeue(&owner, &id, "its worker was stopped; queued again").await.is_ok() {
                        released += 1;
                    }
                }
                released
            }
            .into_actor(self),
        )
    }
}

/// Restarted by its [`Supervisor`] if it stops: under a new name, so that what was
/// running is queued again by the recovery that `started` does.
impl actix::Supervised for IngestPool {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.running.clear();
        self.claiming = false;
        self.owner = lease_owner(&self.cfg.node);
    }
}

impl Handler<Wake> for IngestPool {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}
