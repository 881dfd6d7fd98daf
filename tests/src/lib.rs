//! The end-to-end test harness: a real `casecast` process on loopback ports, peers
//! that are not our own code path (Chromium through chromedriver, GStreamer's
//! webrtcbin through `casecast publish`), and bounded waiting on outcomes.
#![deny(missing_docs)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use casecast_signaling::{Role, TokenKey};

pub mod browser;
pub mod coturn;
pub mod gst_peer;
pub mod net;
pub mod orthanc;
pub mod relay;

/// The secret test servers sign tokens with.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The token test servers' `/metrics` is scraped with.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// The identifying strings of the test DICOM files (`tests/fixtures/make_dicom.py`),
/// lowercase: none may be found in anything casecast writes out or logs. The UIDs'
/// mark keeps part of their root, so that a request that took 4711.3 ms is not one.
pub const CASE_PHI: [&str; 10] =
    ["doe^john", "doe_john", "pid4711x", "19610412", "acc99887", "elsewhere", "house^gregory", "private note", "498.4711.3", "0123456789"];

/// The start every casecast token has (its header, `{"alg":"HS256","typ":"JWT"}`).
pub const TOKEN_START: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// What of the test servers' secrets, any token, or the fixtures' patient data a
/// text holds (empty: none).
pub fn leaks_in(text: &str) -> Vec<&'static str> {
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<&'static str> = CASE_PHI.into_iter().filter(|t| lower.contains(t)).collect();
    for (what, s) in [("a token", TOKEN_START), ("the token secret", SECRET), ("the scrape token", METRICS_TOKEN)] {
        if text.contains(s) {
            found.push(what);
        }
    }
    found
}

/// The kind and size of a PNG or JPEG picture, read from its header.
pub fn picture_size(bytes: &[u8]) -> Option<(&'static str, u32, u32)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 24 {
        let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        return Some(("png", be(16), be(20)));
    }
    if !bytes.starts_with(&[0xFF, 0xD8]) || !bytes.ends_with(&[0xFF, 0xD9]) {
        return None;
    }
    // Walk the markers to the start of frame.
    let mut at = 2;
    while at + 9 < bytes.len() {
        if bytes[at] != 0xFF {
            return None;
        }
        let marker = bytes[at + 1];
        let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC3) {
            let h = u16::from_be_bytes([bytes[at + 5], bytes[at + 6]]);
            let w = u16::from_be_bytes([bytes[at + 7], bytes[at + 8]]);
            return Some(("jpeg", w.into(), h.into()));
        }
        at += 2 + len;
    }
    None
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let t = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target");
    t.canonicalize().unwrap_or(t)
}

/// The `casecast` binary (built by `make test` before the tests run).
pub fn casecast_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CASECAST_BIN") {
        return PathBuf::from(p);
    }
    let p = target_dir().join("debug").join("casecast");
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first (make test does)", p.display());
    p
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free tcp port")
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free udp port")
}

/// A free UDP port with the next three free too: a server's media workers bind its
/// media port plus their number (one per core; up to four here). The port's number
/// must be free for TCP as well: ICE-TCP listens on it (a loopback connection the
/// harness made may hold it as its local port).
pub fn free_udp_ports() -> u16 {
    for _ in 0..100 {
        let port = free_udp_port();
        let held: Vec<_> = (0..4u16).filter_map(|i| port.checked_add(i)).filter_map(|p| UdpSocket::bind(("127.0.0.1", p)).ok()).collect();
        let tcp = TcpListener::bind(("0.0.0.0", port));
        if held.len() == 4 && tcp.is_ok() {
            return port;
        }
    }
    panic!("no four free UDP ports in a row")
}

