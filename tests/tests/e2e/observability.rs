//! What operators watch an event day with: the alert rules (checked and unit-tested
//! by Prometheus's own `promtool`), a real Prometheus scraping a running demo with a
//! commentator, an HLS viewer and a DICOM upload, where every panel of the Grafana
//! dashboard returns series; `/readyz` telling the truth about Redis; and the JSON
//! log, every line of it a JSON object, with the request id and the room and
//! participant on the lines about them.

use super::*;
use super::cases::{make_fixtures, tus_upload};

fn deploy_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(rel)
}

/// Runs `promtool` with `args` in `deploy/prometheus`; fails with its output.
fn promtool(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(deploy_file("prometheus"))
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run promtool (Debian's prometheus; scripts/install-deps.sh test): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The alert rules load, and each fires when it should and not before (the unit
/// tests beside them).
#[test]
fn the_alert_rules_load_and_fire_when_they_should() -> Result<()> {
    promtool(&["check", "rules", "casecast-alerts.yml"])?;
    promtool(&["test", "rules", "casecast-alerts.test.yml"])
}

/// A Prometheus server started on loopback, scraping one casecast with the scrape
/// token and evaluating the alert rules; killed on drop.
struct Prometheus {
    url: String,
    _proc: Proc,
    _dir: TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Result<Prometheus> {
        let dir = TempDir::new("prometheus");
        let port = free_tcp_port();
        let rules = deploy_file("prometheus/casecast-alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{rules:?}]\nscrape_configs:\n  - job_name: casecast\n    authorization:\n      type: Bearer\n      credentials: {METRICS_TOKEN}\n    static_configs:\n      - targets: [{target:?}]\n",
        );
        std::fs::write(dir.0.join("prometheus.yml"), config)?;
        let log = std::fs::File::create(dir.0.join("prometheus.log"))?;
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start prometheus (scripts/install-deps.sh test): {e}"))?;
        let p = Prometheus { url: format!("http://127.0.0.1:{port}"), _proc: Proc(child), _dir: dir };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            http_get(&format!("{}/-/ready", p.url)).ok().filter(|(c, _)| *c == 200)
        })?;
        Ok(p)
    }

    fn api(&self, path: &str) -> Result<Value> {
        let (status, body) = http_get(&format!("{}{path}", self.url))?;
        let v: Value = serde_json::from_str(&body)?;
        anyhow::ensure!(status == 200 && v["status"] == "success", "{path}: {status} {body}");
        Ok(v["data"].clone())
    }

    /// The instant vector a query gives now.
    fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let q: String = url_encode(expr);
        Ok(self.api(&format!("/api/v1/query?query={q}"))?["result"].as_array().cloned().unwrap_or_default())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every query of the dashboard, by panel title, as Prometheus runs it: Grafana's
/// variables replaced (`$room`: all rooms, `$__rate_interval`: 30 s).
fn dashboard_queries() -> Result<Vec<(String, String)>> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(deploy_file("grafana/casecast-dashboard.json"))?)?;
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default().replace("$room", ".*").replace("$__rate_interval", "30s");
            out.push((title.clone(), expr));
        }
    }
    Ok(out)
}

