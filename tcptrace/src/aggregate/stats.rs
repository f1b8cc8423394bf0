//! The aggregate every summary reports: per-state duration histograms, "who
//! closes first" tables, and how timewait sockets ended. A sink: fed facts
//! that passed the filters, cumulative since start; I/O-free (printing is in
//! `render::summary`).

use std::net::SocketAddr;

use rustc_hash::FxHashMap as HashMap;

use hdrhistogram::Histogram;

use crate::{
    aggregate::distribution::{Distribution, cumulative},
    model::{
        BindFailure, Closed, Comm, Fact, Pids, ReasonCounts, Role, Service, Sink, TcpState,
        TimeInState, Transition, TwEnd, TwNote, Verdict, state::positions,
    },
};

/// States whose durations are kept, in the order they are printed.
pub const HISTOGRAM_STATES: [(TcpState, &str); 9] = [
    (TcpState::SynSent, "connect latency"),
    (TcpState::SynRecv, "handshake, server side"),
    (TcpState::Established, "connection lifetime"),
    (TcpState::FinWait1, "our FIN unacknowledged"),
    (TcpState::FinWait2, "waiting for the peer's FIN"),
    (TcpState::CloseWait, "peer closed, we have not"),
    (TcpState::LastAck, "our FIN unacknowledged after theirs"),
    (TcpState::Closing, "FINs crossed"),
    (TcpState::TimeWait, "timewait socket, however it ended"),
];

/// Each state's histogram, by `TcpState::index`.
const HISTOGRAM_SLOT: [Option<usize>; TcpState::COUNT] = positions(histogram_order());

const fn histogram_order() -> [TcpState; HISTOGRAM_STATES.len()] {
    let mut order = [TcpState::Close; HISTOGRAM_STATES.len()];
    let mut i = 0;
    while i < order.len() {
        order[i] = HISTOGRAM_STATES[i].0;
        i += 1;
    }
    order
}

/// Longest duration a histogram tells apart (30 days); longer ones count as this.
const MAX_TRACKED_NS: u64 = 30 * 24 * 3600 * 1_000_000_000;

/// At most this many keys per "who closes first" table; the rest are pooled.
const MAX_KEYS: usize = 10_000;

pub type VerdictCounts = [u64; Verdict::ALL.len()];

/// A process as a table key: `None` when the owner is unknown.
pub type ProcessKey = Option<(u32, Comm)>;

/// A service as a table key: `None` when the owner is unknown.
pub type ServiceKey = Option<Service>;

/// The connections of one service that closed, and its processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub verdicts: VerdictCounts,
    pub pids: Pids,
    /// The kernel's reasons for the resets it sent.
    pub reasons: ReasonCounts,
    /// The most resets sent and received in one minute.
    pub resets: ResetPeaks,
}

/// The most resets of each direction (abort-sent, abort-received) a
/// service had in one minute: a burst in a long run is not averaged away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetPeaks {
    /// Per direction: (the current minute, its count, the most in one).
    minutes: [(u64, u64, u64); 2],
}

impl ResetPeaks {
    fn note(&mut self, verdict: Verdict, ts_ns: u64) {
        let i = match verdict {
            Verdict::AbortSent => 0,
            Verdict::AbortReceived => 1,
            _ => return,
        };
        let minute = ts_ns / 60_000_000_000;
        let (current, count, most) = &mut self.minutes[i];
        if *current != minute {
            (*current, *count) = (minute, 0);
        }
        *count += 1;
        *most = (*most).max(*count);
    }

    /// The most resets of `verdict` (abort-sent or abort-received) in one
    /// minute.
    pub fn most_in_a_minute(&self, verdict: Verdict) -> u64 {
        match verdict {
            Verdict::AbortSent => self.minutes[0].2,
            Verdict::AbortReceived => self.minutes[1].2,
            _ => 0,
        }
    }
}

