//! TCP itself: transitions, closes by verdict, times in state, TIME_WAIT, the sockets now.

use super::*;

pub(super) fn transitions(e: &mut Exposition, s: &Scrape<'_>) {
    let counts = &s.report.counts;
    e.family(
        "tcptrace_transitions_total",
        Type::Counter,
        "TCP state transitions seen, by old and new state (timewait sockets included).",
    );
    for old in TcpState::ALL {
        for new in TcpState::ALL {
            let n = counts.transitions[old.index()][new.index()];
            if n > 0 {
                let (old, new) = (state_label(old), state_label(new));
                e.sample(&[("old_state", &old), ("new_state", &new)], n);
            }
        }
    }
    e.family(
        "tcptrace_connections_closed_total",
        Type::Counter,
        "Connections closed, by verdict (who closed first, or how it failed) and role (active: this host connected).",
    );
    for role in Role::ALL {
        for verdict in Verdict::ALL {
            let n = counts.by_role[role.index()][verdict.index()];
            if n > 0 || role != Role::Unknown {
                e.sample(&[("verdict", verdict.name()), ("role", role.name())], n);
            }
        }
    }
    e.family(
        "tcptrace_state_duration_seconds",
        Type::Histogram,
        "Time spent in a state before leaving it, as measured in the kernel (log2 buckets).",
    );
    let bounds: Vec<f64> = STATE_BOUNDS_NS.iter().map(|&ns| secs(ns)).collect();
    for row in &counts.states {
        histogram(
            e,
            &[("state", &state_label(row.state))],
            &bounds,
            &row.buckets,
        );
    }
}

/// The resets this host sent on connections, by the kernel's reason; and
/// for no socket, by local port (as many as listeners are labelled, the
/// rest summed as "other").
pub(super) fn resets(e: &mut Exposition, s: &Scrape<'_>) {
    let resets = &s.report.resets;
    e.family(
        "tcptrace_resets_sent_total",
        Type::Counter,
        "RSTs this host sent on the connections that closed, by the kernel's reason (enum sk_rst_reason, as its tcp_send_reset tracepoint names it).",
    );
    for &(reason, n) in &resets.sent {
        e.sample(&[("reason", &resets.names.name(reason))], n);
    }
    e.family(
        "tcptrace_resets_no_socket_total",
        Type::Counter,
        "RSTs this host sent for no socket (a SYN or segment to a port nobody listens on, or to a connection it forgot), by local port.",
    );
    let (mut other, mut shown) = (0, 0);
    for &(port, n) in &resets.no_socket {
        if port == 0 || shown == s.limits.listeners {
            other += n;
        } else {
            shown += 1;
            e.sample(&[("port", &port.to_string())], n);
        }
    }
    if other > 0 {
        e.sample(&[("port", "other")], other);
    }
}

/// SYN-ACKs retransmitted by listener port, in as many namespaces as are
/// labelled, as many ports as listeners are (the rest left out, as the
/// listeners' own series are).
pub(super) fn synacks(
    e: &mut Exposition,
    s: &Scrape<'_>,
    ns_label: &dyn Fn(u32) -> (String, String),
) {
    e.family(
        "tcptrace_synack_retransmits_total",
        Type::Counter,
        "SYN-ACKs a listener retransmitted: clients that did not complete the handshake (a SYN flood, or ACKs lost on the way), by namespace and port.",
    );
    for &((netns, port), n) in s.report.synack_retransmits.iter().take(s.limits.listeners) {
        if (netns, port) != (0, 0) {
            let (ns, name) = ns_label(netns);
            e.sample(
                &[
                    ("netns", &ns),
                    ("netns_name", &name),
                    ("port", &port.to_string()),
                ],
                n,
            );
        }
    }
}

pub(super) fn histogram(e: &mut Exposition, labels: &[(&str, &str)], bounds: &[f64], b: &Buckets) {
    e.histogram(labels, bounds, &b.cumulative, b.count, secs(b.sum_ns));
}

pub(super) fn timewait(e: &mut Exposition, s: &Scrape<'_>) {
    let Some(tw) = &s.report.timewait else {
        return;
    };
    e.family(
        "tcptrace_timewait_duration_seconds",
        Type::Histogram,
        "How long TIME_WAIT really lasted, by how it ended (expired: its timer ran out).",
    );
    for (reason, b) in TwEnd::ALL.iter().zip(&tw.lasted) {
        histogram(e, &[("reason", reason.name())], &TIMEWAIT_BOUNDS_S, b);
    }
    e.family(
        "tcptrace_timewait_ended_total",
        Type::Counter,
        "Timewait sockets ended (FIN_WAIT2 orphans included), by reason.",
    );
    for reason in TwEnd::ALL {
        e.sample(&[("reason", reason.name())], tw.ends[reason.index()]);
    }
    e.family(
        "tcptrace_timewait_timer_rearms_total",
        Type::Counter,
        "Re-arms of the timers of the timewait sockets that ended (a retransmitted FIN extends TIME_WAIT).",
    );
    e.sample(&[], tw.rearms);
    if let Some(ns) = tw.timer_ns {
        e.family(
            "tcptrace_timewait_timer_seconds",
            Type::Gauge,
            "Length of the TIME_WAIT timer last armed.",
        );
        e.sample(&[], secs(ns));
    }
}

pub(super) fn sockets(
    e: &mut Exposition,
    s: &Scrape<'_>,
    ns_label: &dyn Fn(u32) -> (String, String),
) {
    // (netns label, name label, state) -> (count, oldest ns)
    let mut rows: BTreeMap<(String, String, String), (u64, Option<u64>)> = BTreeMap::new();
    let mut add = |netns: u32, state: TcpState, count: u64, oldest: Option<u64>| {
        let (ns, name) = ns_label(netns);
        let row = rows.entry((ns, name, state_label(state))).or_default();
        row.0 += count;
        row.1 = row.1.max(oldest);
    };
    for r in &s.report.sockets {
        add(r.netns, r.state, r.count, r.oldest_ns);
    }
    if let Some(tw) = &s.report.timewait {
        for (netns, c) in &tw.live {
            add(*netns, TcpState::TimeWait, c.time_wait, None);
            if c.fin_wait2 > 0 {
                add(*netns, TcpState::FinWait2, c.fin_wait2, None);
            }
        }
    }
    e.family(
        "tcptrace_sockets",
        Type::Gauge,
        "TCP connections now, by namespace and state: full sockets (listeners are in tcptrace_listener_*), timewait sockets and FIN_WAIT2 orphans, as ss counts them.",
    );
    for ((ns, name, state), (count, _)) in &rows {
        e.sample(
            &[("netns", ns), ("netns_name", name), ("state", state)],
            *count,
        );
    }
    e.family(
        "tcptrace_oldest_socket_age_seconds",
        Type::Gauge,
        "How long the oldest full socket in each state has been in it (a CLOSE_WAIT that never closes grows here); for sockets older than tcptrace, at least the time since it started.",
    );
    for ((ns, name, state), (_, oldest)) in &rows {
        if let Some(ns_age) = oldest {
            e.sample(
                &[("netns", ns), ("netns_name", name), ("state", state)],
                secs(*ns_age),
            );
        }
    }
}
