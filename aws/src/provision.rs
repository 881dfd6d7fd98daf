//! One event's AWS resources: provisioned idempotently, run, read, torn down.

use aws_sdk_medialive::client::Waiters as _;
use aws_sdk_medialive::types as ml;
use aws_sdk_mediapackage::types as mp;

use crate::encoder::encoder_settings;
use crate::errors::classify;
use crate::mediapackage_v2::V2;
use crate::preset::Packaging;
use crate::{Aws, AwsError, EVENT_TAG, Preset, resource_name};

/// What an event has in AWS.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Provisioned {
    /// The event.
    pub event: String,
    /// The input security group (made for the event, or the configured one).
    pub security_group_id: String,
    /// The primary RTMP_PUSH input.
    pub input_id: String,
    /// The backup input, when configured.
    pub backup_input_id: Option<String>,
    /// Where the compositor pushes: the primary input's URLs (one per pipeline),
    /// then the backup's. Empty where the service gives none (moto).
    pub rtmp_urls: Vec<String>,
    /// The MediaPackage channel (v1's id, or v2's name in `channel_group`).
    pub mediapackage_channel_id: String,
    /// The MediaPackage v2 channel group, for an `ultra-low` event (low-latency HLS
    /// from CMAF ingest); none for MediaPackage v1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_group: Option<String>,
    /// The origin endpoint (HLS on v1, low-latency HLS on v2).
    pub origin_endpoint_id: String,
    /// The endpoint's playlist URL (MediaPackage's domain).
    pub origin_url: Option<String>,
    /// The MediaLive channel.
    pub channel_id: String,
}

impl Provisioned {
    /// The playlist's path on the origin (what CloudFront serves under its domain).
    pub fn playlist_path(&self) -> Option<String> {
        let url = self.origin_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.find('/').map(|i| rest[i..].to_string())
    }
}

/// A MediaLive channel as the console shows it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ChannelStatus {
    /// `IDLE`, `STARTING`, `RUNNING`, `STOPPING`…
    pub state: String,
    /// Pipelines running (1 for SINGLE_PIPELINE, 2 for STANDARD when healthy).
    pub pipelines_running: i32,
    /// The input attachment each pipeline takes (`primary` or `backup`).
    pub active_input: Option<String>,
    /// Alerts set now, in AWS's words.
    pub alerts: Vec<String>,
}

/// Attachment names, as input switches name them.
pub const PRIMARY: &str = "primary";
/// The backup input's attachment.
pub const BACKUP: &str = "backup";

impl Aws {
    /// Makes what the event needs, or finds it made already (by name and tag).
    pub async fn provision(&self, event: &str, preset: &Preset) -> Result<Provisioned, AwsError> {
        let name = resource_name(event);
        let security_group_id = self.security_group(event).await?;
        let (input_id, mut rtmp_urls) = self.input(event, &name, &security_group_id).await?;
        let backup_input_id = if self.cfg.backup_input {
            let (id, urls) = self.input(event, &format!("{name}-backup"), &security_group_id).await?;
            rtmp_urls.extend(urls);
            Some(id)
        } else {
            None
        };
        let destination = ml::MediaPackageOutputDestinationSettings::builder();
        let (mediapackage_channel_id, channel_group, origin_endpoint_id, origin_url, destination) = match preset.packaging {
            Packaging::HlsV1 => {
                let id = self.mediapackage_channel(event, &name).await?;
                let (endpoint, url) = self.origin_endpoint(event, &name, preset).await?;
                let destination = destination.channel_id(&id).build();
                (id, None, endpoint, url, destination)
            }
            Packaging::LowLatencyHlsV2 => {
                let V2 { channel, endpoint, url } = self.package_v2(event, &name, preset).await?;
                let group = self.cfg.channel_group.clone();
                let destination = destination.channel_group(&group).channel_name(&channel).build();
                (channel, Some(group), endpoint, url, destination)
            }
        };
        let channel_id = self.channel(event, &name, &input_id, backup_input_id.as_deref(), destination, preset).await?;
        let p = Provisioned {
            event: event.to_string(),
            security_group_id,
            input_id,
            backup_input_id,
            rtmp_urls,
            mediapackage_channel_id,
            channel_group,
            origin_endpoint_id,
            origin_url,
            channel_id,
        };
        tracing::info!(event, channel = %p.channel_id, input = %p.input_id, "aws: provisioned");
        Ok(p)
    }

