//! The small HTTP client the peers and the metrics scraper share: WHIP/WHEP offers,
//! resource DELETEs and `GET /metrics`, all to one base URL.
//!
//! The agent follows no redirects and ignores proxy environment variables, so every
//! request goes to the base URL's origin and nowhere else.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ureq::Agent;

/// The largest response body read (SDP answers, metrics, error texts).
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

/// How much of an error response's body is quoted in the error message.
const MAX_ERROR_TEXT: usize = 300;

/// An HTTP client bound to one server.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    agent: Agent,
    /// The base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    base: String,
}

/// What a successful WHIP/WHEP POST returns.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    /// The SDP answer.
    pub answer: String,
    /// The absolute URL of the session resource (from `Location`).
    pub resource_url: String,
}

impl Http {
    /// A client for the server at `base_url`; every request is bounded by `timeout`.
    pub(crate) fn new(base_url: &str, timeout: Duration) -> Result<Http> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        origin_of(&base)?;
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build()
            .into();
        Ok(Http { agent, base })
    }

    /// `{base}/{kind}/{room}` with the room percent-encoded as one path segment.
    pub(crate) fn endpoint(&self, kind: &str, room: &str) -> String {
        format!("{}/{kind}/{}", self.base, encode_path_segment(room))
    }

    /// POSTs an SDP offer to a WHIP/WHEP endpoint and returns the answer and resource URL.
    ///
    /// A 307 or 308 (the room lives on another node of the cluster) is followed,
    /// at most [`MAX_REDIRECTS`] times, with the same token and offer.
    pub(crate) fn post_offer(&self, url: &str, token: &str, offer: &str) -> Result<Negotiated> {
        let mut url = url.to_string();
        let mut hops = 0;
        let (mut response, status, location) = loop {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "application/sdp")
                .send(offer)
                .with_context(|| format!("cannot reach the server at {url}"))?;
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if matches!(status.as_u16(), 307 | 308) && hops < MAX_REDIRECTS {
                let to = location.with_context(|| format!("POST {url} answered {status} without a Location"))?;
                url = redirect_target(&url, &to)?;
                hops += 1;
                continue;
            }
            break (response, status, location);
        };
        let url = url.as_str();
        let body = read_body(&mut response)
            .with_context(|| format!("reading the response of POST {url}"))?;
        if !status.is_success() {
            bail!("POST {url} was refused: {status}: {}", excerpt(&body));
        }
        if !body.starts_with("v=0") {
            bail!(
                "POST {url} returned {status} without an SDP answer: {}",
                excerpt(&body)
            );
        }
        let location = location
            .with_context(|| format!("POST {url} returned {status} without a Location header"))?;
        let resource_url = resolve_location(origin_of(url)?, url, &location)?;
        Ok(Negotiated {
            answer: body,
            resource_url,
        })
    }

    /// DELETEs a session resource.
    pub(crate) fn delete(&self, resource_url: &str, token: &str) -> Result<()> {
        let mut response = self
            .agent
            .delete(resource_url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .with_context(|| format!("cannot reach the server at {resource_url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_body(&mut response).unwrap_or_default();
            bail!(
                "DELETE {resource_url} was refused: {status}: {}",
                excerpt(&body)
            );
        }
        Ok(())
    }

    /// GETs `{base}{path}` as text, with `Authorization: Bearer <token>`.
    pub(crate) fn get_text_authorized(&self, path: &str, token: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .with_context(|| format!("cannot reach the server at {url}"))?;
        let status = response.status();
        let body = read_body(&mut response).with_context(|| format!("reading GET {url}"))?;
        if !status.is_success() {
            bail!("GET {url} returned {status}: {}", excerpt(&body));
        }
        Ok(body)
    }
}

/// Most redirects followed to reach a room's node.
const MAX_REDIRECTS: usize = 3;

/// Where a 307/308 sends a POST: an absolute `http://` URL (another node), or a
/// path on the same server.
fn redirect_target(request_url: &str, location: &str) -> Result<String> {
    let location = location.trim();
    if location.starts_with("http://") {
        origin_of(location)?;
        return Ok(location.to_string());
    }
    resolve_location(origin_of(request_url)?, request_url, location)
}

fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String> {
    Ok(response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()?)
}

/// The first characters of a response body, on one line, for error messages.
fn excerpt(body: &str) -> String {
    let one_line = body.trim().replace(['\r', '\n'], " ");
    match one_line.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None if one_line.is_empty() => "(empty body)".into(),
        None => one_line,
    }
}

