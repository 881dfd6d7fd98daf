//! The recordings' library (as Amazon IVS's recording to S3 gives): events, past and
//! live, with their program's recorded files, each with when it started, how long
//! it is, a thumbnail and chapters made of the timed metadata sent while it was
//! recorded; the files themselves, served in byte ranges so a player can seek; and
//! `/watch/{room}?recording=…`, which plays one with its chapters.
//!
//! Who reads them: the distribution center's operators (`*`) always, an ended
//! event's included, and an event's own operators while it runs. Pages and players
//! cannot send headers, so the token may also come as `?token=` (never logged: the
//! access log has paths only).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use casecast_actors::recorder::{self, FileState, RecordedFile};
use casecast_signaling::{Role, RoomId};
use serde_json::{Value, json};

use crate::events::ALL_EVENTS;
use crate::http::{error_response, request_token, safe_name};
use crate::state::AppState;

/// Thumbnails are this wide (their height keeps the picture's shape).
const THUMBNAIL_WIDTH: u32 = 320;
/// Thumbnails show the picture this far in (the middle of a shorter file): past the
/// first second's slate or black.
const THUMBNAIL_AT: Duration = Duration::from_secs(5);
/// A file still being recorded gets a new thumbnail at most this often.
const THUMBNAIL_FRESH: Duration = Duration::from_secs(60);
/// A range is sent in reads of this many bytes.
const CHUNK: usize = 256 << 10;

/// Whether the request's token reads the recordings of `room`: the center's
/// operators (`*`) always, the room's operators while its event runs.
#[allow(clippy::result_large_err)] // the error is the response itself, built once per request
fn reader(req: &HttpRequest, state: &AppState, room: &str) -> Result<(), HttpResponse> {
    let Some(token) = request_token(req, true) else {
        return Err(error_response(StatusCode::UNAUTHORIZED, "the recordings need an operator token (Authorization: Bearer, or ?token=)"));
    };
    if state.verify(&token).is_ok_and(|c| c.role == Role::Operator && c.room == ALL_EVENTS) {
        return Ok(());
    }
    state.authorize(Some(&token), room, &[Role::Operator]).map(|_| ()).map_err(|e| error_response(e.status(), e.message()))
}

