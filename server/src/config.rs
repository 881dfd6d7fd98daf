//! Configuration: defaults, then an optional TOML file, then `CASECAST_*` environment
//! variables, then command-line flags (clap reads both of the last two, flags first).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use casecast_signaling::MIN_SECRET_BYTES;
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
    /// HTTPS (and WSS) listen address, when a certificate is configured.
    pub tls_listen: SocketAddr,
    /// The certificate (PEM; the chain after it allowed), reloaded when it changes.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Host names (or IPs) to make a self-signed certificate for, for trials
    /// (browsers warn about it); instead of `tls_cert`/`tls_key`.
    pub tls_self_signed: Vec<String>,
    /// UDP media socket bind address: media worker `i` binds its port plus `i`.
    pub udp_bind: SocketAddr,
    /// Media worker threads, each with its own UDP socket and its rooms; 0 = one per
    /// core.
    pub media_workers: usize,
    /// Batched UDP system calls on the media sockets (`sendmmsg`, `recvmmsg`);
    /// false: one `send_to`/`recv_from` per datagram (for comparison).
    pub udp_batching: bool,
    /// Redis shared by the nodes of a cluster (`redis://host:6379/0`): rooms are
    /// placed on one node each, and clients reaching another are sent there. None:
    /// one node.
    pub redis_url: Option<String>,
    /// Where the other nodes send this node's clients (its base URL); default
    /// `public_url`.
    pub node_url: Option<String>,
    /// ICE-TCP for networks that block UDP: passive TCP candidates beside the UDP
    /// ones (RFC 6544).
    pub ice_tcp: bool,
    /// Its TCP port; 0 = the UDP media port's number.
    pub ice_tcp_port: u16,
    /// TURN servers handed to clients for networks that let neither UDP nor direct
    /// TCP through: `turn:`/`turns:` URLs of a coturn that shares `turn_secret`
    /// (docs/deploy.md). Empty: none.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`), at
    /// least 16 characters: each participant gets credentials minted from it.
    pub turn_secret: Option<String>,
    /// How long minted TURN credentials are good for, seconds. A relayed session
    /// outlives them: the page fetches fresh ones and restarts ICE before they end.
    pub turn_ttl_secs: u64,
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
    /// The longest lifetime a token may have, seconds: longer ones are not minted
    /// and not accepted (default 90 days, as the longest invitation).
    pub max_token_ttl_secs: u64,
    /// The bearer token Prometheus sends to scrape `/metrics` (at least 16
    /// characters); default: one derived from the token secret
    /// (`casecast token --scrape` prints it).
    pub metrics_token: Option<String>,
    /// Also serve `/metrics`, without a token, on this address (a private
    /// interface for the monitoring network); default: not served apart.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies in front of the server (IP addresses): their
    /// `X-Forwarded-For` names the client for viewer counts and per-address limits.
    pub trusted_proxies: Vec<String>,
    /// Default room policy.
    pub room: RoomConfig,
    /// The program's HLS output.
    pub program: ProgramConfig,
    /// DICOM cases: stores, ingest, receivers.
    pub cases: CasesConfig,
    /// How the program reaches viewers: `local` (HLS served here) or `aws`.
    pub distribution: String,
    /// The AWS distribution (MediaLive, MediaPackage, CloudFront): docs/aws.md.
    pub aws: casecast_aws::AwsConfig,
}

/// TURN servers for clients, with the secret their credentials are minted from.
#[derive(Clone)]
pub struct Turn {
    /// `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// Shared with the TURN server; never logged.
    secret: String,
    /// Lifetime of minted credentials, seconds.
    pub ttl_secs: u64,
}

