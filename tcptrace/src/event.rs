//! Decoding of `TransitionEvent` records from the ring buffer into checked,
//! typed values. Nothing here trusts the bytes: unknown states or families are
//! errors, not transmutes.

use std::{
    borrow::Cow,
    fmt,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tcptrace_common::{
    AF_INET, AF_INET6, FLAG_NET_DYING, FLAG_PROCESS_CTX, KIND_RESET_RECEIVED, KIND_RESET_SENT,
    KIND_TRANSITION, KIND_TW_ARMED, KIND_TW_CANCEL, KIND_TW_EXPIRED, KIND_TW_REQUEST,
    TransitionEvent, tcp_state,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("short record: {0} bytes, expected {1}")]
    Short(usize, usize),
    #[error("unknown tcp state {0}")]
    State(u8),
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("unknown record kind {0}")]
    Kind(u8),
}

/// A TCP state, as numbered in `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
        Self::NewSynRecv,
    ];

    /// The kernel's name without its `TCP_` prefix, as `ss` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

impl TryFrom<u8> for TcpState {
    type Error = DecodeError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Ok(match value {
            tcp_state::ESTABLISHED => Self::Established,
            tcp_state::SYN_SENT => Self::SynSent,
            tcp_state::SYN_RECV => Self::SynRecv,
            tcp_state::FIN_WAIT1 => Self::FinWait1,
            tcp_state::FIN_WAIT2 => Self::FinWait2,
            tcp_state::TIME_WAIT => Self::TimeWait,
            tcp_state::CLOSE => Self::Close,
            tcp_state::CLOSE_WAIT => Self::CloseWait,
            tcp_state::LAST_ACK => Self::LastAck,
            tcp_state::LISTEN => Self::Listen,
            tcp_state::CLOSING => Self::Closing,
            tcp_state::NEW_SYN_RECV => Self::NewSynRecv,
            other => return Err(DecodeError::State(other)),
        })
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How long the socket spent in the state it just left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeInState {
    /// Measured exactly, in nanoseconds.
    Measured(u64),
    /// The old state is the initial state of a new socket: nothing to measure.
    NewSocket,
    /// The socket's entry into the old state was not seen (it predates the
    /// tracer, or an event was lost): unknown, not zero.
    Unknown,
}

impl TimeInState {
    pub const fn ns(self) -> Option<u64> {
        match self {
            Self::Measured(ns) => Some(ns),
            Self::NewSocket | Self::Unknown => None,
        }
    }

    /// Stable name used in JSON (`dur`).
    pub const fn kind(self) -> &'static str {
        match self {
            Self::Measured(_) => "measured",
            Self::NewSocket => "new",
            Self::Unknown => "unknown",
        }
    }
}

/// A task's `comm`, as the kernel stores it (NUL-padded, at most 15 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm([u8; 16]);

impl Comm {
    pub fn new(raw: [u8; 16]) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> Cow<'_, str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..len])
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_str(), f)
    }
}

/// The task a transition ran in, when it ran in process context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

/// Which side sent a RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetDirection {
    Sent,
    Received,
}

/// A RST sent or received on a socket tcptrace follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    pub ts_ns: u64,
    pub sock: u64,
    pub netns: u32,
    pub direction: ResetDirection,
    /// The task in whose system call the RST was sent or processed, if any.
    pub task: Option<Task>,
}

/// What happened to a timewait socket (see `tcptrace_common::KIND_TW_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwAction {
    /// Its timer was armed for this many jiffies: a new timewait socket or a
    /// re-arm.
    Armed { jiffies: u64 },
    /// Its timer was taken off the wheel, in `task`'s system call if any;
    /// `net_dying`: its network namespace was being dismantled.
    Cancelled { task: Option<Task>, net_dying: bool },
    /// Its timer ran out.
    Expired,
    /// A request socket (a SYN taken over by a listener) appeared right after
    /// a timewait socket ended in a softirq; `sock` is the request.
    Request,
}

