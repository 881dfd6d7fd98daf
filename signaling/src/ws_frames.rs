//! A guard on the bytes of a WebSocket connection (RFC 6455 §5.2), read before any
//! frame is buffered.
//!
//! A frame's header declares its length up front. The guard reads each header as
//! the bytes stream past, and refuses a frame longer than the limit at its header,
//! before one byte of its payload is kept; so a client that declares 2^40 bytes and
//! sends hundreds of megabytes gets an error at once instead of growing a buffer.
//! The limit can change while the connection lives (small before `join`, the
//! message limit after).

/// What the guard found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame declares more payload than allowed.
    #[error("a WebSocket frame of {declared} bytes; the limit is {limit}")]
    TooLong {
        /// What its header declared.
        declared: u64,
        /// The limit then.
        limit: usize,
    },
    /// A header that RFC 6455 forbids (a 64-bit length with its top bit set, or a
    /// control frame over 125 bytes).
    #[error("a malformed WebSocket frame header")]
    Malformed,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a header: `have` of its bytes so far.
    Header { have: usize },
    /// Passing a payload: bytes left.
    Payload { left: u64 },
}

/// Follows frame boundaries in a byte stream from a client.
#[derive(Debug, Clone)]
pub struct FrameGuard {
    head: [u8; 14],
    state: State,
}

impl Default for FrameGuard {
    fn default() -> Self {
        FrameGuard { head: [0; 14], state: State::Header { have: 0 } }
    }
}

impl FrameGuard {
    /// A guard at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next bytes of the stream against `limit` (the largest payload a
    /// frame may declare). Once it has answered an error the stream is to be closed.
    pub fn inspect(&mut self, mut bytes: &[u8], limit: usize) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            match self.state {
                State::Payload { left } => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n { State::Header { have: 0 } } else { State::Payload { left: left - n } };
                }
                State::Header { mut have } => {
                    let need = header_len(&self.head[..have]);
                    let take = (need - have).min(bytes.len());
                    self.head[have..have + take].copy_from_slice(&bytes[..take]);
                    have += take;
                    bytes = &bytes[take..];
                    // The length is known once the extended length (if any) has
                    // arrived: checked then, even if the mask key is still to come.
                    let need = header_len(&self.head[..have]);
                    if have >= 2 && have >= need - mask_len(&self.head[..have]) {
                        let declared = payload_len(&self.head[..have])?;
                        if declared > limit as u64 {
                            return Err(FrameError::TooLong { declared, limit });
                        }
                        if have == need {
                            self.state = if declared == 0 { State::Header { have: 0 } } else { State::Payload { left: declared } };
                            continue;
                        }
                    }
                    self.state = State::Header { have };
                }
            }
        }
        Ok(())
    }
}

/// The mask key's length in the header that begins with `head` (two bytes at least).
fn mask_len(head: &[u8]) -> usize {
    if head[1] & 0x80 != 0 { 4 } else { 0 }
}

/// How long the header that begins with `head` is (2 while unknown).
fn header_len(head: &[u8]) -> usize {
    if head.len() < 2 {
        return 2;
    }
    let mask = mask_len(head);
    let ext = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + mask
}

/// The payload length of a whole header.
fn payload_len(head: &[u8]) -> Result<u64, FrameError> {
    let opcode = head[0] & 0x0f;
    let len = match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[2..10]);
            let n = u64::from_be_bytes(b);
            if n >> 63 != 0 {
                return Err(FrameError::Malformed);
            }
            n
        }
        n => u64::from(n),
    };
    if opcode >= 8 && len > 125 {
        return Err(FrameError::Malformed);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u64, masked: bool) -> Vec<u8> {
        let m = if masked { 0x80 } else { 0 };
        let mut f = vec![0x81];
        if len < 126 {
            f.push(m | len as u8);
        } else if len <= 0xffff {
            f.push(m | 126);
            f.extend((len as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend(len.to_be_bytes());
        }
        if masked {
            f.extend([1, 2, 3, 4]);
        }
        f
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_split() {
        let mut stream = Vec::new();
        for len in [0u64, 5, 125, 126, 300, 70_000] {
            stream.extend(frame(len, true));
            stream.extend(std::iter::repeat_n(b'x', len as usize));
        }
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut g = FrameGuard::new();
            for c in stream.chunks(chunk) {
                g.inspect(c, 100_000).unwrap();
            }
            assert!(matches!(g.state, State::Header { have: 0 }), "ends between frames ({chunk})");
        }
    }

    #[test]
    fn a_long_frame_is_refused_at_its_header() {
        let mut g = FrameGuard::new();
        let head = frame(1 << 40, true);
        // Refused as soon as the length is known, before the mask key or payload.
        assert!(g.inspect(&head[..9], 1 << 20).is_ok());
        assert_eq!(g.inspect(&head[9..10], 1 << 20), Err(FrameError::TooLong { declared: 1 << 40, limit: 1 << 20 }));
        let mut g = FrameGuard::new();
        let mut two = frame(10, true);
        two.extend([0; 10]);
        two.extend(frame(5000, true));
        assert!(matches!(g.inspect(&two, 4096), Err(FrameError::TooLong { declared: 5000, .. })));
    }

    #[test]
    fn forbidden_headers_are_malformed() {
        let mut top = frame(1 << 40, false);
        top[2] = 0x80;
        assert_eq!(FrameGuard::new().inspect(&top, usize::MAX), Err(FrameError::Malformed));
        let ping = [0x89, 126, 0, 200];
        assert_eq!(FrameGuard::new().inspect(&ping, usize::MAX), Err(FrameError::Malformed));
    }
}
