//! tus 1.0.0 (resumable uploads) request headers, parsed once at the edge.
//!
//! The cases uploads speak tus's core, creation and termination: `Upload-Length` and
//! `Upload-Metadata` on creation, `Upload-Offset` on each `PATCH`, `Tus-Resumable`
//! on every request. Each parser takes the header's text (absent: `None`) and says
//! what is wrong in words a client author can act on.

use std::collections::HashMap;

use base64::Engine;

/// The tus version spoken.
pub const TUS_VERSION: &str = "1.0.0";

/// Most `Upload-Metadata` pairs taken.
pub const MAX_METADATA_PAIRS: usize = 32;

/// The longest `Upload-Metadata` header taken, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Parses a byte count header (`Upload-Length`, `Upload-Offset`): decimal digits only,
/// no sign, at most 2^53 (what a browser's JavaScript can count).
pub fn byte_count(name: &str, value: Option<&str>) -> Result<u64, String> {
    let v = value.map(str::trim).ok_or_else(|| format!("{name} is required"))?;
    if v.is_empty() || v.len() > 16 || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("{name} must be a byte count (decimal digits)"));
    }
    let n: u64 = v.parse().map_err(|_| format!("{name} must be a byte count (decimal digits)"))?;
    if n > 1 << 53 {
        return Err(format!("{name} is too large"));
    }
    Ok(n)
}

/// `Upload-Metadata: key base64, key base64, key` (a key alone has an empty value).
/// Keys are ASCII without spaces or commas, values UTF-8, keys unique.
pub fn metadata(value: Option<&str>) -> Result<HashMap<String, String>, String> {
    let value = value.unwrap_or("");
    if value.len() > MAX_METADATA_BYTES {
        return Err(format!("Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes"));
    }
    let mut out = HashMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if out.len() == MAX_METADATA_PAIRS {
            return Err(format!("Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs"));
        }
        let (k, v) = pair.split_once(' ').unwrap_or((pair, ""));
        if k.is_empty() || k.len() > 64 || !k.bytes().all(|c| c.is_ascii_graphic() && c != b',') {
            return Err("Upload-Metadata: a key must be 1 to 64 visible ASCII characters".into());
        }
        let v = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| format!("Upload-Metadata: the value of {k} is not base64"))?;
        let v = String::from_utf8(v).map_err(|_| format!("Upload-Metadata: the value of {k} is not UTF-8"))?;
        if out.insert(k.to_string(), v).is_some() {
            return Err(format!("Upload-Metadata: {k} is given twice"));
        }
    }
    Ok(out)
}

/// Checks `Tus-Resumable`: absent is taken as this version; another version is
/// refused with the text to send back.
pub fn check_version(value: Option<&str>) -> Result<(), String> {
    match value.map(str::trim) {
        Some(v) if v != TUS_VERSION => {
            let shown: String = v.chars().filter(|c| !c.is_control()).take(16).collect();
            Err(format!("tus {shown} is not supported; this server speaks {TUS_VERSION}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(byte_count("Upload-Length", Some(" 42 ")), Ok(42));
        assert_eq!(byte_count("Upload-Length", Some("0")), Ok(0));
        for bad in [None, Some(""), Some("-1"), Some("+1"), Some("1e9"), Some("0x10"), Some("99999999999999999999")] {
            assert!(byte_count("Upload-Length", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_pairs() {
        let m = metadata(Some("kind ZGljb20=, batch YWJj,empty")).unwrap();
        assert_eq!(m["kind"], "dicom");
        assert_eq!(m["batch"], "abc");
        assert_eq!(m["empty"], "");
        assert!(metadata(None).unwrap().is_empty());
        assert!(metadata(Some("kind !!!")).is_err());
        assert!(metadata(Some("kind //8=")).is_err(), "not UTF-8");
        assert!(metadata(Some("a YQ==, a YQ==")).is_err(), "twice");
        let many: Vec<String> = (0..40).map(|i| format!("k{i} YQ==")).collect();
        assert!(metadata(Some(&many.join(","))).is_err());
    }

    #[test]
    fn versions() {
        assert!(check_version(None).is_ok());
        assert!(check_version(Some("1.0.0")).is_ok());
        let e = check_version(Some("0.2.2\u{0}")).unwrap_err();
        assert!(e.contains("0.2.2") && !e.contains('\u{0}'));
    }
}
