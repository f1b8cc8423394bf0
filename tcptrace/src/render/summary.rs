//! The periodic and exit summaries, as text or as one JSON object.

use std::io;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    aggregate::{
        distribution::Distribution,
        ports::{CONNECT_BOUNDS_S, DestReport, SLOW_CONNECT},
        stats::{BindRow, VerdictCounts},
    },
    model::{Comm, PerKind, TwEnd, Verdict},
    render::{findings, ports, text::push_ms},
    report::{Report, TimewaitReport},
    words,
};

/// Rows per "who closes first" table.
const TABLE_ROWS: usize = 10;

fn process_name(key: &Option<(u32, Comm)>) -> String {
    words::process(key, "-")
}

fn ms(ns: u64) -> String {
    let mut s = String::new();
    push_ms(&mut s, ns);
    s
}

/// Every record kind with its count.
fn per_kind(counts: &PerKind) -> Map<String, Value> {
    counts
        .iter()
        .map(|(kind, n)| (kind.name().into(), n.into()))
        .collect()
}

fn counts_line(label: &str, counts: &VerdictCounts) -> String {
    let mut line = format!("  {label:<28}");
    for (v, n) in Verdict::ALL.iter().zip(counts) {
        line.push_str(&format!(" {n:>width$}", width = v.name().len()));
    }
    line
}

