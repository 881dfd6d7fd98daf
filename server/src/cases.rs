//! DICOM cases over HTTP: resumable uploads (tus 1.0.0), the jobs and studies the
//! viewer shows, and DICOMweb (QIDO-RS, WADO-RS, STOW-RS). Every request checks a
//! token; the token's room is the case library it opens.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use actix::Addr;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use casecast_actors::ingest::{IngestPool, Wake};
use casecast_ingest::dicomweb;
use casecast_ingest::store::{Db, MAX_TITLE_CHARS, NewJob, Objects, StoredInstance, Upload, unix_now};
use casecast_signaling::{Claims, Role};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::state::AppState;

/// The cases part of the server's state.
pub struct Cases {
    /// Metadata.
    pub db: Db,
    /// Objects.
    pub objects: Objects,
    /// The ingest pool, woken when jobs are recorded.
    pub pool: Addr<IngestPool>,
    /// Local staging folder (uploads arrive in `uploads/`).
    pub staging: PathBuf,
    /// Complete uploads move into the object store, for ingest workers on any
    /// machine (`cases.stage_in_objects`).
    pub stage_in_objects: bool,
    /// Largest upload accepted, bytes.
    pub max_upload: u64,
    /// Limits on unfinished uploads.
    pub quota: Quota,
    /// Held while an upload is checked against the quota and recorded, so that
    /// concurrent creations cannot all pass the same check.
    pub reserving: tokio::sync::Mutex<()>,
    /// Uploads being written to right now (one writer at a time).
    pub writing: Mutex<HashSet<String>>,
}

impl Cases {
    /// Records a staged file as a job sent by `uploader` (shown with its study) and
    /// wakes the pool.
    pub async fn enqueue(&self, room: &str, source: &str, kind: &str, staging: &Path, batch: Option<String>, uploader: &str) -> Result<String, String> {
        let bytes = std::fs::metadata(staging).map(|m| m.len() as i64).unwrap_or(0);
        let id = random_id();
        let job = NewJob {
            staging: self.stage(&id, staging).await?,
            id,
            room: room.to_string(),
            source: source.into(),
            kind: kind.into(),
            bytes,
            batch,
        };
        if let Err(e) = self.db.insert_job_from(&job, uploader).await {
            self.unstage(&job.staging).await;
            return Err(e.to_string());
        }
        self.staged(staging, &job.staging);
        self.pool.do_send(Wake);
        Ok(job.id)
    }

    /// Where job `id`'s input, now at `path`, waits for a worker: the path itself,
    /// or (`stage_in_objects`) a copy in the object store. The local file is left
    /// until the job is recorded ([`Cases::staged`]).
    pub async fn stage(&self, id: &str, path: &Path) -> Result<String, String> {
        if !self.stage_in_objects {
            return Ok(path.display().to_string());
        }
        casecast_ingest::staging::put(&self.objects, id, path).await.map_err(|e| format!("cannot stage the upload in the object store: {e}"))
    }

    /// The job was recorded: a local file staged in the object store is removed.
    pub fn staged(&self, path: &Path, staging: &str) {
        if staging != path.display().to_string() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The job was not recorded: its copy in the object store goes.
    pub async fn unstage(&self, staging: &str) {
        if let casecast_ingest::staging::Staged::Object(key) = casecast_ingest::staging::parse(staging) {
            let _ = self.objects.delete(key).await;
        }
    }
}

pub use crate::state::random_id;

/// Limits on what unfinished uploads may hold.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Unfinished uploads of one token.
    pub open_per_token: u64,
    /// Bytes one token's unfinished uploads declare.
    pub bytes_per_token: u64,
    /// Bytes all unfinished uploads declare.
    pub bytes: u64,
}

/// Room left on the staging disk beside the uploads.
const DISK_MARGIN: u64 = 1 << 30;

use crate::http::{json_error, json_internal as internal};

/// Who may view a case library.
pub(crate) const VIEW: &[Role] = &[Role::Commentator, Role::Operator, Role::Viewer];
/// Who may add to it.
pub(crate) const UPLOAD: &[Role] = &[Role::Commentator, Role::Operator];

/// The token (header, or `?token=` for pages and pictures), verified, with a role
/// among `roles`.
#[allow(clippy::result_large_err)] // the error is the response itself
fn authorize(req: &HttpRequest, st: &AppState, roles: &[Role]) -> Result<Claims, HttpResponse> {
    let Some(token) = crate::http::request_token(req, true) else {
        return Err(json_error(StatusCode::UNAUTHORIZED, "a token is required (Authorization: Bearer <token>, or ?token=)"));
    };
    let claims = st.verify(&token).map_err(|e| json_error(e.status(), e.message()))?;
    if !roles.contains(&claims.role) {
        let allowed: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
        return Err(json_error(
            StatusCode::FORBIDDEN,
            &format!("role {} may not do this; allowed: {}", claims.role.as_str(), allowed.join(", ")),
        ));
    }
    Ok(claims)
}

