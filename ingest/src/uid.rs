//! Keyed replacements: the same input and project secret always give the same
//! output, and nobody without the secret can link an output back to its input (an
//! unkeyed hash of a UID could be recomputed by anyone who knows the original).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `parts` (joined unambiguously) under `secret`.
fn keyed(secret: &[u8], parts: &[&str]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// A name for `secret` that does not reveal it: processes sharing a database compare
/// it to know they de-identify alike.
pub fn key_id(secret: &[u8]) -> String {
    keyed(secret, &["key id"]).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The replacement of `uid`: a UUID-derived UID of the form `2.25.<decimal>` (PS3.5
/// B.2), at most 44 characters. Studies and series stay linked: every object of a
/// study maps its Study Instance UID to the same new one.
pub fn replace_uid(secret: &[u8], uid: &str) -> String {
    let h = keyed(secret, &["uid", uid.trim_end_matches(['\0', ' '])]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // A version-4-shaped UUID (RFC 4122), as 2.25 UIDs are meant to be.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// A stable pseudonym for a patient: the same patient (by ID, or by name when there
/// is no ID) under the same secret always gets the same one. Returns (name, ID).
pub fn pseudonym(secret: &[u8], patient_id: &str, patient_name: &str) -> (String, String) {
    let key = if patient_id.trim().is_empty() { patient_name.trim() } else { patient_id.trim() };
    let h = keyed(secret, &["patient", key]);
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let code: String = h.iter().take(10).map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect();
    (format!("ANON^{}", &code[..8]), format!("ANON-{code}"))
}

/// The per-patient date shift, in days back (1 to 3650), for the Retain
/// Longitudinal Temporal Information Modified Dates option: intervals between a
/// patient's dates are kept, the dates themselves are not.
pub fn date_shift_days(secret: &[u8], patient_id: &str) -> i64 {
    let h = keyed(secret, &["date-shift", patient_id.trim()]);
    1 + i64::from(u16::from_be_bytes([h[0], h[1]]) % 3650)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_id_tells_secrets_apart_without_giving_them_away() {
        let a = key_id(b"secret-one");
        assert_eq!((a.len(), a.bytes().all(|c| c.is_ascii_hexdigit())), (16, true));
        assert_eq!(a, key_id(b"secret-one"));
        assert_ne!(a, key_id(b"secret-two"));
        assert!(!a.contains("secret"));
    }

    #[test]
    fn uids_are_consistent_valid_and_keyed() {
        let a = replace_uid(b"secret-one", "1.2.840.113619.2.55.3.604688119.969.1268071029.320");
        assert_eq!(a, replace_uid(b"secret-one", "1.2.840.113619.2.55.3.604688119.969.1268071029.320\0"));
        assert_ne!(a, replace_uid(b"secret-two", "1.2.840.113619.2.55.3.604688119.969.1268071029.320"));
        assert_ne!(a, replace_uid(b"secret-one", "1.2.3"));
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        assert!(a[5..].chars().all(|c| c.is_ascii_digit()) && !a[5..].starts_with('0'));
    }

    #[test]
    fn pseudonyms_are_stable_per_patient() {
        let (n1, i1) = pseudonym(b"s", "12345", "Doe^John");
        assert_eq!((n1.clone(), i1.clone()), pseudonym(b"s", "12345", "DOE^JOHN"));
        assert_ne!(i1, pseudonym(b"s", "12346", "Doe^John").1);
        assert!(n1.starts_with("ANON^") && n1.len() <= 64 && i1.len() <= 64);
        let d = date_shift_days(b"s", "12345");
        assert!((1..=3650).contains(&d) && d == date_shift_days(b"s", "12345"));
    }
}
