//! Newtype ids.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            /// A fresh id: a process-wide counter mixed with a random start, so ids
            /// differ across restarts and cannot be guessed from one another
            /// (WHIP/WHEP resource URLs carry them).
            pub fn next() -> Self {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
                let base = *BASE.get_or_init(rand::random::<u64>);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                // An odd multiplier is a bijection on u64: no repeats within 2^64 ids.
                $name(base.wrapping_add(n).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:x}"), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                s.strip_prefix($prefix).and_then(|n| u64::from_str_radix(n, 16).ok()).map($name).ok_or(())
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
        let p = ParticipantId(0x42);
        assert_eq!(p.to_string(), "p42");
        assert_eq!("p42".parse::<ParticipantId>(), Ok(p));
        let q = ParticipantId::next();
        assert_eq!(q.to_string().parse::<ParticipantId>(), Ok(q));
        assert!("t42".parse::<ParticipantId>().is_err());
        assert!(ParticipantId::next() != ParticipantId::next());
    }
}
