//! The TCP sockets that exist when tcptrace starts, with their owners, so
//! that a server already running is attributed from the first transition:
//! a sock_diag dump of every state (once per network namespace, through a
//! process inside it) gives each socket's endpoints, state, timer and
//! inode, and `/proc/PID/fd` tells which process holds which socket inode —
//! what `ss -p` does. Where sock_diag is not there (a kernel without
//! `tcp_diag`), `/proc/PID/net/tcp` and `tcp6` give the same. (Neither
//! gives the kernel address, so sockets are matched by endpoints and
//! namespace.)
//!
//! sock_diag, because this runs while the rings fill unread: with 131 072
//! timewait sockets under churn, reading /proc/net/tcp took the kernel
//! 0.2–0.8 s of CPU (it formats every line, and seeks again from the start
//! of a hash bucket at each read), the binary dump 0.07 s.

use std::{
    collections::HashMap,
    fs,
    io::{self, BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt as _,
};

use crate::{
    host::sockdiag::{self, DiagSocket},
    model::{Comm, Existing, Task, TcpState, TwSeed},
};

/// What tcptrace found at start-up (timewait sockets apart).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Full sockets.
    pub sockets: Vec<Existing>,
    /// Every network namespace with a process, and one process inside it.
    pub namespaces: Vec<(u32, u32)>,
}

/// A line of /proc/net/tcp{,6}.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The state; a timewait socket's substate.
    pub state: u8,
    pub inode: u64,
    /// `timer_active`: 3 is a timewait socket's timer.
    pub timer: u8,
    /// Time left on the timer, in clock ticks (`USER_HZ`).
    pub when: u64,
}

/// `timer_active` of a timewait socket in /proc/net/tcp.
const TIMER_TIMEWAIT: u8 = 3;
/// The kernel prints timer values in `USER_HZ` ticks, 100 per second on
/// every architecture Linux runs on with /proc/net/tcp (jiffies_to_clock_t).
const USER_HZ: u64 = 100;

/// Parses a line of /proc/net/tcp{,6}.
pub fn parse_line(line: &str) -> Option<Line> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 10 || !fields[0].ends_with(':') {
        return None;
    }
    let (timer, when) = fields[5].split_once(':')?;
    Some(Line {
        local: endpoint(fields[1])?,
        remote: endpoint(fields[2])?,
        state: u8::from_str_radix(fields[3], 16).ok()?,
        inode: fields[9].parse().ok()?,
        timer: u8::from_str_radix(timer, 16).ok()?,
        when: u64::from_str_radix(when, 16).ok()?,
    })
}

/// "0100007F:1F90" (IPv4: one 32-bit word in host order) or 32 hex digits
/// (IPv6: four such words), then the port in hex.
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        // The kernel prints each 32-bit word as a number in host order.
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The link target of a socket fd: "socket:[12345]".
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn comm_of(pid: u32) -> Comm {
    let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Comm::from_name(name.trim_end_matches('\n'))
}

/// A socket as either source gives it.
struct Entry {
    local: SocketAddr,
    remote: SocketAddr,
    /// The kernel's number; a timewait socket's substate.
    state: u8,
    inode: u64,
    /// A timewait socket's time left.
    timewait_ms: Option<u64>,
}

/// One socket of namespace `netns`, from either source: a timewait socket
/// goes to `on_timewait`, a full one to `found` with its owner from
/// `owners` (socket inode -> process).
fn take_one(
    netns: u32,
    Entry {
        local,
        remote,
        state,
        inode,
        timewait_ms,
    }: Entry,
    owners: &HashMap<u64, Task>,
    on_timewait: &mut impl FnMut(&TwSeed),
    found: &mut Vec<Existing>,
) {
    let Some(state) = TcpState::from_kernel(state) else {
        return;
    };
    if let Some(remaining_ms) = timewait_ms {
        on_timewait(&TwSeed {
            netns,
            local,
            remote,
            substate: state,
            remaining_ms,
        });
        return;
    }
    let owner = (inode != 0).then(|| owners.get(&inode).copied()).flatten();
    found.push(Existing {
        netns,
        local,
        remote,
        state,
        owner,
    });
}

