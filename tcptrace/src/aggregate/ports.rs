//! Ephemeral ports per destination: for every (namespace, local address,
//! remote address, remote port) this host connects to, the connections
//! started and how they ended, how long each held its port, and — with the
//! ports held now, counted by the caller from the trackers, and the
//! namespace's sysctls — how close connect() is to running out
//! (`exhaustion`'s formulas). A sink; bounded: at most `MAX_DESTINATIONS`
//! destinations are told apart, the rest are pooled as "other".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rustc_hash::FxHashMap as HashMap;

use crate::{
    aggregate::{exhaustion, stats::VerdictCounts},
    model::{
        Closed, Comm, Fact, Pids, ReasonCounts, Retransmits, Role, Sink, Sysctls, TcpState,
        TimeInState, TwEnd, TwNote, Verdict,
    },
};

/// Destinations told apart; connections toward others are pooled.
pub const MAX_DESTINATIONS: usize = 4096;

/// The recent window rates are measured over, in seconds.
pub const WINDOW_S: u64 = 10;

/// Services kept per destination as its owners.
const MAX_OWNERS: usize = 4;

/// A destination this host connects to: what one ephemeral port range is
/// spent on (each port once per destination, see `exhaustion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dest {
    pub netns: u32,
    pub local: IpAddr,
    pub remote: SocketAddr,
}

impl Dest {
    /// The pool of the destinations beyond `MAX_DESTINATIONS`.
    pub const OTHER: Dest = Dest {
        netns: 0,
        local: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };

    pub fn is_other(&self) -> bool {
        *self == Self::OTHER
    }
}

/// Counts per second over the last `WINDOW_S` seconds (and the current one).
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    /// (second, count), by second modulo the length.
    slots: [(u64, u32); WINDOW_S as usize + 1],
}

impl Window {
    fn add(&mut self, sec: u64) {
        self.add_n(sec, 1);
    }

    fn add_n(&mut self, sec: u64, n: u64) {
        let slot = &mut self.slots[(sec % self.slots.len() as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 = slot.1.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Per second over the `WINDOW_S` full seconds before `now_sec`, or
    /// over those since `first_sec` when that is later.
    fn rate(&self, now_sec: u64, first_sec: u64) -> f64 {
        let from = now_sec.saturating_sub(WINDOW_S).max(first_sec);
        let n: u64 = self
            .slots
            .iter()
            .filter(|(sec, _)| *sec >= from && *sec < now_sec)
            .map(|(_, n)| u64::from(*n))
            .sum();
        n as f64 / now_sec.saturating_sub(from).max(1) as f64
    }

    fn any_since(&self, sec: u64) -> bool {
        self.slots.iter().any(|(s, n)| *s >= sec && *n > 0)
    }
}

/// Sum and count of durations.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum_ns: u128,
    n: u64,
}

impl Mean {
    fn add(&mut self, ns: u64) {
        self.sum_ns += u128::from(ns);
        self.n += 1;
    }

    fn seconds(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum_ns as f64 / self.n as f64 / 1e9)
    }

    fn merge(&mut self, other: &Mean) {
        self.sum_ns += other.sum_ns;
        self.n += other.n;
    }
}

/// Upper bounds of the connect-latency buckets, in seconds: a SYN
/// retransmitted once makes a connect take ~1 s, twice ~3 s, three times
/// ~7 s (the kernel waits 1 s, then 2 s, 4 s...), so those land in buckets
/// of their own. A last bucket holds the slower ones.
pub const CONNECT_BOUNDS_S: [f64; 7] = [0.001, 0.01, 0.1, 0.5, 1.5, 3.5, 7.5];

/// The bound (0.5 s) above which a connect is slow: it waited for a SYN
/// retransmit (1 s) or for a peer far slower than a network's round trip.
pub const SLOW_CONNECT: usize = 3;

/// Connects by time to connect (SYN_SENT to ESTABLISHED), in the buckets of
/// `CONNECT_BOUNDS_S` and one above them; and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConnectLatency {
    pub counts: [u64; CONNECT_BOUNDS_S.len() + 1],
    pub sum_s: f64,
}

