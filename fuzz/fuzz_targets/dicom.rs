//! A DICOM file as an upload brings it: read, de-identified (tags, UIDs, private
//! attributes) and its frames decoded and rendered, as `casecast deid` and the
//! ingest pool do (the OCR of burned-in text, a tesseract process, is left out for
//! speed). No panic may escape, and a file written is one DICOM reads back.
//!
//! The DICOM codecs panic on some hostile pictures (a JPEG frame larger than its
//! header says, found here): ingest contains them (`catch_unwind` around decoding,
//! the file fails alone). So this target does not abort on every panic as
//! libFuzzer's hook does, only on one that reaches it.
#![no_main]

use casecast_ingest::batch::{self, Outcome};
use casecast_ingest::deid::Options;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static CONTAINED: std::sync::Once = std::sync::Once::new();
    // Back to the default hook (it prints); libfuzzer-sys still aborts on a panic
    // that unwinds out of this closure.
    CONTAINED.call_once(|| drop(std::panic::take_hook()));
    let dir = std::env::temp_dir().join(format!("casecast-fuzz-dicom-{}", std::process::id()));
    let out = dir.join("out");
    let _ = std::fs::create_dir_all(&out);
    let input = dir.join("in.dcm");
    if std::fs::write(&input, data).is_err() {
        return;
    }
    let opts = Options {
        clean_pixels: false,
        render_frames: true,
        read_all_pictures: true,
        header_masks: vec![("US".into(), 0.1), ("OT".into(), 0.2)],
        ..Options::new(b"fuzz-secret".to_vec())
    };
    if let Outcome::Done(path, _) = batch::deidentify_file(&input, &out, &opts) {
        dicom_object::open_file(&path).expect("a written file reads back");
    }
    let _ = std::fs::remove_dir_all(&out);
});
