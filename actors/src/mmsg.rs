//! Batched datagram system calls (Linux `sendmmsg(2)` and `recvmmsg(2)`): one call
//! for the packets a participant's turn produced, or for the datagrams waiting on a
//! socket, instead of one `send_to`/`recv_from` each. The unsafe code of the media
//! path is here, and only here.
//!
//! UDP GSO (`UDP_SEGMENT`) is not used: it needs segments of one size to one
//! destination, and a subscriber's packets are of every size (and paced apart).

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Most datagrams one call carries.
pub const MAX_BATCH: usize = 64;

/// Writes `addr` into `storage`; answers its length.
fn to_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the address the kernel wrote into `storage`.
fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(sin.sin_addr.s_addr.to_ne_bytes().into(), u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(sin6.sin6_addr.s6_addr.into(), u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Sends `batch` (destination, bytes) from `socket` in as few calls as it takes,
/// without blocking. Answers how many were sent: those after a full send buffer
/// (`WouldBlock`) or a datagram the kernel refused are not (the caller counts them).
pub fn send_batch(socket: &impl AsRawFd, batch: &[(SocketAddr, &[u8])]) -> (usize, Option<io::Error>) {
    let mut sent = 0;
    while sent < batch.len() {
        let chunk = &batch[sent..(sent + MAX_BATCH).min(batch.len())];
        let mut names: [MaybeUninit<libc::sockaddr_storage>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] = [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: mmsghdr is plain data; zeroed is a valid (empty) value.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        for (i, (to, data)) in chunk.iter().enumerate() {
            // SAFETY: zeroed sockaddr_storage is valid; to_sockaddr fills it.
            let name = names[i].write(unsafe { std::mem::zeroed() });
            let len = to_sockaddr(to, name);
            let iov = iovs[i].write(libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() });
            msgs[i].msg_hdr.msg_name = name as *mut libc::sockaddr_storage as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = len;
            msgs[i].msg_hdr.msg_iov = iov;
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs[..chunk.len()] point at names, iovs and the callers' buffers,
        // all alive for the call.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), chunk.len() as libc::c_uint, libc::MSG_DONTWAIT) };
        if n < 0 {
            return (sent, Some(io::Error::last_os_error()));
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            // The next one would fail: found out why on its own.
            match send_one(socket, batch[sent].0, batch[sent].1) {
                Ok(()) => sent += 1,
                Err(e) => return (sent, Some(e)),
            }
        }
    }
    (sent, None)
}

fn send_one(socket: &impl AsRawFd, to: SocketAddr, data: &[u8]) -> io::Result<()> {
    // SAFETY: zeroed sockaddr_storage is valid; to_sockaddr fills it.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = to_sockaddr(&to, &mut name);
    // SAFETY: buffer and address alive for the call.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            data.as_ptr() as *const libc::c_void,
            data.len(),
            libc::MSG_DONTWAIT,
            &name as *const libc::sockaddr_storage as *const libc::sockaddr,
            len,
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Buffers for receiving up to [`MAX_BATCH`] datagrams in one call.
pub struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    names: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; 2048]; MAX_BATCH],
            // SAFETY: zeroed sockaddr_storage is valid.
            names: vec![unsafe { std::mem::zeroed() }; MAX_BATCH],
            lens: vec![0; MAX_BATCH],
        }
    }
}

impl RecvBatch {
    /// Receives what is waiting on `socket` (at least one datagram, at most
    /// [`MAX_BATCH`]), without blocking: `WouldBlock` when nothing is. Answers how
    /// many; [`RecvBatch::get`] gives each.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        let mut iovs: Vec<libc::iovec> =
            self.bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: b.len() }).collect();
        // SAFETY: mmsghdr is plain data; zeroed is a valid (empty) value.
        let mut msgs: Vec<libc::mmsghdr> = (0..MAX_BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = &mut self.names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every message points at this batch's buffers and names, alive and
        // not otherwise borrowed for the call.
        let n = unsafe { libc::recvmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), MAX_BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, m) in msgs.iter().take(n as usize).enumerate() {
            // A datagram longer than the buffer is cut short (MSG_TRUNC): media
            // datagrams are under 1500 bytes; a longer one is not ours.
            self.lens[i] = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 { 0 } else { m.msg_len as usize };
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last call: its sender and bytes (None: no usable sender,
    /// or cut short).
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let len = self.lens[i];
        (len > 0).then(|| from_sockaddr(&self.names[i]).map(|a| (a, &self.bufs[i][..len]))).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_sent_in_one_call_arrives_whole_to_each_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        let payloads: Vec<Vec<u8>> = (0..150u32).map(|i| vec![i as u8; 100 + i as usize]).collect();
        let batch: Vec<(SocketAddr, &[u8])> =
            payloads.iter().enumerate().map(|(i, p)| (if i % 2 == 0 { a.local_addr().unwrap() } else { b.local_addr().unwrap() }, &p[..])).collect();
        let (sent, err) = send_batch(&tx, &batch);
        assert_eq!((sent, err.map(|e| e.kind())), (150, None));
        // Received in batches too, each with its sender and size.
        a.set_nonblocking(true).unwrap();
        let mut rb = RecvBatch::default();
        let mut got = Vec::new();
        while let Ok(n) = rb.recv(&a) {
            for i in 0..n {
                let (from, data) = rb.get(i).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                got.push(data.to_vec());
            }
        }
        assert_eq!(got, payloads.iter().step_by(2).cloned().collect::<Vec<_>>());
        assert_eq!(rb.recv(&a).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn ipv6_addresses_go_and_come_back() {
        let Ok(tx) = UdpSocket::bind("[::1]:0") else { return };
        let rx = UdpSocket::bind("[::1]:0").unwrap();
        let (sent, _) = send_batch(&tx, &[(rx.local_addr().unwrap(), b"six")]);
        assert_eq!(sent, 1);
        let mut rb = RecvBatch::default();
        rx.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 1];
        let _ = rx.peek(&mut buf);
        assert_eq!(rb.recv(&rx).unwrap(), 1);
        assert_eq!(rb.get(0), Some((tx.local_addr().unwrap(), &b"six"[..])));
    }
}
