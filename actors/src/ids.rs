//! Newtype ids.

use std::fmt;

macro_rules! id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl $name {
            /// A fresh random id. Ids appear in WHIP/WHEP resource URLs and must not
            /// be guessable from one another; 64 random bits make a collision among
            /// a server's ids vanishingly unlikely.
            pub fn next() -> Self {
                $name(rand::random())
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
