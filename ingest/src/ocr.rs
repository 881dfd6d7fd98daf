//! Text burned into pictures, found with Debian's tesseract (the command line: no
//! binding to build). Tesseract reads dark text on a light ground best, so each
//! picture is enlarged 2× (when it is small: big pictures have big enough text), put
//! in a white margin and read in both polarities, grey: tesseract's own
//! binarisation finds text a global threshold loses (a label beside an icon over a
//! dark ultrasound picture). Each run is bounded in time: a picture that keeps
//! tesseract busy fails its file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A word found in a picture, with its box in the picture's pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// What tesseract read.
    pub text: String,
    /// Left edge.
    pub x: usize,
    /// Top edge.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    /// Which reading of the picture found it (each polarity and scale is one):
    /// words of different readings overlap and are not one line.
    pub reading: usize,
}

/// The longest one tesseract run may take (less when the file's time is nearly up).
pub const TESSERACT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// White margin around a picture given to tesseract, in its pixels: text touching
/// the edge (a banner in the top rows, as ultrasound machines write it) is misread
/// without one.
const MARGIN: usize = 24;

/// The words in an 8-bit grey picture of `width` × `height`.
pub fn words(gray: &[u8], width: usize, height: usize, timeout: std::time::Duration) -> Result<Vec<Word>, String> {
    let scale = if width.max(height) <= 1600 { 2 } else { 1 };
    let mut found = Vec::new();
    for (reading, dark_text) in [true, false].into_iter().enumerate() {
        // Enlarged, in a white margin; the second reading inverted, so that light
        // text on a dark ground is dark on light in one of them.
        let (w2, h2) = (width * scale + 2 * MARGIN, height * scale + 2 * MARGIN);
        let mut big = vec![255u8; w2 * h2];
        for y in 0..height * scale {
            for x in 0..width * scale {
                let g = gray[(y / scale) * width + x / scale];
                big[(y + MARGIN) * w2 + x + MARGIN] = if dark_text { g } else { 255 - g };
            }
        }
        for mut word in read(&big, w2, h2, timeout)? {
            let (x, y) = (word.x.saturating_sub(MARGIN), word.y.saturating_sub(MARGIN));
            (word.x, word.y, word.w, word.h) = (x / scale, y / scale, word.w.div_ceil(scale), word.h.div_ceil(scale));
            word.reading = reading;
            found.push(word);
        }
    }
    Ok(found)
}

/// Runs tesseract on a picture (written as PGM) and parses its TSV words.
fn read(gray: &[u8], width: usize, height: usize, timeout: std::time::Duration) -> Result<Vec<Word>, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!("casecast-ocr-{}-{}.pgm", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
    pgm.extend_from_slice(gray);
    std::fs::write(&path, pgm).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // coreutils' timeout bounds the run (exit 124 when it had to stop it).
    let out = std::process::Command::new("timeout")
        // Tenths rounded up: stopped no sooner than asked.
        .arg(format!("{:.1}", (timeout.as_secs_f64() * 10.0).ceil().max(1.0) / 10.0))
        .arg("tesseract")
        // One thread: tesseract's OpenMP threads spin against each other and the
        // pool's other work (a banner read in 0.4 s instead of 3.6 s on 2 cores).
        .env("OMP_THREAD_LIMIT", "1")
        .arg(&path)
        .args(["stdout", "--psm", "11", "tsv"])
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.map_err(|e| format!("cannot run tesseract (Debian package tesseract-ocr): {e}"))?;
    if out.status.code() == Some(124) {
        return Err(format!("reading the picture for text took over {:.1} s", timeout.as_secs_f64()));
    }
    if !out.status.success() {
        return Err(format!("tesseract failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            // level page block par line word left top width height conf text
            if f.len() < 12 || f[0] != "5" || f[11].trim().is_empty() {
                return None;
            }
            let n = |i: usize| f[i].parse::<usize>().ok();
            Some(Word { text: f[11].trim().to_string(), x: n(6)?, y: n(7)?, w: n(8)?, h: n(9)?, reading: 0 })
        })
        .collect())
}
