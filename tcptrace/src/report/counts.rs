//! The counts kept since start, as a report shows them: transitions,
//! verdicts by role, process, service, destination and listening port, and the
//! distribution of the time spent in each state.

use std::net::SocketAddr;

use crate::{
    aggregate::{
        distribution::Distribution,
        stats::{
            Buckets, HISTOGRAM_STATES, ProcessKey, ServiceCounts, ServiceKey, Stats, VerdictCounts,
            service_rows, sorted_rows,
        },
    },
    model::{Role, TcpState},
};

/// The bounds of the time-in-state buckets: 1 µs to 2^31 µs (36 minutes),
/// doubling, as the summaries' log2 rows.
pub const STATE_BOUNDS_NS: [u64; 32] = {
    let mut bounds = [0; 32];
    let mut k = 0;
    while k < 32 {
        bounds[k] = 1_000 << k;
        k += 1;
    }
    bounds
};

/// Bounds of the TIME_WAIT buckets: fine around Linux's fixed 60 s timer
/// (`TCP_TIMEWAIT_LEN`) and its timer-wheel slack, coarse elsewhere (reused
/// and killed ones end early).
pub const TIMEWAIT_BOUNDS_S: [f64; 22] = [
    0.001, 0.01, 0.1, 1.0, 5.0, 10.0, 20.0, 30.0, 45.0, 55.0, 59.0, 60.0, 60.25, 60.5, 61.0, 62.0,
    64.0, 68.0, 75.0, 90.0, 120.0, 300.0,
];

/// Time spent in one state before leaving it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateRow {
    pub state: TcpState,
    /// What the time in it means ("connect latency").
    pub about: &'static str,
    pub distribution: Distribution,
    /// The same, at [`STATE_BOUNDS_NS`].
    pub buckets: Buckets,
}

/// Everything counted since start.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// Transitions, by old and new state.
    pub transitions: [[u64; TcpState::COUNT]; TcpState::COUNT],
    /// Connections closed, by role and verdict.
    pub by_role: [VerdictCounts; Role::ALL.len()],
    /// Connections closed, by verdict, whatever their role.
    pub verdicts: VerdictCounts,
    /// By process, most `local` first, then most in all.
    pub by_process: Vec<(ProcessKey, VerdictCounts)>,
    /// By service (all the processes of a program in a namespace),
    /// likewise: what the findings judge.
    pub by_service: Vec<(ServiceKey, ServiceCounts)>,
    /// By remote endpoint (connections this host opened), likewise.
    pub by_remote: Vec<(Option<SocketAddr>, VerdictCounts)>,
    /// By local listening port (connections this host accepted), likewise.
    pub by_listen_port: Vec<(Option<u16>, VerdictCounts)>,
    /// The states whose time is kept, in `HISTOGRAM_STATES`' order.
    pub states: Vec<StateRow>,
    /// Connections closed that missed records lost by the kernel side.
    pub missed: u64,
}

impl Counts {
    pub fn of(stats: &Stats) -> Self {
        Self {
            transitions: stats.transitions,
            by_role: stats.by_role,
            verdicts: stats.verdicts(),
            by_process: sorted_rows(&stats.by_process, usize::MAX),
            by_service: service_rows(&stats.by_service),
            by_remote: sorted_rows(&stats.by_remote, usize::MAX),
            by_listen_port: sorted_rows(&stats.by_listen_port, usize::MAX),
            states: HISTOGRAM_STATES
                .iter()
                .filter_map(|&(state, about)| {
                    Some(StateRow {
                        state,
                        about,
                        distribution: stats.distribution(state)?,
                        buckets: stats.buckets(state, &STATE_BOUNDS_NS)?,
                    })
                })
                .collect(),
            missed: stats.missed,
        }
    }
}
