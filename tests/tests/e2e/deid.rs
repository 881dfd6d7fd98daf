//! De-identification of DICOM files as `casecast deid` does it: files pydicom wrote
//! full of PHI, real sample files (pydicom-data and pydicom's own) checked by header
//! search, OCR and dciodvfy, files as archives send them, hostile files, float
//! pictures, the time bound, and cines streamed a frame at a time.

use super::*;
use super::cases::make_fixtures;
/// `casecast deid` on files pydicom wrote full of PHI, in tags and burned into the
/// pixels: nothing of the patient is left in any output byte nor in the rendered
/// frame (read back with tesseract), dcmtk and pydicom read the result, the study
/// stays one study, references follow the new UIDs; a compressed picture flagged
/// with burned-in text is quarantined, and a non-DICOM file fails alone.
#[test]
fn deid_removes_every_trace_of_the_patient_and_keeps_the_study_linked() -> Result<()> {
    let dir = TempDir::new("deid");
    let (input, output) = (dir.0.join("in"), dir.0.join("out"));
    make_fixtures(&input, &[])?;
    std::fs::write(input.join("notes.txt"), "not DICOM")?;
    // Broken files: cut short, and one whose element claims 4 GB.
    let whole = std::fs::read(input.join("DOE_JOHN_1.dcm"))?;
    std::fs::write(input.join("truncated.dcm"), &whole[..whole.len() / 2])?;
    let mut huge = whole[..132].to_vec();
    huge.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00, 0xff, 0xff, 0xff, 0xff]);
    huge.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 0xf0, 0xff, 0xff, 0xff]);
    std::fs::write(input.join("huge.dcm"), huge)?;

    let run = std::process::Command::new(casecast_bin())
        .args(["deid", "--frames", "--data-dir"])
        .arg(dir.0.join("data"))
        .arg(&input)
        .arg(&output)
        .output()?;
    let log = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(!run.status.success(), "one input was not DICOM: {log}");
    assert!(log.contains("notes.txt: FAILED: not readable as DICOM") && log.contains("6 de-identified, 6 failed"), "{log}");
    for broken in ["truncated.dcm: FAILED: not readable as DICOM", "huge.dcm: FAILED: not readable as DICOM"] {
        assert!(log.contains(broken), "{broken}: {log}");
    }
    // The JPEG one is decoded, read and cleaned; what cannot be decoded is kept back.
    for q in [
        "DOE_JOHN_3.dcm: FAILED: quarantined: Burned In Annotation is YES",
        "DOE_JOHN_4.dcm: FAILED: quarantined",
        "DOE_JOHN_8.dcm: FAILED: quarantined: the picture may carry burned-in text",
    ] {
        assert!(log.contains(q), "{q}: {log}");
    }

    let all: Vec<_> = std::fs::read_dir(&output)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    let (outputs, frames): (Vec<_>, Vec<_>) = all.into_iter().partition(|p| p.extension().is_some_and(|e| e == "dcm"));
    assert_eq!((outputs.len(), frames.len()), (6, 6), "{outputs:?} {frames:?}");
    // The burned-in name, ID and birth date are blacked out; the rest still reads.
    let read: String = frames
        .iter()
        .map(|f| std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(f).args(["stdout", "--psm", "11"]).output())
        .collect::<std::io::Result<Vec<_>>>()?
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_lowercase())
        .collect();
    assert!(read.contains("axial") && read.contains("tissue"), "words that are not PHI stay: {read:?}");
    for term in ["doe", "john", "pid4711x", "1961"] {
        assert!(!read.contains(term), "{term:?} still readable in a frame: {read:?}");
    }
    // Every byte: names, IDs, dates, accession, institution, physician, the private
    // note, the original UIDs (their root `…498.4711.`: a bare "4711" also turns up
    // by chance in the new random 2.25 UIDs); and the log does not name the patient.
    let phi = ["doe", "john", "pid4711x", "19610412", "acc99887", "elsewhere", "house", "gregory", "private note", "498.4711"];
    for p in &outputs {
        let bytes = std::fs::read(p)?.to_ascii_lowercase();
        for term in phi {
            assert!(!bytes.windows(term.len()).any(|w| w == term.as_bytes()), "{term:?} left in {}", p.display());
        }
        let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
        assert!(name.starts_with("2.25.") && !name.contains("doe"), "{name}");
        let dump = std::process::Command::new("dcmdump").arg("-q").arg(p).output()?;
        assert!(dump.status.success(), "dcmtk cannot read {}: {}", p.display(), String::from_utf8_lossy(&dump.stderr));
        assert!(String::from_utf8_lossy(&dump.stdout).contains("(0012,0062) CS [YES]"));
    }
    // The inputs' names (DOE_JOHN_0.dcm) carry PHI: the log names an input only when
    // it failed (the user must find it), never the patient otherwise.
    for line in log.lines().filter(|l| !l.contains("FAILED")) {
        for term in ["doe", "john", "pid4711x"] {
            assert!(!line.to_lowercase().contains(term), "{term} in the log: {line}");
        }
    }
    // pydicom's reading: one study, linked references, one pseudonym, the method.
    let check = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys, json, pydicom
