//! `GET /hls/{room}/{file}`: the program's HLS, as viewers and CloudFront fetch it.
//!
//! MPEG-TS presets and ended events are files on disk (the playlist casecast writes,
//! the segments). A low-latency program (`ultra-low`) is served from its live edge
//! in memory (`casecast_actors::llhls`): the playlist with its parts, blocking
//! reloads (`_HLS_msn`, `_HLS_part`, held until the part exists, at most three
//! target durations), delta updates (`_HLS_skip=YES`), and the parts themselves;
//! its init and complete segments are files too.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use casecast_actors::llhls::{LiveHls, Wait};
use casecast_signaling::RoomId;

use crate::http::{error_response, playback_allowed};
use crate::state::AppState;

/// The files a program writes, by their kind: content type, caching.
fn kind(file: &str) -> Option<(&'static str, &'static str)> {
    let immutable = "public, max-age=86400, immutable";
    if file.ends_with(".m3u8") {
        Some(("application/vnd.apple.mpegurl", "no-cache"))
    } else if file.ends_with(".ts") {
        Some(("video/mp2t", immutable))
    } else if file.ends_with(".m4s") {
        Some(("video/iso.segment", immutable))
    } else if file.ends_with(".mp4") {
        Some(("video/mp4", immutable))
    } else {
        None
    }
}

/// `GET /hls/{room}/{file}`: the program's playlist and segments. The playlist is
/// never cached (it changes every segment, or every part); segments and parts never
/// change once made.
pub(crate) async fn hls(req: actix_web::HttpRequest, path: web::Path<(RoomId, String)>, state: web::Data<AppState>) -> HttpResponse {
    let (room, file) = path.into_inner();
    let room = room.to_string();
    if !crate::http::safe_name(&file) {
        return error_response(StatusCode::NOT_FOUND, "no such file");
    }
    let Some((ct, cache)) = kind(&file) else {
        return error_response(StatusCode::NOT_FOUND, "no such file");
    };
    let playback_token = match playback_allowed(&req, &state, &room) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let dir = state.hls_root.join(&room);
    let live = casecast_actors::llhls::live(&dir).filter(|l| l.has_media());
    let playlist = file.ends_with(".m3u8");
    let body = match (&live, playlist) {
        (Some(live), true) if file == "index.m3u8" => match live_playlist(live, req.query_string()).await {
            Ok(text) => Bytes::from(text),
            Err(r) => return r,
        },
        (Some(live), false) if file.starts_with("part-") => {
            // The preload hint's part is waited for as long as a part takes, and
            // then some.
            let bound = Duration::from_secs_f64(live.part_target() * 3.0);
            match live.part(&file, bound).await {
                // The part as made, shared: no copy per request.
                Some(data) => data,
                None => return error_response(StatusCode::NOT_FOUND, "no such part (it is older than the playlist lists, or was never made)"),
            }
        }
        _ => match tokio::fs::read(dir.join(&file)).await {
            Ok(body) => Bytes::from(body),
            Err(_) => return error_response(StatusCode::NOT_FOUND, "no such file (the program may not have started)"),
        },
    };
    let body = match (&playback_token, playlist) {
        (Some(t), true) => Bytes::from(with_token(&body, t)),
        _ => body,
    };
    let mut res = HttpResponse::Ok();
    res.content_type(ct).insert_header((header::CACHE_CONTROL, cache)).insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    if !playlist {
        // Segments are compressed video already.
        return res.insert_header(header::ContentEncoding::Identity).body(body);
    }
    // Counted only for playlists that exist: a label per real room; a HEAD probe is
    // nobody watching.
    if req.method() == actix_web::http::Method::GET {
        state.sfu.metrics().program.playlist_requests.with_label_values(&[&room]).inc();
        let (address, viewer) = crate::viewers::key(&req, &state.proxies);
        let n = state.viewers.seen(&room, &address, &viewer);
        state.sfu.metrics().program.viewers.with_label_values(&[&room]).set(n as i64);
    }
    // A long DVR window makes a long playlist, fetched every segment by every viewer:
    // it is gzipped for those who accept it (about 8× smaller).
    res.body(body)
}

/// The low-latency playlist, after the blocking reload (if asked for) is answered.
async fn live_playlist(live: &LiveHls, query: &str) -> Result<String, HttpResponse> {
    let (mut msn, mut part, mut skip) = (None, None, false);
    let query = web::Query::<Vec<(String, String)>>::from_query(query).map(|q| q.into_inner()).unwrap_or_default();
    for (k, v) in &query {
        let number = || v.parse::<u64>().ok().ok_or_else(|| format!("{k} must be a whole number"));
        let bad = |m: String| error_response(StatusCode::BAD_REQUEST, &m);
        match k.as_str() {
            "_HLS_msn" => msn = Some(number().map_err(bad)?),
            "_HLS_part" => part = Some(number().map_err(bad)?),
            "_HLS_skip" => skip = v == "YES" || v == "v2",
            _ => {}
        }
    }
    if let Some(msn) = msn {
        // RFC 8216bis: a request held longer than three target durations is answered
        // 503; hls.js gives up sooner and asks again.
        let bound = Duration::from_secs(3 * u64::from(live.target_duration()));
        match live.wait_for(msn, part, bound).await {
            Ok(()) | Err(Wait::Ended) => {}
            Err(Wait::TooFar) => {
                return Err(error_response(StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments beyond the playlist's last"));
            }
            Err(Wait::Late) => return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, "the part asked for was not made in time")),
        }
    } else if part.is_some() {
        return Err(error_response(StatusCode::BAD_REQUEST, "_HLS_part needs _HLS_msn"));
    }
    Ok(live.render(skip))
}

/// A playlist whose URIs carry the playback token (segments, parts and the init
/// segment are fetched with it): the URI lines, and the `URI="…"` attributes of tags
/// (`EXT-X-MAP`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`).
pub(crate) fn with_token(playlist: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let add = |uri: &str| format!("{uri}{}token={token}", if uri.contains('?') { "&" } else { "?" });
    let mut out = String::with_capacity(text.len() + 64 * text.lines().count());
    for line in text.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(&add(line));
        } else if let Some(at) = line.find("URI=\"") {
            let start = at + 5;
            match line[start..].find('"') {
                Some(len) => {
                    out.push_str(&line[..start]);
                    out.push_str(&add(&line[start..start + len]));
                    out.push_str(&line[start + len..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_on_every_uri_and_attribute() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init-a.mp4\"\n#EXT-X-PART:DURATION=0.33333,URI=\"part-1.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.000,\nseg-a-00001.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-2.0.m4s\"\n";
        let out = String::from_utf8(with_token(text.as_bytes(), "t0k")).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init-a.mp4?token=t0k\"\n#EXT-X-PART:DURATION=0.33333,URI=\"part-1.0.m4s?token=t0k\",INDEPENDENT=YES\n#EXTINF:2.000,\nseg-a-00001.m4s?token=t0k\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-2.0.m4s?token=t0k\"\n"
        );
    }
}
