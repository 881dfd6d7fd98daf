//! MediaPackage v2, for `ultra-low` events: low-latency HLS from CMAF ingest.
//!
//! Every event's channel lives in one channel group (`aws.channel_group`, made when
//! missing and kept): a group has one egress domain, so one CloudFront distribution
//! in front of it serves every event. Per event: a channel `casecast-E` taking CMAF
//! from MediaLive, a channel policy that lets MediaLive's role put to it, and an
//! origin endpoint `casecast-E-ll` with a low-latency HLS manifest and a policy that
//! lets viewers (CloudFront) get from it. What exists is found by name; what is gone
//! is skipped when tearing down, so each step can be run again.

use aws_sdk_mediapackagev2::types as mp2;
use serde_json::json;

use crate::errors::classify;
use crate::{Aws, AwsError, EVENT_TAG, Preset, Provisioned};

/// The origin endpoint's name, under the event's channel.
pub(crate) fn endpoint_name(channel: &str) -> String {
    format!("{channel}-ll")
}

/// The low-latency HLS manifest's name (`…/index.m3u8`).
const MANIFEST: &str = "index";

/// What MediaPackage v2 holds of an event.
pub(crate) struct V2 {
    pub channel: String,
    pub endpoint: String,
    pub url: Option<String>,
}

impl Aws {
    /// The channel group, the event's channel and its policy, the origin endpoint and
    /// its policy: made, or found made.
    pub(crate) async fn package_v2(&self, event: &str, name: &str, preset: &Preset) -> Result<V2, AwsError> {
        let group = &self.cfg.channel_group;
        self.channel_group_v2(group).await?;
        let arn = self.channel_v2(event, group, name).await?;
        // Put every time: a policy is replaced whole, and the role may have changed.
        let policy = channel_policy(&self.cfg.role_arn, &arn);
        self.mediapackagev2
            .put_channel_policy()
            .channel_group_name(group)
            .channel_name(name)
            .policy(policy.to_string())
            .send()
            .await
            .map_err(|e| classify("PutChannelPolicy (MediaPackage v2)", e))?;
        let (endpoint_arn, url) = self.endpoint_v2(event, group, name, preset).await?;
        let endpoint = endpoint_name(name);
        self.mediapackagev2
            .put_origin_endpoint_policy()
            .channel_group_name(group)
            .channel_name(name)
            .origin_endpoint_name(&endpoint)
            .policy(endpoint_policy(&endpoint_arn).to_string())
            .send()
            .await
            .map_err(|e| classify("PutOriginEndpointPolicy (MediaPackage v2)", e))?;
        Ok(V2 { channel: name.to_string(), endpoint, url })
    }

    async fn channel_group_v2(&self, group: &str) -> Result<(), AwsError> {
        match self.mediapackagev2.get_channel_group().channel_group_name(group).send().await {
            Ok(_) => return Ok(()),
            Err(e) => not_found_or(classify("GetChannelGroup (MediaPackage v2)", e))?,
        }
        self.mediapackagev2
            .create_channel_group()
            .channel_group_name(group)
            .description("casecast events (ultra-low)")
            .client_token(format!("{group}-group"))
            .send()
            .await
            .map_err(|e| classify("CreateChannelGroup (MediaPackage v2)", e))?;
        Ok(())
    }

    /// The channel's ARN.
    async fn channel_v2(&self, event: &str, group: &str, name: &str) -> Result<String, AwsError> {
        match self.mediapackagev2.get_channel().channel_group_name(group).channel_name(name).send().await {
            Ok(c) => return Ok(c.arn().to_string()),
            Err(e) => not_found_or(classify("GetChannel (MediaPackage v2)", e))?,
        }
        let out = self
            .mediapackagev2
            .create_channel()
            .channel_group_name(group)
            .channel_name(name)
            .input_type(mp2::InputType::Cmaf)
            .description(format!("casecast event {event}"))
            .tags(EVENT_TAG, event)
            .client_token(format!("{name}-channel"))
            .send()
            .await
            .map_err(|e| classify("CreateChannel (MediaPackage v2)", e))?;
        Ok(out.arn().to_string())
    }

