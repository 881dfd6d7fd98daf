//! The case library end to end: uploads (tus), jobs, the ingest pool, DICOMweb,
//! STOW-RS and C-STORE, crashes mid-work, PostgreSQL and S3, the cases page in
//! Chromium, and `casecast cases import`.

use super::*;

/// Writes the test DICOM files (`tests/fixtures/make_dicom.py`, with Debian's
/// interpreter, where python3-pydicom is) into `dir`.
pub(super) fn make_fixtures(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make_dicom.py");
    let made = std::process::Command::new("/usr/bin/python3").arg(&script).arg(dir).args(args).output()?;
    anyhow::ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    Ok(())
}

/// Uploads a file with tus in chunks of `chunk` bytes; returns the job id.
pub(super) fn tus_upload(server: &Server, token: &str, bytes: &[u8], kind: &str, chunk: usize) -> Result<String> {
    use base64::Engine;
    let auth = format!("Bearer {token}");
    let meta = format!("kind {}, batch {}", base64::engine::general_purpose::STANDARD.encode(kind), base64::engine::general_purpose::STANDARD.encode("b1"));
    let len = bytes.len().to_string();
    let (status, hs, body) = http_request(
        "POST",
        &format!("{}/api/cases/uploads", server.url),
        &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Length", &len), ("Upload-Metadata", &meta)],
        None,
    )?;
    anyhow::ensure!(status == 201, "create: {status} {}", String::from_utf8_lossy(&body));
    let url = format!("{}{}", server.url, header(&hs, "location").unwrap_or_default());
    let mut offset = 0usize;
    loop {
        let end = (offset + chunk).min(bytes.len());
        let at = offset.to_string();
        let (status, hs, body) = http_request(
            "PATCH",
            &url,
            &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Offset", &at), ("Content-Type", "application/offset+octet-stream")],
            Some(&bytes[offset..end]),
        )?;
        anyhow::ensure!(status == 204, "patch at {offset}: {status} {}", String::from_utf8_lossy(&body));
        offset = header(&hs, "upload-offset").unwrap_or("0").parse()?;
        if offset == bytes.len() {
            return header(&hs, "casecast-job").map(str::to_string).ok_or_else(|| anyhow::anyhow!("no job for a complete upload"));
        }
    }
}

pub(super) fn get_json(url: &str, token: &str) -> Result<(u16, Value)> {
    let (status, _, body) = http_request("GET", url, &[("Authorization", &format!("Bearer {token}"))], None)?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Waits until every job of the library is done or failed; returns them.
fn wait_jobs(server: &Server, token: &str, count: usize, limit: Duration) -> Result<Vec<Value>> {
    wait_for("the ingest jobs to finish", limit, || {
        let (_, jobs) = get_json(&format!("{}/api/cases/jobs", server.url), token).ok()?;
        let jobs = jobs.as_array()?.clone();
        (jobs.len() >= count && jobs.iter().all(|j| j["status"] == "done" || j["status"] == "failed")).then_some(jobs)
    })
}

/// Every file under `dir`, recursively.
pub(super) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { dirs.push(p) } else { out.push(p) }
        }
    }
    out
}

/// Fails if `bytes` hold any of the fixtures' patient data ([`CASE_PHI`]).
pub(super) fn assert_no_phi(what: &str, bytes: &[u8]) {
    let lower = bytes.to_ascii_lowercase();
    for term in CASE_PHI {
        assert!(!lower.windows(term.len()).any(|w| w == term.as_bytes()), "{term:?} found in {what}");
    }
}

