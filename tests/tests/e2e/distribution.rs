//! The AWS distribution's control plane and its RTMP push, against moto.

use super::*;

/// What moto holds of a MediaLive or MediaPackage collection (`prod/channels`,
/// `prod/inputs`, `channels`): moto routes by the service named in the signature's
/// scope and checks nothing else.
fn moto_list(moto: &Moto, service: &str, path: &str, key: &str) -> Vec<Value> {
    moto_get(moto, service, path).1[key].as_array().cloned().unwrap_or_default()
}

/// The status and JSON moto answers a GET of `path` on `service` with.
fn moto_get(moto: &Moto, service: &str, path: &str) -> (u16, Value) {
    let auth = format!("AWS4-HMAC-SHA256 Credential=testing/20261124/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0");
    let (status, _, body) = http_request("GET", &format!("{}/{path}", moto.endpoint), &[("Authorization", &auth)], None).unwrap_or_default();
    (status, serde_json::from_slice::<Value>(&body).unwrap_or_default())
}

/// The AWS distribution's control plane against moto (which stands in for MediaLive
/// and MediaPackage; the security group, schedule and harvest calls it lacks are
/// checked by the replay tests in `casecast-aws`): going on air provisions the event
/// and starts its channel (RUNNING, seen in moto and in the distribution API with the
/// CloudFront viewer URL); off air stops it; after a crash the restarted server finds
/// the channel, stops it once it has run idle past `idle_stop_secs` and says so, and
/// going on air again re-uses what exists; ending the event tears everything down.
#[test]
fn the_program_goes_out_through_medialive_on_moto() -> Result<()> {
    let moto = Moto::start()?;
    // SAFETY: nextest runs each test in a process of its own; the server started
    // below inherits these (dummy credentials for moto).
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
    let dir = TempDir::new("aws");
    let key = dir.0.join("cloudfront.pem");
    let made = std::process::Command::new("openssl").args(["genrsa", "-traditional", "-out"]).arg(&key).arg("2048").output()?;
    assert!(made.status.success(), "openssl genrsa");
    let config = dir.0.join("casecast.toml");
    std::fs::write(
        &config,
        format!(
            "distribution = \"aws\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             role_arn = \"arn:aws:iam::123456789012:role/MediaLiveAccessRole\"\n\
             input_security_group_id = \"sg-0123\"\nidle_stop_secs = 3\nwait_secs = 60\n\
             cloudfront_domain = \"d111111abcdef8.cloudfront.net\"\n\
             cloudfront_key_pair_id = \"K2JCJMDEHXQW5F\"\ncloudfront_private_key = \"{}\"\n",
            moto.endpoint,
            key.display()
        ),
    )?;
    let mut server = Server::demo(&["--config", config.to_str().unwrap(), "--program-preset", "low-latency"])?;
    let center = server.token("*", Role::Operator, "Ops Gil");
    let base = format!("{}/api/events", server.url);
    // The demo is an event of its own, made with the server's preset.
    let change = json!({"title": "Knee, OR 1", "policy": {"latency_preset": "low-latency"}});
    assert_eq!(api("PATCH", &format!("{base}/demo"), Some(&center), Some(change))?.0, 200);
    let program = format!("{base}/demo/program");
    let aws = |_: &Server| api("GET", &format!("{base}/demo/distribution"), Some(&center), None).map(|(_, d)| d["aws"].clone()).unwrap_or(Value::Null);
    // On air once the demo's compositor is in the room (404 until then).
    wait_for("the program on air", Duration::from_secs(60), || {
        (api("POST", &program, Some(&center), Some(json!({"on_air": true}))).ok()?.0 == 202).then_some(())
    })?;
    let running = wait_for("the channel running", Duration::from_secs(60), || {
        let a = aws(&server);
        (a["phase"] == "running" && a["channel"]["state"] == "RUNNING").then_some(a)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}\n{}", aws(&server), server.log_text()))?;
    let r = &running["resources"];
    assert_eq!(r["mediapackage_channel_id"], "casecast-demo");
    assert_eq!(r["origin_endpoint_id"], "casecast-demo-hls");
    assert!(running["viewer_url"].as_str().is_some_and(|u| u.starts_with("https://d111111abcdef8.cloudfront.net/")), "{running}");
    // moto returns no RTMP URLs for inputs (AWS does): the console is told.
    assert!(running["error"].as_str().is_some_and(|e| e.contains("no RTMP URLs")), "{running}");
    let channels = || moto_list(&moto, "medialive", "prod/channels", "channels");
    let live_channels = || channels().into_iter().filter(|c| c["state"] != "DELETED" && c["state"] != "DELETING").collect::<Vec<_>>();
    assert_eq!(live_channels().len(), 1);
    wait_for("the channel in the metrics", Duration::from_secs(20), || {
        (server.metric("casecast_medialive_channel_running{room=\"demo\"}") == Some(1.0)).then_some(())
    })?;
    assert_eq!(live_channels()[0]["name"], "casecast-demo");
    assert_eq!(live_channels()[0]["tags"]["casecast:event"], "demo");
    assert_eq!(live_channels()[0]["channelClass"], "SINGLE_PIPELINE");
    // The console shows the channel.
    let console = Browser::start()?;
    console.goto(&format!("{}/console?token={center}#event=demo", server.url))?;
    wait_for("the console to show the channel running", Duration::from_secs(30), || {
        let shown = console.eval("return [document.querySelector('#aws').hidden, document.querySelector('#aws-phase').textContent, document.querySelector('#aws-channel').textContent]").ok()?;
        (shown[0] == false && shown[1] == "running" && shown[2].as_str()?.starts_with("RUNNING")).then_some(())
    })?;
    drop(console);
    // The watch page plays from CloudFront now.
    let (_, _, body) = http_request("GET", &format!("{}/watch/demo/source", server.url), &[], None)?;
    let source: Value = serde_json::from_slice(&body)?;
    assert_eq!((source["via"].as_str(), source["url"].as_str()), (Some("cloudfront"), running["viewer_url"].as_str()));
    assert_eq!(source["query"], Value::Null, "a public event needs no signature");
    // Private: a playback token first, then a CloudFront signed query for the path.
    let private = json!({"policy": {"latency_preset": "low-latency", "viewing": "private"}});
    assert_eq!(api("PATCH", &format!("{base}/demo"), Some(&center), Some(private.clone()))?.0, 200);
    assert_eq!(http_request("GET", &format!("{}/watch/demo/source", server.url), &[], None)?.0, 401);
    let (_, pt) = api("POST", &format!("{base}/demo/playback-tokens"), Some(&center), Some(json!({"viewer": "Dr. Watch"})))?;
    let (_, _, body) = http_request("GET", &format!("{}/watch/demo/source?token={}", server.url, pt["token"].as_str().unwrap()), &[], None)?;
    let signed: Value = serde_json::from_slice(&body)?;
    let query = signed["query"].as_str().unwrap_or_default();
    assert!(["Policy=", "Signature=", "Key-Pair-Id=K2JCJMDEHXQW5F", "Hash-Algorithm=SHA256"].iter().all(|p| query.contains(p)), "{signed}");
    // Off air: the channel stops.
    assert_eq!(api("POST", &program, Some(&center), Some(json!({"on_air": false})))?.0, 202);
    wait_for("the channel stopped", Duration::from_secs(60), || {
        let a = aws(&server);
        (a["phase"] == "stopped" && a["channel"]["state"] == "IDLE").then_some(())
    })?;
    // The preset changed to ultra-low (MediaPackage v2) for an event whose channel
    // feeds MediaPackage v1: refused, with what to do; back to low-latency.
    let ultra = json!({"policy": {"latency_preset": "ultra-low", "viewing": "private"}});
    assert_eq!(api("PATCH", &format!("{base}/demo"), Some(&center), Some(ultra))?.0, 200);
    assert_eq!(api("POST", &program, Some(&center), Some(json!({"on_air": true})))?.0, 202);
    wait_for("the other preset refused", Duration::from_secs(60), || {
        let a = aws(&server);
        (a["phase"] == "failed" && a["error"].as_str()?.contains("end the event")).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", aws(&server)))?;
    assert_eq!(live_channels().len(), 1, "nothing made for the other preset");
    assert_eq!(api("POST", &program, Some(&center), Some(json!({"on_air": false})))?.0, 202);
    assert_eq!(api("PATCH", &format!("{base}/demo"), Some(&center), Some(private))?.0, 200);
    // Live again, then the server crashes: the restarted one finds the running
    // channel with no live event and stops it after 3 s idle, and says so.
    assert_eq!(api("POST", &program, Some(&center), Some(json!({"on_air": true})))?.0, 202);
    wait_for("the channel running again", Duration::from_secs(60), || (aws(&server)["channel"]["state"] == "RUNNING").then_some(()))?;
    server.crash_and_restart()?;
    let stopped = wait_for("the idle channel stopped by itself", Duration::from_secs(60), || {
        let a = aws(&server);
        (a["auto_stopped_at"].is_u64() && a["channel"]["state"] == "IDLE").then_some(a)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", aws(&server)))?;
    assert_eq!(stopped["phase"], "stopped");
    wait_for("the stop in the metrics", Duration::from_secs(20), || {
        (server.metric("casecast_medialive_channel_running{room=\"demo\"}") == Some(0.0)).then_some(())
    })?;
    // On air after the crash: what exists is found, nothing is made twice.
    wait_for("the program on air again", Duration::from_secs(60), || {
        (api("POST", &program, Some(&center), Some(json!({"on_air": true}))).ok()?.0 == 202).then_some(())
    })?;
    wait_for("the channel running after the crash", Duration::from_secs(60), || (aws(&server)["channel"]["state"] == "RUNNING").then_some(()))?;
    assert_eq!(live_channels().len(), 1, "one channel: {:?}", channels());
    let inputs = moto_list(&moto, "medialive", "prod/inputs", "inputs");
    assert_eq!(inputs.iter().filter(|i| i["name"] == "casecast-demo").count(), 1, "one input: {inputs:?}");
    assert_eq!(moto_list(&moto, "mediapackage", "channels", "channels").len(), 1);
    // The operator forces the backup input: this event has none.
    let input = format!("{base}/demo/distribution/input");
    assert_eq!(api("POST", &input, Some(&center), Some(json!({"input": "backup"})))?.0, 202);
    assert_eq!(api("POST", &input, Some(&center), Some(json!({"input": "third"})))?.0, 400);
    // The event ends: everything of it goes.
    assert_eq!(api("POST", &format!("{base}/demo/end"), Some(&center), None)?.0, 200);
    wait_for("everything torn down", Duration::from_secs(60), || {
        (aws(&server)["phase"] == "torn_down"
            && live_channels().is_empty()
            && moto_list(&moto, "medialive", "prod/inputs", "inputs").iter().all(|i| i["state"] == "DELETED" || i["state"] == "DELETING")
            && moto_list(&moto, "mediapackage", "channels", "channels").is_empty())
        .then_some(())
    })
    .map_err(|e| {
        anyhow::anyhow!("{e}: {} {:?} {:?}", aws(&server), moto_list(&moto, "medialive", "prod/inputs", "inputs"), moto_list(&moto, "mediapackage", "channels", "channels"))
    })?;
    // An event that never went on air ends without anything made for it.
    assert_eq!(api("POST", &base, Some(&center), Some(json!({"id": "idle-1", "title": "Never live"})))?.0, 201);
    assert_eq!(api("POST", &format!("{base}/idle-1/end"), Some(&center), None)?.0, 200);
    wait_for("the idle event's distribution done", Duration::from_secs(30), || {
        let (_, d) = api("GET", &format!("{base}/idle-1/distribution"), Some(&center), None).ok()?;
        (d["aws"]["phase"] == "torn_down").then_some(())
    })?;
    assert!(moto_list(&moto, "mediapackage", "channels", "channels").is_empty(), "nothing made to be torn down");
    assert!(live_channels().is_empty());
    Ok(())
}

/// The media side of the AWS distribution: MediaLive's input answers its RTMP URLs
/// when it is made (a replayed answer, as AWS documents it; moto gives none), and the
/// program, running without any push, switches to pushing there — to `ffmpeg -listen`
/// standing in for the input. What arrives is the program: H.264 1280×720 and AAC.
#[test]
fn the_program_is_pushed_to_the_provisioned_medialive_input() -> Result<()> {
    let dir = TempDir::new("aws-media");
    let port = free_tcp_port();
    let receiver = rtmp_receiver(port, &dir.0, "input")?;
    let url = format!("rtmp://127.0.0.1:{port}/live/program");
    let answers = [
        (200, json!({"inputs": []})),
        (201, json!({"input": {"id": "in-1", "name": "casecast-or-5", "type": "RTMP_PUSH", "tags": {"casecast:event": "or-5"},
            "destinations": [{"ip": "127.0.0.1", "port": port.to_string(), "url": url}]}})),
        (200, json!({"id": "casecast-or-5"})),
        (200, json!({"id": "casecast-or-5-hls", "url": "https://x.mediapackage.us-east-1.amazonaws.com/out/v1/1/index.m3u8"})),
        (200, json!({"channels": [{"id": "ch-1", "name": "casecast-or-5", "state": "IDLE", "tags": {"casecast:event": "or-5"}}]})),
    ];
    let aws = aws_over(replay_client(answers.to_vec()), None);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let provisioned = rt.block_on(aws.provision("or-5", &casecast_aws::Preset::named("low-latency")))?;
    assert_eq!(provisioned.rtmp_urls, std::slice::from_ref(&url));
    // The program runs (black and silent without a room), pushing nowhere; then the
    // distribution's URLs come, as the compositor gets them when the channel runs.
    let opts = casecast_actors::program::ProgramOptions {
        hls_dir: dir.0.join("hls"),
        segment_seconds: 1,
        monitor: false,
        ..Default::default()
    };
    let program = casecast_actors::program::Program::start(&opts)?;
    program.set_rtmp_urls(&provisioned.rtmp_urls);
    let flv = wait_for("the program at the input", Duration::from_secs(60), || receiver.largest().filter(|(_, n)| *n > 300_000).map(|(f, _)| f))?;
    // Named by its place, never by its URL (the stream key is a secret).
    assert_eq!(program.rtmp_states().iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(), ["rtmp-primary"]);
    drop(program);
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "compact"])
        .arg(&flv)
        .output()?;
    let probe = String::from_utf8_lossy(&out.stdout);
    assert!(probe.contains("codec_name=h264|width=1280|height=720"), "{probe}");
    assert!(probe.contains("codec_name=aac"), "{probe}");
    Ok(())
}

/// A replay client giving `answers` (status, JSON body) in order, whatever is asked.
fn replay_client(answers: Vec<(u16, Value)>) -> aws_smithy_http_client::test_util::StaticReplayClient {
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    StaticReplayClient::new(
        answers
            .into_iter()
            .map(|(status, body)| {
                let req = http::Request::builder().uri("https://any").body(SdkBody::empty()).unwrap();
                let answer = http::Response::builder().status(status).header("content-type", "application/json").body(SdkBody::from(body.to_string()));
                ReplayEvent::new(req, answer.unwrap())
            })
            .collect(),
    )
}

/// casecast's AWS side over `client` (at moto's `endpoint`, if given), with moto's
/// dummy credentials, a MediaLive role and an existing input security group.
fn aws_over(client: impl aws_smithy_runtime_api::client::http::HttpClient + 'static, endpoint: Option<&str>) -> casecast_aws::Aws {
    let mut shared = aws_config::SdkConfig::builder()
        .http_client(client)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .behavior_version(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        shared = shared.endpoint_url(url);
    }
    let cfg = casecast_aws::AwsConfig {
        role_arn: "arn:aws:iam::123456789012:role/MediaLiveAccessRole".into(),
        input_security_group_id: Some("sg-1".into()),
        wait_secs: 60,
        ..Default::default()
    };
    casecast_aws::Aws::from_config(&shared.build(), cfg)
}

/// The SDK's HTTP client for a provisioning that moto half covers: MediaPackage v2
/// policies and origin endpoints (which moto lacks) get replayed answers, as AWS
/// documents them; everything else goes to moto.
mod moto_or_replay {
    use aws_smithy_http_client::test_util::StaticReplayClient;
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

    #[derive(Debug, Clone)]
    pub struct MotoOrReplay {
        pub moto: SharedHttpClient,
        pub replay: StaticReplayClient,
    }

    /// What moto 5.2.5's MediaPackage v2 does not have.
    pub fn replayed(uri: &str) -> bool {
        uri.contains("/originEndpoint") || uri.ends_with("/policy")
    }

    impl HttpClient for MotoOrReplay {
        fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
            SharedHttpConnector::new(Routed { moto: self.moto.http_connector(settings, components), replay: self.replay.http_connector(settings, components) })
        }
    }

    #[derive(Debug)]
    struct Routed {
        moto: SharedHttpConnector,
        replay: SharedHttpConnector,
    }

    impl HttpConnector for Routed {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            if replayed(request.uri()) { self.replay.call(request) } else { self.moto.call(request) }
        }
    }
}

/// An `ultra-low` event through MediaPackage v2, with MediaLive and MediaPackage v2's
/// channel group and channel on moto (the policies and the low-latency endpoint,
/// which moto lacks, replayed): provisioning makes the group and a channel, and a
/// MediaLive channel whose MediaPackage output goes to that channel; the channel
/// starts and stops; provisioning again makes nothing twice; teardown removes the
/// event's channel and endpoint and keeps the shared group. The viewer URL is the
/// low-latency playlist's.
#[test]
fn an_ultra_low_event_goes_out_through_mediapackage_v2() -> Result<()> {
    let moto = Moto::start()?;
    let url = "https://abc123.egress.def456.mediapackagev2.us-east-1.amazonaws.com/out/v1/casecast/casecast-or-6/casecast-or-6-ll/index.m3u8";
    let endpoint = json!({"Arn": "arn:aws:mediapackagev2:us-east-1:123456789012:channelGroup/casecast/channel/casecast-or-6/originEndpoint/casecast-or-6-ll",
        "ContainerType": "CMAF", "LowLatencyHlsManifests": [{"ManifestName": "index", "Url": url}]});
    let missing = json!({"__type": "ResourceNotFoundException", "message": "MediaPackage can't find your origin endpoint"});
    let answers = [
        (200, json!({})),              // PutChannelPolicy
        (404, missing),                // GetOriginEndpoint
        (200, endpoint.clone()),       // CreateOriginEndpoint
        (200, json!({})),              // PutOriginEndpointPolicy
        (200, json!({})),              // provisioning again: PutChannelPolicy
        (200, endpoint),               // GetOriginEndpoint: found
        (200, json!({})),              // PutOriginEndpointPolicy
        (202, json!({})),              // DeleteOriginEndpoint
    ];
    let replay = replay_client(answers.to_vec());
    let client = moto_or_replay::MotoOrReplay { moto: aws_smithy_http_client::Builder::new().build_http(), replay: replay.clone() };
    let aws = aws_over(client, Some(&moto.endpoint));
    let v2 = |path: &str| moto_get(&moto, "mediapackagev2", path).0;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let preset = casecast_aws::Preset::named("ultra-low");
    let p = rt.block_on(aws.provision("or-6", &preset))?;
    assert_eq!((p.channel_group.as_deref(), p.mediapackage_channel_id.as_str()), (Some("casecast"), "casecast-or-6"));
    assert_eq!((p.origin_endpoint_id.as_str(), p.origin_url.as_deref()), ("casecast-or-6-ll", Some(url)));
    assert_eq!(casecast_aws::cloudfront::viewer_url("d111111abcdef8.cloudfront.net", &p.playlist_path().unwrap()),
        "https://d111111abcdef8.cloudfront.net/out/v1/casecast/casecast-or-6/casecast-or-6-ll/index.m3u8");
    // moto holds the group and the channel, and MediaLive's channel feeds it.
    assert_eq!(v2("channelGroup/casecast"), 200);
    assert_eq!(v2("channelGroup/casecast/channel/casecast-or-6"), 200);
    let channels = || moto_list(&moto, "medialive", "prod/channels", "channels").into_iter().filter(|c| c["state"] != "DELETED").collect::<Vec<_>>();
    let made = channels();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["destinations"][0]["mediaPackageSettings"], json!([{"channelGroup": "casecast", "channelName": "casecast-or-6"}]));
    let (_, described) = moto_get(&moto, "medialive", &format!("prod/channels/{}", p.channel_id));
    let group = &described["encoderSettings"]["outputGroups"][0]["outputGroupSettings"]["mediaPackageGroupSettings"];
    assert_eq!(group["mediapackageV2GroupSettings"]["segmentLength"], 1, "{described}");
    // On air and off.
    rt.block_on(aws.start(&p))?;
    assert_eq!(rt.block_on(aws.status(&p))?.state, "RUNNING");
    // Provisioning again (a retry, a restarted server) finds it all.
    let again = rt.block_on(aws.provision("or-6", &preset))?;
    assert_eq!(again, p);
    assert_eq!(channels().len(), 1);
    rt.block_on(aws.stop(&p))?;
    assert_eq!(rt.block_on(aws.status(&p))?.state, "IDLE");
    // The event ends: its channel and endpoint go, the shared group stays.
    rt.block_on(aws.teardown(&p))?;
    // (moto answers a missing channel with 400 and the error AWS answers with 404.)
    let (_, answer) = moto_get(&moto, "mediapackagev2", "channelGroup/casecast/channel/casecast-or-6");
    assert!(answer.to_string().contains("ResourceNotFoundException"), "{answer}");
    assert_eq!(v2("channelGroup/casecast"), 200);
    assert!(channels().is_empty(), "{:?}", channels());
    let replayed: Vec<(String, String)> = replay.actual_requests().map(|r| (r.method().to_string(), http::Uri::try_from(r.uri()).unwrap().path().to_string())).collect();
    assert_eq!(replayed.len(), 8, "{replayed:?}");
    assert_eq!(replayed[7], ("DELETE".to_string(), "/channelGroup/casecast/channel/casecast-or-6/originEndpoint/casecast-or-6-ll".to_string()));
    assert!(replayed.iter().all(|(_, p)| moto_or_replay::replayed(p)));
    Ok(())
}
