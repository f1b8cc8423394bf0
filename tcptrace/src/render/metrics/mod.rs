//! The metrics a Prometheus server scrapes, rendered at scrape time from the
//! aggregates every summary reports: nothing here runs per event.
//!
//! Conventions: base units (seconds), `_total` counters, states spelled as
//! node_exporter's `node_tcp_connection_states` spells them (`time_wait`),
//! the kernel's netstat/snmp counters named as node_exporter names them
//! (`node_netstat_TcpExt_ListenOverflows` here is
//! `tcptrace_netstat_TcpExt_ListenOverflows`). Namespaces are labelled by
//! inode and name (`ip netns` name or container, never a process); never a
//! pid, an ephemeral port or a 4-tuple. Destinations, listeners and
//! namespaces are capped ([`Limits`]); what is folded is counted.

pub mod exposition;

use std::collections::BTreeMap;

use exposition::{Exposition, Type};

use crate::{
    aggregate::{listeners::Queue, netns::NetnsReport, ports::DestReport, stats::Buckets},
    findings::{Kind, Listener, Severity},
    model::{COUNTERS, NetnsName, Role, Sysctls, TcpState, TwEnd, Verdict},
    report::{Report, STATE_BOUNDS_NS, TIMEWAIT_BOUNDS_S},
};

/// How many label values each capped label may take; the rest are folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Destinations (most used first: port usage, then ports held); the
    /// rest in `destination="other"`.
    pub destinations: usize,
    /// Listeners (by accept queue); the rest are not exported.
    pub listeners: usize,
    /// Namespaces (in inode order); the rest are summed in `netns="other"`
    /// where a sum means something (sockets), else not exported.
    pub namespaces: usize,
}

impl Limits {
    /// The defaults of the `--metrics-*` options.
    pub const DEFAULT: Self = Self {
        destinations: 50,
        listeners: 100,
        namespaces: 100,
    };
}

/// Everything one scrape reports.
pub struct Scrape<'a> {
    /// What a summary would say now (its `ports` capped at
    /// `limits.destinations`, the rest pooled).
    pub report: &'a Report,
    pub limits: Limits,
    /// The previous scrape's render time and series count.
    pub previous: Option<(f64, usize)>,
    /// Connections to the endpoint closed at once: too many were open.
    pub refused_connections: u64,
}

/// A state's name as node_exporter spells it.
fn state_label(state: TcpState) -> String {
    state.name().to_ascii_lowercase()
}