impl ConnectLatency {
    fn add(&mut self, ns: u64) {
        let s = ns as f64 / 1e9;
        let bucket = CONNECT_BOUNDS_S
            .iter()
            .position(|bound| s <= *bound)
            .unwrap_or(CONNECT_BOUNDS_S.len());
        self.counts[bucket] += 1;
        self.sum_s += s;
    }

    fn merge(&mut self, other: &ConnectLatency) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_s += other.sum_s;
    }

    /// Connects measured.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Connects at or under each bound, as a histogram's buckets count.
    pub fn cumulative(&self) -> [u64; CONNECT_BOUNDS_S.len()] {
        let mut sum = 0;
        std::array::from_fn(|i| {
            sum += self.counts[i];
            sum
        })
    }

    /// Connects that took longer than bound `i` of `CONNECT_BOUNDS_S`.
    pub fn slower_than(&self, i: usize) -> u64 {
        self.total() - self.cumulative().get(i).copied().unwrap_or(self.total())
    }
}

/// What is counted per destination.
#[derive(Clone, Debug, Default)]
struct Counts {
    connects: u64,
    recent: Window,
    first_sec: Option<u64>,
    verdicts: VerdictCounts,
    no_port_recent: Window,
    lifetime: Mean,
    tw_expired: Mean,
    tw_reused: Mean,
    owners: Vec<(Comm, Pids)>,
    /// Ports held at the last samples, (second, held), oldest first.
    held: Vec<(u64, u64)>,
    /// Connects whose SYN was retransmitted, and the retransmits.
    syn_retried: u64,
    syn_retransmits: u64,
    connect_latency: ConnectLatency,
    /// Segments retransmitted (data, FIN), in all and recently.
    retransmits: u64,
    retransmits_recent: Window,
    /// Resets this host sent toward it, by the kernel's reason.
    reset_reasons: ReasonCounts,
}

impl Counts {
    fn merge(&mut self, other: &Counts) {
        self.connects += other.connects;
        self.syn_retried += other.syn_retried;
        self.syn_retransmits += other.syn_retransmits;
        self.connect_latency.merge(&other.connect_latency);
        self.retransmits += other.retransmits;
        self.reset_reasons.merge(&other.reset_reasons);
        for (v, n) in self.verdicts.iter_mut().zip(other.verdicts) {
            *v += n;
        }
        self.lifetime.merge(&other.lifetime);
        self.tw_expired.merge(&other.tw_expired);
        self.tw_reused.merge(&other.tw_reused);
        self.first_sec = match (self.first_sec, other.first_sec) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Ports held toward a destination now, as the trackers count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Connections from SYN_SENT to their CLOSE.
    pub open: u64,
    /// Their timewait sockets (TIME_WAIT, or FIN_WAIT2 orphans).
    pub timewait: u64,
}

impl Held {
    pub fn total(&self) -> u64 {
        self.open + self.timewait
    }
}

/// The ports held now, counted socket by socket: each under its
/// destination where the table follows it, else under the pool of the
/// others, so in at most `MAX_DESTINATIONS` + 1 entries (measured: an entry
/// per socket's destination, in a churn from fresh source addresses, made
/// the count a third of the agent's time). The table's destinations are
/// all there from the start, so that a socket costs one lookup: a report
/// feeds it every timewait socket of the host (131 072 during the bench's
/// churn).
pub struct HeldCount {
    by_dest: HashMap<Dest, Held>,
    other: Held,
}

impl HeldCount {
    /// Where a socket toward `dest` is counted.
    pub fn toward(&mut self, dest: &Dest) -> &mut Held {
        match self.by_dest.get_mut(dest) {
            Some(held) => held,
            None => &mut self.other,
        }
    }

