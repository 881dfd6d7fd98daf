//! Configuration: defaults, then an optional TOML file, then `CASECAST_*` environment
//! variables, then command-line flags (clap reads both of the last two, flags first).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// The server's configuration, as in `casecast.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP and WebSocket listen address.
    pub listen: SocketAddr,
    /// The URL users reach the server at, for printed links.
    pub public_url: Option<String>,
    /// UDP media socket bind address.
    pub udp_bind: SocketAddr,
    /// Addresses given to peers as ICE candidates; "auto" = this machine's
    /// IPv4 addresses (LAN first) and loopback.
    pub advertise: Vec<String>,
    /// Token secret; default: generated once and kept in `<data_dir>/secret`.
    pub secret: Option<String>,
    /// Where state is kept.
    pub data_dir: PathBuf,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Seconds a new participant has to connect its media.
    pub connect_timeout_secs: u64,
    /// Default room policy.
    pub room: RoomConfig,
    /// The program's HLS output.
    pub program: ProgramConfig,
}

/// The program's HLS output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramConfig {
    /// `quality` (6 s segments) or `low-latency` (2 s segments).
    pub preset: String,
    /// How far back viewers can go, seconds.
    pub dvr_window_secs: u32,
    /// RTMP receivers the program is pushed to (primary, backup).
    pub rtmp: Vec<String>,
    /// Record the program as MP4 files under `<data_dir>/recordings/<room>/`.
    pub recording: bool,
    /// Length of one recorded file, seconds.
    pub recording_split_secs: u32,
    /// Program width in pixels.
    pub width: u32,
    /// Program height in pixels.
    pub height: u32,
    /// Program frames per second.
    pub fps: u32,
    /// Program video bitrate, bits/s.
    pub video_bitrate: u32,
    /// Publish the program back into the room as the monitor feed.
    pub monitor: bool,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        let o = casecast_actors::program::ProgramOptions::default();
        ProgramConfig {
            preset: "quality".into(),
            dvr_window_secs: 7200,
            rtmp: Vec::new(),
            recording: true,
            recording_split_secs: 600,
            width: o.width,
            height: o.height,
            fps: o.fps,
            video_bitrate: o.video_bitrate,
            monitor: o.monitor,
        }
    }
}

/// Room defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomConfig {
    /// Commentators may send video (false: audio only).
    pub commentator_video: bool,
    /// Commentator video frame-rate ceiling.
    pub commentator_max_fps: u32,
    /// Commentator video bitrate ceiling, bits/s.
    pub commentator_max_bitrate: u32,
    /// Most participants in one room.
    pub max_participants: usize,
    /// Least milliseconds between keyframe requests to one track.
    pub keyframe_interval_ms: u64,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            commentator_video: true,
            commentator_max_fps: 5,
            commentator_max_bitrate: 300_000,
            max_participants: 200,
            keyframe_interval_ms: 500,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            udp_bind: SocketAddr::from(([0, 0, 0, 0], 8081)),
            advertise: vec!["auto".into()],
            secret: None,
            data_dir: PathBuf::from("data"),
            log_format: "text".into(),
            connect_timeout_secs: 20,
            room: RoomConfig::default(),
            program: ProgramConfig::default(),
        }
    }
}

