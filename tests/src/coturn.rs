//! coturn (Debian's `coturn`), configured as `docs/deploy.md` tells a site to: the
//! TURN REST API's shared secret, TLS, and relaying only to the SFU's media address.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Proc, TempDir, free_tcp_port, wait_for};

/// One `turnserver` process; ended on drop.
pub struct Coturn {
    _proc: Proc,
    /// Its TURN-over-TLS port.
    pub tls_port: u16,
    ip: String,
    secret: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Coturn {
    /// Starts coturn on `ip` with only a TLS listener (a network that lets only TLS
    /// through reaches nothing else), credentials checked against `secret`, relaying
    /// to `peer` (the SFU's media address) and nowhere else.
    pub fn start_tls(ip: &str, secret: &str, peer: &str) -> Result<Coturn> {
        let dir = TempDir::new("coturn");
        let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=turn.casecast.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("cannot run openssl")?;
        if !out.status.success() {
            bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
        }
        let tls_port = free_tcp_port();
        let plain_port = free_tcp_port();
        let log = dir.0.join("turn.log");
        let logf = std::fs::File::create(&log)?;
        let child = Command::new("turnserver")
            .args(["-n", "--no-cli", "--log-file=stdout", "--simple-log"])
            .arg(format!("--listening-ip={ip}"))
            .arg(format!("--relay-ip={ip}"))
            .arg(format!("--listening-port={plain_port}"))
            .arg(format!("--tls-listening-port={tls_port}"))
            .args(["--no-udp", "--no-tcp", "--no-dtls"])
            .args(["--use-auth-secret", &format!("--static-auth-secret={secret}"), "--realm=casecast.test"])
            .arg("--cert")
            .arg(&cert)
            .arg("--pkey")
            .arg(&key)
            .args(["--denied-peer-ip=0.0.0.0-255.255.255.255", &format!("--allowed-peer-ip={peer}")])
            .args(["--no-multicast-peers", "--user-quota=4"])
            .arg(format!("--pidfile={}", dir.0.join("turnserver.pid").display()))
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("cannot start turnserver (install coturn: scripts/install-deps.sh test)")?;
        let proc = Proc(child);
        let addr = format!("{ip}:{tls_port}");
        wait_for("coturn's TLS listener", Duration::from_secs(20), || TcpStream::connect(&addr).ok())?;
        Ok(Coturn { _proc: proc, tls_port, ip: ip.to_string(), secret: secret.to_string(), log, _dir: dir })
    }

    /// What coturn logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether a TURN client with credentials from the shared secret (coturn's own
    /// `turnutils_uclient`, over TLS) may relay to `peer`: false when coturn refuses
    /// the peer (403 Forbidden IP).
    pub fn relays_to(&self, peer: &str) -> Result<bool> {
        let out = Command::new("timeout")
            .args(["15", "turnutils_uclient", "-t", "-S", "-n", "1", "-m", "1", "-l", "100"])
            .args(["-p", &self.tls_port.to_string(), "-W", &self.secret, "-e", peer, "-r", "9", &self.ip])
            .stdin(Stdio::null())
            .output()
            .context("cannot run turnutils_uclient (coturn)")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        if text.contains("403") {
            return Ok(false);
        }
        if text.contains("tot_send_msgs=1") || text.contains("tot_send_msgs=2") {
            return Ok(true);
        }
        bail!("turnutils_uclient neither relayed nor was refused:\n{text}")
    }
}