impl Turn {
    /// Credentials for participant `id`, good for `ttl_secs` from `now` (Unix seconds).
    pub fn ice_server(&self, id: &str, now: u64) -> casecast_signaling::turn::IceServer {
        casecast_signaling::turn::credentials(&self.secret, &self.urls, id, now + self.ttl_secs)
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("urls", &self.urls).field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

/// DICOM cases: where they are kept, how they are ingested, who may send them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// Metadata database: an SQLite file path or `sqlite://…`, or `postgres://…`;
    /// default `<data_dir>/cases.db`.
    pub database: Option<String>,
    /// Object store: a directory, `file:///dir` or `s3://bucket/prefix`; default
    /// `<data_dir>/cases/objects`.
    pub objects: Option<String>,
    /// S3 endpoint (for S3-compatible stores); default: AWS, or `AWS_ENDPOINT_URL`.
    pub s3_endpoint: Option<String>,
    /// Ingest worker threads; 0 = one per core.
    pub workers: usize,
    /// The server runs ingest jobs itself (false: it only records them, for
    /// `casecast ingest-worker` processes sharing its database to run).
    pub ingest_in_server: bool,
    /// Stage uploads in the object store (under `.staging/`) rather than on this
    /// machine's disk, so that an ingest worker on any machine can take any job.
    pub stage_in_objects: bool,
    /// How long a claimed job stays a worker's without a renewal, seconds (renewed
    /// every third of it): a worker that dies holds its jobs this long.
    pub lease_secs: u64,
    /// Keep originals in `<data_dir>/cases/staging` (or the object store's
    /// `.staging/`) after processing (never served).
    pub keep_originals: bool,
    /// Largest upload (one file, archive or STOW-RS request), bytes.
    pub max_upload_bytes: u64,
    /// Read every frame for burned-in text (false: trust Burned In Annotation NO on
    /// CT, MR, PET and NM pictures).
    pub ocr_all: bool,
    /// Read frames for burned-in text at all (false only where OCR is unavailable:
    /// pictures flagged YES are then quarantined).
    pub ocr: bool,
    /// Shift dates per patient instead of removing them.
    pub shift_dates: bool,
    /// Keep device identity (serial numbers, station names).
    pub retain_device_identity: bool,
    /// Keep free text only when no PHI is found in it (Clean Descriptors).
    pub clean_descriptors: bool,
    /// Header bands blacked out by modality, as `US=0.1` (top tenth of the frame).
    pub masks: Vec<String>,
    /// DICOM C-STORE receiver address, e.g. `0.0.0.0:11112`; empty (the default) = off:
    /// DICOM has no tokens, so the receiver is opened on purpose, with its AE titles.
    pub cstore_listen: String,
    /// The receiver's AE title.
    pub cstore_ae_title: String,
    /// Calling AE titles allowed to send (empty: any).
    pub cstore_allowed: Vec<String>,
    /// The case library (room) C-STORE objects go to.
    pub cstore_room: String,
    /// Most unfinished uploads one token may have open.
    pub max_open_uploads_per_token: u64,
    /// Most bytes one token's unfinished uploads may declare, together.
    pub max_reserved_bytes_per_token: u64,
    /// Most bytes all unfinished uploads may declare, together; an upload is also
    /// refused when the staging disk has not room for it.
    pub max_reserved_bytes: u64,
    /// Longest one file's de-identification may take (reading its pictures for text
    /// above all), seconds: it then fails with the reason and its worker goes on.
    pub max_seconds_per_file: u64,
    /// Most compressed pixel data of one file decoded at once, MB (a cine is
    /// decoded a frame at a time and counts one frame).
    pub max_decoded_mb: u64,
}

impl Default for CasesConfig {
    fn default() -> Self {
        CasesConfig {
            database: None,
            objects: None,
            s3_endpoint: None,
            workers: 0,
            ingest_in_server: true,
            stage_in_objects: false,
            lease_secs: 30,
            keep_originals: false,
            max_upload_bytes: 64 << 30,
            ocr_all: false,
            ocr: true,
            shift_dates: false,
            retain_device_identity: false,
            clean_descriptors: true,
            masks: Vec::new(),
            cstore_listen: String::new(),
            cstore_ae_title: "CASECAST".into(),
            cstore_allowed: Vec::new(),
            cstore_room: "demo".into(),
            max_open_uploads_per_token: 64,
            max_reserved_bytes_per_token: 64 << 30,
            max_reserved_bytes: 256 << 30,
            max_seconds_per_file: 600,
            max_decoded_mb: 1024,
        }
    }
}

impl Config {
    /// The cases database URL.
    pub fn cases_database(&self) -> String {
        self.cases.database.clone().unwrap_or_else(|| self.data_dir.join("cases.db").display().to_string())
    }

    /// The cases object store URL.
    pub fn cases_objects(&self) -> String {
        self.cases.objects.clone().unwrap_or_else(|| self.data_dir.join("cases").join("objects").display().to_string())
    }

    /// The local staging folder.
    pub fn cases_staging(&self) -> PathBuf {
        self.data_dir.join("cases").join("staging")
    }

