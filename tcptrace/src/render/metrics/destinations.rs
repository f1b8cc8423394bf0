//! Per destination: ports held, capacity, hold time, time left, connects and their verdicts.

use super::*;
use crate::aggregate::ports::{CONNECT_BOUNDS_S, ConnectLatency};

/// One destination's line: its labels and values (those that mean nothing
/// for a sum, such as capacity, are `None` for "other").
pub(super) struct DestLine {
    labels: [String; 4],
    held: u64,
    capacity: Option<u32>,
    usage: Option<f64>,
    hold_s: Option<f64>,
    sustainable: Option<f64>,
    time_left_s: Option<f64>,
    connects: u64,
    failed: u64,
    syn_retried: u64,
    syn_retransmits: u64,
    retransmits: u64,
    connect_latency: ConnectLatency,
    verdicts: crate::aggregate::stats::VerdictCounts,
}

/// Per destination: the first `limits.destinations` rows (most used first)
/// with labels of their own, the rest summed into `destination="other"`.
/// Returns how many destinations were folded.
pub(super) fn destinations(
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
                syn_retried: r.syn_retried,
                syn_retransmits: r.syn_retransmits,
                retransmits: r.retransmits,
                connect_latency: r.connect_latency,
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
            syn_retried: 0,
            syn_retransmits: 0,
            retransmits: 0,
            connect_latency: ConnectLatency::default(),
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
    let counters: [(&str, &'static str, Count); 5] = [
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
        (
            "tcptrace_destination_connects_syn_retransmitted_total",
            "connect()s toward a destination whose SYN was retransmitted (each stalled a second or more).",
            |d| d.syn_retried,
        ),
        (
            "tcptrace_destination_syn_retransmits_total",
            "SYN retransmits of the connect()s toward a destination.",
            |d| d.syn_retransmits,
        ),
        (
            "tcptrace_destination_retransmits_total",
            "Segments (data, FIN) retransmitted toward a destination: packets lost on the way or not acknowledged in time.",
            |d| d.retransmits,
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
        "tcptrace_destination_connect_seconds",
        Type::Histogram,
        "Time to connect toward a destination (SYN_SENT to ESTABLISHED): a retransmitted SYN adds 1 s, then 2 s, 4 s.",
    );
    for d in own() {
        let l = labels(d);
        let c = &d.connect_latency;
        e.histogram(
            &as_refs(&l),
            &CONNECT_BOUNDS_S,
            &c.cumulative(),
            c.total(),
            c.sum_s,
        );
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

pub(super) fn as_refs<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
