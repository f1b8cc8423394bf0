//! What tcptrace finds, and tcptrace itself: losses, caps, the endpoint, the scrape.

use super::*;

pub(super) fn findings(e: &mut Exposition, s: &Scrape<'_>) {
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

pub(super) fn itself(e: &mut Exposition, s: &Scrape<'_>, folded: [(&str, usize); 3]) {
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
        "Records tcptrace got from the kernel side, by kind (with the ring_full losses of the same kind: all it caused); for the kinds the kernel side counts itself (retransmits, SYN-ACK retransmits, resets for no socket), what it counted.",
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