/// A recorded file as the library shows it.
struct Recording {
    file: RecordedFile,
    /// Unix seconds, from its MP4 header.
    started_at: Option<u64>,
    /// Seconds: from its start to its last write (to now while it records).
    duration: Option<f64>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The room's recorded files, with their starts and lengths (blocking: file reads).
fn recordings_of(dir: &Path) -> Vec<Recording> {
    recorder::list(dir)
        .into_iter()
        .map(|file| {
            let path = dir.join(&file.name);
            let started_at = casecast_actors::vod::started_at(&path);
            let end = match file.state {
                FileState::Recording => Some(unix(SystemTime::now())),
                _ => std::fs::metadata(&path).and_then(|m| m.modified()).ok().map(unix),
            };
            let duration = started_at.zip(end).map(|(s, e)| (e - s as f64).max(0.0));
            Recording { file, started_at, duration }
        })
        .collect()
}

/// A chapter's title: a message's text, or a poll's question.
fn chapter_title(data: &Value) -> Option<String> {
    let title = match data["type"].as_str()? {
        "poll" => format!("Poll: {}", data["question"].as_str()?),
        _ => data["text"].as_str()?.to_string(),
    };
    Some(title)
}

/// The chapters of a file: the timed metadata sent between its start and its end,
/// at their offsets into it.
fn chapters(r: &Recording, sent: &[(i64, Value)]) -> Vec<Value> {
    let (Some(start), Some(length)) = (r.started_at, r.duration) else { return Vec::new() };
    sent.iter()
        .filter_map(|(at, data)| {
            let offset = *at as f64 - start as f64;
            (0.0..=length).contains(&offset).then(|| chapter_title(data).map(|title| json!({ "start_secs": offset, "title": title, "type": data["type"] })))?
        })
        .collect()
}

/// The recordings of `room` as JSON, with their chapters.
async fn listing(state: &AppState, room: &str) -> Vec<Value> {
    let dir = state.recordings_root.join(room);
    let files = tokio::task::spawn_blocking(move || recordings_of(&dir)).await.unwrap_or_default();
    let sent = if files.is_empty() { Vec::new() } else { state.events.timed_metadata(room).await.unwrap_or_default() };
    files
        .iter()
        .map(|r| {
            let f = &r.file;
            let url = format!("/api/rooms/{room}/recordings/{}", f.name);
            json!({
                "name": f.name,
                "bytes": f.bytes,
                "state": f.state.as_str(),
                "complete": f.state == FileState::Complete,
                "started_at": r.started_at,
                "duration_secs": r.duration.map(|d| d.round()),
                "url": url,
                "thumbnail": format!("{url}/thumbnail"),
                "watch": format!("/watch/{room}?recording={}", f.name),
                "chapters": chapters(r, &sent),
            })
        })
        .collect()
}

/// `GET /api/rooms/{room}/recordings` (operator token): the room's recorded files,
/// each with its state (`complete`, `recording` now, or `interrupted`: the server
/// stopped while writing it, and it plays up to then), start, length, thumbnail,
/// chapters and the link that plays it.
pub(crate) async fn recordings(req: HttpRequest, room: web::Path<RoomId>, state: web::Data<AppState>) -> HttpResponse {
    let room = room.into_inner().to_string();
    if let Err(r) = reader(&req, &state, &room) {
        return r;
    }
    HttpResponse::Ok().json(json!({ "room": room, "recordings": listing(&state, &room).await }))
}

/// The path of a recorded file, if the name is one.
fn recording_path(state: &AppState, room: &str, file: &str) -> Option<PathBuf> {
    (safe_name(file) && file.ends_with(".mp4")).then(|| state.recordings_root.join(room).join(file)).filter(|p| p.is_file())
}

/// The recorded file a request names, once its token may read the room's
/// recordings: its room, its name and its path; else the refusal or a 404.
#[allow(clippy::result_large_err)]
fn requested_file(req: &HttpRequest, state: &AppState, path: web::Path<(RoomId, String)>) -> Result<(String, String, PathBuf), HttpResponse> {
    let (room, file) = path.into_inner();
    let room = room.to_string();
    reader(req, state, &room)?;
    let path = recording_path(state, &room, &file).ok_or_else(|| error_response(StatusCode::NOT_FOUND, "no such recording"))?;
    Ok((room, file, path))
}

/// `GET /api/rooms/{room}/recordings/{file}` (operator token): one recorded file,
/// whole or in a byte range (`Range: bytes=…`), streamed.
pub(crate) async fn recording(req: HttpRequest, path: web::Path<(RoomId, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (_, _, path) = match requested_file(&req, &state, path) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Ok(mut f) = tokio::fs::File::open(&path).await else {
        return error_response(StatusCode::NOT_FOUND, "no such recording");
    };
    let Ok(len) = f.metadata().await.map(|m| m.len()) else {
        return error_response(StatusCode::NOT_FOUND, "no such recording");
    };
    // A range past the end is refused (416); one this server does not read (several
    // ranges, another unit) is ignored, and the whole file answered (RFC 9110 §14.2).
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|r| byte_range(r, len));
    let (start, end) = match range {
        None => (0, len),
        Some(Some(r)) => r,
        Some(None) => {
            return HttpResponse::RangeNotSatisfiable().insert_header((header::CONTENT_RANGE, format!("bytes */{len}"))).finish();
        }
    };
    if start > 0 {
        use tokio::io::AsyncSeekExt;
        if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "the recording cannot be read");
        }
    }
    let body = futures_util::stream::unfold((f, end - start), |(mut f, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(left as usize)];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let partial = range.is_some();
    let mut answer = if partial { HttpResponse::PartialContent() } else { HttpResponse::Ok() };
    if partial {
        answer.insert_header((header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1)));
    }
    answer
        .content_type("video/mp4")
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .no_chunking(end - start)
        .streaming(body)
}

