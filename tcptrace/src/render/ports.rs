//! The PORTS and NAMESPACES sections of the summaries (text and JSON), and
//! the live warning when a destination's ephemeral ports run low.

use std::{fmt::Write as _, io};

use serde_json::{Map, Value, json};

use crate::{
    aggregate::{
        netns::NetnsReport,
        ports::{CONNECT_BOUNDS_S, DestReport, Level},
        stats::VerdictCounts,
    },
    model::{COUNTERS, NetnsName, ReasonCounts, ResetNames, Verdict},
    words::{self, netns_label, push_endpoint},
};

pub(crate) fn seconds(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 100.0 => format!("{s:.0} s"),
        Some(s) if s >= 1.0 || s == 0.0 => format!("{s:.1} s"),
        Some(s) if s >= 0.001 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{:.0} µs", s * 1e6),
        None => "-".into(),
    }
}

fn per_second(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.1}"))
}

/// (local address, remote endpoint) as the live log spells them.
fn endpoints(r: &DestReport) -> (String, String) {
    if r.dest.is_other() {
        return ("(other".into(), "destinations)".into());
    }
    let mut local = String::new();
    let _ = words::push_ip(&mut local, r.dest.local);
    let mut remote = String::new();
    push_endpoint(&mut remote, &r.dest.remote);
    (local, remote)
}

/// "10.0.0.2 to 10.0.0.1:80".
fn destination(r: &DestReport) -> String {
    let (local, remote) = endpoints(r);
    format!("{local} to {remote}")
}

fn owners(r: &DestReport) -> String {
    words::owners(&r.owners, true, ",", "-")
}

/// The warning line (stderr) for a destination whose level rose.
pub fn alert_line(level: Level, r: &DestReport, netns_name: Option<&str>) -> String {
    let mut line = format!(
        "ports: netns {} {}: ",
        netns_label(r.dest.netns, netns_name),
        destination(r)
    );
    let held = format!(
        "{} of {} ephemeral ports held ({} open, {} in TIME_WAIT)",
        r.held.total(),
        r.capacity.map_or_else(|| "?".into(), |c| c.to_string()),
        r.held.open,
        r.held.timewait
    );
    match level {
        Level::Failing => {
            let _ = write!(
                line,
                "connect() fails for lack of a local port (EADDRNOTAVAIL, {} so far); {held}",
                r.failed
            );
        }
        _ => {
            let _ = write!(line, "{:.0}% used: {held}", r.usage.unwrap_or(0.0) * 100.0);
        }
    }
    let _ = write!(
        line,
        "; {} new connections/s by {}, sustainable {}/s (each port held {})",
        per_second(Some(r.rate)),
        owners(r),
        per_second(r.sustainable),
        seconds(r.hold_s)
    );
    if let Some(left) = r.time_left_s.filter(|s| *s > 0.0) {
        let _ = write!(line, "; exhausted in ~{}", seconds(Some(left)));
    }
    line
}

/// The PORTS section.
pub fn write_text<W: io::Write>(
    out: &mut W,
    rows: &[DestReport],
    name: impl Fn(u32) -> Option<String>,
) -> io::Result<()> {
    writeln!(
        out,
        "\nPORTS (ephemeral ports per destination this host connects to, most used first)"
    )?;
    if rows.is_empty() {
        return writeln!(out, "  no outgoing connections seen");
    }
    writeln!(
        out,
        "  {:<22} {:<15} {:<21} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8} {:>9} {:>7} {:>8} {:>7}  PROCESS",
        "NETNS",
        "LOCAL",
        "REMOTE",
        "HELD",
        "OPEN",
        "TW",
        "CAP",
        "USE%",
        "NEW/S",
        "LOCAL1ST",
        "HOLD",
        "MAX/S",
        "LEFT",
        "NO-PORT"
    )?;
    for r in rows {
        let (local, remote) = endpoints(r);
        let netns = match r.dest.is_other() {
            true => "-".into(),
            false => netns_label(r.dest.netns, name(r.dest.netns).as_deref()),
        };
        writeln!(
            out,
            "  {:<22} {:<15} {:<21} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8} {:>9} {:>7} {:>8} {:>7}  {}",
            netns,
            local,
            remote,
            r.held.total(),
            r.held.open,
            r.held.timewait,
            r.capacity.map_or_else(|| "?".into(), |c| c.to_string()),
            r.usage
                .map_or_else(|| "?".into(), |u| format!("{:.1}", u * 100.0)),
            per_second(Some(r.rate)),
            r.closed_locally
                .map_or_else(|| "-".into(), |s| format!("{:.0}%", s * 100.0)),
            seconds(r.hold_s),
            per_second(r.sustainable),
            r.time_left_s
                .map_or_else(|| "-".into(), |s| seconds(Some(s))),
            r.failed,
            owners(r)
        )?;
        if let Some(hold) = r.timewait_hold
            && !r.dest.is_other()
        {
            let reuse = match r.tw_reuse {
                Some(true) => "tcp_tw_reuse applies",
                Some(false) => "tcp_tw_reuse does not apply",
                None => "tcp_tw_reuse unknown",
            };
            let mut note = format!(
                "      held = lifetime {} + TIME_WAIT {} ({}), {reuse}",
                seconds(r.lifetime_s),
                seconds(r.timewait_s),
                hold.name()
            );
            if let Some(s) = r.reused_after_s {
                let _ = write!(
                    note,
                    "; timewait sockets reused after {} on average",
                    seconds(Some(s))
                );
            }
            if r.failing {
                note.push_str("; CONNECTS FAILING NOW (EADDRNOTAVAIL)");
            }
            writeln!(out, "{note}")?;
        }
    }
    Ok(())
}