/// The resets this host sent, by the kernel's reason (and by service), and
/// those sent for no socket, by local port; nothing when there were none.
fn write_resets<W: io::Write>(out: &mut W, r: &Report) -> io::Result<()> {
    let names = &r.resets.names;
    if !r.resets.sent.is_empty() {
        writeln!(
            out,
            "
RESETS SENT (the kernel's reason)"
        )?;
        for &(reason, n) in r.resets.sent.iter().take(TABLE_ROWS) {
            writeln!(out, "  {:<28} {n:>8}", names.name(reason))?;
        }
        for (key, c) in r.counts.by_service.iter().take(TABLE_ROWS) {
            let reasons = c.reasons.most_first();
            if let (Some(s), false) = (key, reasons.is_empty()) {
                let list: Vec<String> = reasons
                    .iter()
                    .map(|&(reason, n)| format!("{} {n}", names.name(reason)))
                    .collect();
                let who = words::service_short(&s.comm, &c.pids);
                writeln!(out, "  {who:<28} {}", list.join(", "))?;
            }
        }
    }
    if !r.synack_retransmits.is_empty() {
        writeln!(
            out,
            "\nSYN-ACKS RETRANSMITTED (clients that did not complete the handshake, by listener)"
        )?;
        for &((netns, port), n) in r.synack_retransmits.iter().take(TABLE_ROWS) {
            let label = match (netns, port) {
                (0, 0) => "(others)".to_owned(),
                (netns, port) => format!(":{port} netns {netns}"),
            };
            writeln!(out, "  {label:<28} {n:>8}")?;
        }
    }
    let lossy: Vec<&DestReport> = r
        .ports
        .iter()
        .filter(|d| d.retransmits > 0 || d.connect_latency.slower_than(SLOW_CONNECT) > 0)
        .take(TABLE_ROWS)
        .collect();
    if !lossy.is_empty() || r.retransmits_elsewhere > 0 {
        writeln!(
            out,
            "\nLOSS TOWARD DESTINATIONS (segments retransmitted; connects slower than {} s)",
            CONNECT_BOUNDS_S[SLOW_CONNECT]
        )?;
        writeln!(
            out,
            "  {:<40} {:>11} {:>8} {:>9} {:>9}",
            "DESTINATION", "RETRANSMITS", "PER S", "CONNECTS", "SLOW"
        )?;
        for d in lossy {
            let label = match d.dest.is_other() {
                true => "(others)".to_owned(),
                false => format!("{} -> {}", d.dest.local, words::endpoint(&d.dest.remote)),
            };
            writeln!(
                out,
                "  {label:<40} {:>11} {:>8.1} {:>9} {:>9}",
                d.retransmits,
                d.retransmit_rate,
                d.connects,
                d.connect_latency.slower_than(SLOW_CONNECT),
            )?;
        }
        if r.retransmits_elsewhere > 0 {
            writeln!(
                out,
                "  {:<40} {:>11}",
                "(toward others: clients, older connections)", r.retransmits_elsewhere
            )?;
        }
    }
    if !r.resets.no_socket.is_empty() {
        writeln!(
            out,
            "
RESETS FOR NO SOCKET (segments to ports nobody listens on, by local port)"
        )?;
        for &(port, n) in r.resets.no_socket.iter().take(TABLE_ROWS) {
            let label = match port {
                0 => "(others)".to_owned(),
                port => format!(":{port}"),
            };
            writeln!(out, "  {label:<28} {n:>8}")?;
        }
    }
    Ok(())
}

pub fn write_text<W: io::Write>(out: &mut W, r: &Report) -> io::Result<()> {
    writeln!(
        out,
        "\n--- summary after {:.1} s: {} transitions, {} lost ---",
        r.totals.elapsed.as_secs_f64(),
        r.totals.transitions,
        r.totals.lost.total()
    )?;
    if r.totals.lost.total() > 0 {
        let kinds: Vec<String> = r
            .totals
            .lost
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} {}", kind.name()))
            .collect();
        writeln!(
            out,
            "lost (ring buffer full): {}; {} connections missed records (verdict unknown where they would have told, \
             durations of the states they began or ended not counted)",
            kinds.join(", "),
            r.counts.missed
        )?;
    }
    findings::write_text(out, &r.findings)?;
    writeln!(
        out,
        "{:<14} {:>8} {:>12} {:>12} {:>12} {:>12}  (ms)",
        "TIME IN STATE", "COUNT", "P50", "P90", "P99", "MAX"
    )?;
    for row in &r.counts.states {
        let (state, about, d) = (row.state, row.about, &row.distribution);
        let [p50, p90, p99, max] = if d.count == 0 {
            ["-".into(), "-".into(), "-".into(), "-".into()]
        } else {
            [ms(d.p50_ns), ms(d.p90_ns), ms(d.p99_ns), ms(d.max_ns)]
        };
        writeln!(
            out,
            "{:<14} {:>8} {p50:>12} {p90:>12} {p99:>12} {max:>12}  {about}",
            state.name(),
            d.count
        )?;
    }
    for row in r.counts.states.iter().filter(|s| s.distribution.count > 0) {
        let (state, about, d) = (row.state, row.about, &row.distribution);
        writeln!(out, "\n{} ({about})", state.name())?;
        writeln!(out, "{:>24} : {:<8} distribution", "usecs", "count")?;
        let top = d.log2_us.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        for (lo, hi, n) in &d.log2_us {
            let stars = (n * 40).div_ceil(top) as usize;
            writeln!(
                out,
                "{:>10} -> {:<10} : {:<8} |{:<40}|",
                lo,
                hi,
                n,
                "*".repeat(stars)
            )?;
        }
    }

    let mut header = format!("\n{:<30}", "WHO CLOSES FIRST");
    for v in Verdict::ALL {
        header.push(' ');
        header.push_str(v.name());
    }
    writeln!(out, "{header}")?;
    writeln!(
        out,
        "{}",
        counts_line("all connections", &r.counts.verdicts)
    )?;
    writeln!(
        out,
        "by service (a program in a namespace: all its processes)"
    )?;
    for (key, counts) in r.counts.by_service.iter().take(TABLE_ROWS) {
        let label = key.map_or_else(
            || "-".to_owned(),
            |s| words::service_short(&s.comm, &counts.pids),
        );
        writeln!(out, "{}", counts_line(&label, &counts.verdicts))?;
    }
    writeln!(out, "by remote endpoint (connections this host opened)")?;
    for (key, counts) in r.counts.by_remote.iter().take(TABLE_ROWS) {
        let label = key
            .as_ref()
            .map_or_else(|| "(others)".into(), words::endpoint);
        writeln!(out, "{}", counts_line(&label, counts))?;
    }
    writeln!(
        out,
        "by local listening port (connections this host accepted)"
    )?;
    for (key, counts) in r.counts.by_listen_port.iter().take(TABLE_ROWS) {
        let label = key.map_or_else(|| "(others)".into(), |p| format!(":{p}"));
        writeln!(out, "{}", counts_line(&label, counts))?;
    }
    write_resets(out, r)?;

    writeln!(out, "\nOPEN CONNECTIONS (by current state)")?;
    if r.open.is_empty() {
        writeln!(out, "  none seen")?;
    }
    for s in &r.open {
        match &s.oldest {
            Some((age, c)) => {
                writeln!(
                    out,
                    "  {:<12} {:>8}   oldest: {} s in {}, {} {} <-> {}",
                    s.state.name(),
                    s.count,
                    ms(*age / 1000).trim_end_matches('0').trim_end_matches('.'),
                    s.state.name(),
                    process_name(&c.owner),
                    words::endpoint(&c.local),
                    words::endpoint(&c.remote)
                )?;
            }
            None => writeln!(out, "  {:<12} {:>8}", s.state.name(), s.count)?,
        }
    }
    if let Some(tw) = &r.timewait {
        write_timewait(out, tw, |netns| r.netns_name(netns))?;
    }
    ports::write_text(out, &r.ports, |netns| r.netns_name(netns))?;
    write_binds(out, &r.binds, |netns| r.netns_name(netns))?;
    ports::write_namespaces(out, &r.namespaces)?;
    writeln!(out, "---")
}