/// A `Range: bytes=…` header's one range: `None` when this server does not read it
/// (another unit, several ranges, not numbers: the whole file is sent), `Some(None)`
/// when it cannot be satisfied (past the end), else `[start, end)` within `len`.
fn byte_range(header: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        // The last n bytes.
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (false, true) => (a.parse().ok()?, len),
        (false, false) => {
            let (s, e): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
            if e < s {
                return None;
            }
            (s, e.saturating_add(1).min(len))
        }
        (true, true) => return None,
    };
    Some((start < end && start < len).then_some((start, end)))
}

/// `GET /api/rooms/{room}/recordings/{file}/thumbnail` (operator token): a JPEG of
/// the file's picture a few seconds in, made once and kept beside the files.
pub(crate) async fn thumbnail(req: HttpRequest, path: web::Path<(RoomId, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (room, file, path) = match requested_file(&req, &state, path) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let kept = state.recordings_root.join(&room).join(".thumbnails").join(format!("{file}.jpg"));
    // One thumbnail is made at a time (a decode competes with the live programs);
    // the next asker finds it kept.
    let Ok(_turn) = MAKING.acquire().await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "thumbnails cannot be made now");
    };
    let made = tokio::task::spawn_blocking(move || kept_or_made(&path, &kept)).await;
    match made {
        Ok(Ok(jpeg)) => HttpResponse::Ok().content_type("image/jpeg").insert_header((header::CACHE_CONTROL, "private, max-age=60")).body(jpeg),
        Ok(Err(e)) => {
            tracing::warn!(%room, file, error = %e, "no thumbnail");
            error_response(StatusCode::UNPROCESSABLE_ENTITY, "this recording has no picture to show yet")
        }
        Err(_) => error_response(StatusCode::INTERNAL_SERVER_ERROR, "the thumbnail could not be made"),
    }
}

/// Thumbnails being made: one at a time.
static MAKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Files whose thumbnail could not be made, and when: not tried again for
/// [`THUMBNAIL_FRESH`] (a file with no picture yet is not decoded at every ask).
static FAILED: std::sync::Mutex<Vec<(PathBuf, std::time::Instant)>> = std::sync::Mutex::new(Vec::new());

/// The kept thumbnail when it is as new as its file (or under a minute old, while the
/// file grows), else a new one, kept.
fn kept_or_made(file: &Path, kept: &Path) -> Result<Vec<u8>, String> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(k), Some(f)) = (modified(kept), modified(file))
        && (k >= f || k.elapsed().is_ok_and(|age| age < THUMBNAIL_FRESH))
        && let Ok(jpeg) = std::fs::read(kept)
    {
        return Ok(jpeg);
    }
    {
        let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|(_, at)| at.elapsed() < THUMBNAIL_FRESH);
        if failed.iter().any(|(p, _)| p == file) {
            return Err("tried less than a minute ago".into());
        }
    }
    let jpeg = casecast_actors::vod::thumbnail(file, THUMBNAIL_AT, THUMBNAIL_WIDTH).inspect_err(|_| {
        FAILED.lock().unwrap_or_else(|e| e.into_inner()).push((file.to_path_buf(), std::time::Instant::now()));
    })?;
    if let Some(dir) = kept.parent() {
        let tmp = dir.join(format!(".{:016x}.tmp", rand::random::<u64>()));
        let written = crate::files::private_dir(dir).and_then(|_| std::fs::write(&tmp, &jpeg)).and_then(|_| std::fs::rename(&tmp, kept));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(jpeg)
}

