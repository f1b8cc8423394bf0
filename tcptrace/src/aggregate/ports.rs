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
    model::{Closed, Fact, Role, Sink, Sysctls, TcpState, TimeInState, TwEnd, TwNote, Verdict},
};

/// Destinations told apart; connections toward others are pooled.
pub const MAX_DESTINATIONS: usize = 4096;

/// The recent window rates are measured over, in seconds.
pub const WINDOW_S: u64 = 10;

/// Owners remembered per destination.
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
        let slot = &mut self.slots[(sec % self.slots.len() as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
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
    owners: Vec<(u32, String)>,
    /// Ports held at the last samples, (second, held), oldest first.
    held: Vec<(u64, u64)>,
}

impl Counts {
    fn merge(&mut self, other: &Counts) {
        self.connects += other.connects;
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
    /// Processes seen connecting to it (at most a few): (pid, comm).
    pub owners: Vec<(u32, String)>,
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
        if let Some(owner) = c.owner
            && counts.owners.len() < MAX_OWNERS
            && !counts.owners.iter().any(|(pid, _)| *pid == owner.pid)
        {
            counts
                .owners
                .push((owner.pid, owner.comm.as_str().into_owned()));
        }
    }

    /// Destinations followed one by one (the pool of the others aside).
    pub fn tracked(&self) -> usize {
        self.dests.len() - usize::from(self.dests.contains_key(&Dest::OTHER))
    }

    /// The destination a socket toward `dest` is counted under: its own if
    /// the table follows it, else the pool of the others (so that the ports
    /// held are counted in at most `MAX_DESTINATIONS` + 1 entries).
    pub fn counted_as(&self, dest: Dest) -> Dest {
        match self.dests.contains_key(&dest) {
            true => dest,
            false => Dest::OTHER,
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

    /// Every destination, most used first; `sysctls` of each namespace;
    /// `timer_ns`: the TIME_WAIT timer as last armed. At most `limit`
    /// destinations, the rest pooled in one report for `Dest::OTHER`.
    pub fn report<'a>(
        &self,
        held: &HashMap<Dest, Held>,
        sysctls: impl Fn(u32) -> Option<&'a Sysctls>,
        timer_ns: Option<u64>,
        now_ns: u64,
        limit: usize,
    ) -> Vec<DestReport> {
        let now = sec(now_ns);
        // TIME_WAIT as measured toward every destination, for those with
        // no expiry of their own yet.
        let mut everywhere = Mean::default();
        for counts in self.dests.values() {
            everywhere.merge(&counts.tw_expired);
        }
        // Full rows only for the destinations shown and those whose level
        // may change; the others are only summed into "other". (Building and
        // sorting a row for each of 4 096 destinations every second showed in
        // the agent's profile.)
        // (Where tcp_tw_reuse applies, a rough key: the open connections;
        // the rows built below say exactly.)
        let usage_of = |dest: &Dest| -> f64 {
            let h = held.get(dest).copied().unwrap_or_default();
            let s = sysctls(dest.netns);
            let reusable = s.is_some_and(|s| {
                exhaustion::tw_reuse_applies(
                    s.tw_reuse.unwrap_or(0),
                    s.timestamps.unwrap_or(0),
                    dest.local,
                    dest.remote.ip(),
                )
            });
            let h = if reusable { h.open } else { h.total() };
            s.and_then(|s| Some(exhaustion::capacity(s.port_range?, &s.reserved_ports)))
                .map_or(0.0, |c| exhaustion::usage(h, c))
        };
        let mut keyed: Vec<(f64, u64, u64, &Dest)> = self
            .dests
            .iter()
            .filter(|(dest, _)| !dest.is_other())
            .map(|(dest, c)| {
                (
                    usage_of(dest),
                    held.get(dest).map_or(0, Held::total),
                    c.connects,
                    dest,
                )
            })
            .collect();
        keyed.sort_by(|a, b| {
            (b.0, b.1, b.2)
                .partial_cmp(&(a.0, a.1, a.2))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let wanted = |i: usize, (usage, _, _, dest): &(f64, u64, u64, &Dest)| {
            i < limit
                || *usage >= 0.4
                || self.levels.contains_key(*dest)
                || self
                    .dests
                    .get(*dest)
                    .is_some_and(|c| c.no_port_recent.any_since(now.saturating_sub(WINDOW_S)))
        };
        let mut rows: Vec<DestReport> = Vec::new();
        let mut rest: Vec<&Dest> = Vec::new();
        for (i, entry) in keyed.iter().enumerate() {
            let dest = entry.3;
            match wanted(i, entry) {
                true => {
                    let h = held.get(dest).copied().unwrap_or_default();
                    rows.push(self.one(
                        dest,
                        &self.dests[dest],
                        h,
                        sysctls(dest.netns),
                        &everywhere,
                        timer_ns,
                        now,
                    ));
                }
                false => rest.push(dest),
            }
        }
        if !rest.is_empty()
            || self.dests.contains_key(&Dest::OTHER)
            || held.contains_key(&Dest::OTHER)
        {
            let mut pooled = self.dests.get(&Dest::OTHER).cloned().unwrap_or_default();
            // Sockets toward destinations not followed are counted there.
            let mut pooled_held = held.get(&Dest::OTHER).copied().unwrap_or_default();
            let mut rate = 0.0;
            for dest in &rest {
                let c = &self.dests[*dest];
                pooled.merge(c);
                rate += c.recent.rate(now, c.first_sec.unwrap_or(now));
                let h = held.get(*dest).copied().unwrap_or_default();
                pooled_held.open += h.open;
                pooled_held.timewait += h.timewait;
            }
            let mut other = self.one(
                &Dest::OTHER,
                &pooled,
                pooled_held,
                None,
                &everywhere,
                timer_ns,
                now,
            );
            other.rate += rate;
            other.owners.clear();
            rows.push(other);
        }
        rows
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one destination's inputs, all needed"
    )]
    fn one(
        &self,
        dest: &Dest,
        counts: &Counts,
        held: Held,
        sysctls: Option<&Sysctls>,
        everywhere: &Mean,
        timer_ns: Option<u64>,
        now: u64,
    ) -> DestReport {
        let capacity =
            sysctls.and_then(|s| Some(exhaustion::capacity(s.port_range?, &s.reserved_ports)));
        let tw_reuse = sysctls.and_then(|s| {
            Some(exhaustion::tw_reuse_applies(
                s.tw_reuse?,
                s.timestamps?,
                dest.local,
                dest.remote.ip(),
            ))
        });
        // Of the connections that were established: a connect that failed
        // closed nothing.
        let closed: u64 = Verdict::ALL
            .iter()
            .filter(|v| !v.never_connected())
            .map(|v| counts.verdicts[v.index()])
            .sum();
        let local = counts.verdicts[Verdict::Local.index()]
            + counts.verdicts[Verdict::Simultaneous.index()];
        let closed_locally = (closed > 0).then(|| local as f64 / closed as f64);
        let (timewait_s, timewait_hold) =
            match (tw_reuse, counts.tw_expired.seconds(), everywhere.seconds()) {
                (Some(true), _, _) => (
                    sysctls
                        .and_then(|s| s.tw_reuse_delay_ms)
                        .map(|ms| f64::from(ms) / 1000.0)
                        .or(Some(1.0)),
                    Some(TimewaitHold::Reusable),
                ),
                (_, Some(s), _) => (Some(s), Some(TimewaitHold::Measured)),
                (_, None, Some(s)) => (Some(s), Some(TimewaitHold::MeasuredElsewhere)),
                (_, None, None) => (
                    timer_ns.map(|ns| ns as f64 / 1e9),
                    timer_ns.map(|_| TimewaitHold::Timer),
                ),
            };
        let lifetime_s = counts.lifetime.seconds();
        let hold_s = match (lifetime_s, closed_locally, timewait_s) {
            (Some(life), Some(share), Some(tw)) => Some(exhaustion::hold_time(life, share, tw)),
            (Some(life), Some(_), None) => Some(life),
            _ => None,
        };
        let sustainable = match (capacity, hold_s) {
            (Some(c), Some(h)) => exhaustion::sustainable_rate(c, h),
            _ => None,
        };
        let rate = counts.recent.rate(now, counts.first_sec.unwrap_or(now));
        let growth = match (counts.held.first(), counts.held.last()) {
            (Some((s0, h0)), Some((s1, h1))) if s1 > s0 => {
                (*h1 as f64 - *h0 as f64) / (s1 - s0) as f64
            }
            _ => 0.0,
        };
        // Ports connect() cannot take now: where tcp_tw_reuse applies, a
        // timewait socket older than the reuse delay is free for the next
        // connect(), so only the youngest count (the new connections of the
        // last delay that this host closed first).
        let blocking = match (tw_reuse, timewait_s) {
            (Some(true), Some(delay)) => {
                let young = (rate * closed_locally.unwrap_or(1.0) * delay).ceil() as u64;
                held.open + held.timewait.min(young)
            }
            _ => held.total(),
        };
        let time_left_s =
            capacity.and_then(|c| exhaustion::time_left(c, blocking, rate, sustainable, growth));
        let elapsed = counts
            .first_sec
            .map_or(0, |first| now.saturating_sub(first))
            .max(1);
        DestReport {
            dest: *dest,
            owners: counts.owners.clone(),
            held,
            capacity,
            usage: capacity.map(|c| exhaustion::usage(blocking, c)),
            tw_reuse,
            connects: counts.connects,
            rate,
            rate_since_start: counts.connects as f64 / elapsed as f64,
            closed_locally,
            lifetime_s,
            timewait_s,
            timewait_hold,
            reused_after_s: counts.tw_reused.seconds(),
            hold_s,
            sustainable,
            time_left_s,
            failed: counts.verdicts[Verdict::NoPort.index()],
            failing: counts
                .no_port_recent
                .any_since(now.saturating_sub(WINDOW_S)),
            verdicts: counts.verdicts,
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
            Fact::Record(_) | Fact::BindFailed(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