/// A record about a timewait socket (or, for `Request`, a request socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwEvent {
    pub ts_ns: u64,
    pub sock: u64,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `TIME_WAIT`, or `FIN_WAIT2` for an orphan waiting for the peer's FIN.
    pub substate: TcpState,
    pub action: TwAction,
}

/// One decoded record of the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Transition(Transition),
    Reset(Reset),
    Timewait(TwEvent),
}

impl Event {
    /// Decodes one ring buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_raw(&Self::raw(bytes)?)
    }

    /// Copies a ring buffer record out as the wire struct, undecoded.
    pub fn raw(bytes: &[u8]) -> Result<TransitionEvent, DecodeError> {
        if bytes.len() < size_of::<TransitionEvent>() {
            return Err(DecodeError::Short(
                bytes.len(),
                size_of::<TransitionEvent>(),
            ));
        }
        // SAFETY: length checked; TransitionEvent is plain integers (any bit
        // pattern is valid) and read_unaligned makes no alignment assumption.
        Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TransitionEvent>()) })
    }

    pub fn from_raw(raw: &TransitionEvent) -> Result<Self, DecodeError> {
        let action = match raw.kind {
            KIND_TW_ARMED => Some(TwAction::Armed {
                jiffies: raw.dur_ns,
            }),
            KIND_TW_CANCEL => Some(TwAction::Cancelled {
                task: task(raw),
                net_dying: raw.flags & FLAG_NET_DYING != 0,
            }),
            KIND_TW_EXPIRED => Some(TwAction::Expired),
            KIND_TW_REQUEST => Some(TwAction::Request),
            _ => None,
        };
        if let Some(action) = action {
            let (local, remote) = endpoints(raw)?;
            return Ok(Self::Timewait(TwEvent {
                ts_ns: raw.ts_ns,
                sock: raw.skaddr,
                netns: raw.netns,
                local,
                remote,
                substate: match action {
                    // A request socket has no substate.
                    TwAction::Request => TcpState::SynRecv,
                    _ => TcpState::try_from(raw.oldstate)?,
                },
                action,
            }));
        }
        let direction = match raw.kind {
            KIND_TRANSITION => return Transition::from_raw(raw).map(Self::Transition),
            KIND_RESET_SENT => ResetDirection::Sent,
            KIND_RESET_RECEIVED => ResetDirection::Received,
            other => return Err(DecodeError::Kind(other)),
        };
        Ok(Self::Reset(Reset {
            ts_ns: raw.ts_ns,
            sock: raw.skaddr,
            netns: raw.netns,
            direction,
            task: task(raw),
        }))
    }
}

fn task(raw: &TransitionEvent) -> Option<Task> {
    (raw.flags & FLAG_PROCESS_CTX != 0).then(|| Task {
        pid: raw.pid,
        tid: raw.tid,
        comm: Comm::new(raw.comm),
    })
}

/// One decoded TCP state transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Kernel address of the socket: identifies it across its transitions.
    pub sock: u64,
    /// Network namespace inode (0: unknown).
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old: TcpState,
    pub new: TcpState,
    pub in_old: TimeInState,
    /// The task in whose syscall the transition ran; `None` for transitions made
    /// in softirq context (packets, timers), where the current task is unrelated.
    pub task: Option<Task>,
    /// The socket's owner as the connection tracker knows it (filled in by
    /// `conn::Tracker`; initially `task`): what the output shows.
    pub owner: Option<Task>,
    /// Set on the transitions of a connection's timewait socket.
    pub timewait: Option<TwNote>,
}

/// Why a timewait socket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TwEnd {
    /// Its timer ran out.
    Expired,
    /// A connect() took its 4-tuple over (`tcp_tw_reuse`).
    Reused,
    /// A new SYN for its 4-tuple was accepted by a listener.
    Reopened,
    /// Ended early by the kernel: a RST, a segment an orphan could not take,
    /// `ss -K`...
    Killed,
    /// Its network namespace went away.
    Purged,
}

