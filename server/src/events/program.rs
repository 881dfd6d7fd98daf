//! The program's doors: its switches and layout, timed metadata and polls for
//! viewers, and what the distribution reports.

use super::*;

/// A change of the program: any of its switches, and its layout with the main
/// source.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProgramChange {
    /// On or off air.
    pub on_air: Option<bool>,
    /// Name labels shown.
    pub labels: Option<bool>,
    /// Recording.
    pub recording: Option<bool>,
    /// The slate: `starting` ("Starting soon"), `brb` ("We'll be right back"), or
    /// `null` (none: the mix).
    #[serde(default, deserialize_with = "present")]
    pub slate: Option<Option<String>>,
    /// The layout's name.
    pub layout: Option<String>,
    /// The main source: absent, the feed; with `layout` only.
    #[serde(default, deserialize_with = "present")]
    pub main: Option<Option<String>>,
}

/// Tells a field given as `null` from one left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /api/events/{id}/program` `{"on_air", "labels", "recording", "layout",
/// "main"}` (any of them): the program's switches (on or off air, name labels,
/// recording) and its layout with the main source; told to the compositor through
/// the room, each change audited.
pub(crate) async fn program(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let change: ProgramChange = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match change_program(&st, &who, &id, change).await {
        Ok(done) => HttpResponse::Accepted().json(done),
        Err((status, message)) => error(status, &message),
    }
}

/// Carries out an operator's change of a room's program: checked, told to its
/// compositor, and audited, whichever door it came through. Answers what changed.
pub async fn change_program(st: &AppState, who: &Claims, room: &str, change: ProgramChange) -> std::result::Result<Value, (StatusCode, String)> {
    let ProgramChange { on_air, labels, recording, slate, layout, main } = change;
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    if on_air.is_none() && labels.is_none() && recording.is_none() && slate.is_none() && layout.is_none() {
        return Err(bad("nothing to change: give on_air, labels, recording, slate or layout"));
    }
    if main.is_some() && layout.is_none() {
        return Err(bad("main goes with layout: give both"));
    }
    // The slate on the wire: its name, or `off`.
    let slate = slate.map(|s| s.unwrap_or_else(|| "off".into()));
    if let Some(s) = &slate {
        casecast_actors::program::Slate::parse(s).map_err(|e| bad(&e))?;
    }
    let main = main.flatten();
    let layout_order = layout.as_deref().map(|l| layout_order(l, main.clone())).transpose().map_err(|e| bad(&e))?;
    // One order per kind of change, only for what changes.
    let mut orders = Vec::new();
    if on_air.is_some() || labels.is_some() || recording.is_some() || slate.is_some() {
        orders.push(RoomEvent::ProgramSwitches { on_air, labels, recording, slate: slate.clone() });
    }
    orders.extend(layout_order);
    let mut told = None;
    for order in orders {
        told = st.sfu.to_operators(room, order).await;
        if told.is_none_or(|n| n == 0) {
            break;
        }
    }
    compositor_told(told, room)?;
    // Kept with the event, so a program that starts again (a restart) takes it.
    if let Some(mut e) = st.events.event(room) {
        let p = &mut e.program;
        p.on_air = on_air.or(p.on_air);
        p.labels = labels.or(p.labels);
        p.recording = recording.or(p.recording);
        if slate.is_some() {
            p.slate = slate.clone();
        }
        if layout.is_some() {
            (p.layout, p.main) = (layout.clone(), main.clone());
        }
        if let Err(m) = st.events.save(&e, false).await {
            tracing::error!(error = %m, "events: the program's switches not kept");
        }
    }
    let switch = |on: bool, yes: &'static str, no: &'static str| if on { yes } else { no };
    let changes = [
        on_air.map(|on| (switch(on, "program.on_air", "program.off_air"), Value::Null)),
        labels.map(|on| (switch(on, "program.labels_on", "program.labels_off"), Value::Null)),
        recording.map(|on| (switch(on, "program.recording_on", "program.recording_off"), Value::Null)),
        slate.as_ref().map(|s| ("program.slate", json!({ "slate": s }))),
        layout.as_ref().map(|l| ("program.layout", json!({ "layout": l, "main": main }))),
    ];
    for (action, detail) in changes.into_iter().flatten() {
        st.events.audit(who, action, Some(room), detail).await;
    }
    if let (Some(aws), Some(live)) = (st.distribution.aws(), on_air) {
        // MediaLive starts (or stops) in the background; the distribution says how far.
        let preset = st.events.event(room).map_or_else(|| "quality".to_string(), |e| e.policy.latency_preset);
        aws.set_live(room, live, &preset);
    }
    let mut out = serde_json::Map::new();
    for (k, v) in [("on_air", on_air), ("labels", labels), ("recording", recording)] {
        if let Some(v) = v {
            out.insert(k.into(), v.into());
        }
    }
    if let Some(s) = slate {
        out.insert("slate".into(), if s == "off" { Value::Null } else { s.into() });
    }
    if let Some(l) = layout {
        out.insert("layout".into(), l.into());
        out.insert("main".into(), main.into());
    }
    Ok(Value::Object(out))
}

