//! Room ids: what may name a room (and its event) in a URL, a token, a file path.
//!
//! A room id is 1 to 64 ASCII letters, digits, `-` or `_`. It is parsed once where it
//! enters (a path segment, a `join` message), so everything behind the edge holds an
//! id that cannot be a path (`..`, `/tmp/x`), a URL trick (`%2F`) or a label that
//! breaks a metrics line.

use std::fmt;

/// The largest room id, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 64;

/// A checked room id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

/// Why a text is not a room id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a room id: use 1 to 64 letters, digits, - or _")]
pub struct BadRoomId;

impl RoomId {
    /// Parses a room id.
    pub fn parse(s: &str) -> Result<RoomId, BadRoomId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ROOM_ID_BYTES
            && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if ok { Ok(RoomId(s.to_string())) } else { Err(BadRoomId) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for RoomId {
    type Err = BadRoomId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomId::parse(s)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RoomId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RoomId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoomId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_names_not_paths() {
        for good in ["demo", "or-1", "A_b-9", &"x".repeat(64)] {
            assert_eq!(RoomId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "*", "..", "a/b", "/tmp/x", "%2Ftmp", "a b", "é", "a\"b", "a\nb", &"x".repeat(65)] {
            assert_eq!(RoomId::parse(bad), Err(BadRoomId), "{bad:?}");
        }
        let r: Result<RoomId, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
    }
}