/// The NAMESPACES section.
pub fn write_namespaces<W: io::Write>(out: &mut W, namespaces: &[NetnsReport]) -> io::Result<()> {
    if namespaces.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nNAMESPACES (sysctls; kernel counters since start, since the last summary)"
    )?;
    for n in namespaces {
        let name = n.name.as_ref().and_then(NetnsName::label);
        let mut line = format!("  {}", netns_label(n.netns, name.as_deref()));
        if let Some(s) = &n.sysctls {
            if let Some((lo, hi)) = s.port_range {
                let capacity = crate::aggregate::exhaustion::capacity((lo, hi), &s.reserved_ports);
                let _ = write!(line, ": ports {lo}-{hi} ({capacity} usable)");
            }
            let mut more = |label: &str, v: Option<String>| {
                if let Some(v) = v {
                    let _ = write!(line, ", {label} {v}");
                }
            };
            more("tcp_tw_reuse", s.tw_reuse.map(|v| v.to_string()));
            more("tcp_timestamps", s.timestamps.map(|v| v.to_string()));
            more("tcp_fin_timeout", s.fin_timeout_s.map(|v| format!("{v} s")));
            more(
                "tcp_max_tw_buckets",
                s.max_tw_buckets.map(|v| v.to_string()),
            );
            more("somaxconn", s.somaxconn.map(|v| v.to_string()));
            more(
                "tcp_max_syn_backlog",
                s.max_syn_backlog.map(|v| v.to_string()),
            );
            more("tcp_syncookies", s.syncookies.map(|v| v.to_string()));
        }
        writeln!(out, "{line}")?;
        for (label, values) in [
            ("since start", &n.since_start),
            ("since last summary", &n.since_last_summary),
        ] {
            let nonzero: Vec<String> = COUNTERS
                .iter()
                .zip(values)
                .filter(|(_, v)| **v > 0)
                .map(|((group, name), v)| format!("{group}{name} {v}"))
                .collect();
            if !nonzero.is_empty() {
                writeln!(out, "    {label}: {}", nonzero.join(" "))?;
            }
        }
    }
    Ok(())
}

fn verdicts(counts: &VerdictCounts) -> Value {
    Value::Object(
        Verdict::ALL
            .iter()
            .map(|v| (v.name().to_owned(), json!(counts[v.index()])))
            .collect(),
    )
}

/// Resets by reason, most first, named by the kernel.
pub fn reasons_json(reasons: &ReasonCounts, names: &ResetNames) -> Map<String, Value> {
    reasons
        .most_first()
        .into_iter()
        .map(|(reason, n)| (names.name(reason), n.into()))
        .collect()
}

fn ns(s: Option<f64>) -> Value {
    s.map_or(Value::Null, |s| json!((s * 1e9).round() as u64))
}