    /// De-identification as configured.
    pub fn deid_options(&self) -> anyhow::Result<casecast_ingest::deid::Options> {
        let mut header_masks = Vec::new();
        for m in &self.cases.masks {
            let (modality, fraction) = m.split_once('=').with_context(|| format!("cases.masks: {m:?} is not MODALITY=FRACTION"))?;
            let f: f64 = fraction.parse().with_context(|| format!("cases.masks: {fraction:?} is not a number"))?;
            if !(0.0..=1.0).contains(&f) {
                bail!("cases.masks: {m:?}: the fraction must be 0..1");
            }
            header_masks.push((modality.to_string(), f));
        }
        Ok(casecast_ingest::deid::Options {
            clean_descriptors: self.cases.clean_descriptors,
            shift_dates: self.cases.shift_dates,
            retain_device_identity: self.cases.retain_device_identity,
            clean_pixels: self.cases.ocr,
            read_all_pictures: self.cases.ocr_all,
            header_masks,
            ..self.deid_limits(casecast_ingest::deid::Options::new(self.secret()?))
        })
    }

    /// `opts` with the configured bounds on one file's work.
    pub fn deid_limits(&self, opts: casecast_ingest::deid::Options) -> casecast_ingest::deid::Options {
        casecast_ingest::deid::Options {
            max_seconds: self.cases.max_seconds_per_file.max(1),
            max_decoded_bytes: self.cases.max_decoded_mb.max(1) << 20,
            ..opts
        }
    }

    /// The ingest pool's settings.
    pub fn ingest_config(&self) -> anyhow::Result<casecast_actors::ingest::IngestConfig> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(casecast_actors::ingest::IngestConfig {
            workers: if self.cases.workers == 0 { cores } else { self.cases.workers },
            staging: self.cases_staging(),
            scratch: self.cases_staging(),
            stage_in_objects: self.cases.stage_in_objects,
            lease: std::time::Duration::from_secs(self.cases.lease_secs),
            keep_originals: self.cases.keep_originals,
            deid: self.deid_options()?,
            zip: casecast_ingest::cases::ZipLimits { max_total: self.cases.max_upload_bytes.saturating_mul(4), ..Default::default() },
            max_attempts: 3,
            recover: true,
            node: self.node_name(),
        })
    }

    /// Media worker threads: as configured, or one per core.
    pub fn media_workers(&self) -> usize {
        match self.media_workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }

