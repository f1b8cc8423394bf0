//! The rules, one function each, over the `Evidence` of one summary, in a
//! file per subject; the wording they share is here. The thresholds are
//! here, named, and listed in `THRESHOLDS` (tcptrace/doc/findings.md).

mod binds;
mod closing;
mod ports;
mod queues;
mod timewait;

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    aggregate::{
        netns::NetnsReport,
        ports::{CONNECT_BOUNDS_S, DestReport, SLOW_CONNECT, TimewaitHold},
        stats::ProcessKey,
    },
    findings::{Evidence, Finding, Kind, Severity},
    model::{COUNTERS, Comm, Pids, Verdict},
    words,
};

/// Port usage toward a destination that is worth a warning.
const USAGE_WARNING: f64 = 0.5;
/// A destination that runs out within this many seconds is worth a warning
/// whatever its usage now.
const RUNS_OUT_WARNING_S: f64 = 600.0;
/// Timewait sockets on a server's side worth a word (info only).
const SERVER_TIMEWAIT_INFO: u64 = 100;
/// A CLOSE_WAIT this old is not a connection being closed: it is a leak.
const CLOSE_WAIT_AGE_S: f64 = 30.0;
/// This many connections leaked in CLOSE_WAIT is critical (file descriptors
/// and memory run out).
const CLOSE_WAIT_CRITICAL: u64 = 1000;
/// Resets worth a word: at least this many, and this share of the
/// service's connections; a warning from this many a second (below it,
/// the pace of health checks: info). The pace is the faster of the run's
/// and its worst minute's.
const ABORTS_MIN: u64 = 20;
const ABORTS_SHARE: f64 = 0.1;
const ABORTS_RATE: f64 = 1.0;
/// Connects refused or failing toward a destination worth a warning.
const FAILED_CONNECTS_MIN: u64 = 5;
const FAILED_CONNECTS_SHARE: f64 = 0.2;
/// Connects that stalled on a retransmitted SYN worth a warning: at least
/// this many, and this share of the connects toward a destination.
const SYN_RETRIED_MIN: u64 = 5;
const SYN_RETRIED_SHARE: f64 = 0.1;
/// SYN-ACKs a listener retransmitted worth a warning.
const SYNACK_RETRANSMITS_MIN: u64 = 10;
/// Segments retransmitted toward a destination worth a warning: at least
/// this many, at this pace (over the run, or its last seconds), this many
/// per connection (a busy healthy path retransmits now and then: PostgreSQL
/// under `pgbench -C` across a veth, 20 in 571 connections), and this many
/// times more per connection than toward the other destinations.
const RETRANSMITS_MIN: u64 = 20;
const RETRANSMITS_RATE: f64 = 0.2;
const RETRANSMITS_PER_CONNECTION: f64 = 0.5;
const RETRANSMITS_STANDOUT: f64 = 3.0;

/// The thresholds, for the documentation: (what, value).
pub const THRESHOLDS: [(&str, &str); 13] = [
    ("port usage toward a destination (warning)", "50 %"),
    ("ports run out within (warning)", "600 s"),
    ("connects failing for lack of a port (critical)", "any"),
    ("timewait sockets on a server's side (info)", "100"),
    (
        "age of the oldest CLOSE_WAIT (warning; 1000 connections: critical)",
        "30 s",
    ),
    (
        "resets sent or received by a service (all its processes) (warning)",
        "20 and 10 % of its connections",
    ),
    (
        "resets slower than this are said as the pace of health checks (info)",
        "1 a second",
    ),
    (
        "connects refused or failing toward a destination (warning)",
        "5 and 20 % of its connects",
    ),
    (
        "connects whose SYN was retransmitted toward a destination (warning)",
        "5 and 10 % of its connects",
    ),
    ("SYN-ACKs retransmitted by a listener (warning)", "10"),
    (
        "segments retransmitted toward a destination (warning)",
        "20, 0.2 a second, 0.5 per connection, and 3 times the others' per connection",
    ),
    (
        "TcpExtTCPTimeWaitOverflow, ListenOverflows, SYN cookies or SYN drops (warning)",
        "any since start",
    ),
    ("failed binds, EADDRINUSE (warning)", "any"),
];