    /// The endpoint's ARN and its playlist URL.
    async fn endpoint_v2(&self, event: &str, group: &str, name: &str, preset: &Preset) -> Result<(String, Option<String>), AwsError> {
        let endpoint = endpoint_name(name);
        let url = |m: &[mp2::GetLowLatencyHlsManifestConfiguration]| m.first().map(|m| m.url().to_string()).filter(|u| !u.is_empty());
        let found = self.mediapackagev2.get_origin_endpoint().channel_group_name(group).channel_name(name).origin_endpoint_name(&endpoint).send().await;
        match found {
            Ok(o) => return Ok((o.arn().to_string(), url(o.low_latency_hls_manifests()))),
            Err(e) => not_found_or(classify("GetOriginEndpoint (MediaPackage v2)", e))?,
        }
        let manifest = mp2::CreateLowLatencyHlsManifestConfiguration::builder()
            .manifest_name(MANIFEST)
            .manifest_window_seconds(preset.playlist_window_seconds)
            .program_date_time_interval_seconds(preset.segment_seconds)
            .build()
            .map_err(|e| other("CreateOriginEndpoint (MediaPackage v2)", &e.to_string()))?;
        let out = self
            .mediapackagev2
            .create_origin_endpoint()
            .channel_group_name(group)
            .channel_name(name)
            .origin_endpoint_name(&endpoint)
            .container_type(mp2::ContainerType::Cmaf)
            .segment(
                mp2::Segment::builder()
                    .segment_duration_seconds(preset.segment_seconds)
                    .segment_name("segment")
                    .include_iframe_only_streams(false)
                    .build(),
            )
            .low_latency_hls_manifests(manifest)
            .startover_window_seconds(preset.startover_window_seconds)
            .description(format!("casecast event {event}, low-latency HLS"))
            .tags(EVENT_TAG, event)
            .client_token(format!("{endpoint}-endpoint"))
            .send()
            .await
            .map_err(|e| classify("CreateOriginEndpoint (MediaPackage v2)", e))?;
        Ok((out.arn().to_string(), url(out.low_latency_hls_manifests())))
    }

    /// The event's channel and endpoint in the configured group, if there.
    pub(crate) async fn find_v2(&self, name: &str) -> Result<Option<V2>, AwsError> {
        let group = &self.cfg.channel_group;
        match self.mediapackagev2.get_channel().channel_group_name(group).channel_name(name).send().await {
            Ok(_) => {}
            Err(e) => {
                not_found_or(classify("GetChannel (MediaPackage v2)", e))?;
                return Ok(None);
            }
        }
        let endpoint = endpoint_name(name);
        let found = self.mediapackagev2.get_origin_endpoint().channel_group_name(group).channel_name(name).origin_endpoint_name(&endpoint).send().await;
        let (endpoint, url) = match found {
            Ok(o) => (endpoint, o.low_latency_hls_manifests().first().map(|m| m.url().to_string())),
            Err(e) => {
                not_found_or(classify("GetOriginEndpoint (MediaPackage v2)", e))?;
                (String::new(), None)
            }
        };
        Ok(Some(V2 { channel: name.to_string(), endpoint, url }))
    }

    /// Deletes the endpoint, then the channel (which a channel with endpoints may not
    /// be); policies go with what they are attached to. The group stays.
    pub(crate) async fn teardown_v2(&self, group: &str, channel: &str, endpoint: &str) -> Result<(), AwsError> {
        if !endpoint.is_empty() {
            let deleted =
                self.mediapackagev2.delete_origin_endpoint().channel_group_name(group).channel_name(channel).origin_endpoint_name(endpoint).send().await;
            crate::provision::ignore_missing(deleted.map(|_| ()).map_err(|e| classify("DeleteOriginEndpoint (MediaPackage v2)", e)))?;
        }
        if !channel.is_empty() {
            let deleted = self.mediapackagev2.delete_channel().channel_group_name(group).channel_name(channel).send().await;
            crate::provision::ignore_missing(deleted.map(|_| ()).map_err(|e| classify("DeleteChannel (MediaPackage v2)", e)))?;
        }
        Ok(())
    }

