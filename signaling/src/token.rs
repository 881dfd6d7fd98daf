//! Room-scoped access tokens: JWT (RFC 7519) signed with HS256 and a server secret.
//!
//! Claims: `room` (the room id), `role`, `name`, `iat` and `exp` (seconds since the
//! Unix epoch). Only `HS256` is accepted; the header's `alg` is checked, so a token
//! with `"alg":"none"` or an asymmetric algorithm is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The hospital encoder: publishes the surgery feed.
    Encoder,
    /// A doctor commenting: watches everything, publishes low-FPS camera or audio.
    Commentator,
    /// Watch only.
    Viewer,
    /// The distribution center: watches everything, runs the event.
    Operator,
}

impl Role {
    /// All roles, for metrics labels and help texts.
    pub const ALL: [Role; 4] = [Role::Encoder, Role::Commentator, Role::Viewer, Role::Operator];

    /// The role's name as in tokens and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Encoder => "encoder",
            Role::Commentator => "commentator",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; use encoder, commentator, viewer or operator"))
    }
}

/// The claims a casecast token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The room this token is for.
    pub room: String,
    /// The role granted.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The invitation this token was issued as, if any (it can be revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a token was refused. The texts are for the person holding the link: what
/// is wrong, in plain words, and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, or not JSON inside.
    #[error("This link is incomplete or damaged ({0}). Check that you copied the whole link, or ask the organisers for a new one.")]
    Malformed(&'static str),
    /// The header names another algorithm than HS256 (its first 16 characters).
    #[error("This link was not made by this server (its token uses algorithm {0:?}; only HS256 is accepted). Ask the organisers for a new one.")]
    Algorithm(String),
    /// The signature does not match the server secret.
    #[error("This link is not valid for this server. Check that you copied the whole link, or ask the organisers for a new one.")]
    Signature,
    /// `exp` is in the past (the value is kept for logs, not shown).
    #[error("This invitation link has expired. Ask the organisers for a new one.")]
    Expired(u64),
}

/// The shortest secret accepted for signing tokens, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// A stable name for the credential a token is, for per-token limits: its invitation
/// id, or else a digest of the whole token (never the token itself, which grants access).
pub fn credential(token: &str, claims: &Claims) -> String {
    use sha2::Digest;
    match &claims.jti {
        Some(j) => format!("inv:{j}"),
        None => {
            let d = Sha256::digest(token.as_bytes());
            let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
            format!("tok:{hex}")
        }
    }
}

/// A secret for another purpose derived from the server secret (HMAC-SHA256 of
/// `purpose`, hex): it cannot be turned back into the server secret, and changes
/// when that is rotated.
pub fn derived_secret(secret: &str, purpose: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().iter().take(24).map(|b| format!("{b:02x}")).collect()
}

/// The bearer token `/metrics` takes when none is configured: derived from the
/// server secret, so that a scraper that knows the secret (the load test) needs
/// nothing else.
pub fn derived_scrape_token(secret: &str) -> String {
    derived_secret(secret, "casecast metrics scrape")
}

/// The server secret that signs and verifies tokens.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

type HmacSha256 = Hmac<Sha256>;

impl TokenKey {
    /// A key from the server secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        TokenKey {
            secret: secret.as_ref().to_vec(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.secret).expect("hmac takes any key length")
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Claims are plain strings and numbers: serialization cannot fail.
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Mints a token valid for `ttl_secs` from `now` (Unix seconds).
    pub fn mint(&self, room: &str, role: Role, name: &str, now: u64, ttl_secs: u64) -> String {
        self.sign(&Claims {
            room: room.to_string(),
            role,
            name: name.to_string(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            jti: None,
        })
    }

    /// Verifies a token's signature and expiry at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed("longer than 4096 bytes"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Malformed("header is not base64url JSON"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm(header.alg.chars().take(16).collect()));
        }
        let sig = B64
            .decode(s)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(b.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = B64
            .decode(b)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(TokenError::Malformed("claims are not base64url JSON with room, role, name, iat, exp"))?;
        if claims.exp <= now {
            return Err(TokenError::Expired(claims.exp));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = TokenKey::new("secret");
        let t = k.mint("or-1", Role::Commentator, "Dr. Ana", 1000, 60);
        let c = k.verify(&t, 1001).unwrap();
        assert_eq!(c.room, "or-1");
        assert_eq!(c.role, Role::Commentator);
        assert_eq!(c.name, "Dr. Ana");
    }

    #[test]
    fn refusals() {
        let k = TokenKey::new("secret");
        let t = k.mint("or-1", Role::Viewer, "v", 1000, 60);
        assert_eq!(k.verify(&t, 1060), Err(TokenError::Expired(1060)));
        assert_eq!(TokenKey::new("other").verify(&t, 1001), Err(TokenError::Signature));
        assert!(matches!(k.verify("a.b", 0), Err(TokenError::Malformed(_))));
        assert!(matches!(k.verify("", 0), Err(TokenError::Malformed(_))));
        // Tampered claims keep the old signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"room":"or-1","role":"operator","name":"x","iat":0,"exp":99999}"#);
        parts[1] = &forged;
        assert_eq!(k.verify(&parts.join("."), 1001), Err(TokenError::Signature));
        // alg=none is refused before anything else.
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), forged);
        assert_eq!(k.verify(&none, 1001), Err(TokenError::Algorithm("none".into())));
    }

    #[test]
    fn refusals_say_what_to_do_in_plain_words() {
        let k = TokenKey::new("secret");
        let t = k.mint("or-1", Role::Viewer, "v", 1000, 60);
        let expired = k.verify(&t, 5000).unwrap_err().to_string();
        assert_eq!(expired, "This invitation link has expired. Ask the organisers for a new one.");
        let other = TokenKey::new("other").verify(&t, 1001).unwrap_err().to_string();
        assert!(other.starts_with("This link is not valid for this server.") && other.contains("ask the organisers"), "{other}");
        let cut = k.verify(&t[..t.len() / 2], 1001).unwrap_err().to_string();
        assert!(cut.contains("copied the whole link"), "{cut}");
        for e in [expired, other, cut] {
            assert!(!e.contains("Unix") && !e.contains("secret"), "no engineer talk: {e}");
        }
    }

    #[test]
    fn credentials_name_the_token_not_its_text() {
        let k = TokenKey::new("secret");
        let t = k.mint("or-1", Role::Viewer, "v", 1000, 60);
        let c = k.verify(&t, 1001).unwrap();
        let id = credential(&t, &c);
        assert!(id.starts_with("tok:") && !id.contains(&t[..20]));
        assert_eq!(id, credential(&t, &c));
        assert_ne!(id, credential(&k.mint("or-1", Role::Viewer, "v", 1000, 61), &c));
        let inv = Claims { jti: Some("abc".into()), ..c };
        assert_eq!(credential(&t, &inv), "inv:abc");
        let long = format!("{}.{}.", B64.encode(format!(r#"{{"alg":"{}"}}"#, "x".repeat(500))), B64.encode("{}"));
        assert!(matches!(k.verify(&long, 0), Err(TokenError::Algorithm(a)) if a.len() == 16));
    }

    #[test]
    fn matches_a_known_jwt() {
        // Built by hand with the same secret and claims, as jwt.io would.
        let k = TokenKey::new("k");
        let c = Claims { room: "r".into(), role: Role::Encoder, name: "e".into(), iat: 1, exp: 2, jti: None };
        let t = k.sign(&c);
        assert!(t.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        assert_eq!(k.verify(&t, 1).unwrap(), c);
    }
}
