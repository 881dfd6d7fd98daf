//! What the server tells its operators about itself beyond the counters the actors
//! keep: a request id on every HTTP request (in its log lines and its answer), and
//! the figures read from the rooms at each scrape (who is in each room, whether its
//! feed arrives, and each subscriber's layer, loss and estimate).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use casecast_signaling::Role;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts, Registry};
use tracing::Instrument;

use crate::state::AppState;

/// How long a scrape waits for one room's figures.
const ROOM_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The header a request id is read from (a client's or a proxy's, if it is a plain
/// id: it only ties log lines together) and answered in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Runs each request in a `request` span: its id, and the room or event its path
/// names. Every line logged while it is handled carries them, and so does its access
/// line (method, path without the query, status, milliseconds) logged when it is
/// answered; the id is answered in `X-Request-Id`, for a user to quote.
pub(crate) async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| is_request_id(v)).map(str::to_string);
    let id = id.unwrap_or_else(|| crate::state::random_id()[..16].to_string());
    let span = tracing::info_span!("request", request_id = %id, room = tracing::field::Empty, event = tracing::field::Empty);
    match path_subject(req.path()) {
        Some(("room", r)) => {
            span.record("room", r);
        }
        Some((_, e)) => {
            span.record("event", e);
        }
        None => {}
    }
    let (method, path, started) = (req.method().clone(), req.path().to_string(), std::time::Instant::now());
    let res = next.call(req).instrument(span.clone()).await;
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(target: "casecast::http", "{method} {path} {status} {ms:.1}ms"));
    let mut res = res?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(res.map_into_boxed_body())
}

/// A request id taken from a client or proxy: short, and only characters that cannot
/// forge a log line or a header.
fn is_request_id(v: &str) -> bool {
    (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The room (`room`) or event (`event`) a path is about, if it names one that is an
/// id (never a file name or a query).
fn path_subject(path: &str) -> Option<(&'static str, &str)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let (first, second) = (parts.next()?, parts.next());
    let (kind, id) = match (first, second) {
        ("room" | "watch" | "whip" | "whep" | "hls", Some(id)) => ("room", id),
        ("api", Some("rooms")) => ("room", parts.next()?),
        ("api", Some("events")) => ("event", parts.next()?),
        _ => return None,
    };
    casecast_signaling::RoomId::parse(id).ok().map(|_| (kind, id))
}

/// The rooms' figures at this moment, as metric families: participants by room and
/// role, each room's feed frame rate, and each subscriber's layer, loss, estimate
/// and round trip. Participants are labelled by id (never by name).
pub(crate) async fn room_families(state: &AppState) -> Vec<MetricFamily> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
        registry.register(Box::new(g.clone())).expect("registered once");
        g
    };
    let present = gauge("casecast_room_participants", "Participants in each room, by role", &["room", "role"]);
    let feed = gauge(
        "casecast_room_feed_fps",
        "Video frames per second the room's feed (its encoders) sends; 0 while it has none",
        &["room"],
    );
    let subscriber = ["room", "participant", "role"];
    let layer = gauge(
        "casecast_subscriber_layer",
        "The layer each subscriber is given of the feed (label `layer`: a rid, single, source, paused or best); always 1",
        &["room", "participant", "role", "layer"],
    );
    let height = gauge(
        "casecast_subscriber_video_height",
        "Picture height of the feed layer each subscriber is given; 0 while paused",
        &subscriber,
    );
    let loss = gauge("casecast_subscriber_loss_ratio", "Fraction of packets lost on the way to each subscriber", &subscriber);
    let estimate = gauge(
        "casecast_subscriber_estimate_bps",
        "What the path to each subscriber carries, as the server estimates it, bits/s",
        &subscriber,
    );
    let rtt = gauge("casecast_participant_rtt_seconds", "Round-trip time to each participant", &subscriber);
    // Every room at once, each within a bound: a busy room is left out of this
    // scrape rather than holding up the whole answer (and the counters with it).
    let rooms = state.sfu.open_rooms();
    let asked = rooms.iter().map(|room| tokio::time::timeout(ROOM_LIMIT, state.sfu.participants(room)));
    let answers = futures_util::future::join_all(asked).await;
    for (room, answer) in rooms.into_iter().zip(answers) {
        let Ok(Some(members)) = answer else { continue };
        for role in Role::ALL {
            let n = members.iter().filter(|m| m.role == role.as_str()).count();
            present.with_label_values(&[room.as_str(), role.as_str()]).set(n as f64);
        }
        let fps: f64 = members.iter().filter(|m| m.role == Role::Encoder.as_str()).map(|m| m.fps_in).sum();
        feed.with_label_values(&[room.as_str()]).set(fps);
        for m in &members {
            let labels = [room.as_str(), m.id.as_str(), m.role.as_str()];
            if let Some(r) = m.rtt_ms {
                rtt.with_label_values(&labels).set(r / 1000.0);
            }
            if m.role == Role::Encoder.as_str() {
                continue;
            }
            if let Some(l) = m.loss_out {
                loss.with_label_values(&labels).set(f64::from(l));
            }
            if let Some(e) = m.estimate_kbps {
                estimate.with_label_values(&labels).set(e as f64 * 1000.0);
            }
            if let Some(r) = &m.receiving {
                let (name, h) = receiving_layer(r);
                layer.with_label_values(&[room.as_str(), m.id.as_str(), m.role.as_str(), name]).set(1.0);
                if let Some(h) = h {
                    height.with_label_values(&labels).set(f64::from(h));
                }
            }
        }
    }
    if let Some(at) = state.directory.last_heartbeat() {
        let g = gauge(
            "casecast_directory_heartbeat_timestamp_seconds",
            "When this node's last heartbeat reached the room directory (Redis), Unix seconds",
            &[],
        );
        g.with_label_values::<&str>(&[]).set(at as f64);
    }
    registry.gather()
}