macro_rules! auth {
    ($req:expr, $st:expr, $roles:expr) => {
        match authorize(&$req, &$st, $roles) {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("../../web/cases.html"))
}

// tus 1.0.0: core, creation and termination.

use casecast_signaling::tus::{self, TUS_VERSION};

fn tus_response(mut r: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    r.insert_header(("Tus-Resumable", TUS_VERSION)).insert_header((header::CACHE_CONTROL, "no-store"));
    r
}

pub(crate) async fn tus_options(st: web::Data<AppState>) -> HttpResponse {
    tus_response(HttpResponse::NoContent())
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", "creation,termination"))
        .insert_header(("Tus-Max-Size", st.cases.max_upload.to_string()))
        .finish()
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn upload_path(st: &AppState, id: &str) -> PathBuf {
    st.cases.staging.join("uploads").join(format!("{id}.part"))
}

pub(crate) async fn tus_create(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, UPLOAD);
    if let Err(r) = tus_version(&req) {
        return r;
    }
    let length = match tus::byte_count("Upload-Length", header_str(&req, "Upload-Length")) {
        Ok(n) => n,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("{e} (the file's size in bytes)")),
    };
    if length > st.cases.max_upload {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the upload is {length} bytes; the limit is {} (cases.max_upload_bytes)", st.cases.max_upload),
        );
    }
    let meta = match tus::metadata(header_str(&req, "Upload-Metadata")) {
        Ok(m) => m,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let kind = meta.get("kind").map(String::as_str).unwrap_or("dicom");
    if !matches!(kind, "dicom" | "zip") {
        return json_error(StatusCode::BAD_REQUEST, "Upload-Metadata kind must be dicom or zip");
    }
    let batch = meta.get("batch").filter(|b| !b.is_empty() && b.len() <= 64 && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')).cloned();
    let token = crate::http::request_token(&req, true).unwrap_or_default();
    let owner = casecast_signaling::token::credential(&token, &claims);
    let uploader = uploader_name(&claims);
    let u = Upload { id: random_id(), room: claims.room, kind: kind.into(), batch, length: length as i64, job_id: None, created_at: unix_now(), owner, uploader };
    let path = upload_path(&st, &u.id);
    // Checked and recorded under one lock: two creations never pass the same check.
    let reserving = st.cases.reserving.lock().await;
    if let Err(r) = within_quota(&st, &u).await {
        return r;
    }
    if let Err(e) = std::fs::create_dir_all(path.parent().unwrap_or(&st.cases.staging)).and_then(|_| std::fs::File::create(&path)) {
        return internal(format!("cannot stage the upload: {e}"));
    }
    if let Err(e) = st.cases.db.create_upload(&u).await {
        let _ = std::fs::remove_file(&path);
        return internal(e);
    }
    drop(reserving);
    let mut r = tus_response(HttpResponse::Created());
    r.insert_header((header::LOCATION, format!("/api/cases/uploads/{}", u.id)));
    if length == 0 {
        // Nothing to send: complete at once (its job fails: not DICOM).
        match complete(&st, &u).await {
            Ok(job) => {
                r.insert_header(("Casecast-Job", job));
            }
            Err(resp) => return resp,
        }
    }
    r.finish()
}

/// Refuses an upload its token's quota, the server's, or the staging disk has no
/// room for (declared lengths of unfinished uploads count; a finished one is a job).
#[allow(clippy::result_large_err)]
async fn within_quota(st: &AppState, u: &Upload) -> Result<(), HttpResponse> {
    let q = st.cases.quota;
    let length = u.length as u64;
    let held = st.cases.db.reserved(&u.owner).await.map_err(internal)?;
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    if held.owner_open >= q.open_per_token {
        return Err(json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("this link has {} unfinished uploads, the most one may have (cases.max_open_uploads_per_token): finish or cancel some first", held.owner_open),
        ));
    }
    if held.owner_bytes.saturating_add(length) > q.bytes_per_token {
        return Err(json_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "this link's unfinished uploads declare {}; with this one it would pass its {} (cases.max_reserved_bytes_per_token): finish or cancel some first",
                gib(held.owner_bytes),
                gib(q.bytes_per_token)
            ),
        ));
    }
    let free = crate::files::free_bytes(&st.cases.staging).unwrap_or(u64::MAX);
    if held.all_bytes.saturating_add(length) > q.bytes || length.saturating_add(DISK_MARGIN) > free {
        return Err(json_error(StatusCode::INSUFFICIENT_STORAGE, "the server has no room for this upload now; try again later or tell the organisers"));
    }
    Ok(())
}

/// The upload `id` in the caller's library, and how much of it has arrived (all of
/// it once it is a job: its staged part may be gone, processed).
async fn find_upload(st: &AppState, claims: &Claims, id: &str) -> Result<(Upload, u64), HttpResponse> {
    let missing = || json_error(StatusCode::NOT_FOUND, "no such upload (it may have been completed or cancelled)");
    if !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(missing());
    }
    let u = st.cases.db.upload(id).await.map_err(internal)?.filter(|u| u.room == claims.room).ok_or_else(missing)?;
    if u.job_id.is_some() {
        let length = u.length as u64;
        return Ok((u, length));
    }
    let offset = std::fs::metadata(upload_path(st, id)).map(|m| m.len()).unwrap_or(0);
    Ok((u, offset))
}

/// Makes the job of a complete upload (once; a second call finds it made).
async fn complete(st: &AppState, upload: &Upload) -> Result<String, HttpResponse> {
    let path = upload_path(st, &upload.id);
    let id = random_id();
    let job = NewJob {
        staging: st.cases.stage(&id, &path).await.map_err(internal)?,
        id,
        room: upload.room.clone(),
        source: "upload".into(),
        kind: upload.kind.clone(),
        bytes: upload.length,
        batch: upload.batch.clone(),
    };
    let made = match st.cases.db.complete_upload(upload, &job).await {
        Ok(made) => made,
        Err(e) => {
            st.cases.unstage(&job.staging).await;
            return Err(internal(e));
        }
    };
    if made == job.id {
        st.cases.staged(&path, &job.staging);
    } else {
        // Completed already by another request: this copy is not its job's.
        st.cases.unstage(&job.staging).await;
    }
    st.cases.pool.do_send(Wake);
    Ok(made)
}

/// Refuses a client speaking another tus version (412); one that does not say is
/// taken as speaking 1.0.0.
#[allow(clippy::result_large_err)]
fn tus_version(req: &HttpRequest) -> Result<(), HttpResponse> {
    tus::check_version(header_str(req, "Tus-Resumable"))
        .map_err(|e| tus_response(HttpResponse::PreconditionFailed()).insert_header(("Tus-Version", TUS_VERSION)).json(json!({ "error": e })))
}

pub(crate) async fn tus_head(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, UPLOAD);
    if let Err(r) = tus_version(&req) {
        return r;
    }
    let (mut u, offset) = match find_upload(&st, &claims, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // All bytes arrived but the job was not made (the server stopped between the
    // two): it is made now, as the client asks where it stands.
    if u.job_id.is_none() && offset == u.length as u64 {
        match complete(&st, &u).await {
            Ok(job) => u.job_id = Some(job),
            Err(r) => return r,
        }
    }
    let mut r = tus_response(HttpResponse::Ok());
    r.insert_header(("Upload-Offset", offset.to_string())).insert_header(("Upload-Length", u.length.to_string()));
    if let Some(job) = u.job_id {
        r.insert_header(("Casecast-Job", job));
    }
    r.finish()
}

/// Holds an upload's write lock until dropped.
struct Writing<'a>(&'a Cases, String);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
    }
}

