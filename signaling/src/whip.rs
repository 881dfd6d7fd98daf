//! WHIP (RFC 9725) and WHEP helpers shared by the server and clients.

/// The media type of SDP bodies.
pub const SDP_CONTENT_TYPE: &str = "application/sdp";

/// The largest SDP body accepted on WHIP/WHEP, in bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Extracts the token from an `Authorization: Bearer …` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Checks that a body looks like an SDP offer before it reaches the WebRTC stack,
/// so that garbage gets a precise error.
pub fn check_sdp_offer(body: &[u8]) -> Result<&str, String> {
    if body.len() > MAX_SDP_BYTES {
        return Err(format!("SDP is {} bytes; the limit is {MAX_SDP_BYTES}", body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| "SDP is not UTF-8".to_string())?;
    if !text.starts_with("v=0") {
        return Err("body is not an SDP offer (it must start with \"v=0\")".into());
    }
    if !text.contains("\nm=") {
        return Err("SDP offer has no media section (m=)".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer  "), None);
    }

    #[test]
    fn sdp_checks() {
        assert!(check_sdp_offer(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n").is_ok());
        assert!(check_sdp_offer(b"hello").is_err());
        assert!(check_sdp_offer(&[0xff, 0xfe]).is_err());
        assert!(check_sdp_offer(b"v=0\r\n").is_err());
        assert!(check_sdp_offer(&vec![b'v'; MAX_SDP_BYTES + 1]).is_err());
    }
}
