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
pub(crate) fn authorize(req: &HttpRequest, st: &AppState, roles: &[Role]) -> Result<Claims, HttpResponse> {
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
pub(crate) use auth;

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

pub(crate) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
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
pub(crate) fn uploader_name(claims: &Claims) -> String {
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

pub(crate) fn no_study() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "no such study in this case library")
}

pub(crate) async fn study(req: HttpRequest, uid: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    let claims = auth!(req, st, VIEW);
    let (studies, instances) = match (st.cases.db.studies(&claims.room).await, st.cases.db.instances(&claims.room, &uid, None).await) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let Some(study) = studies.into_iter().find(|s| s.study_uid == *uid) else { return no_study() };
    let series: Vec<Value> = crate::dicomweb::by_series(&instances)
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

pub(crate) async fn instance_in(st: &AppState, room: &str, study: &str, series: &str, sop: &str) -> Result<StoredInstance, HttpResponse> {
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