ds = sorted((pydicom.dcmread(p) for p in sys.argv[1:]), key=lambda d: d.InstanceNumber)
print(json.dumps({
  'studies': sorted({d.StudyInstanceUID for d in ds}),
  'series': sorted({d.SeriesInstanceUID for d in ds}),
  'names': sorted({str(d.PatientName) for d in ds}),
  'ref': str(ds[1].ReferencedImageSequence[0].ReferencedSOPInstanceUID),
  'first': str(ds[0].SOPInstanceUID),
  'study_description': str(ds[0].StudyDescription),
  'series_description': str(ds[0].SeriesDescription),
  'comments': 'ImageComments' in ds[0],
  'private': any(e.tag.is_private for d in ds for e in d),
  'codes': [str(i.CodeValue) for i in ds[0].DeidentificationMethodCodeSequence],
}))",
        )
        .args(&outputs)
        .output()?;
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let v: Value = serde_json::from_slice(&check.stdout)?;
    assert_eq!(v["studies"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["series"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(v["studies"][0].as_str().is_some_and(|s| s.starts_with("2.25.")), "{v}");
    assert_eq!(v["names"].as_array().map(Vec::len), Some(1), "one patient, one pseudonym: {v}");
    assert_eq!(v["ref"], v["first"], "the reference follows the new UID: {v}");
    assert_eq!(v["study_description"], "CT chest for ***", "the name scrubbed, the rest kept: {v}");
    assert_eq!(v["series_description"], "Axial 5mm");
    assert_eq!(v["comments"], false, "a descriptor with a phone number goes: {v}");
    assert_eq!(v["private"], false, "{v}");
    assert_eq!(v["codes"], json!(["113100", "113101", "113105"]), "Basic Profile, Clean Pixel Data, Clean Descriptors");
    Ok(())
}

/// Files of the real sample set that fail, each with the reason a user reads.
const REAL_FILES_REFUSED: &[(&str, &str)] = &[
    // A sequence delimiter written into the codestream's size: 3.7 billion columns.
    ("JPEG2000-embedded-sequence-delimiter.dcm", "compressed picture of 3722445056×1024 where the header says 256×1024"),
    ("MR_truncated.dcm", "declares 8192 bytes, but only 8130 are left"),
    ("rtplan_truncated.dcm", "declares 976 bytes, but only 711 are left"),
    ("emri_small_jpeg_2k_lossless_too_short.dcm", "it ends inside a sequence"),
    ("no_meta.dcm", "no DICOM data set where one would start"),
    ("meta_missing_tsyntax.dcm", "no DICOM data set where one would start"),
    // Data sets without a SOP Instance UID are not instances.
    ("empty_charset_LEI.dcm", "no SOP Instance UID"),
    ("priv_SQ.dcm", "no SOP Instance UID"),
    ("nested_priv_SQ.dcm", "no SOP Instance UID"),
];

/// Real files from public sample sets: pydicom-data's 68 (ultrasound with banners,
/// palette colour whole and segmented, YBR, RGB of 8 to 32 bits, 1-bit SEG, RLE,
/// JPEG, JPEG-LS, JPEG 2000, overlays) and pydicom's own test files. Each goes through
/// `casecast deid --frames` as a user runs it, and `tests/fixtures/deid_check.py`
/// checks each output as a reviewer would: no identifying value of its input in its
/// header (re-read by pydicom), none read by OCR in its first and last frames (both
/// polarities, 2× and 3×, as dcmtk renders them), and no dciodvfy error that was
/// not in the input. The files that fail do so with their reason. (One cine, 120
/// frames read for text, takes minutes and is in the benchmark instead.)
#[test]
fn deid_leaves_nothing_readable_in_real_sample_files_and_no_new_conformance_errors() -> Result<()> {
    let dir = TempDir::new("deid-real");
    let inputs = dir.0.join("in");
    std::fs::create_dir_all(&inputs)?;
    let data = std::process::Command::new(target_dir().join("test-venv/bin/python"))
        .args(["-c", "import data_store, os; print(os.path.join(os.path.dirname(data_store.__file__), 'data'))"])
        .output()?;
    anyhow::ensure!(data.status.success(), "pydicom-data (scripts/install-deps.sh test): {}", String::from_utf8_lossy(&data.stderr));
    let sources = [std::path::PathBuf::from(String::from_utf8_lossy(&data.stdout).trim()), "/usr/lib/python3/dist-packages/pydicom/data/test_files".into()];
    for source in &sources {
        for e in std::fs::read_dir(source)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".dcm") && name != "color3d_jpeg_baseline.dcm" {
                std::os::unix::fs::symlink(e.path(), inputs.join(&name))?;
            }
        }
    }
    let check = std::process::Command::new("/usr/bin/python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/deid_check.py"))
        .arg(format!("casecast:{}", casecast_bin().display()))
        .arg(&inputs)
        .arg(dir.0.join("work"))
        .args(["--ocr", "--dciodvfy"])
        .output()?;
    anyhow::ensure!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let rows: Vec<Value> = String::from_utf8_lossy(&check.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let files: Vec<&Value> = rows.iter().filter(|r| r.get("file").is_some()).collect();
    assert!(files.len() >= 120, "{} files", files.len());
    let mut wrong = Vec::new();
    for r in &files {
        let name = r["file"].as_str().unwrap_or_default();
        match REAL_FILES_REFUSED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => {
                if r["outcome"] != "failed" || !r["reason"].as_str().unwrap_or_default().contains(why) {
                    wrong.push(format!("{name}: should fail with {why:?}: {r}"));
                }
            }
            None => {
                let empty = |k: &str| r[k].as_array().is_none_or(Vec::is_empty);
                if r["outcome"] != "done" || !empty("header_leaks") || !empty("ocr_leaks") || r.get("ocr_unread").is_some() || !empty("new_errors") {
                    wrong.push(format!("{name}: {r}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {} files:\n{}", wrong.len(), files.len(), wrong.join("\n"));
    // The check reads what a reviewer would: the banners were there to read.
    let read: usize = files.iter().filter(|r| r.get("ocr_leaks").is_some()).count();
    assert!(read >= 40, "{read} outputs read by OCR");
    // The same picture by another decoder path (native, RLE, lossless JPEG 2000 and
    // JPEG-LS) is read and blacked out the same: the outputs' pixels are identical.
    let pairs = [
        ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"),
        ("OBXXXX1A_2frame.dcm", "OBXXXX1A_rle_2frame.dcm"),
        ("US1_UNCR.dcm", "US1_J2KR.dcm"),
        ("MR2_UNCR.dcm", "MR2_J2KR.dcm"),
        ("emri_small.dcm", "emri_small_RLE.dcm"),
        ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm"),
    ];
    let output = |name: &str| -> Result<std::path::PathBuf> {
        let d = dir.0.join("work").join(name);
        std::fs::read_dir(&d)?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "dcm")).ok_or_else(|| anyhow::anyhow!("no output in {}", d.display()))
    };
    for (a, b) in pairs {
        let same = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import sys, pydicom; a, b = (pydicom.dcmread(p).PixelData for p in sys.argv[1:]); sys.exit(0 if a == b else 1)"])
            .arg(output(a)?)
            .arg(output(b)?)
            .status()?;
        assert!(same.success(), "{a} and {b} come out with different pixels");
    }
    Ok(())
}

/// Real files as archives send them (pydicom's own test files, from Debian's
/// python3-pydicom): no file meta group (explicit VR, big and little endian), a meta
/// group without its group length (and a data set without its SOP UIDs), explicit VR
/// big endian, RT Doses (RLE) whose standard attributes are stored as UN, and a
/// private UN sequence of undefined length holding UIDs, a JPEG whose data set is
/// implicit VR under an explicit syntax, an RT Structure Set with no meta group. Each
/// comes out de-identified, in little endian, read by dcmtk and pydicom, its UIDs
/// replaced as UIDs (the file named by one), with no identifying value of its input
/// in any byte.
#[test]
fn deid_takes_real_files_as_they_arrive() -> Result<()> {
    let samples = std::path::Path::new("/usr/lib/python3/dist-packages/pydicom/data/test_files");
    let names = [
        "ExplVR_BigEndNoMeta.dcm",
        "ExplVR_LitEndNoMeta.dcm",
        "ExplVR_BigEnd.dcm",
        "no_meta_group_length.dcm",
        "rtdose_rle.dcm",
        "rtdose_rle_1frame.dcm",
        "UN_sequence.dcm",
        "SC_rgb_jpeg.dcm",
        "rtstruct.dcm",
    ];
    let dir = TempDir::new("deid-real");
    // What is not an instance fails alone, with why, and at once.
    for (name, why) in [
        ("no_meta.dcm", "no DICOM data set where one would start"),
        ("meta_missing_tsyntax.dcm", "a file meta group with no transfer syntax, and no DICOM data set"),
        ("README.txt", "no DICOM data set where one would start"),
        ("dicomdirtests/DICOMDIR", "a DICOMDIR (a media directory), not an instance"),
    ] {
        let run = std::process::Command::new(casecast_bin())
            .args(["deid", "--no-ocr", "--data-dir"])
            .arg(dir.0.join("data"))
            .arg(samples.join(name))
            .arg(dir.0.join("refused"))
            .output()?;
        let log = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && log.contains(&format!("{name}: FAILED")) && log.contains(why), "{name}: {log}");
    }
    let mut pairs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (input, output) = (samples.join(name), dir.0.join(format!("out{i}")));
        let run = std::process::Command::new(casecast_bin())
            .args(["deid", "--no-ocr", "--data-dir"])
            .arg(dir.0.join("data"))
            .arg(&input)
            .arg(&output)
            .output()?;
        let log = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success() && log.contains("1 de-identified, 0 failed"), "{name}: {log}");
        let out = std::fs::read_dir(&output)?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "dcm")).expect("one output");
        let file_name = out.file_name().unwrap().to_string_lossy().to_string();
        assert!(file_name.starts_with("2.25.") && file_name.len() <= 68, "{name}: named by its new UID: {file_name}");
        let dump = std::process::Command::new("dcmdump").arg("-q").arg(&out).output()?;
        assert!(dump.status.success(), "dcmtk cannot read the output of {name}: {}", String::from_utf8_lossy(&dump.stderr));
        pairs.push(input);
        pairs.push(out);
    }
    // Every identifying value pydicom finds in the input (at any depth, UN read by
    // the dictionary), searched for in the output's bytes.
    let check = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys, json, re, pydicom