pub(super) fn all(ev: &Evidence<'_>) -> Vec<Finding> {
    use self::{
        binds::binds_in_use,
        closing::{aborts, close_wait_leaks},
        ports::{port_exhaustion, retransmits, syn_retransmits, upstream_failures},
        queues::{listen_overflow, syn_queue, synack_retransmits},
        timewait::{server_timewait, timewait_overflow},
    };
    let mut found = Vec::new();
    found.extend(ev.ports.iter().filter_map(|r| port_exhaustion(ev, r)));
    found.extend(ev.ports.iter().filter_map(|r| upstream_failures(ev, r)));
    found.extend(ev.ports.iter().filter_map(|r| syn_retransmits(ev, r)));
    found.extend(ev.ports.iter().filter_map(|r| retransmits(ev, r)));
    found.extend(server_timewait(ev));
    found.extend(ev.namespaces.iter().filter_map(timewait_overflow));
    found.extend(close_wait_leaks(ev));
    found.extend(aborts(ev));
    found.extend(ev.namespaces.iter().filter_map(|n| listen_overflow(ev, n)));
    found.extend(ev.namespaces.iter().filter_map(syn_queue));
    found.extend(synack_retransmits(ev));
    found.extend(binds_in_use(ev));
    found
}

fn process(key: &ProcessKey) -> String {
    words::process(key, "an unknown process")
}

/// A service as a finding names it: "nginx (4 processes: ...)", or the pid
/// where one process is the culprit.
fn service(comm: Option<&Comm>, pids: &Pids) -> String {
    comm.map_or_else(
        || "an unknown process".into(),
        |comm| words::service(comm, pids),
    )
}

/// A service's numbers: `pid` only where it is one process (the field
/// predates services), and its processes.
fn service_numbers(
    netns: Option<u32>,
    comm: Option<&Comm>,
    pids: &Pids,
) -> Vec<(&'static str, Value)> {
    vec![
        ("netns", json!(netns)),
        ("pid", json!(pids.single())),
        ("comm", json!(comm.map(|c| c.as_str().into_owned()))),
        ("processes", json!(pids.count())),
        ("processes_capped", json!(pids.capped())),
        ("pids", json!(pids.examples())),
    ]
}

fn owners(r: &DestReport) -> String {
    words::owners(&r.owners, false, ", ", "an unknown process")
}

fn namespace(ev: &Evidence<'_>, netns: u32) -> String {
    match ev
        .namespaces
        .iter()
        .find(|n| n.netns == netns)
        .and_then(|n| n.name.as_ref()?.label())
    {
        Some(name) => format!("netns {netns} ({name})"),
        None => format!("netns {netns}"),
    }
}

fn netns_report<'a>(ev: &Evidence<'a>, netns: u32) -> Option<&'a NetnsReport> {
    ev.namespaces.iter().find(|n| n.netns == netns)
}

fn secs(s: f64) -> String {
    match s {
        s if s >= 100.0 => format!("{s:.0} s"),
        s if s >= 1.0 => format!("{s:.1} s"),
        s => format!("{:.1} ms", s * 1000.0),
    }
}

fn counter(n: &NetnsReport, name: &str) -> u64 {
    COUNTERS
        .iter()
        .position(|(_, c)| *c == name)
        .map_or(0, |i| n.since_start[i])
}

/// The myth worth saying when a namespace's `tcp_fin_timeout` was lowered in
/// the hope of shortening TIME_WAIT.
fn fin_timeout_myth(
    n: Option<&NetnsReport>,
    tw_s: Option<f64>,
    hold: Option<TimewaitHold>,
) -> Option<String> {
    let fin = n?.sysctls.as_ref()?.fin_timeout_s?;
    (fin != 60).then(|| {
        let how = match hold {
            Some(TimewaitHold::Measured | TimewaitHold::MeasuredElsewhere) => "measured here",
            _ => "the timer here",
        };
        let measured = tw_s.map_or_else(String::new, |s| format!(" ({how}: {})", secs(s)));
        format!(
            "net.ipv4.tcp_fin_timeout is {fin} s in this namespace: it does not shorten TIME_WAIT. It is \
             the timeout of orphaned sockets in FIN_WAIT2; TIME_WAIT is fixed at 60 s{measured}."
        )
    })
}