/// The order that sets the program's layout and main source (`None`: the feed),
/// checked.
fn layout_order(layout: &str, main: Option<String>) -> std::result::Result<RoomEvent, String> {
    if main.as_ref().is_some_and(|m| m.is_empty() || m.len() > 64) {
        return Err("main: not a participant id".into());
    }
    layout.parse::<casecast_actors::program::LayoutKind>()?;
    Ok(RoomEvent::ProgramLayout { layout: layout.to_string(), main })
}

/// What telling a room's compositor came to: not open (404), no compositor in it
/// (409), or told.
fn compositor_told(told: Option<usize>, room: &str) -> std::result::Result<(), (StatusCode, String)> {
    match told {
        None => Err((StatusCode::NOT_FOUND, format!("the room {room:?} is not open (no program yet)"))),
        Some(0) => Err((StatusCode::CONFLICT, "no compositor is in the room".into())),
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Poll {
    question: String,
    options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    text: Option<String>,
    poll: Option<Poll>,
}

/// `POST /api/events/{id}/metadata` `{"text"}` or `{"poll": {"question", "options"}}`:
/// timed metadata for viewers, carried in the program's HLS segments as ID3 (as
/// Amazon IVS's Timed Metadata), shown by the watch page when it plays there.
pub(crate) async fn metadata(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let m: Metadata = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let msg_id = crate::state::random_id()[..12].to_string();
    let data = match (m.text, m.poll) {
        (Some(t), None) if !t.trim().is_empty() && t.chars().count() <= 500 => json!({ "type": "message", "id": msg_id, "text": t.trim() }),
        (None, Some(p))
            if !p.question.trim().is_empty()
                && p.question.chars().count() <= 300
                && (2..=6).contains(&p.options.len())
                && p.options.iter().all(|o| !o.trim().is_empty() && o.chars().count() <= 100) =>
        {
            json!({ "type": "poll", "id": msg_id, "question": p.question.trim(), "options": p.options.iter().map(|o| o.trim()).collect::<Vec<_>>() })
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "send {\"text\": 1 to 500 characters} or {\"poll\": {\"question\": 1 to 300 characters, \"options\": 2 to 6 of 1 to 100}}",
            );
        }
    };
    match compositor_told(st.sfu.to_operators(&id, RoomEvent::ProgramMetadata(data.to_string())).await, &id) {
        Err((status, message)) => error(status, &message),
        Ok(()) => {
            if data["type"] == "poll" && st.events.event(&id).is_some() {
                // Kept, so viewers' votes are counted for the operators.
                let options: Vec<String> = serde_json::from_value(data["options"].clone()).unwrap_or_default();
                if let Err(m) = st.events.add_poll(&msg_id, &id, data["question"].as_str().unwrap_or(""), &options).await {
                    return internal(m);
                }
            }
            st.events.audit(&who, "metadata.send", Some(&id), data.clone()).await;
            if let Some(aws) = st.distribution.aws() {
                // Also into MediaPackage's segments, through the channel's schedule.
                aws.metadata(&id, &msg_id, &data.to_string());
            }
            HttpResponse::Accepted().json(data)
        }
    }
}

/// Tells the compositors in an event's room the event's latency preset (nothing if
/// the room has no event or is not open).
pub async fn tell_preset(st: &AppState, room: &str) {
    if let Some(e) = st.events.event(room) {
        st.sfu.to_operators(room, RoomEvent::ProgramPreset(e.policy.latency_preset.clone())).await;
    }
}

/// Tells a compositor that joined an event's room everything the event holds for
/// it: the latency preset, then the operator's last switches and layout (a program
/// started again after a restart comes back as it was).
pub async fn tell_compositor(st: &AppState, room: &str) {
    let Some(e) = st.events.event(room) else { return };
    st.sfu.to_operators(room, RoomEvent::ProgramPreset(e.policy.latency_preset.clone())).await;
    let p = e.program;
    if p.on_air.is_some() || p.labels.is_some() || p.recording.is_some() || p.slate.is_some() {
        let order = RoomEvent::ProgramSwitches { on_air: p.on_air, labels: p.labels, recording: p.recording, slate: p.slate };
        st.sfu.to_operators(room, order).await;
    }
    if let Some(layout) = p.layout {
        st.sfu.to_operators(room, RoomEvent::ProgramLayout { layout, main: p.main }).await;
    }
}

/// What an event's people are told of it: `scheduled` (not started), `starting`
/// (started; its program is not making pictures yet), `on_air`, `off_air` (the
/// outputs are stopped; the mix goes on), `ended`.
pub(crate) fn state_of(st: &AppState, e: &Event) -> &'static str {
    if e.status == "ended" {
        return "ended";
    }
    let report = program_report(st, &e.id);
    let started = e.started_at.is_some() || st.programs.is_running(&e.id);
    match report {
        // A program (this server's, or one run apart) is making pictures.
        Some(r) if r.making => {
            if r.on_air {
                "on_air"
            } else {
                "off_air"
            }
        }
        _ if started => "starting",
        _ => "scheduled",
    }
}