KEYS = {'PatientName', 'PatientID', 'PatientBirthDate', 'InstitutionName', 'InstitutionAddress', 'AccessionNumber',
        'ReferringPhysicianName', 'OperatorsName', 'PerformingPhysicianName', 'StationName', 'StudyID', 'DeviceSerialNumber'}
out = {}
for i in range(1, len(sys.argv), 2):
    src, dst = sys.argv[i], sys.argv[i + 1]
    found = set()
    def elements(ds):
        for e in ds:
            if e.VR == 'SQ':
                for item in e.value:
                    yield from elements(item)
            else:
                yield e
    def walk(ds):
        for e in elements(ds):
            if e.VR == 'UI' and e.value and not str(e.value).startswith('1.2.840.10008.'):
                found.add(str(e.value))
            elif e.VR == 'UN' and e.value:
                for u in re.findall(rb'[0-9]+(?:[.][0-9]+){3,}', e.value):
                    if not u.startswith(b'1.2.840.10008.'):
                        found.add(u.decode())
            elif e.keyword in KEYS and e.value:
                for part in str(e.value).replace('^', ' ').split():
                    if len(part) >= 4:
                        found.add(part)
    d = pydicom.dcmread(src, force=True)
    walk(d)
    instance = str(d.file_meta.get('MediaStorageSOPInstanceUID', ''))
    if instance:
        found.add(instance)
    raw = open(dst, 'rb').read()
    o = pydicom.dcmread(dst)
    # The output's fresh UIDs (2.25. and 38 random digits) are not the patient's:
    # a short identifying number (an ID of 1234) may occur in them by chance.
    fresh = {str(e.value).encode() for ds in (o, o.file_meta) for e in elements(ds) if e.VR == 'UI' and str(e.value).startswith('2.25.')}
    for u in fresh:
        raw = raw.replace(u, b'')
    out[src] = {'checked': len(found), 'left': sorted(v for v in found if v.encode() in raw),
                'syntax': str(o.file_meta.TransferSyntaxUID), 'instance': str(o.SOPInstanceUID),
                'class_is_uid': o['SOPClassUID'].VR == 'UI'}
