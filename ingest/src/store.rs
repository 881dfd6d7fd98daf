//! Where cases are kept: metadata rows through sqlx (SQLite by default, PostgreSQL by
//! configuration; the same SQL text for both, through sqlx's `Any` driver) and
//! objects through `object_store` (a local directory by default, S3 by configuration).
//!
//! Jobs are rows before any work starts. A worker claims one with a lease (its owner
//! and an expiry), renews the lease while it works, and every update it makes of the
//! job is guarded by the owner: an update that touches no row means the lease was
//! lost to another worker ([`StoreError::LeaseLost`]), and the work is abandoned.
//! On PostgreSQL the claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
//! LOCKED)`, so workers on many machines never wait on each other's rows; SQLite
//! (one machine) serializes writers, and the claim is a conditional update per row.
//! A job whose lease ran out (its worker died) is claimed again by another worker.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::progress::Step;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The object store refused or failed.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A URL or setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// The job's lease ran out and another worker may have it: this worker's work
    /// on it is abandoned.
    #[error("the job's lease was lost (another worker may have it)")]
    LeaseLost,
}

impl StoreError {
    /// The object asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Objects(object_store::Error::NotFound { .. }))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A database or store URL as it may be shown: without its password
/// (`postgres://user:secret@host/db` → `postgres://user:***@host/db`).
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The schema, in order; each runs once, recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "cases", include_str!("../migrations/0001_cases.sql")),
    (2, "patient id", include_str!("../migrations/0002_patient_id.sql")),
    (3, "upload owner", include_str!("../migrations/0003_upload_owner.sql")),
    (4, "job progress, uploaders, study titles", include_str!("../migrations/0004_progress_and_library.sql")),
    (5, "job leases", include_str!("../migrations/0005_job_leases.sql")),
    (6, "settings", include_str!("../migrations/0006_settings.sql")),
];

/// The metadata database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    /// PostgreSQL (else SQLite).
    postgres: bool,
}