/// `scheme://authority` of an `http://` URL.
pub(crate) fn origin_of(url: &str) -> Result<&str> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        bail!("{url}: only plain http:// URLs are supported");
    } else {
        bail!("{url}: not an http:// URL");
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if authority_len == 0 {
        bail!("{url}: the URL has no host");
    }
    Ok(&url[.."http://".len() + authority_len])
}

/// Resolves a `Location` header value against the URL the request went to.
///
/// Absolute URLs must have the same origin as the server; relative ones are resolved
/// the RFC 3986 way (`/x` against the origin, `x` against the request's directory).
pub(crate) fn resolve_location(origin: &str, request_url: &str, location: &str) -> Result<String> {
    let location = location.trim();
    if location.contains("://") {
        let same_origin = location
            .strip_prefix(origin)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if !same_origin {
            bail!("Location {location:?} points outside the server {origin}");
        }
        return Ok(location.to_string());
    }
    if location.starts_with("//") {
        bail!("Location {location:?} points outside the server {origin}");
    }
    if location.starts_with('/') {
        return Ok(format!("{origin}{location}"));
    }
    if location.is_empty() {
        bail!("empty Location header");
    }
    let path_end = request_url.find(['?', '#']).unwrap_or(request_url.len());
    let dir = &request_url[..path_end];
    match dir.rfind('/') {
        Some(i) if i >= origin.len() => Ok(format!("{}{location}", &dir[..=i])),
        _ => Ok(format!("{origin}/{location}")),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin_of("http://h:1/prefix/x").unwrap(), "http://h:1");
        assert!(origin_of("https://h").is_err());
        assert!(origin_of("ftp://h").is_err());
        assert!(origin_of("http:///x").is_err());
    }

    #[test]
    fn locations() {
        let o = "http://h:8080";
        let req = "http://h:8080/whip/room";
        assert_eq!(
            resolve_location(o, req, "/whip/room/p1").unwrap(),
            "http://h:8080/whip/room/p1"
        );
        assert_eq!(
            resolve_location(o, req, "http://h:8080/whip/room/p1").unwrap(),
            "http://h:8080/whip/room/p1"
        );
        assert_eq!(
            resolve_location(o, req, "p1").unwrap(),
            "http://h:8080/whip/p1"
        );
        assert!(resolve_location(o, req, "http://evil:8080/x").is_err());
        assert!(resolve_location(o, req, "http://h:80800/x").is_err());
        assert!(resolve_location(o, req, "//evil/x").is_err());
        assert!(resolve_location(o, req, "").is_err());
    }

    #[test]
    fn path_segments() {
        assert_eq!(encode_path_segment("load-1_a.b~"), "load-1_a.b~");
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn endpoints() {
        let http = Http::new("http://127.0.0.1:8080/", Duration::from_secs(1)).unwrap();
        assert_eq!(http.base, "http://127.0.0.1:8080");
        assert_eq!(
            http.endpoint("whep", "or 1"),
            "http://127.0.0.1:8080/whep/or%201"
        );
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt(""), "(empty body)");
        assert_eq!(excerpt("a\r\nb"), "a  b");
        assert_eq!(
            excerpt(&"x".repeat(1000)).chars().count(),
            MAX_ERROR_TEXT + 1
        );
    }
}