/// Where a test saves the screenshot `name` that the documentation shows: `docs/name`
/// when `CASECAST_DOCS_SCREENSHOTS` is set, else `scratch/name`, so that a test run
/// leaves the repository's tree as it was.
pub fn screenshot_path(scratch: &Path, name: &str) -> PathBuf {
    match std::env::var_os("CASECAST_DOCS_SCREENSHOTS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name),
        None => scratch.join(name),
    }
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Makes one.
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let p = target_dir().join("e2e-tmp").join(format!("{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `f` returns `Some`, polling every 100 ms, at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let mut out = None;
    if casecast_loadtest::poll_until(limit, Duration::from_millis(100), || {
        out = f();
        out.is_some()
    }) {
        // poll_until returned true only after `out` was set.
        return Ok(out.expect("set when the poll succeeded"));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// A running `casecast serve` (or `demo`) process, killed on drop.
pub struct Server {
    child: Child,
    cmd: String,
    umask: Option<u32>,
    args: Vec<String>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The media port.
    pub udp_port: u16,
    /// Signs tokens the server accepts.
    pub key: TokenKey,
    log: PathBuf,
    _dir: TempDir,
}

impl Server {
    /// Starts `casecast serve` with extra flags.
    pub fn start(extra: &[&str]) -> Result<Server> {
        Self::spawn("serve", extra)
    }

    /// Starts `casecast demo` (room `demo`, test-pattern feed).
    pub fn demo(extra: &[&str]) -> Result<Server> {
        Self::spawn("demo", extra)
    }

    /// Starts `casecast demo` with the media port bound on the wildcard address, as
    /// `make run` does (one socket per advertised address).
    pub fn demo_on_wildcard(extra: &[&str]) -> Result<Server> {
        Self::spawn_bound("demo", "0.0.0.0", extra)
    }

    /// Starts `casecast serve` from a shell whose umask is `umask` (the server must
    /// keep its files private whatever it was given).
    pub fn start_with_umask(umask: u32, extra: &[&str]) -> Result<Server> {
        Self::spawn_full("serve", "127.0.0.1", "127.0.0.1", Some(umask), extra)
    }

    /// Starts `casecast serve` listening, and offering its media, on `ip` alone
    /// (a real address, not loopback).
    pub fn start_at(ip: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn_full("serve", ip, ip, None, extra)
    }

    /// Starts `casecast serve` listening on `ip`, its media socket bound on
    /// `media_ip` but offered on `ip` (as behind a NAT, or a relay in between:
    /// [`relay::JitterRelay`]).
    pub fn start_media_on(ip: &str, media_ip: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn_full("serve", ip, media_ip, None, extra)
    }

    /// Starts `casecast demo` listening, and offering its media, on `ip` alone
    /// (a real address, not loopback).
    pub fn demo_at(ip: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn_full("demo", ip, ip, None, extra)
    }

    fn spawn(cmd: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn_bound(cmd, "127.0.0.1", extra)
    }

    fn spawn_bound(cmd: &str, udp_host: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn_full(cmd, "127.0.0.1", udp_host, None, extra)
    }

    fn spawn_full(cmd: &str, host: &str, udp_host: &str, umask: Option<u32>, extra: &[&str]) -> Result<Server> {
        let dir = TempDir::new("server");
        let http = free_tcp_port();
        let udp = free_udp_ports();
        let log = dir.0.join("server.log");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("{host}:{http}"),
            "--udp-bind".into(),
            format!("{udp_host}:{udp}"),
            "--advertise".into(),
            host.into(),
            "--secret".into(),
            SECRET.into(),
            "--data-dir".into(),
            dir.0.display().to_string(),
            "--metrics-token".into(),
            METRICS_TOKEN.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Self::launch(cmd, &args, &log, umask)?;
        let mut s = Server {
            child,
            cmd: cmd.to_string(),
            umask,
            args,
            url: format!("http://{host}:{http}"),
            udp_port: udp,
            key: TokenKey::new(SECRET),
            log,
            _dir: dir,
        };
        s.wait_ready()?;
        Ok(s)
    }

    fn launch(cmd: &str, args: &[String], log: &Path, umask: Option<u32>) -> Result<Child> {
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut command = match umask {
            // The shell sets the umask, then becomes the server.
            Some(m) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("umask {m:03o}; exec \"$0\" \"$@\"")).arg(casecast_bin());
                c
            }
            None => Command::new(casecast_bin()),
        };
        command
            .arg(cmd)
            .args(args)
            .env("RUST_LOG", "info,casecast=debug,casecast_actors=debug")
            // The demo feed burns in the local time; the latency test reads it as UTC.
            .env("TZ", "UTC")
            // Standard output is the demo's banner (links with tokens, for the person
            // who ran it), not the log: it is kept apart, and the log is checked.
            .stdout(std::fs::OpenOptions::new().create(true).append(true).open(log.with_extension("out"))?)
            .stderr(logf)
            .spawn()
            .context("cannot start casecast")
    }

    /// Kills the process (no clean shutdown, as in a crash or a lost machine) and
    /// starts it again on the same ports.
    pub fn crash_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::launch(&self.cmd, &self.args, &self.log, self.umask)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let s = self;
        let url = s.url.clone();
        let ok = wait_for("the server to answer /healthz", Duration::from_secs(30), || {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Some(Err(anyhow::anyhow!("casecast exited with {status}")));
            }
            http_get(&format!("{url}/healthz")).ok().filter(|(c, _)| *c == 200).map(|_| Ok(()))
        });
        if let Err(e) = ok.and_then(|r| r) {
            bail!("{e}\n--- server log ---\n{}", s.log_text());
        }
        Ok(())
    }

    /// Waits (up to a minute) until the demo's feed publishes in the room.
    pub fn wait_for_feed(&self) -> Result<()> {
        wait_for("the demo feed to publish", Duration::from_secs(60), || {
            (self.metric("casecast_participants{role=\"encoder\"}") == Some(1.0)).then_some(())
        })
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self._dir.0
    }

    /// A token for `room`.
    pub fn token(&self, room: &str, role: Role, name: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        self.key.mint(room, role, name, now, 3600)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics exposition, as Prometheus scrapes it (with the scrape token).
    pub fn metrics_text(&self) -> Option<String> {
        let auth = format!("Bearer {METRICS_TOKEN}");
        let (status, _, body) = http_request("GET", &format!("{}/metrics", self.url), &[("Authorization", &auth)], None).ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    }

    /// One metric's value (a name with labels, exactly as printed), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics_text()?, name)
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident memory now, MiB.
    pub fn rss_mib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
        Some(kb / 1024)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process cleanly (SIGTERM, as a service manager does for an upgrade)
    /// and starts it again on the same ports and data.
    pub fn restart(&mut self) -> Result<()> {
        let status = self.terminate()?;
        anyhow::ensure!(status.success(), "casecast exited with {status} on SIGTERM");
        self.child = Self::launch(&self.cmd, &self.args, &self.log, self.umask)?;
        self.wait_ready()
    }

    /// Sends the server a signal (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) -> Result<()> {
        let ok = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status()?.success();
        anyhow::ensure!(ok, "cannot send SIG{name} to the server");
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let child = &mut self.child;
        wait_for("the server to exit", Duration::from_secs(15), || child.try_wait().ok().flatten())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Always written: the test harness shows a test's output only when it fails,
        // whether by a panic or by an error returned.
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(300)..].join("\n");
        eprintln!("--- server log (last {} of {} lines) ---\n{tail}", lines.len().min(300), lines.len());
        // Every test's server log is checked: no token, secret or patient datum in
        // it, whatever the test did (unless the test failed already).
        let leaks = leaks_in(&log);
        if !leaks.is_empty() && !std::thread::panicking() {
            panic!("the server's log holds {leaks:?}");
        }
    }
}