/// A running demo on Redis, with a commentator in Chromium, an HLS viewer and an
/// ingest job: Prometheus scrapes it, every panel of the dashboard gets series, the
/// rules evaluate and none fires; `/readyz` is 200 and turns 503 when Redis goes; the
/// JSON log is JSON on every line, with request ids and the room and participant.
#[test]
fn prometheus_scrapes_a_running_event_and_every_dashboard_panel_has_series() -> Result<()> {
    let redis = Redis::start()?;
    let server = Server::demo(&["--redis-url", &redis.url, "--log-format", "json"])?;
    server.wait_for_feed()?;
    let (status, _, body) = http_request("GET", &format!("{}/readyz", server.url), &[], None)?;
    let ready: Value = serde_json::from_slice(&body)?;
    assert_eq!(status, 200, "{ready}");
    assert_eq!((&ready["database"], &ready["objects"], &ready["media"], &ready["redis"]), (&json!("ok"), &json!("ok"), &json!("ok"), &json!("ok")));

    let page = Browser::start()?;
    page.join_room(&format!("{}/room/demo?token={}", server.url, server.token("demo", Role::Commentator, "Dr. Grafana")))?;
    let dir = TempDir::new("observability");
    make_fixtures(&dir.0, &[])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Upload");
    tus_upload(&server, &doctor, &std::fs::read(dir.0.join("DOE_JOHN_0.dcm"))?, "dicom", 1 << 20)?;

    let host = server.url.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(&host)?;
    let queries = dashboard_queries()?;
    assert!(queries.len() >= 25, "the dashboard has {} queries", queries.len());
    let playlist = format!("{}/hls/demo/index.m3u8", server.url);
    let mut empty = Vec::new();
    let all = wait_for("every dashboard panel to have series", Duration::from_secs(120), || {
        // A viewer of the program's HLS, reloading its playlist as players do.
        let _ = http_get(&playlist);
        empty = queries.iter().filter(|(_, q)| prometheus.query(q).map(|r| r.is_empty()).unwrap_or(true)).cloned().collect();
        empty.is_empty().then_some(())
    });
    if let Err(e) = all {
        let targets = prometheus.api("/api/v1/targets").unwrap_or_default();
        let log = server.log_text();
        let events: Vec<&str> = log.lines().filter(|l| !l.contains("\"casecast::http\"")).collect();
        anyhow::bail!("{e}: panels without series: {empty:#?}\ntargets: {targets}\n{}\n--- the server's log but its access lines ---\n{}", prometheus.log(), events.join("\n"));
    }
    // What the panels show is the event as it is: the feed arrives, the commentator
    // gets a layer of it, the program runs and its HLS is watched.
    let value = |q: &str| -> f64 {
        prometheus.query(q).ok().and_then(|r| r.first().and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))).unwrap_or(f64::NAN)
    };
    // (Over the last half minute: a stats tick may catch a moment between frames.)
    assert!(value(r#"max_over_time(casecast_room_feed_fps{room="demo"}[30s])"#) > 5.0);
    assert_eq!(value(r#"max_over_time(casecast_room_participants{room="demo",role="commentator"}[30s])"#), 1.0);
    assert!(value(r#"max(max_over_time(casecast_subscriber_video_height{room="demo",role="commentator"}[30s]))"#) >= 180.0);
    assert!(value(r#"max_over_time(casecast_program_fps{room="demo"}[30s])"#) > 1.0);
    assert!(value(r#"max_over_time(sum(casecast_hls_viewers{room="demo"})[30s:1s])"#) >= 1.0);
    assert_eq!(value(r#"casecast_ingest_jobs_finished_total{outcome="done"}"#), 1.0);
    // The rules evaluate against the real series, and a healthy event raises none.
    let groups = prometheus.api("/api/v1/rules")?;
    let rules: Vec<Value> = groups["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect();
    assert_eq!(rules.len(), 6, "{groups}");
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} does not evaluate: {r}", r["name"]);
    }
    // Past the rules' longest `for` (15 s) of samples, nothing is pending or firing.
    wait_for("20 s of scrapes", Duration::from_secs(60), || {
        let n = prometheus.query(r#"count_over_time(up{job="casecast"}[1m])"#).ok()?;
        (n.first()?["value"][1].as_str()?.parse::<f64>().ok()? >= 20.0).then_some(())
    })?;
    let alerts = prometheus.api("/api/v1/alerts")?;
    let raised: Vec<&Value> = alerts["alerts"].as_array().into_iter().flatten().collect();
    assert!(raised.is_empty(), "alerts pending or firing on a healthy event: {raised:#?}");

    // Readiness tells the truth: Redis gone, the node is not ready (and says which
    // part), while it is still alive.
    drop(redis);
    let (status, body) = wait_for("/readyz to notice Redis is gone", Duration::from_secs(30), || {
        let (status, _, body) = http_request("GET", &format!("{}/readyz", server.url), &[], None).ok()?;
        (status == 503).then(|| (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)))
    })?;
    assert_eq!((status, &body["redis"], &body["database"]), (503, &json!("failed"), &json!("ok")), "{body}");
    assert_eq!(http_get(&format!("{}/healthz", server.url))?.0, 200);

    // The log: JSON, one object a line; an answer's request id is on its lines.
    let (_, headers, _) = http_request("GET", &format!("{}/readyz", server.url), &[], None)?;
    let request_id = header(&headers, "x-request-id").map(str::to_string).expect("answers carry X-Request-Id");
    let lines: Vec<Value> = server
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("a log line is not JSON ({e}): {l}")))
        .collect::<Result<_>>()?;
    let span_field = |l: &Value, span: &str, field: &str| -> Option<String> {
        l["spans"].as_array()?.iter().find(|s| s["name"] == span).and_then(|s| s[field].as_str()).map(str::to_string)
    };
    let http: Vec<&Value> = lines.iter().filter(|l| l["target"] == "casecast::http").collect();
    assert!(http.len() > 10, "{} access lines", http.len());
    for l in &http {
        assert!(span_field(l, "request", "request_id").is_some(), "an access line without its request id: {l}");
    }
    assert!(
        http.iter().any(|l| span_field(l, "request", "request_id").as_deref() == Some(&request_id)
            && l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("GET /readyz 503"))),
        "the request id answered is not on its access line"
    );
    let peer: Vec<&Value> = lines.iter().filter(|l| l["target"].as_str().is_some_and(|t| t.starts_with("casecast_actors::peer"))).collect();
    assert!(!peer.is_empty());
    for l in &peer {
        assert_eq!(span_field(l, "participant", "room").as_deref(), Some("demo"), "a participant's line without its room: {l}");
        assert!(span_field(l, "participant", "participant").is_some(), "a participant's line without its id: {l}");
    }
    drop(page);
    Ok(())
}
