//! What the kernel reports, decoded: state changes, resets and the records
//! of timewait sockets (decoding is `kernel::decode`'s). What the trackers
//! conclude from them — the owner, the time in state — is another type,
//! [`Transition`], made by the connection tracker from a [`StateChange`].

use std::net::{IpAddr, SocketAddr};

use crate::model::{RecordKind, ResetReason, Task, TcpState, TimeInState};

/// Why a ring buffer record could not be decoded (`kernel::decode`).
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
    /// The socket's local and remote port (0: not given).
    pub ports: (u16, u16),
    /// A reset sent: the kernel's reason, where it gives one.
    pub reason: Option<ResetReason>,
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

/// A bind() that failed because the address was in use (`EADDRINUSE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindFailure {
    pub ts_ns: u64,
    /// The calling task's network namespace (0: unknown).
    pub netns: u32,
    /// The address asked for.
    pub local: SocketAddr,
    /// The task that called bind().
    pub task: Option<Task>,
}

/// One decoded record of the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Change(StateChange),
    Reset(Reset),
    Timewait(TwEvent),
    BindFailed(BindFailure),
    /// A connecting socket's SYN retransmitted: (when, the socket).
    SynRetransmit {
        ts_ns: u64,
        sock: u64,
    },
}

/// What the kernel side counts itself rather than sending records (see
/// `tcptrace_common::CounterKey`), one key of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counted {
    /// RSTs sent for no socket, by local port (namespace unknown).
    NoSocketReset { port: u16 },
    /// SYN-ACKs a listener retransmitted.
    SynAckRetransmit { netns: u32, port: u16 },
    /// Segments retransmitted by a socket from `local` to `remote`.
    Retransmit {
        netns: u32,
        local: IpAddr,
        remote: SocketAddr,
    },
}

/// What the kernel side had counted at one reading: each key (or why it
/// could not be decoded) with its total since it entered the map.
pub type Reading = Vec<(Result<Counted, DecodeError>, u64)>;

impl Counted {
    /// The kind of record each count stands for (a reset for no socket
    /// was sent as one before it was counted in the kernel).
    pub const fn kind(&self) -> RecordKind {
        match self {
            Self::NoSocketReset { .. } => RecordKind::ResetSent,
            Self::SynAckRetransmit { .. } => RecordKind::SynAckRetransmit,
            Self::Retransmit { .. } => RecordKind::Retransmit,
        }
    }
}

/// Segments retransmitted toward a remote since the last reading: data (or
/// FIN) the peer did not acknowledge in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmits {
    /// When they were read.
    pub ts_ns: u64,
    pub netns: u32,
    /// The local address (port 0: the sockets are not told apart).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub count: u64,
}

impl Event {
    /// The kind of record it came in.
    pub const fn kind(&self) -> RecordKind {
        match self {
            Self::Change(_) => RecordKind::Transition,
            Self::Reset(r) => match r.direction {
                ResetDirection::Sent => RecordKind::ResetSent,
                ResetDirection::Received => RecordKind::ResetReceived,
            },
            Self::Timewait(e) => match e.action {
                TwAction::Armed { .. } => RecordKind::TimewaitArmed,
                TwAction::Cancelled { .. } => RecordKind::TimewaitCancelled,
                TwAction::Expired => RecordKind::TimewaitExpired,
                TwAction::Request => RecordKind::TimewaitRequest,
            },
            Self::BindFailed(_) => RecordKind::BindFailed,
            Self::SynRetransmit { .. } => RecordKind::SynRetransmit,
        }
    }
}

/// One TCP state change, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
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
    /// The task in whose syscall the change ran; `None` for changes made in
    /// softirq context (packets, timers), where the current task is unrelated.
    pub task: Option<Task>,
}

/// A TCP state transition as tcptrace concludes it: the kernel's change,
/// with the socket's owner and the time it spent in the old state.
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
    /// The socket's owner as the connection tracker knows it: what the
    /// output shows.
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
    /// Ended early, and records that would tell why were lost (ring
    /// buffer full).
    Unknown,
}

impl TwEnd {
    pub const ALL: [TwEnd; 6] = [
        Self::Expired,
        Self::Reused,
        Self::Reopened,
        Self::Killed,
        Self::Purged,
        Self::Unknown,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Reused => "reused",
            Self::Reopened => "reopened",
            Self::Killed => "killed",
            Self::Purged => "purged",
            Self::Unknown => "unknown",
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

impl StateChange {
    /// Whether it opens a new socket (see [`Transition::opens`]).
    pub const fn opens_socket(&self) -> bool {
        Transition::opens(self.old, self.new)
    }

    /// The time in the old state where it cannot be measured: none for a
    /// new socket, else unknown.
    pub const fn unmeasured_in_old(&self) -> TimeInState {
        match self.opens_socket() {
            true => TimeInState::NewSocket,
            false => TimeInState::Unknown,
        }
    }

    /// The transition it is, with what the trackers concluded: `in_old`, the
    /// time in the old state, and `owner`.
    pub const fn concluded(&self, in_old: TimeInState, owner: Option<Task>) -> Transition {
        Transition {
            ts_ns: self.ts_ns,
            sock: self.sock,
            netns: self.netns,
            local: self.local,
            remote: self.remote,
            old: self.old,
            new: self.new,
            in_old,
            task: self.task,
            owner,
            timewait: None,
        }
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::Script;

    #[test]
    fn time_in_state_before_tracking() {
        let in_old = |old, new| {
            Script { ts: 0 }
                .t(1, "10.0.0.1:1", "10.0.0.2:2", old, new, None)
                .unmeasured_in_old()
        };
        assert_eq!(
            in_old(TcpState::Close, TcpState::SynSent),
            TimeInState::NewSocket
        );
        assert_eq!(
            in_old(TcpState::Listen, TcpState::SynRecv),
            TimeInState::NewSocket
        );
        assert_eq!(
            in_old(TcpState::SynSent, TcpState::Established),
            TimeInState::Unknown
        );
        assert_eq!(TimeInState::Unknown.ns(), None);
    }
}
