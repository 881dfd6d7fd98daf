//! Text burned into pictures, found with Debian's tesseract (the command line: no
//! binding to build). Tesseract reads dark text on a light ground best and misses
//! small light-on-colour banners, so each picture is binarised, enlarged 2× and read
//! in both polarities.

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
}

/// The words in an 8-bit grey picture of `width` × `height`.
pub fn words(gray: &[u8], width: usize, height: usize) -> Result<Vec<Word>, String> {
    let threshold = otsu(gray);
    let mut found = Vec::new();
    for dark_text in [true, false] {
        // Enlarged 2× with the text black on white, as tesseract likes it.
        let (w2, h2) = (width * 2, height * 2);
        let mut big = vec![0u8; w2 * h2];
        for y in 0..h2 {
            for x in 0..w2 {
                let light = gray[(y / 2) * width + x / 2] > threshold;
                big[y * w2 + x] = if light == dark_text { 255 } else { 0 };
            }
        }
        for mut word in read(&big, w2, h2)? {
            (word.x, word.y, word.w, word.h) = (word.x / 2, word.y / 2, word.w.div_ceil(2), word.h.div_ceil(2));
            found.push(word);
        }
    }
    Ok(found)
}

/// Otsu's threshold of a grey picture.
fn otsu(gray: &[u8]) -> u8 {
    let mut hist = [0u64; 256];
    for &g in gray {
        hist[usize::from(g)] += 1;
    }
    let total = gray.len() as f64;
    let sum: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut sum_b, mut w_b, mut best, mut at) = (0.0, 0.0, 0.0, 127u8);
    for (t, &c) in hist.iter().enumerate() {
        w_b += c as f64;
        if w_b == 0.0 || w_b == total {
            continue;
        }
        sum_b += t as f64 * c as f64;
        let (m_b, m_f) = (sum_b / w_b, (sum - sum_b) / (total - w_b));
        let between = w_b * (total - w_b) * (m_b - m_f).powi(2);
        if between > best {
            (best, at) = (between, t as u8);
        }
    }
    at
}

/// Runs tesseract on a picture (written as PGM) and parses its TSV words.
fn read(gray: &[u8], width: usize, height: usize) -> Result<Vec<Word>, String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!("casecast-ocr-{}-{}.pgm", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
    pgm.extend_from_slice(gray);
    std::fs::write(&path, pgm).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let out = std::process::Command::new("tesseract").arg(&path).args(["stdout", "--psm", "11", "tsv"]).output();
    let _ = std::fs::remove_file(&path);
    let out = out.map_err(|e| format!("cannot run tesseract (Debian package tesseract-ocr): {e}"))?;
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
            Some(Word { text: f[11].trim().to_string(), x: n(6)?, y: n(7)?, w: n(8)?, h: n(9)? })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_levels() {
        let g: Vec<u8> = (0..100).map(|i| if i < 70 { 20 } else { 230 }).collect();
        let t = otsu(&g);
        assert!((20..230).contains(&t), "{t}");
    }
}