/// A doctor uploads a study with tus (one file resumed after a refused offset, the
/// rest as a ZIP), next to broken and hostile uploads: the good files are published
/// de-identified (rows, objects, rendered frames, DICOMweb, logs: no byte of the
/// patient), each bad one fails alone with its reason, originals are deleted, and
/// every request needs the right token.
#[test]
fn cases_upload_ingest_and_dicomweb() -> Result<()> {
    let server = Server::start(&["--cases-cstore-listen", ""])?;
    let dir = TempDir::new("cases");
    let input = dir.0.join("in");
    make_fixtures(&input, &[])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Upload");
    let read = |n: &str| std::fs::read(input.join(n));

    // Access: no token, a viewer uploading, a bad token.
    let base = format!("{}/api/cases/uploads", server.url);
    let (s, _, body) = http_request("POST", &base, &[("Upload-Length", "10")], None)?;
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&body));
    let viewer = server.token("demo", Role::Viewer, "v");
    let (s, _, body) = http_request("POST", &base, &[("Authorization", &format!("Bearer {viewer}")), ("Upload-Length", "10")], None)?;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("may not"));
    assert_eq!(get_json(&format!("{}/api/cases/studies", server.url), "garbage")?.0, 401);

    // A resumed upload: a chunk at the wrong offset is refused with the right one.
    let first = read("DOE_JOHN_0.dcm")?;
    let job0 = {
        use base64::Engine;
        let auth = format!("Bearer {doctor}");
        let meta = format!("kind {}", base64::engine::general_purpose::STANDARD.encode("dicom"));
        let (_, hs, _) = http_request("POST", &base, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Length", &first.len().to_string()), ("Upload-Metadata", &meta)], None)?;
        let url = format!("{}{}", server.url, header(&hs, "location").unwrap());
        let patch = |at: usize, body: &[u8]| {
            http_request("PATCH", &url, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Offset", &at.to_string()), ("Content-Type", "application/offset+octet-stream")], Some(body))
        };
        let (s, hs, _) = patch(0, &first[..1000])?;
        assert_eq!((s, header(&hs, "upload-offset")), (204, Some("1000")));
        let (s, hs, _) = patch(500, &first[500..2000])?;
        assert_eq!((s, header(&hs, "upload-offset")), (409, Some("1000")), "a wrong offset is refused with the right one");
        let (s, hs, _) = http_request("HEAD", &url, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0")], None)?;
        assert_eq!((s, header(&hs, "upload-offset")), (200, Some("1000")));
        let (s, hs, _) = patch(1000, &first[1000..])?;
        assert_eq!(s, 204);
        let job = header(&hs, "casecast-job").unwrap().to_string();
        // The answer lost, the client asks again: complete, the same job.
        let (s, hs, _) = http_request("HEAD", &url, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0")], None)?;
        assert_eq!((s, header(&hs, "upload-offset"), header(&hs, "casecast-job")), (200, Some(first.len().to_string().as_str()), Some(job.as_str())));
        let (s, _, _) = http_request("HEAD", &url, &[("Authorization", &auth), ("Tus-Resumable", "0.2.2")], None)?;
        assert_eq!(s, 412, "another tus version is refused");
        job
    };
    // The rest of the study as a ZIP (JPEG, JPEG 2000, RLE and JPEG-LS pictures to
    // decode and clean; DOE_JOHN_3/4 cannot be checked: quarantined).
    let zip_path = dir.0.join("study.zip");
    let z = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    for f in sys.argv[2:]: z.write(f, 'DOE_JOHN/' + f.rsplit('/', 1)[1])"])
        .arg(&zip_path)
        .args(["DOE_JOHN_1.dcm", "DOE_JOHN_2.dcm", "DOE_JOHN_3.dcm", "DOE_JOHN_4.dcm", "DOE_JOHN_5.dcm", "DOE_JOHN_6.dcm", "DOE_JOHN_7.dcm"].map(|n| input.join(n)))
        .status()?;
    assert!(z.success());
    tus_upload(&server, &doctor, &std::fs::read(&zip_path)?, "zip", 4096)?;
    // Hostile and broken uploads.
    let bomb = dir.0.join("bomb.zip");
    let z = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.writestr('a.dcm', bytes(300 << 20))"])
        .arg(&bomb)
        .status()?;
    assert!(z.success());
    let bomb_job = tus_upload(&server, &doctor, &std::fs::read(&bomb)?, "zip", 1 << 20)?;
    // A cine of the same study (40 frames with the PHI burned into each).
    make_fixtures(&dir.0.join("cine"), &["large", "40"])?;
    let cine_job = tus_upload(&server, &doctor, &std::fs::read(dir.0.join("cine/cine.dcm"))?, "dicom", 1 << 20)?;
    let text_job = tus_upload(&server, &doctor, b"just some text, not DICOM", "dicom", 1 << 20)?;
    let cut_job = tus_upload(&server, &doctor, &first[..first.len() / 2], "dicom", 1 << 20)?;
    let mut huge = read("DOE_JOHN_1.dcm")?[..132].to_vec();
    huge.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, 0xff, 0xff, 0xff, 0xff]);
    huge.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 0xf0, 0xff, 0xff, 0xff]);
    let huge_job = tus_upload(&server, &doctor, &huge, "dicom", 1 << 20)?;
    // An upload past its announced length is refused.
    let (s, _, _) = http_request("POST", &base, &[("Authorization", &format!("Bearer {doctor}")), ("Upload-Length", "99999999999999")], None)?;
    assert_eq!(s, 413);

    // 1 + zip + 7 entries + cine + 4 bad = 14 jobs.
    let jobs = wait_jobs(&server, &doctor, 14, Duration::from_secs(180))?;
    let by_id = |id: &str| jobs.iter().find(|j| j["id"] == id).cloned().unwrap_or(Value::Null);
    assert_eq!(by_id(&job0)["status"], "done", "{jobs:#?}");
    assert_eq!(by_id(&cine_job)["status"], "done", "{jobs:#?}");
    let reason = |id: &str| by_id(id)["error"].as_str().unwrap_or("").to_string();
    assert!(reason(&bomb_job).contains("zip bomb"), "{}", reason(&bomb_job));
    assert!(reason(&text_job).contains("not a DICOM file"), "{}", reason(&text_job));
    assert!(!reason(&cut_job).is_empty() && !reason(&huge_job).is_empty(), "{jobs:#?}");
    let quarantined = jobs.iter().filter(|j| j["error"].as_str().is_some_and(|e| e.contains("quarantined"))).count();
    assert_eq!(quarantined, 2, "{jobs:#?}");
    let done = jobs.iter().filter(|j| j["status"] == "done").count();
    assert_eq!(done, 8, "7 instances and the archive: {jobs:#?}");

    // The study: one, seven instances, the pseudonym.
    let (s, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    assert_eq!(s, 200);
    assert_eq!(studies.as_array().map(Vec::len), Some(1), "{studies}");
    let study = studies[0]["study_uid"].as_str().unwrap().to_string();
    assert!(study.starts_with("2.25."));
    assert_eq!(studies[0]["instance_count"], 7);
    assert!(studies[0]["patient"].as_str().unwrap().starts_with("ANON^"));
    // Another library (room) sees nothing of it.
    let other = server.token("other", Role::Commentator, "x");
    assert_eq!(get_json(&format!("{}/api/cases/studies", server.url), &other)?.1, json!([]));
    assert_eq!(get_json(&format!("{}/api/cases/studies/{study}", server.url), &other)?.0, 404);

    // DICOMweb: QIDO, metadata, frames (raw and rendered), WADO instance.
    let dw = format!("{}/dicomweb/studies", server.url);
    let (s, qido) = get_json(&format!("{dw}?StudyInstanceUID={study}"), &doctor)?;
    assert_eq!((s, qido.as_array().map(Vec::len)), (200, Some(1)), "{qido}");
    let (_, series) = get_json(&format!("{dw}/{study}/series"), &doctor)?;
    let series_uid = series[0]["0020000E"]["Value"][0].as_str().unwrap().to_string();
    let (_, instances) = get_json(&format!("{dw}/{study}/series/{series_uid}/instances"), &doctor)?;
    assert_eq!(instances.as_array().map(Vec::len), Some(6), "{instances}");
    let (_, detail) = get_json(&format!("{}/api/cases/studies/{study}", server.url), &doctor)?;
    // The cine: its own series, 40 frames, each rendered as JPEG and served raw.
    let cine = detail["series"].as_array().unwrap().iter().flat_map(|s| s["instances"].as_array().unwrap().clone()).find(|i| i["frames"] == 40).expect("the cine");
    assert_eq!(cine["rendered"], "jpeg", "{cine}");
    let cine_base = format!("{dw}/{study}/series/{}/instances/{}", detail["series"].as_array().unwrap().iter().find(|s| s["instances"][0]["sop_uid"] == cine["sop_uid"]).unwrap()["series_uid"].as_str().unwrap(), cine["sop_uid"].as_str().unwrap());
    let (s, _, jpeg) = http_request("GET", &format!("{cine_base}/frames/40/rendered?token={doctor}"), &[], None)?;
    assert!(s == 200 && jpeg.starts_with(&[0xFF, 0xD8]), "{s}");
    let (s, _, raw40) = http_request("GET", &format!("{cine_base}/frames/40?token={doctor}"), &[("Accept", "application/octet-stream")], None)?;
    assert_eq!((s, raw40.len()), (200, 320 * 160));
    let jpeg_path = dir.0.join("cine40.jpg");
    std::fs::write(&jpeg_path, &jpeg)?;
    let ocr = String::from_utf8_lossy(&std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(&jpeg_path).args(["stdout", "--psm", "11"]).output()?.stdout).to_lowercase();
    assert!(ocr.contains("axial") && !ocr.contains("doe") && !ocr.contains("pid4711x"), "the cine's last frame: {ocr}");
    let inst = detail["series"][0]["instances"].as_array().unwrap().iter().find(|i| i["rows"] == 160 && i["samples"] == 1).unwrap().clone();
    let sop = inst["sop_uid"].as_str().unwrap();
    let (s, meta) = get_json(&format!("{dw}/{study}/series/{series_uid}/instances/{sop}/metadata"), &doctor)?;
    assert_eq!(s, 200);
    assert_eq!(meta[0]["00080018"]["Value"][0], sop);
    assert_eq!(meta[0]["00120062"]["Value"][0], "YES", "Patient Identity Removed");
    let auth = format!("Bearer {doctor}");
    let (s, hs, raw) = http_request("GET", &format!("{dw}/{study}/series/{series_uid}/instances/{sop}/frames/1"), &[("Authorization", &auth), ("Accept", "application/octet-stream")], None)?;
    assert_eq!((s, raw.len()), (200, 320 * 160), "{hs:?}");
    let (s, hs, multi) = http_request("GET", &format!("{dw}/{study}/series/{series_uid}/instances/{sop}/frames/1"), &[("Authorization", &auth)], None)?;
    assert!(s == 200 && header(&hs, "content-type").unwrap().starts_with("multipart/related") && multi.windows(raw.len()).any(|w| w == &raw[..]));
    let png_url = format!("{dw}/{study}/series/{series_uid}/instances/{sop}/frames/1/rendered?token={doctor}");
    let (s, _, png) = http_request("GET", &png_url, &[], None)?;
    assert!(s == 200 && png.starts_with(b"\x89PNG"));
    let png_path = dir.0.join("frame.png");
    std::fs::write(&png_path, &png)?;
    let ocr = String::from_utf8_lossy(&std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(&png_path).args(["stdout", "--psm", "11"]).output()?.stdout).to_lowercase();
    assert!(ocr.contains("axial"), "{ocr}");
    for term in ["doe", "john", "pid4711x", "1961"] {
        assert!(!ocr.contains(term), "{term} readable in the published frame: {ocr}");
    }
    assert_eq!(http_request("GET", &format!("{dw}/{study}/series/{series_uid}/instances/{sop}/frames/2"), &[("Authorization", &auth)], None)?.0, 404);
    let (s, hs, body) = http_request("GET", &format!("{dw}/{study}/series/{series_uid}/instances/{sop}"), &[("Authorization", &auth)], None)?;
    assert_eq!(s, 200);
    let ct = header(&hs, "content-type").unwrap().to_string();
    assert!(ct.contains("application/dicom"), "{ct}");
    let boundary = ct.split("boundary=").nth(1).unwrap().trim_matches('"').to_string();
    let start = body.windows(4).position(|w| w == b"DICM").unwrap() - 128;
    let end = body.windows(boundary.len() + 4).rposition(|w| w == format!("\r\n--{boundary}").as_bytes()).unwrap();
    let dcm = dir.0.join("wado.dcm");
    std::fs::write(&dcm, &body[start..end])?;
    let dump = std::process::Command::new("dcmdump").arg("-q").arg(&dcm).output()?;
    assert!(String::from_utf8_lossy(&dump.stdout).contains(sop), "dcmtk reads the WADO-RS instance: {}", String::from_utf8_lossy(&dump.stderr));
    let (_, tags) = get_json(&format!("{}/api/cases/studies/{study}/series/{series_uid}/instances/{sop}/tags", server.url), &doctor)?;
    assert!(tags.as_array().unwrap().iter().any(|t| t["keyword"] == "PatientName" && t["value"].as_str().unwrap().starts_with("ANON^")), "{tags}");
    // An independent DICOMweb client (dicomweb-client from PyPI) searches and
    // retrieves: studies, series, instances, metadata, a whole instance, a frame.
    let client = std::process::Command::new(target_dir().join("test-venv/bin/python"))
        .args(["-c", "import sys, json
from dicomweb_client.api import DICOMwebClient
c = DICOMwebClient(url=sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]})
studies = c.search_for_studies()
st = studies[0]['0020000D']['Value'][0]
series = c.search_for_series(st)
se = [s for s in series if s['00201209']['Value'][0] > 1][0]['0020000E']['Value'][0]
inst = c.search_for_instances(st, se)
sop = [i for i in inst if i['00280010']['Value'][0] == 160][0]['00080018']['Value'][0]
meta = c.retrieve_series_metadata(st, se)
ds = c.retrieve_instance(st, se, sop)
frames = c.retrieve_instance_frames(st, se, sop, frame_numbers=[1])
print(json.dumps({'studies': len(studies), 'series': len(series), 'instances': len(inst), 'meta': len(meta),
  'name': str(ds.PatientName), 'sop': str(ds.SOPInstanceUID), 'frame': len(frames[0]), 'pixels': len(ds.PixelData)}))"])
        .arg(format!("{}/dicomweb", server.url))
        .arg(&doctor)
        .output()?;
    assert!(client.status.success(), "dicomweb-client: {}", String::from_utf8_lossy(&client.stderr));
    let c: Value = serde_json::from_slice(&client.stdout)?;
    assert_eq!((c["studies"].as_u64(), c["series"].as_u64(), c["instances"].as_u64(), c["meta"].as_u64()), (Some(1), Some(2), Some(6), Some(6)), "{c}");
    assert!(c["name"].as_str().unwrap().starts_with("ANON^") && c["frame"] == c["pixels"] && c["frame"].as_u64() >= Some(320 * 160), "{c}");

    // QIDO-RS matching as clients send it; CORS for viewers on another origin.
    let pid = detail["series"][0]["instances"][0]["patient_id"].as_str().unwrap_or_default().to_string();
    for (query, n) in [("PatientName=anon*", 1), ("PatientName=SMITH*", 0), ("ModalitiesInStudy=*", 1), (&format!("PatientID={pid}") as &str, 1), ("PatientID=PID4711X", 0), ("StudyDate=19000101-20991231", 0), ("limit=0", 0)] {
        let (s, v) = get_json(&format!("{dw}?{query}"), &doctor)?;
        assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(n)), "{query}: {v}");
    }
    let (s, hs, _) = http_request("OPTIONS", &format!("{dw}/{study}/series"), &[("Origin", "http://ohif.example"), ("Access-Control-Request-Headers", "authorization")], None)?;
    assert!(s == 204 && header(&hs, "access-control-allow-headers").is_some_and(|h| h.contains("Authorization")), "{s} {hs:?}");
    let (_, hs, _) = http_request("GET", &format!("{dw}/{study}/series"), &[("Authorization", &auth)], None)?;
    assert_eq!(header(&hs, "access-control-allow-origin"), Some("*"));
    assert_no_phi("the JSON API", format!("{studies}{detail}{meta}{qido}{series}{instances}{tags}{jobs:?}").as_bytes());

    // Every byte the server keeps or logs: objects, database (with its WAL), staging.
    let data = server.data_dir().to_path_buf();
    for f in files_under(&data) {
        assert_no_phi(&f.display().to_string(), &std::fs::read(&f)?);
    }
    assert_no_phi("the server log", server.log_text().as_bytes());
    let staged: Vec<_> = files_under(&data.join("cases/staging"));
    assert!(staged.is_empty(), "originals are deleted once processed: {staged:?}");
    let metrics = server.metrics_text().unwrap_or_default();
    assert!(metric_value(&metrics, "casecast_ingest_jobs_finished_total{outcome=\"done\"}").is_some_and(|v| v >= 8.0), "{metrics}");
    assert!(metric_value(&metrics, "casecast_ingest_jobs_finished_total{outcome=\"failed\"}").is_some_and(|v| v >= 6.0));
    assert!(metric_value(&metrics, "casecast_ingest_bytes_total").is_some_and(|v| v > 0.0));
    Ok(())
}