/// A child process killed on drop (a publisher, a browser driver...).
pub struct Proc(pub Child);

impl Proc {
    /// SIGTERM, then wait (bounded) for the exit.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        let child = &mut self.0;
        wait_for("the process to exit", Duration::from_secs(15), || child.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `casecast publish` (GStreamer webrtcbin) against a WHIP URL.
pub fn gst_publisher(whip_url: &str, token: &str, extra: &[&str]) -> Result<Proc> {
    let child = Command::new(casecast_bin())
        .args(["publish", "--whip", whip_url, "--token", token, "--duration", "120s"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start casecast publish")?;
    Ok(Proc(child))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// GET: (status, body).
/// One metric's value in a Prometheus text exposition (a name with labels, exactly
/// as printed), if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// GET `url`: status and body.
pub fn http_get(url: &str) -> Result<(u16, String)> {
    let mut r = agent().get(url).call()?;
    Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
}

/// A response: status, headers, body.
pub type Response = (u16, Vec<(String, String)>, String);

/// POST with headers.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body)?;
    let hs = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    Ok((r.status().as_u16(), hs, r.body_mut().read_to_string()?))
}

/// DELETE with headers: status.
pub fn http_delete(url: &str, headers: &[(&str, &str)]) -> Result<u16> {
    let mut req = agent().delete(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Ok(req.call()?.status().as_u16())
}

/// An answer: status, headers (names lower case), body bytes.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Any request: status, headers (names lower case), body bytes.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Answer> {
    request_with(agent(), method, url, headers, body)
}

/// As [`http_request`], answering a redirect itself instead of following it.
pub fn http_request_unfollowed(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Answer> {
    let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).http_status_as_error(false).max_redirects(0).build().new_agent();
    request_with(agent, method, url, headers, body)
}

fn request_with(agent: ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Answer> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.map(<[u8]>::to_vec).unwrap_or_default())?;
    let mut r = agent.run(req)?;
    let hs = r.headers().iter().map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string())).collect();
    Ok((r.status().as_u16(), hs, r.body_mut().with_config().limit(1 << 30).read_to_vec()?))
}

/// A header's value, if present (`name` lower case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A PostgreSQL server of Debian's, in a fresh cluster on a loopback port, run as the
/// `postgres` user (the server refuses root); stopped and removed on drop.
pub struct Postgres {
    /// `postgres://…` for the cluster's superuser.
    pub url: String,
    _server: Proc,
    _dir: TempDir,
}

impl Postgres {
    /// Makes the cluster and starts its server.
    pub fn start() -> Result<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL is not installed (scripts/install-deps.sh test)")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .context("no initdb under /usr/lib/postgresql")?;
        let dir = TempDir::new("postgres");
        let data = dir.0.join("data");
        std::fs::create_dir_all(&data)?;
        let chown = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir.0).status()?;
        anyhow::ensure!(chown.success(), "cannot give the cluster's folder to the postgres user");
        let init = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "casecast", "-D"])
            .arg(&data)
            .output()?;
        anyhow::ensure!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let port = free_tcp_port();
        let server = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start postgres")?;
        let server = Proc(server);
        wait_for("PostgreSQL to listen", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).ok())?;
        Ok(Postgres { url: format!("postgres://casecast@127.0.0.1:{port}/postgres"), _server: server, _dir: dir })
    }
}

