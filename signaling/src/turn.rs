//! TURN servers handed to clients, with credentials minted per participant by the
//! TURN REST API scheme (draft-uberti-behave-turn-rest-00), which coturn checks with
//! `use-auth-secret` and `static-auth-secret`:
//!
//! - username: `<expiry, Unix seconds>:<opaque id>`;
//! - credential: base64(HMAC-SHA1(shared secret, username)).
//!
//! The TURN server recomputes the credential from the username and the secret it
//! shares with casecast, and refuses it after the expiry: nothing is stored, and a
//! leaked credential is good only until then. The id is the participant's, never a
//! name, so the TURN server's logs hold no person.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// One entry of `RTCConfiguration.iceServers`, as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs (RFC 7065), e.g. `turns:turn.example.org:443?transport=tcp`.
    pub urls: Vec<String>,
    /// The minted username.
    pub username: String,
    /// The minted credential.
    pub credential: String,
}

impl IceServer {
    /// This server as a WHIP/WHEP `Link` header value (RFC 9725 §4.6): one per URL,
    /// comma-separated.
    pub fn link_header(&self) -> String {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        self.urls
            .iter()
            .map(|u| {
                format!(
                    "<{u}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quote(&self.username),
                    quote(&self.credential)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether `url` is a TURN URL a browser takes (RFC 7065): `turn:` or `turns:`, a
/// host, an optional port and `?transport=udp|tcp`. Answers what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("turns:")
        .or_else(|| url.strip_prefix("turn:"))
        .ok_or_else(|| format!("{url:?} is not a TURN URL: it must start with turn: or turns:"))?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if hostport.is_empty() || hostport.contains(['/', ' ', '@']) {
        return Err(format!("{url:?}: expected turn:host[:port][?transport=udp|tcp]"));
    }
    if !query.is_empty() && !matches!(query, "transport=udp" | "transport=tcp") {
        return Err(format!("{url:?}: the only query a TURN URL takes is transport=udp or transport=tcp"));
    }
    Ok(())
}

/// Mints credentials for one participant: good until `expires` (Unix seconds).
pub fn credentials(secret: &str, urls: &[String], id: &str, expires: u64) -> IceServer {
    let username = format!("{expires}:{id}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let credential = B64.encode(hmac::sign(&key, username.as_bytes()).as_ref());
    IceServer { urls: urls.to_vec(), username, credential }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Computed independently: printf '1700000000:p1' | openssl dgst -sha1 -hmac
        // 'north-shared-secret' -binary | base64
        let s = credentials("north-shared-secret", &["turns:t.example:443?transport=tcp".into()], "p1", 1_700_000_000);
        assert_eq!(s.username, "1700000000:p1");
        assert_eq!(s.credential, "m/Mni0yxDx2AgHsCRnEYIZKihZ4=");
        // Another secret, another credential.
        assert_ne!(credentials("another-secret", &[], "p1", 1_700_000_000).credential, s.credential);
    }

    #[test]
    fn link_headers_name_each_url_with_the_credentials() {
        let s = IceServer {
            urls: vec!["turn:t.example:3478?transport=udp".into(), "turns:t.example:443?transport=tcp".into()],
            username: "1:p".into(),
            credential: "a\"b".into(),
        };
        assert_eq!(
            s.link_header(),
            "<turn:t.example:3478?transport=udp>; rel=\"ice-server\"; username=\"1:p\"; credential=\"a\\\"b\"; credential-type=\"password\", \
             <turns:t.example:443?transport=tcp>; rel=\"ice-server\"; username=\"1:p\"; credential=\"a\\\"b\"; credential-type=\"password\""
        );
    }

    #[test]
    fn turn_urls_are_checked() {
        for good in ["turn:t.example", "turns:t.example:443?transport=tcp", "turn:10.0.0.1:3478?transport=udp"] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in ["stun:t.example", "https://t.example", "turn:", "turn:t.example?transport=sctp", "turn:u@t.example"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