/// A namespace's name label: its `ip netns` name or container (never a
/// process: a pid is not a label), else empty.
fn netns_name(name: Option<&NetnsName>) -> String {
    name.and_then(|n| n.name.clone().or_else(|| n.container.clone()))
        .unwrap_or_default()
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Help of the sysctl series that are the sysctl itself.
const SYSCTL_HELP: &str = "The namespace's sysctl of the same name.";

/// The sysctls exported, as (metric name, help, value).
fn sysctl_values(s: &Sysctls) -> [(&'static str, &'static str, Option<f64>); 10] {
    let reserved: u64 = s
        .reserved_ports
        .iter()
        .map(|(lo, hi)| u64::from(hi.saturating_sub(*lo)) + 1)
        .sum();
    let n = |v: Option<u64>| v.map(|v| v as f64);
    [
        (
            "tcptrace_sysctl_net_ipv4_ip_local_port_range_low",
            "The low end of the namespace's net.ipv4.ip_local_port_range.",
            n(s.port_range.map(|r| r.0.into())),
        ),
        (
            "tcptrace_sysctl_net_ipv4_ip_local_port_range_high",
            "The high end of the namespace's net.ipv4.ip_local_port_range (inclusive).",
            n(s.port_range.map(|r| r.1.into())),
        ),
        (
            "tcptrace_sysctl_net_ipv4_ip_local_reserved_ports",
            "How many ports the namespace's net.ipv4.ip_local_reserved_ports reserves.",
            n(s.port_range.map(|_| reserved)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_tw_reuse",
            SYSCTL_HELP,
            n(s.tw_reuse.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_tw_reuse_delay_seconds",
            "The namespace's net.ipv4.tcp_tw_reuse_delay, in seconds.",
            s.tw_reuse_delay_ms.map(|ms| f64::from(ms) / 1000.0),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_fin_timeout_seconds",
            SYSCTL_HELP,
            n(s.fin_timeout_s.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_max_tw_buckets",
            SYSCTL_HELP,
            n(s.max_tw_buckets),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_max_syn_backlog",
            SYSCTL_HELP,
            n(s.max_syn_backlog.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_core_somaxconn",
            SYSCTL_HELP,
            n(s.somaxconn.map(u64::from)),
        ),
        (
            "tcptrace_sysctl_net_ipv4_tcp_syncookies",
            SYSCTL_HELP,
            n(s.syncookies.map(u64::from)),
        ),
    ]
}

/// The namespaces given labels of their own (the first `limit` in inode
/// order among those seen), with their name labels.
fn labelled_namespaces(s: &Scrape<'_>) -> (BTreeMap<u32, String>, usize) {
    let mut all: BTreeMap<u32, String> = BTreeMap::new();
    for n in &s.report.namespaces {
        all.insert(n.netns, netns_name(n.name.as_ref()));
    }
    for row in &s.report.sockets {
        all.entry(row.netns).or_default();
    }
    if let Some(tw) = &s.report.timewait {
        for (netns, _) in &tw.live {
            all.entry(*netns).or_default();
        }
    }
    let folded = all.len().saturating_sub(s.limits.namespaces);
    (all.into_iter().take(s.limits.namespaces).collect(), folded)
}

/// The exposition of one scrape.
pub fn render(s: &Scrape<'_>) -> (String, usize) {
    let mut e = Exposition::default();
    let (namespaces, folded_netns) = labelled_namespaces(s);
    let ns_label = |netns: u32| -> (String, String) {
        match namespaces.get(&netns) {
            Some(name) => (netns.to_string(), name.clone()),
            None => ("other".into(), String::new()),
        }
    };

    e.family(
        "tcptrace_build_info",
        Type::Gauge,
        "tcptrace's version; always 1.",
    );
    e.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
    e.family(
        "tcptrace_start_time_seconds",
        Type::Gauge,
        "When tracing started, in seconds since the epoch.",
    );
    e.sample(&[], s.report.start_time_s);

    transitions(&mut e, s);
    timewait(&mut e, s);
    sockets(&mut e, s, &ns_label);
    let folded_dest = destinations(
        &mut e,
        &s.report.ports,
        s.report.destinations_tracked,
        &namespaces,
        s.limits,
    );
    let folded_listeners = listeners(&mut e, s, &namespaces);
    let netns_rows: Vec<&NetnsReport> = s
        .report
        .namespaces
        .iter()
        .filter(|n| namespaces.contains_key(&n.netns))
        .collect();
    netns_counters(&mut e, &netns_rows);
    binds(&mut e, s, &ns_label);
    findings(&mut e, s);
    itself(
        &mut e,
        s,
        [
            ("destinations", folded_dest),
            ("listeners", folded_listeners),
            ("namespaces", folded_netns),
        ],
    );
    let series = e.samples();
    (e.finish(), series)
}

fn transitions(e: &mut Exposition, s: &Scrape<'_>) {
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

fn histogram(e: &mut Exposition, labels: &[(&str, &str)], bounds: &[f64], b: &Buckets) {
    e.histogram(labels, bounds, &b.cumulative, b.count, secs(b.sum_ns));
}

fn timewait(e: &mut Exposition, s: &Scrape<'_>) {
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

fn sockets(e: &mut Exposition, s: &Scrape<'_>, ns_label: &dyn Fn(u32) -> (String, String)) {
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

/// One destination's line: its labels and values (those that mean nothing
/// for a sum, such as capacity, are `None` for "other").
struct DestLine {
    labels: [String; 4],
    held: u64,
    capacity: Option<u32>,
    usage: Option<f64>,
    hold_s: Option<f64>,
    sustainable: Option<f64>,
    time_left_s: Option<f64>,
    connects: u64,
    failed: u64,
    verdicts: crate::aggregate::stats::VerdictCounts,
}

/// Per destination: the first `limits.destinations` rows (most used first)
/// with labels of their own, the rest summed into `destination="other"`.
/// Returns how many destinations were folded.
fn destinations(
    e: &mut Exposition,
    rows: &[DestReport],
    tracked: usize,
    namespaces: &BTreeMap<u32, String>,
    limits: Limits,
) -> usize {
    let mut lines: Vec<DestLine> = Vec::new();
    let mut other: Option<DestLine> = None;
    for r in rows {
        if !r.dest.is_other() && lines.len() < limits.destinations {
            lines.push(DestLine {
                labels: [
                    r.dest.netns.to_string(),
                    namespaces.get(&r.dest.netns).cloned().unwrap_or_default(),
                    r.dest.local.to_string(),
                    r.dest.remote.to_string(),
                ],
                held: r.held.total(),
                capacity: r.capacity,
                usage: r.usage,
                hold_s: r.hold_s,
                sustainable: r.sustainable,
                time_left_s: r.time_left_s,
                connects: r.connects,
                failed: r.failed,
                verdicts: r.verdicts,
            });
            continue;
        }
        let o = other.get_or_insert_with(|| DestLine {
            labels: [String::new(), String::new(), String::new(), "other".into()],
            held: 0,
            capacity: None,
            usage: None,
            hold_s: None,
            sustainable: None,
            time_left_s: None,
            connects: 0,
            failed: 0,
            verdicts: Default::default(),
        });
        o.held += r.held.total();
        o.connects += r.connects;
        o.failed += r.failed;
        for (sum, n) in o.verdicts.iter_mut().zip(r.verdicts) {
            *sum += n;
        }
    }
    let folded = tracked.saturating_sub(lines.len());
    lines.extend(other);

    type Get = fn(&DestLine) -> Option<f64>;
    let gauges: [(&str, &'static str, Get); 6] = [
        (
            "tcptrace_destination_ports_held",
            "Local ports held toward a destination now: its open connections and their timewait sockets.",
            |d| Some(d.held as f64),
        ),
        (
            "tcptrace_destination_ports_capacity",
            "Local ports a connect() may choose toward a destination: the ephemeral range less the reserved ports.",
            |d| d.capacity.map(f64::from),
        ),
        (
            "tcptrace_destination_port_usage_ratio",
            "Share of a destination's ports held (only those connect() cannot take over, where tcp_tw_reuse applies).",
            |d| d.usage,
        ),
        (
            "tcptrace_destination_port_hold_seconds",
            "How long a connection holds its port toward a destination: lifetime plus TIME_WAIT.",
            |d| d.hold_s,
        ),
        (
            "tcptrace_destination_sustainable_connects_per_second",
            "Connections per second a destination's ports sustain at the measured hold time.",
            |d| d.sustainable,
        ),
        (
            "tcptrace_destination_exhausted_in_seconds",
            "Seconds until a destination's ports run out at the current growth; absent when not draining.",
            |d| d.time_left_s,
        ),
    ];
    const KEYS: [&str; 4] = ["netns", "netns_name", "local_addr", "destination"];
    let labels = |d: &DestLine| -> Vec<(&'static str, String)> {
        KEYS.iter()
            .zip(&d.labels)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    };
    for (name, help, get) in gauges {
        e.family(name, Type::Gauge, help);
        for d in &lines {
            if let Some(v) = get(d) {
                let l = labels(d);
                e.sample(&as_refs(&l), v);
            }
        }
    }
    type Count = fn(&DestLine) -> u64;
    let counters: [(&str, &'static str, Count); 2] = [
        (
            "tcptrace_destination_connects_total",
            "connect()s toward a destination.",
            |d| d.connects,
        ),
        (
            "tcptrace_destination_connects_failed_no_port_total",
            "connect()s toward a destination that failed for lack of a local port (EADDRNOTAVAIL).",
            |d| d.failed,
        ),
    ];
    // Counters only for destinations of their own: a sum over "other"
    // would go down whenever one leaves it (rate() would see resets).
    let own = || lines.iter().filter(|d| d.labels[3] != "other");
    for (name, help, get) in counters {
        e.family(name, Type::Counter, help);
        for d in own() {
            let l = labels(d);
            e.sample(&as_refs(&l), get(d));
        }
    }
    e.family(
        "tcptrace_destination_connections_closed_total",
        Type::Counter,
        "Connections toward a destination closed, by verdict.",
    );
    for d in own() {
        for v in Verdict::ALL {
            let n = d.verdicts[v.index()];
            if n > 0 {
                let mut l = labels(d);
                l.push(("verdict", v.name().to_owned()));
                e.sample(&as_refs(&l), n);
            }
        }
    }
    folded
}

fn as_refs<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Per listener, fullest first; returns how many were left out.
fn listeners(e: &mut Exposition, s: &Scrape<'_>, namespaces: &BTreeMap<u32, String>) -> usize {
    let mut rows: Vec<&Listener> = s.report.listeners.iter().collect();
    rows.sort_by_key(|l| {
        (
            std::cmp::Reverse((l.queue.max_queued, l.queue.queued)),
            l.netns,
            l.local,
        )
    });
    let folded = rows.len().saturating_sub(s.limits.listeners);
    rows.truncate(s.limits.listeners);
    let labels: Vec<[String; 3]> = rows
        .iter()
        .map(|l| {
            [
                l.netns.to_string(),
                namespaces.get(&l.netns).cloned().unwrap_or_default(),
                l.local.to_string(),
            ]
        })
        .collect();
    type Get = fn(&Queue) -> u64;
    let families: [(&str, Type, &'static str, Get); 4] = [
        (
            "tcptrace_listener_accept_queue",
            Type::Gauge,
            "Connections waiting in a listener's accept queue at the last sample (once a second).",
            |q| q.queued.into(),
        ),
        (
            "tcptrace_listener_accept_queue_limit",
            Type::Gauge,
            "A listener's accept queue limit: the listen() backlog capped by net.core.somaxconn.",
            |q| q.limit.into(),
        ),
        (
            "tcptrace_listener_accept_queue_max",
            Type::Gauge,
            "The most connections seen waiting in a listener's accept queue at one sample since start.",
            |q| q.max_queued.into(),
        ),
        (
            "tcptrace_listener_full_samples_total",
            Type::Counter,
            "Samples that found a listener's accept queue over its limit (the kernel drops SYNs or ACKs then).",
            |q| q.full_samples.into(),
        ),
    ];
    for (name, kind, help, get) in families {
        e.family(name, kind, help);
        for (listener, l) in rows.iter().zip(&labels) {
            e.sample(
                &[("netns", &l[0]), ("netns_name", &l[1]), ("listener", &l[2])],
                get(&listener.queue),
            );
        }
    }
    folded
}

fn netns_counters(e: &mut Exposition, rows: &[&NetnsReport]) {
    for (i, (group, name)) in COUNTERS.iter().enumerate() {
        let metric = format!("tcptrace_netstat_{group}_{name}");
        e.family(
            &metric,
            Type::Untyped,
            "The kernel's counter of the same name in the namespace's /proc/net/netstat or snmp, as node_exporter exports it.",
        );
        for n in rows {
            let (ns, label) = (n.netns.to_string(), netns_name(n.name.as_ref()));
            e.sample(&[("netns", &ns), ("netns_name", &label)], n.now[i]);
        }
    }
    // Each namespace's values once; a family with no value anywhere leaves
    // no header (the exposition writes it with its first sample).
    let with_sysctls: Vec<(&NetnsReport, _)> = rows
        .iter()
        .filter_map(|n| Some((*n, sysctl_values(n.sysctls.as_ref()?))))
        .collect();
    for (i, (name, help, _)) in sysctl_values(&Sysctls::default()).into_iter().enumerate() {
        e.family(name, Type::Gauge, help);
        for (n, values) in &with_sysctls {
            if let Some(v) = values[i].2 {
                let (ns, label) = (n.netns.to_string(), netns_name(n.name.as_ref()));
                e.sample(&[("netns", &ns), ("netns_name", &label)], v);
            }
        }
    }
}

fn binds(e: &mut Exposition, s: &Scrape<'_>, ns_label: &dyn Fn(u32) -> (String, String)) {
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    // Not summed into netns="other": that sum would go down as namespaces
    // come and go.
    for b in &s.report.binds {
        let (ns, name) = ns_label(b.netns);
        if ns != "other" {
            *by.entry((ns, name)).or_default() += b.count;
        }
    }
    e.family(
        "tcptrace_bind_failures_total",
        Type::Counter,
        "bind()s that failed because the address was in use (EADDRINUSE), by namespace.",
    );
    for ((ns, name), n) in &by {
        e.sample(&[("netns", ns), ("netns_name", name)], *n);
    }
}

fn findings(e: &mut Exposition, s: &Scrape<'_>) {
    e.family(
        "tcptrace_findings",
        Type::Gauge,
        "What tcptrace finds wrong now (as `tcptrace diagnose` says it), by kind and severity.",
    );
    for kind in Kind::ALL {
        for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
            let n = s
                .report
                .findings
                .iter()
                .filter(|f| f.kind == kind && f.severity == severity)
                .count() as u64;
            e.sample(&[("kind", kind.name()), ("severity", severity.name())], n);
        }
    }
}

fn itself(e: &mut Exposition, s: &Scrape<'_>, folded: [(&str, usize); 3]) {
    let t = &s.report.totals;
    e.family(
        "tcptrace_events_lost_total",
        Type::Counter,
        "Records tcptrace did not get: ring buffer full (by record kind), too short to decode, or runs of its programs the kernel skipped (bpf_recursion: of every program, mostly timers that were not timewait timers, so an upper bound).",
    );
    for (kind, n) in t.lost.iter() {
        e.sample(&[("reason", "ring_full"), ("kind", kind.name())], n);
    }
    e.sample(&[("reason", "bpf_recursion")], t.recursion_misses);
    e.sample(&[("reason", "undecodable")], t.undecodable);
    e.family(
        "tcptrace_records_received_total",
        Type::Counter,
        "Records tcptrace got from the kernel side, by kind (with the ring_full losses of the same kind: all it caused).",
    );
    for (kind, n) in s.report.received.iter() {
        e.sample(&[("kind", kind.name())], n);
    }
    e.family(
        "tcptrace_connections_missed_records_total",
        Type::Counter,
        "Connections closed that missed records lost by the kernel side: their verdict is unknown where those would have told, their durations partial.",
    );
    e.sample(&[], s.report.counts.missed);
    e.family(
        "tcptrace_sockets_not_followed_total",
        Type::Counter,
        "Sockets tcptrace could not follow: connections beyond --max-sockets (unknown durations, no verdict), timewait sockets beyond twice that (TIME_WAIT not measured).",
    );
    e.sample(&[("kind", "connection")], t.untracked_conns);
    e.sample(&[("kind", "timewait")], t.untracked_timewaits);
    e.family(
        "tcptrace_destinations_folded_connections_total",
        Type::Counter,
        "Connections counted under destination \"other\" because the destination table (4096) was full.",
    );
    e.sample(&[], s.report.folded_connections);
    e.family(
        "tcptrace_metrics_label_values_folded",
        Type::Gauge,
        "Label values left out of this scrape by the --metrics-* caps (folded into \"other\", or not exported).",
    );
    for (what, n) in folded {
        e.sample(&[("label", what)], n as u64);
    }
    e.family(
        "tcptrace_metrics_connections_refused_total",
        Type::Counter,
        "Connections to the metrics endpoint closed at once because too many were open.",
    );
    e.sample(&[], s.refused_connections);
    if let Some((duration, series)) = s.previous {
        e.family(
            "tcptrace_scrape_duration_seconds",
            Type::Gauge,
            "How long rendering the previous scrape took.",
        );
        e.sample(&[], duration);
        e.family(
            "tcptrace_scrape_series",
            Type::Gauge,
            "Samples the previous scrape held.",
        );
        e.sample(&[], series as u64);
    }
}

#[cfg(test)]
mod tests;