/// Flags (and their `CASECAST_*` variables) shared by `serve` and `demo`.
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "CASECAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP/WebSocket listen address.
    #[arg(long, env = "CASECAST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Public base URL for printed links (default: from the listen address).
    #[arg(long, env = "CASECAST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// UDP media bind address.
    #[arg(long, env = "CASECAST_UDP_BIND")]
    pub udp_bind: Option<SocketAddr>,
    /// ICE candidate addresses, comma-separated, or "auto".
    #[arg(long, env = "CASECAST_ADVERTISE", value_delimiter = ',')]
    pub advertise: Option<Vec<String>>,
    /// Token secret.
    #[arg(long, env = "CASECAST_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Data directory.
    #[arg(long, env = "CASECAST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "CASECAST_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Seconds a participant has to connect its media.
    #[arg(long, env = "CASECAST_CONNECT_TIMEOUT_SECS")]
    pub connect_timeout_secs: Option<u64>,
    /// Commentators may send video (false: audio only).
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_VIDEO")]
    pub room_commentator_video: Option<bool>,
    /// Commentator video frame-rate ceiling.
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_MAX_FPS")]
    pub room_commentator_max_fps: Option<u32>,
    /// Commentator video bitrate ceiling, bits/s.
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_MAX_BITRATE")]
    pub room_commentator_max_bitrate: Option<u32>,
    /// Most participants in one room.
    #[arg(long, env = "CASECAST_ROOM_MAX_PARTICIPANTS")]
    pub room_max_participants: Option<usize>,
    /// Least milliseconds between keyframe requests to one track.
    #[arg(long, env = "CASECAST_ROOM_KEYFRAME_INTERVAL_MS")]
    pub room_keyframe_interval_ms: Option<u64>,
    /// Program HLS preset: quality or low-latency.
    #[arg(long, env = "CASECAST_PROGRAM_PRESET")]
    pub program_preset: Option<String>,
    /// How far back viewers of the program can go, seconds.
    #[arg(long, env = "CASECAST_PROGRAM_DVR_WINDOW_SECS")]
    pub program_dvr_window_secs: Option<u32>,
    /// RTMP URLs to push the program to, comma-separated (primary, backup).
    #[arg(long, env = "CASECAST_PROGRAM_RTMP", value_delimiter = ',')]
    pub program_rtmp: Option<Vec<String>>,
    /// Record the program as MP4 files.
    #[arg(long, env = "CASECAST_PROGRAM_RECORDING")]
    pub program_recording: Option<bool>,
    /// Length of one recorded file, seconds.
    #[arg(long, env = "CASECAST_PROGRAM_RECORDING_SPLIT_SECS")]
    pub program_recording_split_secs: Option<u32>,
    /// Program width in pixels (default 1280).
    #[arg(long, env = "CASECAST_PROGRAM_WIDTH")]
    pub program_width: Option<u32>,
    /// Program height in pixels (default 720).
    #[arg(long, env = "CASECAST_PROGRAM_HEIGHT")]
    pub program_height: Option<u32>,
    /// Program frames per second (default 30).
    #[arg(long, env = "CASECAST_PROGRAM_FPS")]
    pub program_fps: Option<u32>,
    /// Program video bitrate, bits/s (default 3000000).
    #[arg(long, env = "CASECAST_PROGRAM_VIDEO_BITRATE")]
    pub program_video_bitrate: Option<u32>,
    /// Publish the program back into the room as the monitor feed (default true).
    #[arg(long, env = "CASECAST_PROGRAM_MONITOR")]
    pub program_monitor: Option<bool>,
}

