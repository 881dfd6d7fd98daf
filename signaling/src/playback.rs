//! Playback tokens for private events, as Amazon IVS private channels use them: a
//! JWT signed with ES384 (ECDSA P-384, SHA-384), checked on every HLS request. The
//! server keeps the key pair; its public key (SPKI, DER) can be given to whoever else
//! must check the tokens.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::Engine;
use serde::{Deserialize, Serialize};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a playback token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackClaims {
    /// The event (room) it plays.
    pub event: String,
    /// Who it was given to (for the audit log), if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<String>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

/// Why a playback token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaybackError {
    /// Not a JWT, or not the claims expected.
    #[error("the playback token is malformed: {0}")]
    Malformed(&'static str),
    /// Another algorithm than ES384.
    #[error("the playback token uses {0:?}; only ES384 is accepted")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("the playback token's signature is not valid")]
    Signature,
    /// Past its expiry.
    #[error("the playback token expired at {0} (Unix time)")]
    Expired(u64),
}

/// The key pair that signs and checks playback tokens.
pub struct PlaybackKey {
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for PlaybackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackKey(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
}

impl PlaybackKey {
    /// A new key pair, as PKCS#8 (DER) to keep.
    pub fn generate() -> Result<Vec<u8>, String> {
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| "cannot generate a P-384 key pair".to_string())
    }

    /// The key pair from PKCS#8 (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<PlaybackKey, String> {
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
            .map(|pair| PlaybackKey { pair })
            .map_err(|_| "not a P-384 private key in PKCS#8 DER".to_string())
    }

    /// The public key, SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public_key().as_der().map(|d| d.as_ref().to_vec()).unwrap_or_default()
    }

    /// A token for `event`, valid `ttl_secs` from `now`.
    pub fn mint(&self, event: &str, viewer: Option<&str>, now: u64, ttl_secs: u64) -> String {
        let claims = PlaybackClaims { event: event.to_string(), viewer: viewer.map(str::to_string), iat: now, exp: now.saturating_add(ttl_secs) };
        let input = format!(
            "{}.{}",
            B64.encode(br#"{"alg":"ES384","typ":"JWT"}"#),
            B64.encode(serde_json::to_vec(&claims).expect("claims serialize"))
        );
        // Signing with a valid key does not fail.
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).expect("ES384 signing");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// Checks a token's signature and expiry at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<PlaybackClaims, PlaybackError> {
        if token.len() > 4096 {
            return Err(PlaybackError::Malformed("longer than 4096 bytes"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(PlaybackError::Malformed("expected three dot-separated parts"));
        };
        let header: Header =
            B64.decode(h).ok().and_then(|v| serde_json::from_slice(&v).ok()).ok_or(PlaybackError::Malformed("header is not base64url JSON"))?;
        if header.alg != "ES384" {
            return Err(PlaybackError::Algorithm(header.alg));
        }
        let sig = B64.decode(s).map_err(|_| PlaybackError::Malformed("signature is not base64url"))?;
        let public = signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, self.pair.public_key().as_ref());
        public.verify(format!("{h}.{b}").as_bytes(), &sig).map_err(|_| PlaybackError::Signature)?;
        let claims: PlaybackClaims = B64
            .decode(b)
            .ok()
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or(PlaybackError::Malformed("claims are not base64url JSON with event, iat, exp"))?;
        if claims.exp <= now {
            return Err(PlaybackError::Expired(claims.exp));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let key = PlaybackKey::from_pkcs8(&PlaybackKey::generate().unwrap()).unwrap();
        let t = key.mint("knee-1", Some("viewer 7"), 1000, 60);
        let c = key.verify(&t, 1001).unwrap();
        assert_eq!((c.event.as_str(), c.viewer.as_deref(), c.exp), ("knee-1", Some("viewer 7"), 1060));
        assert_eq!(key.verify(&t, 1060), Err(PlaybackError::Expired(1060)));
        let other = PlaybackKey::from_pkcs8(&PlaybackKey::generate().unwrap()).unwrap();
        assert_eq!(other.verify(&t, 1001), Err(PlaybackError::Signature), "another key's token");
        // A changed claim breaks the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(br#"{"event":"other","iat":1000,"exp":9999}"#), parts[2]);
        assert_eq!(key.verify(&forged, 1001), Err(PlaybackError::Signature));
        let hs = format!("{}.{}.{}", B64.encode(br#"{"alg":"HS256"}"#), parts[1], parts[2]);
        assert_eq!(key.verify(&hs, 1001), Err(PlaybackError::Algorithm("HS256".into())));
        assert!(matches!(key.verify("abc", 1), Err(PlaybackError::Malformed(_))));
        assert!(key.public_key_der().len() > 90, "SPKI DER of a P-384 key");
    }
}
