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
        for end in [made.name.as_str(), peer.as_str()] {
            quiet_ipv6(end)?;
        }
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

/// No IPv6 link-local address on a new interface: it would appear a second or two
/// after the link comes up (once duplicate address detection is done), and a
/// browser running then takes it for a network change (`ERR_NETWORK_CHANGED`) and
/// aborts what it was loading.
fn quiet_ipv6(dev: &str) -> Result<()> {
    ip_cmd(&["link", "set", "dev", dev, "addrgenmode", "none"])
}

fn tc(args: &[&str]) -> Result<()> {
    let out = Command::new("tc").args(args).output().context("cannot run tc (iproute2)")?;
    if !out.status.success() {
        bail!("tc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn ip_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {} (the network tests need root)", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A network namespace of the test's own, joined to this machine by a veth pair:
/// the machine's end holds `host` (where the server listens for it), the
/// namespace's end `ip`, and the namespace's default route leads to `host`. What
/// runs in it (`command`) has no loopback path to the server: it sees the server as
/// a commentator's computer sees a server on another network. Removed when dropped.
pub struct Namespace {
    /// The namespace's name (`ip netns`).
    pub name: String,
    link: String,
    /// The machine's address on the link (10.214.x.(4n+1)).
    pub host: Ipv4Addr,
    /// The namespace's address (10.214.x.(4n+2)).
    pub ip: Ipv4Addr,
}

impl Namespace {
    /// Makes the namespace, its link and its addresses.
    pub fn new() -> Result<Namespace> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 60;
        let pid = std::process::id();
        let name = format!("ccns{}x{n}", pid % 100_000);
        let link = format!("ccn{}x{n}", pid % 100_000);
        let third = (pid % 250) as u8 + 1;
        let host = Ipv4Addr::new(10, 214, third, 4 * n as u8 + 1);
        let ip = Ipv4Addr::new(10, 214, third, 4 * n as u8 + 2);
        ip_cmd(&["netns", "add", &name])?;
        let made = Namespace { name, link, host, ip };
        let inner = format!("{}p", made.link);
        ip_cmd(&["link", "add", &made.link, "type", "veth", "peer", "name", &inner])?;
        quiet_ipv6(&made.link)?;
        ip_cmd(&["link", "set", &inner, "netns", &made.name])?;
        // (Set after the move: a move to another namespace resets it.)
        made.ip_in(&["link", "set", "dev", &inner, "addrgenmode", "none"])?;
        ip_cmd(&["addr", "add", &format!("{host}/30"), "dev", &made.link])?;
        ip_cmd(&["link", "set", &made.link, "up"])?;
        made.ip_in(&["addr", "add", &format!("{ip}/30"), "dev", &inner])?;
        made.ip_in(&["link", "set", &inner, "up"])?;
        made.ip_in(&["link", "set", "lo", "up"])?;
        made.ip_in(&["route", "add", "default", "via", &host.to_string()])?;
        Ok(made)
    }

    fn ip_in(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip_cmd(&all)
    }

    /// A command that runs inside the namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's own).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Drops every UDP datagram into and out of the namespace (nftables), as a
    /// hospital firewall that lets only TCP through.
    pub fn block_udp(&self) -> Result<()> {
        self.nft("table inet casecast_test {
  chain out { type filter hook output priority 0; policy accept; meta l4proto udp drop; }
  chain in { type filter hook input priority 0; policy accept; meta l4proto udp drop; }
}")
    }
}

impl Namespace {
    /// Limits what reaches the namespace (its downlink) to `kbit` kbit/s, as a
    /// home line or a hotspot would (`tbf` on the machine's end of the link;
    /// this kernel has no netem).
    pub fn limit_downlink(&self, kbit: u32) -> Result<()> {
        // Bursts of two full packets at most (a line's shaper passes little
        // faster than its rate), and at most 200 ms of queue.
        tc(&["qdisc", "replace", "dev", &self.link, "root", "tbf", "rate", &format!("{kbit}kbit"), "burst", "3028", "latency", "200ms"])
    }

    /// Lifts the limit of [`limit_downlink`](Self::limit_downlink).
    pub fn unlimit_downlink(&self) -> Result<()> {
        tc(&["qdisc", "del", "dev", &self.link, "root"])
    }

    /// Drops `percent` % of the UDP datagrams into and out of the namespace, at
    /// random (nftables; this kernel has no netem), as a lossy link would.
    pub fn lose_udp(&self, percent: u32) -> Result<()> {
        self.nft(&format!(
            "table inet casecast_loss {{
  chain out {{ type filter hook output priority 0; policy accept; meta l4proto udp numgen random mod 100 lt {percent} counter drop; }}
  chain in {{ type filter hook input priority 0; policy accept; meta l4proto udp numgen random mod 100 lt {percent} counter drop; }}
}}"
        ))
    }

    /// How many datagrams [`lose_udp`](Self::lose_udp) has dropped so far.
    pub fn udp_lost(&self) -> Result<u64> {
        let out = self.command("nft").args(["list", "table", "inet", "casecast_loss"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum())
    }

    /// Drops everything into and out of the namespace for `how_long` (a dead zone:
    /// Wi-Fi that drops and comes back), then lets it through again.
    pub fn cut_for(&self, how_long: std::time::Duration) -> Result<()> {
        self.nft("table inet casecast_cut {
  chain out { type filter hook output priority -10; policy drop; oif lo accept; }
  chain in { type filter hook input priority -10; policy drop; iif lo accept; }
}")?;
        // The outage's length is the scenario, not a wait for an outcome; nothing
        // can be asked of the page meanwhile (its driver is inside the cut).
        std::thread::sleep(how_long);
        self.nft("delete table inet casecast_cut")
    }

    /// Moves the namespace to a new address (another network: a phone's hotspot
    /// instead of the Wi-Fi): the new one is added, routes follow it, the old one is
    /// removed. Answers the new address.
    pub fn move_address(&mut self) -> Result<Ipv4Addr> {
        let inner = format!("{}p", self.link);
        let old = self.ip;
        let o = old.octets();
        let new = Ipv4Addr::new(10, 215, o[2], o[3]);
        let (host, news) = (self.host.to_string(), new.to_string());
        self.ip_in(&["addr", "add", &format!("{news}/32"), "dev", &inner])?;
        ip_cmd(&["route", "add", &format!("{news}/32"), "dev", &self.link])?;
        self.ip_in(&["route", "add", &format!("{host}/32"), "dev", &inner, "src", &news])?;
        self.ip_in(&["route", "replace", "default", "via", &host, "dev", &inner, "src", &news])?;
        self.ip_in(&["addr", "del", &format!("{old}/30"), "dev", &inner])?;
        self.ip = new;
        Ok(new)
    }

    fn nft(&self, rules: &str) -> Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run nft (install nftables: scripts/install-deps.sh test)")?;
        use std::io::Write;
        child.stdin.take().context("nft stdin")?.write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Whatever still runs inside (a browser) is ended with it.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