fn write_binds<W: io::Write>(
    out: &mut W,
    rows: &[BindRow],
    name: impl Fn(u32) -> Option<String>,
) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nFAILED BINDS (bind() -> EADDRINUSE)")?;
    for r in rows.iter().take(TABLE_ROWS) {
        let addr = words::endpoint(&r.local);
        writeln!(
            out,
            "  netns {:<22} {:<24} {addr:<24} {:>6} times; {} timewait sockets hold port {} now",
            words::netns_label(r.netns, name(r.netns).as_deref()),
            process_name(&r.process),
            r.count,
            r.timewait_on_port,
            r.local.port()
        )?;
    }
    Ok(())
}

fn write_timewait<W: io::Write>(
    out: &mut W,
    tw: &TimewaitReport,
    name: impl Fn(u32) -> Option<String>,
) -> io::Result<()> {
    writeln!(out, "\nTIME_WAIT")?;
    let d = &tw.expired;
    let timer = tw.timer_ns.map_or_else(
        || "?".into(),
        |ns| {
            ms(ns)
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        },
    );
    if d.count == 0 {
        writeln!(out, "  expired after       none seen (timer {timer} ms)")?;
    } else {
        writeln!(
            out,
            "  expired after       count {}  p50 {}  p90 {}  p99 {}  max {} ms  (timer {timer} ms)",
            d.count,
            ms(d.p50_ns),
            ms(d.p90_ns),
            ms(d.p99_ns),
            ms(d.max_ns)
        )?;
    }
    let mut ends = String::new();
    for reason in TwEnd::ALL {
        ends.push_str(&format!(" {} {}", reason.name(), tw.ends[reason.index()]));
    }
    writeln!(
        out,
        "  ended:             {ends}; timers re-armed {}",
        tw.rearms
    )?;
    if tw.live.is_empty() {
        writeln!(out, "  now:                none")?;
    }
    let named = |netns: u32| name(netns).map_or_else(String::new, |n| format!(" ({n})"));
    for (netns, c) in &tw.live {
        writeln!(
            out,
            "  now in netns {netns:<10} {} in TIME_WAIT, {} orphans in FIN_WAIT2{}",
            c.time_wait,
            c.fin_wait2,
            named(*netns)
        )?;
    }
    for (netns, n) in &tw.overflows {
        writeln!(
            out,
            "  netns {netns}{}: {n} connections got no timewait socket (tcp_max_tw_buckets reached)",
            named(*netns)
        )?;
    }
    Ok(())
}

fn timewait_json(tw: &TimewaitReport, name: impl Fn(u32) -> Option<String>) -> Value {
    let ends: Map<String, Value> = TwEnd::ALL
        .iter()
        .map(|r| (r.name().to_owned(), json!(tw.ends[r.index()])))
        .collect();
    json!({
        "timer_ns": tw.timer_ns,
        "expired": tw.expired,
        "ended": ends,
        "rearms": tw.rearms,
        "now": tw.live.iter().map(|(netns, c)| json!({
            "netns": netns, "netns_name": name(*netns), "time_wait": c.time_wait, "fin_wait2": c.fin_wait2,
        })).collect::<Vec<_>>(),
        "overflows": tw.overflows.iter().map(|(netns, n)| json!({
            "netns": netns, "netns_name": name(*netns), "count": n,
        })).collect::<Vec<_>>(),
    })
}

