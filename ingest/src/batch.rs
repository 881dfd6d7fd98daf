//! De-identifying files and folders from disk, as `casecast deid` does.

use std::path::{Path, PathBuf};

use crate::deid::{self, Options};

/// The outcome of one input file.
#[derive(Debug)]
pub enum Outcome {
    /// Written to this path (named by the new SOP Instance UID: an original file
    /// name can itself carry PHI).
    Done(PathBuf, deid::Report),
    /// Not processed, and why.
    Failed(PathBuf, String),
}

/// Every file under `input` (a file or a folder, recursively), in name order.
pub fn files(input: &Path) -> std::io::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![input.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// De-identifies one file into the folder `out_dir`.
pub fn deidentify_file(path: &Path, out_dir: &Path, opts: &Options) -> Outcome {
    let fail = |why: String| Outcome::Failed(path.to_path_buf(), why);
    let mut obj = match dicom_object::open_file(path) {
        Ok(o) => o,
        Err(e) => return fail(format!("not readable as DICOM: {e}")),
    };
    let report = match deid::deidentify(&mut obj, opts) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let uid = obj.meta().media_storage_sop_instance_uid.trim_end_matches('\0').to_string();
    let out = out_dir.join(format!("{uid}.dcm"));
    for (i, png) in report.frames_png.iter().enumerate() {
        let f = out_dir.join(format!("{uid}.frame{:04}.png", i + 1));
        if let Err(e) = std::fs::write(&f, png) {
            return fail(format!("cannot write {}: {e}", f.display()));
        }
    }
    // Written whole, then renamed: a reader never sees half a file.
    let tmp = out.with_extension("dcm.tmp");
    if let Err(e) = obj.write_to_file(&tmp).map_err(|e| e.to_string()).and_then(|_| std::fs::rename(&tmp, &out).map_err(|e| e.to_string())) {
        let _ = std::fs::remove_file(&tmp);
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    Outcome::Done(out, report)
}