impl ConfigArgs {
    /// Defaults ← file ← env/flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid config file {}", p.display()))?
            }
            None => Config::default(),
        };
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(v) = &self.$flag { c.$($field).+ = v.clone().into(); })*
            };
        }
        set!(listen => listen, udp_bind => udp_bind, advertise => advertise, data_dir => data_dir,
             log_format => log_format, connect_timeout_secs => connect_timeout_secs,
             room_commentator_video => room.commentator_video,
             room_commentator_max_fps => room.commentator_max_fps,
             room_commentator_max_bitrate => room.commentator_max_bitrate,
             room_max_participants => room.max_participants,
             room_keyframe_interval_ms => room.keyframe_interval_ms,
             program_preset => program.preset,
             program_dvr_window_secs => program.dvr_window_secs,
             program_rtmp => program.rtmp,
             program_recording => program.recording,
             program_recording_split_secs => program.recording_split_secs,
             program_width => program.width,
             program_height => program.height,
             program_fps => program.fps,
             program_video_bitrate => program.video_bitrate,
             program_monitor => program.monitor);
        if self.public_url.is_some() {
            c.public_url = self.public_url.clone();
        }
        if self.secret.is_some() {
            c.secret = self.secret.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be \"text\" or \"json\", not {:?}", self.log_format);
        }
        if self.room.commentator_max_fps == 0 || self.room.commentator_max_fps > 60 {
            bail!("room.commentator_max_fps must be 1..=60");
        }
        if self.room.max_participants == 0 {
            bail!("room.max_participants must be at least 1");
        }
        if self.secret.as_deref().is_some_and(|s| s.len() < 16) {
            bail!("the token secret must be at least 16 characters");
        }
        self.advertise_ips()?;
        self.hls_preset()?;
        if self.program.dvr_window_secs < 30 {
            bail!("program.dvr_window_secs must be at least 30");
        }
        if self.program.recording_split_secs < 5 {
            bail!("program.recording_split_secs must be at least 5");
        }
        let p = &self.program;
        if !(160..=3840).contains(&p.width) || !(90..=2160).contains(&p.height) || p.width % 2 == 1 || p.height % 2 == 1 {
            bail!("program size {}x{}: width 160–3840 and height 90–2160, both even", p.width, p.height);
        }
        if !(1..=60).contains(&p.fps) {
            bail!("program.fps must be 1–60, not {}", p.fps);
        }
        if !(100_000..=50_000_000).contains(&p.video_bitrate) {
            bail!("program.video_bitrate must be 100000–50000000 bits/s, not {}", p.video_bitrate);
        }
        if self.program.rtmp.len() > 2 {
            bail!("program.rtmp takes at most two URLs (primary and backup)");
        }
        if let Some(u) = self.program.rtmp.iter().find(|u| !(u.starts_with("rtmp://") || u.starts_with("rtmps://"))) {
            bail!("program.rtmp: {u:?} is not an rtmp:// or rtmps:// URL");
        }
        Ok(())
    }

    /// The program's HLS preset.
    pub fn hls_preset(&self) -> anyhow::Result<casecast_actors::program::HlsPreset> {
        self.program.preset.parse().map_err(|e: String| anyhow::anyhow!("program.preset: {e}"))
    }

    /// Program options for a room.
    pub fn program_options(&self, room: &str) -> anyhow::Result<casecast_actors::program::ProgramOptions> {
        Ok(casecast_actors::program::ProgramOptions {
            hls_dir: self.data_dir.join("hls").join(room),
            segment_seconds: self.hls_preset()?.segment_seconds(),
            dvr_window_secs: self.program.dvr_window_secs,
            rtmp_urls: self.program.rtmp.clone(),
            recording_dir: self.program.recording.then(|| self.data_dir.join("recordings").join(room)),
            recording_split_secs: self.program.recording_split_secs,
            width: self.program.width,
            height: self.program.height,
            fps: self.program.fps,
            video_bitrate: self.program.video_bitrate,
            monitor: self.program.monitor,
            ..Default::default()
        })
    }

    /// The base URL for links.
    pub fn public_url(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host = if self.listen.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { self.listen.ip() };
        format!("http://{}", SocketAddr::new(host, self.listen.port()))
    }

    /// The ICE candidate addresses.
    pub fn advertise_ips(&self) -> anyhow::Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for a in &self.advertise {
            let a = a.trim();
            if a == "auto" {
                out.extend(auto_addresses());
            } else {
                out.push(a.parse().with_context(|| format!("advertise: {a:?} is not an IP address or \"auto\""))?);
            }
        }
        out.dedup();
        if out.is_empty() {
            bail!("advertise lists no address");
        }
        Ok(out)
    }

    /// The token secret: configured, or kept in the data directory (made on first use).
    pub fn secret(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.secret {
            return Ok(s.clone());
        }
        let path = self.data_dir.join("secret");
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok(s.trim().to_string());
        }
        write_new_secret(&path)
    }

    /// The room policy for new rooms.
    pub fn room_policy(&self) -> casecast_actors::RoomPolicy {
        casecast_actors::RoomPolicy {
            commentator_video: self.room.commentator_video,
            commentator_max_fps: self.room.commentator_max_fps,
            commentator_max_bitrate: self.room.commentator_max_bitrate,
            max_participants: self.room.max_participants,
            keyframe_interval: Duration::from_millis(self.room.keyframe_interval_ms),
        }
    }
}

fn write_new_secret(path: &Path) -> anyhow::Result<String> {
    use rand::RngCore;
    use std::io::Write;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())?;
            Ok(secret)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(path)?.trim().to_string()),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// This machine's IPv4 addresses, non-loopback first, then 127.0.0.1.
fn auto_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
        .collect();
    out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    out
}

/// Parses "30s", "5m", "24h", "2d" or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 5m, 24h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use s, m, h or d")),
    };
    Ok(Duration::from_secs(n * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("casecast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[room]\ncommentator_video = false\n").unwrap();
        let args = ConfigArgs { config: Some(f.clone()), room_commentator_max_fps: Some(3), ..Default::default() };
        let c = args.load().unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(!c.room.commentator_video);
        assert_eq!(c.room.commentator_max_fps, 3);
        let args = ConfigArgs { config: Some(f.clone()), listen: Some("127.0.0.1:9001".parse().unwrap()), ..Default::default() };
        assert_eq!(args.load().unwrap().listen.port(), 9001);
        std::fs::write(&f, "listn = 1\n").unwrap();
        let err = ConfigArgs { config: Some(f), ..Default::default() }.load().unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = ConfigArgs { advertise: Some(vec!["nope".into()]), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("nope"));
        let e = ConfigArgs { secret: Some("short".into()), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("16"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn secret_is_kept() {
        let dir = std::env::temp_dir().join(format!("casecast-secret-{}", std::process::id()));
        let c = Config { data_dir: dir.clone(), ..Default::default() };
        let a = c.secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(c.secret().unwrap(), a);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
