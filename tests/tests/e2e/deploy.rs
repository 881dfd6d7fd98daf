//! Deployment: the Debian package (`cargo deb`, `server/Cargo.toml`) installs on
//! this machine, the command line of its systemd unit runs the server as the unit
//! would (its user, capabilities, environment, state directory, umask and file
//! limit; there is no systemd here to start it), the server becomes ready, and
//! removing then purging the package leaves the machine as it was.
//!
//! Only the unit's sandboxing (ProtectSystem, SystemCallFilter, MemoryDenyWriteExecute
//! …) is not applied, which needs systemd itself: `systemd-analyze` checks the unit
//! instead (docs/deploy.md, "systemd").

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use casecast_tests::*;

const PACKAGE: &str = "casecast";
/// What the unit runs as, and where it keeps state (the config's `data_dir`).
const STATE_DIR: &str = "/var/lib/casecast";
/// Where the package puts things the test expects gone after a purge.
const INSTALLED_PATHS: &[&str] =
    &["/usr/bin/casecast", "/etc/casecast", "/usr/share/casecast", "/usr/lib/systemd/system/casecast.service", STATE_DIR, "/var/cache/casecast"];

/// Runs a command to its end; its output, or an error with it.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    Ok(text)
}

/// dpkg's view: is the package installed (or half-installed, or its config left)?
fn package_known() -> bool {
    Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", PACKAGE]).output().is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

fn user_exists(name: &str) -> bool {
    Command::new("getent").args(["passwd", name]).output().is_ok_and(|o| o.status.success())
}

/// The package this test installed; purged on drop, whatever happened before.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Result<Installed> {
        let guard = Installed;
        run(Command::new("dpkg").arg("-i").arg(deb)).context("the package does not install")?;
        Ok(guard)
    }

    /// `dpkg --purge`: the package, its configuration, its user and its state.
    fn purge(self) -> Result<()> {
        std::mem::forget(self);
        run(Command::new("dpkg").args(["--purge", PACKAGE])).map(|_| ())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).stdout(Stdio::null()).status();
    }
}

/// What the test needs of a `[Service]` section: each key's values in order.
struct Unit(HashMap<String, Vec<String>>);

impl Unit {
    fn read(path: &Path) -> Result<Unit> {
        let text = std::fs::read_to_string(path).with_context(|| format!("no unit at {}", path.display()))?;
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        let mut in_service = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(['#', ';'])) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if let (true, Some((k, v))) = (in_service, line.split_once('=')) {
                keys.entry(k.trim().to_string()).or_default().push(v.trim().to_string());
            }
        }
        Ok(Unit(keys))
    }

    /// The last value of `key` (systemd's rule for single-valued keys).
    fn one(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.last()).map(String::as_str)
    }

    /// `ExecStart=`, split into words (the unit's has no quoting), its prefixes
    /// (`-`, `@`, `+`, `!`, `:`) refused: they would change how it runs.
    fn exec_start(&self) -> Result<Vec<String>> {
        let line = self.one("ExecStart").context("the unit has no ExecStart")?;
        ensure!(!line.starts_with(['-', '@', '+', '!', ':']) && !line.contains(['"', '\'', '$', '%']), "ExecStart {line:?}: the test runs only a plain command line");
        Ok(line.split_whitespace().map(str::to_string).collect())
    }

    /// `Environment=` assignments (unquoted `KEY=value` words).
    fn environment(&self) -> Vec<(String, String)> {
        let lines = self.0.get("Environment").map(Vec::as_slice).unwrap_or_default();
        lines.iter().flat_map(|l| l.split_whitespace()).filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// `CAP_NET_BIND_SERVICE CAP_X` as setpriv says it: `-all,+net_bind_service,+x`.
    fn caps(&self, key: &str) -> String {
        let named: Vec<String> =
            self.one(key).unwrap_or_default().split_whitespace().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase())).collect();
        std::iter::once("-all".to_string()).chain(named).collect::<Vec<_>>().join(",")
    }
}

/// A free TCP port below 1024 on loopback: only the unit's CAP_NET_BIND_SERVICE
/// lets its unprivileged user listen there (as on 443).
fn free_privileged_port() -> Result<u16> {
    (900..1024).rev().find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).context("no free port from 900 to 1023")
}