/// Reads one /proc/net/tcp{,6} table of namespace `netns`: timewait sockets
/// go to `on_timewait` as they are read (they can number hundreds of
/// thousands), full sockets to `found` with their owner from `owners` (socket
/// inode -> process). The header and unparsable lines are skipped.
pub fn read_table(
    reader: impl BufRead,
    netns: u32,
    owners: &HashMap<u64, Task>,
    on_timewait: &mut impl FnMut(&TwSeed),
    found: &mut Vec<Existing>,
) {
    for line in reader.lines().map_while(Result::ok).skip(1) {
        let Some(line) = parse_line(&line) else {
            continue;
        };
        let entry = Entry {
            local: line.local,
            remote: line.remote,
            state: line.state,
            inode: line.inode,
            // Saturating: the value is the kernel's, but read from text.
            timewait_ms: (line.timer == TIMER_TIMEWAIT)
                .then(|| line.when.saturating_mul(1000) / USER_HZ),
        };
        take_one(netns, entry, owners, on_timewait, found);
    }
}

/// One socket of a sock_diag dump of namespace `netns`, as `read_table`
/// takes a line.
fn take_diag(
    s: &DiagSocket,
    netns: u32,
    owners: &HashMap<u64, Task>,
    on_timewait: &mut impl FnMut(&TwSeed),
    found: &mut Vec<Existing>,
) {
    let entry = Entry {
        local: s.local,
        remote: s.remote,
        state: s.state,
        inode: u64::from(s.inode),
        timewait_ms: s.is_timewait().then_some(u64::from(s.expires_ms)),
    };
    take_one(netns, entry, owners, on_timewait, found);
}

/// Where a namespace's sockets were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    SockDiag,
    ProcNet,
}

/// The IPv4 and the IPv6 table: each is dumped, or read, on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Self; 2] = [Self::V4, Self::V6];

    fn af(self) -> u8 {
        match self {
            Self::V4 => libc::AF_INET as u8,
            Self::V6 => libc::AF_INET6 as u8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    fn proc_file(self) -> &'static str {
        match self {
            Self::V4 => "tcp",
            Self::V6 => "tcp6",
        }
    }
}

/// Reads the `family` sockets of namespace `netns` through process `pid`
/// inside it, from `source`, as `read_table` does a table.
pub fn read_namespace(
    source: Source,
    family: Family,
    pid: u32,
    netns: u32,
    owners: &HashMap<u64, Task>,
    on_timewait: &mut impl FnMut(&TwSeed),
    found: &mut Vec<Existing>,
) -> io::Result<()> {
    match source {
        Source::SockDiag => {
            let fd = sockdiag::socket_in(pid, netns)?;
            sockdiag::each_socket(&fd, family.af(), |s| {
                take_diag(s, netns, owners, on_timewait, found);
            })
        }
        Source::ProcNet => {
            // Streamed: with many TIME_WAIT sockets these files run to tens
            // of megabytes, and reading one whole showed in tcptrace's peak
            // RSS.
            let file = fs::File::open(format!("/proc/{pid}/net/{}", family.proc_file()))?;
            read_table(BufReader::new(file), netns, owners, on_timewait, found);
            Ok(())
        }
    }
}

/// One family's sockets of a namespace, from sock_diag; from /proc where
/// the dump fails before giving anything (a kernel without `tcp_diag`, or
/// without its IPv6 part). A dump that fails part-way keeps what it gave,
/// and the rest are seen when they next move.
fn read_family(
    family: Family,
    pid: u32,
    netns: u32,
    owners: &HashMap<u64, Task>,
    on_timewait: &mut impl FnMut(&TwSeed),
    found: &mut Vec<Existing>,
) {
    let (mut read, before) = (0usize, found.len());
    let mut counted = |tw: &TwSeed| {
        read += 1;
        on_timewait(tw);
    };
    let diag = read_namespace(
        Source::SockDiag,
        family,
        pid,
        netns,
        owners,
        &mut counted,
        found,
    );
    let Err(err) = diag else {
        return;
    };
    if read > 0 || found.len() > before {
        log::warn!(
            "netns {netns}: the start-up listing of its {} sockets stopped part-way: {err}",
            family.name()
        );
        return;
    }
    log::debug!(
        "netns {netns}: sock_diag: {err}; reading /proc/{pid}/net/{} instead",
        family.proc_file()
    );
    // A process that exits meanwhile is skipped.
    let _ = read_namespace(
        Source::ProcNet,
        family,
        pid,
        netns,
        owners,
        on_timewait,
        found,
    );
}

