//! Joining as a commentator, and the commentator page once joined: the pre-join
//! screen (the invitation's name, the event's title, devices, a level meter), refusals
//! in plain words, a blocked camera, raised hands and chat, and layouts that fit a
//! phone and a tablet. Real Chromium, real server.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::*;

/// Runs `script` (a function body) in the page and returns its value, or Null.
fn js(page: &Browser, script: &str) -> Value {
    page.eval(script).unwrap_or(Value::Null)
}

/// The page's visible text.
fn page_text(page: &Browser) -> String {
    js(page, "return document.body.innerText").as_str().unwrap_or_default().to_string()
}

/// An event with an invitation for `name`: its link, relative to the server.
fn invite(server: &Server, event: &str, title: &str, name: &str, policy: Value) -> Result<(String, Value)> {
    let center = server.token("*", Role::Operator, "Ops");
    let base = format!("{}/api/events", server.url);
    let (s, e) = api("POST", &base, Some(&center), Some(json!({"id": event, "title": title, "policy": policy})))?;
    if s != 201 {
        bail!("event not created: {s} {e}");
    }
    let (s, inv) = api("POST", &format!("{base}/{event}/invitations"), Some(&center), Some(json!({"name": name, "role": "commentator"})))?;
    if s != 201 {
        bail!("invitation not created: {s} {inv}");
    }
    Ok((inv["url"].as_str().context("invitation url")?.to_string(), inv))
}

/// The room's participants as the operators' API lists them.
fn participants(server: &Server, room: &str) -> Vec<Value> {
    let op = server.token(room, Role::Operator, "Ops");
    api("GET", &format!("{}/api/events/{room}/participants", server.url), Some(&op), None)
        .ok()
        .and_then(|(_, v)| v.as_array().cloned())
        .unwrap_or_default()
}