/// One destination as a JSON object (the `ports` array, the alerts).
pub fn dest_json(r: &DestReport, netns_name: Option<&str>, names: &ResetNames) -> Value {
    let other = r.dest.is_other();
    json!({
        "other": other,
        "netns": (!other).then_some(r.dest.netns),
        "netns_name": netns_name,
        "laddr": (!other).then(|| r.dest.local.to_string()),
        "raddr": (!other).then(|| r.dest.remote.ip().to_string()),
        "rport": (!other).then_some(r.dest.remote.port()),
        // One per example process, as before services; then by service.
        "owners": r.owners.iter().flat_map(|(comm, pids)| {
            pids.examples().iter().map(move |pid| json!({"pid": pid, "comm": comm.as_str()}))
        }).collect::<Vec<_>>(),
        "services": r.owners.iter().map(|(comm, pids)| json!({
            "comm": comm.as_str(), "processes": pids.count(),
            "processes_capped": pids.capped(), "pids": pids.examples(),
        })).collect::<Vec<_>>(),
        "held": r.held.total(),
        "open": r.held.open,
        "timewait": r.held.timewait,
        "capacity": r.capacity,
        "usage": r.usage,
        "tw_reuse": r.tw_reuse,
        "connects": r.connects,
        "rate_per_s": r.rate,
        "rate_since_start_per_s": r.rate_since_start,
        "closed_locally": r.closed_locally,
        "lifetime_ns": ns(r.lifetime_s),
        "timewait_ns": ns(r.timewait_s),
        "timewait_hold": r.timewait_hold.map(|h| h.name()),
        "reused_after_ns": ns(r.reused_after_s),
        "hold_ns": ns(r.hold_s),
        "sustainable_per_s": r.sustainable,
        "time_left_ns": ns(r.time_left_s),
        "failed_connects": r.failed,
        "failing": r.failing,
        "syn_retried": r.syn_retried,
        "syn_retransmits": r.syn_retransmits,
        "connect_seconds": {
            "bounds": CONNECT_BOUNDS_S,
            "counts": r.connect_latency.counts,
            "sum": r.connect_latency.sum_s,
        },
        "retransmits": r.retransmits,
        "retransmits_per_s": r.retransmit_rate,
        "reset_reasons": reasons_json(&r.reset_reasons, names),
        "verdicts": verdicts(&r.verdicts),
    })
}

/// The `ports` array of a JSON summary.
pub fn ports_json(
    rows: &[DestReport],
    name: impl Fn(u32) -> Option<String>,
    names: &ResetNames,
) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| dest_json(r, name(r.dest.netns).as_deref(), names))
            .collect(),
    )
}

/// The `namespaces` array of a JSON summary.
pub fn namespaces_json(namespaces: &[NetnsReport]) -> Value {
    let counters = |values: &[u64]| -> Value {
        let map: Map<String, Value> = COUNTERS
            .iter()
            .zip(values)
            .map(|((group, name), v)| (format!("{group}{name}"), json!(v)))
            .collect();
        Value::Object(map)
    };
    Value::Array(
        namespaces
            .iter()
            .map(|n| {
                let name = n.name.as_ref();
                json!({
                    "netns": n.netns,
                    "name": name.and_then(NetnsName::label),
                    "ip_netns": name.and_then(|n| n.name.clone()),
                    "pid": name.and_then(|n| n.process.as_ref().map(|p| p.0)),
                    "comm": name.and_then(|n| n.process.as_ref().map(|p| p.1.clone())),
                    "container": name.and_then(|n| n.container.clone()),
                    "sysctls": n.sysctls.as_ref().map(|s| json!({
                        "ip_local_port_range": s.port_range.map(|(lo, hi)| [lo, hi]),
                        "ip_local_reserved_ports": s.reserved_ports.iter().map(|(lo, hi)| [lo, hi]).collect::<Vec<_>>(),
                        "tcp_tw_reuse": s.tw_reuse,
                        "tcp_tw_reuse_delay_ms": s.tw_reuse_delay_ms,
                        "tcp_timestamps": s.timestamps,
                        "tcp_fin_timeout_s": s.fin_timeout_s,
                        "tcp_max_tw_buckets": s.max_tw_buckets,
                        "tcp_max_syn_backlog": s.max_syn_backlog,
                        "somaxconn": s.somaxconn,
                        "tcp_syncookies": s.syncookies,
                        "tcp_rfc1337": s.rfc1337,
                    })),
                    "since_start": counters(&n.since_start),
                    "since_last_summary": counters(&n.since_last_summary),
                })
            })
            .collect(),
    )
}