/// The server is killed in the middle of an upload and in the middle of processing:
/// the upload resumes where the disk has it, interrupted jobs run again, and the
/// library shows every instance exactly once.
#[test]
fn cases_survive_a_crash_mid_upload_and_mid_processing() -> Result<()> {
    let mut server = Server::start(&["--cases-cstore-listen", "", "--cases-workers", "1"])?;
    let dir = TempDir::new("cases-restart");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "12"])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Restart");
    let auth = format!("Bearer {doctor}");

    // Half an upload, then the crash.
    let first = std::fs::read(input.join("DOE_JOHN_s000.dcm"))?;
    let (_, hs, _) = http_request(
        "POST",
        &format!("{}/api/cases/uploads", server.url),
        &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Length", &first.len().to_string())],
        None,
    )?;
    let url = format!("{}{}", server.url, header(&hs, "location").unwrap());
    let half = first.len() / 2;
    let patch = |at: usize, body: &[u8]| {
        http_request("PATCH", &url, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0"), ("Upload-Offset", &at.to_string()), ("Content-Type", "application/offset+octet-stream")], Some(body))
    };
    assert_eq!(patch(0, &first[..half])?.0, 204);
    server.crash_and_restart()?;
    let (s, hs, _) = http_request("HEAD", &url, &[("Authorization", &auth), ("Tus-Resumable", "1.0.0")], None)?;
    assert_eq!((s, header(&hs, "upload-offset")), (200, Some(half.to_string().as_str())), "the upload resumes after a restart");
    let (s, _, _) = patch(half, &first[half..])?;
    assert_eq!(s, 204);

    // The rest of the series, then a crash while the single worker is busy.
    for n in 1..12 {
        tus_upload(&server, &doctor, &std::fs::read(input.join(format!("DOE_JOHN_s{n:03}.dcm")))?, "dicom", 1 << 20)?;
    }
    wait_for("some jobs done, others not yet", Duration::from_secs(120), || {
        let (_, jobs) = get_json(&format!("{}/api/cases/jobs", server.url), &doctor).ok()?;
        let jobs = jobs.as_array()?.clone();
        let done = jobs.iter().filter(|j| j["status"] == "done").count();
        // Between two jobs none runs: the crash must find one running.
        (jobs.iter().any(|j| j["status"] == "running") && (1..10).contains(&done)).then_some(())
    })?;
    server.crash_and_restart()?;
    let jobs = wait_jobs(&server, &doctor, 12, Duration::from_secs(240))?;
    assert!(jobs.iter().all(|j| j["status"] == "done"), "{jobs:#?}");
    let (_, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    assert_eq!(studies.as_array().map(Vec::len), Some(1), "{studies}");
    assert_eq!(studies[0]["instance_count"], 12, "every instance once: {studies}");
    let log = server.log_text();
    assert!(log.contains("ingest jobs interrupted by the last stop"), "the job that was running is queued again");
    assert_no_phi("the server log", log.as_bytes());
    Ok(())
}

/// A doctor in Chromium picks a cine and a series on the /cases page: the page uploads
/// them (tus), the jobs finish, the study opens in the viewer, frames are drawn from
/// raw pixel values, and scrolling and cine move through them.
#[test]
fn cases_page_uploads_and_shows_a_study_in_chromium() -> Result<()> {
    let server = Server::start(&["--cases-cstore-listen", ""])?;
    let dir = TempDir::new("cases-browser");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "6"])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Browser");
    let page = Browser::start()?;
    page.goto(&format!("{}/cases?token={doctor}", server.url))?;
    let hook = |expr: &str| page.eval(&format!("return window.casecastCases ? {expr} : null")).unwrap_or(Value::Null);
    wait_for("the page to load", Duration::from_secs(20), || hook("window.casecastCases.studies").as_array().map(|_| ()))?;
    for n in 0..6 {
        page.choose_file("#files", &input.join(format!("DOE_JOHN_s{n:03}.dcm")))?;
    }
    wait_for("six jobs done in the page", Duration::from_secs(120), || {
        let jobs = hook("window.casecastCases.jobs");
        let jobs = jobs.as_array()?;
        (jobs.len() >= 6 && jobs.iter().all(|j| j["status"] == "done")).then_some(())
    })?;
    wait_for("the study listed", Duration::from_secs(20), || {
        page.eval("const a = document.querySelector('#studies a.study'); if (a) { a.click(); return true } return false").ok().filter(|v| v == &json!(true))
    })?;
    wait_for("a frame drawn", Duration::from_secs(20), || (hook("window.casecastCases.drawn").as_f64()? > 0.0).then_some(()))?;
    assert_eq!(hook("window.casecastCases.frames"), json!(6), "the series is one stack of six pictures");
    assert_eq!(page.eval("return document.querySelector('#frame-label').textContent")?, json!("frame 1 / 6"));
    // The canvas shows the picture: not blank.
    let lit = page.eval("const c = document.querySelector('#image'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 100) n++; return n")?;
    assert!(lit.as_f64().is_some_and(|n| n > 100.0), "the canvas is blank: {lit}");
    // Scroll with the wheel, then play the cine.
    page.eval("document.querySelector('#image').dispatchEvent(new WheelEvent('wheel', {deltaY: 100, deltaMode: 1, bubbles: true, cancelable: true}))")?;
    wait_for("frame 2", Duration::from_secs(10), || (hook("window.casecastCases.frame") == json!(2)).then_some(()))?;
    page.eval("document.querySelector('#play').click()")?;
    wait_for("the cine to reach the last frame", Duration::from_secs(20), || (hook("window.casecastCases.frame") == json!(6)).then_some(()))?;
    page.eval("document.querySelector('#play').click()")?;
    assert_eq!(hook("window.casecastCases.lastError"), Value::Null);
    // The metadata panel shows the pseudonym, not the name.
    let meta = wait_for("the metadata", Duration::from_secs(10), || {
        page.eval("return document.querySelector('#meta').textContent").ok().and_then(|v| v.as_str().map(str::to_string)).filter(|t| t.contains("PatientName"))
    })?;
    assert!(meta.contains("ANON^") && !meta.to_lowercase().contains("doe"), "{meta}");
    // `CASECAST_DOCS_SCREENSHOTS=1` keeps a picture of the page, zoomed in, for docs/.
    if std::env::var_os("CASECAST_DOCS_SCREENSHOTS").is_some() {
        page.eval("document.querySelector('#image').dispatchEvent(new WheelEvent('wheel', {deltaY: -300, deltaMode: 1, bubbles: true, cancelable: true}))")?;
        page.screenshot(&screenshot_path(&dir.0, "cases-viewer.png"), 1400, 900)?;
    }
    Ok(())
}