    /// This node's name among others sharing its database: the host's name and the
    /// address it listens on.
    pub fn node_name(&self) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{}@{}", if host.is_empty() { "localhost" } else { &host }, self.listen)
    }
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
    /// Most HLS viewers counted from one client address (a hospital's NAT holds
    /// several; one client with made-up viewer ids holds no more).
    pub viewers_per_address: usize,
    /// Most events' programs this server runs at once (each needs about a core at
    /// 720p30): a start beyond it is refused with the reason.
    pub max_running: usize,
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
            viewers_per_address: 16,
            max_running: 4,
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
    /// Most viewers and commentators in one room (encoders and operators have
    /// seats of their own).
    pub max_participants: usize,
    /// Seats for the feed's encoders in one room.
    pub encoder_seats: usize,
    /// Seats for operators (compositors, consoles) in one room.
    pub operator_seats: usize,
    /// Most sessions one token, or one person, may hold in a room at once.
    pub max_sessions_per_person: usize,
    /// Least milliseconds between keyframe requests to one track.
    pub keyframe_interval_ms: u64,
    /// Heights of the layers the server makes of a feed that arrives as one layer
    /// (`[540, 360]`), so commentators on weak links get a picture that fits;
    /// `[]` for none. Unset: none for `serve`, 540 and 360 for `demo`.
    pub feed_ladder: Option<Vec<u32>>,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            commentator_video: true,
            commentator_max_fps: 5,
            commentator_max_bitrate: 300_000,
            max_participants: 200,
            encoder_seats: 4,
            operator_seats: 16,
            max_sessions_per_person: 4,
            keyframe_interval_ms: 500,
            feed_ladder: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls_cert: None,
            tls_key: None,
            tls_self_signed: Vec::new(),
            udp_bind: SocketAddr::from(([0, 0, 0, 0], 8081)),
            media_workers: 0,
            udp_batching: true,
            redis_url: None,
            node_url: None,
            ice_tcp: true,
            ice_tcp_port: 0,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: 3600,
            advertise: vec!["auto".into()],
            secret: None,
            data_dir: PathBuf::from("data"),
            log_format: "text".into(),
            connect_timeout_secs: 20,
            max_token_ttl_secs: 90 * 86400,
            metrics_token: None,
            metrics_listen: None,
            trusted_proxies: Vec::new(),
            room: RoomConfig::default(),
            program: ProgramConfig::default(),
            cases: CasesConfig::default(),
            distribution: "local".into(),
            aws: casecast_aws::AwsConfig::default(),
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
    /// HTTPS/WSS listen address (default 0.0.0.0:8443), when TLS is on.
    #[arg(long, env = "CASECAST_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// TLS certificate file (PEM, chain allowed); reloaded when it changes or on SIGHUP.
    #[arg(long, env = "CASECAST_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key file (PEM).
    #[arg(long, env = "CASECAST_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Make a self-signed certificate for these host names (comma-separated), for
    /// trials: browsers will warn.
    #[arg(long, env = "CASECAST_TLS_SELF_SIGNED", value_delimiter = ',')]
    pub tls_self_signed: Option<Vec<String>>,
    /// UDP media bind address (worker i on its port plus i).
    #[arg(long, env = "CASECAST_UDP_BIND")]
    pub udp_bind: Option<SocketAddr>,
    /// Media worker threads (0 = one per core).
    #[arg(long, env = "CASECAST_MEDIA_WORKERS")]
    pub media_workers: Option<usize>,
    /// Batched UDP system calls (sendmmsg/recvmmsg), default true.
    #[arg(long, env = "CASECAST_UDP_BATCHING")]
    pub udp_batching: Option<bool>,
    /// Redis shared by the cluster's nodes (none: one node).
    #[arg(long, env = "CASECAST_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// This node's base URL for the other nodes' redirects (default: public_url).
    #[arg(long, env = "CASECAST_NODE_URL")]
    pub node_url: Option<String>,
    /// ICE-TCP beside UDP (passive TCP candidates), default true.
    #[arg(long, env = "CASECAST_ICE_TCP")]
    pub ice_tcp: Option<bool>,
    /// ICE-TCP port (default: the UDP media port's number).
    #[arg(long, env = "CASECAST_ICE_TCP_PORT")]
    pub ice_tcp_port: Option<u16>,
    /// TURN URLs handed to clients, comma-separated (turn:host:3478, turns:host:443?transport=tcp).
    #[arg(long, env = "CASECAST_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// The secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(long, env = "CASECAST_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials, seconds (default 3600).
    #[arg(long, env = "CASECAST_TURN_TTL_SECS")]
    pub turn_ttl_secs: Option<u64>,
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
    /// The longest lifetime a token may have, seconds.
    #[arg(long, env = "CASECAST_MAX_TOKEN_TTL_SECS")]
    pub max_token_ttl_secs: Option<u64>,
    /// The bearer token Prometheus scrapes `/metrics` with.
    #[arg(long, env = "CASECAST_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Also serve `/metrics` without a token on this address.
    #[arg(long, env = "CASECAST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose X-Forwarded-For is believed, comma-separated IPs.
    #[arg(long, env = "CASECAST_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Commentators may send video (false: audio only).
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_VIDEO")]
    pub room_commentator_video: Option<bool>,
    /// Commentator video frame-rate ceiling.
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_MAX_FPS")]
    pub room_commentator_max_fps: Option<u32>,
    /// Commentator video bitrate ceiling, bits/s.
    #[arg(long, env = "CASECAST_ROOM_COMMENTATOR_MAX_BITRATE")]
    pub room_commentator_max_bitrate: Option<u32>,
    /// Most viewers and commentators in one room.
    #[arg(long, env = "CASECAST_ROOM_MAX_PARTICIPANTS")]
    pub room_max_participants: Option<usize>,
    /// Most sessions one token or person may hold in a room.
    #[arg(long, env = "CASECAST_ROOM_MAX_SESSIONS_PER_PERSON")]
    pub room_max_sessions_per_person: Option<usize>,
    /// Least milliseconds between keyframe requests to one track.
    #[arg(long, env = "CASECAST_ROOM_KEYFRAME_INTERVAL_MS")]
    pub room_keyframe_interval_ms: Option<u64>,
    /// Heights of the layers the server makes of a single-layer feed,
    /// comma-separated (`540,360`), or `off`.
    #[arg(long, env = "CASECAST_ROOM_FEED_LADDER")]
    pub room_feed_ladder: Option<String>,
    /// Program HLS preset: quality, low-latency or ultra-low.
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
    /// Cases metadata database (SQLite path or URL, or postgres://…).
    #[arg(long, env = "CASECAST_CASES_DATABASE")]
    pub cases_database: Option<String>,
    /// Cases object store (directory, file:///dir or s3://bucket/prefix).
    #[arg(long, env = "CASECAST_CASES_OBJECTS")]
    pub cases_objects: Option<String>,
    /// S3 endpoint for an S3-compatible object store.
    #[arg(long, env = "CASECAST_CASES_S3_ENDPOINT")]
    pub cases_s3_endpoint: Option<String>,
    /// Ingest worker threads (0 = one per core).
    #[arg(long, env = "CASECAST_CASES_WORKERS")]
    pub cases_workers: Option<usize>,
    /// Run ingest jobs in the server (false: `casecast ingest-worker`s do).
    #[arg(long, env = "CASECAST_CASES_INGEST_IN_SERVER")]
    pub cases_ingest_in_server: Option<bool>,
    /// Stage uploads in the object store, for ingest workers on other machines.
    #[arg(long, env = "CASECAST_CASES_STAGE_IN_OBJECTS")]
    pub cases_stage_in_objects: Option<bool>,
    /// An ingest job's lease, seconds.
    #[arg(long, env = "CASECAST_CASES_LEASE_SECS")]
    pub cases_lease_secs: Option<u64>,
    /// Keep originals in staging after processing.
    #[arg(long, env = "CASECAST_CASES_KEEP_ORIGINALS")]
    pub cases_keep_originals: Option<bool>,
    /// Largest upload, bytes.
    #[arg(long, env = "CASECAST_CASES_MAX_UPLOAD_BYTES")]
    pub cases_max_upload_bytes: Option<u64>,
    /// DICOM C-STORE receiver address ("" = off).
    #[arg(long, env = "CASECAST_CASES_CSTORE_LISTEN")]
    pub cases_cstore_listen: Option<String>,
    /// The case library (room) C-STORE objects go to.
    #[arg(long, env = "CASECAST_CASES_CSTORE_ROOM")]
    pub cases_cstore_room: Option<String>,
    /// Longest one file's de-identification may take, seconds.
    #[arg(long, env = "CASECAST_CASES_MAX_SECONDS_PER_FILE")]
    pub cases_max_seconds_per_file: Option<u64>,
    /// Most compressed pixel data of one file decoded at once, MB.
    #[arg(long, env = "CASECAST_CASES_MAX_DECODED_MB")]
    pub cases_max_decoded_mb: Option<u64>,
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
        set!(listen => listen, tls_listen => tls_listen, tls_cert => tls_cert, tls_key => tls_key,
             tls_self_signed => tls_self_signed, udp_bind => udp_bind, media_workers => media_workers, udp_batching => udp_batching, ice_tcp => ice_tcp, ice_tcp_port => ice_tcp_port,
             turn_urls => turn_urls, turn_ttl_secs => turn_ttl_secs, advertise => advertise, data_dir => data_dir,
             log_format => log_format, connect_timeout_secs => connect_timeout_secs,
             max_token_ttl_secs => max_token_ttl_secs, trusted_proxies => trusted_proxies,
             room_commentator_video => room.commentator_video,
             room_commentator_max_fps => room.commentator_max_fps,
             room_commentator_max_bitrate => room.commentator_max_bitrate,
             room_max_participants => room.max_participants,
             room_max_sessions_per_person => room.max_sessions_per_person,
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
             program_monitor => program.monitor,
             cases_workers => cases.workers,
             cases_ingest_in_server => cases.ingest_in_server,
             cases_stage_in_objects => cases.stage_in_objects,
             cases_lease_secs => cases.lease_secs,
             cases_keep_originals => cases.keep_originals,
             cases_max_upload_bytes => cases.max_upload_bytes,
             cases_cstore_listen => cases.cstore_listen,
             cases_cstore_room => cases.cstore_room,
             cases_max_seconds_per_file => cases.max_seconds_per_file,
             cases_max_decoded_mb => cases.max_decoded_mb);
        if let Some(l) = &self.room_feed_ladder {
            c.room.feed_ladder = Some(parse_ladder(l)?);
        }
        if self.cases_database.is_some() {
            c.cases.database = self.cases_database.clone();
        }
        if self.cases_objects.is_some() {
            c.cases.objects = self.cases_objects.clone();
        }
        if self.cases_s3_endpoint.is_some() {
            c.cases.s3_endpoint = self.cases_s3_endpoint.clone();
        }
        if self.public_url.is_some() {
            c.public_url = self.public_url.clone();
        }
        if self.redis_url.is_some() {
            c.redis_url = self.redis_url.clone();
        }
        if self.node_url.is_some() {
            c.node_url = self.node_url.clone();
        }
        if self.secret.is_some() {
            c.secret = self.secret.clone();
        }
        if self.turn_secret.is_some() {
            c.turn_secret = self.turn_secret.clone();
        }
        if self.metrics_token.is_some() {
            c.metrics_token = self.metrics_token.clone();
        }
        if self.metrics_listen.is_some() {
            c.metrics_listen = self.metrics_listen;
        }
        c.validate()?;
        Ok(c)
    }
}