pub struct Stats {
    histograms: Vec<Histogram<u64>>,
    /// Exact maxima (the histograms keep 2 significant digits: 1% error, and
    /// small enough to stay in cache).
    max_ns: [u64; HISTOGRAM_STATES.len()],
    /// Exact sums of the durations in each histogram.
    sum_ns: [u64; HISTOGRAM_STATES.len()],
    /// Transitions seen, by old and new state (`TcpState::index`).
    pub transitions: [[u64; TcpState::COUNT]; TcpState::COUNT],
    /// Connections closed, by role (`Role::index`) and verdict.
    pub by_role: [VerdictCounts; Role::ALL.len()],
    pub by_process: HashMap<ProcessKey, VerdictCounts>,
    /// The same by service: what the findings judge.
    pub by_service: HashMap<ServiceKey, ServiceCounts>,
    /// Active connections, by the endpoint they connected to.
    pub by_remote: HashMap<Option<SocketAddr>, VerdictCounts>,
    /// Passive connections, by the local port they were accepted on.
    pub by_listen_port: HashMap<Option<u16>, VerdictCounts>,
    /// Timewait sockets ended, by reason (`TwEnd::index`).
    pub tw_ends: [u64; TwEnd::ALL.len()],
    /// Re-arms of the timers of the timewait sockets that ended.
    pub tw_rearms: u64,
    /// Transitions of timewait sockets concluded from the timers' records
    /// (an orphan's FIN_WAIT2 -> TIME_WAIT, and every end), which the live
    /// log prints beside the transition records.
    pub tw_transitions: u64,
    /// How long TIME_WAIT lasted, by how it ended (`TwEnd::index`), with
    /// the exact sums; and the exact max of those that expired.
    tw_lasted: Vec<Histogram<u64>>,
    tw_lasted_sum_ns: [u64; TwEnd::ALL.len()],
    tw_expired_max: u64,
    /// Length of the latest TIME_WAIT timer armed (the configured length).
    pub tw_timer_ns: Option<u64>,
    /// Failed binds (EADDRINUSE) by namespace, process and address.
    pub bind_failures: HashMap<BindKey, u64>,
    /// Connections closed that missed records (lost by the kernel side).
    pub missed: u64,
    /// Resets this host sent on the connections that closed, by the
    /// kernel's reason.
    pub resets_sent: ReasonCounts,
}

/// A histogram in the Prometheus form: cumulative counts at given bounds,
/// count and sum, in nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_ns: u64,
}

/// A failed bind()'s table key: (netns, process, address asked for).
pub type BindKey = (u32, ProcessKey, SocketAddr);

/// Failed binds of one process to one address, for the summaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindRow {
    pub netns: u32,
    pub process: ProcessKey,
    pub local: SocketAddr,
    pub count: u64,
    /// Timewait sockets holding the port in that namespace now.
    pub timewait_on_port: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds one to `key`'s counts, pooling new keys under `None` once full.
fn count<K: std::hash::Hash + Eq>(
    table: &mut HashMap<Option<K>, VerdictCounts>,
    key: Option<K>,
    v: Verdict,
) {
    pooled(table, key)[v.index()] += 1;
}

/// `key`'s entry, or the pool's (`None`) once `MAX_KEYS` are kept.
fn pooled<K: std::hash::Hash + Eq, V: Default>(
    table: &mut HashMap<Option<K>, V>,
    key: Option<K>,
) -> &mut V {
    let key = if table.len() >= MAX_KEYS && !table.contains_key(&key) {
        None
    } else {
        key
    };
    table.entry(key).or_default()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 2).expect("valid histogram bounds")
}

impl Stats {
    pub fn new() -> Self {
        let histograms = HISTOGRAM_STATES.iter().map(|_| histogram()).collect();
        Self {
            histograms,
            max_ns: [0; HISTOGRAM_STATES.len()],
            sum_ns: [0; HISTOGRAM_STATES.len()],
            transitions: [[0; TcpState::COUNT]; TcpState::COUNT],
            by_role: [VerdictCounts::default(); Role::ALL.len()],
            by_process: HashMap::default(),
            by_service: HashMap::default(),
            by_remote: HashMap::default(),
            by_listen_port: HashMap::default(),
            tw_ends: [0; TwEnd::ALL.len()],
            tw_rearms: 0,
            tw_transitions: 0,
            // 3 significant digits: 60 ms at 60 s, where the timer wheel's
            // slack is what users look for.
            tw_lasted: TwEnd::ALL
                .iter()
                .map(|_| {
                    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
                        .expect("valid histogram bounds")
                })
                .collect(),
            tw_lasted_sum_ns: [0; TwEnd::ALL.len()],
            tw_expired_max: 0,
            tw_timer_ns: None,
            bind_failures: HashMap::default(),
            missed: 0,
            resets_sent: ReasonCounts::default(),
        }
    }

