//! Event day, as an operator, viewers and a hospital's encoder live it: an event
//! made and run from the console alone (no compositor started by hand), its state
//! told to everyone, polls that count, a restart mid-event that viewers ride
//! through, and pages that fit a desktop, a tablet and a phone.

use std::time::Duration;

use anyhow::Result;
use casecast_signaling::Role;
use casecast_tests::browser::Browser;
use casecast_tests::*;
use serde_json::{Value, json};

use super::{api, segments};

fn hook(b: &Browser, expr: &str) -> Value {
    b.eval(&format!("try {{ return {expr}; }} catch (e) {{ return null; }}")).unwrap_or(Value::Null)
}

/// The watch page's state and whether its picture moves: (state, overlay title or
/// null, currentTime).
fn viewer(b: &Browser) -> (Value, Value, f64) {
    let v = hook(
        b,
        "[window.casecastWatch.state ? window.casecastWatch.state.state : null,
          document.querySelector('#overlay').hidden ? null : document.querySelector('#overlay-title').textContent,
          document.querySelector('#video').currentTime]",
    );
    (v[0].clone(), v[1].clone(), v[2].as_f64().unwrap_or(0.0))
}

/// Waits until the watch page's picture advances by `secs` (it plays).
fn plays(b: &Browser, what: &str, secs: f64, limit: Duration) -> Result<()> {
    let start = wait_for(what, limit, || Some(viewer(b).2).filter(|&t| t > 0.0));
    let moved = start.and_then(|start| wait_for(what, limit, || (viewer(b).2 > start + secs).then_some(())));
    moved.map_err(|e| {
        let v = hook(b, "(() => { const v = document.querySelector('#video'); return { paused: v.paused, ended: v.ended, ready: v.readyState, t: v.currentTime, d: v.duration, error: v.error && v.error.message, state: window.casecastWatch.state, status: document.querySelector('#status').textContent }; })()");
        anyhow::anyhow!("{e}: the player: {v}")
    })
}