/// The rungs of a server-made ladder from `540,360` (or `off`, `none`, empty).
fn parse_ladder(s: &str) -> anyhow::Result<Vec<u32>> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|h| {
            let h = h.trim().trim_end_matches('p');
            h.parse::<u32>().map_err(|_| anyhow::anyhow!("--room-feed-ladder: {h:?} is not a picture height (say 540,360, or off)"))
        })
        .collect()
}

/// A server-made ladder has at most three rungs, each 90 to 2160 lines.
pub fn check_ladder(heights: &[u32]) -> Result<(), String> {
    if heights.len() > 3 {
        return Err(format!("at most 3 layers, not {}", heights.len()));
    }
    if let Some(h) = heights.iter().find(|h| !(90..=2160).contains(*h)) {
        return Err(format!("a layer of {h} lines: heights are 90 to 2160"));
    }
    Ok(())
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be \"text\" or \"json\", not {:?}", self.log_format);
        }
        if self.room.commentator_max_fps == 0 || self.room.commentator_max_fps > 60 {
            bail!("room.commentator_max_fps must be 1..=60");
        }
        if self.room.max_participants == 0 || self.room.encoder_seats == 0 || self.room.operator_seats == 0 {
            bail!("room.max_participants, room.encoder_seats and room.operator_seats must be at least 1");
        }
        if self.room.max_sessions_per_person == 0 {
            bail!("room.max_sessions_per_person must be at least 1");
        }
        if self.media_workers > 256 {
            bail!("media_workers must be 0 (one per core) to 256, not {}", self.media_workers);
        }
        if !(3..=3600).contains(&self.cases.lease_secs) {
            bail!("cases.lease_secs must be 3..=3600 (a worker renews its leases every third of it)");
        }
        if let Some(l) = &self.room.feed_ladder {
            check_ladder(l).map_err(|e| anyhow::anyhow!("room.feed_ladder: {e}"))?;
        }
        if self.secret.as_deref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
            bail!("the token secret must be at least {MIN_SECRET_BYTES} characters");
        }
        if self.metrics_token.as_deref().is_some_and(|s| s.len() < 16 || !s.bytes().all(|c| c.is_ascii_graphic())) {
            bail!("metrics_token must be at least 16 visible ASCII characters");
        }
        if !(60..=366 * 86400).contains(&self.max_token_ttl_secs) {
            bail!("max_token_ttl_secs must be from 60 (a minute) to 31622400 (a year)");
        }
        self.proxies()?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bail!("tls_cert is set but tls_key is not: give both files (PEM)"),
            (None, Some(_)) => bail!("tls_key is set but tls_cert is not: give both files (PEM)"),
            (Some(_), Some(_)) if !self.tls_self_signed.is_empty() => {
                bail!("tls_self_signed and tls_cert/tls_key both set: use one (a real certificate, or a self-signed one for trials)")
            }
            _ => {}
        }
        if let Some(h) = self.tls_self_signed.iter().find(|h| h.trim().is_empty() || h.contains(['/', ' ', ':']) && h.parse::<IpAddr>().is_err()) {
            bail!("tls_self_signed: {h:?} is not a host name or IP address");
        }
        self.turn()?;
        if self.tls_on() && self.tls_listen == self.listen {
            bail!("tls_listen and listen are both {}: HTTPS needs a port of its own", self.listen);
        }
        if self.program.max_running == 0 {
            bail!("program.max_running must be at least 1");
        }
        if self.program.viewers_per_address == 0 {
            bail!("program.viewers_per_address must be at least 1");
        }
        if self.cases.max_open_uploads_per_token == 0 || self.cases.max_reserved_bytes_per_token == 0 || self.cases.max_reserved_bytes == 0 {
            bail!("cases.max_open_uploads_per_token, max_reserved_bytes_per_token and max_reserved_bytes must be at least 1");
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
        let preset = self.hls_preset()?;
        Ok(casecast_actors::program::ProgramOptions {
            hls_dir: self.data_dir.join("hls").join(room),
            segment_seconds: preset.segment_seconds(),
            parts: preset.parts(),
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

    /// Whether the server serves HTTPS (a certificate, or a self-signed one).
    pub fn tls_on(&self) -> bool {
        self.tls_cert.is_some() || !self.tls_self_signed.is_empty()
    }

    /// The base URL for links.
    pub fn public_url(&self) -> String {
        self.public_url_on(self.listen.port(), self.tls_on().then_some(self.tls_listen.port()))
    }

    /// The base URL for links, the server listening on `http_port` (and HTTPS on
    /// `https_port`): `public_url`, or HTTPS when it is on (at the first
    /// self-signed name), or plain HTTP at the listen address.
    pub fn public_url_on(&self, http_port: u16, https_port: Option<u16>) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let host_of = |ip: IpAddr| match ip {
            ip if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        match https_port {
            Some(port) => {
                let host = match self.tls_self_signed.first() {
                    Some(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]"),
                    Some(h) => h.clone(),
                    None => host_of(self.tls_listen.ip()),
                };
                if port == 443 { format!("https://{host}") } else { format!("https://{host}:{port}") }
            }
            None => format!("http://{}:{http_port}", host_of(self.listen.ip())),
        }
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

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    /// The TURN servers handed to clients, checked: none when `turn_urls` is empty.
    pub fn turn(&self) -> anyhow::Result<Option<Turn>> {
        if self.turn_urls.is_empty() {
            if self.turn_secret.is_some() {
                bail!("turn_secret is set but turn_urls is not: name the TURN server (turns:host:443?transport=tcp)");
            }
            return Ok(None);
        }
        for u in &self.turn_urls {
            casecast_signaling::turn::check_url(u).map_err(|e| anyhow::anyhow!("turn_urls: {e}"))?;
        }
        let Some(secret) = self.turn_secret.clone() else {
            bail!("turn_urls is set but turn_secret is not: give the secret shared with the TURN server (coturn's static-auth-secret)");
        };
        if secret.len() < 16 {
            bail!("turn_secret must be at least 16 characters");
        }
        if !(60..=86400).contains(&self.turn_ttl_secs) {
            bail!("turn_ttl_secs must be from 60 to 86400 (a day)");
        }
        Ok(Some(Turn { urls: self.turn_urls.clone(), secret, ttl_secs: self.turn_ttl_secs }))
    }

    pub fn proxies(&self) -> anyhow::Result<Vec<IpAddr>> {
        self.trusted_proxies
            .iter()
            .map(|p| p.trim().parse().with_context(|| format!("trusted_proxies: {p:?} is not an IP address")))
            .collect()
    }

    /// The token secret: configured, or kept in the data directory (made on first
    /// use, atomically; a file too short to be a secret is refused, never used).
    pub fn secret(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.secret {
            return Ok(s.clone());
        }
        let path = self.data_dir.join("secret");
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                crate::files::create_private(&path, fresh.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let secret = String::from_utf8(text).map(|s| s.trim().to_string()).unwrap_or_default();
        if secret.len() < MIN_SECRET_BYTES {
            bail!(
                "{} holds {} characters, too few to sign tokens with (at least {MIN_SECRET_BYTES}): \
                 remove the file to have a new secret made (every token and invitation then stops working), \
                 or put a longer one in it",
                path.display(),
                secret.len()
            );
        }
        Ok(secret)
    }

    /// The bearer token `/metrics` is scraped with: configured, or derived from the
    /// token secret (so it changes when the secret is rotated).
    pub fn metrics_token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.metrics_token {
            return Ok(t.clone());
        }
        Ok(casecast_signaling::token::derived_scrape_token(&self.secret()?))
    }

    /// The key pair signing private events' playback tokens (ES384): kept in
    /// `<data_dir>/playback-key.p8` (PKCS#8 DER), made on first use.
    pub fn playback_key(&self) -> anyhow::Result<casecast_signaling::playback::PlaybackKey> {
        let path = self.data_dir.join("playback-key.p8");
        let der = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = casecast_signaling::playback::PlaybackKey::generate().map_err(anyhow::Error::msg)?;
                crate::files::create_private(&path, &der).with_context(|| format!("cannot write {}", path.display()))?
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        casecast_signaling::playback::PlaybackKey::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The room policy for new rooms.
    pub fn room_policy(&self) -> casecast_actors::RoomPolicy {
        casecast_actors::RoomPolicy {
            commentator_video: self.room.commentator_video,
            commentator_max_fps: self.room.commentator_max_fps,
            commentator_max_bitrate: self.room.commentator_max_bitrate,
            max_participants: self.room.max_participants,
            max_encoders: self.room.encoder_seats,
            max_operators: self.room.operator_seats,
            max_sessions_per_person: self.room.max_sessions_per_person,
            keyframe_interval: Duration::from_millis(self.room.keyframe_interval_ms),
            feed_ladder: self.room.feed_ladder.clone().unwrap_or_default(),
        }
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
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(|| format!("{s:?} is too long"))
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
    fn a_feed_ladder_from_flags_or_file() {
        let ladder = |s: &str| ConfigArgs { room_feed_ladder: Some(s.into()), ..Default::default() }.load().map(|c| c.room.feed_ladder);
        assert_eq!(ladder("540,360p").unwrap(), Some(vec![540, 360]));
        assert_eq!(ladder("off").unwrap(), Some(vec![]));
        assert!(format!("{:#}", ladder("540,big").unwrap_err()).contains("big"));
        assert!(format!("{:#}", ladder("1080,720,540,360").unwrap_err()).contains("at most 3"));
        assert!(format!("{:#}", ladder("4320").unwrap_err()).contains("90 to 2160"));
        assert_eq!(ConfigArgs::default().load().unwrap().room_policy().feed_ladder, Vec::<u32>::new(), "off unless asked for");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = ConfigArgs { advertise: Some(vec!["nope".into()]), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("nope"));
        let e = ConfigArgs { secret: Some("short".into()), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("16"));
    }

    #[test]
    fn links_name_https_when_it_is_on() {
        let c = Config::default();
        assert_eq!(c.public_url_on(8080, None), "http://127.0.0.1:8080");
        let c = Config { tls_self_signed: vec!["casecast.example".into()], ..Config::default() };
        assert!(c.tls_on());
        assert_eq!(c.public_url(), "https://casecast.example:8443");
        assert_eq!(c.public_url_on(8080, Some(443)), "https://casecast.example");
        let c = Config { tls_self_signed: vec!["fd00::5".into()], ..Config::default() };
        assert_eq!(c.public_url_on(8080, Some(8443)), "https://[fd00::5]:8443");
        let c = Config { public_url: Some("https://or.example.org/".into()), ..c };
        assert_eq!(c.public_url_on(8080, Some(8443)), "https://or.example.org");
    }

    #[test]
    fn tls_settings_must_fit_together() {
        let e = ConfigArgs { tls_cert: Some("c.pem".into()), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("tls_key is not"), "{e:#}");
        let e = ConfigArgs { tls_self_signed: Some(vec!["a b".into()]), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("not a host name"), "{e:#}");
        let same = "0.0.0.0:8080".parse().ok();
        let e = ConfigArgs { tls_self_signed: Some(vec!["a.example".into()]), tls_listen: same, ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("port of its own"), "{e:#}");
    }

    #[test]
    fn turn_settings_must_fit_together_and_the_secret_is_never_shown() {
        let urls = |u: &[&str]| Some(u.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let secret = Some("turn-secret-0123456789".to_string());
        let e = ConfigArgs { turn_urls: urls(&["turns:t.example:443?transport=tcp"]), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("turn_secret is not"), "{e:#}");
        let e = ConfigArgs { turn_secret: secret.clone(), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("turn_urls is not"), "{e:#}");
        let e = ConfigArgs { turn_urls: urls(&["stun:t.example"]), turn_secret: secret.clone(), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("turn: or turns:"), "{e:#}");
        let e = ConfigArgs { turn_urls: urls(&["turn:t.example"]), turn_secret: Some("short".into()), ..Default::default() }.load().unwrap_err();
        assert!(format!("{e:#}").contains("at least 16"), "{e:#}");
        let c = ConfigArgs { turn_urls: urls(&["turns:t.example:443?transport=tcp"]), turn_secret: secret, ..Default::default() }.load().unwrap();
        let turn = c.turn().unwrap().expect("configured");
        let s = turn.ice_server("p1", 1_000);
        assert_eq!(s.username, "4600:p1", "good for turn_ttl_secs (3600 by default)");
        assert!(!format!("{turn:?}").contains("turn-secret"), "{turn:?}");
        assert!(Config::default().turn().unwrap().is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("999999999999999d").is_err(), "no overflow");
    }

    #[test]
    fn secret_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("casecast-secret-{}", std::process::id()));
        let c = Config { data_dir: dir.clone(), ..Default::default() };
        let a = c.secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(c.secret().unwrap(), a);
        assert_eq!(std::fs::metadata(dir.join("secret")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(c.metrics_token().unwrap(), a, "the scrape token is not the secret");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_short_secret_file_is_refused_not_used() {
        let dir = std::env::temp_dir().join(format!("casecast-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = Config { data_dir: dir.clone(), ..Default::default() };
        for weak in ["", "  \n", "short"] {
            std::fs::write(dir.join("secret"), weak).unwrap();
            let e = format!("{:#}", c.secret().unwrap_err());
            assert!(e.contains("too few") && e.contains("remove the file"), "{e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
