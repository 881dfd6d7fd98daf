//! DICOMweb over the case library (PS3.18): QIDO-RS (studies, series, instances,
//! with the matching clients use), WADO-RS (instances, metadata with BulkDataURIs,
//! bulk data, frames, rendered frames, thumbnails) and STOW-RS (stores go through
//! the same ingest as uploads). Every request checks a token; the token's room is
//! the case library it opens. Uploads, jobs and studies are in `cases`.

use std::collections::HashSet;
use std::path::PathBuf;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use casecast_ingest::dicomweb;
use casecast_ingest::store::StoredInstance;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::cases::{UPLOAD, VIEW, auth, authorize, header_str, instance_in, no_study, uploader_name};
use crate::http::{json_error, json_internal as internal};
use crate::state::{AppState, random_id};

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
pub(crate) fn by_series(list: &[StoredInstance]) -> Vec<Vec<&casecast_ingest::store::Instance>> {
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
    let window = i.info.stored_window();
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

