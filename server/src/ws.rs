//! WebSocket signaling (`GET /ws`): one task per connection that parses client
//! messages once at the edge, drives its participant, and relays the participant's
//! events as [`ServerMessage`]s.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Session};
use casecast_actors::{
    AcceptAnswer, AcceptOffer, Close, MediaKind as MK, ParticipantEvent, ParticipantHandle, RaiseHand, RoomEvent,
    SendChat, SetMuted, TrackDesc, TrackSource as TS,
};
use casecast_signaling::{
    ClientMessage, ErrorCode, EventInfo, MAX_MESSAGE_BYTES, MediaKind, PROTOCOL_VERSION, ParticipantInfo, Role,
    ServerMessage, TrackInfo, TrackSource, UplinkPolicy,
};
use futures_util::StreamExt as _;

use crate::state::{AccessError, AppState, participant_options};

/// The close code a client sends on a connection it leaves to resume its session
/// on another (the session is kept, as if the connection had been lost).
pub const RESUMING_CLOSE_CODE: u16 = 4000;

/// How long a connection may stay without joining.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame taken before `join`: a join message with a 4 KiB token fits
/// many times over; nobody unauthenticated gets the server to hold more.
pub const JOIN_FRAME_LIMIT: usize = 64 * 1024;

/// The largest frame taken after `join`: 4× the message limit, so that an oversized
/// message still gets a `too_large` reply; anything bigger closes the connection.
pub const FRAME_LIMIT: usize = 4 * MAX_MESSAGE_BYTES;