/// The production stores: metadata in PostgreSQL (Debian's server) and objects in S3
/// (moto standing in), the same code and SQL as the embedded default: uploads are
/// published, listed, and served back from S3 by WADO-RS.
#[test]
fn cases_on_postgresql_and_s3() -> Result<()> {
    let pg = Postgres::start()?;
    let moto = Moto::start_s3("cases-bucket")?;
    let server = Server::start(&[
        "--cases-cstore-listen",
        "",
        "--cases-database",
        &pg.url,
        "--cases-objects",
        "s3://cases-bucket/library",
        "--cases-s3-endpoint",
        &moto.endpoint,
    ])?;
    let dir = TempDir::new("cases-pg");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "3"])?;
    let doctor = server.token("demo", Role::Operator, "Dr. Cloud");
    for n in 0..3 {
        tus_upload(&server, &doctor, &std::fs::read(input.join(format!("DOE_JOHN_s{n:03}.dcm")))?, "dicom", 1 << 20)?;
    }
    let jobs = wait_jobs(&server, &doctor, 3, Duration::from_secs(120))?;
    assert!(jobs.iter().all(|j| j["status"] == "done"), "{jobs:#?}");
    let (_, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    assert_eq!(studies[0]["instance_count"], 3, "{studies}");
    let study = studies[0]["study_uid"].as_str().unwrap();
    // The objects are in the bucket, under the prefix.
    let (_, _, listing) = http_request("GET", &format!("{}/cases-bucket?list-type=2&prefix=library/demo/", moto.endpoint), &[], None)?;
    let listing = String::from_utf8_lossy(&listing);
    assert_eq!(listing.matches(".dcm</Key>").count(), 3, "{listing}");
    assert_eq!(listing.matches(".png</Key>").count(), 3, "{listing}");
    // Served back from S3: a frame's raw bytes and its rendering.
    let (_, detail) = get_json(&format!("{}/api/cases/studies/{study}", server.url), &doctor)?;
    let series = detail["series"][0]["series_uid"].as_str().unwrap();
    let sop = detail["series"][0]["instances"][0]["sop_uid"].as_str().unwrap();
    let frame = format!("{}/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1", server.url);
    let auth = format!("Bearer {doctor}");
    let (s, _, raw) = http_request("GET", &frame, &[("Authorization", &auth), ("Accept", "application/octet-stream")], None)?;
    assert_eq!((s, raw.len()), (200, 320 * 160));
    let (s, _, png) = http_request("GET", &format!("{frame}/rendered"), &[("Authorization", &auth)], None)?;
    assert!(s == 200 && png.starts_with(b"\x89PNG"));
    // A title and a search on PostgreSQL: the same upsert and listing as SQLite.
    assert_eq!((studies[0]["uploader"].as_str(), studies[0]["frame_count"].as_i64()), (Some("Dr. Cloud"), Some(3)), "{studies}");
    let (s, _, body) = http_request(
        "PATCH",
        &format!("{}/api/cases/studies/{study}", server.url),
        &[("Authorization", &format!("Bearer {doctor}")), ("Content-Type", "application/json")],
        Some(json!({ "title": "Cloud case" }).to_string().as_bytes()),
    )?;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let (_, found) = get_json(&format!("{}/api/cases/studies?q=cloud%20case", server.url), &doctor)?;
    assert_eq!((found.as_array().map(Vec::len), found[0]["title"].as_str()), (Some(1), Some("Cloud case")), "{found}");
    // The rows are in PostgreSQL (no SQLite file was made).
    assert!(!server.data_dir().join("cases.db").exists());
    Ok(())
}

