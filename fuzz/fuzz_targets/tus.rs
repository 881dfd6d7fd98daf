//! The tus upload headers (`Upload-Length`, `Upload-Offset`, `Upload-Metadata`,
//! `Tus-Resumable`) as a client may send them. Nothing may panic; a count is never
//! past 2^53; metadata keys are unique and bounded.
#![no_main]

use casecast_signaling::tus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(n) = tus::byte_count("Upload-Length", Some(text)) {
        assert!(n <= 1 << 53);
        assert_eq!(tus::byte_count("Upload-Length", Some(&n.to_string())), Ok(n));
    }
    if let Ok(m) = tus::metadata(Some(text)) {
        assert!(m.len() <= tus::MAX_METADATA_PAIRS);
        assert!(m.keys().all(|k| !k.is_empty() && k.len() <= 64));
    }
    if let Err(e) = tus::check_version(Some(text)) {
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }
});