pub(crate) async fn tus_patch(req: HttpRequest, id: web::Path<String>, mut body: web::Payload, st: web::Data<AppState>) -> HttpResponse {
    use std::io::{Seek, SeekFrom, Write};
    let claims = auth!(req, st, UPLOAD);
    if let Err(r) = tus_version(&req) {
        return r;
    }
    if header_str(&req, "Content-Type") != Some("application/offset+octet-stream") {
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/offset+octet-stream");
    }
    let claimed = match tus::byte_count("Upload-Offset", header_str(&req, "Upload-Offset")) {
        Ok(n) => n,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    if !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return json_error(StatusCode::NOT_FOUND, "no such upload");
    }
    // The lock first, then where the upload stands: two requests never both write.
    if !st.cases.writing.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string()) {
        return json_error(StatusCode::CONFLICT, "this upload is being written by another request");
    }
    let _writing = Writing(&st.cases, id.to_string());
    let (upload, offset) = match find_upload(&st, &claims, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if claimed != offset {
        return tus_response(HttpResponse::Conflict())
            .insert_header(("Upload-Offset", offset.to_string()))
            .json(json!({ "error": format!("Upload-Offset is {claimed}, the server has {offset}: resume from {offset}") }));
    }
    let length = upload.length as u64;
    if let Some(job) = upload.job_id.clone() {
        // Complete already (an answer lost on the way): nothing more to take.
        return tus_response(HttpResponse::NoContent()).insert_header(("Upload-Offset", length.to_string())).insert_header(("Casecast-Job", job)).finish();
    }
    // Each write goes to its own offset (not appended), so a write that lands after
    // its request was dropped puts the client's bytes where they belong.
    let path = upload_path(&st, &upload.id);
    let mut file = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) => return internal(format!("cannot open the staged upload: {e}")),
    };
    let mut at = offset;
    // What arrived is kept even when the connection drops: the client resumes there.
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = file.sync_data();
                tracing::info!(upload = %upload.id, at, error = %e, "upload interrupted; it can resume");
                return json_error(StatusCode::BAD_REQUEST, &format!("the body was cut short: {e}"));
            }
        };
        if at + chunk.len() as u64 > length {
            let _ = file.sync_data();
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body goes past Upload-Length ({length})"));
        }
        // Chunks are at most a few hundred KB: written in place, without a thread hop.
        if let Err(e) = file.seek(SeekFrom::Start(at)).and_then(|_| file.write_all(&chunk)) {
            return internal(format!("cannot write the upload: {e}"));
        }
        at += chunk.len() as u64;
    }
    if let Err(e) = file.sync_data() {
        return internal(format!("cannot write the upload: {e}"));
    }
    drop(file);
    let mut r = tus_response(HttpResponse::NoContent());
    r.insert_header(("Upload-Offset", at.to_string()));
    if at == length {
        match complete(&st, &upload).await {
            Ok(job_id) => {
                r.insert_header(("Casecast-Job", job_id));
            }
            Err(resp) => return resp,
        }
    }
    r.finish()
}

pub(crate) async fn tus_delete(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, UPLOAD);
    if !st.cases.writing.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string()) {
        return json_error(StatusCode::CONFLICT, "this upload is being written; cancel that request first");
    }
    let _writing = Writing(&st.cases, id.to_string());
    let (upload, _) = match find_upload(&st, &claims, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match st.cases.db.forget_incomplete_upload(&upload.id).await {
        Ok(true) => {
            let _ = std::fs::remove_file(upload_path(&st, &upload.id));
            tus_response(HttpResponse::NoContent()).finish()
        }
        Ok(false) => json_error(StatusCode::CONFLICT, "this upload is complete and is being processed"),
        Err(e) => internal(e),
    }
}

// The viewer's JSON.

pub(crate) async fn jobs(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    match st.cases.db.jobs(&claims.room, 200).await {
        Ok(j) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(j),
        Err(e) => internal(e),
    }
}

/// Who sent an upload, as its study shows it: the token's display name (a doctor's
/// or operator's, not patient data), one line, at most 100 characters.
fn uploader_name(claims: &Claims) -> String {
    let name: String = claims.name.chars().map(|c| if c.is_control() { ' ' } else { c }).take(100).collect();
    let name = name.trim();
    if name.is_empty() { claims.role.as_str().to_string() } else { name.to_string() }
}

/// The longest search the library takes, in characters.
const MAX_QUERY_CHARS: usize = 200;

/// `GET /api/cases/studies[?q=words]`: the library's studies, newest first; with
/// `q`, those where every word is in the title, uploader, modalities or pseudonym.
pub(crate) async fn studies(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let q = query.iter().find(|(k, _)| k == "q").map(|(_, v)| v.trim()).unwrap_or("");
    if q.chars().count() > MAX_QUERY_CHARS {
        return json_error(StatusCode::BAD_REQUEST, &format!("the search is longer than {MAX_QUERY_CHARS} characters; use fewer words"));
    }
    match st.cases.db.studies(&claims.room).await {
        Ok(mut s) => {
            s.retain(|s| s.matches(q));
            HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(s)
        }
        Err(e) => internal(e),
    }
}

/// `PATCH /api/cases/studies/{study}` `{"title": "…"}` (those who may upload): gives
/// the study its title; `""` or `null` puts the default back. The title is
/// operator-entered text: one line, at most [`MAX_TITLE_CHARS`] characters, kept in
/// the library's table only (never in DICOM), and never logged or echoed in errors.
pub(crate) async fn update_study(req: HttpRequest, uid: web::Path<String>, body: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, UPLOAD);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "the body must be JSON: {\"title\": \"…\"}");
    };
    let title = match body.get("title") {
        Some(Value::String(t)) => t.trim().to_string(),
        Some(Value::Null) => String::new(),
        _ => return json_error(StatusCode::BAD_REQUEST, "the body must be JSON with a title: {\"title\": \"…\"} (\"\" or null: the default)"),
    };
    if title.chars().count() > MAX_TITLE_CHARS {
        return json_error(StatusCode::BAD_REQUEST, &format!("a title is at most {MAX_TITLE_CHARS} characters; shorten it"));
    }
    if title.chars().any(char::is_control) {
        return json_error(StatusCode::BAD_REQUEST, "a title is one line of text: no line breaks, tabs or control characters");
    }
    match st.cases.db.studies(&claims.room).await {
        Ok(s) if s.iter().any(|s| s.study_uid == *uid) => {}
        Ok(_) => return no_study(),
        Err(e) => return internal(e),
    }
    if let Err(e) = st.cases.db.set_study_title(&claims.room, &uid, &title).await {
        return internal(e);
    }
    match st.cases.db.studies(&claims.room).await {
        Ok(s) => match s.into_iter().find(|s| s.study_uid == *uid) {
            Some(study) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(study),
            None => no_study(),
        },
        Err(e) => internal(e),
    }
}