/// `GET /api/library` (operator token): the events this token may see, newest
/// first, each with its recordings; for the center (`*`) also rooms that are not
/// events but were recorded (the demo's).
pub(crate) async fn library(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(token) = request_token(&req, true) else {
        return crate::http::json_error(StatusCode::UNAUTHORIZED, "the library needs an operator token (Authorization: Bearer, or ?token=)");
    };
    // An event's own operators while their token works (not after it ended).
    let claims = match state.verify(&token) {
        Ok(c) if c.role == Role::Operator => c,
        Ok(_) => return crate::http::json_error(StatusCode::FORBIDDEN, "the library is the operators'"),
        Err(e) => return crate::http::json_error(e.status(), e.message()),
    };
    let center = claims.room == ALL_EVENTS;
    let mut events: Vec<_> = state.events.all().into_iter().filter(|e| center || e.id == claims.room).collect();
    events.sort_by(|a, b| b.started_at.or(b.starts_at).cmp(&a.started_at.or(a.starts_at)).then(a.id.cmp(&b.id)));
    let mut out = Vec::new();
    for e in &events {
        let e = crate::events::api::as_now(&state, e.clone());
        out.push(json!({
            "id": e.id,
            "title": e.title,
            "status": e.status,
            "state": e.state,
            "started_at": e.started_at,
            "updated_at": e.updated_at,
            "watch": format!("/watch/{}", e.id),
            "recordings": listing(&state, &e.id).await,
        }));
    }
    if center {
        let root = state.recordings_root.clone();
        let rooms = tokio::task::spawn_blocking(move || {
            let mut rooms: Vec<String> = std::fs::read_dir(&root).into_iter().flatten().flatten().filter_map(|d| d.file_name().into_string().ok()).filter(|n| RoomId::parse(n).is_ok()).collect();
            rooms.sort();
            rooms
        })
        .await
        .unwrap_or_default();
        for room in rooms.into_iter().filter(|r| !events.iter().any(|e| &e.id == r)) {
            let recordings = listing(&state, &room).await;
            if !recordings.is_empty() {
                out.push(json!({ "id": room, "title": room, "status": "room", "recordings": recordings, "watch": format!("/watch/{room}") }));
            }
        }
    }
    HttpResponse::Ok().json(json!({ "events": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_players_send_them() {
        assert_eq!(byte_range("bytes=0-", 1000), Some(Some((0, 1000))));
        assert_eq!(byte_range("bytes=100-199", 1000), Some(Some((100, 200))));
        assert_eq!(byte_range("bytes=900-5000", 1000), Some(Some((900, 1000))));
        assert_eq!(byte_range("bytes=-100", 1000), Some(Some((900, 1000))));
        assert_eq!(byte_range("bytes=0-18446744073709551615", 1000), Some(Some((0, 1000))), "no overflow");
        assert_eq!(byte_range("bytes=1000-", 1000), Some(None), "past the end");
        // Not read: the whole file is sent.
        assert_eq!(byte_range("bytes=5-2", 1000), None);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(byte_range("items=0-1", 1000), None);
        assert_eq!(byte_range("bytes=-", 1000), None);
    }

    #[test]
    fn chapters_fall_inside_their_file() {
        let r = Recording {
            file: RecordedFile { name: "program-00000.mp4".into(), bytes: 1, state: FileState::Complete },
            started_at: Some(1000),
            duration: Some(60.0),
        };
        let sent = vec![
            (990, json!({"type": "message", "text": "before"})),
            (1010, json!({"type": "message", "text": "Incision"})),
            (1030, json!({"type": "poll", "question": "Clip or ligate?", "options": ["clip", "ligate"]})),
            (1100, json!({"type": "message", "text": "after"})),
        ];
        let c = chapters(&r, &sent);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0]["start_secs"].as_f64(), c[0]["title"].as_str()), (Some(10.0), Some("Incision")));
        assert_eq!((c[1]["start_secs"].as_f64(), c[1]["title"].as_str()), (Some(30.0), Some("Poll: Clip or ligate?")));
    }
}