    /// Live-to-VOD from the low-latency endpoint: `[start, end]` (RFC 3339) into
    /// `s3://bucket/prefix/E/`. MediaPackage v2 writes with the bucket's policy, not
    /// a role (docs/aws.md).
    pub(crate) async fn harvest_v2(&self, p: &Provisioned, group: &str, job: &str, start: &str, end: &str) -> Result<(), AwsError> {
        let (channel, endpoint, event) = (&p.mediapackage_channel_id, &p.origin_endpoint_id, &p.event);
        let what = "CreateHarvestJob (MediaPackage v2)";
        let Some(bucket) = &self.cfg.harvest_bucket else { return Ok(()) };
        let (bucket, prefix) = bucket.split_once('/').unwrap_or((bucket, ""));
        let path = format!("{}{}{}", prefix, if prefix.is_empty() || prefix.ends_with('/') { "" } else { "/" }, event);
        let time = |t: &str| aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime).map_err(|e| other(what, &e.to_string()));
        let schedule = mp2::HarvesterScheduleConfiguration::builder().start_time(time(start)?).end_time(time(end)?).build().map_err(|e| other(what, &e.to_string()))?;
        let destination = mp2::S3DestinationConfig::builder().bucket_name(bucket).destination_path(path).build().map_err(|e| other(what, &e.to_string()))?;
        let manifest = mp2::HarvestedLowLatencyHlsManifest::builder().manifest_name(MANIFEST).build().map_err(|e| other(what, &e.to_string()))?;
        self.mediapackagev2
            .create_harvest_job()
            .channel_group_name(group)
            .channel_name(channel)
            .origin_endpoint_name(endpoint)
            .harvest_job_name(job)
            .harvested_manifests(mp2::HarvestedManifests::builder().low_latency_hls_manifests(manifest).build())
            .schedule_configuration(schedule)
            .destination(mp2::Destination::builder().s3_destination(destination).build())
            .tags(EVENT_TAG, event)
            .client_token(job)
            .send()
            .await
            .map_err(|e| classify(what, e))?;
        Ok(())
    }
}

/// MediaLive's role may put CMAF into this channel (the channel policy MediaPackage
/// documents for MediaLive ingest).
fn channel_policy(role_arn: &str, channel_arn: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Id": "casecast-medialive-ingest",
        "Statement": [{
            "Sid": "AllowMediaLiveRole",
            "Effect": "Allow",
            "Principal": {"AWS": role_arn},
            "Action": "mediapackagev2:PutObject",
            "Resource": channel_arn,
        }],
    })
}

/// Anyone (CloudFront, players) may get the endpoint's playlists and segments, as
/// the v1 endpoints allow; private events are signed at CloudFront.
fn endpoint_policy(endpoint_arn: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Id": "casecast-viewers",
        "Statement": [{
            "Sid": "AllowViewers",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["mediapackagev2:GetObject", "mediapackagev2:GetHeadObject"],
            "Resource": endpoint_arn,
        }],
    })
}

fn other(what: &str, message: &str) -> AwsError {
    AwsError::Other { what: what.into(), message: message.into() }
}

/// Not found is what a first provisioning expects; anything else stops it.
fn not_found_or(e: AwsError) -> Result<(), AwsError> {
    if e.is_not_found() { Ok(()) } else { Err(e) }
}

/// The MediaPackage v2 requests, checked field by field against its API reference
/// (moto has channel groups and channels, not policies, endpoints or harvests; the
/// end-to-end test runs those two on moto). The answers are AWS's, as documented.
#[cfg(test)]
mod replay_tests {
    use serde_json::{Value, json};

    use crate::provision::replay_tests::{cfg, replayed, requests};
    use crate::{AwsConfig, Preset, Provisioned};

    fn missing() -> (u16, Value) {
        (404, json!({"__type": "ResourceNotFoundException", "message": "MediaPackage can't find your channel"}))
    }

    const CHANNEL_ARN: &str = "arn:aws:mediapackagev2:eu-central-1:123456789012:channelGroup/casecast/channel/casecast-hip-7";
    const ENDPOINT_ARN: &str = "arn:aws:mediapackagev2:eu-central-1:123456789012:channelGroup/casecast/channel/casecast-hip-7/originEndpoint/casecast-hip-7-ll";
    const URL: &str = "https://abc123.egress.def456.mediapackagev2.eu-central-1.amazonaws.com/out/v1/casecast/casecast-hip-7/casecast-hip-7-ll/index.m3u8";

    fn one_input() -> AwsConfig {
        AwsConfig { backup_input: false, input_security_group_id: Some("sg-1".into()), ..cfg() }
    }