/// A Redis server of Debian's (`redis-server`), on a loopback port, keeping nothing
/// on disk; stopped on drop.
pub struct Redis {
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    _server: Proc,
}

impl Redis {
    /// Starts it.
    pub fn start() -> Result<Redis> {
        let port = free_tcp_port();
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (scripts/install-deps.sh test)")?;
        let server = Proc(server);
        wait_for("Redis to listen", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).ok())?;
        Ok(Redis { url: format!("redis://127.0.0.1:{port}/0"), _server: server })
    }
}

/// moto's stand-in AWS endpoint (`moto_server` from PyPI, installed by
/// `scripts/install-deps.sh test` into `target/test-venv`), on a loopback port.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _server: Proc,
}

impl Moto {
    /// Starts it.
    pub fn start() -> Result<Moto> {
        let bin = target_dir().join("test-venv/bin/moto_server");
        let port = free_tcp_port();
        let server = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} (scripts/install-deps.sh test)", bin.display()))?;
        let server = Proc(server);
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for("moto to answer", Duration::from_secs(30), || http_get(&format!("{endpoint}/moto-api/")).ok())?;
        Ok(Moto { endpoint, _server: server })
    }

    /// Starts it as the cases' S3: with `bucket` made, and moto's dummy credentials
    /// and region in this process's environment, for the servers and workers it
    /// starts to inherit. (nextest runs each test in a process of its own.)
    pub fn start_s3(bucket: &str) -> Result<Moto> {
        let moto = Moto::start()?;
        let (s, _, body) = http_request("PUT", &format!("{}/{bucket}", moto.endpoint), &[], None)?;
        anyhow::ensure!(s == 200, "create the bucket: {s} {}", String::from_utf8_lossy(&body));
        // SAFETY: each test is a process of its own, and sets these before it starts
        // any thread that reads the environment.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
        }
        Ok(moto)
    }
}