print(json.dumps(out))",
        )
        .args(&pairs)
        .output()?;
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let v: Value = serde_json::from_slice(&check.stdout)?;
    for (input, r) in v.as_object().expect("one entry per file") {
        assert!(r["checked"].as_u64() > Some(0), "{input}: nothing identifying found to check: {r}");
        assert_eq!(r["left"], json!([]), "{input}: identifying values left in the output: {r}");
        assert_ne!(r["syntax"], "1.2.840.10008.1.2.2", "{input}: written little endian: {r}");
        assert!(r["instance"].as_str().is_some_and(|u| u.starts_with("2.25.")), "{input}: {r}");
        assert_eq!(r["class_is_uid"], true, "{input}: {r}");
    }
    assert_eq!(v.as_object().map(|o| o.len()), Some(names.len()));
    Ok(())
}

/// `casecast deid INPUT OUTPUT`: its peak RSS in MB (from its parent's rusage) and
/// its log; fails unless it succeeded.
fn deid_peak_rss(dir: &TempDir, input: &std::path::Path, output: &std::path::Path) -> Result<(u64, String)> {
    let run = deid_measured(dir, &[], input, output)?;
    anyhow::ensure!(run.code == 0, "casecast deid failed: {}", run.log);
    Ok((run.rss_mb, run.log))
}

