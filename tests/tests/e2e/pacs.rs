//! PACS and viewers: Orthanc (Debian's, with its DICOMweb plugin) beside casecast,
//! querying and retrieving de-identified studies over DICOMweb and sending studies
//! to casecast's C-STORE; and the DICOMweb answers OHIF reads (metadata with
//! `BulkDataURI`s, rendered frames, thumbnails, the study list's QIDO-RS fields).

use super::cases::{assert_no_phi, files_under, get_json, make_fixtures, tus_upload};
use super::*;
use casecast_tests::orthanc::{Orthanc, Peer};

/// The original UIDs of the fixtures (study, series, instances), none of which may
/// come out: casecast publishes new ones.
const SOURCE_UIDS: [&str; 3] = ["1.2.826.0.1.3680043.8.498.4711.", "1.2.826.0.1.3680043.8.498.4712.", "1.2.826.0.1.3680043.8.498.4713."];

fn assert_no_source_uid(what: &str, bytes: &[u8]) {
    for uid in SOURCE_UIDS {
        assert!(!bytes.windows(uid.len()).any(|w| w == uid.as_bytes()), "a source UID ({uid}…) in {what}");
    }
}

/// The PHI test set's pictures (`make_dicom.py`): an 8-bit grey CT with the PHI in
/// its tags, a sequence, private tags and burned into its pixels; a 16-bit one
/// (12 stored); a colour JPEG with the PHI burned in; and a copy of the first with
/// an ICC profile (a bulk element besides the pixels; high bytes only, so that no
/// run of it reads as text) and a private blob. The same study. Returns the ICC
/// profile's bytes.
fn study_files(dir: &std::path::Path) -> Result<(Vec<std::path::PathBuf>, Vec<u8>)> {
    make_fixtures(dir, &[])?;
    let made = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = '1.2.826.0.1.3680043.8.498.4711.3.20'
ds.InstanceNumber = 20
ds.ICCProfile = bytes(range(128, 256)) * 8
ds.add_new(0x00091002, 'OB', b'DOE^JOHN private blob')
ds.save_as(sys.argv[2], write_like_original=False)"])
        .arg(dir.join("DOE_JOHN_0.dcm"))
        .arg(dir.join("DOE_JOHN_icc.dcm"))
        .output()?;
    anyhow::ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let files = ["DOE_JOHN_0.dcm", "DOE_JOHN_1.dcm", "DOE_JOHN_2.dcm", "DOE_JOHN_icc.dcm"].map(|n| dir.join(n)).to_vec();
    Ok((files, (0..8).flat_map(|_| 128..=255u8).collect()))
}

/// Uploads `files` with tus and waits until their jobs are done.
fn upload_and_wait(server: &Server, token: &str, files: &[std::path::PathBuf]) -> Result<()> {
    let mut ids = Vec::new();
    for f in files {
        ids.push(tus_upload(server, token, &std::fs::read(f)?, "dicom", 1 << 20)?);
    }
    let jobs = wait_for("the uploads' jobs to end", Duration::from_secs(180), || {
        let (_, jobs) = get_json(&format!("{}/api/cases/jobs", server.url), token).ok()?;
        let ours: Vec<Value> = jobs.as_array()?.iter().filter(|j| ids.iter().any(|id| j["id"] == id.as_str())).cloned().collect();
        (ours.len() == ids.len() && ours.iter().all(|j| j["status"] == "done" || j["status"] == "failed")).then_some(ours)
    })?;
    anyhow::ensure!(jobs.iter().all(|j| j["status"] == "done"), "{jobs:#?}");
    Ok(())
}