    pub fn record_transition(&mut self, t: &Transition) {
        self.transitions[t.old.index()][t.new.index()] += 1;
        if let TimeInState::Measured(ns) = t.in_old
            && let Some(i) = HISTOGRAM_SLOT[t.old.index()]
        {
            self.histograms[i].saturating_record(ns.max(1));
            self.max_ns[i] = self.max_ns[i].max(ns);
            self.sum_ns[i] = self.sum_ns[i].saturating_add(ns);
        }
    }

    /// Counts what a timewait socket's transition says: its timer's length,
    /// how it ended, and how long TIME_WAIT lasted when it ran out.
    pub fn record_timewait(&mut self, t: &Transition) {
        match t.timewait {
            Some(TwNote::Begins { timer_ns } | TwNote::Changes { timer_ns })
                if t.new == TcpState::TimeWait && timer_ns.is_some() =>
            {
                self.tw_timer_ns = timer_ns;
            }
            Some(TwNote::Ends { reason, rearms, .. }) => {
                self.tw_ends[reason.index()] += 1;
                self.tw_rearms += u64::from(rearms);
                if let (TcpState::TimeWait, TimeInState::Measured(ns)) = (t.old, t.in_old) {
                    let i = reason.index();
                    self.tw_lasted[i].saturating_record(ns.max(1));
                    self.tw_lasted_sum_ns[i] = self.tw_lasted_sum_ns[i].saturating_add(ns);
                    if reason == TwEnd::Expired {
                        self.tw_expired_max = self.tw_expired_max.max(ns);
                    }
                }
            }
            _ => {}
        }
    }

    /// How long TIME_WAIT lasted when its timer ran out.
    pub fn tw_expired(&self) -> Distribution {
        Distribution::of(&self.tw_lasted[TwEnd::Expired.index()]).capped(self.tw_expired_max)
    }

    /// How long TIME_WAIT lasted, for those that ended `reason`, in the
    /// Prometheus form: cumulative counts at `bounds_ns`, count, sum (ns).
    pub fn tw_lasted(&self, reason: TwEnd, bounds_ns: &[u64]) -> Buckets {
        let h = &self.tw_lasted[reason.index()];
        Buckets {
            cumulative: cumulative(h, bounds_ns),
            count: h.len(),
            sum_ns: self.tw_lasted_sum_ns[reason.index()],
        }
    }

    /// Time spent in `state` (one that is kept), as [`Stats::tw_lasted`].
    pub fn buckets(&self, state: TcpState, bounds_ns: &[u64]) -> Option<Buckets> {
        let i = HISTOGRAM_SLOT[state.index()]?;
        Some(Buckets {
            cumulative: cumulative(&self.histograms[i], bounds_ns),
            count: self.histograms[i].len(),
            sum_ns: self.sum_ns[i],
        })
    }

    pub fn record_closed(&mut self, c: &Closed) {
        self.by_role[c.role.index()][c.verdict.index()] += 1;
        self.missed += u64::from(c.missed);
        count(
            &mut self.by_process,
            c.owner.map(|o| (o.pid, o.comm)),
            c.verdict,
        );
        let service = pooled(
            &mut self.by_service,
            c.owner.map(|o| Service::of(c.netns, &o)),
        );
        service.verdicts[c.verdict.index()] += 1;
        service.resets.note(c.verdict, c.ts_ns);
        if let Some(owner) = c.owner {
            service.pids.add(owner.pid);
        }
        if let Some(reason) = c.reset_reason {
            service.reasons.add(reason);
            self.resets_sent.add(reason);
        }
        match c.role {
            Role::Active => count(&mut self.by_remote, Some(c.remote), c.verdict),
            Role::Passive => count(&mut self.by_listen_port, Some(c.local.port()), c.verdict),
            Role::Unknown => {}
        }
    }

    /// Counts a failed bind(), pooling new keys under an unknown process and
    /// address once `MAX_KEYS` are kept.
    pub fn record_bind_failure(&mut self, b: &BindFailure) {
        let mut key = (b.netns, b.task.map(|t| (t.pid, t.comm)), b.local);
        if self.bind_failures.len() >= MAX_KEYS && !self.bind_failures.contains_key(&key) {
            key = (0, None, SocketAddr::from(([0, 0, 0, 0], 0)));
        }
        *self.bind_failures.entry(key).or_default() += 1;
    }

