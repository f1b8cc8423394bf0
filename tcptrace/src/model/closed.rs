//! What tcptrace concludes about a connection that ended: who closed it
//! first (the verdict), its role, and the time it spent in each state.

use std::net::SocketAddr;

use crate::model::{ResetReason, Task, TcpState, TwEnd, state::positions};

/// Time spent in each state, without allocating: a slot per state, listed in
/// the order a connection passes through them (its states never repeat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTimes {
    ns: [u64; TcpState::COUNT],
    visited: u16,
}

/// The order states are listed in.
const STATE_ORDER: [TcpState; TcpState::COUNT] = [
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::Established,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::Closing,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::TimeWait,
    TcpState::NewSynRecv,
    TcpState::Listen,
    TcpState::Close,
];

/// Each state's slot in `STATE_ORDER`, by `TcpState::index`.
const SLOT: [Option<usize>; TcpState::COUNT] = positions(STATE_ORDER);

impl StateTimes {
    fn slot(state: TcpState) -> usize {
        // Every state is in STATE_ORDER.
        SLOT[state.index()].unwrap_or(0)
    }

    pub fn add(&mut self, state: TcpState, ns: u64) {
        let i = Self::slot(state);
        self.ns[i] += ns;
        self.visited |= 1 << i;
    }

    /// (state, total ns) for each state seen, in passing order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        STATE_ORDER
            .iter()
            .enumerate()
            .filter(|(i, _)| self.visited & (1 << i) != 0)
            .map(|(i, s)| (*s, self.ns[i]))
    }
}

/// Who closed a connection first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// This host sent the first FIN (ESTABLISHED -> FIN_WAIT1): this side
    /// holds TIME_WAIT.
    Local,
    /// The peer sent the first FIN (ESTABLISHED -> CLOSE_WAIT).
    Peer,
    /// Both FINs crossed (FIN_WAIT1 -> CLOSING).
    Simultaneous,
    /// This host reset the connection (SO_LINGER 0, close with unread data...).
    AbortSent,
    /// The peer reset the connection.
    AbortReceived,
    /// The connect was answered with a RST.
    Refused,
    /// The connect failed without a RST (timeout, ICMP error, cancelled).
    ConnectFailed,
    /// The kernel gave up on an established connection without FIN or RST
    /// (retransmission or keepalive timeout, ICMP error).
    Timeout,
    /// connect() found no free local port toward the destination
    /// (EADDRNOTAVAIL): the ephemeral range is exhausted for that 4-tuple's
    /// address and remote end. Seen as SYN_SENT -> CLOSE in the caller's
    /// system call before a local port was ever assigned.
    NoPort,
    /// Not known: the records that would tell were lost (ring buffer full),
    /// or the connection's end was never seen.
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 10] = [
        Self::Local,
        Self::Peer,
        Self::Simultaneous,
        Self::AbortSent,
        Self::AbortReceived,
        Self::Refused,
        Self::ConnectFailed,
        Self::Timeout,
        Self::NoPort,
        Self::Unknown,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
            Self::Simultaneous => "simultaneous",
            Self::AbortSent => "abort-sent",
            Self::AbortReceived => "abort-received",
            Self::Refused => "refused",
            Self::ConnectFailed => "connect-failed",
            Self::Timeout => "timeout",
            Self::NoPort => "no-port",
            Self::Unknown => "unknown",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// A connect that never got through: it closed nothing and held its
    /// port (if it had one) only while it tried.
    pub const fn never_connected(self) -> bool {
        matches!(self, Self::Refused | Self::ConnectFailed | Self::NoPort)
    }
}

/// How the connection started, from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This host connected.
    Active,
    /// This host accepted.
    Passive,
    /// First seen mid-life (it predates tcptrace, or events were lost).
    Unknown,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Active, Self::Passive, Self::Unknown];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::Unknown => "unknown",
        }
    }
}

/// A connection that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// When it reached CLOSE (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub sock: u64,
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub role: Role,
    pub owner: Option<Task>,
    pub verdict: Verdict,
    /// From the socket's first transition to CLOSE; `None` if first seen mid-life.
    pub lifetime_ns: Option<u64>,
    /// Measured time in each state it passed through, in order.
    pub in_state: StateTimes,
    /// Some of its records were lost (ring buffer full): `in_state` lacks
    /// the states whose start or end went missing, and the verdict is
    /// `Unknown` where the lost records would have told.
    pub missed: bool,
    /// The kernel's reason for the RST this host sent on it, if it sent one
    /// and the kernel gives reasons.
    pub reset_reason: Option<ResetReason>,
    /// Its SYN's retransmits, if this host connected: each a second or more
    /// the connect stalled.
    pub syn_retransmits: u32,
    /// How its timewait socket ended, if it had one (the record then comes
    /// at that end, and `ts_ns`, `lifetime_ns` and `in_state` include it).
    pub timewait: Option<ClosedTw>,
}

/// The end of a connection's timewait socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedTw {
    /// `None`: still in TIME_WAIT when tcptrace stopped.
    pub reason: Option<TwEnd>,
    /// Times its timer was re-armed (a retransmitted FIN extends TIME_WAIT).
    pub rearms: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_times_in_passing_order() {
        let mut times = StateTimes::default();
        times.add(TcpState::TimeWait, 3);
        times.add(TcpState::SynSent, 1);
        times.add(TcpState::Established, 2);
        times.add(TcpState::Established, 2);
        assert_eq!(
            times.iter().collect::<Vec<_>>(),
            [
                (TcpState::SynSent, 1),
                (TcpState::Established, 4),
                (TcpState::TimeWait, 3)
            ]
        );
    }
}