/// A subscriber's layer as the allocation names it (`h 640×360`, `paused`, `best`,
/// `single`): its name, and its height when known (0 when paused).
fn receiving_layer(r: &str) -> (&str, Option<u32>) {
    let (name, size) = r.split_once(' ').unwrap_or((r, ""));
    let height = if name == "paused" { Some(0) } else { size.rsplit_once('×').and_then(|(_, h)| h.parse().ok()) };
    (name, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_room_or_event_only_when_it_is_an_id() {
        assert_eq!(path_subject("/room/demo"), Some(("room", "demo")));
        assert_eq!(path_subject("/hls/or-1/index.m3u8"), Some(("room", "or-1")));
        assert_eq!(path_subject("/api/rooms/or-1/recordings"), Some(("room", "or-1")));
        assert_eq!(path_subject("/api/events/ev1/start"), Some(("event", "ev1")));
        assert_eq!(path_subject("/cases"), None);
        assert_eq!(path_subject("/api/cases/studies/1.2.3"), None);
        assert_eq!(path_subject("/room/..%2Fetc"), None);
    }

    #[test]
    fn request_ids_from_outside_are_taken_only_when_plain() {
        assert!(is_request_id("3f2a9c1e-77b0-4c1e-9d7e-1b2c3d4e5f60"));
        assert!(!is_request_id("short"));
        assert!(!is_request_id("abc def\nforged line"));
        assert!(!is_request_id(&"a".repeat(65)));
    }

    #[test]
    fn layers_are_read_as_the_allocation_writes_them() {
        assert_eq!(receiving_layer("h 640×360"), ("h", Some(360)));
        assert_eq!(receiving_layer("source 1280×720"), ("source", Some(720)));
        assert_eq!(receiving_layer("paused"), ("paused", Some(0)));
        assert_eq!(receiving_layer("best"), ("best", None));
    }
}