/// One `casecast deid` run as measured by its parent: peak RSS, CPU time (user +
/// system, which a loaded machine does not inflate as it does wall time), exit code.
struct DeidRun {
    rss_mb: u64,
    cpu_secs: f64,
    code: i32,
    log: String,
}

fn deid_measured(dir: &TempDir, args: &[&str], input: &std::path::Path, output: &std::path::Path) -> Result<DeidRun> {
    let run = std::process::Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\nr = subprocess.run(sys.argv[1:], capture_output=True, text=True)\nsys.stderr.write(r.stderr)\nu = resource.getrusage(resource.RUSAGE_CHILDREN)\nprint(u.ru_maxrss // 1024, u.ru_utime + u.ru_stime, r.returncode)",
        ])
        .arg(casecast_bin())
        .args(["deid", "--data-dir"])
        .arg(dir.0.join("data"))
        .args(args)
        .arg(input)
        .arg(output)
        .output()?;
    let log = String::from_utf8_lossy(&run.stderr).to_string();
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    match out.split_whitespace().collect::<Vec<_>>()[..] {
        [a, b, c] => Ok(DeidRun { rss_mb: a.parse()?, cpu_secs: b.parse()?, code: c.parse()?, log }),
        _ => anyhow::bail!("no measurement: {out} {log}"),
    }
}

/// Hostile files (everything fuzzing found, kept in `fuzz/regressions/dicom/`, and
/// pydicom's real file with a UN sequence of undefined length), each taken the whole
/// way a server's pool takes it (every picture decoded and read): each ends in under
/// a second of CPU and under 200 MB, failing with its reason or de-identified. Before
/// the header walk and the rewrite, they took 15–62 s and 2.2–7.7 GB each.
#[test]
fn hostile_dicom_files_end_at_once_in_little_memory() -> Result<()> {
    let dir = TempDir::new("deid-hostile");
    let regressions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/dicom");
    let mut inputs: Vec<_> = std::fs::read_dir(&regressions)?.flatten().map(|e| e.path()).collect();
    inputs.sort();
    inputs.push("/usr/lib/python3/dist-packages/pydicom/data/test_files/UN_sequence.dcm".into());
    assert!(inputs.len() >= 10, "{inputs:?}");
    for (i, input) in inputs.iter().enumerate() {
        let run = deid_measured(&dir, &["--ocr-all", "--frames"], input, &dir.0.join(format!("out{i}")))?;
        let name = input.file_name().unwrap().to_string_lossy();
        assert!(run.cpu_secs < 1.0 && run.rss_mb < 200, "{name}: {:.2} s of CPU, {} MB: {}", run.cpu_secs, run.rss_mb, run.log);
        assert!(
            run.log.contains("1 de-identified, 0 failed") || (run.code != 0 && run.log.contains(&format!("{name}: FAILED: "))),
            "{name}: neither done nor failed with a reason: {}",
            run.log
        );
    }
    Ok(())
}