    /// The count, by destination (`Dest::OTHER`: the pool), with those
    /// holding none in it too.
    pub fn finish(self) -> HashMap<Dest, Held> {
        let Self { mut by_dest, other } = self;
        if other != Held::default() {
            let pooled = by_dest.entry(Dest::OTHER).or_default();
            pooled.open += other.open;
            pooled.timewait += other.timewait;
        }
        by_dest
    }
}

/// Why a port stays held as long as it does, after its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimewaitHold {
    /// `tcp_tw_reuse` lets a new connect() take the port after this delay.
    Reusable,
    /// TIME_WAIT expiries measured toward this destination.
    Measured,
    /// TIME_WAIT expiries measured toward other destinations.
    MeasuredElsewhere,
    /// No expiry yet: the length of the timer the kernel armed.
    Timer,
}

impl TimewaitHold {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Reusable => "reusable after tcp_tw_reuse_delay",
            Self::Measured => "TIME_WAIT expiry, measured",
            Self::MeasuredElsewhere => "TIME_WAIT expiry, measured toward other destinations",
            Self::Timer => "TIME_WAIT timer as armed",
        }
    }
}

/// One destination, as the summaries show it.
#[derive(Clone, Debug, PartialEq)]
pub struct DestReport {
    pub dest: Dest,
    /// Services seen connecting to it (at most a few), in its namespace:
    /// (program, its processes).
    pub owners: Vec<(Comm, Pids)>,
    pub held: Held,
    /// `None` where the namespace's port range is unknown.
    pub capacity: Option<u32>,
    /// Share of the capacity connect() cannot use now: the ports held, less
    /// the timewait sockets it may take over where tcp_tw_reuse applies.
    pub usage: Option<f64>,
    /// `tcp_tw_reuse` lets connect() take over its timewait sockets.
    pub tw_reuse: Option<bool>,
    pub connects: u64,
    /// New connections per second over the last `WINDOW_S` seconds, and
    /// since the first one.
    pub rate: f64,
    pub rate_since_start: f64,
    /// Share of its closed connections this host closed first.
    pub closed_locally: Option<f64>,
    pub lifetime_s: Option<f64>,
    /// How long a port stays held after its connection when this host
    /// closed first, and why that long.
    pub timewait_s: Option<f64>,
    pub timewait_hold: Option<TimewaitHold>,
    /// TIME_WAIT ended by reuse, measured: the mean time before reuse.
    pub reused_after_s: Option<f64>,
    pub hold_s: Option<f64>,
    pub sustainable: Option<f64>,
    /// Seconds until connect() runs out of ports at the current rates.
    pub time_left_s: Option<f64>,
    /// Connects that found no free local port (EADDRNOTAVAIL), all and over
    /// the last `WINDOW_S` seconds.
    pub failed: u64,
    pub failing: bool,
    pub verdicts: VerdictCounts,
    /// Connects whose SYN was retransmitted (each stalled a second or
    /// more), and the SYN retransmits in all.
    pub syn_retried: u64,
    pub syn_retransmits: u64,
    /// Connects by time to connect.
    pub connect_latency: ConnectLatency,
    /// Segments retransmitted toward it (data, FIN: not SYNs), in all and
    /// per second over the last `WINDOW_S` seconds.
    pub retransmits: u64,
    pub retransmit_rate: f64,
    /// Resets this host sent on its connections toward it, by reason.
    pub reset_reasons: ReasonCounts,
}

/// How close a destination is to running out, for the live warnings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    #[default]
    Fine,
    /// Half the ports held.
    Half,
    /// 80 % held.
    High,
    /// Connects fail for lack of a port.
    Failing,
}

impl Level {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fine => "fine",
            Self::Half => "usage-50",
            Self::High => "usage-80",
            Self::Failing => "connects-failing",
        }
    }
}

/// The level of a destination now, given the last one: up at 50 % and
/// 80 % or at the first connect that found no port; down only 10 points
/// below (or `WINDOW_S` seconds without a failure), so that usage hovering
/// at a threshold warns once.
pub fn level(usage: Option<f64>, failing: bool, previous: Level) -> Level {
    if failing {
        return Level::Failing;
    }
    let u = usage.unwrap_or(0.0);
    let by_usage = |half: f64, high: f64| match u {
        u if u >= high => Level::High,
        u if u >= half => Level::Half,
        _ => Level::Fine,
    };
    let up = by_usage(0.5, 0.8);
    let down = by_usage(0.4, 0.7);
    match previous {
        Level::Failing => up,
        previous => up.max(down.min(previous)),
    }
}

