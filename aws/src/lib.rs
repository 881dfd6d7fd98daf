//! casecast's AWS distribution: for one event, an input security group, an
//! RTMP_PUSH input (and a backup one), a MediaPackage channel with an HLS origin
//! endpoint (v1; for `ultra-low`, a MediaPackage v2 channel with a low-latency HLS
//! endpoint), and a MediaLive channel encoding the program into it; started when the
//! event goes on air, stopped off air, torn down (after an optional harvest job,
//! live-to-VOD) when it ends. Everything is named `casecast-{event}` and tagged
//! `casecast:event`, so a retry or a restart finds what exists instead of making it
//! twice. Credentials come from the standard AWS chain.
//!
//! Only this crate compiles the AWS SDK.

pub mod cloudfront;
mod encoder;
mod errors;
mod mediapackage_v2;
pub mod preset;
mod provision;

use std::time::Duration;

pub use errors::AwsError;
pub use preset::{Packaging, Preset};
pub use provision::{ChannelStatus, Provisioned};

/// The `[aws]` settings.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The region (`eu-central-1`…); the AWS chain's when empty.
    pub region: String,
    /// Another endpoint for every service (moto in tests); none in production.
    pub endpoint_url: Option<String>,
    /// The IAM role MediaLive assumes (its access to MediaPackage and logs).
    pub role_arn: String,
    /// `SINGLE_PIPELINE` (one encoder, one input URL) or `STANDARD` (two).
    pub channel_class: String,
    /// Who may push to the input (CIDRs); a security group is made for the event.
    pub allowed_cidrs: Vec<String>,
    /// Or an existing input security group to use instead.
    pub input_security_group_id: Option<String>,
    /// A second input for a backup feed, with automatic input failover.
    pub backup_input: bool,
    /// What viewers see when the input is lost: `black`, or `slate` with `slate_url`.
    pub input_loss: String,
    /// The slate picture (an `s3://` or `https://` PNG/TGA), for `input_loss = "slate"`.
    pub slate_url: Option<String>,
    /// The MediaPackage v2 channel group every `ultra-low` event's channel goes in
    /// (made when missing, kept: one egress domain for one CloudFront origin).
    pub channel_group: String,
    /// Live-to-VOD: harvest the event into this bucket when it ends (none: no harvest).
    pub harvest_bucket: Option<String>,
    /// The role MediaPackage assumes to write the harvest.
    pub harvest_role_arn: Option<String>,
    /// The CloudFront domain in front of MediaPackage (`d111.cloudfront.net`).
    pub cloudfront_domain: Option<String>,
    /// CloudFront key pair (or public key) id, for private events' signed URLs.
    pub cloudfront_key_pair_id: Option<String>,
    /// The matching RSA private key (PEM file), for private events.
    pub cloudfront_private_key: Option<std::path::PathBuf>,
    /// A channel left running this long (seconds) with no live event is stopped.
    pub idle_stop_secs: u64,
    /// How long starting or stopping a channel may take, seconds.
    pub wait_secs: u64,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: String::new(),
            endpoint_url: None,
            role_arn: String::new(),
            channel_class: "SINGLE_PIPELINE".into(),
            allowed_cidrs: Vec::new(),
            input_security_group_id: None,
            backup_input: false,
            input_loss: "black".into(),
            slate_url: None,
            channel_group: "casecast".into(),
            harvest_bucket: None,
            harvest_role_arn: None,
            cloudfront_domain: None,
            cloudfront_key_pair_id: None,
            cloudfront_private_key: None,
            idle_stop_secs: 1800,
            wait_secs: 600,
        }
    }
}

impl AwsConfig {
    /// What is wrong with the settings, before any call is made.
    pub fn check(&self) -> Result<(), String> {
        if self.role_arn.is_empty() {
            return Err("aws.role_arn is required: the IAM role MediaLive assumes (see docs/aws.md)".into());
        }
        if !matches!(self.channel_class.as_str(), "SINGLE_PIPELINE" | "STANDARD") {
            return Err(format!("aws.channel_class must be SINGLE_PIPELINE or STANDARD, not {:?}", self.channel_class));
        }
        if self.allowed_cidrs.is_empty() && self.input_security_group_id.is_none() {
            return Err("aws.allowed_cidrs (who may push to the input) or aws.input_security_group_id is required".into());
        }
        match self.input_loss.as_str() {
            "black" => {}
            "slate" if self.slate_url.is_some() => {}
            "slate" => return Err("aws.input_loss = \"slate\" needs aws.slate_url".into()),
            other => return Err(format!("aws.input_loss must be black or slate, not {other:?}")),
        }
        let group_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.channel_group.is_empty() || self.channel_group.len() > 200 || !self.channel_group.chars().all(group_ok) {
            return Err(format!("aws.channel_group must be 1 to 200 of A-Z a-z 0-9 _ -, not {:?}", self.channel_group));
        }
        if self.harvest_bucket.is_some() && self.harvest_role_arn.is_none() {
            return Err("aws.harvest_bucket needs aws.harvest_role_arn (the role MediaPackage writes to S3 with)".into());
        }
        if self.cloudfront_key_pair_id.is_some() != self.cloudfront_private_key.is_some() {
            return Err("aws.cloudfront_key_pair_id and aws.cloudfront_private_key go together".into());
        }
        Ok(())
    }

    /// How long a start or stop may take.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_secs.max(1))
    }
}

/// The AWS clients for one region, with the settings.
#[derive(Clone)]
pub struct Aws {
    pub(crate) medialive: aws_sdk_medialive::Client,
    pub(crate) mediapackage: aws_sdk_mediapackage::Client,
    pub(crate) mediapackagev2: aws_sdk_mediapackagev2::Client,
    pub(crate) cfg: AwsConfig,
}

impl Aws {
    /// Clients from the standard AWS chain (environment, profile, SSO, instance or
    /// task role), in the configured region and endpoint.
    pub async fn new(cfg: AwsConfig) -> Aws {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if !cfg.region.is_empty() {
            loader = loader.region(aws_config::Region::new(cfg.region.clone()));
        }
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        Aws::from_config(&shared, cfg)
    }

    /// Clients from an SDK configuration (tests give one with a replay client).
    pub fn from_config(shared: &aws_config::SdkConfig, cfg: AwsConfig) -> Aws {
        Aws {
            medialive: aws_sdk_medialive::Client::new(shared),
            mediapackage: aws_sdk_mediapackage::Client::new(shared),
            mediapackagev2: aws_sdk_mediapackagev2::Client::new(shared),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AwsConfig {
        &self.cfg
    }
}

/// The name everything of an event is made under.
pub fn resource_name(event: &str) -> String {
    format!("casecast-{event}")
}

/// The tag key every resource carries, with the event id as value.
pub const EVENT_TAG: &str = "casecast:event";
