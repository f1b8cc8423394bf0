//! Sockets as the summaries and the start-up snapshot see them: not events,
//! but what exists at a moment.

use std::net::SocketAddr;

use crate::model::{Role, Task, TcpState};

/// The connections the kernel lists in a namespace: (local, remote) each.
pub type Listed = rustc_hash::FxHashSet<(SocketAddr, SocketAddr)>;

/// A connection still open, for the summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open<'a> {
    pub state: TcpState,
    /// When it entered `state`, if seen.
    pub since_ns: Option<u64>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: u32,
    pub owner: Option<&'a Task>,
    pub role: Role,
}

/// A timewait socket that exists now, for the summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwSocket<'a> {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub substate: TcpState,
    pub owner: Option<&'a Task>,
    /// Its connection's role; `None` when it predates tcptrace (or its
    /// connection was not followed).
    pub role: Option<Role>,
}

/// A full socket found at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Existing {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub owner: Option<Task>,
}

/// Live timewait sockets in one network namespace, by substate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwCount {
    pub time_wait: u64,
    /// Orphans waiting for the peer's FIN (substate FIN_WAIT2).
    pub fin_wait2: u64,
}

/// A timewait socket found at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwSeed {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub substate: TcpState,
    /// Time left on its timer (10 ms resolution).
    pub remaining_ms: u64,
}