/// A parametric map of 32-bit floats (Float Pixel Data) with the patient's name, ID
/// and birth date burned in: read for text like any picture, the PHI blacked out with
/// the map's lowest value, the rest kept, and written back as floats (dcmtk does not
/// render floats: the picture read is casecast's rendering of the cleaned map).
#[test]
fn float_pixel_data_is_read_and_cleaned_as_floats() -> Result<()> {
    let dir = TempDir::new("deid-float");
    let made = std::process::Command::new("/usr/bin/python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/make_dicom.py"))
        .arg(&dir.0)
        .arg("float")
        .status()?;
    anyhow::ensure!(made.success(), "make_dicom.py float failed");
    let out = dir.0.join("out");
    let run = std::process::Command::new(casecast_bin()).args(["deid", "--frames", "--data-dir"]).arg(dir.0.join("data")).arg(dir.0.join("map.dcm")).arg(&out).output()?;
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && log.contains("1 frames read"), "{log}");
    let png = std::fs::read_dir(&out)?.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with(".frame0001.png")).expect("a rendered frame");
    let text = String::from_utf8_lossy(&std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(&png).args(["stdout", "--psm", "11"]).output()?.stdout).to_lowercase();
    for phi in ["doe", "pid4711x", "1961"] {
        assert!(!text.contains(phi), "{phi} readable: {text}");
    }
    assert!(text.contains("axial"), "the rest of the picture is kept: {text}");
    let dcm = std::fs::read_dir(&out)?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "dcm")).expect("an output");
    let check = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import sys, array, pydicom\nd = pydicom.dcmread(sys.argv[1])\nv = array.array('f', d.FloatPixelData)\nprint('PixelData' in d, d.BurnedInAnnotation, min(v), max(v))"])
        .arg(&dcm)
        .output()?;
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(said.split_whitespace().collect::<Vec<_>>(), ["False", "NO", "-1000.0", "1550.0"], "{}", String::from_utf8_lossy(&check.stderr));
    Ok(())
}

/// One file's work is bounded by `cases.max_seconds_per_file`: a real 120-frame
/// ultrasound cine (pydicom-data's, every frame to be read for burned-in text, about
/// 40 s) fails with the reason and how far it got, and the file after it in the
/// same run is de-identified (the pool's workers go on the same way).
#[test]
fn a_file_over_its_time_fails_with_the_reason_and_the_next_goes_on() -> Result<()> {
    let dir = TempDir::new("deid-time");
    let data = std::process::Command::new(target_dir().join("test-venv/bin/python"))
        .args(["-c", "import data_store, os; print(os.path.join(os.path.dirname(data_store.__file__), 'data'))"])
        .output()?;
    let data = std::path::PathBuf::from(String::from_utf8_lossy(&data.stdout).trim());
    let inputs = dir.0.join("in");
    std::fs::create_dir_all(&inputs)?;
    std::os::unix::fs::symlink(data.join("color3d_jpeg_baseline.dcm"), inputs.join("a-cine.dcm"))?;
    std::os::unix::fs::symlink(data.join("OBXXXX1A.dcm"), inputs.join("b-still.dcm"))?;
    let run = std::process::Command::new(casecast_bin())
        .args(["deid", "--data-dir"])
        .arg(dir.0.join("data"))
        .arg(&inputs)
        .arg(dir.0.join("out"))
        .env("CASECAST_CASES_MAX_SECONDS_PER_FILE", "3")
        .output()?;
    let log = String::from_utf8_lossy(&run.stderr);
    let reason = log.lines().find(|l| l.contains("a-cine.dcm: FAILED: gave up after 3 s (cases.max_seconds_per_file): ")).unwrap_or_else(|| panic!("{log}"));
    let read: usize = reason.split(": ").last().and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    assert!(read < 120, "stopped before the end: {reason}");
    assert!(log.contains("1 de-identified, 1 failed"), "{log}");
    Ok(())
}