impl TwEnd {
    pub const ALL: [TwEnd; 5] = [
        Self::Expired,
        Self::Reused,
        Self::Reopened,
        Self::Killed,
        Self::Purged,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Reused => "reused",
            Self::Reopened => "reopened",
            Self::Killed => "killed",
            Self::Purged => "purged",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What a transition of a timewait socket adds to the states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwNote {
    /// The connection moved to a timewait socket (the kernel's CLOSE of the
    /// full socket, shown as the connection sees it); its timer runs this
    /// long (`None` if the kernel's HZ is unknown).
    Begins { timer_ns: Option<u64> },
    /// An orphan's timewait socket received the peer's FIN: FIN_WAIT2 ->
    /// TIME_WAIT, with a new timer.
    Changes { timer_ns: Option<u64> },
    /// The timewait socket ended; its timer had been re-armed `rearms` times.
    /// `by`: the task whose system call ended it, if any. `fin_unseen`: it
    /// was an orphan in FIN_WAIT2 and got the peer's FIN at a moment the
    /// kernel did not show (a re-arm within one timer-wheel bucket fires no
    /// timer tracepoint); its time is counted from when it was last seen.
    Ends {
        reason: TwEnd,
        rearms: u32,
        by: Option<Task>,
        fin_unseen: bool,
    },
}

/// The endpoints of a record, decoded by its family.
fn endpoints(raw: &TransitionEvent) -> Result<(SocketAddr, SocketAddr), DecodeError> {
    let (local_ip, remote_ip) = match raw.family {
        AF_INET => (ipv4(&raw.saddr), ipv4(&raw.daddr)),
        AF_INET6 => (
            IpAddr::V6(Ipv6Addr::from(raw.saddr)),
            IpAddr::V6(Ipv6Addr::from(raw.daddr)),
        ),
        other => return Err(DecodeError::Family(other)),
    };
    Ok((
        SocketAddr::new(local_ip, raw.sport),
        SocketAddr::new(remote_ip, raw.dport),
    ))
}

impl Transition {
    /// Whether this is a new socket's first transition: connect() or listen()
    /// from the initial CLOSE, or a child socket created by a listener.
    pub const fn opens(old: TcpState, new: TcpState) -> bool {
        matches!(
            (old, new),
            (TcpState::Close, _) | (TcpState::Listen, TcpState::SynRecv)
        )
    }

    pub fn from_raw(raw: &TransitionEvent) -> Result<Self, DecodeError> {
        let (local, remote) = endpoints(raw)?;
        let (old, new) = (
            TcpState::try_from(raw.oldstate)?,
            TcpState::try_from(raw.newstate)?,
        );
        // The connection tracker measures the rest.
        let in_old = match Self::opens(old, new) {
            true => TimeInState::NewSocket,
            false => TimeInState::Unknown,
        };
        let task = task(raw);
        Ok(Self {
            ts_ns: raw.ts_ns,
            sock: raw.skaddr,
            netns: raw.netns,
            local,
            remote,
            old,
            new,
            in_old,
            task,
            owner: task,
            timewait: None,
        })
    }
}

fn ipv4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A raw IPv4 record as the eBPF program would write it.
    pub(crate) fn raw_v4(old: u8, new: u8) -> TransitionEvent {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 1, 2, 3]);
        TransitionEvent {
            ts_ns: 5_000_000_000,
            skaddr: 0xffff_8880_1234_5678,
            dur_ns: 1_234_567,
            saddr,
            daddr,
            pid: 4242,
            tid: 4243,
            comm,
            sport: 41000,
            dport: 80,
            family: AF_INET,
            oldstate: old,
            newstate: new,
            flags: FLAG_PROCESS_CTX,
            kind: KIND_TRANSITION,
            _pad: 0,
            netns: 4026531840,
        }
    }

    fn bytes_of(raw: &TransitionEvent) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data value.
        unsafe {
            std::slice::from_raw_parts(
                (raw as *const TransitionEvent).cast::<u8>(),
                size_of::<TransitionEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_ipv4_record() {
        let raw = raw_v4(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        let Event::Transition(t) = Event::decode(&bytes_of(&raw)).unwrap() else {
            panic!("not a transition")
        };
        assert_eq!(t.netns, 4026531840);
        assert_eq!(t.local, "127.0.0.1:41000".parse().unwrap());
        assert_eq!(t.remote, "10.1.2.3:80".parse().unwrap());
        assert_eq!((t.old, t.new), (TcpState::SynSent, TcpState::Established));
        // Measured by the connection tracker, not the kernel.
        assert_eq!(t.in_old, TimeInState::Unknown);
        let task = t.task.unwrap();
        assert_eq!(
            (task.pid, task.tid, &*task.comm.as_str()),
            (4242, 4243, "curl")
        );
        assert_eq!(t.sock, 0xffff_8880_1234_5678);
    }

    #[test]
    fn decodes_ipv6_and_v4_mapped() {
        let mut raw = raw_v4(tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1);
        raw.family = AF_INET6;
        raw.saddr = "::1".parse::<Ipv6Addr>().unwrap().octets();
        raw.daddr = "::ffff:192.0.2.7".parse::<Ipv6Addr>().unwrap().octets();
        let t = Transition::from_raw(&raw).unwrap();
        assert_eq!(t.local.to_string(), "[::1]:41000");
        assert_eq!(t.remote.to_string(), "[::ffff:192.0.2.7]:80");
    }

    #[test]
    fn softirq_transitions_have_no_task() {
        let mut raw = raw_v4(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        raw.flags = 0;
        assert_eq!(Transition::from_raw(&raw).unwrap().task, None);
    }

    #[test]
    fn time_in_state_before_tracking() {
        let in_old = |old, new| Transition::from_raw(&raw_v4(old, new)).unwrap().in_old;
        assert_eq!(
            in_old(tcp_state::CLOSE, tcp_state::SYN_SENT),
            TimeInState::NewSocket
        );
        assert_eq!(
            in_old(tcp_state::LISTEN, tcp_state::SYN_RECV),
            TimeInState::NewSocket
        );
        assert_eq!(
            in_old(tcp_state::SYN_SENT, tcp_state::ESTABLISHED),
            TimeInState::Unknown
        );
        assert_eq!(TimeInState::Unknown.ns(), None);
    }

    #[test]
    fn rejects_bad_records() {
        let raw = raw_v4(0, tcp_state::CLOSE);
        assert_eq!(Transition::from_raw(&raw), Err(DecodeError::State(0)));
        let raw = raw_v4(tcp_state::CLOSE, 13);
        assert_eq!(Transition::from_raw(&raw), Err(DecodeError::State(13)));
        let mut raw = raw_v4(tcp_state::CLOSE, tcp_state::LISTEN);
        raw.family = 1;
        assert_eq!(Transition::from_raw(&raw), Err(DecodeError::Family(1)));
        assert_eq!(Event::decode(&[0u8; 10]), Err(DecodeError::Short(10, 96)));
    }

    #[test]
    fn decodes_resets() {
        let mut raw = raw_v4(tcp_state::ESTABLISHED, 0);
        raw.kind = KIND_RESET_RECEIVED;
        raw.flags = 0;
        let Event::Reset(r) = Event::from_raw(&raw).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(
            (r.direction, r.task, r.sock),
            (ResetDirection::Received, None, raw.skaddr)
        );
        raw.kind = KIND_RESET_SENT;
        raw.flags = FLAG_PROCESS_CTX;
        let Event::Reset(r) = Event::from_raw(&raw).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(r.direction, ResetDirection::Sent);
        assert_eq!(r.task.unwrap().pid, 4242);
    }

    #[test]
    fn every_state_round_trips() {
        for (i, state) in TcpState::ALL.iter().enumerate() {
            assert_eq!(TcpState::try_from(i as u8 + 1).unwrap(), *state);
        }
    }

    #[test]
    fn comm_stops_at_nul_and_survives_bad_utf8() {
        let mut raw = [0u8; 16];
        raw[..3].copy_from_slice(b"nginx"[..3].as_ref());
        assert_eq!(Comm::new(raw).as_str(), "ngi");
        let full = [b'a'; 16];
        assert_eq!(Comm::new(full).as_str().len(), 16);
        let mut bad = [0u8; 16];
        bad[0] = 0xff;
        assert_eq!(Comm::new(bad).as_str(), "\u{fffd}");
    }
}
