//! Reading a peer's SDP, with errors a client author can act on.
//!
//! str0m's parser reports where it stopped as an offset into its own buffers (a
//! heap address in its `Display`), which says nothing to a client and something to
//! an attacker. Every SDP from outside is read here: each line is checked first, so
//! most mistakes are named by line number, and whatever the parser still refuses is
//! answered with a fixed text while the detail goes to the debug log only.

use str0m::change::{SdpAnswer, SdpOffer};

/// Checks that every line of an SDP is `<letter>=<value>` (RFC 8866 §5), naming
/// the first one that is not.
pub fn check_lines(text: &str) -> Result<(), String> {
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(format!("SDP line {} is not of the form x=value", n + 1));
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("SDP line {} holds a control character", n + 1));
        }
    }
    Ok(())
}

/// A peer's SDP offer.
pub fn parse_offer(text: &str) -> Result<SdpOffer, String> {
    check_lines(text).map_err(|e| format!("SDP offer not understood: {e}"))?;
    SdpOffer::from_sdp_string(text).map_err(|e| {
        tracing::debug!(error = %e, "SDP offer refused by the parser");
        "SDP offer not understood: a line has a value WebRTC does not allow (RFC 8866, JSEP)".to_string()
    })
}

/// A peer's SDP answer.
pub fn parse_answer(text: &str) -> Result<SdpAnswer, String> {
    check_lines(text).map_err(|e| format!("SDP answer not understood: {e}"))?;
    SdpAnswer::from_sdp_string(text).map_err(|e| {
        tracing::debug!(error = %e, "SDP answer refused by the parser");
        "SDP answer not understood: a line has a value WebRTC does not allow (RFC 8866, JSEP)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line_and_never_the_parser_internals() {
        let e = parse_offer("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\ngarbage here\r\n").err().unwrap();
        assert_eq!(e, "SDP offer not understood: SDP line 3 is not of the form x=value");
        assert!(parse_offer("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=x\u{1}\r\n").is_err());
        // Well-formed lines the parser still refuses: a fixed text, no offsets.
        let e = parse_offer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video x UDP/TLS/RTP/SAVPF 96\r\n").err().unwrap();
        assert!(e.starts_with("SDP offer not understood") && !e.contains("0x") && !e.contains("Pointer"), "{e}");
    }
}