    fn endpoint() -> Value {
        json!({"Arn": ENDPOINT_ARN, "ChannelGroupName": "casecast", "ChannelName": "casecast-hip-7", "OriginEndpointName": "casecast-hip-7-ll",
            "ContainerType": "CMAF", "LowLatencyHlsManifests": [{"ManifestName": "index", "Url": URL}]})
    }

    #[tokio::test]
    async fn an_ultra_low_event_gets_a_low_latency_hls_endpoint_fed_by_cmaf_ingest() {
        let input = json!({"id": "in-1", "name": "casecast-hip-7", "type": "RTMP_PUSH", "tags": {"casecast:event": "hip-7"},
            "destinations": [{"url": "rtmp://198.51.100.10:1935/casecast/hip-7-0"}]});
        let (aws, replay) = replayed(
            vec![
                (200, json!({"inputs": []})),
                (201, json!({"input": input})),
                missing(),
                (200, json!({"ChannelGroupName": "casecast", "Arn": "arn:aws:mediapackagev2:eu-central-1:123456789012:channelGroup/casecast",
                    "EgressDomain": "abc123.egress.def456.mediapackagev2.eu-central-1.amazonaws.com"})),
                missing(),
                (200, json!({"Arn": CHANNEL_ARN, "ChannelName": "casecast-hip-7", "ChannelGroupName": "casecast", "InputType": "CMAF",
                    "IngestEndpoints": [{"Id": "1", "Url": "https://abc123-1.ingest.def456.mediapackagev2.eu-central-1.amazonaws.com/in/v1/casecast/1/casecast-hip-7/"}]})),
                (200, json!({})),
                missing(),
                (200, endpoint()),
                (200, json!({})),
                (200, json!({"channels": []})),
                (201, json!({"channel": {"id": "ch-9", "name": "casecast-hip-7", "state": "CREATING"}})),
            ],
            one_input(),
        );
        let p = aws.provision("hip-7", &Preset::named("ultra-low")).await.unwrap();
        assert_eq!((p.channel_group.as_deref(), p.mediapackage_channel_id.as_str()), (Some("casecast"), "casecast-hip-7"));
        assert_eq!((p.origin_endpoint_id.as_str(), p.origin_url.as_deref()), ("casecast-hip-7-ll", Some(URL)));
        assert_eq!(p.playlist_path().as_deref(), Some("/out/v1/casecast/casecast-hip-7/casecast-hip-7-ll/index.m3u8"));
        let r = requests(&replay);
        let paths: Vec<(&str, &str)> = r.iter().map(|(m, p, _)| (m.as_str(), p.as_str())).collect();
        assert_eq!(
            paths,
            [
                ("GET", "/prod/inputs"),
                ("POST", "/prod/inputs"),
                ("GET", "/channelGroup/casecast"),
                ("POST", "/channelGroup"),
                ("GET", "/channelGroup/casecast/channel/casecast-hip-7"),
                ("POST", "/channelGroup/casecast/channel"),
                ("PUT", "/channelGroup/casecast/channel/casecast-hip-7/policy"),
                ("GET", "/channelGroup/casecast/channel/casecast-hip-7/originEndpoint/casecast-hip-7-ll"),
                ("POST", "/channelGroup/casecast/channel/casecast-hip-7/originEndpoint"),
                ("POST", "/channelGroup/casecast/channel/casecast-hip-7/originEndpoint/casecast-hip-7-ll/policy"),
                ("GET", "/prod/channels"),
                ("POST", "/prod/channels"),
            ]
        );
        // CreateChannelGroup: the group's name; CreateChannel: CMAF input, tagged.
        assert_eq!(r[3].2["ChannelGroupName"], "casecast");
        let ch = &r[5].2;
        assert_eq!((&ch["ChannelName"], &ch["InputType"], &ch["tags"]["casecast:event"]), (&json!("casecast-hip-7"), &json!("CMAF"), &json!("hip-7")));
        // PutChannelPolicy: MediaLive's role may PutObject into this channel, and no more.
        let policy: Value = serde_json::from_str(r[6].2["Policy"].as_str().unwrap()).unwrap();
        let st = &policy["Statement"][0];
        assert_eq!(st["Principal"]["AWS"], "arn:aws:iam::123456789012:role/MediaLiveAccessRole");
        assert_eq!((&st["Effect"], &st["Action"], &st["Resource"]), (&json!("Allow"), &json!("mediapackagev2:PutObject"), &json!(CHANNEL_ARN)));
        // CreateOriginEndpoint: CMAF segments of the preset's length, one low-latency
        // HLS manifest, the DVR window.
        let oe = &r[8].2;
        assert_eq!(oe["ContainerType"], "CMAF");
        assert_eq!(oe["OriginEndpointName"], "casecast-hip-7-ll");
        assert_eq!(oe["Segment"]["SegmentDurationSeconds"], 1);
        assert_eq!(oe["LowLatencyHlsManifests"][0]["ManifestName"], "index");
        assert_eq!(oe["LowLatencyHlsManifests"][0]["ManifestWindowSeconds"], 30);
        assert!(oe["HlsManifests"].is_null(), "only the low-latency manifest: {oe}");
        assert_eq!(oe["StartoverWindowSeconds"], 7200);
        // PutOriginEndpointPolicy: viewers may get from this endpoint.
        let policy: Value = serde_json::from_str(r[9].2["Policy"].as_str().unwrap()).unwrap();
        let st = &policy["Statement"][0];
        assert_eq!((&st["Principal"], &st["Resource"]), (&json!("*"), &json!(ENDPOINT_ARN)));
        assert_eq!(st["Action"], json!(["mediapackagev2:GetObject", "mediapackagev2:GetHeadObject"]));
        // MediaLive: the MediaPackage output group to the v2 channel, CMAF segments of
        // 1 s (one GOP), ID3 on; one output per track, video naming the audio group.
        let ch = &r[11].2;
        assert_eq!(ch["destinations"], json!([{"id": "mediapackage", "mediaPackageSettings": [{"channelGroup": "casecast", "channelName": "casecast-hip-7"}]}]));
        let enc = &ch["encoderSettings"];
        let group = &enc["outputGroups"][0];
        let v2 = &group["outputGroupSettings"]["mediaPackageGroupSettings"]["mediapackageV2GroupSettings"];
        assert_eq!((v2["segmentLength"].as_i64(), &v2["segmentLengthUnits"]), (Some(1), &json!("SECONDS")));
        assert_eq!(v2["id3Behavior"], "ENABLED");
        let h264 = &enc["videoDescriptions"][0]["codecSettings"]["h264Settings"];
        assert_eq!(h264["gopSize"].as_f64(), Some(1.0));
        let outputs = group["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), 4, "three video renditions and the audio");
        for o in &outputs[..3] {
            assert!(o["audioDescriptionNames"].is_null(), "{o}");
            assert_eq!(o["outputSettings"]["mediaPackageOutputSettings"]["mediaPackageV2DestinationSettings"]["audioRenditionSets"], "program_audio");
        }
        assert_eq!(outputs[3]["audioDescriptionNames"], json!(["audio_aac"]));
        assert_eq!(outputs[3]["outputSettings"]["mediaPackageOutputSettings"]["mediaPackageV2DestinationSettings"]["audioGroupId"], "program_audio");
    }

    #[tokio::test]
    async fn provisioning_again_finds_what_is_made_and_makes_nothing_twice() {
        let (aws, replay) = replayed(
            vec![
                (200, json!({"inputs": [{"id": "in-1", "name": "casecast-hip-7", "state": "ATTACHED", "tags": {"casecast:event": "hip-7"}}]})),
                (200, json!({"ChannelGroupName": "casecast", "Arn": "arn:aws:mediapackagev2:eu-central-1:123456789012:channelGroup/casecast"})),
                (200, json!({"Arn": CHANNEL_ARN, "ChannelName": "casecast-hip-7", "ChannelGroupName": "casecast"})),
                (200, json!({})),
                (200, endpoint()),
                (200, json!({})),
                (200, json!({"channels": [{"id": "ch-9", "name": "casecast-hip-7", "state": "IDLE", "tags": {"casecast:event": "hip-7"}}]})),
            ],
            one_input(),
        );
        let p = aws.provision("hip-7", &Preset::named("ultra-low")).await.unwrap();
        assert_eq!((p.channel_id.as_str(), p.origin_url.as_deref()), ("ch-9", Some(URL)));
        let r = requests(&replay);
        assert!(r.iter().all(|(m, path, _)| m == "GET" || path.ends_with("/policy")), "only looked up, and the policies put again: {r:?}");
        assert_eq!(r.len(), 7);
    }

    #[tokio::test]
    async fn a_channel_made_for_mediapackage_v1_is_not_taken_for_an_ultra_low_event() {
        let (aws, _) = replayed(
            vec![
                (200, json!({"inputs": [{"id": "in-1", "name": "casecast-hip-7", "state": "ATTACHED", "tags": {"casecast:event": "hip-7"}}]})),
                (200, json!({"ChannelGroupName": "casecast"})),
                (200, json!({"Arn": CHANNEL_ARN})),
                (200, json!({})),
                (200, endpoint()),
                (200, json!({})),
                (200, json!({"channels": [{"id": "ch-9", "name": "casecast-hip-7", "state": "IDLE", "tags": {"casecast:event": "hip-7"},
                    "destinations": [{"id": "mediapackage", "mediaPackageSettings": [{"channelId": "casecast-hip-7"}]}]}]})),
            ],
            one_input(),
        );
        let e = aws.provision("hip-7", &Preset::named("ultra-low")).await.unwrap_err().to_string();
        assert!(e.contains("made for the quality or low-latency preset") && e.contains("end the event"), "{e}");
    }

    #[tokio::test]
    async fn metadata_harvest_and_teardown_go_to_the_v2_resources() {
        let p = Provisioned {
            event: "hip-7".into(),
            mediapackage_channel_id: "casecast-hip-7".into(),
            channel_group: Some("casecast".into()),
            origin_endpoint_id: "casecast-hip-7-ll".into(),
            ..Provisioned::default()
        };
        let (aws, replay) = replayed(
            vec![
                (200, json!({"creates": {"scheduleActions": []}})),
                (200, json!({"HarvestJobName": "x", "Status": "QUEUED"})),
                (200, json!({})),
                missing(),
            ],
            AwsConfig { channel_group: "casecast".into(), ..cfg() },
        );
        let mut with_channel = p.clone();
        with_channel.channel_id = "ch-9".into();
        aws.send_metadata(&with_channel, "m1", "SUQzBAA=").await.unwrap();
        let job = aws.harvest(&p, "2026-11-24T10:00:00Z", "2026-11-24T12:00:00Z").await.unwrap().unwrap();
        // Nothing of MediaLive's (no channel id): the endpoint, then the channel, which
        // is gone already.
        aws.teardown(&p).await.unwrap();
        let r = requests(&replay);
        // CMAF ingest takes the one-time ID3 action, not the HLS one.
        let action = &r[0].2["creates"]["scheduleActions"][0];
        assert_eq!(action["scheduleActionSettings"], json!({"timedMetadataSettings": {"id3": "SUQzBAA="}}));
        assert_eq!((r[1].0.as_str(), r[1].1.as_str()), ("POST", "/channelGroup/casecast/channel/casecast-hip-7/originEndpoint/casecast-hip-7-ll/harvestJob"));
        let h = &r[1].2;
        assert_eq!(h["HarvestJobName"], job.as_str());
        assert_eq!(h["HarvestedManifests"], json!({"LowLatencyHlsManifests": [{"ManifestName": "index"}]}));
        assert_eq!(h["Destination"], json!({"S3Destination": {"BucketName": "vod-bucket", "DestinationPath": "events/hip-7"}}));
        assert!(h["ScheduleConfiguration"]["StartTime"].is_number() && h["ScheduleConfiguration"]["EndTime"].is_number(), "{h}");
        assert_eq!(
            r[2..].iter().map(|(m, p, _)| (m.as_str(), p.as_str())).collect::<Vec<_>>(),
            [("DELETE", "/channelGroup/casecast/channel/casecast-hip-7/originEndpoint/casecast-hip-7-ll"), ("DELETE", "/channelGroup/casecast/channel/casecast-hip-7")]
        );
    }

    #[test]
    fn a_channel_group_name_is_checked_before_any_call() {
        let bad = AwsConfig { channel_group: "events/2026".into(), ..cfg() };
        assert!(bad.check().unwrap_err().contains("aws.channel_group"));
        assert!(cfg().check().is_ok());
    }
}