impl Db {
    /// Connects to `url` (`sqlite:///path/cases.db`, a bare path to an SQLite file, or
    /// `postgres://…`) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let url = if url.contains("://") || url.starts_with("sqlite:") {
            url.to_string()
        } else {
            if let Some(parent) = Path::new(url).parent() {
                std::fs::create_dir_all(parent)?;
            }
            format!("sqlite://{url}?mode=rwc")
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Readers do not wait for the writer; a writer waits for another.
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let db = Db { pool, postgres: !sqlite };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        self.apply_migrations("schema_migrations", MIGRATIONS).await
    }

    /// The connection pool, for another part of the server keeping its own tables in
    /// the same database (the events); it brings them up with [`Db::apply_migrations`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies `migrations` (version, description, SQL) not yet recorded in `table`.
    pub async fn apply_migrations(&self, table: &'static str, migrations: &[(i64, &str, &str)]) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )))
        .execute(&self.pool)
        .await?;
        for &(version, description, sql) in migrations {
            let done: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT version FROM {table} WHERE version = $1")))
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut *tx).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {table} (version, description, applied_at) VALUES ($1, $2, $3)")))
                .bind(version)
                .bind(description)
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(table, version, description, "database migrated");
        }
        Ok(())
    }

    // Settings shared by every process on the database.

    /// A setting, if recorded.
    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(&self.pool).await?)
    }

    /// Records a setting (replacing what was).
    pub async fn put_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // Uploads (tus).

    /// Records a new upload.
    pub async fn create_upload(&self, u: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, room, kind, batch, length, job_id, created_at, owner, uploader) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8)",
        )
        .bind(&u.id)
        .bind(&u.room)
        .bind(&u.kind)
        .bind(&u.batch)
        .bind(u.length)
        .bind(u.created_at)
        .bind(&u.owner)
        .bind(&u.uploader)
        .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What unfinished uploads hold now: `owner`'s count and declared bytes, and
    /// everyone's declared bytes.
    pub async fn reserved(&self, owner: &str) -> Result<Reserved> {
        let (open, bytes): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(length), 0) AS BIGINT) FROM uploads WHERE owner = $1 AND job_id IS NULL")
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
        let all: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(length), 0) AS BIGINT) FROM uploads WHERE job_id IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(Reserved { owner_open: open as u64, owner_bytes: bytes as u64, all_bytes: all as u64 })
    }

    /// An upload by id.
    pub async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query("SELECT id, room, kind, batch, length, job_id, created_at, owner, uploader FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<Upload> {
            Ok(Upload {
                id: r.try_get("id")?,
                room: r.try_get("room")?,
                kind: r.try_get("kind")?,
                batch: r.try_get("batch")?,
                length: r.try_get("length")?,
                job_id: r.try_get("job_id")?,
                created_at: r.try_get("created_at")?,
                owner: r.try_get("owner")?,
                uploader: r.try_get("uploader")?,
            })
        })
        .transpose()
    }

    /// Forgets an upload.
    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Uploads never completed and created before `before` (unix seconds).
    pub async fn stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM uploads WHERE job_id IS NULL AND created_at < $1")
            .bind(before)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Forgets an upload if it is still incomplete; whether it did.
    pub async fn forget_incomplete_upload(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM uploads WHERE id = $1 AND job_id IS NULL").bind(id).execute(&self.pool).await?.rows_affected();
        Ok(n == 1)
    }

    /// Turns a complete upload into a job, once: the upload row records the job
    /// (written first, so the transaction holds the write lock from its start and a
    /// second caller finds the job already made).
    pub async fn complete_upload(&self, upload: &Upload, job: &NewJob) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query("UPDATE uploads SET job_id = $1 WHERE id = $2 AND job_id IS NULL")
            .bind(&job.id)
            .bind(&upload.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            let existing: Option<Option<String>> =
                sqlx::query_scalar("SELECT job_id FROM uploads WHERE id = $1").bind(&upload.id).fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            return existing.flatten().ok_or_else(|| StoreError::Config("the upload was cancelled".into()));
        }
        insert_job(&mut tx, job, &upload.uploader).await?;
        tx.commit().await?;
        Ok(job.id.clone())
    }

    // Jobs.

    /// Records a job, queued.
    pub async fn insert_job(&self, job: &NewJob) -> Result<()> {
        self.insert_job_from(job, "").await
    }

    /// Records a job, queued, sent by `uploader` (a token's display name).
    pub async fn insert_job_from(&self, job: &NewJob, uploader: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_job(&mut tx, job, uploader).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records several jobs in one transaction (a ZIP's files).
    pub async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for job in jobs {
            insert_job(&mut tx, job, "").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the files of an expanded archive as jobs (sent by whoever sent the
    /// archive) and the archive's job as done, together: a crash leaves either both
    /// or neither.
    pub async fn zip_expanded(&self, owner: &str, zip_job: &str, jobs: &[NewJob]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // The archive's job first: without its lease, nothing is added.
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', progress = 1, stage = '', lease_owner = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'running' AND lease_owner = $3",
        )
        .bind(unix_now())
        .bind(zip_job)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost);
        }
        let uploader: Option<String> = sqlx::query_scalar("SELECT uploader FROM jobs WHERE id = $1").bind(zip_job).fetch_optional(&mut *tx).await?;
        for job in jobs {
            insert_job(&mut tx, job, uploader.as_deref().unwrap_or("")).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Staged inputs of finished jobs still on disk (left by a stop between the
    /// job's end and the file's removal).
    pub async fn finished_staging(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT staging FROM jobs WHERE status IN ('done', 'failed') ORDER BY updated_at DESC LIMIT 10000")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Takes up to `n` jobs for `owner`, oldest first: queued ones, and running ones
    /// whose lease ran out (their worker died). Each is marked running under a lease
    /// of `ttl`; one whose lease ran out `max_attempts` times fails instead (a file
    /// that takes its worker down must not take every worker down in turn).
    pub async fn claim(&self, owner: &str, n: usize, ttl: Duration, max_attempts: i64) -> Result<Vec<Job>> {
        let now = unix_now();
        let until = now + ttl.as_secs().max(1) as i64;
        sqlx::query(
            "UPDATE jobs SET status = 'failed', stage = '', lease_owner = NULL, error = $1, updated_at = $2 \
             WHERE status = 'running' AND lease_expires_at < $2 AND attempts >= $3",
        )
        .bind(format!("interrupted {max_attempts} times while being processed; not tried again"))
        .bind(now)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        const CLAIMABLE: &str = "status = 'queued' OR (status = 'running' AND lease_expires_at < $3)";
        const TAKE: &str = "SET status = 'running', attempts = attempts + 1, lease_owner = $1, lease_expires_at = $2, \
             progress = 0, stage = '', frame = 0, frames = 0, updated_at = $3";
        let ids: Vec<String> = if self.postgres {
            // One statement: rows another worker is claiming are skipped, not waited on.
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs {TAKE} WHERE id IN (SELECT id FROM jobs WHERE {CLAIMABLE} \
                 ORDER BY created_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id"
            )))
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(n as i64)
            .fetch_all(&self.pool)
            .await?
        } else {
            let candidates: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < $1) \
                 ORDER BY created_at, id LIMIT $2",
            )
            .bind(now)
            .bind(n as i64)
            .fetch_all(&self.pool)
            .await?;
            let mut taken = Vec::new();
            for id in candidates {
                // Still claimable when written: SQLite serializes writers.
                let done = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE jobs {TAKE} WHERE id = $4 AND ({CLAIMABLE})")))
                    .bind(owner)
                    .bind(until)
                    .bind(now)
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 1 {
                    taken.push(id);
                }
            }
            taken
        };
        let mut claimed = Vec::new();
        for id in ids {
            if let Some(job) = self.job(&id).await? {
                claimed.push(job);
            }
        }
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    /// Renews `owner`'s leases on `ids` for `ttl`. Answers the jobs whose lease was
    /// lost (it ran out and another worker claimed the job, or the job ended).
    pub async fn renew(&self, owner: &str, ids: &[String], ttl: Duration) -> Result<Vec<String>> {
        let until = unix_now() + ttl.as_secs().max(1) as i64;
        let mut lost = Vec::new();
        for id in ids {
            let done = sqlx::query("UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3")
                .bind(until)
                .bind(id)
                .bind(owner)
                .execute(&self.pool)
                .await?;
            if done.rows_affected() == 0 {
                lost.push(id.clone());
            }
        }
        Ok(lost)
    }

    /// At a server's start: the jobs an earlier process of this node (`node`, the
    /// start of its owners' names) left running are queued again at once (that
    /// process is gone), unless they were interrupted `max_attempts` times already.
    /// Other workers' jobs are left to their leases. Returns (requeued, failed).
    pub async fn recover(&self, node: &str, owner: &str, max_attempts: i64) -> Result<(u64, u64)> {
        const LEFT: &str =
            "status = 'running' AND (lease_owner IS NULL OR (substr(lease_owner, 1, length($1)) = $1 AND lease_owner <> $2))";
        let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'failed', lease_owner = NULL, error = $3, updated_at = $4 WHERE {LEFT} AND attempts >= $5"
        )))
        .bind(node)
        .bind(owner)
        .bind(format!("interrupted {max_attempts} times while being processed; not tried again"))
        .bind(unix_now())
        .bind(max_attempts)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let requeued = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, progress = 0, stage = '', frame = 0, frames = 0, updated_at = $3 WHERE {LEFT}"
        )))
        .bind(node)
        .bind(owner)
        .bind(unix_now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((requeued, failed))
    }

    /// Puts `owner`'s running job back in the queue (its work could not be published
    /// for a reason that may pass: a store unreachable).
    pub async fn requeue(&self, owner: &str, id: &str, why: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_owner = NULL, progress = 0, stage = '', frame = 0, frames = 0, error = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'running' AND lease_owner = $4",
        )
        .bind(why)
        .bind(unix_now())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    /// Records a running job's progress: what it is doing, on which frame of how many,
    /// and the fraction done (held below 1 until the job is done).
    pub async fn set_progress(&self, owner: &str, id: &str, step: &Step) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET progress = $1, stage = $2, frame = $3, frames = $4, updated_at = $5 \
             WHERE id = $6 AND status = 'running' AND lease_owner = $7",
        )
        .bind(step.fraction.clamp(0.0, 0.99))
        .bind(step.stage.as_str())
        .bind(step.frame.min(i64::MAX as u64) as i64)
        .bind(step.frames.min(i64::MAX as u64) as i64)
        .bind(unix_now())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    /// Marks `owner`'s job done.
    pub async fn job_done(&self, owner: &str, id: &str, study_uid: Option<&str>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', progress = 1, stage = '', frame = frames, error = NULL, study_uid = $1, \
             lease_owner = NULL, updated_at = $2 WHERE id = $3 AND status = 'running' AND lease_owner = $4",
        )
        .bind(study_uid)
        .bind(unix_now())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    /// Marks `owner`'s job failed, with the reason (its frame stays: how far it got).
    pub async fn job_failed(&self, owner: &str, id: &str, error: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', stage = '', error = $1, lease_owner = NULL, updated_at = $2 \
             WHERE id = $3 AND status = 'running' AND lease_owner = $4",
        )
        .bind(error)
        .bind(unix_now())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| Job::from_row(&r)).transpose()
    }

    /// A room's jobs, newest first.
    pub async fn jobs(&self, room: &str, limit: usize) -> Result<Vec<Job>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE room = $1 ORDER BY created_at DESC, id DESC LIMIT $2")))
            .bind(room)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Job::from_row).collect()
    }

    /// The jobs of one batch (an import, an upload's folder), with those made of its
    /// archives.
    pub async fn batch_jobs(&self, room: &str, batch: &str) -> Result<Vec<Job>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE room = $1 AND batch = $2 ORDER BY created_at, id")))
            .bind(room)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Job::from_row).collect()
    }

    /// Jobs by status, over all rooms (for metrics).
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }

    // Instances.

    /// Publishes an instance (again: a job done twice overwrites, it does not add).
    /// The first instance of a study enters it in the library, with the sender of its
    /// job as the study's uploader.
    pub async fn put_instance(&self, room: &str, i: &Instance, dicom_json: &str, object_key: &str, job_id: &str) -> Result<()> {
        let info = serde_json::to_string(i).map_err(|e| StoreError::Config(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM instances WHERE room = $1 AND sop_uid = $2").bind(room).bind(&i.sop_uid).execute(&mut *tx).await?;
        // SQLite reads `ON CONFLICT` after a SELECT only once the SELECT has a WHERE.
        sqlx::query(
            "INSERT INTO studies (room, study_uid, title, uploader, created_at, updated_at) \
             SELECT $1, $2, '', CASE WHEN uploader <> '' THEN uploader ELSE source END, $3, $3 FROM jobs WHERE id = $4 \
             ON CONFLICT (room, study_uid) DO NOTHING",
        )
        .bind(room)
        .bind(&i.study_uid)
        .bind(unix_now())
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO instances (room, sop_uid, study_uid, series_uid, patient, study_date, study_description, modality, \
             series_description, series_number, instance_number, object_key, info, dicom_json, job_id, created_at, patient_id, frames) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(room)
        .bind(&i.sop_uid)
        .bind(&i.study_uid)
        .bind(&i.series_uid)
        .bind(&i.patient)
        .bind(&i.study_date)
        .bind(&i.study_description)
        .bind(&i.modality)
        .bind(&i.series_description)
        .bind(i.series_number)
        .bind(i.number)
        .bind(object_key)
        .bind(info)
        .bind(dicom_json)
        .bind(job_id)
        .bind(unix_now())
        .bind(&i.patient_id)
        .bind(i.frames)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A room's studies, newest first, with their library entries (title, uploader).
    pub async fn studies(&self, room: &str) -> Result<Vec<Study>> {
        let rows = sqlx::query(
            "SELECT i.study_uid AS study_uid, MAX(i.patient) AS patient, MAX(i.patient_id) AS patient_id, MAX(i.study_date) AS study_date, \
             MAX(i.study_description) AS description, COUNT(DISTINCT i.series_uid) AS series_count, COUNT(*) AS instance_count, \
             CAST(SUM(i.frames) AS BIGINT) AS frame_count, MIN(i.created_at) AS created_at, \
             MAX(COALESCE(s.title, '')) AS title, MAX(COALESCE(s.uploader, '')) AS uploader \
             FROM instances i LEFT JOIN studies s ON s.room = i.room AND s.study_uid = i.study_uid \
             WHERE i.room = $1 GROUP BY i.study_uid ORDER BY MIN(i.created_at) DESC, i.study_uid",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await?;
        let modalities = sqlx::query("SELECT DISTINCT study_uid, modality FROM instances WHERE room = $1 ORDER BY modality")
            .bind(room)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let study_uid: String = r.try_get("study_uid")?;
                let title: String = r.try_get("title")?;
                let mut study = Study {
                    modalities: modalities
                        .iter()
                        .filter(|m| m.try_get::<String, _>("study_uid").is_ok_and(|s| s == study_uid))
                        .filter_map(|m| m.try_get::<String, _>("modality").ok())
                        .filter(|m| !m.is_empty())
                        .collect(),
                    study_uid,
                    patient: r.try_get("patient")?,
                    patient_id: r.try_get("patient_id")?,
                    study_date: r.try_get("study_date")?,
                    description: r.try_get("description")?,
                    series_count: r.try_get("series_count")?,
                    instance_count: r.try_get("instance_count")?,
                    frame_count: r.try_get("frame_count")?,
                    created_at: r.try_get("created_at")?,
                    custom_title: !title.is_empty(),
                    title,
                    uploader: r.try_get("uploader")?,
                };
                if study.title.is_empty() {
                    study.title = study.default_title();
                }
                Ok(study)
            })
            .collect()
    }

    /// Gives a study of `room` its title (`""`: back to the default).
    pub async fn set_study_title(&self, room: &str, study_uid: &str, title: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO studies (room, study_uid, title, uploader, created_at, updated_at) VALUES ($1, $2, $3, '', $4, $4) \
             ON CONFLICT (room, study_uid) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at",
        )
        .bind(room)
        .bind(study_uid)
        .bind(title)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The instances of a study (or of one of its series), in series and instance
    /// number order, with their object keys.
    pub async fn instances(&self, room: &str, study: &str, series: Option<&str>) -> Result<Vec<StoredInstance>> {
        let rows = sqlx::query(
            "SELECT info, object_key FROM instances WHERE room = $1 AND study_uid = $2 AND ($3 = '' OR series_uid = $3) \
             ORDER BY series_number, series_uid, instance_number, sop_uid",
        )
        .bind(room)
        .bind(study)
        .bind(series.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredInstance::from_row).collect()
    }

    /// One instance, with its object key.
    pub async fn instance(&self, room: &str, sop: &str) -> Result<Option<StoredInstance>> {
        let row = sqlx::query("SELECT info, object_key FROM instances WHERE room = $1 AND sop_uid = $2")
            .bind(room)
            .bind(sop)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| StoredInstance::from_row(&r)).transpose()
    }

    /// The de-identified header of instances as DICOM JSON objects (no pixel data).
    pub async fn dicom_json(&self, room: &str, study: &str, series: Option<&str>, sop: Option<&str>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT dicom_json FROM instances WHERE room = $1 AND study_uid = $2 AND ($3 = '' OR series_uid = $3) \
             AND ($4 = '' OR sop_uid = $4) ORDER BY series_number, series_uid, instance_number, sop_uid",
        )
        .bind(room)
        .bind(study)
        .bind(series.unwrap_or(""))
        .bind(sop.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?)
    }
}

