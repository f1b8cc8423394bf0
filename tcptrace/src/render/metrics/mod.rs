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

mod destinations;
pub mod exposition;
mod itself;
mod namespaces;
mod states;

use std::collections::BTreeMap;

use exposition::{Exposition, Type};

use self::{
    destinations::destinations,
    itself::{findings, itself},
    namespaces::{binds, listeners, netns_counters},
    states::{resets, sockets, synacks, timewait, transitions},
};

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
    resets(&mut e, s);
    timewait(&mut e, s);
    sockets(&mut e, s, &ns_label);
    synacks(&mut e, s, &ns_label);
    let folded_dest = destinations(
        &mut e,
        &s.report.ports,
        s.report.destinations_tracked,
        &namespaces,
        s.limits,
    );
    e.family(
        "tcptrace_retransmits_elsewhere_total",
        Type::Counter,
        "Segments retransmitted toward remotes that are not destinations of this host's connects (a server's clients, connections older than the trace).",
    );
    e.sample(&[], s.report.retransmits_elsewhere);
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

#[cfg(test)]
mod tests;