/// The operator makes an event in the console with a title and a schedule, hands the
/// encoder invitation the console made to a WHIP publisher, and presses Start: the
/// server runs the program, the console's monitor shows it, viewers who waited on
/// "starting soon" see it. A poll from the console voted by two viewers shows two
/// votes; off air, viewers are told the broadcast will resume; back on air, they
/// watch again; ended, they are told so and get the recording.
#[test]
fn an_operator_runs_an_event_from_the_console_alone() -> Result<()> {
    let server = Server::start(&["--program-preset", "low-latency", "--program-width", "640", "--program-height", "360", "--program-fps", "15"])?;
    let center = server.token("*", Role::Operator, "Ops Fay");
    let console = Browser::start()?;
    console.goto(&format!("{}/console?token={center}", server.url))?;
    wait_for("the console to load", Duration::from_secs(20), || hook(&console, "window.casecastConsole.events").as_array().map(|_| ()))?;
    // Made through the form, scheduled an hour from now.
    console.eval(
        "const at = (h) => { const d = new Date(Date.now() + h * 3600e3); d.setSeconds(0, 0);
           return new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16); };
         document.querySelector('#ev-title').value = 'Mitral valve repair, OR 4';
         document.querySelector('#ev-start').value = at(1);
         document.querySelector('#ev-end').value = at(3);
         document.querySelector('#ev-preset').value = 'low-latency';
         document.querySelector('#create-event').requestSubmit();",
    )?;
    let event = wait_for("the event listed as scheduled", Duration::from_secs(20), || {
        let events = hook(&console, "window.casecastConsole.events");
        events.as_array()?.iter().find(|e| e["title"] == "Mitral valve repair, OR 4" && e["state"] == "scheduled").cloned()
    })?;
    let id = event["id"].as_str().unwrap().to_string();
    assert!(event["starts_at"].as_i64().is_some() && event["ends_at"].as_i64() > event["starts_at"].as_i64(), "{event}");
    // The encoder's invitation, ready to hand to the hospital.
    let invitation = wait_for("the encoder's invitation", Duration::from_secs(20), || {
        let inv = hook(&console, "window.casecastConsole.lastInvitation");
        (inv["role"] == "encoder").then_some(inv)
    })?;
    let whip = format!("{}{}", server.url, invitation["url"].as_str().unwrap());
    assert!(whip.ends_with(&format!("/whip/{id}")), "{whip}");
    assert_eq!(hook(&console, "document.querySelector('#new-token').value"), invitation["token"]);
    let _encoder = gst_publisher(&whip, invitation["token"].as_str().unwrap(), &[])?;
    // A viewer who comes early is told it starts soon.
    let watch = format!("{}/watch/{id}", server.url);
    let early = Browser::start()?;
    early.goto(&watch)?;
    wait_for("'starting soon' for the early viewer", Duration::from_secs(20), || {
        let (state, overlay, _) = viewer(&early);
        (state == "scheduled" && overlay == "Starting soon").then_some(())
    })?;
    assert_eq!(hook(&early, "document.querySelector('#room').textContent"), json!("Mitral valve repair, OR 4"));
    // Start, from the event's head.
    wait_for("the event open", Duration::from_secs(20), || (hook(&console, "window.casecastConsole.event.id") == json!(id)).then_some(()))?;
    console.eval("document.querySelector('#start-event').click()")?;
    wait_for("the on-air light", Duration::from_secs(90), || (hook(&console, "document.querySelector('#air-light').dataset.state") == json!("on_air")).then_some(()))?;
    wait_for("the program monitor in the console", Duration::from_secs(60), || {
        (hook(&console, "document.querySelector('#preview').videoWidth") == json!(640)).then_some(())
    })?;
    plays(&early, "the early viewer to play the program", 3.0, Duration::from_secs(90))?;
    assert_eq!(viewer(&early).1, Value::Null, "nothing over the picture on air");
    // A second viewer; both vote in a poll sent from the console.
    let late = Browser::start()?;
    late.goto(&watch)?;
    plays(&late, "the second viewer to play", 2.0, Duration::from_secs(90))?;
    console.eval(
        "document.querySelector('#poll-question').value = 'Repair or replace?';
         document.querySelector('#poll-options').value = 'Repair, Replace';
         document.querySelector('#send-poll').requestSubmit();",
    )?;
    for b in [&early, &late] {
        wait_for("the poll on the watch page", Duration::from_secs(60), || {
            (hook(b, "document.querySelectorAll('.poll-options button').length") == json!(2)).then_some(())
        })?;
        b.eval("document.querySelector('.poll-options button').click()")?;
        wait_for("the vote counted", Duration::from_secs(10), || (hook(b, "window.casecastWatch.votes") == json!(1)).then_some(()))?;
    }
    // The same viewer voting again changes nothing in the count.
    early.eval("document.querySelectorAll('.poll-options button')[0].click()")?;
    let polls = wait_for("2 votes in the console", Duration::from_secs(20), || {
        let polls = hook(&console, "window.casecastConsole.polls");
        (polls[0]["total"] == 2 && polls[0]["counts"] == json!([2, 0])).then_some(polls)
    })?;
    assert_eq!(polls[0]["question"], "Repair or replace?");
    assert_eq!(hook(&console, "document.querySelector('#poll-results .poll').dataset.total"), json!("2"));
    // Off air: both viewers are told within the hold-back (3 s here; bounded at 15).
    console.eval("document.querySelector('#air-toggle').click()")?;
    for b in [&early, &late] {
        wait_for("viewers told the broadcast will resume", Duration::from_secs(15), || {
            let (state, overlay, _) = viewer(b);
            (state == "off_air" && overlay.as_str().is_some_and(|t| t.contains("right back"))).then_some(())
        })?;
        let text = hook(b, "document.querySelector('#overlay-text').textContent");
        assert!(text.as_str().is_some_and(|t| t.contains("resume shortly")), "{text}");
    }
    // The console's outputs say so too (they are polled: bounded, not instant).
    wait_for("the console's HLS output off air", Duration::from_secs(15), || {
        let outputs = hook(&console, "window.casecastConsole.distribution.outputs");
        outputs.as_array()?.iter().any(|o| o["output"] == "hls" && o["state"] == "off_air").then_some(())
    })?;
    // Back on air: the message goes and the picture moves again.
    console.eval("document.querySelector('#air-toggle').click()")?;
    for b in [&early, &late] {
        wait_for("the message gone", Duration::from_secs(15), || (viewer(b).0 == "on_air" && viewer(b).1.is_null()).then_some(()))?;
        plays(b, "the program again", 2.0, Duration::from_secs(60))?;
    }
    // Ended: the program stops, viewers are told and get the recording.
    console.eval("window.confirm = () => true; document.querySelector('#end-event').click()")?;
    for b in [&early, &late] {
        wait_for("viewers told it ended", Duration::from_secs(30), || {
            let note = hook(b, "document.querySelector('#note').hidden ? null : document.querySelector('#note').textContent");
            (viewer(b).0 == "ended" && note.as_str().is_some_and(|t| t.contains("recording"))).then_some(())
        })?;
    }
    let path = server.data_dir().join(format!("hls/{id}/index.m3u8"));
    wait_for("the playlist to become the recording (VOD)", Duration::from_secs(30), || {
        let playlist = std::fs::read_to_string(&path).ok()?;
        (playlist.contains("#EXT-X-ENDLIST") && !segments(&playlist).is_empty()).then_some(())
    })?;
    wait_for("the recording loaded", Duration::from_secs(30), || {
        (hook(&late, "window.casecastWatch.hls.levels[0].details.live") == json!(false)).then_some(())
    })?;
    // Played from its start (it may have played through already: it is short).
    late.eval("const v = document.querySelector('#video'); v.currentTime = 0.1; v.play();")?;
    plays(&late, "the recording to play", 1.0, Duration::from_secs(60))?;
    assert_eq!(hook(&console, "document.querySelector('#air-light').dataset.state"), json!("ended"));
    // No compositor was started by hand: the program was the server's.
    let log = server.log_text();
    assert!(log.contains("program started") && log.contains("program ended"), "the server ran the program");
    Ok(())
}