/// What an event's compositor reports through the metrics.
struct ProgramReport {
    /// It makes pictures (its encoder ran in the last second).
    making: bool,
    /// Its outputs carry the program.
    on_air: bool,
}

fn program_report(st: &AppState, id: &str) -> Option<ProgramReport> {
    let gauges = program_gauges(st, id, &["casecast_program_fps", "casecast_program_switch"]);
    let fps = gauges.iter().find(|g| g.name == "casecast_program_fps").map(|g| g.value);
    let on_air = gauges.iter().find(|g| g.label("switch") == "on_air").map(|g| g.value >= 1.0);
    // A program that has reported is up, even while its session reconnects (it
    // reports 0 frames meanwhile): its viewers are not told it is starting again.
    Some(ProgramReport { making: fps.is_some(), on_air: on_air.unwrap_or(true) })
}

/// One of a room's program gauges, as the compositor reports it.
struct Gauge {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Gauge {
    fn label(&self, name: &str) -> &str {
        self.labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }
}

/// Room `id`'s gauges of these metric families (the compositor's reports).
fn program_gauges(st: &AppState, id: &str, names: &[&str]) -> Vec<Gauge> {
    let mut out = Vec::new();
    for family in st.sfu.metrics().registry.gather() {
        if !names.contains(&family.name()) {
            continue;
        }
        for m in family.get_metric() {
            let labels: Vec<(String, String)> = m.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string())).collect();
            let g = Gauge { name: family.name().to_string(), labels, value: m.get_gauge().get_value() };
            if g.label("room") == id {
                out.push(g);
            }
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputChoice {
    input: String,
}

/// `POST /api/events/{id}/distribution/input` `{"input": "primary" | "backup"}`: the
/// MediaLive channel takes that input now (an input switch in its schedule).
pub(crate) async fn switch_input(req: HttpRequest, id: web::Path<String>, bytes: web::Bytes, st: web::Data<AppState>) -> HttpResponse {
    let who = op!(req, st, Some(&id));
    let choice: InputChoice = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let backup = match choice.input.as_str() {
        "primary" => false,
        "backup" => true,
        other => return error(StatusCode::BAD_REQUEST, &format!("input {other:?}: use primary or backup")),
    };
    let Some(aws) = st.distribution.aws() else {
        return error(StatusCode::CONFLICT, "the distribution is local: there are no inputs to switch (distribution = \"aws\" has)");
    };
    if let Err(m) = aws.switch_input(&id, backup) {
        return error(StatusCode::CONFLICT, &m);
    }
    st.events.audit(&who, "distribution.input", Some(&id), json!({ "input": choice.input })).await;
    HttpResponse::Accepted().json(json!({ "input": choice.input }))
}

/// `GET /api/events/{id}/distribution`: each output's state (from the program's
/// metrics: local HLS, RTMP pushes) and the concurrent HLS viewers.
pub(crate) async fn distribution(req: HttpRequest, id: web::Path<String>, st: web::Data<AppState>) -> HttpResponse {
    op!(req, st, Some(&id));
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(distribution_of(&st, &id))
}

pub(super) fn distribution_of(st: &AppState, id: &str) -> Value {
    // What the compositor reports through the metrics: each output's state and the
    // operator's switches as it has them (none until a compositor reports).
    let mut outputs = Vec::new();
    let mut program = serde_json::Map::new();
    for g in program_gauges(st, id, &["casecast_program_output_up", "casecast_program_switch"]) {
        let on = g.value >= 1.0;
        if g.name == "casecast_program_switch" {
            program.insert(g.label("switch").to_string(), on.into());
        } else {
            outputs.push(json!({ "output": g.label("output"), "up": on }));
        }
    }
    // Off air, every output is stopped on purpose: said so, not "up".
    let off_air = program.get("on_air").is_some_and(|v| v == &Value::Bool(false));
    for o in &mut outputs {
        let up = o["up"] == Value::Bool(true);
        o["state"] = (if off_air && o["output"] != "recording" { "off_air" } else if up { "up" } else { "down" }).into();
    }
    let playlist = st.hls_root.join(id).join("index.m3u8");
    json!({
        "event": id,
        "hls": { "url": format!("/hls/{id}/index.m3u8"), "playlist": playlist.exists() },
        "outputs": outputs,
        "program": if program.is_empty() { Value::Null } else { Value::Object(program) },
        // Every node's viewers (a cluster: the others' as of their last heartbeat).
        "viewers": st.viewers.count(id) + st.directory.remote_viewers(id),
        "kind": if st.distribution.aws().is_some() { "aws" } else { "local" },
        "aws": st.distribution.aws().map(|a| serde_json::to_value(a.state(id).unwrap_or_default()).unwrap_or(Value::Null)),
    })
}