    /// Failed binds, most first; `timewait_on_port(netns, port)`: timewait
    /// sockets holding that local port now (the usual reason).
    pub fn bind_rows(&self, timewait_on_port: impl Fn(u32, u16) -> u64) -> Vec<BindRow> {
        let mut rows: Vec<BindRow> = self
            .bind_failures
            .iter()
            .map(|(&(netns, process, local), &count)| BindRow {
                netns,
                process,
                local,
                count,
                timewait_on_port: timewait_on_port(netns, local.port()),
            })
            .collect();
        rows.sort_by_key(|r| (std::cmp::Reverse(r.count), r.netns, r.local));
        rows
    }

    /// Connections closed, by verdict, whatever their role.
    pub fn verdicts(&self) -> VerdictCounts {
        let mut all = VerdictCounts::default();
        for by_verdict in &self.by_role {
            for (sum, n) in all.iter_mut().zip(by_verdict) {
                *sum += n;
            }
        }
        all
    }

    /// The distribution of time spent in `state`, if it is one that is kept.
    pub fn distribution(&self, state: TcpState) -> Option<Distribution> {
        let i = HISTOGRAM_SLOT[state.index()]?;
        Some(Distribution::of(&self.histograms[i]).capped(self.max_ns[i]))
    }
}

impl Sink for Stats {
    fn fact(&mut self, fact: Fact<'_>) -> std::io::Result<()> {
        match fact {
            Fact::Transition(t) => {
                self.record_transition(t);
                if t.timewait.is_some() {
                    // A `Begins` is the full socket's own record, relabelled:
                    // already a transition record.
                    if !matches!(t.timewait, Some(TwNote::Begins { .. })) {
                        self.tw_transitions += 1;
                    }
                    self.record_timewait(t);
                }
            }
            Fact::Closed(c) => self.record_closed(c),
            // Counted when the connection closed.
            Fact::Record(_) => {}
            Fact::BindFailed(b) => self.record_bind_failure(b),
            // Counted per destination (`Ports`).
            Fact::Retransmits(_) => {}
        }
        Ok(())
    }
}

/// The services, most `local` first, then most in all, as `sorted_rows`.
pub fn service_rows(
    table: &HashMap<ServiceKey, ServiceCounts>,
) -> Vec<(ServiceKey, ServiceCounts)> {
    let mut rows: Vec<(ServiceKey, ServiceCounts)> =
        table.iter().map(|(k, v)| (*k, v.clone())).collect();
    rows.sort_by_key(|(key, c)| {
        let v = &c.verdicts;
        (
            std::cmp::Reverse((v[Verdict::Local.index()], v.iter().sum::<u64>())),
            *key,
        )
    });
    rows
}