    /// What the event has in AWS, found without making anything (parts not found
    /// are empty); `None` when it has nothing at all.
    pub async fn find(&self, event: &str) -> Result<Option<Provisioned>, AwsError> {
        let name = resource_name(event);
        let mut p = Provisioned { event: event.to_string(), ..Provisioned::default() };
        if self.cfg.input_security_group_id.is_none() {
            for g in self.medialive.list_input_security_groups().into_paginator().items().send().collect::<Vec<_>>().await {
                let g = g.map_err(|e| classify("ListInputSecurityGroups", e))?;
                if tagged(g.tags(), event) {
                    p.security_group_id = g.id().unwrap_or_default().to_string();
                }
            }
        }
        for i in self.medialive.list_inputs().into_paginator().items().send().collect::<Vec<_>>().await {
            let i = i.map_err(|e| classify("ListInputs", e))?;
            if !tagged(i.tags(), event) || gone(i.state().map(|s| s.as_str())) {
                continue;
            }
            let id = i.id().unwrap_or_default().to_string();
            if i.name() == Some(name.as_str()) {
                p.input_id = id;
            } else if i.name() == Some(format!("{name}-backup").as_str()) {
                p.backup_input_id = Some(id);
            }
        }
        for c in self.medialive.list_channels().into_paginator().items().send().collect::<Vec<_>>().await {
            let c = c.map_err(|e| classify("ListChannels", e))?;
            if c.name() == Some(name.as_str()) && tagged(c.tags(), event) && !gone(c.state().map(|s| s.as_str())) {
                p.channel_id = c.id().unwrap_or_default().to_string();
            }
        }
        match self.mediapackage.describe_channel().id(&name).send().await {
            Ok(_) => p.mediapackage_channel_id = name.clone(),
            Err(e) => ignore_missing(Err(classify("DescribeChannel (MediaPackage)", e)))?,
        }
        let endpoint = format!("{name}-hls");
        match self.mediapackage.describe_origin_endpoint().id(&endpoint).send().await {
            Ok(o) => (p.origin_endpoint_id, p.origin_url) = (endpoint, o.url().map(str::to_string)),
            Err(e) => ignore_missing(Err(classify("DescribeOriginEndpoint", e)))?,
        }
        // An `ultra-low` event's are in MediaPackage v2 instead.
        if p.mediapackage_channel_id.is_empty()
            && let Some(v2) = self.find_v2(&name).await?
        {
            p.channel_group = Some(self.cfg.channel_group.clone());
            (p.mediapackage_channel_id, p.origin_endpoint_id, p.origin_url) = (v2.channel, v2.endpoint, v2.url);
        }
        let nothing = p.security_group_id.is_empty()
            && p.input_id.is_empty()
            && p.backup_input_id.is_none()
            && p.channel_id.is_empty()
            && p.mediapackage_channel_id.is_empty()
            && p.origin_endpoint_id.is_empty();
        Ok((!nothing).then_some(p))
    }

    async fn security_group(&self, event: &str) -> Result<String, AwsError> {
        if let Some(id) = &self.cfg.input_security_group_id {
            return Ok(id.clone());
        }
        let groups = self.medialive.list_input_security_groups().into_paginator().items().send().collect::<Vec<_>>().await;
        for g in groups {
            let g = g.map_err(|e| classify("ListInputSecurityGroups", e))?;
            if tagged(g.tags(), event) && let Some(id) = g.id() {
                return Ok(id.to_string());
            }
        }
        let mut req = self.medialive.create_input_security_group().tags(EVENT_TAG, event);
        for cidr in &self.cfg.allowed_cidrs {
            req = req.whitelist_rules(ml::InputWhitelistRuleCidr::builder().cidr(cidr).build());
        }
        let out = req.send().await.map_err(|e| classify("CreateInputSecurityGroup", e))?;
        out.security_group().and_then(|g| g.id()).map(str::to_string).ok_or_else(|| other("CreateInputSecurityGroup", "no id in the answer"))
    }

    async fn input(&self, event: &str, name: &str, sg: &str) -> Result<(String, Vec<String>), AwsError> {
        let urls = |i: &ml::Input| i.destinations().iter().filter_map(|d| d.url().map(str::to_string)).collect::<Vec<_>>();
        for i in self.medialive.list_inputs().into_paginator().items().send().collect::<Vec<_>>().await {
            let i = i.map_err(|e| classify("ListInputs", e))?;
            if i.name() == Some(name) && tagged(i.tags(), event) && !gone(i.state().map(|s| s.as_str())) {
                return Ok((i.id().unwrap_or_default().to_string(), urls(&i)));
            }
        }
        // One destination per pipeline; the stream names are fixed for the input's life.
        let pipelines = if self.cfg.channel_class == "STANDARD" { 2 } else { 1 };
        let mut req = self
            .medialive
            .create_input()
            .name(name)
            .r#type(ml::InputType::RtmpPush)
            .input_security_groups(sg)
            .tags(EVENT_TAG, event)
            .request_id(format!("{name}-input"));
        for p in 0..pipelines {
            req = req.destinations(ml::InputDestinationRequest::builder().stream_name(format!("casecast/{event}-{p}")).build());
        }
        let out = req.send().await.map_err(|e| classify("CreateInput", e))?;
        let input = out.input().ok_or_else(|| other("CreateInput", "no input in the answer"))?;
        Ok((input.id().unwrap_or_default().to_string(), urls(input)))
    }