#[test]
fn the_debian_package_installs_runs_its_unit_and_purges_clean() -> Result<()> {
    let started = Instant::now();
    ensure!(run(Command::new("id").arg("-u"))?.trim() == "0", "this test installs a Debian package: it runs as root");
    // Never over a real installation: purging at the end would delete its data.
    ensure!(
        !package_known() && !user_exists(PACKAGE) && !Path::new(STATE_DIR).exists(),
        "casecast is already installed here (package, user or {STATE_DIR}); this test installs and purges it. \
         If it is left from an interrupted run of this test: dpkg --purge casecast"
    );
    let dir = TempDir::new("deploy");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(casecast_bin().exists());

    // The .deb of the debug binary `make test` built: no build, stripped, fast
    // compression (seconds; the release package operators make is `cargo deb -p casecast`).
    let deb = dir.0.join("casecast.deb");
    let t = Instant::now();
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&workspace)
        .args(["deb", "-p", "casecast", "--profile", "dev", "--no-build", "--strip", "--no-separate-debug-symbols", "--no-dbgsym", "--fast", "-q", "-o"])
        .arg(&deb))
    .context("cargo deb (installed by scripts/install-deps.sh test)")?;
    eprintln!("cargo deb: {:.1} s, {} MB", t.elapsed().as_secs_f64(), std::fs::metadata(&deb)?.len() >> 20);

    let installed = Installed::install(&deb)?;
    assert!(user_exists(PACKAGE), "the package makes the casecast system user");
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]))?;
    assert!(conffiles.contains("/etc/casecast/casecast.toml"), "the configuration is a conffile (kept over upgrades): {conffiles}");
    assert_eq!(
        std::fs::read_to_string("/etc/casecast/casecast.toml")?,
        std::fs::read_to_string(workspace.join("deploy/casecast.toml"))?,
        "the installed configuration is deploy/casecast.toml"
    );

    // The unit as systemd reads it: no unknown keys or bad values (printed, not
    // failed, by verify), its command exists, and its sandbox scores as systemd's
    // own assessment calls OK (exposure at most 2.0 of 10).
    let unit_path = PathBuf::from("/usr/lib/systemd/system/casecast.service");
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit_path).output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    let security = Command::new("systemd-analyze").args(["security", "--offline=yes", "--threshold=20"]).arg(&unit_path).output()?;
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
    assert!(security.status.success(), "the unit's sandbox is looser than exposure 2.0: {exposure}\n{report}");
    eprintln!("{}", exposure.trim());

    // Its ExecStart, run as the unit would: its user and group, its capabilities
    // (bounding set, ambient), no new privileges, its environment only, its umask,
    // its file limit, its working directory, and its state and cache directories
    // made as systemd makes them. Ports: free ones, through the environment (the
    // installed configuration stays as it is).
    let unit = Unit::read(&unit_path)?;
    let user = unit.one("User").context("the unit names no User")?.to_string();
    let group = unit.one("Group").unwrap_or(&user).to_string();
    for (key, root) in [("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache")] {
        let name = unit.one(key).with_context(|| format!("the unit has no {key}"))?;
        let mode = unit.one(&format!("{key}Mode")).unwrap_or("0755");
        run(Command::new("install").args(["-d", "-o", &user, "-g", &group, "-m", mode]).arg(Path::new(root).join(name)))?;
    }
    let exec = unit.exec_start()?;
    assert_eq!(exec[0], "/usr/bin/casecast");
    let http = free_privileged_port()?;
    let udp = free_udp_ports();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), STATE_DIR.into()),
        ("USER".into(), user.clone()),
        ("LOGNAME".into(), user.clone()),
    ];
    env.extend(unit.environment());
    env.extend([
        ("CASECAST_LISTEN".into(), format!("127.0.0.1:{http}")),
        ("CASECAST_TLS_LISTEN".into(), format!("127.0.0.1:{}", free_tcp_port())),
        ("CASECAST_UDP_BIND".into(), format!("127.0.0.1:{udp}")),
        ("CASECAST_ADVERTISE".into(), "127.0.0.1".into()),
    ]);
    let umask = unit.one("UMask").unwrap_or("0022");
    // systemd raises the file limit to the unit's; a test machine in a container may
    // not go past its own hard limit (20000 here), so the lower of the two.
    let wanted: u64 = unit.one("LimitNOFILE").context("the unit sets no LimitNOFILE")?.parse()?;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let hard: u64 = limits.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(4)).and_then(|v| v.parse().ok()).unwrap_or(wanted);
    let nofile = wanted.min(hard);
    let log = dir.0.join("server.log");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}")).arg("--").arg("setpriv");
    cmd.args([format!("--reuid={user}"), format!("--regid={group}"), "--init-groups".into()]);
    if unit.one("NoNewPrivileges") == Some("yes") {
        cmd.arg("--no-new-privs");
    }
    cmd.arg(format!("--bounding-set={}", unit.caps("CapabilityBoundingSet")))
        .arg(format!("--inh-caps={}", unit.caps("AmbientCapabilities")))
        .arg(format!("--ambient-caps={}", unit.caps("AmbientCapabilities")))
        .args(["sh", "-c", &format!("umask {umask} && exec \"$@\""), "sh"])
        .args(&exec)
        .env_clear()
        .envs(env)
        .current_dir(unit.one("WorkingDirectory").unwrap_or("/"))
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.0.join("server.err"))?);
    let mut server = Proc(cmd.spawn().context("cannot run the unit's command")?);
    let url = format!("http://127.0.0.1:{http}");
    let log_text = || {
        format!("{}{}", std::fs::read_to_string(&log).unwrap_or_default(), std::fs::read_to_string(dir.0.join("server.err")).unwrap_or_default())
    };

    // The load balancer's and the container's question: ready (database, object
    // store, media sockets; no Redis configured).
    let child = &mut server.0;
    let ready = wait_for("the unit's server to answer /readyz with 200", Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(anyhow::anyhow!("the unit's command exited with {status}")));
        }
        http_get(&format!("{url}/readyz")).ok().filter(|(code, _)| *code == 200).map(|_| Ok(()))
    });
    if let Err(e) = ready.and_then(|r| r) {
        bail!("{e}\n--- server log ---\n{}", log_text());
    }

    // It runs as the unit's user, not root, and holds only the capability it was given.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id()))?;
    let uid = run(Command::new("id").args(["-u", &user]))?.trim().to_string();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(field("Uid:"), vec![uid.as_str(); 4], "the server runs as {user}");
    assert_eq!(field("CapEff:"), vec!["0000000000000400"], "only CAP_NET_BIND_SERVICE");

    // The token secret it made is its own, private, in the state directory.
    let secret = std::fs::metadata(Path::new(STATE_DIR).join("secret")).context("no token secret in the state directory")?;
    assert_eq!(secret.uid().to_string(), uid);
    assert_eq!(secret.permissions().mode() & 0o777, 0o600, "the token secret is private");

    // The installed web pages are the ones the server serves.
    let (code, served) = http_get(&format!("{url}/assets/room.js"))?;
    assert_eq!(code, 200);
    assert_eq!(served, std::fs::read_to_string("/usr/share/casecast/web/room.js")?, "/usr/share/casecast/web is what the server serves");

    // systemctl stop: SIGTERM, and a clean exit.
    let exited = server.terminate()?;
    assert!(exited.success(), "the server exits cleanly on SIGTERM: {exited}\n{}", log_text());
    assert_eq!(leaks_in(&log_text()), Vec::<&str>::new(), "the installed server's log");

    // Removed: the program and the unit go, the configuration, the user and the
    // state stay (a reinstall finds its secret and data).
    run(Command::new("dpkg").args(["--remove", PACKAGE]))?;
    assert!(!Path::new("/usr/bin/casecast").exists() && !unit_path.exists());
    assert!(Path::new("/etc/casecast/casecast.toml").exists() && user_exists(PACKAGE) && Path::new(STATE_DIR).join("secret").exists());

    // Purged: nothing of it is left.
    installed.purge()?;
    assert!(!package_known(), "dpkg still knows casecast after the purge");
    assert!(!user_exists(PACKAGE), "the casecast user is left after the purge");
    for p in INSTALLED_PATHS {
        assert!(!Path::new(p).exists(), "{p} is left after the purge");
    }
    let leftovers = run(Command::new("find").args(["/etc/systemd", "/var/lib/systemd", "-name", "*casecast*"]))?;
    assert!(leftovers.trim().is_empty(), "systemd links left after the purge: {leftovers}");
    eprintln!("installed, ran, removed and purged in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