/// A DICOM JSON attribute's first value, as text.
fn first(item: &Value, tag: &str) -> String {
    match &item[tag]["Value"][0] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("Alphabetic").and_then(Value::as_str).unwrap_or("").to_string(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// The one part of a `multipart/related` answer: its Content-Type and body.
fn single_part(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1)?.split(';').next()?.trim_matches('"').to_string();
    let start = body.windows(boundary.len() + 2).position(|w| w == format!("--{boundary}").as_bytes())?;
    let head_end = start + body[start..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&body[start..head_end]).to_lowercase();
    let part_type = head.lines().find_map(|l| l.strip_prefix("content-type:")).unwrap_or("").trim().to_string();
    let end = body.windows(boundary.len() + 4).rposition(|w| w == format!("\r\n--{boundary}").as_bytes())?;
    (end >= head_end).then(|| (part_type, body[head_end..end].to_vec()))
}

/// A hospital's Orthanc, with casecast configured as its DICOMweb server `casecast`
/// (the token in its `HttpHeaders`) and as its DICOM modality `casecast`:
/// - it finds the de-identified study by QIDO-RS (through its DICOMweb plugin's
///   `/dicom-web/servers/casecast/qido`) and retrieves it (`…/retrieve`); every byte
///   of every instance it then holds is free of the patient (tags, sequences,
///   private tags, source UIDs), and the pixel data came through whole: Orthanc's
///   raw frame is casecast's raw frame, byte for byte, and Orthanc renders it;
/// - it sends a study of its own (the PHI still in it) to casecast's C-STORE
///   (`POST /modalities/casecast/store`): casecast publishes it de-identified, and
///   its QIDO-RS, metadata and stored bytes hold nothing of the patient;
/// - casecast's log holds neither PHI nor the token Orthanc sent.
#[test]
fn orthanc_retrieves_de_identified_studies_over_dicomweb_and_sends_by_c_store() -> Result<()> {
    let cstore_port = free_tcp_port();
    let cstore = format!("127.0.0.1:{cstore_port}");
    let server = Server::start(&["--cases-cstore-listen", &cstore, "--cases-cstore-room", "demo"])?;
    let dir = TempDir::new("pacs-orthanc");
    let (files, _) = study_files(&dir.0.join("in"))?;
    let doctor = server.token("demo", Role::Commentator, "Dr. PACS");
    upload_and_wait(&server, &doctor, &files)?;
    let (_, studies) = get_json(&format!("{}/dicomweb/studies", server.url), &doctor)?;
    assert_eq!(studies.as_array().map(Vec::len), Some(1), "{studies}");
    let study = first(&studies[0], "0020000D");

    // Orthanc reads the library with a viewer's token: seeing is all it needs.
    let token = server.token("demo", Role::Viewer, "Orthanc PACS");
    let dicomweb = format!("{}/dicomweb/", server.url);
    let orthanc = Orthanc::start(&Peer { dicomweb: &dicomweb, token: &token, cstore: Some(("127.0.0.1", cstore_port, "CASECAST")) })?;

    // QIDO-RS through Orthanc: the study, under its pseudonym, and its series.
    let found = orthanc.call("POST", "/dicom-web/servers/casecast/qido", Some(json!({ "Uri": "/studies", "Arguments": { "PatientName": "ANON*" } })))?;
    let found = found.as_array().cloned().unwrap_or_default();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["0020000D"]["Value"].as_str(), Some(study.as_str()), "{:?}", found[0]);
    assert!(found[0]["00100010"]["Value"].as_str().is_some_and(|n| n.starts_with("ANON^")), "{:?}", found[0]);
    let none = orthanc.call("POST", "/dicom-web/servers/casecast/qido", Some(json!({ "Uri": "/studies", "Arguments": { "PatientName": "DOE*" } })))?;
    assert_eq!(none, json!([]), "the patient's name finds nothing");
    let series = orthanc.call("POST", "/dicom-web/servers/casecast/qido", Some(json!({ "Uri": format!("/studies/{study}/series") })))?;
    assert!(series.as_array().is_some_and(|s| !s.is_empty()), "{series}");
    assert_no_phi("Orthanc's QIDO-RS answers", format!("{found:?}{series}").as_bytes());

    // WADO-RS through Orthanc: the whole study.
    let got = orthanc.call("POST", "/dicom-web/servers/casecast/retrieve", Some(json!({ "Resources": [{ "Study": study }] })))?;
    let received = &got["ReceivedInstancesCount"];
    assert!(received == "4" || received == 4, "{got}");
    let ids = orthanc.instances()?;
    assert_eq!(ids.len(), 4, "{ids:?}");
    let auth = format!("Bearer {doctor}");
    for id in &ids {
        let (s, _, file) = orthanc.rest("GET", &format!("/instances/{id}/file"), None)?;
        assert!(s == 200 && file.len() > 132 && &file[128..132] == b"DICM", "{s}");
        assert_no_phi(&format!("Orthanc's copy of instance {id}"), &file);
        assert_no_source_uid(&format!("Orthanc's copy of instance {id}"), &file);
        let tags = orthanc.call("GET", &format!("/instances/{id}/simplified-tags"), None)?;
        assert!(tags["PatientName"].as_str().is_some_and(|n| n.starts_with("ANON^")), "{tags}");
        assert_eq!(tags["PatientIdentityRemoved"], "YES", "{tags}");
        assert_eq!(tags["StudyInstanceUID"].as_str(), Some(study.as_str()));
        // The pixels came through whole: Orthanc's first frame is casecast's.
        let (sop, se) = (tags["SOPInstanceUID"].as_str().unwrap_or_default(), tags["SeriesInstanceUID"].as_str().unwrap_or_default());
        let (s, _, theirs) = orthanc.rest("GET", &format!("/instances/{id}/frames/0/raw"), None)?;
        let (s2, _, ours) = http_request(
            "GET",
            &format!("{}/dicomweb/studies/{study}/series/{se}/instances/{sop}/frames/1", server.url),
            &[("Authorization", &auth), ("Accept", "application/octet-stream")],
            None,
        )?;
        assert_eq!((s, s2), (200, 200));
        assert!(!ours.is_empty() && theirs == ours, "instance {sop}: Orthanc's raw frame ({} bytes) is not casecast's ({} bytes)", theirs.len(), ours.len());
        let (s, _, preview) = orthanc.rest("GET", &format!("/instances/{id}/preview"), None)?;
        assert!(s == 200 && picture_size(&preview).is_some(), "Orthanc renders {sop}: {s}");
    }

    // Orthanc sends a study of its own, as a modality sent it (the PHI in it), to
    // casecast's C-STORE.
    let series_dir = dir.0.join("series");
    make_fixtures(&series_dir, &["series", "3"])?;
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(orthanc.upload(&std::fs::read(series_dir.join(format!("DOE_JOHN_s{n:03}.dcm")))?)?);
    }
    let echo = orthanc.rest("POST", "/modalities/casecast/echo", Some(b"{}"))?;
    assert_eq!(echo.0, 200, "C-ECHO to casecast: {}", String::from_utf8_lossy(&echo.2));
    let store = orthanc.call("POST", "/modalities/casecast/store", Some(json!({ "Resources": sent, "Synchronous": true })))?;
    assert_eq!((store["InstancesCount"].as_u64(), store["FailedInstancesCount"].as_u64()), (Some(3), Some(0)), "{store}");
    let jobs = wait_for("the three C-STORE jobs to end", Duration::from_secs(180), || {
        let (_, jobs) = get_json(&format!("{}/api/cases/jobs", server.url), &doctor).ok()?;
        let from: Vec<Value> = jobs.as_array()?.iter().filter(|j| j["source"] == "cstore").cloned().collect();
        (from.len() == 3 && from.iter().all(|j| j["status"] == "done" || j["status"] == "failed")).then_some(from)
    })?;
    assert!(jobs.iter().all(|j| j["status"] == "done" && j["uploader"] == "C-STORE ORTHANC"), "{jobs:#?}");
    let (_, studies) = get_json(&format!("{}/dicomweb/studies?ModalitiesInStudy=OT", server.url), &doctor)?;
    let sent_study = studies.as_array().and_then(|s| s.iter().find(|s| first(s, "0020000D") != study)).cloned().unwrap_or(Value::Null);
    assert_eq!(sent_study["00201208"]["Value"][0], 3, "{studies}");
    assert!(first(&sent_study, "00100010").starts_with("ANON^"), "{sent_study}");
    let sent_uid = first(&sent_study, "0020000D");
    let (s, meta) = get_json(&format!("{}/dicomweb/studies/{sent_uid}/metadata", server.url), &doctor)?;
    assert_eq!((s, meta.as_array().map(Vec::len)), (200, Some(3)), "{meta}");
    assert!(meta.as_array().unwrap().iter().all(|i| first(i, "00120062") == "YES"), "Patient Identity Removed");
    let said = format!("{studies}{meta}");
    assert_no_phi("casecast's QIDO-RS and metadata of the study Orthanc sent", said.as_bytes());
    assert_no_source_uid("casecast's QIDO-RS and metadata of the study Orthanc sent", said.as_bytes());

    // Nothing of the patient in what casecast keeps or logs; nor the token.
    for f in files_under(server.data_dir()) {
        assert_no_phi(&f.display().to_string(), &std::fs::read(&f)?);
    }
    let log = server.log_text();
    assert_no_phi("casecast's log", log.as_bytes());
    assert!(!log.contains(&token) && !log.contains(&doctor), "a token in casecast's log");
    Ok(())
}

