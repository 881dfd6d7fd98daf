//! Newtype ids.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            /// A fresh id, unique in this process.
            pub fn next() -> Self {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                $name(NEXT.fetch_add(1, Ordering::Relaxed))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                s.strip_prefix($prefix).and_then(|n| n.parse().ok()).map($name).ok_or(())
            }
        }
    };
}

id!(
    /// A participant (one peer connection) in a room.
    ParticipantId,
    "p"
);
id!(
    /// A published track.
    TrackId,
    "t"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let p = ParticipantId(42);
        assert_eq!(p.to_string(), "p42");
        assert_eq!("p42".parse::<ParticipantId>(), Ok(p));
        assert!("t42".parse::<ParticipantId>().is_err());
        assert!(ParticipantId::next() != ParticipantId::next());
    }
}
