//! Networks of the test's own: addresses that are not loopback, made with `ip`
//! (the tests run as root, as CI does) and removed when dropped.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// A veth pair (this kernel has no dummy interfaces) whose first end holds one
/// private, non-loopback address of this machine.
pub struct LocalAddress {
    name: String,
    /// The address (10.213.x.y/32).
    pub ip: Ipv4Addr,
}

impl LocalAddress {
    /// Makes the pair with a fresh address (unique per process and call).
    pub fn new() -> Result<LocalAddress> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("ccv{}x{n}", pid % 100_000);
        let ip = Ipv4Addr::new(10, 213, (pid % 250) as u8 + 1, (n % 250) as u8 + 1);
        let peer = format!("{name}p");
        ip_cmd(&["link", "add", &name, "type", "veth", "peer", "name", &peer])?;
        let made = LocalAddress { name, ip };
        ip_cmd(&["addr", "add", &format!("{ip}/32"), "dev", &made.name])?;
        ip_cmd(&["link", "set", &made.name, "up"])?;
        ip_cmd(&["link", "set", &peer, "up"])?;
        Ok(made)
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.name]).status();
    }
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {} (the network tests need root)", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
