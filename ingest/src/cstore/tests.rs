//! The receiver against dcmtk's storescu and echoscu, and its command parsing.

use super::*;
use super::dimse::{padded, put_element};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use std::process::{Command as Cmd, ExitStatus, Stdio};
use std::sync::Mutex;

const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "casecast-cstore-{tag}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    port: u16,
    staging: PathBuf,
    received: Arc<Mutex<Vec<(PathBuf, String, u64)>>>,
    _dir: TempDir,
}

/// Start a receiver; `refuse` makes the sink refuse everything.
fn start(tag: &str, refuse: Option<&'static str>, tweak: impl FnOnce(&mut Options)) -> Server {
    let dir = TempDir::new(tag);
    let staging = dir.0.join("staging");
    let mut opts = Options {
        ae_title: "CASECAST".into(),
        staging: staging.clone(),
        max_bytes: 64 * 1024 * 1024,
        max_associations: 4,
        allowed_calling: Vec::new(),
    };
    tweak(&mut opts);
    let received: Arc<Mutex<Vec<(PathBuf, String, u64)>>> = Arc::default();
    let rec = received.clone();
    let sink: Sink = Arc::new(move |r: Received| {
        // the file must be complete when the sink sees it
        assert_eq!(
            std::fs::metadata(&r.path).expect("file exists").len(),
            r.bytes
        );
        rec.lock().unwrap().push((r.path, r.calling_ae, r.bytes));
        match refuse {
            Some(reason) => Err(reason.to_string()),
            None => Ok(()),
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    spawn(listener, opts, sink).expect("spawn");
    Server {
        port,
        staging,
        received,
        _dir: dir,
    }
}

/// Run a dcmtk tool with a bounded wait; returns exit status and output.
fn run_tool(program: &str, args: &[String]) -> (ExitStatus, String) {
    let mut child = Cmd::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (install dcmtk): {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} did not finish within {TOOL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = out_reader.join().unwrap() + &err_reader.join().unwrap();
    (status, output)
}

fn scu_args(port: u16, called: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-aet", "TESTSCU", "-aec", called, "-to", "20", "-ta", "20", "-td", "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    args.push(port.to_string());
    args
}

fn storescu(port: u16, called: &str, file: &Path) -> (ExitStatus, String) {
    let mut args = scu_args(port, called, &["-v"]);
    args.push(file.display().to_string());
    run_tool("storescu", &args)
}

fn staged_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Write a 64x64 8-bit Secondary Capture; returns (path, SOP instance UID, pixels).
fn make_secondary_capture(dir: &Path) -> (PathBuf, String, Vec<u8>) {
    let uid = format!("2.25.{}", rand::random::<u64>());
    let pixels: Vec<u8> = (0..64 * 64).map(|i| (i * 7 % 251) as u8).collect();
    let obj = InMemDicomObject::from_element_iter([
        DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, uid.as_str()),
        DataElement::new(tags::PATIENT_NAME, VR::PN, "Test^Patient"),
        DataElement::new(tags::PATIENT_ID, VR::LO, "CC0001"),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            format!("{uid}.1").as_str(),
        ),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            format!("{uid}.2").as_str(),
        ),
        DataElement::new(tags::MODALITY, VR::CS, "OT"),
        DataElement::new(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64_u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(64_u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(8_u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7_u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pixels.clone()),
        ),
    ]);
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .expect("meta");
    let path = dir.join("sc.dcm");
    file.write_to_file(&path).expect("write test file");
    (path, uid, pixels)
}

#[test]
fn cstore_echo_succeeds() {
    let server = start("echo", None, |_| {});
    let (status, out) = run_tool("echoscu", &scu_args(server.port, "CASECAST", &["-v"]));
    assert!(status.success(), "echoscu failed: {out}");
}

#[test]
fn cstore_receives_object() {
    let server = start("store", None, |_| {});
    let src = TempDir::new("store-src");
    let (file, uid, pixels) = make_secondary_capture(&src.0);
    let (status, out) = storescu(server.port, "CASECAST", &file);
    assert!(status.success(), "storescu failed: {out}");

    // the sink runs before the C-STORE-RSP, so it is done by now
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{out}");
    let (path, calling_ae, bytes) = &received[0];
    assert_eq!(calling_ae, "TESTSCU");
    assert_eq!(std::fs::metadata(path).unwrap().len(), *bytes);
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(".dcm") && !name.starts_with('.'), "{name}");

    let obj = dicom_object::open_file(path).expect("received file opens");
    assert_eq!(trim_uid(obj.meta().media_storage_sop_instance_uid()), uid);
    assert_eq!(
        trim_uid(obj.meta().implementation_class_uid()),
        IMPLEMENTATION_CLASS_UID
    );
    let got_uid = obj
        .element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(trim_uid(&got_uid), uid);
    let got_pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(&got_pixels[..], &pixels[..]);
    // only the final file is left in staging (no temporary leftovers)
    assert_eq!(staged_files(&server.staging), vec![path.clone()]);
}

/// The `deflate` feature of dicom-transfer-syntax-registry is on in this
/// workspace (via casecast-ingest), so dicom-ul negotiates deflate.
#[test]
fn cstore_receives_deflated_object() {
    let server = start("deflate", None, |_| {});
    let src = TempDir::new("deflate-src");
    let (file, uid, pixels) = make_secondary_capture(&src.0);
    let mut args = scu_args(server.port, "CASECAST", &["-v", "-xd"]);
    args.push(file.display().to_string());
    let (status, out) = run_tool("storescu", &args);
    assert!(status.success(), "storescu failed: {out}");
    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{out}");
    let obj = dicom_object::open_file(&received[0].0).expect("received file opens");
    assert_eq!(
        trim_uid(obj.meta().transfer_syntax()),
        "1.2.840.10008.1.2.1.99"
    );
    let got_uid = obj
        .element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(trim_uid(&got_uid), uid);
    let got_pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(&got_pixels[..], &pixels[..]);
}

#[test]
fn cstore_refuses_wrong_called_ae() {
    let server = start("called", None, |_| {});
    let src = TempDir::new("called-src");
    let (file, _, _) = make_secondary_capture(&src.0);
    let (status, out) = storescu(server.port, "SOMEONEELSE", &file);
    assert!(!status.success(), "storescu should fail: {out}");
    assert!(server.received.lock().unwrap().is_empty());
    assert!(staged_files(&server.staging).is_empty());
}

#[test]
fn cstore_refuses_unlisted_calling_ae() {
    let server = start("calling", None, |o| {
        o.allowed_calling = vec!["PACS1".into()]
    });
    let (status, out) = run_tool("echoscu", &scu_args(server.port, "CASECAST", &[]));
    assert!(!status.success(), "echoscu should be refused: {out}");
}

#[test]
fn cstore_sink_refusal_is_reported() {
    let server = start("refuse", Some("case is closed"), |_| {});
    let src = TempDir::new("refuse-src");
    let (file, _, _) = make_secondary_capture(&src.0);
    let (status, out) = storescu(server.port, "CASECAST", &file);
    assert!(
        !status.success() || out.contains("Failed") || out.contains("Error"),
        "storescu did not report the failure: {out}"
    );
    assert_eq!(server.received.lock().unwrap().len(), 1);
    assert!(
        staged_files(&server.staging).is_empty(),
        "staging not empty"
    );
}

#[test]
fn cstore_size_limit_refuses_object() {
    let server = start("limit", None, |o| o.max_bytes = 1000);
    let src = TempDir::new("limit-src");
    let (file, _, _) = make_secondary_capture(&src.0);
    let (status, out) = storescu(server.port, "CASECAST", &file);
    assert!(
        !status.success() || out.contains("Failed") || out.contains("Error"),
        "storescu did not report the failure: {out}"
    );
    assert!(server.received.lock().unwrap().is_empty());
    assert!(
        staged_files(&server.staging).is_empty(),
        "staging not empty"
    );
}

#[test]
fn cstore_survives_garbage_and_limits_associations() {
    let server = start("garbage", None, |o| o.max_associations = 1);
    // garbage: the server answers (abort or close) and ends that association
    {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"\x07\x00\x00\x00\x00\x04GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink); // returns once the server closes
    }
    // An idle connection takes the only slot, so a new association is
    // rejected. The slot of an earlier connection is freed asynchronously,
    // so retry (bounded) until the idle connection is the one holding it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let idle = loop {
        let idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let (status, out) = run_tool("echoscu", &scu_args(server.port, "CASECAST", &[]));
        if !status.success() {
            assert!(out.contains("Rejected"), "not a rejection: {out}");
            break idle;
        }
        assert!(
            Instant::now() < deadline,
            "echo was never rejected while busy"
        );
        drop(idle);
        std::thread::sleep(Duration::from_millis(50));
    };
    // dropping the idle connection frees the slot: echo works again
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, out) = run_tool("echoscu", &scu_args(server.port, "CASECAST", &[]));
        if status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "echo never succeeded again: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cstore_parses_and_builds_commands() {
    let rsp = build_response(
        0x8001,
        7,
        "1.2.3",
        Some("1.2.3.4"),
        0xC000,
        Some("bad\\thing"),
    );
    // group length is right and the comment was sanitised
    let glen = u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]) as usize;
    assert_eq!(glen, rsp.len() - 12);
    assert!(!rsp.windows(1).any(|w| w[0] == b'\\'));
    assert!(rsp.windows(9).any(|w| w == b"bad/thing"));

    let mut rq = Vec::new();
    put_element(&mut rq, 0x0002, &padded("1.2.840.10008.5.1.4.1.1.7", 0));
    put_element(&mut rq, 0x0100, &C_STORE_RQ.to_le_bytes());
    put_element(&mut rq, 0x0110, &9u16.to_le_bytes());
    put_element(&mut rq, 0x0800, &0u16.to_le_bytes());
    put_element(&mut rq, 0x1000, &padded("1.2.3", 0));
    let cmd = parse_command(&rq).expect("parse");
    assert_eq!(cmd.field, C_STORE_RQ);
    assert_eq!(cmd.message_id, 9);
    assert!(cmd.has_data_set);
    assert_eq!(cmd.sop_class, "1.2.840.10008.5.1.4.1.1.7");
    assert_eq!(cmd.sop_instance, "1.2.3");

    assert!(parse_command(&rq[..rq.len() - 1]).is_err());
    assert!(parse_command(&[1, 2, 3]).is_err());
    assert!(parse_command(&[0, 0, 0x00, 0x01, 0xff, 0xff, 0xff, 0x7f]).is_err());
    assert!(parse_command(&[8, 0, 0x00, 0x01, 0, 0, 0, 0]).is_err());
}