/// PACS and modalities send directly: DICOMweb STOW-RS (multipart) and DICOM
/// C-STORE (dcmtk's storescu as the modality) both end as published instances of
/// the same study; a wrong AE title and a non-DICOM part are refused.
#[test]
fn cases_arrive_by_stow_rs_and_c_store() -> Result<()> {
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--cases-cstore-listen", &listen, "--cases-cstore-room", "demo"])?;
    let dir = TempDir::new("cases-stow");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "4"])?;
    let doctor = server.token("demo", Role::Commentator, "Dr. Stow");

    // STOW-RS: two instances and a part that is not DICOM.
    let boundary = "stow-boundary-1234";
    let mut body = Vec::new();
    for part in [std::fs::read(input.join("DOE_JOHN_s000.dcm"))?, std::fs::read(input.join("DOE_JOHN_s001.dcm"))?, b"hello".to_vec()] {
        body.extend(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").bytes());
        body.extend(part);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let auth = format!("Bearer {doctor}");
    let url = format!("{}/dicomweb/studies", server.url);
    let (s, _, resp) = http_request("POST", &url, &[("Authorization", &auth), ("Content-Type", &ct)], Some(&body))?;
    assert_eq!(s, 202, "{}", String::from_utf8_lossy(&resp));
    let resp: Value = serde_json::from_slice(&resp)?;
    assert_eq!(resp["jobs"].as_array().map(Vec::len), Some(3), "{resp}");
    let (s, _, _) = http_request("POST", &url, &[("Authorization", &auth), ("Content-Type", "application/json")], Some(b"{}"))?;
    assert_eq!(s, 415);
    let viewer = format!("Bearer {}", server.token("demo", Role::Viewer, "v"));
    assert_eq!(http_request("POST", &url, &[("Authorization", &viewer), ("Content-Type", &ct)], Some(&body))?.0, 403);

    // C-STORE: a modality sends the other two; a wrong called AE title is refused.
    let sent = std::process::Command::new("storescu")
        .args(["-aet", "MODALITY", "-aec", "CASECAST", "127.0.0.1", &port.to_string()])
        .args([input.join("DOE_JOHN_s002.dcm"), input.join("DOE_JOHN_s003.dcm")])
        .output()?;
    assert!(sent.status.success(), "storescu: {}", String::from_utf8_lossy(&sent.stderr));
    let wrong = std::process::Command::new("storescu")
        .args(["-aet", "MODALITY", "-aec", "SOMEONE", "127.0.0.1", &port.to_string()])
        .arg(input.join("DOE_JOHN_s002.dcm"))
        .output()?;
    assert!(!wrong.status.success(), "a wrong called AE title is refused");

    let jobs = wait_jobs(&server, &doctor, 5, Duration::from_secs(120))?;
    let by = |source: &str, status: &str| jobs.iter().filter(|j| j["source"] == source && j["status"] == status).count();
    assert_eq!((by("stow", "done"), by("stow", "failed"), by("cstore", "done")), (2, 1, 2), "{jobs:#?}");
    let (_, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    assert_eq!(studies.as_array().map(Vec::len), Some(1), "{studies}");
    assert_eq!(studies[0]["instance_count"], 4, "{studies}");
    for f in files_under(server.data_dir()) {
        assert_no_phi(&f.display().to_string(), &std::fs::read(&f)?);
    }
    assert_no_phi("the server log", server.log_text().as_bytes());
    Ok(())
}

/// `casecast cases import` takes a folder from disk as an upload would, beside a
/// running server on the same data folder: the good files are published (the
/// server lists them), a non-DICOM file fails with its reason, and the exit status
/// says so; the originals stay where they were.
#[test]
fn cases_import_takes_a_folder_from_disk() -> Result<()> {
    let server = Server::start(&[])?;
    let dir = TempDir::new("cases-import");
    let input = dir.0.join("in");
    make_fixtures(&input, &["series", "3"])?;
    std::fs::write(input.join("notes.txt"), "not DICOM")?;
    let run = std::process::Command::new(casecast_bin())
        .args(["cases", "import", "--room", "demo", "--secret", SECRET, "--data-dir"])
        .arg(server.data_dir())
        .arg(&input)
        .output()?;
    let log = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(!run.status.success(), "one file was not DICOM: {log}");
    assert!(log.contains("3 done, 1 failed"), "{log}");
    assert!(log.contains("notes.txt: not a DICOM file"), "the failure names its file and reason: {log}");
    let doctor = server.token("demo", Role::Commentator, "Dr. Import");
    let (_, studies) = get_json(&format!("{}/api/cases/studies", server.url), &doctor)?;
    assert_eq!(studies[0]["instance_count"], 3, "{studies}");
    assert!(input.join("DOE_JOHN_s000.dcm").exists(), "originals on disk are left alone");
    Ok(())
}

/// "A 24-frame study sat at 'processing 0%' and then jumped to done; studies are
/// listed only as a pseudonym." A 24-frame cine, each frame its own picture with the
/// PHI burned in, is uploaded: the jobs API the page polls shows it frame by frame
/// ("frame 7 of 24 · reading text", a percentage that rises) before it is done, and so
/// does the page. Then the library: each study listed with its default title (never
/// made of PHI), upload date, uploader and counts; a title given by PATCH (only by
/// those who may upload, one line, bounded), found by the search (title, uploader,
/// modality, pseudonym), shown by the page as text, never written into DICOM or logs.
#[test]
fn cases_report_progress_frame_by_frame_and_the_library_is_titled_and_searched() -> Result<()> {
    let server = Server::start(&["--cases-cstore-listen", "", "--cases-workers", "1"])?;
    let dir = TempDir::new("cases-progress");
    make_fixtures(&dir.0.join("cine"), &["large", "24"])?;
    make_fixtures(&dir.0.join("series"), &["series", "1"])?;
    // Each frame a picture of its own (identical frames are read once): a mark moves.
    let cine = dir.0.join("cine/cine.dcm");
    let made = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
px, size = bytearray(ds.PixelData), ds.Rows * ds.Columns
for f in range(int(ds.NumberOfFrames)):
    for y in range(140, 152):
        for x in range(100 + 8 * f, 108 + 8 * f):
            px[f * size + y * ds.Columns + x] = 200
ds.PixelData = bytes(px)
ds.save_as(sys.argv[1])"])
        .arg(&cine)
        .output()?;
    anyhow::ensure!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let doctor = server.token("demo", Role::Commentator, "Dr. Progress");
    let other = server.token("demo", Role::Operator, "Dr. Other");
    let page = Browser::start()?;
    page.goto(&format!("{}/cases?token={doctor}", server.url))?;
    let hook = |expr: &str| page.eval(&format!("return window.casecastCases ? {expr} : null")).unwrap_or(Value::Null);
    wait_for("the page to load", Duration::from_secs(20), || hook("window.casecastCases.studies").as_array().map(|_| ()))?;

    // The cine, followed as the page follows it (its jobs API, and the page itself).
    let job = tus_upload(&server, &doctor, &std::fs::read(&cine)?, "dicom", 1 << 20)?;
    page.eval("document.querySelector('#refresh-studies').click()")?;
    let mut seen: Vec<(String, i64, i64, f64)> = Vec::new();
    let mut shown: Vec<String> = Vec::new();
    let done = wait_for("the cine's job to end", Duration::from_secs(240), || {
        let (_, jobs) = get_json(&format!("{}/api/cases/jobs", server.url), &doctor).ok()?;
        let j = jobs.as_array()?.iter().find(|j| j["id"] == job.as_str())?.clone();
        if j["status"] == "running" {
            let step = (j["stage"].as_str().unwrap_or("").to_string(), j["frame"].as_i64()?, j["frames"].as_i64()?, j["progress"].as_f64()?);
            if seen.last() != Some(&step) {
                seen.push(step);
            }
            let step = format!("return document.querySelector('#jobs tr[data-job=\"{job}\"] .job-step')?.textContent ?? ''");
            if let Some(text) = page.eval(&step).ok().and_then(|v| v.as_str().map(str::to_string))
                && !text.is_empty()
                && shown.last() != Some(&text)
            {
                shown.push(text);
            }
        }
        (j["status"] == "done" || j["status"] == "failed").then_some(j)
    })?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!((done["progress"].as_f64(), done["stage"].as_str(), done["frames"].as_i64()), (Some(1.0), Some(""), Some(24)), "{done}");
    // "" until the worker's first step is written (claimed, not yet started).
    let stages = ["", "opening", "decoding", "reading_text", "writing", "rendering", "publishing"];
    assert!(seen.iter().all(|(s, ..)| stages.contains(&s.as_str())), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1].3 >= w[0].3), "the percentage never goes back: {seen:?}");
    assert!(seen.iter().all(|s| s.3 < 1.0), "not done before it is: {seen:?}");
    let reading: Vec<i64> = seen.iter().filter(|(s, _, n, _)| s == "reading_text" && *n == 24).map(|s| s.1).collect();
    let intermediate: std::collections::BTreeSet<i64> = reading.iter().copied().filter(|f| (2..24).contains(f)).collect();
    assert!(intermediate.len() >= 3, "the job reads frame by frame, seen at several frames in between: {seen:?}");
    assert!(reading.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
    let fractions: Vec<f64> = seen.iter().map(|s| s.3).filter(|f| *f > 0.0 && *f < 1.0).collect();
    assert!(fractions.windows(2).filter(|w| w[1] > w[0]).count() >= 3, "the percentage rises step by step: {seen:?}");
    assert!(
        shown.iter().any(|t| t.contains(" of 24 · reading text") && t.contains("frame ")),
        "the page says which frame of how many and what it does: {shown:?}"
    );

    // A second study, from someone else.
    let series_job = tus_upload(&server, &other, &std::fs::read(dir.0.join("series/DOE_JOHN_s000.dcm"))?, "dicom", 1 << 20)?;
    let jobs = wait_jobs(&server, &doctor, 2, Duration::from_secs(120))?;
    assert!(jobs.iter().all(|j| j["status"] == "done"), "{jobs:#?}");
    assert_eq!(jobs.iter().find(|j| j["id"] == series_job.as_str()).map(|j| j["uploader"].clone()), Some(json!("Dr. Other")));

    // Listed with a default title made of de-identified values only, dates, uploader, counts.
    let studies_url = format!("{}/api/cases/studies", server.url);
    let (_, studies) = get_json(&studies_url, &doctor)?;
    assert_eq!(studies.as_array().map(Vec::len), Some(2), "{studies}");
    let us = studies.as_array().unwrap().iter().find(|s| s["modalities"] == json!(["US"])).unwrap().clone();
    let uid = us["study_uid"].as_str().unwrap().to_string();
    // The day of the upload (UTC), from its time: a run across midnight keeps it.
    let created = us["created_at"].as_i64().filter(|t| *t > 0).ok_or_else(|| anyhow::anyhow!("no upload time: {us}"))?;
    let today = std::process::Command::new("date").args(["-u", "+%Y-%m-%d", "-d"]).arg(format!("@{created}")).output()?;
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    assert_eq!(us["title"], format!("US uploaded {today}"), "no description kept, no study date kept: {us}");
    assert_eq!((us["custom_title"].as_bool(), us["uploader"].as_str(), us["study_date"].as_str()), (Some(false), Some("Dr. Progress"), Some("")), "{us}");
    assert_eq!((us["instance_count"].as_i64(), us["frame_count"].as_i64()), (Some(1), Some(24)), "{us}");

    // A title, by PATCH: only by those who may upload, one line, bounded, of this library.
    let title = "Mitral <b>valve</b> repair & \"clip\"";
    let patch = |token: &str, uid: &str, body: &str| {
        http_request("PATCH", &format!("{studies_url}/{uid}"), &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], Some(body.as_bytes()))
    };
    let viewer = server.token("demo", Role::Viewer, "v");
    assert_eq!(patch(&viewer, &uid, &json!({ "title": title }).to_string())?.0, 403);
    assert_eq!(http_request("PATCH", &format!("{studies_url}/{uid}"), &[], Some(b"{}"))?.0, 401);
    let (s, _, body) = patch(&doctor, &uid, &json!({ "title": "x".repeat(201) }).to_string())?;
    assert!(s == 400 && String::from_utf8_lossy(&body).contains("at most 200"), "{s} {}", String::from_utf8_lossy(&body));
    assert_eq!(patch(&doctor, &uid, &json!({ "title": "two\nlines" }).to_string())?.0, 400);
    assert_eq!(patch(&doctor, &uid, "not json")?.0, 400);
    assert_eq!(patch(&doctor, "2.25.404", &json!({ "title": title }).to_string())?.0, 404);
    let elsewhere = server.token("other", Role::Commentator, "x");
    assert_eq!(patch(&elsewhere, &uid, &json!({ "title": title }).to_string())?.0, 404, "another library's study");
    let (s, _, body) = patch(&doctor, &uid, &json!({ "title": format!("  {title} ") }).to_string())?;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body)?;
    assert_eq!((answer["title"].as_str(), answer["custom_title"].as_bool()), (Some(title), Some(true)), "{answer}");

    // Search on the server: title, uploader, modality, pseudonym; every word must match.
    let pseudonym = us["patient"].as_str().unwrap().to_string();
    let search = |q: &str| -> Result<Vec<String>> {
        let (s, v) = get_json(&format!("{studies_url}?q={}", q.replace(' ', "%20").replace('^', "%5E")), &doctor)?;
        anyhow::ensure!(s == 200, "{q}: {s} {v}");
        Ok(v.as_array().unwrap().iter().map(|s| s["study_uid"].as_str().unwrap().to_string()).collect())
    };
    assert_eq!(search("mitral")?, vec![uid.clone()]);
    assert_eq!(search("VALVE progress")?, vec![uid.clone()]);
    // The modality; the pseudonym's random letters may hold "US" too, and match.
    let by_modality = search("us")?;
    let both = pseudonym.to_lowercase().contains("us");
    assert!(by_modality.contains(&uid) && by_modality.len() == if both { 2 } else { 1 }, "{pseudonym}: {by_modality:?}");
    // The same patient (one pseudonym) in both studies.
    assert_eq!(search(&pseudonym.to_lowercase())?.len(), 2);
    assert_eq!(search(&format!("{} mitral", pseudonym.to_lowercase()))?, vec![uid.clone()]);
    assert_eq!(search("other")?.len(), 1);
    assert_ne!(search("other")?, vec![uid.clone()]);
    assert_eq!(search("ot")?.len(), 1, "the series' modality, OT");
    assert!(search("aortic")?.is_empty());
    assert!(search("mitral other")?.is_empty());
    assert_eq!(search("")?.len(), 2);
    assert_eq!(get_json(&format!("{studies_url}?q={}", "a".repeat(201)), &doctor)?.0, 400);

    // The page: the title as text (not HTML), the search box, a rename.
    page.eval("document.querySelector('#refresh-studies').click()")?;
    let card = format!("#studies .study-card[data-study=\"{uid}\"]");
    let shown_title = wait_for("the title on the page", Duration::from_secs(20), || {
        page.eval(&format!("return document.querySelector('{card} .study-title')?.textContent ?? null")).ok()?.as_str().map(str::to_string).filter(|t| t == title)
    })?;
    assert_eq!(shown_title, title);
    assert_eq!(page.eval(&format!("return document.querySelectorAll('{card} .study-title b').length"))?, json!(0), "the title is text, not markup");
    let text = page.eval(&format!("return document.querySelector('{card}').textContent"))?.as_str().unwrap_or("").to_string();
    assert!(text.contains("by Dr. Progress") && text.contains(&format!("uploaded {today}")) && text.contains("24 frames") && text.contains(&pseudonym), "{text}");
    page.eval("const s = document.querySelector('#study-search'); s.value = 'aortic'; s.dispatchEvent(new Event('input'))")?;
    wait_for("no study for a search that matches none", Duration::from_secs(20), || {
        (hook("window.casecastCases.query") == json!("aortic") && hook("window.casecastCases.studies").as_array()?.is_empty()).then_some(())
    })?;
    page.eval("const s = document.querySelector('#study-search'); s.value = 'Dr. Other'; s.dispatchEvent(new Event('input'))")?;
    wait_for("the other doctor's study only", Duration::from_secs(20), || {
        let n = page.eval("return document.querySelectorAll('#studies .study-card').length").ok()?;
        (hook("window.casecastCases.query") == json!("Dr. Other") && n == json!(1) && page.eval(&format!("return !document.querySelector('{card}')")).ok()? == json!(true)).then_some(())
    })?;
    page.eval("const s = document.querySelector('#study-search'); s.value = ''; s.dispatchEvent(new Event('input'))")?;
    wait_for("both studies again", Duration::from_secs(20), || (page.eval("return document.querySelectorAll('#studies .study-card').length").ok()? == json!(2)).then_some(()))?;
    page.eval(&format!("document.querySelector('{card} .study-rename').click()"))?;
    page.eval(&format!("const f = document.querySelector('{card} .study-rename-form'); f.querySelector('input').value = 'Clip, second look'; f.requestSubmit()"))?;
    wait_for("the new title", Duration::from_secs(20), || {
        (page.eval(&format!("return document.querySelector('{card} .study-title')?.textContent ?? null")).ok()? == json!("Clip, second look")).then_some(())
    })?;
    // The viewer's heading is the title.
    page.eval(&format!("document.querySelector('{card} a.study').click()"))?;
    wait_for("the study opened under its title", Duration::from_secs(20), || {
        (page.eval("return document.querySelector('#study-title').textContent").ok()? == json!("Clip, second look")).then_some(())
    })?;
    assert_eq!(hook("window.casecastCases.lastError"), Value::Null);

    // Never in DICOM output (QIDO-RS, metadata, the object), the database's instances, or the log.
    let auth = format!("Bearer {doctor}");
    let dw = format!("{}/dicomweb/studies", server.url);
    let (_, _, qido) = http_request("GET", &dw, &[("Authorization", &auth)], None)?;
    let (_, _, meta) = http_request("GET", &format!("{dw}/{uid}/metadata"), &[("Authorization", &auth)], None)?;
    let (_, _, object) = http_request("GET", &format!("{dw}/{uid}"), &[("Authorization", &auth)], None)?;
    for (what, bytes) in [("QIDO-RS", &qido), ("metadata", &meta), ("WADO-RS", &object)] {
        let lower = String::from_utf8_lossy(bytes).to_lowercase();
        assert!(!lower.contains("mitral") && !lower.contains("second look"), "the title in {what}");
    }
    let log = server.log_text().to_lowercase();
    assert!(!log.contains("mitral") && !log.contains("second look"), "the title in the log");
    assert_no_phi("the server log", log.as_bytes());
    assert_no_phi("the jobs and studies", format!("{seen:?}{shown:?}{studies}").as_bytes());
    Ok(())
}