/// What OHIF (v3, a `dicomweb` data source as docs/cases.md configures it) reads
/// of casecast, checked on a study of a grey 8-bit picture, a 16-bit one, a colour
/// one, one with an ICC profile, and a 4-frame cine:
/// - the study list's QIDO-RS, as OHIF asks it (`includefield`, wildcards, `limit`):
///   StudyInstanceUID, StudyDate, ModalitiesInStudy, NumberOfStudyRelatedInstances
///   (a number), PatientName and PatientID as de-identified;
/// - series and instance metadata: every bulk element (Pixel Data with its VR, the
///   ICC profile) by `BulkDataURI`, none inline, each resolving with the token to
///   its bytes (Pixel Data: every frame; the ICC profile: the very bytes sent);
/// - `/frames/1/rendered` of each instance: a PNG or JPEG of the picture's size;
/// - thumbnails of the study, a series, an instance and a frame: JPEG, fitting
///   128×128 (or the viewport asked for) in the picture's proportions, one-part
///   multipart when asked so, 406 for a type it is not, the token needed;
/// - CORS for all of it, from a viewer on another origin.
#[test]
fn dicomweb_answers_what_ohif_reads() -> Result<()> {
    let server = Server::start(&["--cases-cstore-listen", ""])?;
    let dir = TempDir::new("pacs-ohif");
    let input = dir.0.join("in");
    let (mut files, icc) = study_files(&input)?;
    make_fixtures(&input, &["large", "4"])?;
    files.push(input.join("cine.dcm"));
    let doctor = server.token("demo", Role::Commentator, "Dr. OHIF");
    upload_and_wait(&server, &doctor, &files)?;
    let viewer = server.token("demo", Role::Viewer, "OHIF viewer");
    let auth = format!("Bearer {viewer}");
    let get = |url: &str, accept: Option<&str>| {
        let mut h = vec![("Authorization", auth.as_str())];
        if let Some(a) = accept {
            h.push(("Accept", a));
        }
        http_request("GET", url, &h, None)
    };
    let dw = format!("{}/dicomweb", server.url);
    let mut said = Vec::new();

    // The study list, as OHIF asks for it.
    let list = format!("{dw}/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060&PatientName=*anon*");
    for url in [list.as_str(), &format!("{dw}/studies?includefield=all")] {
        let (s, studies) = get_json(url, &viewer)?;
        assert_eq!((s, studies.as_array().map(Vec::len)), (200, Some(1)), "{url}: {studies}");
        let st = &studies[0];
        assert!(st["00080020"]["vr"] == "DA" && st["00080061"]["vr"] == "CS", "{st}");
        let mut modalities: Vec<String> = st["00080061"]["Value"].as_array().unwrap().iter().filter_map(|m| m.as_str().map(str::to_string)).collect();
        modalities.sort();
        assert_eq!(modalities, ["CT", "US"], "{st}");
        assert_eq!(st["00201208"]["Value"][0], json!(5), "NumberOfStudyRelatedInstances, as a number: {st}");
        assert!(first(st, "00100010").starts_with("ANON^") && first(st, "00100020").starts_with("ANON-"), "{st}");
        said.extend(studies.to_string().into_bytes());
    }
    let (_, studies) = get_json(&format!("{dw}/studies"), &viewer)?;
    let study = first(&studies[0], "0020000D");
    let (s, series) = get_json(&format!("{dw}/studies/{study}/series?includefield=all"), &viewer)?;
    assert_eq!((s, series.as_array().map(Vec::len)), (200, Some(2)), "{series}");
    said.extend(series.to_string().into_bytes());

    let mut instances = 0;
    for se in series.as_array().unwrap() {
        let se_uid = first(se, "0020000E");
        assert!(se["00080060"]["Value"][0].is_string() && se["00201209"]["Value"][0].is_number(), "{se}");
        // Series metadata, as OHIF loads a study: bulk elements by reference only.
        let (s, meta) = get_json(&format!("{dw}/studies/{study}/series/{se_uid}/metadata"), &viewer)?;
        assert_eq!(s, 200, "{meta}");
        said.extend(meta.to_string().into_bytes());
        for item in meta.as_array().unwrap() {
            instances += 1;
            let sop = first(item, "00080018");
            let inline: Vec<&String> = item.as_object().unwrap().iter().filter(|(_, a)| a.get("InlineBinary").is_some()).map(|(k, _)| k).collect();
            assert!(inline.is_empty(), "{sop}: bulk elements inline: {inline:?}");
            let (rows, cols, bits, samples) = (item["00280010"]["Value"][0].as_u64().unwrap(), item["00280011"]["Value"][0].as_u64().unwrap(), item["00280100"]["Value"][0].as_u64().unwrap(), item["00280002"]["Value"][0].as_u64().unwrap());
            let frames = first(item, "00280008").trim_matches('"').parse::<u64>().unwrap_or(1);
            let pixels = &item["7FE00010"];
            assert_eq!(pixels["vr"], if bits > 8 { "OW" } else { "OB" }, "{sop}: {pixels}");
            let uri = pixels["BulkDataURI"].as_str().unwrap_or_default().to_string();
            let base = format!("{dw}/studies/{study}/series/{se_uid}/instances/{sop}");
            assert!(uri.starts_with(&base), "an absolute URI of the instance: {uri}");
            // Resolved as OHIF's dicomweb-client asks (multipart), and bare.
            let (s, hs, body) = get(&uri, Some("multipart/related; type=\"application/octet-stream\""))?;
            let (part_type, data) = single_part(header(&hs, "content-type").unwrap_or(""), &body).unwrap_or_default();
            assert_eq!((s, part_type.as_str()), (200, "application/octet-stream"), "{sop}");
            let (s, _, bare) = get(&uri, Some("application/octet-stream"))?;
            assert!(s == 200 && data == bare, "{sop}: {s}");
            // Every frame: as many bytes as the frames endpoint gives, frame 1 first.
            let (_, _, frame1) = get(&format!("{base}/frames/1"), Some("application/octet-stream"))?;
            let frame_bytes = rows * cols * samples.max(1) * bits.div_ceil(8);
            let ybr422 = first(item, "00280004") == "YBR_FULL_422";
            assert!(frame1.len() as u64 == if ybr422 { rows * cols * 2 } else { frame_bytes }, "{sop}: a frame of {} bytes", frame1.len());
            assert!(bare.len() == frame1.len() * frames as usize && bare.starts_with(&frame1), "{sop}: {} bytes of pixel data for {frames} frames", bare.len());
            // Any other bulk element: the ICC profile, its very bytes.
            if let Some(uri) = item["00282000"]["BulkDataURI"].as_str() {
                let (s, _, bytes) = get(uri, Some("application/octet-stream"))?;
                assert_eq!((s, bytes.len()), (200, icc.len()));
                assert_eq!(bytes, icc, "the ICC profile as sent");
            }
            // The rendered frame OHIF falls back to, and a thumbnail.
            let (s, hs, picture) = get(&format!("{base}/frames/1/rendered"), None)?;
            let size = picture_size(&picture);
            assert!(s == 200 && size.is_some_and(|(kind, w, h)| (w, h) == (cols as u32, rows as u32) && header(&hs, "content-type") == Some(&format!("image/{kind}"))), "{sop}: {s} {size:?} {hs:?}");
            let (s, hs, thumb) = get(&format!("{base}/thumbnail"), None)?;
            let size = picture_size(&thumb);
            let fits = |(kind, w, h): (&str, u32, u32), side: u32| kind == "jpeg" && w.max(h) == side.min(cols.max(rows) as u32) && (w as u64 * rows).abs_diff(h as u64 * cols) <= cols.max(rows);
            assert!(s == 200 && header(&hs, "content-type") == Some("image/jpeg") && size.is_some_and(|z| fits(z, 128)), "{sop}: {s} {size:?}");
            let (s, _, thumb) = get(&format!("{base}/frames/{frames}/thumbnail?viewport=64,64"), None)?;
            assert!(s == 200 && picture_size(&thumb).is_some_and(|z| fits(z, 64)), "{sop}: {s} {:?}", picture_size(&thumb));
            let (s, _, body) = get(&uri.replace("7FE00010", "00282001"), None)?;
            assert_eq!(s, 404, "no such element: {}", String::from_utf8_lossy(&body));
        }
        // The series' thumbnail.
        let (s, hs, thumb) = get(&format!("{dw}/studies/{study}/series/{se_uid}/thumbnail"), None)?;
        assert!(s == 200 && header(&hs, "content-type") == Some("image/jpeg") && picture_size(&thumb).is_some(), "{s}");
    }
    assert_eq!(instances, 5);
    // Instance metadata: the same references.
    let (_, insts) = get_json(&format!("{dw}/studies/{study}/series/{}/instances", first(&series[0], "0020000E")), &viewer)?;
    let i0 = &insts[0];
    let (s, meta) = get_json(&format!("{dw}/studies/{study}/series/{}/instances/{}/metadata", first(i0, "0020000E"), first(i0, "00080018")), &viewer)?;
    assert!(s == 200 && meta[0]["7FE00010"]["BulkDataURI"].is_string(), "{meta}");

    // The study's thumbnail, as OHIF's `thumbnail` rendering asks (multipart) and as
    // an <img> would; refused for a type it is not, without a token, to another library.
    let thumb_url = format!("{dw}/studies/{study}/thumbnail");
    let (s, hs, body) = get(&format!("{thumb_url}?accept=image/jpeg"), Some("multipart/related; type=\"image/jpeg\""))?;
    let (part_type, jpeg) = single_part(header(&hs, "content-type").unwrap_or(""), &body).unwrap_or_default();
    assert!(s == 200 && part_type == "image/jpeg" && picture_size(&jpeg).is_some_and(|(k, _, _)| k == "jpeg"), "{s} {hs:?}");
    let (s, _, _) = http_request("GET", &format!("{thumb_url}?token={viewer}"), &[], None)?;
    assert_eq!(s, 200, "a picture link with ?token=");
    assert_eq!(get(&thumb_url, Some("image/png"))?.0, 406);
    assert_eq!(get(&format!("{thumb_url}?viewport=0,5000"), None)?.0, 400);
    assert_eq!(http_request("GET", &thumb_url, &[], None)?.0, 401);
    let elsewhere = format!("Bearer {}", server.token("other", Role::Viewer, "x"));
    assert_eq!(http_request("GET", &thumb_url, &[("Authorization", &elsewhere)], None)?.0, 404);

    // CORS: a viewer served from another origin preflights, then reads.
    for path in [format!("/studies/{study}/thumbnail"), format!("/studies/{study}/series/{}/metadata", first(&series[0], "0020000E"))] {
        let (s, hs, _) = http_request(
            "OPTIONS",
            &format!("{dw}{path}"),
            &[("Origin", "https://ohif.example"), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "authorization,accept")],
            None,
        )?;
        let allowed = header(&hs, "access-control-allow-headers").unwrap_or("").to_lowercase();
        assert!(s == 204 && allowed.contains("authorization") && allowed.contains("accept"), "{path}: {s} {hs:?}");
        assert!(header(&hs, "access-control-allow-methods").is_some_and(|m| m.contains("GET")), "{hs:?}");
        let (_, hs, _) = get(&format!("{dw}{path}"), None)?;
        assert_eq!(header(&hs, "access-control-allow-origin"), Some("*"), "{path}");
    }

    assert_no_phi("QIDO-RS and metadata", &said);
    assert_no_source_uid("QIDO-RS and metadata", &said);
    let log = server.log_text();
    assert_no_phi("the server log", log.as_bytes());
    assert!(!log.contains(&viewer), "the token in the log");
    Ok(())
}
