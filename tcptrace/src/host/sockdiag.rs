//! Listening sockets and their accept queues, the connections that exist,
//! and at start-up every TCP socket, from the kernel's sock_diag netlink
//! interface (what `ss` uses): for a listener, `idiag_rqueue` is the accept
//! queue's length and `idiag_wqueue` its limit (the listen() backlog,
//! capped by `net.core.somaxconn`). The periodic dumps ask for the states
//! wanted only (LISTEN; or the connected ones, which bring only the
//! timewait sockets of orphans in FIN_WAIT2), so a host with 100 000
//! timewait sockets costs little more than an idle one. The socket is
//! opened from a thread that joins the namespace (a netlink socket stays in
//! the namespace it was made in) and read from the caller's. The parsing is
//! pure and tested on dumps copied from this kernel.
//!
//! Layouts (`include/uapi/linux/inet_diag.h`, `netlink.h`), stable ABI:
//! `nlmsghdr` 16 bytes; `inet_diag_req_v2` 56 bytes; `inet_diag_msg`
//! 72 bytes: family, state, timer, retrans, `inet_diag_sockid` (sport and
//! dport big-endian at 4 and 6, src at 8, dst at 24, if at 40, cookie at
//! 44), then expires (ms) at 52, rqueue at 56, wqueue at 60, uid at 64,
//! inode at 68. A timewait socket's state is its substate and its timer
//! `TIMER_TIMEWAIT`; a request socket's state is SYN_RECV, its inode 0.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use crate::model::ListenerSample;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
/// `idiag_timer` of a timewait socket.
const TIMER_TIMEWAIT: u8 = 3;
/// The states a connection can be in with a full socket (not LISTEN, CLOSE,
/// TIME_WAIT or NEW_SYN_RECV): ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1,
/// FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING.
const CONNECTED: u32 =
    (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11);
/// Every state a socket can be listed in, ESTABLISHED (1) to NEW_SYN_RECV
/// (12).
const ALL: u32 = 0x1ffe;
const HDR: usize = 16;
const MSG: usize = 72;

/// A socket, as the kernel lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// Its state (the kernel's number); a timewait socket's substate.
    pub state: u8,
    /// Which timer runs: `TIMER_TIMEWAIT` for a timewait socket.
    pub timer: u8,
    /// Time left on that timer, in milliseconds.
    pub expires_ms: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The socket's inode (0 for timewait and request sockets).
    pub inode: u32,
}