/// A server stopped and started again mid-event (an upgrade): the program comes back
/// by itself, continuing its playlist, and a viewer keeps watching without a reload;
/// the page never says the event ended.
#[test]
fn viewers_follow_a_server_restart_mid_event() -> Result<()> {
    let mut server = Server::demo(&["--program-preset", "low-latency", "--program-width", "640", "--program-height", "360", "--program-fps", "15"])?;
    let hls = server.data_dir().join("hls/demo");
    let text = || std::fs::read_to_string(hls.join("index.m3u8")).unwrap_or_default();
    wait_for("the program's first segments", Duration::from_secs(90), || (segments(&text()).len() >= 3).then_some(()))?;
    let page = Browser::start()?;
    page.goto(&format!("{}/watch/demo", server.url))?;
    plays(&page, "the program to play", 2.0, Duration::from_secs(90))?;
    // Anything the page said meanwhile, and a mark that goes if it reloads.
    page.eval(
        "window.__sameDocument = true; window.__said = [];
         new MutationObserver(() => window.__said.push(document.querySelector('#status').textContent + ' | ' + document.querySelector('#note').textContent))
           .observe(document.querySelector('main'), { subtree: true, childList: true, characterData: true, attributes: true });",
    )?;
    let before = segments(&text()).len();
    server.restart()?;
    assert!(!text().contains("#EXT-X-ENDLIST"), "a restart does not end the event's playlist: {}", text());
    wait_for("the program back, continuing its playlist", Duration::from_secs(90), || {
        let t = text();
        (t.contains("#EXT-X-DISCONTINUITY") && segments(&t).len() > before.min(3)).then_some(())
    })?;
    let at = viewer(&page).2;
    wait_for("the viewer watching again without a reload", Duration::from_secs(90), || {
        (viewer(&page).0 == "on_air" && viewer(&page).2 > at + 3.0).then_some(())
    })?;
    assert_eq!(hook(&page, "window.__sameDocument"), json!(true), "the page was not reloaded");
    let said = hook(&page, "window.__said.join('\\n')");
    assert!(!said.as_str().unwrap_or("").contains("ended"), "the page never said the event ended: {said}");
    let center = server.token("*", Role::Operator, "Ops Gus");
    let (_, e) = api("GET", &format!("{}/api/events/demo", server.url), Some(&center), None)?;
    assert_eq!(e["state"], "on_air", "{e}");
    Ok(())
}

/// The console and the pages at desktop, tablet and phone widths: nothing scrolls
/// sideways. The screenshots go to docs/ with CASECAST_DOCS_SCREENSHOTS=1. A watch
/// link to no event says so.
#[test]
fn the_pages_fit_a_desktop_a_tablet_and_a_phone() -> Result<()> {
    let server = Server::demo(&["--program-preset", "low-latency", "--program-width", "640", "--program-height", "360", "--program-fps", "15"])?;
    let center = server.token("*", Role::Operator, "Ops Hal");
    let b = Browser::start()?;
    let scratch = TempDir::new("screens");
    let fits = |what: &str| -> Result<()> {
        let (scroll, inner) = {
            let v = hook(&b, "[document.documentElement.scrollWidth, window.innerWidth]");
            (v[0].as_i64().unwrap_or(i64::MAX), v[1].as_i64().unwrap_or(0))
        };
        let wide = hook(&b, "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' + e.className)");
        anyhow::ensure!(scroll <= inner, "{what}: the page is {scroll} px wide in a {inner} px window ({wide})");
        Ok(())
    };
    b.goto(&format!("{}/console?token={center}#event=demo", server.url))?;
    wait_for("the console on the demo, on air", Duration::from_secs(60), || {
        (hook(&b, "document.querySelector('#air-light').dataset.state") == json!("on_air")).then_some(())
    })?;
    wait_for("the participants listed", Duration::from_secs(30), || (hook(&b, "document.querySelectorAll('#participants tbody tr').length") == json!(1)).then_some(()))?;
    for width in [1440, 1024, 390] {
        b.screenshot_as(&screenshot_path(&scratch.0, &format!("console-{width}.png")), width, 1000, false)?;
        fits(&format!("the console at {width} px"))?;
    }
    b.goto(&format!("{}/watch/demo", server.url))?;
    plays(&b, "the watch page to play", 1.0, Duration::from_secs(90))?;
    for width in [1024, 390] {
        b.screenshot_as(&screenshot_path(&scratch.0, &format!("watch-{width}.png")), width, 800, false)?;
        fits(&format!("the watch page at {width} px"))?;
    }
    b.goto(&format!("{}/watch/nosuchroom", server.url))?;
    wait_for("a watch link to no event says so", Duration::from_secs(20), || {
        (hook(&b, "document.querySelector('#overlay-title').textContent") == json!("No event here")).then_some(())
    })?;
    Ok(())
}