/// Every TCP socket of every network namespace that has a process, with the
/// process holding it where one does. Timewait sockets, which can number
/// hundreds of thousands, go to `on_timewait` as they are read rather than
/// into the result. Best effort: processes that exit meanwhile are skipped.
pub fn take(mut on_timewait: impl FnMut(&TwSeed)) -> Snapshot {
    let mut owners: HashMap<u64, Task> = HashMap::new();
    let mut namespaces: HashMap<u32, u32> = HashMap::new(); // netns -> a pid inside it
    let Ok(procs) = fs::read_dir("/proc") else {
        return Snapshot::default();
    };
    for entry in procs.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) {
            namespaces.entry(meta.ino() as u32).or_insert(pid);
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.filter_map(Result::ok) {
            let Some(inode) = fs::read_link(fd.path())
                .ok()
                .and_then(|t| socket_inode(t.to_str()?))
            else {
                continue;
            };
            let comm = *comm.get_or_insert_with(|| comm_of(pid));
            // The first holder found wins; sockets shared across a fork
            // belong to both, and either is a right answer.
            owners.entry(inode).or_insert(Task {
                pid,
                tid: pid,
                comm,
            });
        }
    }
    let mut found = Vec::new();
    for (&netns, &pid) in &namespaces {
        for family in Family::BOTH {
            read_family(family, pid, netns, &owners, &mut on_timewait, &mut found);
        }
    }
    Snapshot {
        sockets: found,
        namespaces: namespaces.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from this kernel (Linux 6.18) with a listener, an established
    /// pair, a TIME_WAIT and, over IPv6, a CLOSE_WAIT, an orphan in
    /// FIN_WAIT2 and a v4-mapped pair.
    const TCP: &str = include_str!("fixtures/tcp");
    const TCP6: &str = include_str!("fixtures/tcp6");

    fn read(text: &str, owners: &HashMap<u64, Task>) -> (Vec<Existing>, Vec<TwSeed>) {
        let (mut found, mut tw) = (Vec::new(), Vec::new());
        read_table(text.as_bytes(), 7, owners, &mut |s| tw.push(*s), &mut found);
        (found, tw)
    }

    #[test]
    fn parses_proc_net_tcp() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 42477357 1 000000004591c920 100 0 0 10 0";
        let l = parse_line(v4).unwrap();
        assert_eq!(l.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(l.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!((l.state, l.inode, l.timer, l.when), (0x0A, 42477357, 0, 0));
        assert_eq!(
            parse_line("  sl  local_address rem_address   st tx_queue"),
            None
        );
        assert_eq!(parse_line("   0: nonsense"), None);
    }

    #[test]
    fn reads_a_real_ipv4_table() {
        let mut owners = HashMap::new();
        let app = Task {
            pid: 42,
            tid: 42,
            comm: Comm::from_name("app"),
        };
        owners.insert(24363, app);
        let (found, tw) = read(TCP, &owners);
        assert_eq!(found.len(), 5);
        let listener = found
            .iter()
            .find(|e| e.local == "127.0.0.1:8080".parse().unwrap() && e.state == TcpState::Listen)
            .unwrap();
        assert_eq!(listener.owner, Some(app));
        assert_eq!(listener.netns, 7);
        let established = found
            .iter()
            .filter(|e| e.state == TcpState::Established)
            .count();
        assert_eq!(established, 3);
        // The client that closed first holds TIME_WAIT: no inode, timer 3.
        assert_eq!(tw.len(), 1);
        assert_eq!(
            (tw[0].local, tw[0].remote, tw[0].substate),
            (
                "127.0.0.1:59030".parse().unwrap(),
                "127.0.0.1:8080".parse().unwrap(),
                TcpState::TimeWait
            )
        );
        assert_eq!(tw[0].remaining_ms, 0x175C * 10);
    }

    #[test]
    fn reads_a_real_ipv6_table() {
        let (found, tw) = read(TCP6, &HashMap::new());
        let states: Vec<_> = found.iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [
                TcpState::Listen,
                TcpState::Listen,
                TcpState::Established,
                TcpState::CloseWait
            ]
        );
        assert_eq!(found[0].local, "[::1]:8443".parse().unwrap());
        assert_eq!(
            found[2].local,
            "[::ffff:127.0.0.1]:8081".parse().unwrap(),
            "v4-mapped"
        );
        assert!(found.iter().all(|e| e.owner.is_none()));
        // An orphan whose peer has not sent its FIN: a timewait socket in
        // substate FIN_WAIT2.
        assert_eq!(tw.len(), 1);
        assert_eq!(tw[0].substate, TcpState::FinWait2);
        assert_eq!(tw[0].remote, "[::1]:8443".parse().unwrap());
    }

    /// Found by the fuzzer: a timer value too large to turn into
    /// milliseconds overflowed.
    #[test]
    fn a_huge_timer_saturates() {
        let table = "  sl  local_address rem_address   st\n   \
            2: 0100007F:E696 0100007F:1F90 06 00000000:00000000 03:FFFFFFFFFFFFFFFF 00000000     0        0 0 3 0000000000000000";
        let (_, tw) = read(table, &HashMap::new());
        assert_eq!(tw.len(), 1);
        assert_eq!(tw[0].remaining_ms, u64::MAX / USER_HZ);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
