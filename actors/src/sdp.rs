//! Reading a peer's SDP, with errors a client author can act on.
//!
//! str0m's parser reports where it stopped as an offset into its own buffers (a
//! heap address in its `Display`), which says nothing to a client and something to
//! an attacker. Every SDP from outside is read here: each line is checked first, so
//! most mistakes are named by line number, and whatever the parser still refuses is
//! answered with a fixed text while the detail goes to the debug log only.
//!
//! Payload types are checked too, before str0m sees them: str0m 0.25 asserts (panics)
//! when an offer maps a payload type on an m-line that does not list it (found by
//! fuzzing), so each `rtpmap`, `fmtp` and `rtcp-fb` must name a format of its own
//! m-line, one payload type must name one codec across the offer (RFC 8843 §7.3.1),
//! and a known audio codec never sits on a video m-line or the reverse.

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

/// Checks the payload types the attributes name (see the module docs).
pub fn check_payload_types(text: &str) -> Result<(), String> {
    use std::collections::HashMap;
    let mut section: Option<(&str, Vec<&str>)> = None;
    let mut codecs: HashMap<&str, String> = HashMap::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or("");
            section = Some((kind, parts.skip(2).collect()));
            continue;
        }
        let Some((attr, rest)) = ["rtpmap", "fmtp", "rtcp-fb"].iter().find_map(|a| line.strip_prefix("a=")?.strip_prefix(a)?.strip_prefix(':').map(|r| (*a, r)))
        else {
            continue;
        };
        let pt = rest.split([' ', '\t']).next().unwrap_or("");
        if attr == "rtcp-fb" && pt == "*" {
            continue;
        }
        if pt.is_empty() || pt.len() > 3 || !pt.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("SDP line {}: a={attr} without a payload type number", n + 1));
        }
        let Some((kind, formats)) = &section else {
            return Err(format!("SDP line {}: a={attr} before any m= line", n + 1));
        };
        if !formats.contains(&pt) {
            return Err(format!("SDP line {}: payload type {pt} is not one its m= line lists", n + 1));
        }
        if attr != "rtpmap" {
            continue;
        }
        let codec = rest[pt.len()..].trim().to_ascii_lowercase();
        let name = codec.split('/').next().unwrap_or("");
        let wrong_kind = match *kind {
            "audio" => ["h264", "h265", "vp8", "vp9", "av1"].contains(&name),
            "video" => ["opus", "pcmu", "pcma", "g722", "telephone-event"].contains(&name),
            _ => false,
        };
        if wrong_kind {
            return Err(format!("SDP line {}: {name} on a {kind} m-line", n + 1));
        }
        match codecs.get(pt) {
            Some(other) if *other != codec => {
                let shown = |c: &str| c.chars().filter(|c| c.is_ascii_graphic()).take(32).collect::<String>();
                return Err(format!("SDP line {}: payload type {pt} names two codecs ({} and {})", n + 1, shown(other), shown(&codec)));
            }
            _ => {
                codecs.insert(pt, codec);
            }
        }
    }
    Ok(())
}

/// A peer's SDP offer.
pub fn parse_offer(text: &str) -> Result<SdpOffer, String> {
    check_lines(text).map_err(|e| format!("SDP offer not understood: {e}"))?;
    check_payload_types(text).map_err(|e| format!("SDP offer refused: {e}"))?;
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

    /// Found by fuzzing: an rtpmap for a payload type its m-line does not list made
    /// str0m 0.25 panic in `accept_offer` ("Pt locked multiple times").
    #[test]
    fn payload_types_are_their_m_lines_own_and_name_one_codec() {
        let offer = |audio_extra: &str| {
            format!(
                "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
                 m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n\
                 a=rtcp-fb:96 nack pli\r\na=fmtp:96 packetization-mode=1\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\na=rtpmap:97 opus/48000/2\r\n{audio_extra}"
            )
        };
        assert_eq!(check_payload_types(&offer("")), Ok(()));
        assert_eq!(check_payload_types(&offer("a=rtcp-fb:* nack\r\n")), Ok(()));
        let e = check_payload_types(&offer("a=rtpmap:96 H264/90000\r\n")).unwrap_err();
        assert!(e.contains("payload type 96 is not one its m= line lists"), "{e}");
        let twice = offer("").replace("m=audio 9 UDP/TLS/RTP/SAVPF 97", "m=audio 9 UDP/TLS/RTP/SAVPF 97 96") + "a=rtpmap:96 opus/48000/2\r\n";
        assert!(check_payload_types(&twice).unwrap_err().contains("names two codecs"));
        let kind = offer("").replace("a=rtpmap:97 opus/48000/2", "a=rtpmap:97 VP8/90000");
        assert!(check_payload_types(&kind).unwrap_err().contains("vp8 on a audio m-line"));
        let fuzzed = include_str!("../../fuzz/regressions/whip_sdp/rtpmap-not-on-its-m-line.sdp");
        assert!(parse_offer(fuzzed).is_err(), "refused before str0m");
    }
}