fn no_study() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "no such study in this case library")
}

pub(crate) async fn study(req: HttpRequest, uid: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (studies, instances) = match (st.cases.db.studies(&claims.room).await, st.cases.db.instances(&claims.room, &uid, None).await) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let Some(study) = studies.into_iter().find(|s| s.study_uid == *uid) else { return no_study() };
    let series: Vec<Value> = by_series(&instances)
        .iter()
        .map(|g| {
            let i = g[0];
            json!({
                "series_uid": i.series_uid,
                "modality": i.modality,
                "description": i.series_description,
                "number": i.series_number,
                "instances": g.iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut body = serde_json::to_value(&study).unwrap_or(Value::Null);
    body["series"] = Value::Array(series);
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

async fn instance_in(st: &AppState, room: &str, study: &str, series: &str, sop: &str) -> Result<StoredInstance, HttpResponse> {
    match st.cases.db.instance(room, sop).await {
        Ok(Some(i)) if i.info.study_uid == study && i.info.series_uid == series => Ok(i),
        Ok(_) => Err(json_error(StatusCode::NOT_FOUND, "no such instance in this case library")),
        Err(e) => Err(internal(e)),
    }
}

pub(crate) async fn tags(req: HttpRequest, p: web::Path<(String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop) = p.into_inner();
    if let Err(r) = instance_in(&st, &claims.room, &study, &series, &sop).await {
        return r;
    }
    match st.cases.db.dicom_json(&claims.room, &study, Some(&series), Some(&sop)).await {
        Ok(j) => {
            let v: Value = j.first().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null);
            HttpResponse::Ok().json(dicomweb::tag_rows(&v))
        }
        Err(e) => internal(e),
    }
}

// DICOMweb.

fn dicom_json(body: Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/dicom+json").insert_header((header::CACHE_CONTROL, "no-store")).body(body.to_string())
}

/// QIDO-RS matching (PS3.18 8.3.4) on the keys clients use: single values, lists of
/// UIDs, `*`/`?` wildcards, date ranges (`20240101-20241231`), and for names a
/// case-insensitive prefix; `limit` and `offset`. Unknown keys are ignored.
fn qido_filter(req: &HttpRequest, items: Vec<Value>) -> Vec<Value> {
    let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let key = |k: &str| -> Option<&'static str> {
        Some(match k {
            "StudyInstanceUID" | "0020000D" => "0020000D",
            "SeriesInstanceUID" | "0020000E" => "0020000E",
            "SOPInstanceUID" | "00080018" => "00080018",
            "Modality" | "00080060" => "00080060",
            "ModalitiesInStudy" | "00080061" => "00080061",
            "PatientName" | "00100010" => "00100010",
            "PatientID" | "00100020" => "00100020",
            "AccessionNumber" | "00080050" => "00080050",
            "StudyDate" | "00080020" => "00080020",
            "StudyDescription" | "00081030" => "00081030",
            _ => return None,
        })
    };
    let mut out: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            q.iter().all(|(k, want)| {
                let Some(tag) = key(k) else { return true };
                let want = want.trim();
                if want.is_empty() || want == "*" {
                    return true;
                }
                let texts: Vec<String> = item[tag]["Value"]
                    .as_array()
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| v.as_str().map(str::to_string).or_else(|| v["Alphabetic"].as_str().map(str::to_string)).unwrap_or_else(|| v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                texts.iter().any(|t| qido_match(tag, want, t))
            })
        })
        .collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).and_then(|(_, v)| v.parse::<usize>().ok());
    let offset = get("offset").unwrap_or(0).min(out.len());
    out.drain(..offset);
    if let Some(limit) = get("limit") {
        out.truncate(limit);
    }
    out
}

/// One QIDO-RS value match.
fn qido_match(tag: &str, want: &str, value: &str) -> bool {
    if tag == "00080020" && want.contains('-') {
        let (from, to) = want.split_once('-').unwrap_or((want, ""));
        return !value.is_empty() && (from.is_empty() || value >= from) && (to.is_empty() || value <= to);
    }
    let text_like = matches!(tag, "00100010" | "00081030");
    let (want, value) = if text_like { (want.to_lowercase(), value.to_lowercase()) } else { (want.to_string(), value.to_string()) };
    if want.contains(['*', '?']) {
        return wildcard(want.as_bytes(), value.as_bytes());
    }
    if text_like {
        return value.starts_with(&want);
    }
    want.split(['\\', ',']).any(|w| w == value)
}

/// `*` any run, `?` any one character.
fn wildcard(p: &[u8], v: &[u8]) -> bool {
    match (p.first(), v.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], v) || (!v.is_empty() && wildcard(p, &v[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &v[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &v[1..]),
        _ => false,
    }
}

/// Instances grouped by series, in the order the series first appear.
fn by_series(list: &[StoredInstance]) -> Vec<Vec<&casecast_ingest::store::Instance>> {
    let mut groups: Vec<Vec<&casecast_ingest::store::Instance>> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for i in list {
        let at = *index.entry(i.info.series_uid.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(&i.info);
    }
    groups
}

pub(crate) async fn qido_studies(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    match st.cases.db.studies(&claims.room).await {
        Ok(s) => dicom_json(Value::Array(qido_filter(&req, s.iter().map(dicomweb::study_json).collect()))),
        Err(e) => internal(e),
    }
}

async fn study_instances(st: &AppState, room: &str, study: &str, series: Option<&str>) -> Result<Vec<StoredInstance>, HttpResponse> {
    let list = st.cases.db.instances(room, study, series).await.map_err(internal)?;
    if list.is_empty() { Err(no_study()) } else { Ok(list) }
}

pub(crate) async fn qido_series(req: HttpRequest, study: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let list = match study_instances(&st, &claims.room, &study, None).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    dicom_json(Value::Array(qido_filter(&req, by_series(&list).iter().map(|g| dicomweb::series_json(g)).collect())))
}

pub(crate) async fn qido_instances(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series) = p.into_inner();
    match study_instances(&st, &claims.room, &study, Some(&series)).await {
        Ok(l) => dicom_json(Value::Array(qido_filter(&req, l.iter().map(|i| dicomweb::instance_json(&i.info)).collect()))),
        Err(r) => r,
    }
}

async fn metadata(req: HttpRequest, p: web::Path<Vec<String>>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let p = p.into_inner();
    let (study, series, sop) = (p[0].as_str(), p.get(1).map(String::as_str), p.get(2).map(String::as_str));
    let (list, infos) = match (st.cases.db.dicom_json(&claims.room, study, series, sop).await, st.cases.db.instances(&claims.room, study, series).await) {
        (Ok(l), Ok(i)) => (l, i),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    if list.is_empty() {
        return no_study();
    }
    let infos: std::collections::HashMap<&str, &StoredInstance> = infos.iter().map(|i| (i.info.sop_uid.as_str(), i)).collect();
    let items: Vec<Value> = list
        .iter()
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .map(|mut item| {
            let sop = item["00080018"]["Value"][0].as_str().unwrap_or_default().to_string();
            if let Some(i) = infos.get(sop.as_str()) {
                let vr = pixel_vr(&i.info, &item);
                dicomweb::with_bulk_data(&mut item, &instance_url(&st, &i.info), vr);
            }
            item
        })
        .collect();
    dicom_json(Value::Array(items))
}

/// An instance's WADO-RS address as clients are given it (`public_url`), which its
/// metadata's `BulkDataURI`s start with.
fn instance_url(st: &AppState, i: &casecast_ingest::store::Instance) -> String {
    st.link(&format!("/dicomweb/studies/{}/series/{}/instances/{}", i.study_uid, i.series_uid, i.sop_uid))
}

/// Pixel Data's VR in the metadata `item` of instance `i`, when its pixel data is
/// native Pixel Data, served by [`bulk`]. (Float and Double Float Pixel Data are in
/// the stored header, and so given by reference like any bulk element.)
fn pixel_vr(i: &casecast_ingest::store::Instance, item: &Value) -> Option<&'static str> {
    let float = item.get("7FE00008").is_some() || item.get("7FE00009").is_some();
    (i.raw && i.pixel_offset.is_some() && i.frame_bytes > 0 && !float).then_some(if i.bits_allocated > 8 { "OW" } else { "OB" })
}

pub(crate) async fn metadata_study(req: HttpRequest, p: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    metadata(req, web::Path::from(vec![p.into_inner()]), st).await
}

pub(crate) async fn metadata_series(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let (a, b) = p.into_inner();
    metadata(req, web::Path::from(vec![a, b]), st).await
}

pub(crate) async fn metadata_instance(req: HttpRequest, p: web::Path<(String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let (a, b, c) = p.into_inner();
    metadata(req, web::Path::from(vec![a, b, c]), st).await
}

/// WADO-RS: instances as `multipart/related; type="application/dicom"`, streamed.
async fn retrieve(st: &AppState, instances: Vec<StoredInstance>) -> HttpResponse {
    let boundary = dicomweb::boundary();
    let objects = st.cases.objects.clone();
    let b = boundary.clone();
    let parts = futures_util::stream::iter(instances).then(move |i| {
        let (objects, b) = (objects.clone(), b.clone());
        async move {
            let head = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(web::Bytes::from(dicomweb::part_head(&b, "application/dicom"))) });
            let body = match objects.stream(&i.object_key).await {
                Ok((_, s)) => s.map(|c| c.map_err(actix_web::error::ErrorInternalServerError)).boxed(),
                Err(e) => futures_util::stream::once(async move { Err(actix_web::error::ErrorInternalServerError(e)) }).boxed(),
            };
            let crlf = futures_util::stream::once(async { Ok(web::Bytes::from_static(b"\r\n")) });
            head.chain(body).chain(crlf)
        }
    });
    let closing = format!("--{boundary}--\r\n");
    let stream = parts.flatten().chain(futures_util::stream::once(async move { Ok(web::Bytes::from(closing)) }));
    HttpResponse::Ok()
        .content_type(format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"))
        .streaming(stream)
}

pub(crate) async fn wado_study(req: HttpRequest, p: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    match study_instances(&st, &claims.room, &p, None).await {
        Ok(l) => retrieve(&st, l).await,
        Err(r) => r,
    }
}

pub(crate) async fn wado_series(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series) = p.into_inner();
    match study_instances(&st, &claims.room, &study, Some(&series)).await {
        Ok(l) => retrieve(&st, l).await,
        Err(r) => r,
    }
}

pub(crate) async fn wado_instance(req: HttpRequest, p: web::Path<(String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop) = p.into_inner();
    match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => retrieve(&st, vec![i]).await,
        Err(r) => r,
    }
}

