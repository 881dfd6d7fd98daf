//! `casecast ingest-worker`: the DICOM ingest pool without the server, taking jobs
//! from the cases database the server records them in. Run beside the server (one
//! machine, any database) or on other machines: there the database is PostgreSQL,
//! the object store S3, and the server stages uploads in it
//! (`cases.stage_in_objects`), so any worker can take any job.
//!
//! A worker claims jobs under leases it renews (`cases.lease_secs`); one that dies
//! lets its jobs go when their leases run out, and another worker takes them. Asked
//! to stop (SIGINT, SIGTERM), it puts its running jobs back in the queue at once.
//!
//! With `metrics_listen` set it serves its `/metrics` there (no token: an address on
//! the monitoring network): the jobs it finished, bytes, frames, job durations, and
//! the process's CPU and memory.
//!
//! Its secret must be the server's: UIDs and patient pseudonyms are keyed by it, and
//! a worker with another would give one patient two pseudonyms. The server records a
//! name for its secret in the database ([`crate::cases::DEID_KEY_ID`]); a worker whose
//! secret has another name refuses to start.

use std::path::{Path, PathBuf};

use actix::Actor;
use anyhow::{Context, bail};
use casecast_actors::ingest::{IngestConfig, IngestPool, Release};
use casecast_ingest::store::{Db, Objects};

use crate::config::Config;

/// Runs the worker until asked to stop.
pub fn run(config: Config) -> anyhow::Result<()> {
    crate::files::private_dir(&config.data_dir).with_context(|| format!("cannot make {} private", config.data_dir.display()))?;
    if config.secret.is_none() && !config.data_dir.join("secret").exists() {
        bail!(
            "an ingest worker needs the server's secret: set `secret` in its config file or CASECAST_SECRET, \
             or copy the server's {} here",
            config.data_dir.join("secret").display()
        );
    }
    let scratch = scratch_dir(&config.data_dir)?;
    let node = format!("{}/ingest-worker", config.node_name().split('@').next().unwrap_or("localhost"));
    let cfg = IngestConfig { scratch: scratch.clone(), recover: false, node, ..config.ingest_config()? };
    let result = actix_web::rt::System::new().block_on(async move {
        let url = config.cases_database();
        let db = Db::connect(&url).await.with_context(|| format!("cannot open the cases database {}", casecast_ingest::store::shown_url(&url)))?;
        let key = casecast_ingest::uid::key_id(&cfg.deid.secret);
        match db.setting(crate::cases::DEID_KEY_ID).await? {
            Some(k) if k == key => {}
            Some(_) => bail!(
                "this worker's secret is not the server's: it would give patients other pseudonyms. \
                 Give it the server's (`secret` in its config file, CASECAST_SECRET, or the server's <data_dir>/secret)"
            ),
            None => bail!("no server has opened this cases database yet: start the server first, then its workers"),
        }
        let objects = Objects::open(&config.cases_objects(), config.cases.s3_endpoint.as_deref()).context("cannot open the cases object store")?;
        let shared = url.starts_with("postgres");
        if !shared {
            tracing::warn!("the cases database is SQLite: this worker shares jobs only with a server on this machine using the same file");
        }
        let metrics = casecast_actors::Metrics::new();
        if let Some(addr) = config.metrics_listen {
            serve_metrics(addr, metrics.registry.clone())?;
        }
        let pool = IngestPool::new(db, objects, cfg.clone(), Some(metrics.ingest.clone()));
        tracing::info!(owner = pool.owner(), threads = cfg.workers, lease_secs = cfg.lease.as_secs(), "ingest worker started");
        let pool = pool.start();
        crate::shutdown_requested().await;
        let released = pool.send(Release).await.unwrap_or(0);
        tracing::info!(released, "ingest worker stopped; its running jobs are queued again");
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Serves `/metrics` (the registry and the process's figures) on `addr`.
fn serve_metrics(addr: std::net::SocketAddr, registry: prometheus::Registry) -> anyhow::Result<()> {
    let server = actix_web::HttpServer::new(move || {
        let registry = registry.clone();
        actix_web::App::new().route(
            "/metrics",
            actix_web::web::get().to(move || {
                let registry = registry.clone();
                async move {
                    use prometheus::Encoder;
                    let mut buf = Vec::new();
                    if prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf).is_err() {
                        return actix_web::HttpResponse::InternalServerError().finish();
                    }
                    buf.extend(crate::process::render().into_bytes());
                    actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(buf)
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("cannot listen for metrics on {addr} (metrics_listen)"))?
    .run();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, "metrics served");
    Ok(())
}

/// This process's work area, `<data_dir>/cases/worker/<pid>`; those of workers that
/// are gone (killed before they could tidy up) are removed first: they may hold
/// originals.
fn scratch_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = data_dir.join("cases").join("worker");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    for e in std::fs::read_dir(&root)?.flatten() {
        let gone = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