    async fn mediapackage_channel(&self, event: &str, id: &str) -> Result<String, AwsError> {
        match self.mediapackage.describe_channel().id(id).send().await {
            Ok(_) => return Ok(id.to_string()),
            Err(e) => {
                let e = classify("DescribeChannel (MediaPackage)", e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        self.mediapackage
            .create_channel()
            .id(id)
            .description(format!("casecast event {event}"))
            .tags(EVENT_TAG, event)
            .send()
            .await
            .map_err(|e| classify("CreateChannel (MediaPackage)", e))?;
        Ok(id.to_string())
    }

    async fn origin_endpoint(&self, event: &str, name: &str, preset: &Preset) -> Result<(String, Option<String>), AwsError> {
        let id = format!("{name}-hls");
        match self.mediapackage.describe_origin_endpoint().id(&id).send().await {
            Ok(o) => return Ok((id, o.url().map(str::to_string))),
            Err(e) => {
                let e = classify("DescribeOriginEndpoint", e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        let hls = mp::HlsPackage::builder()
            .segment_duration_seconds(preset.segment_seconds)
            .playlist_window_seconds(preset.playlist_window_seconds)
            .program_date_time_interval_seconds(preset.segment_seconds)
            .ad_markers(mp::AdMarkers::Passthrough)
            .include_iframe_only_stream(false)
            .playlist_type(mp::PlaylistType::Event)
            .build();
        let out = self
            .mediapackage
            .create_origin_endpoint()
            .channel_id(name)
            .id(&id)
            .manifest_name("index")
            .hls_package(hls)
            .startover_window_seconds(preset.startover_window_seconds)
            .time_delay_seconds(preset.time_delay_seconds)
            .origination(mp::Origination::Allow)
            .tags(EVENT_TAG, event)
            .send()
            .await
            .map_err(|e| classify("CreateOriginEndpoint", e))?;
        Ok((id, out.url().map(str::to_string)))
    }

    async fn channel(
        &self,
        event: &str,
        name: &str,
        input: &str,
        backup: Option<&str>,
        destination: ml::MediaPackageOutputDestinationSettings,
        preset: &Preset,
    ) -> Result<String, AwsError> {
        for c in self.medialive.list_channels().into_paginator().items().send().collect::<Vec<_>>().await {
            let c = c.map_err(|e| classify("ListChannels", e))?;
            if c.name() == Some(name) && tagged(c.tags(), event) && !gone(c.state().map(|s| s.as_str())) {
                // A channel made for the other MediaPackage cannot feed this one.
                let made: Vec<_> = c.destinations().iter().flat_map(|d| d.media_package_settings()).collect();
                let made_v2 = made.iter().any(|m| m.channel_group().is_some());
                if !made.is_empty() && made_v2 != destination.channel_group().is_some() {
                    let (was, now) = if made_v2 { ("ultra-low", preset.name) } else { ("quality or low-latency", "ultra-low") };
                    return Err(other(
                        "CreateChannel (MediaLive)",
                        &format!("the event's channel {name} was made for the {was} preset's MediaPackage, not {now}'s; end the event (which tears it down) or set its preset back"),
                    ));
                }
                return Ok(c.id().unwrap_or_default().to_string());
            }
        }
        let mut primary = ml::InputAttachment::builder().input_attachment_name(PRIMARY).input_id(input);
        let mut attachments = Vec::new();
        if let Some(backup) = backup {
            // Automatic input failover: the backup takes over after 1 s without the
            // primary, and hands back when it returns (PRIMARY_INPUT_PREFERRED).
            primary = primary.automatic_input_failover_settings(
                ml::AutomaticInputFailoverSettings::builder()
                    .secondary_input_id(backup)
                    .input_preference(ml::InputPreference::PrimaryInputPreferred)
                    .error_clear_time_msec(5000)
                    .failover_conditions(
                        ml::FailoverCondition::builder()
                            .failover_condition_settings(
                                ml::FailoverConditionSettings::builder()
                                    .input_loss_settings(ml::InputLossFailoverSettings::builder().input_loss_threshold_msec(1000).build())
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
            attachments.push(ml::InputAttachment::builder().input_attachment_name(BACKUP).input_id(backup).build());
        }
        attachments.insert(0, primary.build());
        let class = if self.cfg.channel_class == "STANDARD" { ml::ChannelClass::Standard } else { ml::ChannelClass::SinglePipeline };
        let mut req = self
            .medialive
            .create_channel()
            .name(name)
            .channel_class(class)
            .role_arn(&self.cfg.role_arn)
            .input_specification(
                ml::InputSpecification::builder()
                    .codec(ml::InputCodec::Avc)
                    .resolution(ml::InputResolution::Hd)
                    .maximum_bitrate(ml::InputMaximumBitrate::Max10Mbps)
                    .build(),
            )
            .destinations(
                ml::OutputDestination::builder()
                    .id("mediapackage")
                    .media_package_settings(destination)
                    .build(),
            )
            .encoder_settings(encoder_settings(preset, &self.cfg))
            .tags(EVENT_TAG, event)
            .request_id(format!("{name}-channel"));
        for a in attachments {
            req = req.input_attachments(a);
        }
        let out = req.send().await.map_err(|e| classify("CreateChannel (MediaLive)", e))?;
        out.channel().and_then(|c| c.id()).map(str::to_string).ok_or_else(|| other("CreateChannel (MediaLive)", "no id in the answer"))
    }

    /// Starts the channel and waits (bounded) until it runs.
    pub async fn start(&self, p: &Provisioned) -> Result<(), AwsError> {
        let state = self.status(p).await?.state;
        if state != "RUNNING" && state != "STARTING" {
            self.medialive.start_channel().channel_id(&p.channel_id).send().await.map_err(|e| classify("StartChannel", e))?;
        }
        self.medialive
            .wait_until_channel_running()
            .channel_id(&p.channel_id)
            .wait(self.cfg.wait())
            .await
            .map_err(|e| other("StartChannel", &format!("the channel did not reach RUNNING: {e}")))?;
        tracing::info!(event = %p.event, channel = %p.channel_id, "aws: channel running");
        Ok(())
    }

    /// Stops the channel and waits (bounded) until it is idle.
    pub async fn stop(&self, p: &Provisioned) -> Result<(), AwsError> {
        let state = self.status(p).await?.state;
        if state == "IDLE" {
            return Ok(());
        }
        if state != "STOPPING" {
            self.medialive.stop_channel().channel_id(&p.channel_id).send().await.map_err(|e| classify("StopChannel", e))?;
        }
        self.medialive
            .wait_until_channel_stopped()
            .channel_id(&p.channel_id)
            .wait(self.cfg.wait())
            .await
            .map_err(|e| other("StopChannel", &format!("the channel did not stop: {e}")))?;
        tracing::info!(event = %p.event, channel = %p.channel_id, "aws: channel stopped");
        Ok(())
    }

    /// The channel's state, pipelines, active input and alerts.
    pub async fn status(&self, p: &Provisioned) -> Result<ChannelStatus, AwsError> {
        let c = self.medialive.describe_channel().channel_id(&p.channel_id).send().await.map_err(|e| classify("DescribeChannel (MediaLive)", e))?;
        let alerts = match self.medialive.list_alerts().channel_id(&p.channel_id).state_filter("SET").send().await {
            Ok(a) => a.alerts().iter().filter_map(|a| a.message().map(str::to_string)).collect(),
            // Not every endpoint has alerts (moto has none): no alerts known.
            Err(e) => {
                tracing::debug!(error = %classify("ListAlerts", e), "aws: alerts not read");
                Vec::new()
            }
        };
        Ok(ChannelStatus {
            state: c.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            pipelines_running: c.pipelines_running_count().unwrap_or(0),
            active_input: c.pipeline_details().iter().find_map(|d| d.active_input_attachment_name().map(str::to_string)),
            alerts,
        })
    }

    /// Timed metadata for viewers now: an ID3 tag (base64) through the channel's
    /// schedule, carried into MediaPackage's segments.
    pub async fn send_metadata(&self, p: &Provisioned, id: &str, id3_base64: &str) -> Result<(), AwsError> {
        let settings = if p.channel_group.is_some() {
            // CMAF ingest (MediaPackage v2): a one-time ID3 in the CMAF segments.
            ml::ScheduleActionSettings::builder().timed_metadata_settings(ml::TimedMetadataScheduleActionSettings::builder().id3(id3_base64).build())
        } else {
            ml::ScheduleActionSettings::builder().hls_timed_metadata_settings(ml::HlsTimedMetadataScheduleActionSettings::builder().id3(id3_base64).build())
        }
        .build();
        self.schedule_now(p, &format!("casecast-metadata-{id}"), settings, "BatchUpdateSchedule (timed metadata)").await
    }

    /// Switches the channel to the primary or the backup input now (the operator's
    /// choice overrides automatic failover until switched back).
    pub async fn switch_input(&self, p: &Provisioned, backup: bool, action_id: &str) -> Result<(), AwsError> {
        if backup && p.backup_input_id.is_none() {
            return Err(other("BatchUpdateSchedule (input switch)", "this event has no backup input (aws.backup_input)"));
        }
        let to = if backup { BACKUP } else { PRIMARY };
        let settings = ml::ScheduleActionSettings::builder()
            .input_switch_settings(ml::InputSwitchScheduleActionSettings::builder().input_attachment_name_reference(to).build())
            .build();
        self.schedule_now(p, &format!("casecast-switch-{to}-{action_id}"), settings, "BatchUpdateSchedule (input switch)").await
    }

    async fn schedule_now(&self, p: &Provisioned, name: &str, settings: ml::ScheduleActionSettings, what: &str) -> Result<(), AwsError> {
        let action = ml::ScheduleAction::builder()
            .action_name(name)
            .schedule_action_start_settings(
                ml::ScheduleActionStartSettings::builder()
                    .immediate_mode_schedule_action_start_settings(ml::ImmediateModeScheduleActionStartSettings::builder().build())
                    .build(),
            )
            .schedule_action_settings(settings)
            .build();
        self.medialive
            .batch_update_schedule()
            .channel_id(&p.channel_id)
            .creates(ml::BatchScheduleActionCreateRequest::builder().schedule_actions(action).build())
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(())
    }

    /// Live-to-VOD: a harvest job copying `[start, end]` (RFC 3339) of the event
    /// into the configured bucket; answers the job's id. None without a bucket.
    pub async fn harvest(&self, p: &Provisioned, start: &str, end: &str) -> Result<Option<String>, AwsError> {
        let (Some(bucket), Some(role)) = (&self.cfg.harvest_bucket, &self.cfg.harvest_role_arn) else { return Ok(None) };
        let id = format!("{}-{}", resource_name(&p.event), start.replace([':', '-'], "").to_lowercase());
        if let Some(group) = &p.channel_group {
            self.harvest_v2(p, group, &id, start, end).await?;
            tracing::info!(event = %p.event, job = %id, "aws: harvest job created (MediaPackage v2)");
            return Ok(Some(id));
        }
        let (bucket, prefix) = bucket.split_once('/').unwrap_or((bucket, ""));
        let key = format!("{}{}{}/index.m3u8", prefix, if prefix.is_empty() || prefix.ends_with('/') { "" } else { "/" }, p.event);
        self.mediapackage
            .create_harvest_job()
            .id(&id)
            .origin_endpoint_id(&p.origin_endpoint_id)
            .start_time(start)
            .end_time(end)
            .s3_destination(mp::S3Destination::builder().bucket_name(bucket).manifest_key(key).role_arn(role).build())
            .send()
            .await
            .map_err(|e| classify("CreateHarvestJob", e))?;
        tracing::info!(event = %p.event, job = %id, "aws: harvest job created");
        Ok(Some(id))
    }

    /// Tears everything of the event down (stopping the channel first); what is
    /// gone already is skipped, so it can be run again.
    pub async fn teardown(&self, p: &Provisioned) -> Result<(), AwsError> {
        if !p.channel_id.is_empty() {
            match self.stop(p).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            let deleted = self.medialive.delete_channel().channel_id(&p.channel_id).send().await;
            ignore_missing(deleted.map(|_| ()).map_err(|e| classify("DeleteChannel (MediaLive)", e)))?;
            // Inputs can go once the channel has let go of them.
            let _ = self.medialive.wait_until_channel_deleted().channel_id(&p.channel_id).wait(self.cfg.wait()).await;
        }
        for input in std::iter::once(&p.input_id).chain(p.backup_input_id.as_ref()).filter(|i| !i.is_empty()) {
            ignore_missing(self.medialive.delete_input().input_id(input).send().await.map(|_| ()).map_err(|e| classify("DeleteInput", e)))?;
        }
        if self.cfg.input_security_group_id.is_none() && !p.security_group_id.is_empty() {
            let deleted = self.medialive.delete_input_security_group().input_security_group_id(&p.security_group_id).send().await;
            ignore_missing(deleted.map(|_| ()).map_err(|e| classify("DeleteInputSecurityGroup", e)))?;
        }
        if let Some(group) = &p.channel_group {
            self.teardown_v2(group, &p.mediapackage_channel_id, &p.origin_endpoint_id).await?;
            tracing::info!(event = %p.event, "aws: torn down");
            return Ok(());
        }
        if !p.origin_endpoint_id.is_empty() {
            let endpoint = self.mediapackage.delete_origin_endpoint().id(&p.origin_endpoint_id).send().await;
            ignore_missing(endpoint.map(|_| ()).map_err(|e| classify("DeleteOriginEndpoint", e)))?;
        }
        if !p.mediapackage_channel_id.is_empty() {
            let channel = self.mediapackage.delete_channel().id(&p.mediapackage_channel_id).send().await;
            ignore_missing(channel.map(|_| ()).map_err(|e| classify("DeleteChannel (MediaPackage)", e)))?;
        }
        tracing::info!(event = %p.event, "aws: torn down");
        Ok(())
    }

    /// The events with a MediaLive channel in this account and region (by tag), and
    /// each channel's state: what a restarted server finds.
    pub async fn channels(&self) -> Result<Vec<(String, String, String)>, AwsError> {
        let mut out = Vec::new();
        for c in self.medialive.list_channels().into_paginator().items().send().collect::<Vec<_>>().await {
            let c = c.map_err(|e| classify("ListChannels", e))?;
            let state = c.state().map(|s| s.as_str().to_string()).unwrap_or_default();
            if let Some(event) = c.tags().and_then(|t| t.get(EVENT_TAG))
                && !gone(Some(&state))
            {
                out.push((event.clone(), c.id().unwrap_or_default().to_string(), state));
            }
        }
        Ok(out)
    }
}

fn tagged(tags: Option<&std::collections::HashMap<String, String>>, event: &str) -> bool {
    tags.and_then(|t| t.get(EVENT_TAG)).is_some_and(|v| v == event)
}

fn gone(state: Option<&str>) -> bool {
    matches!(state, Some("DELETING" | "DELETED"))
}

fn other(what: &str, message: &str) -> AwsError {
    AwsError::Other { what: what.into(), message: message.into() }
}

pub(crate) fn ignore_missing(r: Result<(), AwsError>) -> Result<(), AwsError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

/// The requests, checked field by field against the MediaLive and MediaPackage API
/// references, for what moto does not have: input security groups, schedules,
/// harvest jobs, and RTMP destinations with URLs. The answers are AWS's, as its
/// references document them.
#[cfg(test)]
pub(crate) mod replay_tests {
    use aws_sdk_medialive::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    use serde_json::{Value, json};

    use super::*;
    use crate::AwsConfig;

    pub(crate) fn answer(status: u16, body: Value) -> http::Response<SdkBody> {
        http::Response::builder().status(status).header("content-type", "application/json").body(SdkBody::from(body.to_string())).unwrap()
    }

    pub(crate) fn replayed(events: Vec<(u16, Value)>, cfg: AwsConfig) -> (Aws, StaticReplayClient) {
        let replay = StaticReplayClient::new(
            events
                .into_iter()
                .map(|(s, b)| ReplayEvent::new(http::Request::builder().uri("https://any").body(SdkBody::empty()).unwrap(), answer(s, b)))
                .collect(),
        );
        let shared = aws_config::SdkConfig::builder()
            .http_client(replay.clone())
            .region(Region::new("eu-central-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKIDTEST", "secret", None, None, "test")))
            .behavior_version(BehaviorVersion::latest())
            .build();
        (Aws::from_config(&shared, cfg), replay)
    }

    /// (method, path, JSON body) of each request made.
    pub(crate) fn requests(replay: &StaticReplayClient) -> Vec<(String, String, Value)> {
        replay
            .actual_requests()
            .map(|r| {
                let uri: http::Uri = r.uri().parse().unwrap();
                let body = r.body().bytes().filter(|b| !b.is_empty()).map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
                (r.method().to_string(), uri.path().to_string(), body)
            })
            .collect()
    }

    pub(crate) fn cfg() -> AwsConfig {
        AwsConfig {
            region: "eu-central-1".into(),
            role_arn: "arn:aws:iam::123456789012:role/MediaLiveAccessRole".into(),
            allowed_cidrs: vec!["203.0.113.0/24".into()],
            backup_input: true,
            harvest_bucket: Some("vod-bucket/events".into()),
            harvest_role_arn: Some("arn:aws:iam::123456789012:role/MediaPackageHarvest".into()),
            ..AwsConfig::default()
        }
    }

    pub(crate) fn not_found() -> (u16, Value) {
        (404, json!({"__type": "NotFoundException", "message": "channel not found"}))
    }

    #[tokio::test]
    async fn provisioning_from_nothing_makes_each_resource_as_documented() {
        let input = |id: &str, name: &str, n: u8| {
            json!({"input": {"id": id, "name": name, "type": "RTMP_PUSH", "state": "DETACHED", "securityGroups": ["sg-1"],
                "tags": {"casecast:event": "hip-7"},
                "destinations": [{"ip": "198.51.100.10", "port": "1935", "url": format!("rtmp://198.51.100.10:1935/casecast/hip-7-{n}")}]}})
        };
        let (aws, replay) = replayed(
            vec![
                (200, json!({"inputSecurityGroups": []})),
                (200, json!({"securityGroup": {"id": "sg-1", "whitelistRules": [{"cidr": "203.0.113.0/24"}], "tags": {"casecast:event": "hip-7"}}})),
                (200, json!({"inputs": []})),
                (201, input("in-1", "casecast-hip-7", 0)),
                (200, json!({"inputs": [input("in-1", "casecast-hip-7", 0)["input"]]})),
                (201, input("in-2", "casecast-hip-7-backup", 1)),
                not_found(),
                (200, json!({"id": "casecast-hip-7", "hlsIngest": {"ingestEndpoints": []}})),
                not_found(),
                (200, json!({"id": "casecast-hip-7-hls", "channelId": "casecast-hip-7", "url": "https://abc.mediapackage.eu-central-1.amazonaws.com/out/v1/123/index.m3u8"})),
                (200, json!({"channels": []})),
                (201, json!({"channel": {"id": "ch-9", "name": "casecast-hip-7", "state": "CREATING"}})),
            ],
            cfg(),
        );
        let p = aws.provision("hip-7", &Preset::named("quality")).await.unwrap();
        assert_eq!(p.channel_id, "ch-9");
        assert_eq!(p.backup_input_id.as_deref(), Some("in-2"));
        assert_eq!(p.rtmp_urls, ["rtmp://198.51.100.10:1935/casecast/hip-7-0", "rtmp://198.51.100.10:1935/casecast/hip-7-1"]);
        assert_eq!(p.playlist_path().as_deref(), Some("/out/v1/123/index.m3u8"));
        let r = requests(&replay);
        let paths: Vec<(&str, &str)> = r.iter().map(|(m, p, _)| (m.as_str(), p.as_str())).collect();
        assert_eq!(
            paths,
            [
                ("GET", "/prod/inputSecurityGroups"),
                ("POST", "/prod/inputSecurityGroups"),
                ("GET", "/prod/inputs"),
                ("POST", "/prod/inputs"),
                ("GET", "/prod/inputs"),
                ("POST", "/prod/inputs"),
                ("GET", "/channels/casecast-hip-7"),
                ("POST", "/channels"),
                ("GET", "/origin_endpoints/casecast-hip-7-hls"),
                ("POST", "/origin_endpoints"),
                ("GET", "/prod/channels"),
                ("POST", "/prod/channels"),
            ]
        );
        // CreateInputSecurityGroup: whitelistRules [{cidr}], tags.
        assert_eq!(r[1].2, json!({"whitelistRules": [{"cidr": "203.0.113.0/24"}], "tags": {"casecast:event": "hip-7"}}));
        // CreateInput: RTMP_PUSH, the group, one destination (SINGLE_PIPELINE), a name,
        // tags, and an idempotency token (requestId).
        let ci = &r[3].2;
        assert_eq!(ci["type"], "RTMP_PUSH");
        assert_eq!(ci["inputSecurityGroups"], json!(["sg-1"]));
        assert_eq!(ci["destinations"], json!([{"streamName": "casecast/hip-7-0"}]));
        assert_eq!((&ci["name"], &ci["tags"]["casecast:event"]), (&json!("casecast-hip-7"), &json!("hip-7")));
        assert!(ci["requestId"].is_string());
        assert_eq!(r[5].2["name"], "casecast-hip-7-backup");
        // MediaPackage: the channel, and the HLS endpoint from the preset.
        assert_eq!(r[7].2["id"], "casecast-hip-7");
        let oe = &r[9].2;
        assert_eq!(oe["channelId"], "casecast-hip-7");
        assert_eq!(oe["hlsPackage"]["segmentDurationSeconds"], 6);
        assert_eq!(oe["hlsPackage"]["playlistWindowSeconds"], 60);
        assert_eq!(oe["startoverWindowSeconds"], 7200);
        assert_eq!(oe["timeDelaySeconds"], 0);
        assert_eq!(oe["hlsPackage"]["adMarkers"], "PASSTHROUGH");
        // MediaLive: class, role, input attachments with failover, the MediaPackage
        // destination, and the encoder.
        let ch = &r[11].2;
        assert_eq!(ch["channelClass"], "SINGLE_PIPELINE");
        assert_eq!(ch["roleArn"], "arn:aws:iam::123456789012:role/MediaLiveAccessRole");
        assert_eq!(ch["inputAttachments"][0]["inputId"], "in-1");
        assert_eq!(ch["inputAttachments"][0]["inputAttachmentName"], "primary");
        let failover = &ch["inputAttachments"][0]["automaticInputFailoverSettings"];
        assert_eq!(failover["secondaryInputId"], "in-2");
        assert_eq!(failover["inputPreference"], "PRIMARY_INPUT_PREFERRED");
        assert_eq!(failover["failoverConditions"][0]["failoverConditionSettings"]["inputLossSettings"]["inputLossThresholdMsec"], 1000);
        assert_eq!(ch["inputAttachments"][1], json!({"inputAttachmentName": "backup", "inputId": "in-2"}));
        assert_eq!(ch["destinations"], json!([{"id": "mediapackage", "mediaPackageSettings": [{"channelId": "casecast-hip-7"}]}]));
        let enc = &ch["encoderSettings"];
        let videos = enc["videoDescriptions"].as_array().unwrap();
        assert_eq!(videos.len(), 3);
        let h264 = &videos[0]["codecSettings"]["h264Settings"];
        assert_eq!((videos[0]["width"].as_i64(), videos[0]["height"].as_i64()), (Some(1280), Some(720)));
        assert_eq!((h264["gopSize"].as_f64(), &h264["gopSizeUnits"]), (Some(2.0), &json!("SECONDS")));
        assert_eq!((h264["rateControlMode"].as_str(), h264["bitrate"].as_i64()), (Some("CBR"), Some(3_500_000)));
        assert_eq!(enc["audioDescriptions"][0]["codecSettings"]["aacSettings"]["bitrate"].as_f64(), Some(128_000.0));
        let group = &enc["outputGroups"][0];
        assert_eq!(group["outputGroupSettings"]["mediaPackageGroupSettings"]["destination"]["destinationRefId"], "mediapackage");
        assert_eq!(group["outputs"].as_array().map(Vec::len), Some(3));
        assert_eq!(enc["globalConfiguration"]["inputLossBehavior"]["inputLossImageType"], "COLOR");
        assert_eq!(enc["globalConfiguration"]["inputLossBehavior"]["inputLossImageColor"], "000000");
        assert_eq!(enc["timecodeConfig"]["source"], "SYSTEMCLOCK");
    }

    #[tokio::test]
    async fn schedule_actions_and_the_harvest_job_are_as_documented() {
        let p = Provisioned {
            event: "hip-7".into(),
            channel_id: "ch-9".into(),
            origin_endpoint_id: "casecast-hip-7-hls".into(),
            backup_input_id: Some("in-2".into()),
            ..Provisioned::default()
        };
        let (aws, replay) = replayed(
            vec![
                (200, json!({"creates": {"scheduleActions": []}})),
                (200, json!({"creates": {"scheduleActions": []}})),
                (200, json!({"id": "x", "status": "IN_PROGRESS"})),
            ],
            cfg(),
        );
        aws.send_metadata(&p, "m1", "SUQzBAA=").await.unwrap();
        aws.switch_input(&p, true, "a1").await.unwrap();
        let job = aws.harvest(&p, "2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z").await.unwrap();
        assert!(job.is_some_and(|j| j.starts_with("casecast-hip-7-")));
        let r = requests(&replay);
        assert_eq!((r[0].0.as_str(), r[0].1.as_str()), ("PUT", "/prod/channels/ch-9/schedule"));
        let action = &r[0].2["creates"]["scheduleActions"][0];
        assert_eq!(action["actionName"], "casecast-metadata-m1");
        assert_eq!(action["scheduleActionSettings"]["hlsTimedMetadataSettings"]["id3"], "SUQzBAA=");
        assert_eq!(action["scheduleActionStartSettings"], json!({"immediateModeScheduleActionStartSettings": {}}));
        let switch = &r[1].2["creates"]["scheduleActions"][0];
        assert_eq!(switch["scheduleActionSettings"]["inputSwitchSettings"]["inputAttachmentNameReference"], "backup");
        assert_eq!((r[2].0.as_str(), r[2].1.as_str()), ("POST", "/harvest_jobs"));
        assert_eq!(r[2].2["originEndpointId"], "casecast-hip-7-hls");
        assert_eq!((&r[2].2["startTime"], &r[2].2["endTime"]), (&json!("2026-11-24T10:00:00Z"), &json!("2026-11-24T12:00:00Z")));
        assert_eq!(
            r[2].2["s3Destination"],
            json!({"bucketName": "vod-bucket", "manifestKey": "events/hip-7/index.m3u8", "roleArn": "arn:aws:iam::123456789012:role/MediaPackageHarvest"})
        );
        // No backup input: switching to it is refused before any call.
        let (aws, replay) = replayed(vec![], cfg());
        let no_backup = Provisioned { backup_input_id: None, ..p };
        assert!(aws.switch_input(&no_backup, true, "a2").await.is_err());
        assert_eq!(replay.actual_requests().count(), 0);
    }

    #[tokio::test]
    async fn aws_errors_say_what_to_fix() {
        let cases = [
            (403, json!({"__type": "ForbiddenException", "message": "User is not authorized to perform medialive:CreateInput"}), "docs/aws.md"),
            (422, json!({"__type": "UnprocessableEntityException", "message": "Limit exceeded for resource of type 'INPUT'"}), "quota"),
            (400, json!({"__type": "BadRequestException", "message": "Unable to assume role arn:aws:iam::1:role/x"}), "aws.role_arn"),
        ];
        for (status, body, hint) in cases {
            let (aws, _) = replayed(vec![(200, json!({"inputSecurityGroups": [{"id": "sg-1", "tags": {"casecast:event": "e"}}]})), (status, body.clone())], cfg());
            let e = aws.provision("e", &Preset::named("quality")).await.unwrap_err();
            assert!(e.to_string().contains(hint), "{body} → {e}");
            assert!(e.to_string().starts_with("ListInputs"), "{e}");
        }
    }
}