/// Frame numbers: `1`, or `1,2,3` (each once, in the order asked).
#[allow(clippy::result_large_err)]
fn frame_numbers(s: &str, frames: i64) -> Result<Vec<i64>, HttpResponse> {
    let list: Option<Vec<i64>> = s.split(',').map(|n| n.trim().parse::<i64>().ok().filter(|n| (1..=frames).contains(n))).collect();
    let mut list = list.filter(|l| !l.is_empty()).ok_or_else(|| json_error(StatusCode::NOT_FOUND, &format!("frames are numbered 1 to {frames}")))?;
    let mut seen = HashSet::new();
    list.retain(|n| seen.insert(*n));
    Ok(list)
}

/// The most pixel bytes one frames request returns.
const MAX_FRAMES_BYTES: u64 = 256 << 20;

pub(crate) async fn frames(req: HttpRequest, p: web::Path<(String, String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop, list) = p.into_inner();
    let i = match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let numbers = match frame_numbers(&list, i.info.frames) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Some(offset) = i.info.pixel_offset.filter(|_| i.info.raw) else {
        return json_error(
            StatusCode::NOT_ACCEPTABLE,
            "this instance's pixel data is compressed in a form the server does not decode; use the rendered frames",
        );
    };
    let size = i.info.frame_bytes as u64;
    if size * numbers.len() as u64 > MAX_FRAMES_BYTES {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{} frames of {} KB are more than one request returns ({} MB); ask for fewer", numbers.len(), size >> 10, MAX_FRAMES_BYTES >> 20),
        );
    }
    let mut bodies = Vec::new();
    for n in &numbers {
        let start = offset as u64 + (*n as u64 - 1) * size;
        match st.cases.objects.get_range(&i.object_key, start..start + size).await {
            Ok(b) => bodies.push(b),
            Err(e) => return internal(e),
        }
    }
    let accept = header_str(&req, "Accept").unwrap_or("");
    if accept.trim() == "application/octet-stream" && bodies.len() == 1 {
        return HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
            .body(bodies.remove(0));
    }
    let boundary = dicomweb::boundary();
    let mut body = Vec::with_capacity(bodies.iter().map(|b| b.len() + 128).sum());
    for b in &bodies {
        body.extend(dicomweb::part_head(&boundary, "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"));
        body.extend_from_slice(b);
        body.extend_from_slice(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    HttpResponse::Ok()
        .content_type(format!("multipart/related; type=\"application/octet-stream\"; boundary={boundary}"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .body(body)
}

pub(crate) async fn rendered(req: HttpRequest, p: web::Path<(String, String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop, n) = p.into_inner();
    let i = match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let n = match frame_numbers(&n, i.info.frames) {
        Ok(n) if n.len() == 1 => n[0],
        Ok(_) => return json_error(StatusCode::BAD_REQUEST, "one frame at a time"),
        Err(r) => return r,
    };
    if i.info.rendered.is_empty() {
        return json_error(StatusCode::NOT_FOUND, "this instance has no rendered frames (its pixel data could not be decoded)");
    }
    match st.cases.objects.get(&i.frame_key(n)).await {
        Ok(b) => HttpResponse::Ok()
            .content_type(if i.info.rendered == "jpeg" { "image/jpeg" } else { "image/png" })
            .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
            .body(b),
        Err(e) => internal(e),
    }
}

/// WADO-RS bulk data (PS3.18 10.4.1.1.3), what metadata's `BulkDataURI`s point at:
/// native Pixel Data streamed from the stored object, any other top-level bulk
/// element from the stored header. As `multipart/related;
/// type="application/octet-stream"`, or the bare bytes when `Accept` is exactly
/// `application/octet-stream`.
pub(crate) async fn bulk(req: HttpRequest, p: web::Path<(String, String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop, tag) = p.into_inner();
    let i = match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    type Body = futures_util::stream::LocalBoxStream<'static, Result<web::Bytes, actix_web::Error>>;
    let body: Body = if tag.eq_ignore_ascii_case(dicomweb::PIXEL_DATA_TAG) {
        let Some(offset) = i.info.pixel_offset.filter(|_| i.info.raw && i.info.frame_bytes > 0) else {
            return json_error(
                StatusCode::NOT_ACCEPTABLE,
                "this instance's pixel data is compressed in a form the server does not decode; use the rendered frames",
            );
        };
        let (start, end) = (offset as u64, offset as u64 + i.info.frames.max(1) as u64 * i.info.frame_bytes as u64);
        let stream = match st.cases.objects.stream(&i.object_key).await {
            Ok((_, s)) => s,
            Err(e) => return internal(e),
        };
        // The object's bytes from `start` to `end`, as they stream past.
        let mut at = 0u64;
        stream
            .filter_map(move |chunk| {
                let out = match chunk {
                    Err(e) => Some(Err(actix_web::error::ErrorInternalServerError(e))),
                    Ok(c) => {
                        let from = at;
                        at += c.len() as u64;
                        let (a, b) = (start.max(from), end.min(at));
                        (a < b).then(|| Ok(c.slice((a - from) as usize..(b - from) as usize)))
                    }
                };
                futures_util::future::ready(out)
            })
            .boxed_local()
    } else {
        let item = match st.cases.db.dicom_json(&claims.room, &study, Some(&series), Some(&sop)).await {
            Ok(list) => list.first().and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or(Value::Null),
            Err(e) => return internal(e),
        };
        let Some(bytes) = dicomweb::bulk_value(&item, &tag) else {
            return json_error(StatusCode::NOT_FOUND, "this instance has no bulk data under that tag");
        };
        futures_util::stream::once(async move { Ok(web::Bytes::from(bytes)) }).boxed_local()
    };
    let accept = header_str(&req, "Accept").unwrap_or("");
    if accept.trim() == "application/octet-stream" {
        return HttpResponse::Ok().content_type("application/octet-stream").insert_header((header::CACHE_CONTROL, "private, max-age=3600")).streaming(body);
    }
    let boundary = dicomweb::boundary();
    let head = web::Bytes::from(dicomweb::part_head(&boundary, "application/octet-stream"));
    let closing = web::Bytes::from(dicomweb::closing(&boundary));
    let stream = futures_util::stream::once(async move { Ok(head) }).chain(body).chain(futures_util::stream::once(async move { Ok(closing) }));
    HttpResponse::Ok()
        .content_type(format!("multipart/related; type=\"application/octet-stream\"; boundary={boundary}"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .streaming(stream)
}

/// How a thumbnail is asked for: whether as a one-part `multipart/related` (an
/// `Accept` header asking for multipart, as dicomweb-client's bulk data retrieval
/// does, OHIF's `thumbnail` rendering with it); `None` when JPEG is not among what
/// is accepted (`accept` in the query, else `Accept`).
fn thumbnail_wrapping(req: &HttpRequest) -> Option<bool> {
    let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let header = header_str(req, "Accept").unwrap_or("").to_ascii_lowercase();
    let multipart = header.trim_start().starts_with("multipart/related");
    let asked = q.iter().find(|(k, _)| k == "accept").map(|(_, v)| v.to_ascii_lowercase()).unwrap_or(header);
    let asked = if asked.trim().is_empty() { "image/jpeg".to_string() } else { asked };
    let jpeg = asked.split(',').any(|m| {
        let media = m.split(';').next().unwrap_or("").trim();
        match media {
            "image/jpeg" | "image/*" | "*/*" => true,
            "multipart/related" => !m.contains("type=") || m.contains("image/jpeg") || m.contains("image/*"),
            _ => false,
        }
    });
    jpeg.then_some(multipart)
}

/// The most a thumbnail's viewport may ask for, each side.
const MAX_THUMBNAIL_SIDE: usize = 1024;

/// Thumbnails (PS3.18 10.4.1.1.5, "thumbnail" resources) of a study, a series, an
/// instance or a frame: a frame of the first instance with native pixels (its
/// middle frame, or the one asked for), rendered as the viewer renders it and
/// scaled down to fit `viewport=width,height` (128×128 when not given), as JPEG.
async fn thumbnail_of(req: &HttpRequest, st: &AppState, room: &str, list: Vec<StoredInstance>, frame: Option<&str>) -> HttpResponse {
    let Some(multipart) = thumbnail_wrapping(req) else {
        return json_error(StatusCode::NOT_ACCEPTABLE, "thumbnails are image/jpeg");
    };
    let q = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner()).unwrap_or_default();
    let viewport = q.iter().find(|(k, _)| k == "viewport").map(|(_, v)| {
        let n: Vec<usize> = v.split(',').take(2).filter_map(|n| n.trim().parse().ok()).collect();
        (n.first().copied(), n.get(1).copied())
    });
    let side = |n: Option<usize>| n.filter(|n| (1..=MAX_THUMBNAIL_SIDE).contains(n));
    let max = match viewport {
        None => (dicomweb::THUMBNAIL_SIDE, dicomweb::THUMBNAIL_SIDE),
        Some((w, h)) => match (side(w), side(h)) {
            (Some(w), Some(h)) => (w, h),
            _ => return json_error(StatusCode::BAD_REQUEST, &format!("viewport is width,height, each 1 to {MAX_THUMBNAIL_SIDE}")),
        },
    };
    let Some(i) = list.into_iter().find(|i| i.info.raw && i.info.frame_bytes > 0 && i.info.pixel_offset.is_some()) else {
        return json_error(StatusCode::NOT_FOUND, "nothing here has pixel data the server can render");
    };
    let n = match frame {
        None => (i.info.frames.max(1) + 1) / 2,
        Some(f) => match frame_numbers(f, i.info.frames.max(1)) {
            Ok(n) if n.len() == 1 => n[0],
            Ok(_) => return json_error(StatusCode::BAD_REQUEST, "one frame at a time"),
            Err(r) => return r,
        },
    };
    let size = i.info.frame_bytes as u64;
    let start = i.info.pixel_offset.unwrap_or(0) as u64 + (n as u64 - 1) * size;
    let (pixels, item) = match (
        st.cases.objects.get_range(&i.object_key, start..start + size).await,
        st.cases.db.dicom_json(room, &i.info.study_uid, Some(&i.info.series_uid), Some(&i.info.sop_uid)).await,
    ) {
        (Ok(p), Ok(j)) => (p, j.first().and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or(Value::Null)),
        (Err(e), _) => return internal(e),
        (_, Err(e)) => return internal(e),
    };
    // The window is given in output (rescaled) units; frames hold stored values.
    let info = &i.info;
    let window = info.window_center.zip(info.window_width).filter(|(_, w)| *w > 0.0).map(|(c, w)| {
        ((c - info.rescale_intercept) / info.rescale_slope, w / info.rescale_slope.abs())
    });
    // Decoding and scaling a frame is CPU work: off the server's threads.
    let jpeg = match web::block(move || dicomweb::thumbnail(&item, &pixels, window, max)).await {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => return json_error(StatusCode::NOT_FOUND, &format!("no thumbnail can be made of this picture: {e}")),
        Err(e) => return internal(e),
    };
    if multipart {
        let boundary = dicomweb::boundary();
        let mut body = dicomweb::part_head(&boundary, "image/jpeg");
        body.extend(jpeg);
        body.extend(dicomweb::closing(&boundary));
        return HttpResponse::Ok()
            .content_type(format!("multipart/related; type=\"image/jpeg\"; boundary={boundary}"))
            .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
            .body(body);
    }
    HttpResponse::Ok().content_type("image/jpeg").insert_header((header::CACHE_CONTROL, "private, max-age=3600")).body(jpeg)
}

pub(crate) async fn thumbnail_study(req: HttpRequest, p: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    match study_instances(&st, &claims.room, &p, None).await {
        Ok(l) => thumbnail_of(&req, &st, &claims.room, l, None).await,
        Err(r) => r,
    }
}

pub(crate) async fn thumbnail_series(req: HttpRequest, p: web::Path<(String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series) = p.into_inner();
    match study_instances(&st, &claims.room, &study, Some(&series)).await {
        Ok(l) => thumbnail_of(&req, &st, &claims.room, l, None).await,
        Err(r) => r,
    }
}

pub(crate) async fn thumbnail_instance(req: HttpRequest, p: web::Path<(String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop) = p.into_inner();
    match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => thumbnail_of(&req, &st, &claims.room, vec![i], None).await,
        Err(r) => r,
    }
}

pub(crate) async fn thumbnail_frame(req: HttpRequest, p: web::Path<(String, String, String, String)>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (study, series, sop, frame) = p.into_inner();
    match instance_in(&st, &claims.room, &study, &series, &sop).await {
        Ok(i) => thumbnail_of(&req, &st, &claims.room, vec![i], Some(&frame)).await,
        Err(r) => r,
    }
}

/// STOW-RS: each `application/dicom` part is staged and becomes a job. The parts are
/// written to disk as they arrive; the response lists the jobs (the published UIDs
/// are the de-identified ones, known once the jobs are done).
pub(crate) async fn stow(req: HttpRequest, mut body: web::Payload, st: web::Data<AppState>) -> HttpResponse {
    use tokio::io::AsyncWriteExt;
    let claims = auth!(req, st, UPLOAD);
    let Some(boundary) = header_str(&req, "Content-Type").and_then(dicomweb::boundary_of) else {
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "STOW-RS takes multipart/related; type=\"application/dicom\" with a boundary");
    };
    let dir = st.cases.staging.join("stow");
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return internal(e);
    }
    let mut splitter = dicomweb::MultipartSplitter::new(&boundary);
    /// Staged parts not yet jobs are removed however the request ends (an error, a
    /// dropped connection): nothing of an original stays behind.
    struct Staged(Vec<PathBuf>);
    impl Drop for Staged {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let mut staged = Staged(Vec::new());
    let mut current: Option<tokio::io::BufWriter<tokio::fs::File>> = None;
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, &format!("the body was cut short: {e}"));
            }
        };
        total += chunk.len() as u64;
        if total > st.cases.max_upload {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the request exceeds {} bytes (cases.max_upload_bytes)", st.cases.max_upload));
        }
        let events = match splitter.feed(&chunk) {
            Ok(e) => e,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, &e);
            }
        };
        for e in events {
            let r = match e {
                dicomweb::PartEvent::Begin(ct) => {
                    if !ct.is_empty() && !ct.to_ascii_lowercase().starts_with("application/dicom") {
                        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("a part is {ct}; only application/dicom parts are taken"));
                    }
                    let path = dir.join(format!("{}.dcm", random_id()));
                    match tokio::fs::File::create(&path).await {
                        Ok(f) => {
                            staged.0.push(path);
                            current = Some(tokio::io::BufWriter::new(f));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                dicomweb::PartEvent::Data(d) => match current.as_mut() {
                    Some(w) => w.write_all(&d).await,
                    None => Ok(()),
                },
                dicomweb::PartEvent::End => match current.take() {
                    Some(mut w) => w.flush().await,
                    None => Ok(()),
                },
            };
            if let Err(e) = r {
                return internal(format!("cannot stage a part: {e}"));
            }
        }
    }
    drop(current);
    if !splitter.finished() || staged.0.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "the multipart body holds no complete part (no closing boundary)");
    }
    let mut jobs = Vec::new();
    while let Some(p) = staged.0.first().cloned() {
        match st.cases.enqueue(&claims.room, "stow", "dicom", &p, None, &uploader_name(&claims)).await {
            Ok(id) => {
                jobs.push(id);
                staged.0.remove(0);
            }
            Err(e) => return internal(e),
        }
    }
    HttpResponse::Accepted().json(json!({ "jobs": jobs }))
}

