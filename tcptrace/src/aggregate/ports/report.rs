//! Each destination's row: the arithmetic of port exhaustion applied to
//! what was counted toward it, the most used first and the rest pooled.

use super::*;

/// What every row of one report shares.
#[derive(Clone, Copy)]
struct At {
    /// TIME_WAIT as measured toward every destination, for those with no
    /// expiry of their own yet.
    everywhere: Mean,
    /// The TIME_WAIT timer as last armed.
    timer_ns: Option<u64>,
    /// Now, in seconds.
    now: u64,
}

impl Ports {
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
        let at = At {
            everywhere,
            timer_ns,
            now,
        };
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
                    rows.push(row(dest, &self.dests[dest], h, sysctls(dest.netns), &at));
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
            let (mut rate, mut retransmit_rate) = (0.0, 0.0);
            for dest in &rest {
                let c = &self.dests[*dest];
                pooled.merge(c);
                rate += c.recent.rate(now, c.first_sec.unwrap_or(now));
                retransmit_rate += c.retransmits_recent.rate(now, c.first_sec.unwrap_or(now));
                let h = held.get(*dest).copied().unwrap_or_default();
                pooled_held.open += h.open;
                pooled_held.timewait += h.timewait;
            }
            let mut other = row(&Dest::OTHER, &pooled, pooled_held, None, &at);
            other.rate += rate;
            other.retransmit_rate += retransmit_rate;
            other.owners.clear();
            rows.push(other);
        }
        rows
    }
}

/// One destination's row.
fn row(dest: &Dest, counts: &Counts, held: Held, sysctls: Option<&Sysctls>, at: &At) -> DestReport {
    let At {
        everywhere,
        timer_ns,
        now,
    } = *at;
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
    let local =
        counts.verdicts[Verdict::Local.index()] + counts.verdicts[Verdict::Simultaneous.index()];
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
        (Some((s0, h0)), Some((s1, h1))) if s1 > s0 => (*h1 as f64 - *h0 as f64) / (s1 - s0) as f64,
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
        syn_retried: counts.syn_retried,
        syn_retransmits: counts.syn_retransmits,
        connect_latency: counts.connect_latency,
        retransmits: counts.retransmits,
        retransmit_rate: counts
            .retransmits_recent
            .rate(now, counts.first_sec.unwrap_or(now)),
        reset_reasons: counts.reset_reasons.clone(),
    }
}