const JOB_COLUMNS: &str =
    "id, room, source, kind, status, progress, stage, frame, frames, error, bytes, staging, batch, study_uid, attempts, uploader, created_at, updated_at";

/// An update guarded by a lease touched `rows`: none means the lease was lost.
fn lease_held(rows: u64) -> Result<()> {
    if rows == 0 { Err(StoreError::LeaseLost) } else { Ok(()) }
}

async fn insert_job(tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: &NewJob, uploader: &str) -> Result<()> {
    let now = unix_now();
    sqlx::query(
        "INSERT INTO jobs (id, room, source, kind, status, progress, error, bytes, staging, batch, study_uid, attempts, created_at, updated_at, uploader) \
         VALUES ($1, $2, $3, $4, 'queued', 0, NULL, $5, $6, $7, NULL, 0, $8, $8, $9)",
    )
    .bind(&job.id)
    .bind(&job.room)
    .bind(&job.source)
    .bind(&job.kind)
    .bind(job.bytes)
    .bind(&job.staging)
    .bind(&job.batch)
    .bind(now)
    .bind(uploader)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A resumable upload in progress. What has arrived is the staging file's length.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Random id, in the upload's URL.
    pub id: String,
    /// The case library (room) it goes to.
    pub room: String,
    /// `dicom` or `zip`.
    pub kind: String,
    /// The client's grouping of uploads (one folder or drop).
    pub batch: Option<String>,
    /// Announced length, bytes.
    pub length: i64,
    /// The job made of it once complete.
    pub job_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Who made it: its token's credential (for quotas).
    pub owner: String,
    /// Who sent it: its token's display name (shown with the study; not patient data).
    pub uploader: String,
}