/// Table rows sorted by the side that accumulates TIME_WAIT (most `local`
/// first), then by total.
pub fn sorted_rows<K: Clone>(
    table: &HashMap<K, VerdictCounts>,
    limit: usize,
) -> Vec<(K, VerdictCounts)> {
    let mut rows: Vec<(K, VerdictCounts)> = table.iter().map(|(k, v)| (k.clone(), *v)).collect();
    rows.sort_by_key(|(_, v)| {
        std::cmp::Reverse((v[Verdict::Local.index()], v.iter().sum::<u64>()))
    });
    rows.truncate(limit);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{Script, task};

    #[test]
    fn histograms_keep_measured_durations_only() {
        let mut stats = Stats::new();
        let mut s = Script { ts: 0 };
        let mut t = s.tr(
            1,
            "10.0.0.1:1",
            "10.0.0.2:2",
            TcpState::SynSent,
            TcpState::Established,
            None,
        );
        for ns in [1_000u64, 3_000, 1_000_000] {
            t.in_old = TimeInState::Measured(ns);
            stats.record_transition(&t);
        }
        t.in_old = TimeInState::Unknown;
        stats.record_transition(&t);
        let d = stats.distribution(TcpState::SynSent).unwrap();
        assert_eq!(d.count, 3);
        assert_eq!(d.p50_ns / 100, 3_000 / 100);
        assert_eq!(d.max_ns, 1_000_000, "exact, not the histogram bucket's top");
        // Two values in one bucket: percentiles stay within the exact max.
        let mut one = Stats::new();
        for ns in [200_674_000u64, 200_718_000] {
            t.in_old = TimeInState::Measured(ns);
            one.record_transition(&t);
        }
        let close = one.distribution(TcpState::SynSent).unwrap();
        assert!(
            close.p50_ns <= close.max_ns && close.p99_ns <= close.max_ns,
            "{close:?}"
        );
        assert!(close.p50_ns.abs_diff(200_700_000) < 200_000, "{close:?}");
        // 1 µs -> [1,2), 3 µs -> [2,4), 1000 µs -> [512,1024).
        assert_eq!(d.log2_us.first(), Some(&(1, 2, 1)));
        assert_eq!(d.log2_us[1], (2, 4, 1));
        assert_eq!(d.log2_us.last(), Some(&(512, 1024, 1)));
        assert_eq!(d.log2_us.len(), 10);
        assert_eq!(stats.distribution(TcpState::Closing).unwrap().log2_us, []);
        assert!(stats.distribution(TcpState::Listen).is_none());
    }

    fn closed(verdict: Verdict, role: Role, pid: u32, remote: &str) -> Closed {
        Closed {
            ts_ns: 10,
            sock: 1,
            netns: 1,
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: remote.parse().unwrap(),
            role,
            owner: Some(task(pid, "app")),
            verdict,
            lifetime_ns: Some(5),
            in_state: Default::default(),
            missed: false,
            reset_reason: None,
            syn_retransmits: 0,
            timewait: None,
        }
    }

    #[test]
    fn verdict_tables() {
        let mut stats = Stats::new();
        stats.record_closed(&closed(Verdict::Peer, Role::Passive, 1, "10.0.0.2:5000"));
        stats.record_closed(&closed(Verdict::Local, Role::Active, 2, "10.0.0.3:80"));
        stats.record_closed(&closed(Verdict::Local, Role::Active, 2, "10.0.0.3:80"));
        stats.record_closed(&closed(Verdict::AbortSent, Role::Active, 3, "10.0.0.4:80"));
        assert_eq!(stats.verdicts()[Verdict::Local.index()], 2);
        assert_eq!(
            stats.by_role[Role::Active.index()][Verdict::Local.index()],
            2
        );
        let rows = sorted_rows(&stats.by_process, 10);
        assert_eq!(rows[0].0.unwrap().0, 2, "most TIME_WAIT first");
        assert_eq!(rows[0].1[Verdict::Local.index()], 2);
        assert_eq!(stats.by_listen_port[&Some(8080)][Verdict::Peer.index()], 1);
        assert_eq!(stats.by_remote.len(), 2);
        assert_eq!(sorted_rows(&stats.by_process, 1).len(), 1);
    }

    #[test]
    fn tables_are_bounded() {
        let mut table: HashMap<Option<u16>, VerdictCounts> = HashMap::default();
        for port in 0..(MAX_KEYS as u16 + 5) {
            count(&mut table, Some(port), Verdict::Local);
        }
        assert!(table.len() <= MAX_KEYS + 1);
        assert_eq!(table[&None][0], 5);
    }

    /// The exit line's "of timewait sockets": what the timers told, not the
    /// full socket's own record relabelled FIN_WAIT2 -> TIME_WAIT.
    #[test]
    fn timewait_transitions_count_what_the_timers_told() {
        let mut stats = Stats::new();
        let mut s = Script { ts: 0 };
        let mut t = s.tr(
            1,
            "10.0.0.1:40000",
            "10.0.0.2:80",
            TcpState::FinWait2,
            TcpState::TimeWait,
            None,
        );
        t.timewait = Some(TwNote::Begins { timer_ns: None });
        stats.fact(Fact::Transition(&t)).unwrap();
        t.old = TcpState::TimeWait;
        t.new = TcpState::Close;
        t.timewait = Some(TwNote::Ends {
            reason: TwEnd::Expired,
            rearms: 0,
            by: None,
            fin_unseen: false,
        });
        stats.fact(Fact::Transition(&t)).unwrap();
        t.timewait = None;
        stats.fact(Fact::Transition(&t)).unwrap();
        assert_eq!(stats.tw_transitions, 1);
    }
}