/// The per-destination table.
#[derive(Default)]
pub struct Ports {
    /// The level last warned about, by destination.
    levels: HashMap<Dest, Level>,
    dests: HashMap<Dest, Counts>,
    /// Local address last seen toward (netns, remote): where a connect that
    /// failed before choosing one belongs.
    local_of: HashMap<(u32, SocketAddr), IpAddr>,
    /// Connections to destinations beyond the bound.
    pub folded: u64,
    /// Segments retransmitted toward remotes that are not destinations of
    /// this host's connects (a server's clients; connections older than
    /// the trace that have not closed yet).
    pub retransmits_elsewhere: u64,
}

fn sec(ts_ns: u64) -> u64 {
    ts_ns / 1_000_000_000
}

impl Ports {
    /// The entry of `dest`, or of the pool once the table is full (then
    /// `true`: `dest` was folded into `Dest::OTHER`).
    fn entry(&mut self, dest: Dest) -> (&mut Counts, bool) {
        if self.dests.len() >= MAX_DESTINATIONS && !self.dests.contains_key(&dest) {
            return (self.dests.entry(Dest::OTHER).or_default(), true);
        }
        (self.dests.entry(dest).or_default(), false)
    }

    /// The destination of an active socket from its endpoints; a local
    /// address not chosen yet is the one last seen toward that remote.
    fn dest(&self, netns: u32, local: &SocketAddr, remote: &SocketAddr) -> Dest {
        let local = match local.ip() {
            ip if ip.is_unspecified() => {
                self.local_of.get(&(netns, *remote)).copied().unwrap_or(ip)
            }
            ip => ip,
        };
        Dest {
            netns,
            local,
            remote: *remote,
        }
    }

    /// Remembers the local address chosen toward a remote (for the connects
    /// that fail before choosing one).
    fn saw_local(&mut self, dest: &Dest) {
        if dest.local.is_unspecified() {
            return;
        }
        let key = (dest.netns, dest.remote);
        if self.local_of.len() < MAX_DESTINATIONS || self.local_of.contains_key(&key) {
            self.local_of.insert(key, dest.local);
        }
    }

    fn closed(&mut self, c: &Closed) {
        if c.role != Role::Active {
            return;
        }
        let dest = self.dest(c.netns, &c.local, &c.remote);
        let (counts, _) = self.entry(dest);
        counts.verdicts[c.verdict.index()] += 1;
        if c.verdict == Verdict::NoPort {
            counts.no_port_recent.add(sec(c.ts_ns));
        }
        if let Some(ns) = c.lifetime_ns {
            counts.lifetime.add(ns);
        }
        if c.syn_retransmits > 0 {
            counts.syn_retried += 1;
            counts.syn_retransmits += u64::from(c.syn_retransmits);
        }
        // As the services' and RESETS SENT count them.
        if let Some(reason) = c.reset_reason {
            counts.reset_reasons.add(reason);
        }
        if let Some(owner) = c.owner {
            let known = counts.owners.iter().position(|(c, _)| *c == owner.comm);
            match known {
                Some(i) => counts.owners[i].1.add(owner.pid),
                None if counts.owners.len() < MAX_OWNERS => {
                    let mut pids = Pids::default();
                    pids.add(owner.pid);
                    counts.owners.push((owner.comm, pids));
                }
                None => {}
            }
        }
    }

    /// Retransmits toward a destination of this host's connects, or else
    /// elsewhere.
    fn retransmits(&mut self, r: &Retransmits) {
        let dest = Dest {
            netns: r.netns,
            local: r.local.ip(),
            remote: r.remote,
        };
        match self.dests.get_mut(&dest) {
            Some(counts) => {
                counts.retransmits += r.count;
                counts.retransmits_recent.add_n(sec(r.ts_ns), r.count);
            }
            None => self.retransmits_elsewhere += r.count,
        }
    }