fn verdict_map(counts: &VerdictCounts) -> Value {
    let map: Map<String, Value> = Verdict::ALL
        .iter()
        .map(|v| (v.name().to_owned(), json!(counts[v.index()])))
        .collect();
    Value::Object(map)
}

#[derive(Serialize)]
struct StateJson<'a> {
    state: &'static str,
    #[serde(flatten)]
    distribution: &'a Distribution,
}

pub fn to_json(r: &Report, time: &str) -> Value {
    let states: Vec<StateJson<'_>> = r
        .counts
        .states
        .iter()
        .map(|s| StateJson {
            state: s.state.name(),
            distribution: &s.distribution,
        })
        .collect();
    let by_process: Vec<Value> = r
        .counts
        .by_process
        .iter()
        .map(|(k, c)| {
            json!({"pid": k.map(|k| k.0), "comm": k.map(|k| k.1.as_str().into_owned()), "verdicts": verdict_map(c)})
        })
        .collect();
    let by_service: Vec<Value> = r
        .counts
        .by_service
        .iter()
        .map(|(k, c)| {
            json!({
                "netns": k.map(|k| k.netns), "comm": k.map(|k| k.comm.as_str().into_owned()),
                "processes": c.pids.count(), "processes_capped": c.pids.capped(),
                "pids": c.pids.examples(), "verdicts": verdict_map(&c.verdicts),
                "reset_reasons": ports::reasons_json(&c.reasons, &r.resets.names),
            })
        })
        .collect();
    let by_remote: Vec<Value> = r
        .counts
        .by_remote
        .iter()
        .map(|(k, c)| json!({"raddr": k.map(|a| a.ip()), "rport": k.map(|a| a.port()), "verdicts": verdict_map(c)}))
        .collect();
    let by_listen_port: Vec<Value> = r
        .counts
        .by_listen_port
        .iter()
        .map(|(k, c)| json!({"lport": k, "verdicts": verdict_map(c)}))
        .collect();
    let open: Vec<Value> = r
        .open
        .iter()
        .map(|s| {
            let oldest = s.oldest.as_ref().map(|(age, c)| {
                json!({
                    "age_ns": age, "laddr": c.local.ip(), "lport": c.local.port(), "raddr": c.remote.ip(),
                    "rport": c.remote.port(), "netns": c.netns, "pid": c.owner.map(|o| o.0),
                    "comm": c.owner.map(|o| o.1.as_str().into_owned()),
                })
            });
            json!({"state": s.state.name(), "count": s.count, "oldest": oldest})
        })
        .collect();
    json!({
        "type": "summary",
        "time": time,
        "elapsed_ns": r.totals.elapsed.as_nanos() as u64,
        "transitions": r.totals.transitions,
        "lost": r.totals.lost.total(),
        "lost_by_kind": per_kind(&r.totals.lost),
        "received_by_kind": per_kind(&r.received),
        "missed_records": r.counts.missed,
        "states": states,
        "verdicts": verdict_map(&r.counts.verdicts),
        "by_process": by_process,
        "by_service": by_service,
        "resets_sent": r.resets.sent.iter().map(|&(reason, n)| {
            json!({"reason": r.resets.names.name(reason), "count": n})
        }).collect::<Vec<_>>(),
        "resets_no_socket": r.resets.no_socket.iter().map(|&(port, n)| {
            json!({"lport": (port != 0).then_some(port), "count": n})
        }).collect::<Vec<_>>(),
        "retransmits_elsewhere": r.retransmits_elsewhere,
        "synack_retransmits": r.synack_retransmits.iter().map(|&((netns, port), n)| {
            json!({"netns": (netns != 0).then_some(netns), "lport": (port != 0).then_some(port), "count": n})
        }).collect::<Vec<_>>(),
        "by_remote": by_remote,
        "by_listen_port": by_listen_port,
        "open": open,
        "findings": findings::to_json(&r.findings),
        "timewait": r.timewait.as_ref().map(|tw| timewait_json(tw, |netns| r.netns_name(netns))),
        "ports": ports::ports_json(&r.ports, |netns| r.netns_name(netns), &r.resets.names),
        "bind_failures": r.binds.iter().map(|b| json!({
            "netns": b.netns,
            "netns_name": r.netns_name(b.netns),
            "pid": b.process.map(|p| p.0),
            "comm": b.process.map(|p| p.1.as_str().into_owned()),
            "laddr": b.local.ip(),
            "lport": b.local.port(),
            "count": b.count,
            "timewait_on_port": b.timewait_on_port,
        })).collect::<Vec<_>>(),
        "namespaces": ports::namespaces_json(&r.namespaces),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        aggregate::stats::HISTOGRAM_STATES,
        report::{
            Totals,
            fixtures::{binds, full_report, ports_and_namespaces, report_stats},
        },
    };

    #[test]
    fn text_summary() {
        let stats = report_stats();
        let report = full_report(&stats, &[], &[], &[]);
        let mut out = Vec::new();
        write_text(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("--- summary after 3.0 s: 9 transitions, 0 lost ---"),
            "{text}"
        );
        assert!(text.contains("SYN_SENT              1        0.250        0.250        0.250        0.250  connect latency"), "{text}");
        assert!(
            text.contains(
                "       128 -> 256        : 1        |****************************************|"
            ),
            "{text}"
        );
        assert!(text.contains("curl[42]"), "{text}");
        assert!(text.contains("10.0.0.2:80"), "{text}");
        assert!(text.contains("CLOSE_WAIT          1   oldest: 3.5 s in CLOSE_WAIT, app[7] 10.0.0.1:8080 <-> 10.0.0.3:5555"), "{text}");
        for (state, _) in HISTOGRAM_STATES {
            assert!(text.contains(state.name()), "{state:?} missing");
        }
        assert!(
            text.contains("expired after       count 1  p50 61"),
            "{text}"
        );
        assert!(
            text.contains("max 61200.000 ms  (timer 60000 ms)"),
            "{text}"
        );
        assert!(text.contains("ended:              expired 1 reused 0 reopened 0 killed 1 purged 0 unknown 0; timers re-armed 2"), "{text}");
        assert!(
            text.contains("now in netns 7          3 in TIME_WAIT, 1 orphans in FIN_WAIT2"),
            "{text}"
        );
        assert!(
            text.contains("netns 7: 12 connections got no timewait socket"),
            "{text}"
        );
    }

    #[test]
    fn json_summary() {
        let stats = report_stats();
        let mut report = full_report(&stats, &[], &[], &[]);
        report.totals = Totals {
            transitions: 2,
            lost: PerKind::of(&[(crate::model::RecordKind::ResetReceived, 1)]),
            elapsed: Duration::from_secs(1),
            ..Totals::default()
        };
        report.open = vec![];
        report.timewait = Some(TimewaitReport::of(&stats, vec![], vec![]));
        let v = to_json(&report, "T");
        assert_eq!(v["type"], "summary");
        assert_eq!(v["lost"], 1);
        assert_eq!(v["states"][0]["state"], "SYN_SENT");
        assert_eq!(v["states"][0]["count"], 1);
        assert_eq!(v["states"][0]["p99_ns"].as_u64().unwrap() / 1000, 250);
        assert_eq!(v["verdicts"]["local"], 1);
        assert_eq!(v["by_process"][0]["comm"], "curl");
        assert_eq!(v["by_remote"][0]["rport"], 80);
        assert_eq!(v["timewait"]["ended"]["expired"], 1);
        assert_eq!(v["timewait"]["expired"]["max_ns"], 61_200_000_000u64);
        assert_eq!(v["timewait"]["timer_ns"], 60_000_000_000u64);
    }

    /// The `summary` record is an interface: this snapshot changes only when
    /// fields are added.
    #[test]
    fn json_summary_snapshot() {
        let stats = report_stats();
        let (ports, namespaces) = ports_and_namespaces();
        let v = to_json(
            &full_report(&stats, &ports, &binds(), &namespaces),
            "2026-11-22T03:04:05.000000000Z",
        );
        insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
    }

    #[test]
    fn text_summary_snapshot() {
        let stats = report_stats();
        let mut out = Vec::new();
        let (ports, namespaces) = ports_and_namespaces();
        write_text(
            &mut out,
            &full_report(&stats, &ports, &binds(), &namespaces),
        )
        .unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap());
    }
}