/// What unfinished uploads hold (declared lengths of uploads not yet complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// The owner's unfinished uploads.
    pub owner_open: u64,
    /// The bytes they declare.
    pub owner_bytes: u64,
    /// The bytes every unfinished upload declares.
    pub all_bytes: u64,
}

/// A job to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Random id.
    pub id: String,
    /// The case library (room).
    pub room: String,
    /// `upload`, `zip`, `stow`, `cstore` or `import`.
    pub source: String,
    /// `dicom` (one file) or `zip` (an archive to expand into jobs).
    pub kind: String,
    /// Size of the staged input.
    pub bytes: i64,
    /// Where the input waits: a local path, or an object ([`crate::staging`]).
    pub staging: String,
    /// Batch (one upload of several files).
    pub batch: Option<String>,
}

/// A job as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Random id.
    pub id: String,
    /// The case library (room).
    #[serde(skip)]
    pub room: String,
    /// Where it came from.
    pub source: String,
    /// `dicom` or `zip`.
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// 0..1.
    pub progress: f64,
    /// What a running job is doing ([`crate::progress::Stage`] names: `decoding`,
    /// `reading_text`, `writing`, …); empty when it is not running.
    pub stage: String,
    /// The frame (or archive entry) worked on, from 1; 0 when the stage is not per frame.
    pub frame: i64,
    /// Frames (or archive entries) in all; 0 while not known.
    pub frames: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Size of the input.
    pub bytes: i64,
    /// Path of the staged input; never shown.
    #[serde(skip)]
    pub staging: String,
    /// The batch it belongs to.
    pub batch: Option<String>,
    /// The (de-identified) study it added to.
    pub study_uid: Option<String>,
    /// How many times it was started.
    #[serde(skip)]
    pub attempts: i64,
    /// Who sent it (a token's display name), empty when unknown (`cases import`).
    pub uploader: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl Job {
    fn from_row(r: &AnyRow) -> Result<Job> {
        Ok(Job {
            id: r.try_get("id")?,
            room: r.try_get("room")?,
            source: r.try_get("source")?,
            kind: r.try_get("kind")?,
            status: r.try_get("status")?,
            progress: r.try_get("progress")?,
            stage: r.try_get("stage")?,
            frame: r.try_get("frame")?,
            frames: r.try_get("frames")?,
            error: r.try_get("error")?,
            bytes: r.try_get("bytes")?,
            staging: r.try_get("staging")?,
            batch: r.try_get("batch")?,
            study_uid: r.try_get("study_uid")?,
            attempts: r.try_get("attempts")?,
            uploader: r.try_get("uploader")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// A study as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// The (new) Study Instance UID.
    pub study_uid: String,
    /// The patient's pseudonym.
    pub patient: String,
    /// The pseudonym's Patient ID.
    pub patient_id: String,
    /// Study date (shifted when so configured), `YYYYMMDD` or empty.
    pub study_date: String,
    /// Study description (cleaned).
    pub description: String,
    /// Modalities in the study.
    pub modalities: Vec<String>,
    /// Series.
    pub series_count: i64,
    /// Instances.
    pub instance_count: i64,
    /// Frames of all its instances.
    pub frame_count: i64,
    /// Unix seconds of the first instance published (the upload date).
    pub created_at: i64,
    /// What the library calls it: the title given to it, or else the default
    /// ([`Study::default_title`]). Operator-entered free text: shown (escaped), never
    /// written into DICOM or logs.
    pub title: String,
    /// The title was given (not the default).
    pub custom_title: bool,
    /// Who sent its first instance (a token's display name, `cstore`, `import`).
    pub uploader: String,
}

/// The longest title a study may be given, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

impl Study {
    /// The title of a study nobody titled: its (cleaned) Study Description when the
    /// de-identification kept one, else its modalities and date: the study date if
    /// kept (shifted when so configured), else the upload date. Made only of
    /// de-identified values.
    pub fn default_title(&self) -> String {
        let description = self.description.trim();
        if !description.is_empty() {
            return description.to_string();
        }
        let modalities = if self.modalities.is_empty() { "Study".to_string() } else { self.modalities.join("/") };
        let d = &self.study_date;
        if d.len() == 8 && d.bytes().all(|c| c.is_ascii_digit()) {
            format!("{modalities} of {}-{}-{}", &d[..4], &d[4..6], &d[6..])
        } else {
            format!("{modalities} uploaded {}", ymd(self.created_at))
        }
    }

    /// Whether the study matches a search: every word of `query` (case-insensitive)
    /// is in its title, uploader, modalities, pseudonym or its Patient ID.
    pub fn matches(&self, query: &str) -> bool {
        let hay = [self.title.as_str(), &self.uploader, &self.modalities.join(" "), &self.patient, &self.patient_id].join("\n").to_lowercase();
        query.split_whitespace().all(|w| hay.contains(&w.to_lowercase()))
    }
}

/// `YYYY-MM-DD` (UTC) of Unix seconds.
fn ymd(unix: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// What the viewer and DICOMweb need to know of one published instance.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Instance {
    /// SOP Instance UID (new).
    pub sop_uid: String,
    /// SOP Class UID.
    pub sop_class: String,
    /// Study Instance UID (new).
    pub study_uid: String,
    /// Series Instance UID (new).
    pub series_uid: String,
    /// The patient's pseudonym.
    pub patient: String,
    /// The pseudonym's Patient ID.
    #[serde(default)]
    pub patient_id: String,
    /// Study date.
    pub study_date: String,
    /// Study description.
    pub study_description: String,
    /// Study time.
    pub study_time: String,
    /// Modality.
    pub modality: String,
    /// Series description.
    pub series_description: String,
    /// Series number.
    pub series_number: Option<i64>,
    /// Instance number.
    pub number: Option<i64>,
    /// Frames.
    pub frames: i64,
    /// Rows.
    pub rows: i64,
    /// Columns.
    pub cols: i64,
    /// Photometric interpretation.
    pub photometric: String,
    /// Samples per pixel.
    pub samples: i64,
    /// Bits allocated.
    pub bits_allocated: i64,
    /// Bits stored.
    pub bits_stored: i64,
    /// Pixel representation 1.
    pub signed: bool,
    /// Rescale slope.
    pub rescale_slope: f64,
    /// Rescale intercept.
    pub rescale_intercept: f64,
    /// First VOI window center.
    pub window_center: Option<f64>,
    /// First VOI window width.
    pub window_width: Option<f64>,
    /// Frame time (cine), milliseconds.
    pub frame_time_ms: Option<f64>,
    /// The frames endpoint serves native little-endian pixel values.
    pub raw: bool,
    /// Rendered frames: `png`, `jpeg`, or empty when none could be made.
    pub rendered: String,
    /// Transfer syntax of the stored object.
    pub transfer_syntax: String,
    /// Where native pixel data starts in the stored object.
    pub pixel_offset: Option<i64>,
    /// Bytes per frame (native).
    pub frame_bytes: i64,
    /// Size of the stored object.
    pub bytes: i64,
}

impl Instance {
    /// Its display window (center, width) in stored values, for rendering frames:
    /// the file gives it in output (rescaled) units. `None` without a usable one.
    pub fn stored_window(&self) -> Option<(f64, f64)> {
        self.window_center
            .zip(self.window_width)
            .filter(|(_, w)| *w > 0.0)
            .map(|(c, w)| ((c - self.rescale_intercept) / self.rescale_slope, w / self.rescale_slope.abs()))
    }
}

/// An instance with the key of its stored object.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    /// What is known of it.
    pub info: Instance,
    /// Key of the de-identified DICOM object.
    pub object_key: String,
}

impl StoredInstance {
    fn from_row(r: &AnyRow) -> Result<StoredInstance> {
        let info: String = r.try_get("info")?;
        Ok(StoredInstance {
            info: serde_json::from_str(&info).map_err(|e| StoreError::Config(format!("instance row: {e}")))?,
            object_key: r.try_get("object_key")?,
        })
    }

    /// Key of rendered frame `n` (from 1).
    pub fn frame_key(&self, n: i64) -> String {
        frame_key(&self.object_key, n, &self.info.rendered)
    }
}

/// Key of rendered frame `n` (from 1) of the object at `object_key`.
pub fn frame_key(object_key: &str, n: i64, format: &str) -> String {
    let base = object_key.strip_suffix(".dcm").unwrap_or(object_key);
    format!("{base}/{n}.{}", if format == "jpeg" { "jpg" } else { "png" })
}

/// The objects (de-identified DICOM, rendered frames).
#[derive(Clone, Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
}

/// Files above this are sent in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;

impl Objects {
    /// Opens `url`: `s3://bucket[/prefix]` (credentials, region and endpoint from the
    /// standard AWS environment: `AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// …; `endpoint` overrides the latter), `file:///dir`, or a bare directory path.
    pub fn open(url: &str, endpoint: Option<&str>) -> Result<Objects> {
        let store: Arc<dyn ObjectStore> = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = endpoint.map(str::to_string).or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(e) = endpoint {
                b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
            }
            let s3 = Arc::new(b.build().map_err(|e| StoreError::Config(format!("S3 store {url}: {e}")))?);
            if prefix.trim_matches('/').is_empty() {
                s3
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.trim_matches('/')))
            }
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(dir)?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        };
        Ok(Objects { store })
    }

    /// Stores a local file under `key`, in parts when large (memory stays at a part).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let key = Key::from(key);
        let len = tokio::fs::metadata(path).await?.len();
        if len <= MULTIPART_ABOVE {
            let bytes = tokio::fs::read(path).await?;
            self.store.put(&key, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&key).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut f = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; 1 << 20];
        let sent = async {
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), StoreError>(());
                }
                w.wait_for_capacity(4).await?;
                w.write(&buf[..n]);
            }
        }
        .await;
        match sent {
            Ok(()) => {
                w.finish().await?;
                Ok(())
            }
            Err(e) => {
                // No half-uploaded parts are left behind in the bucket.
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Whether the store takes a write: a few bytes put at `readyz/probe` (the
    /// readiness check; the same key each time, so nothing accumulates).
    pub async fn probe(&self) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.put("readyz/probe", now.to_string().into_bytes()).await
    }

    /// Stores bytes under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store.put(&Key::from(key), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// A whole object.
    pub async fn get(&self, key: &str) -> Result<bytes::Bytes> {
        Ok(self.store.get(&Key::from(key)).await?.bytes().await?)
    }

    /// Writes a whole object into a new local file at `path` (made with its folder),
    /// a chunk at a time; nothing is left at `path` when it fails.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (_, mut chunks) = self.stream(key).await?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let written = async {
            let mut f = tokio::fs::File::create(path).await?;
            let mut n = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                f.write_all(&chunk).await?;
                n += chunk.len() as u64;
            }
            f.flush().await?;
            Ok::<u64, StoreError>(n)
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        written
    }

    /// The objects under `prefix`: their keys and when they were last written (Unix
    /// seconds).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>> {
        use futures_util::TryStreamExt;
        let metas: Vec<object_store::ObjectMeta> = self.store.list(Some(&Key::from(prefix))).try_collect().await?;
        Ok(metas.into_iter().map(|m| (m.location.to_string(), m.last_modified.timestamp())).collect())
    }

    /// Deletes an object; one already gone is no error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<bytes::Bytes> {
        Ok(self.store.get_range(&Key::from(key), range).await?)
    }

    /// An object as a stream of chunks, with its size.
    pub async fn stream(&self, key: &str) -> Result<(u64, futures_util::stream::BoxStream<'static, Result<bytes::Bytes>>)> {
        use futures_util::StreamExt;
        let r = self.store.get(&Key::from(key)).await?;
        let size = r.meta.size;
        Ok((size, r.into_stream().map(|c| c.map_err(StoreError::from)).boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Stage, Step};

    fn study(description: &str, modalities: &[&str], date: &str) -> Study {
        Study {
            study_uid: "2.25.1".into(),
            patient: "ANON^AB12".into(),
            patient_id: "AB12CD".into(),
            study_date: date.into(),
            description: description.into(),
            modalities: modalities.iter().map(|m| m.to_string()).collect(),
            series_count: 1,
            instance_count: 1,
            frame_count: 24,
            created_at: 1_764_892_800, // 2025-12-05
            title: String::new(),
            custom_title: false,
            uploader: "Dr. Ada".into(),
        }
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(shown_url("postgres://casecast:s3cr%40t@db:5432/cases"), "postgres://casecast:***@db:5432/cases");
        assert_eq!(shown_url("postgres://casecast@127.0.0.1/postgres"), "postgres://casecast@127.0.0.1/postgres");
        assert_eq!(shown_url("/data/cases.db"), "/data/cases.db");
        assert_eq!(shown_url("s3://bucket/prefix"), "s3://bucket/prefix");
    }

    #[test]
    fn a_study_nobody_titled_is_called_by_what_de_identification_kept() {
        assert_eq!(study("Chest CT", &["CT"], "").default_title(), "Chest CT");
        assert_eq!(study("", &["US", "SR"], "20240305").default_title(), "US/SR of 2024-03-05");
        assert_eq!(study(" ", &["US"], "").default_title(), "US uploaded 2025-12-05");
        assert_eq!(study("", &[], "").default_title(), "Study uploaded 2025-12-05");
        assert_eq!(ymd(0), "1970-01-01");
        assert_eq!(ymd(951_782_400), "2000-02-29");
    }

    #[test]
    fn search_words_each_match_the_title_uploader_modality_or_pseudonym() {
        let mut s = study("", &["US"], "");
        s.title = "Mitral valve repair".into();
        for q in ["mitral", "VALVE ada", "us", "anon^ab12", "ab12cd", "", "  "] {
            assert!(s.matches(q), "{q:?}");
        }
        for q in ["aortic", "mitral aortic", "ct"] {
            assert!(!s.matches(q), "{q:?}");
        }
    }

    /// The job row carries a worker's step; a published instance enters its study in
    /// the library with its sender; a title is kept, listed and can be cleared.
    #[tokio::test(flavor = "current_thread")]
    async fn jobs_carry_progress_and_studies_their_titles_and_uploaders_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("casecast-store-{}-{}", std::process::id(), unix_now()));
        let db = Db::connect(&dir.join("cases.db").display().to_string()).await.unwrap();
        let job = NewJob { id: "j1".into(), room: "demo".into(), source: "upload".into(), kind: "dicom".into(), bytes: 10, staging: "/x".into(), batch: None };
        db.insert_job_from(&job, "Dr. Ada").await.unwrap();
        assert_eq!(db.claim("w1", 1, Duration::from_secs(30), 3).await.unwrap().len(), 1);
        db.set_progress("w1", "j1", &Step::at(Stage::ReadingText, 7, 24).within(0.0, 0.85)).await.unwrap();
        assert!(matches!(db.set_progress("w2", "j1", &Step::at(Stage::Writing, 1, 24)).await, Err(StoreError::LeaseLost)), "another worker's");
        let j = db.job("j1").await.unwrap().unwrap();
        assert_eq!((j.stage.as_str(), j.frame, j.frames, j.uploader.as_str()), ("reading_text", 7, 24, "Dr. Ada"));
        assert!(j.progress > 0.2 && j.progress < 0.3, "{}", j.progress);

        let mut i: Instance = serde_json::from_value(serde_json::json!({
            "sop_uid": "2.25.9", "sop_class": "1.2.840.10008.5.1.4.1.1.3.1", "study_uid": "2.25.8", "series_uid": "2.25.7",
            "patient": "ANON^AB12", "study_date": "", "study_description": "", "study_time": "", "modality": "US",
            "series_description": "", "series_number": null, "number": null, "frames": 24, "rows": 1, "cols": 1,
            "photometric": "MONOCHROME2", "samples": 1, "bits_allocated": 8, "bits_stored": 8, "signed": false,
            "rescale_slope": 1.0, "rescale_intercept": 0.0, "window_center": null, "window_width": null, "frame_time_ms": null,
            "raw": true, "rendered": "jpeg", "transfer_syntax": "1.2.840.10008.1.2.1", "pixel_offset": 0, "frame_bytes": 1, "bytes": 1
        }))
        .unwrap();
        db.put_instance("demo", &i, "{}", "k", "j1").await.unwrap();
        db.job_done("w1", "j1", Some("2.25.8")).await.unwrap();
        let j = db.job("j1").await.unwrap().unwrap();
        assert_eq!((j.status.as_str(), j.stage.as_str(), j.progress), ("done", "", 1.0));
        // Published again (a job run twice): still one study, one uploader.
        i.number = Some(1);
        db.put_instance("demo", &i, "{}", "k", "j1").await.unwrap();
        let s = &db.studies("demo").await.unwrap()[0];
        assert_eq!((s.uploader.as_str(), s.frame_count, s.instance_count, s.custom_title), ("Dr. Ada", 24, 1, false));
        assert!(s.title.starts_with("US uploaded "), "{}", s.title);

        db.set_study_title("demo", "2.25.8", "Mitral <b>repair</b>").await.unwrap();
        let s = &db.studies("demo").await.unwrap()[0];
        assert_eq!((s.title.as_str(), s.custom_title, s.uploader.as_str()), ("Mitral <b>repair</b>", true, "Dr. Ada"));
        assert!(db.studies("other").await.unwrap().is_empty());
        db.set_study_title("demo", "2.25.8", "").await.unwrap();
        assert!(!db.studies("demo").await.unwrap()[0].custom_title);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
