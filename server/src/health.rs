//! `/healthz` (the process is alive) and `/readyz` (it can do its work: the
//! database, the object store, the media workers, and Redis when configured), for a
//! load balancer, systemd's watchdog scripts or Kubernetes' probes.
//!
//! Readiness is public, like health: it says which part failed, never why (a
//! database URL, a bucket or an address stays in the server's log, at `warn`).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::state::AppState;

/// How long each check may take before it counts as failed.
const CHECK_LIMIT: Duration = Duration::from_secs(3);

pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// A readiness answer is reused for this long: `/readyz` is public, and each check
/// costs a database query and an object-store write.
const REUSE: Duration = Duration::from_secs(5);

/// The last answer and when it was made; the lock also keeps checks one at a time.
static LAST: tokio::sync::Mutex<Option<(std::time::Instant, Readiness)>> = tokio::sync::Mutex::const_new(None);

/// What `/readyz` answers: each check's outcome, and whether all passed.
#[derive(Serialize, Debug, Clone)]
pub(crate) struct Readiness {
    pub ready: bool,
    /// `ok`, `failed`, `timed out` (database, objects, redis), or `not configured`
    /// (redis).
    pub database: &'static str,
    pub objects: &'static str,
    pub media: &'static str,
    pub redis: &'static str,
    /// Media workers answering, of those started.
    pub media_workers: (usize, usize),
}

/// `GET /readyz`: 200 with the checks when every configured part answers, else 503.
/// An answer is reused for [`REUSE`]; concurrent probes wait for the one check.
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let r = {
        let mut last = LAST.lock().await;
        match last.as_ref().filter(|(at, _)| at.elapsed() < REUSE) {
            Some((_, r)) => r.clone(),
            None => {
                let r = readiness(&state).await;
                *last = Some((std::time::Instant::now(), r.clone()));
                r
            }
        }
    };
    let mut answer = if r.ready { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    answer.insert_header(("Cache-Control", "no-store")).json(r)
}

async fn readiness(state: &AppState) -> Readiness {
    let database = check("database", async {
        sqlx::query("SELECT 1").execute(state.cases.db.pool()).await.map(|_| ()).map_err(|e| e.to_string())
    });
    let objects = check("object store", async { state.cases.objects.probe().await.map_err(|e| e.to_string()) });
    let redis = async {
        match state.directory.ping().await {
            None => "not configured",
            Some(r) => outcome("redis", Ok(r)),
        }
    };
    let media = async {
        let started = state.sfu.media_workers();
        let answering = state.sfu.media_workers_answering(CHECK_LIMIT).await;
        if answering < started {
            tracing::warn!(answering, started, "readiness: media workers do not answer");
        }
        (answering, started)
    };
    let redis = tokio::time::timeout(CHECK_LIMIT, redis);
    let (database, objects, redis, (answering, started)) = tokio::join!(database, objects, redis, media);
    let redis = redis.unwrap_or("timed out");
    let media = if answering == started { "ok" } else { "failed" };
    let ready = [database, objects, media].iter().all(|s| *s == "ok") && matches!(redis, "ok" | "not configured");
    Readiness { ready, database, objects, media, redis, media_workers: (answering, started) }
}

/// Runs one check within [`CHECK_LIMIT`].
async fn check(what: &str, f: impl std::future::Future<Output = Result<(), String>>) -> &'static str {
    outcome(what, tokio::time::timeout(CHECK_LIMIT, f).await.map_err(|_| ()))
}

fn outcome(what: &str, r: Result<Result<(), String>, ()>) -> &'static str {
    match r {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(check = what, error = %e, "readiness check failed");
            "failed"
        }
        Err(()) => {
            tracing::warn!(check = what, limit_secs = CHECK_LIMIT.as_secs(), "readiness check timed out");
            "timed out"
        }
    }
}