/// `GET /ws`: upgrade and run the session.
pub async fn ws(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> actix_web::Result<HttpResponse> {
    let (resp, session, stream, limit) = crate::ws_guard::handle(&req, body, JOIN_FRAME_LIMIT).await?;
    let stream = stream.max_frame_size(FRAME_LIMIT).aggregate_continuations().max_continuation_size(FRAME_LIMIT);
    actix_web::rt::spawn(run(session, stream, limit, state));
    Ok(resp)
}

fn kind_out(k: MK) -> MediaKind {
    if k == MK::Audio { MediaKind::Audio } else { MediaKind::Video }
}

fn kind_in(k: MediaKind) -> MK {
    match k {
        MediaKind::Audio => MK::Audio,
        MediaKind::Video => MK::Video,
    }
}

fn track_info(t: &TrackDesc, mid: Option<String>) -> TrackInfo {
    TrackInfo {
        id: t.id.to_string(),
        mid,
        participant_id: t.participant.to_string(),
        name: t.name.clone(),
        kind: kind_out(t.kind),
        source: match t.source {
            TS::Feed => TrackSource::Feed,
            TS::Commentator => TrackSource::Commentator,
            TS::Program => TrackSource::Program,
        },
    }
}

fn role_of(s: &str) -> Role {
    s.parse().unwrap_or(Role::Viewer)
}

/// Maps a participant event to what the client is told; `None` for nothing.
fn to_message(ev: ParticipantEvent) -> Option<ServerMessage> {
    Some(match ev {
        ParticipantEvent::Room(RoomEvent::PeerJoined(p)) => ServerMessage::ParticipantJoined {
            participant: ParticipantInfo { id: p.id.to_string(), name: p.name, role: role_of(p.role) },
        },
        ParticipantEvent::Room(RoomEvent::PeerLeft(id)) => ServerMessage::ParticipantLeft { participant_id: id.to_string() },
        ParticipantEvent::Room(RoomEvent::TrackAdded(t)) => ServerMessage::TrackAdded { track: track_info(&t, None) },
        ParticipantEvent::Room(RoomEvent::TrackRemoved(id)) => ServerMessage::TrackRemoved { track_id: id.to_string() },
        ParticipantEvent::Room(RoomEvent::ProgramLayout { layout, main }) => ServerMessage::ProgramLayout { layout, main },
        ParticipantEvent::Room(RoomEvent::ProgramSwitches { on_air, labels, recording, slate }) => {
            ServerMessage::ProgramSwitches { on_air, labels, recording, slate }
        }
        ParticipantEvent::Room(RoomEvent::ProgramPreset(latency_preset)) => ServerMessage::ProgramPreset { latency_preset },
        ParticipantEvent::Room(RoomEvent::ProgramOutputs(rtmp)) => ServerMessage::ProgramOutputs { rtmp },
        ParticipantEvent::Room(RoomEvent::ProgramMetadata(data)) => ServerMessage::ProgramMetadata { data },
        ParticipantEvent::Room(RoomEvent::Muted { participant, kind, muted }) => {
            ServerMessage::Muted { participant_id: participant.to_string(), kind: kind_out(kind), muted }
        }
        ParticipantEvent::Offer { sdp, tracks } => ServerMessage::Offer {
            sdp,
            tracks: tracks.into_iter().map(|(mid, t)| track_info(&t, Some(mid))).collect(),
        },
        ParticipantEvent::Bound { mid, track } => ServerMessage::TrackBound { track: track_info(&track, Some(mid)) },
        ParticipantEvent::HeldByOperator { kind, held } => ServerMessage::MutedByOperator { kind: kind_out(kind), muted: held },
        ParticipantEvent::Hand { participant, name, raised } => ServerMessage::Hand { participant: participant.to_string(), name, raised },
        ParticipantEvent::Chat { seq, participant, name, text, at } => {
            ServerMessage::Chat { id: format!("c{seq}"), participant: participant.to_string(), name, text, at }
        }
        ParticipantEvent::Connection(up) => ServerMessage::Connection { state: if up { "connected" } else { "disconnected" }.into() },
        ParticipantEvent::Closed(_) => return None,
    })
}

/// How long one message may wait for a slow client before the connection is dropped
/// (the participant's events queue up meanwhile).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

async fn send(session: &mut Session, msg: &ServerMessage) -> bool {
    matches!(actix_web::rt::time::timeout(SEND_TIMEOUT, session.text(msg.to_json())).await, Ok(Ok(())))
}

/// A token bucket: `rate` messages per second on average, bursts of `2 × rate`.
struct RateLimit {
    tokens: f64,
    rate: f64,
    last: std::time::Instant,
}

impl RateLimit {
    fn new(rate: u32) -> Self {
        RateLimit { tokens: 2.0 * rate as f64, rate: rate as f64, last: std::time::Instant::now() }
    }

    fn allow(&mut self, now: std::time::Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(2.0 * self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn close(session: Session, code: CloseCode, why: &str) {
    // A close reason may carry at most 123 bytes.
    let mut end = why.len().min(120);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    let _ = session.close(Some(CloseReason { code, description: Some(why[..end].to_string()) })).await;
}

/// How a connection's loop ended, for what becomes of its participant.
enum Ending {
    /// Leave, refusals, a close frame, the participant ended: the participant ends.
    Over(CloseCode, String),
    /// The connection was lost (no close frame, or the client stopped reading): the
    /// participant waits for a `resume`.
    Lost(String),
    /// A new connection took the participant over.
    HandedOver,
}

async fn run(mut session: Session, mut stream: actix_ws::AggregatedMessageStream, frames: crate::ws_guard::Limit, state: web::Data<AppState>) {
    let mut joined: Option<ParticipantHandle> = None;
    let mut resumable: Option<crate::resume::Registration> = None;
    // A message taken from the participant's events that could not be delivered.
    let mut unsent: Option<ServerMessage> = None;
    let mut limit = RateLimit::new(casecast_signaling::MAX_MESSAGES_PER_SECOND);
    let join_deadline = actix_web::rt::time::sleep(JOIN_TIMEOUT);
    tokio::pin!(join_deadline);
    let ending = loop {
        let waiting = joined.is_none();
        let event = async {
            match joined.as_mut() {
                Some(h) => h.events.recv().await,
                None => std::future::pending().await,
            }
        };
        let request = async {
            match resumable.as_mut() {
                Some(r) => r.requests.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut join_deadline, if waiting => {
                send(&mut session, &ServerMessage::error(ErrorCode::NotJoined, "no join message within 10 s")).await;
                break Ending::Over(CloseCode::Policy, "join timeout".to_string());
            }
            req = request => match req {
                // The person came back on another connection (this one may look
                // alive but lead nowhere: a network that changed under it).
                Some(crate::resume::Request::Take(to)) => {
                    if let Some(handle) = joined.take() {
                        let _ = to.send(crate::resume::Handover { handle, unsent: unsent.take() });
                    }
                    break Ending::HandedOver;
                }
                Some(crate::resume::Request::End(done)) => {
                    end_participant(&mut joined, "joined again on another connection").await;
                    let _ = done.send(());
                    break Ending::Over(CloseCode::Normal, "joined again on another connection".into());
                }
                None => {}
            },
            ev = event => match ev {
                None => break Ending::Over(CloseCode::Away, "participant ended".into()),
                Some(ParticipantEvent::Closed(reason)) => {
                    send(&mut session, &ServerMessage::Connection { state: "closed".into() }).await;
                    break Ending::Over(CloseCode::Normal, reason);
                }
                Some(ev) => {
                    if let Some(m) = to_message(ev)
                        && !send(&mut session, &m).await {
                            unsent = Some(m);
                            break Ending::Lost("client gone".into());
                        }
                }
            },
            msg = stream.next() => {
                let text = match msg {
                    None => break Ending::Lost("connection lost".into()),
                    Some(Err(e)) => {
                        let (code, why) = match (frames.tripped(), e) {
                            (Some(t), _) => (ErrorCode::TooLarge, t.to_string()),
                            (None, actix_ws::ProtocolError::Overflow) => (ErrorCode::TooLarge, "a message over the size limit".into()),
                            (None, e) => (ErrorCode::BadRequest, format!("websocket protocol error: {e}")),
                        };
                        // Not waited for: a client that floods may not read either.
                        let _ = actix_web::rt::time::timeout(Duration::from_millis(200), session.text(ServerMessage::error(code, why).to_json())).await;
                        if code == ErrorCode::BadRequest && frames.tripped().is_none() {
                            // A reset or broken connection, most likely: the
                            // person may come back.
                            break Ending::Lost("connection broken".into());
                        }
                        break Ending::Over(CloseCode::Protocol, "protocol error".into());
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Text(t))) => t,
                    Some(Ok(actix_ws::AggregatedMessage::Binary(_))) => {
                        send(&mut session, &ServerMessage::error(ErrorCode::BadRequest, "binary frames are not used; send JSON text")).await;
                        continue;
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Ping(p))) => {
                        let _ = session.pong(&p).await;
                        continue;
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Pong(_))) => continue,
                    // 4000: the client leaves this connection to resume on another.
                    Some(Ok(actix_ws::AggregatedMessage::Close(Some(r)))) if r.code == CloseCode::Other(RESUMING_CLOSE_CODE) => {
                        break Ending::Lost("the client moved to another connection".into())
                    }
                    Some(Ok(actix_ws::AggregatedMessage::Close(_))) => break Ending::Over(CloseCode::Normal, "client closed".into()),
                };
                if !limit.allow(std::time::Instant::now()) {
                    let m = ServerMessage::error(ErrorCode::RateLimited, "too many messages; slow down");
                    if !send(&mut session, &m).await {
                        break Ending::Lost("client gone".into());
                    }
                    continue;
                }
                let msg = match ClientMessage::parse(&text) {
                    Ok(m) => m,
                    Err((code, message)) => {
                        if !send(&mut session, &ServerMessage::error(code, message)).await {
                            break Ending::Lost("client gone".into());
                        }
                        continue;
                    }
                };
                let was_joined = joined.is_some();
                let step = handle(msg, &mut joined, &mut resumable, &state).await;
                if !was_joined && joined.is_some() {
                    frames.set(FRAME_LIMIT);
                }
                match step {
                    Step::Reply(m) => {
                        if !send(&mut session, &m).await {
                            break Ending::Lost("client gone".into());
                        }
                    }
                    Step::Replies(ms) => {
                        let mut gone = false;
                        for m in ms {
                            if !gone && !send(&mut session, &m).await {
                                gone = true;
                            }
                        }
                        if gone {
                            break Ending::Lost("client gone".into());
                        }
                    }
                    Step::Quiet => {}
                    Step::End(m, code, why) => {
                        if let Some(m) = m {
                            send(&mut session, &m).await;
                        }
                        break Ending::Over(code, why);
                    }
                }
            }
        }
    };
    match ending {
        Ending::HandedOver => close(session, CloseCode::Normal, "resumed on another connection").await,
        Ending::Over(code, why) => {
            if let Some(r) = resumable.take() {
                state.sessions.remove(&r.secret);
            }
            end_participant(&mut joined, &format!("signaling closed: {why}")).await;
            close(session, code, &why).await;
        }
        Ending::Lost(why) => {
            // Nothing to say to a connection that is gone; the session waits.
            drop(session);
            match (joined.take(), resumable.take()) {
                (Some(handle), Some(r)) => wait_for_resume(handle, r, unsent, &why, &state).await,
                (mut h, _) => end_participant(&mut h, &format!("signaling closed: {why}")).await,
            }
        }
    }
}

/// Ends a participant and waits (bounded) until it has left its room.
async fn end_participant(joined: &mut Option<ParticipantHandle>, why: &str) {
    let Some(mut h) = joined.take() else { return };
    h.addr.do_send(Close(why.to_string()));
    let _ = actix_web::rt::time::timeout(Duration::from_secs(2), async {
        while let Some(ev) = h.events.recv().await {
            if matches!(ev, ParticipantEvent::Closed(_)) {
                break;
            }
        }
    })
    .await;
}

/// An orphaned session: its connection was lost. It keeps its seat for
/// [`crate::resume::RESUME_GRACE`], until its person resumes it on a new
/// connection, joins again (it ends), or the grace runs out (it ends).
async fn wait_for_resume(
    handle: ParticipantHandle,
    mut r: crate::resume::Registration,
    unsent: Option<ServerMessage>,
    why: &str,
    state: &AppState,
) {
    state.sessions.orphan(&r.secret);
    tracing::info!(participant = %handle.id, reason = why, "signaling lost; the session waits for its person to resume it");
    let mut joined = Some(handle);
    let grace = actix_web::rt::time::sleep(crate::resume::RESUME_GRACE);
    tokio::pin!(grace);
    tokio::select! {
        _ = &mut grace => {
            state.sessions.remove(&r.secret);
            end_participant(&mut joined, "signaling lost and not resumed").await;
        }
        req = r.requests.recv() => match req {
            Some(crate::resume::Request::Take(to)) => {
                if let Some(handle) = joined.take() {
                    let _ = to.send(crate::resume::Handover { handle, unsent });
                }
            }
            Some(crate::resume::Request::End(done)) => {
                state.sessions.remove(&r.secret);
                end_participant(&mut joined, "joined again on another connection").await;
                let _ = done.send(());
            }
            None => end_participant(&mut joined, "signaling lost").await,
        },
    }
}

enum Step {
    Reply(ServerMessage),
    Replies(Vec<ServerMessage>),
    Quiet,
    End(Option<ServerMessage>, CloseCode, String),
}

async fn handle(
    msg: ClientMessage,
    joined: &mut Option<ParticipantHandle>,
    resumable: &mut Option<crate::resume::Registration>,
    state: &AppState,
) -> Step {
    let err = |code, m: &str| Step::Reply(ServerMessage::error(code, m));
    match (msg, joined.as_ref()) {
        (ClientMessage::Check { v, room, token }, None) => {
            let room = room.to_string();
            let claims = match admit(v, &room, &token, state) {
                Ok(c) => c,
                Err(step) => return *step,
            };
            Step::Reply(ServerMessage::Invitation {
                v: PROTOCOL_VERSION,
                role: claims.role,
                name: participant_options(&claims, &token, None, true, false).name,
                policy: state.uplink(&room, claims.role),
                event: event_info(state, &room),
                room,
            })
        }
        (ClientMessage::Check { .. }, Some(_)) => err(ErrorCode::AlreadyJoined, "this connection has joined already"),
        // The client's `name` is ignored: the display name is the token's, so that
        // nobody can appear as someone else by editing a link.
        (ClientMessage::Join { v, room, token, name: _, receive_only }, None) => {
            let room = room.to_string();
            let claims = match admit(v, &room, &token, state) {
                Ok(c) => c,
                Err(step) => return *step,
            };
            let mut opts = participant_options(&claims, &token, None, true, false);
            let mut policy = state.uplink(&room, claims.role);
            if receive_only {
                opts.publish = None;
                policy = UplinkPolicy { publish: false, video: false, max_fps: 0, max_video_bitrate: 0, simulcast: false };
            }
            let name = opts.name.clone();
            // The room may live on another node: the client is sent there.
            match state.directory.place(&room).await {
                Ok(crate::directory::Placement::Here) => {}
                Ok(crate::directory::Placement::There(base)) => {
                    let url = format!("{}/ws", base.replacen("http", "ws", 1));
                    tracing::info!(%room, to = %url, "join sent to the room's node");
                    return Step::End(Some(ServerMessage::Redirect { url }), CloseCode::Normal, "the room is on another node".into());
                }
                Err(e) => return Step::End(Some(ServerMessage::error(ErrorCode::Internal, e)), CloseCode::Again, "room directory unavailable".into()),
            }
            // The same person whose connection was lost a moment ago (a killed
            // browser, a reload) comes back as new: the old session gives its seat up.
            let person = crate::state::person(&claims);
            state.sessions.end_orphans(&room, &person).await;
            match state.sfu.join(&room, &state.room_policy(&room), opts).await {
                Ok(h) => {
                    let registration = state.sessions.add(None, &room, &person);
                    let reply = ServerMessage::Joined {
                        v: PROTOCOL_VERSION,
                        room: room.clone(),
                        participant_id: h.id.to_string(),
                        role: claims.role,
                        name,
                        policy,
                        participants: h
                            .peers
                            .iter()
                            .map(|p| ParticipantInfo { id: p.id.to_string(), name: p.name.clone(), role: role_of(p.role) })
                            .collect(),
                        event: event_info(state, &room),
                        ice_servers: state.ice_servers(&h.id.to_string()),
                        resume: Some(registration.secret.clone()),
                    };
                    *resumable = Some(registration);
                    tracing::info!(%room, participant = %h.id, role = claims.role.as_str(), "joined over websocket");
                    *joined = Some(h);
                    if claims.role == Role::Operator && !receive_only {
                        // A compositor: the event's preset, switches and layout follow
                        // the joined message.
                        crate::events::tell_compositor(state, &room).await;
                        if let Some(aws) = state.distribution.aws() {
                            aws.tell_outputs(&room).await;
                        }
                    }
                    Step::Reply(reply)
                }
                Err(casecast_actors::JoinError::Room(e @ (casecast_actors::RoomError::Full(_) | casecast_actors::RoomError::NoSeat { .. }))) => {
                    Step::End(Some(ServerMessage::error(ErrorCode::RoomFull, e.to_string())), CloseCode::Again, "room full".into())
                }
                Err(casecast_actors::JoinError::Room(e @ casecast_actors::RoomError::TooManySessions(..))) => {
                    Step::End(Some(ServerMessage::error(ErrorCode::TooManySessions, e.to_string())), CloseCode::Again, "too many sessions".into())
                }
                Err(e) => Step::End(Some(ServerMessage::error(ErrorCode::Internal, e.to_string())), CloseCode::Error, "join failed".into()),
            }
        }
        (ClientMessage::Join { .. }, Some(_)) => err(ErrorCode::AlreadyJoined, "this connection has joined already; open a new one to join again"),
        (ClientMessage::Resume { v, room, token, resume }, None) => {
            let room = room.to_string();
            let claims = match admit(v, &room, &token, state) {
                Ok(c) => c,
                Err(step) => return *step,
            };
            let person = crate::state::person(&claims);
            let Some(handover) = state.sessions.take(&resume, &room, &person).await else {
                return err(ErrorCode::SessionGone, "that session has ended; join again");
            };
            let id = handover.handle.id.to_string();
            tracing::info!(%room, participant = %id, "resumed on a new connection");
            // What the old connection could not deliver, then an offer it may have
            // lost; the events that waited follow.
            handover.handle.addr.do_send(casecast_actors::ResendOffer);
            *resumable = Some(state.sessions.add(Some(resume), &room, &person));
            *joined = Some(handover.handle);
            let ice_servers = state.ice_servers(&id);
            let mut replies = vec![ServerMessage::Resumed { participant_id: id, ice_servers }];
            replies.extend(handover.unsent);
            Step::Replies(replies)
        }
        (ClientMessage::Resume { .. }, Some(_)) => err(ErrorCode::AlreadyJoined, "this connection has a session already"),
        (ClientMessage::Ping, _) => Step::Reply(ServerMessage::Pong),
        (ClientMessage::Leave, _) => Step::End(None, CloseCode::Normal, "left".into()),
        (_, None) => err(ErrorCode::NotJoined, "send a join message first"),
        (ClientMessage::Offer { sdp }, Some(h)) => match h.addr.send(AcceptOffer(sdp)).await {
            Ok(Ok(answer)) => Step::Reply(ServerMessage::Answer { sdp: answer }),
            Ok(Err(m)) => err(ErrorCode::SdpRejected, &m),
            Err(_) => Step::End(None, CloseCode::Away, "participant ended".into()),
        },
        (ClientMessage::Answer { sdp }, Some(h)) => match h.addr.send(AcceptAnswer(sdp)).await {
            Ok(Ok(())) => Step::Quiet,
            Ok(Err(m)) => err(ErrorCode::SdpRejected, &m),
            Err(_) => Step::End(None, CloseCode::Away, "participant ended".into()),
        },
        (ClientMessage::IceRestart, Some(h)) => match h.addr.send(casecast_actors::RestartIce).await {
            // The offer with new ICE credentials follows as a server `offer`.
            Ok(Ok(())) => Step::Quiet,
            // This session cannot be restarted: the client joins again.
            Ok(Err(m)) => err(ErrorCode::SdpRejected, &m),
            Err(_) => Step::End(None, CloseCode::Away, "participant ended".into()),
        },
        (ClientMessage::Mute { kind, muted }, Some(h)) => {
            h.addr.do_send(SetMuted { kind: kind_in(kind), muted });
            Step::Quiet
        }
        (ClientMessage::RaiseHand { raised }, Some(h)) => match h.addr.send(RaiseHand(raised)).await {
            Ok(Ok(())) => Step::Quiet,
            Ok(Err(m)) => err(ErrorCode::Forbidden, &m),
            Err(_) => Step::End(None, CloseCode::Away, "participant ended".into()),
        },
        (ClientMessage::Chat { text }, Some(h)) => {
            // The text is never logged.
            let Some(text) = casecast_signaling::clean_chat(&text) else {
                return err(ErrorCode::BadRequest, "a chat message needs some text");
            };
            match h.addr.send(SendChat(text)).await {
                Ok(Ok(())) => Step::Quiet,
                Ok(Err(m)) => err(ErrorCode::Forbidden, &m),
                Err(_) => Step::End(None, CloseCode::Away, "participant ended".into()),
            }
        }
    }
}

/// Checks a `join` or `check`: the protocol version, then the token for `room`.
/// Refusals end the connection.
fn admit(v: u32, room: &str, token: &str, state: &AppState) -> Result<casecast_signaling::Claims, Box<Step>> {
    if v != PROTOCOL_VERSION {
        let m = format!(
            "This page is from another version of casecast (protocol {v}; this server speaks {PROTOCOL_VERSION}). Reload the page; if that does not help, tell the organisers."
        );
        return Err(Box::new(Step::End(Some(ServerMessage::error(ErrorCode::UnsupportedVersion, m)), CloseCode::Policy, "version".into())));
    }
    state.authorize(Some(token), room, &Role::ALL).map_err(|e| {
        Box::new(match e {
            AccessError::Unauthorized(m) => {
                Step::End(Some(ServerMessage::error(ErrorCode::Unauthorized, m)), CloseCode::Policy, "unauthorized".into())
            }
            AccessError::Forbidden(m) => Step::End(Some(ServerMessage::error(ErrorCode::Forbidden, m)), CloseCode::Policy, "forbidden".into()),
        })
    })
}

/// The event of room `room`, as participants see it (`None`: no event has that id).
fn event_info(state: &AppState, room: &str) -> Option<EventInfo> {
    state.events.event(room).map(|e| EventInfo {
        id: e.id,
        title: e.title,
        status: e.status,
        starts_at: e.starts_at,
        ends_at: e.ends_at,
    })
}

#[cfg(test)]
mod tests {
    use super::RateLimit;
    use std::time::{Duration, Instant};

    #[test]
    fn rate_limit_allows_bursts_then_the_rate() {
        let mut l = RateLimit::new(10);
        let t0 = Instant::now();
        let burst = (0..100).filter(|_| l.allow(t0)).count();
        assert_eq!(burst, 20);
        // Over the next 10 s, 10 per second get through.
        let later = (1..=1000).filter(|i| l.allow(t0 + Duration::from_millis(10 * i))).count();
        assert!((99..=101).contains(&later), "{later}");
    }
}
