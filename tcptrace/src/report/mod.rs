//! One report: everything the aggregates know at one instant — findings,
//! states, verdicts, TIME_WAIT, ports, listeners, namespaces, losses — as
//! one owned value, built by [`build`] from the trackers and the aggregates
//! (one pass over the timewait sockets, one over the open connections per
//! table). Every
//! view renders it (the text and JSON summaries, the metrics, `diagnose`'s
//! progress, the exit line) and none computes a figure of its own, so two
//! views cannot give two answers for the same socket.

mod build;
mod counts;

use std::time::Duration;

pub use build::{Sources, Want, build, destinations, totals};
pub use counts::{Counts, STATE_BOUNDS_NS, StateRow, TIMEWAIT_BOUNDS_S};

use crate::{
    aggregate::{
        distribution::Distribution,
        netns::NetnsReport,
        open::{OpenState, SocketsRow},
        ports::DestReport,
        stats::{BindRow, Buckets, Stats},
    },
    findings::{Finding, Listener},
    model::{NetnsName, PerKind, ResetNames, ResetReason, TwCount, TwEnd},
};

/// Everything the aggregates know at one instant.
#[derive(Clone, Debug)]
pub struct Report {
    /// The instant it describes (monotonic ns, the readers' clock).
    pub at_ns: u64,
    /// The exit line's numbers: transitions, losses of every kind, time.
    pub totals: Totals,
    /// Records received, by kind.
    pub received: PerKind,
    /// When tracing started, in seconds since the epoch.
    pub start_time_s: f64,
    /// What is wrong, worst first.
    pub findings: Vec<Finding>,
    /// Transitions, verdicts and times in state.
    pub counts: Counts,
    /// Open connections by state, over every namespace shown.
    pub open: Vec<OpenState>,
    /// Open connections by namespace and state.
    pub sockets: Vec<SocketsRow>,
    /// `None` when TIME_WAIT is not traced.
    pub timewait: Option<TimewaitReport>,
    /// Destinations this host connects to, most used first; beyond the
    /// rows asked for, pooled as "other".
    pub ports: Vec<DestReport>,
    /// Destinations the table follows (each its own row before the cap).
    pub destinations_tracked: usize,
    /// Connections counted as "other" because the destination table was full.
    pub folded_connections: u64,
    /// Segments retransmitted toward remotes that are not destinations of
    /// this host's connects (a server's clients, connections older than
    /// the trace); those toward destinations are in `ports`.
    pub retransmits_elsewhere: u64,
    /// Failed binds (EADDRINUSE), most first.
    pub binds: Vec<BindRow>,
    /// The namespaces shown, with their names, sysctls and counters.
    pub namespaces: Vec<NetnsReport>,
    /// The listeners of the namespaces shown, with their accept queues.
    pub listeners: Vec<Listener>,
    /// The resets this host sent, by the kernel's reason.
    pub resets: Resets,
    /// SYN-ACKs retransmitted, by listener ((namespace, port), count), most
    /// first; (0, 0): the listeners beyond those counted one by one.
    pub synack_retransmits: Vec<((u32, u16), u64)>,
}

/// The resets this host sent: on the connections that closed, by the
/// kernel's reason; and for no socket, by local port.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resets {
    /// The kernel's names of the reasons (empty: reasons are off).
    pub names: ResetNames,
    /// (reason, resets), most first.
    pub sent: Vec<(ResetReason, u64)>,
    /// (local port, resets) sent for no socket, most first; port 0: the
    /// ports beyond those counted one by one.
    pub no_socket: Vec<(u16, u64)>,
}

impl Report {
    /// What a namespace is called ("proxy", a container, a process), if
    /// it has a name.
    pub fn netns_name(&self, netns: u32) -> Option<String> {
        self.namespaces
            .iter()
            .find(|n| n.netns == netns)
            .and_then(|n| n.name.as_ref().and_then(NetnsName::label))
    }
}

/// What the exit line reports: what was seen, what was lost and why, what
/// could not be followed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Transition records (`inet_sock_set_state`).
    pub transitions: u64,
    /// Transitions of timewait sockets, concluded from the kernel's timers
    /// (those found at start-up included): the live log prints them too.
    pub timewait_transitions: u64,
    /// Records dropped because a ring buffer was full, by kind.
    pub lost: PerKind,
    pub recursion_misses: u64,
    pub undecodable: u64,
    /// Connections tcptrace could not follow (--max-sockets reached).
    pub untracked_conns: u64,
    /// Timewait sockets it could not follow (twice --max-sockets reached).
    pub untracked_timewaits: u64,
    pub elapsed: Duration,
}

/// TIME_WAIT: how long it lasted and how it ended since start, and the
/// timewait sockets now, per network namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct TimewaitReport {
    /// Live timewait sockets, by namespace.
    pub live: Vec<(u32, TwCount)>,
    /// Connections closed without a timewait socket since start
    /// (`TcpExtTCPTimeWaitOverflow`), where there were any.
    pub overflows: Vec<(u32, u64)>,
    /// The length of the TIME_WAIT timer last armed.
    pub timer_ns: Option<u64>,
    /// How long TIME_WAIT lasted when its timer ran out.
    pub expired: Distribution,
    /// Timewait sockets ended, by [`TwEnd`] (in `TwEnd::ALL`'s order).
    pub ends: [u64; TwEnd::ALL.len()],
    /// Re-arms of the timers of those that ended.
    pub rearms: u64,
    /// How long TIME_WAIT lasted, by how it ended (in `TwEnd::ALL`'s
    /// order), at [`TIMEWAIT_BOUNDS_S`].
    pub lasted: Vec<Buckets>,
}

impl TimewaitReport {
    /// From the counts kept since start and the sockets now.
    pub fn of(stats: &Stats, live: Vec<(u32, TwCount)>, overflows: Vec<(u32, u64)>) -> Self {
        let bounds_ns: Vec<u64> = TIMEWAIT_BOUNDS_S
            .iter()
            .map(|&b| (b * 1e9) as u64)
            .collect();
        Self {
            live,
            overflows,
            timer_ns: stats.tw_timer_ns,
            expired: stats.tw_expired(),
            ends: stats.tw_ends,
            rearms: stats.tw_rearms,
            lasted: TwEnd::ALL
                .iter()
                .map(|&reason| stats.tw_lasted(reason, &bounds_ns))
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