/// What tesseract reads in frame `n` of `dcm`, as dcmtk renders it (lower case).
fn ocr_frame(dir: &TempDir, dcm: &std::path::Path, n: u32) -> Result<String> {
    let png = dir.0.join(format!("frame-{n}.png"));
    anyhow::ensure!(std::process::Command::new("dcmj2pnm").args(["--frame", &n.to_string(), "--write-png"]).arg(dcm).arg(&png).status()?.success(), "dcmj2pnm failed");
    Ok(String::from_utf8_lossy(&std::process::Command::new("tesseract").env("OMP_THREAD_LIMIT", "1").arg(&png).args(["stdout", "--psm", "11"]).output()?.stdout).to_lowercase())
}

/// A cine larger than memory should need: 154 MB of frames with the PHI burned into
/// every one is streamed a frame at a time (peak RSS far below the file's size),
/// identical frames are read once, and the last frame, as dcmtk renders it, shows no
/// PHI.
#[test]
fn a_large_cine_is_streamed_a_frame_at_a_time() -> Result<()> {
    let dir = TempDir::new("deid-large");
    let (input, output) = (dir.0.join("in"), dir.0.join("out"));
    make_fixtures(&input, &["large", "3000"])?;
    let (rss_mb, log) = deid_peak_rss(&dir, &input, &output)?;
    assert!(log.contains("1 frames read, 9000 burned-in words blacked out"), "{log}");
    assert!(rss_mb < 100, "peak RSS {rss_mb} MB for a 154 MB file: not streamed");
    let result = std::fs::read_dir(&output)?.next().ok_or_else(|| anyhow::anyhow!("no output"))??.path();
    let dump = String::from_utf8_lossy(&std::process::Command::new("dcmdump").arg("-q").arg(&result).output()?.stdout).to_string();
    assert!(dump.contains("(0028,0008) IS [3000]") && dump.contains("# 153600000, 1 PixelData"), "{dump}");
    let read = ocr_frame(&dir, &result, 3000)?;
    assert!(read.contains("axial"), "{read:?}");
    for term in ["doe", "john", "pid4711x", "1961"] {
        assert!(!read.contains(term), "{term:?} in the last frame: {read:?}");
    }
    Ok(())
}

// DICOM cases: upload, ingest, stores, DICOMweb, receivers.

/// A JPEG ultrasound cine (colour, flagged as carrying burned-in text) decodes to far
/// more than it weighs: it is decoded, read and cleaned a frame at a time (peak RSS
/// far below the decoded size), written native, and its last frame, as dcmtk renders
/// it, shows no PHI.
#[test]
fn a_compressed_cine_is_decoded_a_frame_at_a_time() -> Result<()> {
    let dir = TempDir::new("deid-jpegcine");
    let (input, output) = (dir.0.join("in"), dir.0.join("out"));
    make_fixtures(&input, &["jpegcine", "2000"])?;
    let (rss_mb, log) = deid_peak_rss(&dir, &input, &output)?;
    assert!(log.contains("1 frames read, 6000 burned-in words blacked out"), "{log}");
    // 2000 frames of 320×160 RGB decode to 307 MB.
    assert!(rss_mb < 100, "peak RSS {rss_mb} MB: not decoded a frame at a time");
    let result = std::fs::read_dir(&output)?.next().ok_or_else(|| anyhow::anyhow!("no output"))??.path();
    let dump = String::from_utf8_lossy(&std::process::Command::new("dcmdump").arg("-q").arg(&result).output()?.stdout).to_string();
    assert!(dump.contains("(0028,0008) IS [2000]") && dump.contains("# 307200000, 1 PixelData") && dump.contains("[RGB]"), "{dump}");
    let read = ocr_frame(&dir, &result, 2000)?;
    assert!(read.contains("axial"), "{read:?}");
    for term in ["doe", "john", "pid4711x", "1961"] {
        assert!(!read.contains(term), "{term:?} in the last frame: {read:?}");
    }
    Ok(())
}
