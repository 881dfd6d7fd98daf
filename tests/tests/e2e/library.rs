//! The recordings' library: an event is fed, started, sent two messages and ended;
//! the library lists it with its recorded file, whose thumbnail is a picture, whose
//! chapters are the messages at their times, and which plays in Chromium from the
//! watch page, seeking to a chapter; the console shows it too.

use super::*;

#[test]
fn an_ended_events_recording_is_in_the_library_with_its_thumbnail_and_chapters_and_plays() -> Result<()> {
    let server = Server::start(&["--program-width", "640", "--program-height", "360", "--program-fps", "15"])?;
    let center = server.token("*", Role::Operator, "Ops Lib");
    let base = format!("{}/api/events", server.url);
    assert_eq!(api("POST", &base, Some(&center), Some(json!({"id": "lib-1", "title": "Hip replacement, OR 2"})))?.0, 201);
    let event_op = server.token("lib-1", Role::Operator, "event desk");
    let _encoder = gst_publisher(&format!("{}/whip/lib-1", server.url), &server.token("lib-1", Role::Encoder, "OR 2"), &[])?;
    assert_eq!(api("POST", &format!("{base}/lib-1/start"), Some(&center), None)?.0, 200);
    let listing = format!("{}/api/rooms/lib-1/recordings", server.url);
    wait_for("the program to record", Duration::from_secs(60), || {
        let (s, v) = api("GET", &listing, Some(&center), None).ok()?;
        (s == 200 && v["recordings"].as_array().is_some_and(|r| !r.is_empty())).then_some(())
    })?;
    // Two messages to viewers, a few seconds apart: the chapters to be.
    let send = |body: Value| {
        wait_for("the program to take timed metadata", Duration::from_secs(30), || {
            (api("POST", &format!("{base}/lib-1/metadata"), Some(&center), Some(body.clone())).ok()?.0 == 202).then_some(())
        })
    };
    // Another event's operator sees that event only, and none of this one's files.
    assert_eq!(api("POST", &base, Some(&center), Some(json!({"id": "lib-2", "title": "Knee"})))?.0, 201);
    let other = server.token("lib-2", Role::Operator, "other desk");
    let (s, mine) = api("GET", &format!("{}/api/library", server.url), Some(&other), None)?;
    let ids: Vec<&str> = mine["events"].as_array().into_iter().flatten().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!((s, ids), (200, vec!["lib-2"]));
    assert_eq!(api("GET", &listing, Some(&other), None)?.0, 403);
    let first = format!("{listing}/program-00000.mp4");
    assert_eq!(http_request("GET", &format!("{first}?token={other}"), &[], None)?.0, 403);
    assert_eq!(http_request("GET", &format!("{first}/thumbnail?token={other}"), &[], None)?.0, 403);
    // What the file holds so far, seconds (its length as the listing says).
    let recorded = || -> Option<f64> { api("GET", &listing, Some(&center), None).ok()?.1["recordings"][0]["duration_secs"].as_f64() };
    let recorded_past = |secs: f64| wait_for("the recording to grow", Duration::from_secs(30), || recorded().filter(|&d| d >= secs));
    recorded_past(2.0)?;
    send(json!({"text": "Incision"}))?;
    recorded_past(recorded().unwrap_or(0.0) + 4.0)?;
    send(json!({"poll": {"question": "Cemented or not?", "options": ["cemented", "uncemented"]}}))?;
    recorded_past(recorded().unwrap_or(0.0) + 4.0)?;
    assert_eq!(api("POST", &format!("{base}/lib-1/end"), Some(&center), None)?.0, 200);

    // The library: the ended event with its finished file.
    let library = format!("{}/api/library", server.url);
    let event = wait_for("the recording finished in the library", Duration::from_secs(30), || {
        let (s, v) = api("GET", &library, Some(&center), None).ok()?;
        let e = v["events"].as_array()?.iter().find(|e| e["id"] == "lib-1")?.clone();
        (s == 200 && e["status"] == "ended" && e["recordings"][0]["state"] == "complete").then_some(e)
    })?;
    assert_eq!(event["title"], "Hip replacement, OR 2");
    let rec = event["recordings"][0].clone();
    let duration = rec["duration_secs"].as_f64().unwrap_or(0.0);
    assert!(duration >= 8.0, "{rec}");
    let chapters = rec["chapters"].as_array().cloned().unwrap_or_default();
    let titles: Vec<&str> = chapters.iter().filter_map(|c| c["title"].as_str()).collect();
    assert_eq!(titles, ["Incision", "Poll: Cemented or not?"], "{rec}");
    let starts: Vec<f64> = chapters.iter().filter_map(|c| c["start_secs"].as_f64()).collect();
    assert!(starts[0] >= 1.0 && starts[1] >= starts[0] + 3.0 && starts[1] <= duration, "chapters at {starts:?} of {duration} s");

    // Its thumbnail: a 320-pixel-wide picture of the program.
    let q = format!("?token={center}");
    let (status, headers, jpeg) = http_request("GET", &format!("{}{}{q}", server.url, rec["thumbnail"].as_str().unwrap()), &[], None)?;
    assert_eq!((status, header(&headers, "content-type")), (200, Some("image/jpeg")));
    let (kind, w, h) = picture_size(&jpeg).expect("a picture");
    assert_eq!(kind, "jpeg");
    assert_eq!(w, 320);
    assert!((170..=190).contains(&h), "{w}×{h}");
    // The file in ranges, as players seek.
    let file = format!("{}{}", server.url, rec["url"].as_str().unwrap());
    let auth = format!("Bearer {center}");
    let (status, headers, part) = http_request("GET", &file, &[("Authorization", &auth), ("Range", "bytes=100-199")], None)?;
    assert_eq!((status, part.len()), (206, 100));
    assert_eq!(header(&headers, "content-range"), Some(format!("bytes 100-199/{}", rec["bytes"]).as_str()));
    let (status, _, whole) = http_request("GET", &file, &[("Authorization", &auth)], None)?;
    assert_eq!((status, whole.len() as u64, &whole[100..200]), (200, rec["bytes"].as_u64().unwrap(), &part[..]));
    assert_eq!(http_request("GET", &file, &[("Authorization", &auth), ("Range", "bytes=999999999-")], None)?.0, 416);
    // Read by the center only now: the event's own operators stopped with it.
    assert_eq!(api("GET", &library, None, None)?.0, 401);
    assert_eq!(api("GET", &library, Some(&event_op), None)?.0, 403);
    assert_eq!(http_request("GET", &format!("{file}?token={event_op}"), &[], None)?.0, 403);

    // Played on the watch page, from a chapter.
    let page = Browser::start()?;
    page.goto(&format!("{}{}&token={center}", server.url, rec["watch"].as_str().unwrap()))?;
    let shown = wait_for("the chapters on the page", Duration::from_secs(30), || {
        let n = page.eval("return document.querySelectorAll('#chapters button').length").ok()?;
        (n == json!(2)).then_some(())
    });
    shown?;
    page.eval("document.querySelector('#chapters li:nth-child(2) button').click()")?;
    let at = wait_for("the recording to play from the second chapter", Duration::from_secs(60), || {
        let v = page.eval("const v = document.getElementById('video'); return [v.currentTime, v.readyState, v.paused]").ok()?;
        let t = v[0].as_f64()?;
        (v[1].as_i64()? >= 2 && !v[2].as_bool()? && t > starts[1] + 0.5).then_some(t)
    })?;
    assert!(at < starts[1] + 10.0, "played from {at}, the chapter starts at {}", starts[1]);
    let current = page.eval("return document.querySelector('#chapters li:nth-child(2) button').getAttribute('aria-current')")?;
    assert_eq!(current, json!("true"));

    // The console's library shows it, with its thumbnail loaded.
    page.goto(&format!("{}/console?token={center}", server.url))?;
    wait_for("the console's library with the thumbnail", Duration::from_secs(30), || {
        let w = page.eval("const i = document.querySelector('.library-event[data-event=\"lib-1\"] .recording img'); return i && i.complete ? i.naturalWidth : 0").ok()?;
        (w == json!(320)).then_some(())
    })?;
    Ok(())
}
