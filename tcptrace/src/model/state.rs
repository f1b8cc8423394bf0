//! TCP states as the kernel numbers them, and what is known of the time a
//! socket spent in one.

use std::fmt;

use tcptrace_common::tcp_state;

/// A TCP state, as numbered in `include/net/tcp_states.h` (less one: the
/// variants index arrays in that order, see [`TcpState::index`]).
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
    pub const COUNT: usize = 12;

    pub const ALL: [TcpState; Self::COUNT] = [
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

    /// Position in [`TcpState::ALL`]: what tables indexed by state use, so
    /// that the per-event path never searches a list.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The state the kernel numbers `value`, if it is one.
    pub const fn from_kernel(value: u8) -> Option<Self> {
        Some(match value {
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
            _ => return None,
        })
    }

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

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// For each state (by [`TcpState::index`]), its position in `order`; states
/// not in `order` get `None`. Evaluated at compile time for the tables that
/// list states in an order of their own.
pub(crate) const fn positions<const N: usize>(
    order: [TcpState; N],
) -> [Option<usize>; TcpState::COUNT] {
    let mut out = [None; TcpState::COUNT];
    let mut i = 0;
    while i < N {
        out[order[i].index()] = Some(i);
        i += 1;
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips() {
        for (i, state) in TcpState::ALL.iter().enumerate() {
            assert_eq!(TcpState::from_kernel(i as u8 + 1), Some(*state));
            assert_eq!(state.index(), i);
        }
        assert_eq!(TcpState::from_kernel(0), None);
        assert_eq!(TcpState::from_kernel(13), None);
    }

    #[test]
    fn positions_in_an_order() {
        let at = positions([TcpState::SynSent, TcpState::Established]);
        assert_eq!(at[TcpState::SynSent.index()], Some(0));
        assert_eq!(at[TcpState::Established.index()], Some(1));
        assert_eq!(at[TcpState::Listen.index()], None);
    }

    #[test]
    fn unknown_time_has_no_value() {
        assert_eq!(TimeInState::Unknown.ns(), None);
        assert_eq!(TimeInState::Measured(5).ns(), Some(5));
    }
}