/// The server takes the display name from the token only: a `name` in the join
/// message (which a link's `&name=` used to become) changes nothing, and `check`
/// tells a pre-join screen who the token names and what the event is, without joining.
#[test]
fn the_server_names_people_after_their_token_and_says_what_an_event_is() -> Result<()> {
    let server = Server::start(&[])?;
    let (_, inv) = invite(&server, "hip-2", "Hip revision, live", "Dr. Real", json!({"commentator_uplink": "audio"}))?;
    let token = inv["token"].as_str().unwrap();

    let mut ws = ws_connect(&server);
    ws_send(&mut ws, &json!({"type":"check","v":1,"room":"hip-2","token":token}).to_string());
    let checked = ws_recv(&mut ws).context("an answer to check")?;
    assert_eq!(checked["type"], "invitation", "{checked}");
    assert_eq!((checked["name"].as_str(), checked["role"].as_str()), (Some("Dr. Real"), Some("commentator")));
    assert_eq!(checked["event"]["title"], "Hip revision, live", "{checked}");
    assert_eq!(checked["policy"]["video"], false, "the event is audio-only: {checked}");
    assert!(participants(&server, "hip-2").is_empty(), "a check joins nobody");

    ws_send(&mut ws, &json!({"type":"join","v":1,"room":"hip-2","token":token,"name":"Prof. Somebody Else"}).to_string());
    let joined = ws_recv_type(&mut ws, "joined");
    assert_eq!(joined["name"], "Dr. Real", "{joined}");
    assert_eq!(joined["event"]["title"], "Hip revision, live");
    assert_eq!(joined["event"]["status"], "scheduled");
    let listed = wait_for("the participant listed", Duration::from_secs(10), || {
        participants(&server, "hip-2").into_iter().find(|p| p["role"] == "commentator")
    })?;
    assert_eq!(listed["name"], "Dr. Real");
    assert_eq!(listed["hand_raised"], false);

    // A room that is no event's: joined says nothing of an event.
    let mut other = ws_connect(&server);
    ws_send(&mut other, &json!({"type":"join","v":1,"room":"cli-room","token":server.token("cli-room", Role::Commentator, "Dr. Cli"),"name":"x"}).to_string());
    let joined = ws_recv_type(&mut other, "joined");
    assert_eq!(joined["name"], "Dr. Cli");
    assert!(joined.get("event").is_none(), "{joined}");

    // Hands and chat: only changes, to everyone; chat cleaned and bounded; never logged.
    ws_send(&mut ws, r#"{"type":"raise_hand","raised":true}"#);
    let hand = ws_recv_type(&mut ws, "hand");
    assert_eq!((hand["name"].as_str(), hand["raised"].as_bool()), (Some("Dr. Real"), Some(true)), "{hand}");
    wait_for("hand_raised in the operators' list", Duration::from_secs(10), || {
        participants(&server, "hip-2").iter().any(|p| p["name"] == "Dr. Real" && p["hand_raised"] == true).then_some(())
    })?;
    let secret_words = "gallbladder \u{1b}[31mred\u{0} and more";
    ws_send(&mut ws, &json!({"type":"chat","text": format!("{secret_words}{}", "x".repeat(900))}).to_string());
    let chat = ws_recv_type(&mut ws, "chat");
    let text = chat["text"].as_str().unwrap();
    assert!(text.starts_with("gallbladder  [31mred  and more"), "{chat}");
    assert_eq!(text.chars().count(), 500, "cut to the limit");
    assert!(chat["id"].is_string() && chat["at"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{chat}");
    ws_send(&mut ws, r#"{"type":"chat","text":"  \n "}"#);
    assert_eq!(error_code(&ws_recv_type(&mut ws, "error")), "bad_request");
    assert!(!server.log_text().contains("gallbladder"), "chat text is not logged");

    // A viewer may neither raise a hand nor chat, and is told so; the connection stays.
    let mut viewer = ws_connect(&server);
    ws_send(&mut viewer, &json!({"type":"join","v":1,"room":"hip-2","token":server.token("hip-2", Role::Viewer, "V")}).to_string());
    ws_recv_type(&mut viewer, "joined");
    ws_send(&mut viewer, r#"{"type":"raise_hand","raised":true}"#);
    assert_eq!(error_code(&ws_recv_type(&mut viewer, "error")), "forbidden");
    ws_send(&mut viewer, r#"{"type":"ping"}"#);
    assert_eq!(ws_recv_type(&mut viewer, "pong")["type"], "pong");
    Ok(())
}

/// The pre-join screen shows the invitation's name (not the link's `&name=`), the
/// event's title, the fake camera and microphone in the lists, and a level meter
/// that moves with Chromium's fake beep; Join enters the room under the token's name.
#[test]
fn the_pre_join_screen_shows_who_what_and_the_devices_then_joins() -> Result<()> {
    let server = Server::start(&[])?;
    let (url, _) = invite(&server, "knee-9", "Knee arthroscopy — case review", "Dr. Real Name", json!({}))?;
    let page = Browser::start()?;
    page.goto(&format!("{}{url}&name=Prof.%20Somebody%20Else", server.url))?;

    wait_for("the devices listed", Duration::from_secs(30), || {
        let mics = js(&page, "return [...document.querySelectorAll('#mic-select option')].map(o => o.textContent)");
        let cams = js(&page, "return [...document.querySelectorAll('#cam-select option')].map(o => o.textContent)");
        let fake = |v: &Value| v.as_array().is_some_and(|a| a.iter().any(|o| o.as_str().is_some_and(|s| s.to_lowercase().contains("fake"))));
        (fake(&mics) && fake(&cams)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_text(&page)))?;
    let text = page_text(&page);
    assert!(text.contains("Joining as Dr. Real Name"), "{text}");
    assert!(text.contains("Knee arthroscopy — case review"), "{text}");
    assert!(!text.contains("Somebody Else"), "the link's name is ignored: {text}");
    // The camera previews, and the meter follows the fake microphone's beeps.
    wait_for("the camera preview", Duration::from_secs(20), || {
        (js(&page, "return document.querySelector('#preview').videoWidth") .as_u64() > Some(0)).then_some(())
    })?;
    let mut levels = Vec::new();
    wait_for("the level meter to move", Duration::from_secs(30), || {
        levels.push(js(&page, "return window.casecast.meter.level").as_f64()?);
        let hi = levels.iter().cloned().fold(0.0, f64::max);
        let lo = levels.iter().cloned().fold(1.0, f64::min);
        let width = js(&page, "return parseFloat(document.querySelector('#meter-fill').style.width) || 0").as_f64()?;
        (hi > 0.3 && hi - lo > 0.2 && width >= 0.0).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: levels {levels:?}"))?;
    let shot = TempDir::new("prejoin");
    page.screenshot(&screenshot_path(&shot.0, "commentator-prejoin.png"), 1024, 768)?;

    page.eval("document.querySelector('#btn-join').click()")?;
    let me = wait_for("the commentator in the room", Duration::from_secs(30), || {
        participants(&server, "knee-9").into_iter().find(|p| p["role"] == "commentator")
    })?;
    assert_eq!(me["name"], "Dr. Real Name", "the token's name, everywhere: {me}");
    wait_for("the page to show the joined room", Duration::from_secs(30), || {
        let t = page_text(&page);
        (t.contains("Dr. Real Name") && t.contains("Knee arthroscopy — case review") && js(&page, "return window.casecast.view") == "room").then_some(())
    })?;
    assert!(!page_text(&page).contains("Somebody Else"));
    // The choice is remembered for next time.
    let saved = js(&page, "return JSON.parse(localStorage.getItem('casecast.devices') || '{}')");
    assert!(saved["mic"].is_string(), "{saved}");
    Ok(())
}

/// Expired, wrong-secret and incomplete links say what is wrong and what to do, on
/// the page; a room that is no event's says so plainly instead of waiting silently.
#[test]
fn refused_links_and_unknown_rooms_say_so_in_plain_words() -> Result<()> {
    let server = Server::start(&[])?;
    let page = Browser::start()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let expired = server.key.mint("or-3", Role::Commentator, "Dr. Late", now - 7200, 3600);
    let foreign = casecast_signaling::TokenKey::new("another-server-secret-0123").mint("or-3", Role::Commentator, "Dr. X", now, 3600);
    for (token, prejoin, says) in [
        (expired.as_str(), "", "This invitation link has expired. Ask the organisers for a new one."),
        (foreign.as_str(), "", "This link is not valid for this server. Check that you copied the whole link"),
        (&foreign[..foreign.len() / 2], "", "Check that you copied the whole link"),
    ] {
        page.goto(&format!("{}/room/or-3?token={token}{prejoin}", server.url))?;
        wait_for("the plain-words refusal", Duration::from_secs(20), || page_text(&page).contains(says).then_some(()))
            .map_err(|e| anyhow::anyhow!("{e}: {}", page_text(&page)))?;
        let text = page_text(&page);
        assert!(!text.contains("Unix") && !text.contains("signature"), "no engineer talk: {text}");
        assert_eq!(js(&page, "return window.casecast.view"), "fatal");
    }
    page.goto(&format!("{}/room/or-3", server.url))?;
    wait_for("the incomplete link explained", Duration::from_secs(20), || page_text(&page).contains("This link is incomplete").then_some(()))?;

    // No event has this id: the pre-join screen and the joined page both say so.
    let token = server.token("nowhere-7", Role::Commentator, "Dr. Cli");
    page.goto(&format!("{}/room/nowhere-7?token={token}", server.url))?;
    let none = "There is no scheduled event called “nowhere-7” on this server.";
    wait_for("the pre-join screen to say there is no such event", Duration::from_secs(20), || page_text(&page).contains(none).then_some(()))?;
    page.join_room(&format!("{}/room/nowhere-7?token={token}", server.url))?;
    wait_for("the joined page to say there is no such event", Duration::from_secs(30), || {
        (js(&page, "return window.casecast.participantId").is_string() && page_text(&page).contains(none)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_text(&page)))?;
    Ok(())
}

/// A browser that refuses camera and microphone (no fake permission UI, prompts
/// denied): the pre-join screen says how to allow them and offers Retry, and the
/// person can still join to watch and listen.
#[test]
fn a_blocked_camera_gets_a_hint_and_a_retry() -> Result<()> {
    let server = Server::start(&[])?;
    let token = server.token("or-4", Role::Commentator, "Dr. Blocked");
    let page = DenyingBrowser::start()?;
    page.goto(&format!("{}/room/or-4?token={token}", server.url))?;
    let hint = wait_for("the blocked-device hint", Duration::from_secs(30), || {
        let shown = page.eval("return !document.querySelector('#media-error').hidden && document.querySelector('#media-error').dataset.error").ok()?;
        if shown != "NotAllowedError" {
            return None;
        }
        page.eval("return document.querySelector('#media-error-text').textContent").ok()
    })?;
    let hint = hint.as_str().unwrap_or_default().to_string();
    assert!(hint.contains("blocking") && hint.contains("Allow") && hint.contains("Retry"), "{hint}");
    assert_eq!(page.eval("const b = document.querySelector('#media-retry'); return !b.hidden && b.offsetParent !== null && b.textContent.trim()")?, "Retry");
    // Retry asks again (still blocked here): the hint stays, Join still works.
    page.eval("document.querySelector('#media-retry').click()")?;
    wait_for("the retry to finish", Duration::from_secs(20), || {
        let label = page.eval("return !document.querySelector('#btn-join').disabled && document.querySelector('#btn-join').textContent").ok()?;
        (label == "Join to watch and listen").then_some(())
    })?;
    page.eval("document.querySelector('#btn-join').click()")?;
    wait_for("the watcher in the room", Duration::from_secs(30), || {
        participants(&server, "or-4").iter().any(|p| p["name"] == "Dr. Blocked").then_some(())
    })?;
    Ok(())
}

/// Two commentators: a chat line from one arrives on the other's page, a raised hand
/// shows on the other's list and in the operators' participants list, and the people
/// count leaves out the encoder.
#[test]
fn commentators_chat_and_raise_hands() -> Result<()> {
    let server = Server::demo(&["--program", "false"])?;
    let a = Browser::start()?;
    let b = Browser::start()?;
    a.join_room(&format!("{}/room/demo?token={}&name=Someone%20Else", server.url, server.token("demo", Role::Commentator, "Dr. Ada")))?;
    b.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Bo")))?;
    for page in [&a, &b] {
        wait_for("both joined", Duration::from_secs(60), || {
            let people = js(page, "return window.casecast.participants.map(p => p.name)");
            people.as_array()?.iter().any(|n| n == "Dr. Ada" || n == "Dr. Bo").then_some(())
        })?;
    }
    wait_for("the encoder in the room", Duration::from_secs(60), || {
        js(&b, "return window.casecast.participants.some(p => p.role === 'encoder')").as_bool()?.then_some(())
    })?;
    assert_eq!(js(&b, "return document.querySelector('#people').textContent"), "2 people here", "people only, not the encoder");
    let listed = js(&b, "return [...document.querySelectorAll('#people-list .who')].map(e => e.textContent)");
    assert_eq!(listed, json!(["Dr. Bo", "Dr. Ada"]), "the token's names, not the link's");

    a.eval("const i = document.querySelector('#chat-input'); i.value = 'Can we see the left side?'; document.querySelector('#chat-form').requestSubmit();")?;
    wait_for("the chat line on the other page", Duration::from_secs(20), || {
        let t = js(&b, "return document.querySelector('#chat-log').innerText");
        (t.as_str()?.contains("Can we see the left side?") && t.as_str()?.contains("Dr. Ada")).then_some(())
    })?;
    // H raises the hand (not while typing); the other page and the operators see it.
    a.eval("document.querySelector('#chat-input').blur(); document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'h', bubbles: true}))")?;
    wait_for("the raised hand on the other page", Duration::from_secs(20), || {
        js(&b, "return !!document.querySelector('#people-list li[data-hand=\"true\"]') && document.querySelector('#people-list li[data-hand=\"true\"] .who').textContent").as_str().filter(|n| *n == "Dr. Ada").map(|_| ())
    })?;
    wait_for("hand_raised in the operators' list", Duration::from_secs(10), || {
        participants(&server, "demo").iter().any(|p| p["name"] == "Dr. Ada" && p["hand_raised"] == true).then_some(())
    })?;
    assert_eq!(js(&a, "return document.querySelector('#btn-hand .label').textContent"), "Lower hand");
    // M mutes the microphone; typing an "m" in the chat box does not.
    a.eval("const i = document.querySelector('#chat-input'); i.focus(); i.dispatchEvent(new KeyboardEvent('keydown', {key: 'm', bubbles: true}))")?;
    assert_eq!(js(&a, "return window.casecast.localStream.getAudioTracks()[0].enabled"), true);
    a.eval("document.querySelector('#chat-input').blur(); document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'm', bubbles: true}))")?;
    assert_eq!(js(&a, "return window.casecast.localStream.getAudioTracks()[0].enabled"), false);
    assert!(js(&a, "return document.querySelector('#btn-mic').title").as_str().is_some_and(|t| t.contains('M')));
    // Leave asks first.
    a.eval("document.querySelector('#btn-leave').click()")?;
    assert_eq!(js(&a, "return document.querySelector('#leave-dialog').open"), true);
    assert_eq!(js(&a, "return window.casecast.state === 'left'"), false);
    Ok(())
}

/// A commentator whose browser dies (killed, no goodbye) leaves a free seat within
/// seconds, and the same invitation joins again at once, even where a person may
/// hold only one session (a seat held by a ghost would refuse it: LiveKit #3456).
#[test]
fn a_killed_browser_frees_its_seat_and_the_same_invitation_joins_again() -> Result<()> {
    let server = Server::demo(&["--program", "false", "--room-max-sessions-per-person", "1"])?;
    let (link, _) = invite(&server, "seat-1", "Knee arthroscopy", "Dr. Kim", json!({}))?;
    let link = format!("{}{link}", server.url);
    let here = |s: &Server| participants(s, "seat-1").iter().filter(|p| p["name"] == "Dr. Kim").count();
    let first = Browser::start()?;
    first.join_room(&link)?;
    wait_for("Dr. Kim in the room", Duration::from_secs(60), || (here(&server) == 1).then_some(()))?;
    // The same person, ready to join again the moment the browser dies (one seat
    // per person: the lost session must give way at once, not after its grace).
    let again = Browser::start()?;
    again.open_room(&link)?;
    first.kill()?;
    let killed = std::time::Instant::now();
    again.eval("document.querySelector('#btn-join').click()")?;
    wait_for("Dr. Kim in the room again", Duration::from_secs(60), || {
        (here(&server) == 1 && js(&again, "return document.body.dataset.state") == "live").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_text(&again)))?;
    let rejoined = killed.elapsed();
    // Its first join was taken: not refused for the seat the dead session held.
    assert_eq!(js(&again, "return window.casecast.connects"), json!(1), "{}", page_text(&again));
    // Nobody comes back for this one: its seat is free once the resume grace (5 s)
    // is over.
    again.kill()?;
    let killed = std::time::Instant::now();
    wait_for("the seat to be free", Duration::from_secs(15), || (here(&server) == 0).then_some(()))?;
    let freed = killed.elapsed();
    println!("joined again {rejoined:?} after the kill; the seat was free {freed:?} after the second kill");
    assert!(freed < Duration::from_secs(8), "freed after {freed:?}");
    Ok(())
}

/// The joined page fits: no sideways scrolling on a phone (390 px) or a tablet
/// (1024 px); on a landscape tablet (1024×768, 1180×820) the feed and a commentator's
/// tile are both on screen; "Program" is not cut short on a phone.
#[test]
fn the_commentator_page_fits_phones_and_tablets() -> Result<()> {
    let server = Server::demo(&[])?;
    let page = Browser::start()?;
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Tablet")))?;
    wait_for("the feed and the program monitor to play", Duration::from_secs(90), || {
        let s = page_stats(&page);
        (s["feedFramesDecoded"].as_f64()? > 10.0 && s["programFramesDecoded"].as_f64()? > 0.0).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", page_stats(&page)))?;
    let in_view = |css: &str| {
        js(&page, &format!(
            "const r = document.querySelector('{css}')?.getBoundingClientRect(); \
             return !!r && r.width > 40 && r.height > 30 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight + 1 && r.right <= innerWidth + 1"
        )) == true
    };
    let fits = || js(&page, "return document.documentElement.scrollWidth <= innerWidth") == true;
    let shot = TempDir::new("layout");
    for (w, h) in [(1180, 820), (1024, 768)] {
        let path = if w == 1024 { screenshot_path(&shot.0, "commentator-page.png") } else { shot.0.join("page.png") };
        page.screenshot(&path, w, h)?;
        assert!(fits(), "no sideways scrolling at {w}×{h}");
        assert!(in_view("#feed"), "the feed in view at {w}×{h}");
        assert!(in_view(".tile.self"), "a commentator's tile in view at {w}×{h}");
        assert!(in_view(".tile.program"), "the program monitor in view at {w}×{h}");
    }
    // A phone: headless Chromium keeps its window wider than 390 px, so the page runs
    // in a 390 × 844 frame (its own viewport: the media queries and innerWidth are the
    // frame's), joining again.
    let token = server.token("demo", Role::Commentator, "Dr. Phone");
    page.goto(&format!("{}/", server.url))?;
    page.eval(&format!(
        "document.body.replaceChildren(); const f = document.createElement('iframe'); f.id = 'phone'; \
         f.style.cssText = 'width:390px;height:844px;border:0;display:block'; f.allow = 'camera; microphone; autoplay'; \
         f.src = '/room/demo?token={token}'; document.body.append(f);"
    ))?;
    let phone = "document.querySelector('#phone').contentWindow";
    wait_for("the phone's pre-join screen", Duration::from_secs(30), || {
        let ready = js(&page, &format!("const b = {phone}.document.querySelector('#btn-join'); return !!b && !b.disabled && b.offsetParent !== null"));
        (ready == true).then_some(())
    })?;
    page.eval(&format!("{phone}.document.querySelector('#btn-join').click()"))?;
    wait_for("the program monitor on the phone", Duration::from_secs(60), || {
        (js(&page, &format!("const w = {phone}; const v = w.document.querySelector('.tile.program video'); return !!v && v.videoWidth > 0 && w.casecast.state === 'live'")) == true).then_some(())
    })?;
    assert_eq!(js(&page, &format!("return {phone}.innerWidth")), json!(390));
    let scroll = js(&page, &format!("const w = {phone}; return [w.document.documentElement.scrollWidth, w.innerWidth]"));
    assert!(scroll[0].as_u64() <= scroll[1].as_u64(), "no sideways scrolling at 390 px: {scroll}");
    let label = js(&page, &format!("const n = {phone}.document.querySelector('.tile.program .name'); return [n.textContent, n.scrollWidth <= n.clientWidth + 1]"));
    assert_eq!(label, json!(["Program", true]), "\"Program\" whole on a phone");
    let buttons = js(&page, &format!("return [...{phone}.document.querySelectorAll('#controls .btn')].filter(b => !b.hidden).map(b => [b.textContent.trim(), b.scrollWidth <= b.clientWidth + 1])"));
    assert!(buttons.as_array().is_some_and(|b| b.len() >= 3 && b.iter().all(|b| b[1] == true)), "button labels whole on a phone: {buttons}");
    Ok(())
}

/// Headless Chromium with the fake devices but no fake permission UI, and prompts
/// denied: getUserMedia fails with NotAllowedError, as in a browser whose user
/// blocked the camera. (The shared `Browser` always grants them.)
struct DenyingBrowser {
    base: String,
    session: String,
    agent: ureq::Agent,
    _driver: Proc,
    _profile: TempDir,
}

impl DenyingBrowser {
    fn start() -> Result<DenyingBrowser> {
        let port = free_tcp_port();
        let driver = Proc(
            std::process::Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("cannot start chromedriver")?,
        );
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        wait_for("chromedriver", Duration::from_secs(20), || agent.get(&format!("{base}/status")).call().ok().filter(|r| r.status() == 200))?;
        let profile = TempDir::new("chromium-deny");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--use-fake-device-for-media-stream".into(),
            "--deny-permission-prompts".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let v: Value = agent.post(&format!("{base}/session")).send_json(&caps)?.body_mut().read_json()?;
        let session = v["value"]["sessionId"].as_str().with_context(|| format!("no session: {v}"))?.to_string();
        Ok(DenyingBrowser { base, session, agent, _driver: driver, _profile: profile })
    }

    fn command(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let v: Value = self.agent.post(&url).send_json(body)?.body_mut().read_json()?;
        if v["value"]["error"].is_string() {
            bail!("webdriver {path}: {}", v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    fn goto(&self, url: &str) -> Result<()> {
        self.command("url", &json!({"url": url})).map(|_| ())
    }

    fn eval(&self, script: &str) -> Result<Value> {
        self.command("execute/sync", &json!({"script": script, "args": []}))
    }
}

impl Drop for DenyingBrowser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}