/// DICOMweb clients (OHIF) are often served from another origin: every answer says
/// any origin may read it (tokens travel in headers, not cookies), and preflights
/// are answered.
pub(crate) fn cors() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Access-Control-Allow-Origin", "*"))
        .add(("Access-Control-Expose-Headers", "Content-Type, Content-Length, Location, Upload-Offset, Upload-Length, Tus-Resumable, Casecast-Job"))
}

pub(crate) async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET, POST, HEAD, PATCH, DELETE, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", "Authorization, Accept, Content-Type, Upload-Length, Upload-Offset, Upload-Metadata, Tus-Resumable"))
        .insert_header(("Access-Control-Max-Age", "86400"))
        .finish()
}

/// The setting that names the secret UIDs and pseudonyms are derived with.
pub const DEID_KEY_ID: &str = "deid_key_id";

/// Opens the stores and starts the ingest pool, as configured.
pub async fn open(config: &crate::config::Config, metrics: Option<casecast_actors::metrics::IngestMetrics>, recover: bool) -> anyhow::Result<Cases> {
    use anyhow::Context;
    let url = config.cases_database();
    let db = Db::connect(&url).await.with_context(|| format!("cannot open the cases database {}", casecast_ingest::store::shown_url(&url)))?;
    let objects = Objects::open(&config.cases_objects(), config.cases.s3_endpoint.as_deref())
        .with_context(|| format!("cannot open the cases object store {}", config.cases_objects()))?;
    let staging = config.cases_staging();
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let mut cfg = casecast_actors::ingest::IngestConfig { recover, ..config.ingest_config()? };
    if recover {
        // The server names its secret for the ingest workers to check theirs against.
        let id = casecast_ingest::uid::key_id(&cfg.deid.secret);
        db.put_setting(DEID_KEY_ID, &id).await.context("cannot record the de-identification key's id")?;
    }
    if !config.cases.ingest_in_server {
        // The pool takes no job (ingest workers do); it still tidies the staging
        // area and counts the jobs for the metrics.
        cfg.workers = 0;
        tracing::info!("ingest jobs are recorded for `casecast ingest-worker`s to run (cases.ingest_in_server = false)");
    }
    let pool = actix::Supervisor::start({
        let (db, objects) = (db.clone(), objects.clone());
        move |_| IngestPool::new(db, objects, cfg, metrics)
    });
    let quota = Quota {
        open_per_token: config.cases.max_open_uploads_per_token,
        bytes_per_token: config.cases.max_reserved_bytes_per_token,
        bytes: config.cases.max_reserved_bytes,
    };
    Ok(Cases {
        db,
        objects,
        pool,
        staging,
        stage_in_objects: config.cases.stage_in_objects,
        max_upload: config.cases.max_upload_bytes,
        quota,
        reserving: tokio::sync::Mutex::new(()),
        writing: Mutex::new(HashSet::new()),
    })
}