impl DiagSocket {
    /// Whether this is a timewait socket (state TIME_WAIT, or FIN_WAIT2 for
    /// an orphan's), not a full one.
    pub fn is_timewait(&self) -> bool {
        self.timer == TIMER_TIMEWAIT
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiagError {
    #[error("truncated netlink message")]
    Truncated,
    #[error("the kernel answered errno {0}")]
    Kernel(i32),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Parses one datagram of a sock_diag dump into `out`; `Ok(true)` once the
/// dump is done.
pub fn parse(buf: &[u8], out: &mut Vec<ListenerSample>) -> Result<bool, DiagError> {
    walk(buf, |body| {
        out.push(ListenerSample {
            local: endpoint(body, 4, 8),
            queued: u32_at(body, 56).ok_or(DiagError::Truncated)?,
            limit: u32_at(body, 60).ok_or(DiagError::Truncated)?,
            inode: u32_at(body, 68).ok_or(DiagError::Truncated)?,
        });
        Ok(())
    })
}

/// Parses a dump of connections into `out`, as `parse` does listeners.
/// Timewait sockets (the kernel matches their substate against the states
/// asked for, so FIN_WAIT2 brings those of orphans; their timer is
/// `TIMER_TIMEWAIT`) are left out: they are not connections' full sockets.
pub fn parse_sockets(buf: &[u8], out: &mut Vec<DiagSocket>) -> Result<bool, DiagError> {
    parse_all(buf, |s| {
        if !s.is_timewait() {
            out.push(*s);
        }
    })
}

/// Parses a dump into sockets of every kind (timewait ones too), each
/// handed to `each` as read; `Ok(true)` once the dump is done.
pub fn parse_all(buf: &[u8], mut each: impl FnMut(&DiagSocket)) -> Result<bool, DiagError> {
    walk(buf, |body| {
        each(&DiagSocket {
            state: body[1],
            timer: body[2],
            expires_ms: u32_at(body, 52).ok_or(DiagError::Truncated)?,
            local: endpoint(body, 4, 8),
            remote: endpoint(body, 6, 24),
            inode: u32_at(body, 68).ok_or(DiagError::Truncated)?,
        });
        Ok(())
    })
}

/// Walks the netlink messages of `buf`, handing each `inet_diag_msg` body
/// (at least `MSG` bytes) to `each`. `Ok(true)`: the dump is done.
fn walk(
    buf: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), DiagError>,
) -> Result<bool, DiagError> {
    let mut at = 0;
    while at + HDR <= buf.len() {
        let len = u32_at(buf, at).ok_or(DiagError::Truncated)? as usize;
        let kind = u16_at(buf, at + 4).ok_or(DiagError::Truncated)?;
        if len < HDR || at + len > buf.len() {
            return Err(DiagError::Truncated);
        }
        let body = &buf[at + HDR..at + len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).ok_or(DiagError::Truncated)? as i32;
                if errno != 0 {
                    return Err(DiagError::Kernel(errno.wrapping_neg()));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if body.len() < MSG {
                    return Err(DiagError::Truncated);
                }
                each(body)?;
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(false)
}

/// The endpoint of an `inet_diag_msg` body (at least `MSG` bytes) whose
/// port (big-endian) is at `port` and address at `addr`.
fn endpoint(body: &[u8], port: usize, addr: usize) -> SocketAddr {
    let port = u16::from_be_bytes([body[port], body[port + 1]]);
    let ip = match body[0] {
        2 => IpAddr::V4(Ipv4Addr::new(
            body[addr],
            body[addr + 1],
            body[addr + 2],
            body[addr + 3],
        )),
        _ => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[addr..addr + 16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    };
    SocketAddr::new(ip, port)
}

/// A dump request for the listening TCP sockets of `family`.
pub fn request(family: u8, seq: u32) -> [u8; HDR + 56] {
    request_states(family, seq, 1 << TCP_LISTEN)
}

/// A dump request for the TCP sockets of `family` in `states` (a bit per
/// state number).
fn request_states(family: u8, seq: u32, states: u32) -> [u8; HDR + 56] {
    let mut req = [0u8; HDR + 56];
    req[0..4].copy_from_slice(&((HDR + 56) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[HDR] = family;
    req[HDR + 1] = libc::IPPROTO_TCP as u8;
    req[HDR + 4..HDR + 8].copy_from_slice(&states.to_ne_bytes());
    req
}

/// A new sock_diag socket, in the caller's network namespace.
fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A sock_diag socket of network namespace `netns`, opened from inside it
/// through process `pid`; it lists that namespace's sockets wherever it is
/// read from.
pub fn socket_in(pid: u32, netns: u32) -> io::Result<OwnedFd> {
    super::netns::in_namespace(pid, netns, open)
}

/// Sends a request for `states` of `family` on sock_diag socket `fd` and
/// hands each chunk of the answer to `parse` (which says when it is done).
fn dump(
    fd: &OwnedFd,
    family: u8,
    states: u32,
    mut parse: impl FnMut(&[u8]) -> Result<bool, DiagError>,
) -> io::Result<()> {
    let req = request_states(family, 1, states);
    // SAFETY: req is a valid buffer of the length passed; the kernel is the
    // default destination of a netlink socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: buf is a valid, writable buffer of the length passed.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 || parse(&buf[..n as usize]).map_err(io::Error::other)? {
            return Ok(());
        }
    }
}

/// The listening TCP sockets (IPv4 and IPv6) of network namespace `netns`,
/// asked from inside it through process `pid`.
pub fn listeners_in(pid: u32, netns: u32) -> io::Result<Vec<ListenerSample>> {
    let fd = socket_in(pid, netns)?;
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        dump(&fd, family as u8, 1 << TCP_LISTEN, |b| parse(b, &mut out))?;
    }
    Ok(out)
}

/// The TCP connections (IPv4 and IPv6, full sockets: no listeners, no
/// timewait sockets) of network namespace `netns`, asked from inside it
/// through process `pid`.
pub fn sockets_in(pid: u32, netns: u32) -> io::Result<Vec<DiagSocket>> {
    let fd = socket_in(pid, netns)?;
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        dump(&fd, family as u8, CONNECTED, |b| parse_sockets(b, &mut out))?;
    }
    Ok(out)
}

/// Every TCP socket of `family` (listeners, connections, request and
/// timewait sockets) of the namespace of sock_diag socket `fd`, handed to
/// `each` as read: a host can have hundreds of thousands.
pub fn each_socket(fd: &OwnedFd, family: u8, mut each: impl FnMut(&DiagSocket)) -> io::Result<()> {
    dump(fd, family, ALL, |b| parse_all(b, &mut each))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump of this kernel's IPv4 listeners (Linux 6.18): 127.0.0.1:8080
    /// with 3 connections waiting out of a backlog of 4, then NLMSG_DONE.
    const FIXTURE: &[u8] = include_bytes!("fixtures/sock_diag_listen.bin");

    #[test]
    fn parses_a_real_dump() {
        let mut out = Vec::new();
        assert_eq!(parse(FIXTURE, &mut out), Ok(true));
        let l = out
            .iter()
            .find(|l| l.local == "127.0.0.1:8080".parse().unwrap())
            .expect("the fixture's listener");
        assert_eq!((l.queued, l.limit), (3, 4));
        assert!(l.inode > 0);
    }

    #[test]
    fn rejects_broken_messages() {
        let mut out = Vec::new();
        assert_eq!(parse(&FIXTURE[..20], &mut out), Err(DiagError::Truncated));
        let mut err = [0u8; 20];
        err[0..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert_eq!(parse(&err, &mut out), Err(DiagError::Kernel(13)));
        assert_eq!(parse(&[], &mut out), Ok(false));
    }

    /// Found by the fuzzer: an error of i32::MIN could not be negated.
    #[test]
    fn any_error_number_is_an_error() {
        let mut msg = Vec::new();
        msg.extend_from_slice(&20u32.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&i32::MIN.to_ne_bytes());
        let mut out = Vec::new();
        assert_eq!(parse(&msg, &mut out), Err(DiagError::Kernel(i32::MIN)));
    }

    /// A dump of this kernel's connected IPv4 sockets (Linux 6.18, asked
    /// for as `sockets_in` does, in a namespace of its own): a loopback
    /// connection to 127.0.0.1:8080 whose accepted end was closed, so the
    /// client's end is in CLOSE_WAIT and the server's gone to a timewait
    /// socket in FIN_WAIT2 (an orphan: timer 3), which the kernel lists
    /// too.
    const CONNECTED_FIXTURE: &[u8] = include_bytes!("fixtures/sock_diag_connected.bin");

    #[test]
    fn parses_a_real_dump_of_connections() {
        let mut out = Vec::new();
        assert_eq!(parse_sockets(CONNECTED_FIXTURE, &mut out), Ok(true));
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(out.len(), 1, "the timewait socket left out: {out:?}");
        assert_eq!((out[0].state, out[0].remote), (8, server), "CLOSE_WAIT");
        // The second message is the timewait socket: FIN_WAIT2, timer 3.
        let second = u32_at(CONNECTED_FIXTURE, 0).unwrap() as usize;
        let body = &CONNECTED_FIXTURE[second + HDR..];
        assert_eq!((body[1], body[2]), (5, TIMER_TIMEWAIT));
    }

    #[test]
    fn parses_every_kind_with_timers_and_inodes() {
        let mut out = Vec::new();
        assert_eq!(parse_all(CONNECTED_FIXTURE, |s| out.push(*s)), Ok(true));
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let [client, orphan] = out[..] else {
            panic!("two sockets: {out:?}");
        };
        assert_eq!((client.state, client.remote), (8, server));
        assert!(!client.is_timewait() && client.inode > 0);
        assert_eq!((orphan.state, orphan.local), (5, server));
        assert!(orphan.is_timewait() && orphan.inode == 0);
        assert!(orphan.expires_ms > 0 && orphan.expires_ms <= 60_000);
    }

    #[test]
    fn requests_every_state() {
        let states = u32_at(&request_states(libc::AF_INET as u8, 1, ALL), HDR + 4).unwrap();
        for state in 1..=12 {
            assert!(states & (1 << state) != 0, "state {state}");
        }
        assert_eq!(states & 1, 0, "no state 0");
    }

    #[test]
    fn requests_connected_states_only() {
        let req = request_states(libc::AF_INET as u8, 1, CONNECTED);
        let states = u32_at(&req, HDR + 4).unwrap();
        for (state, wanted) in [
            (1, true),
            (5, true),
            (8, true),
            (6, false),
            (10, false),
            (12, false),
        ] {
            assert_eq!(states & (1 << state) != 0, wanted, "state {state}");
        }
    }

    #[test]
    fn requests_listeners_only() {
        let req = request(libc::AF_INET6 as u8, 9);
        assert_eq!(u32_at(&req, 0), Some(72));
        assert_eq!(u16_at(&req, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(req[HDR], libc::AF_INET6 as u8);
        assert_eq!(u32_at(&req, HDR + 4), Some(1 << 10));
    }
}