/// Ingest jobs claimed under leases, on SQLite and on PostgreSQL: four workers, each
/// with its own connection pool as separate processes would have, take 200 jobs and
/// each job is taken exactly once; a worker that stops renewing loses its job to
/// another, and then can record nothing of it; a job whose workers keep dying fails
/// after three tries; a restarted node takes back at once what its earlier process
/// held, and leaves other nodes' jobs to their leases.
#[test]
fn ingest_jobs_are_claimed_under_leases_on_sqlite_and_postgresql() -> Result<()> {
    let pg = Postgres::start()?;
    let dir = TempDir::new("leases");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let sqlite = format!("sqlite://{}?mode=rwc", dir.0.join("cases.db").display());
    for url in [sqlite, pg.url.clone()] {
        rt.block_on(leases_hold(&url)).map_err(|e| anyhow::anyhow!("{}: {e:#}", url.split(':').next().unwrap_or("")))?;
    }
    Ok(())
}

async fn leases_hold(url: &str) -> Result<()> {
    use casecast_ingest::store::{Db, NewJob, StoreError};
    let job = |id: String| NewJob {
        id,
        room: "leases".into(),
        source: "upload".into(),
        kind: "dicom".into(),
        bytes: 1,
        staging: "/nonexistent".into(),
        batch: None,
    };
    let ttl = Duration::from_secs(30);
    let db = Db::connect(url).await?;
    db.insert_jobs(&(0..200).map(|i| job(format!("j{i:03}"))).collect::<Vec<_>>()).await?;

    // Four workers at once, 7 jobs a claim, until the queue is empty.
    let mut workers = Vec::new();
    for w in 0..4 {
        let db = Db::connect(url).await?;
        workers.push(tokio::spawn(async move {
            let owner = format!("node-{w}/1");
            let mut took = Vec::new();
            loop {
                let claimed = db.claim(&owner, 7, ttl, 3).await?;
                if claimed.is_empty() {
                    return anyhow::Ok(took);
                }
                for j in claimed {
                    db.job_done(&owner, &j.id, None).await?;
                    took.push(j.id);
                }
            }
        }));
    }
    let mut taken = Vec::new();
    let mut shares = Vec::new();
    for w in workers {
        let took = w.await??;
        shares.push(took.len());
        taken.extend(took);
    }
    let all = taken.len();
    taken.sort();
    taken.dedup();
    println!("{}: 200 jobs taken by four workers as {shares:?}", url.split(':').next().unwrap_or(""));
    anyhow::ensure!(all == 200 && taken.len() == 200, "{all} claims of {} jobs", taken.len());
    anyhow::ensure!(db.job_counts().await?.iter().any(|(s, n)| s == "done" && *n == 200), "{:?}", db.job_counts().await?);

    // A worker that stops renewing (its lease is 1 s) loses the job to another.
    db.insert_jobs(&[job("dying".into())]).await?;
    let first = db.claim("node-a/1", 1, Duration::from_secs(1), 3).await?;
    anyhow::ensure!(first.len() == 1, "{first:?}");
    anyhow::ensure!(db.claim("node-b/1", 1, ttl, 3).await?.is_empty(), "taken while its lease runs");
    let second = wait_for_async("the lease to run out and another worker to claim the job", Duration::from_secs(10), || async {
        db.claim("node-b/1", 1, ttl, 3).await.ok().filter(|c| !c.is_empty())
    })
    .await?;
    anyhow::ensure!(second[0].id == "dying" && second[0].attempts == 2, "{second:?}");
    anyhow::ensure!(db.renew("node-a/1", &["dying".into()], ttl).await? == ["dying"], "the old lease is lost");
    anyhow::ensure!(matches!(db.job_done("node-a/1", "dying", None).await, Err(StoreError::LeaseLost)), "the old worker records nothing");
    anyhow::ensure!(matches!(db.job_failed("node-a/1", "dying", "late").await, Err(StoreError::LeaseLost)));
    db.job_done("node-b/1", "dying", None).await?;
    anyhow::ensure!(db.job("dying").await?.is_some_and(|j| j.status == "done" && j.error.is_none()));

    // Its workers keep dying: after three tries the job fails, with the reason.
    db.insert_jobs(&[job("poison".into())]).await?;
    for _ in 0..3 {
        wait_for_async("the poison job to be claimable", Duration::from_secs(10), || async {
            db.claim("node-c/1", 1, Duration::from_secs(1), 3).await.ok().filter(|c| !c.is_empty())
        })
        .await?;
    }
    wait_for_async("the poison job to fail", Duration::from_secs(10), || async {
        let _ = db.claim("node-c/1", 1, Duration::from_secs(1), 3).await;
        db.job("poison").await.ok().flatten().filter(|j| j.status == "failed")
    })
    .await?;

    // A restarted node queues its earlier process's jobs at once; another node's
    // job keeps its lease.
    db.insert_jobs(&[job("mine".into()), job("theirs".into())]).await?;
    anyhow::ensure!(db.claim("host@10.0.0.1:8080/100-aa", 1, ttl, 3).await?.len() == 1);
    anyhow::ensure!(db.claim("host@10.0.0.1:80/7-bb", 1, ttl, 3).await?.len() == 1);
    let (requeued, failed) = db.recover("host@10.0.0.1:8080/", "host@10.0.0.1:8080/200-cc", 3).await?;
    anyhow::ensure!((requeued, failed) == (1, 0), "{requeued} requeued, {failed} failed");
    anyhow::ensure!(db.job("mine").await?.is_some_and(|j| j.status == "queued"));
    anyhow::ensure!(db.job("theirs").await?.is_some_and(|j| j.status == "running"));
    Ok(())
}

/// Polls `probe` every 100 ms until it answers, for at most `limit`.
async fn wait_for_async<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        anyhow::ensure!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