    /// Destinations followed one by one (the pool of the others aside).
    pub fn tracked(&self) -> usize {
        self.dests.len() - usize::from(self.dests.contains_key(&Dest::OTHER))
    }

    /// A count of the ports held now, to be fed every socket that holds
    /// one (see [`HeldCount`]).
    pub fn held_count(&self) -> HeldCount {
        let mut by_dest = HashMap::with_capacity_and_hasher(self.dests.len(), Default::default());
        by_dest.extend(self.dests.keys().map(|&d| (d, Held::default())));
        HeldCount {
            by_dest,
            other: Held::default(),
        }
    }

    /// Records the ports held now (counted by the caller), for the growth
    /// over the window. Call once a second.
    pub fn sample(&mut self, now_ns: u64, held: &HashMap<Dest, Held>) {
        let now = sec(now_ns);
        for (dest, counts) in &mut self.dests {
            let n = held.get(dest).map_or(0, Held::total);
            counts.held.retain(|(s, _)| s + WINDOW_S >= now);
            if counts.held.last().is_none_or(|(s, _)| *s < now) {
                counts.held.push((now, n));
            }
        }
    }
}

impl Ports {
    /// The destinations whose level rose since the last call: one warning
    /// per crossing.
    pub fn alerts<'a>(&mut self, rows: &'a [DestReport]) -> Vec<(Level, &'a DestReport)> {
        let mut alerts = Vec::new();
        for r in rows.iter().filter(|r| !r.dest.is_other()) {
            let previous = self.levels.get(&r.dest).copied().unwrap_or_default();
            let now = level(r.usage, r.failing, previous);
            if now > previous {
                alerts.push((now, r));
            }
            match now {
                // Back to fine: forgotten, so the table holds only the
                // destinations in trouble.
                Level::Fine => {
                    self.levels.remove(&r.dest);
                }
                now if now != previous
                    && (self.levels.len() < MAX_DESTINATIONS
                        || self.levels.contains_key(&r.dest)) =>
                {
                    self.levels.insert(r.dest, now);
                }
                _ => {}
            }
        }
        alerts
    }
}

impl Sink for Ports {
    fn fact(&mut self, fact: Fact<'_>) -> std::io::Result<()> {
        match fact {
            // Leaving SYN_SENT: a connect() this host made, with its local
            // address chosen (or failed before choosing one).
            Fact::Transition(t) if t.old == TcpState::SynSent && t.timewait.is_none() => {
                let dest = self.dest(t.netns, &t.local, &t.remote);
                if !self.local_of.contains_key(&(dest.netns, dest.remote)) {
                    self.saw_local(&dest);
                }
                let (counts, folded) = self.entry(dest);
                counts.connects += 1;
                if let (TcpState::Established, TimeInState::Measured(ns)) = (t.new, t.in_old) {
                    counts.connect_latency.add(ns);
                }
                counts.recent.add(sec(t.ts_ns));
                counts.first_sec.get_or_insert(sec(t.ts_ns));
                if folded {
                    self.folded += 1;
                }
            }
            // A timewait socket ended: only those toward destinations this
            // host connects to count (a server's are toward its clients).
            Fact::Transition(t) => {
                if let (Some(TwNote::Ends { reason, .. }), TimeInState::Measured(ns)) =
                    (t.timewait, t.in_old)
                    && t.old == TcpState::TimeWait
                {
                    let dest = Dest {
                        netns: t.netns,
                        local: t.local.ip(),
                        remote: t.remote,
                    };
                    if let Some(counts) = self.dests.get_mut(&dest) {
                        match reason {
                            TwEnd::Expired => counts.tw_expired.add(ns),
                            TwEnd::Reused => counts.tw_reused.add(ns),
                            _ => {}
                        }
                    }
                }
            }
            Fact::Closed(c) => self.closed(c),
            Fact::Retransmits(r) => self.retransmits(r),
            Fact::Record(_) | Fact::BindFailed(_) => {}
        }
        Ok(())
    }
}

mod report;

#[cfg(test)]
mod tests;