/// Starts the DICOM C-STORE receiver, if configured: each object received becomes a
/// job in the configured case library.
pub fn start_cstore(config: &crate::config::Config, state: web::Data<AppState>) -> anyhow::Result<Option<std::net::SocketAddr>> {
    use anyhow::Context;
    let listen = config.cases.cstore_listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen for DICOM C-STORE on {listen} (cases.cstore_listen; \"\" turns it off)"))?;
    let addr = listener.local_addr()?;
    let room = config.cases.cstore_room.clone();
    // The receiver's threads hand files to the async side and wait for the job row.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(casecast_ingest::cstore::Received, tokio::sync::oneshot::Sender<Result<(), String>>)>();
    actix_web::rt::spawn(async move {
        while let Some((received, reply)) = rx.recv().await {
            let ae = sanitize_ae(&received.calling_ae);
            let r = state.cases.enqueue(&room, "cstore", "dicom", &received.path, Some(format!("cstore-{ae}")), &format!("C-STORE {ae}")).await.map(|_| ());
            let _ = reply.send(r);
        }
    });
    let sink: casecast_ingest::cstore::Sink = std::sync::Arc::new(move |received| {
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send((received, reply)).map_err(|_| "the server is stopping".to_string())?;
        answer.blocking_recv().map_err(|_| "the server is stopping".to_string())?
    });
    let opts = casecast_ingest::cstore::Options {
        ae_title: config.cases.cstore_ae_title.clone(),
        staging: config.cases_staging().join("cstore"),
        max_bytes: config.cases.max_upload_bytes,
        max_associations: 16,
        allowed_calling: config.cases.cstore_allowed.clone(),
    };
    std::fs::create_dir_all(&opts.staging)?;
    casecast_ingest::cstore::spawn(listener, opts, sink)?;
    Ok(Some(addr))
}

fn sanitize_ae(ae: &str) -> String {
    ae.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(16).collect()
}
