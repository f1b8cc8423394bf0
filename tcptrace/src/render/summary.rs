//! The periodic and exit summaries, as text or as one JSON object.

use std::{io, time::Duration};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    aggregate::{
        distribution::Distribution,
        netns::NetnsReport,
        open::OpenState,
        ports::DestReport,
        stats::{BindRow, HISTOGRAM_STATES, Stats, VerdictCounts, sorted_rows},
    },
    findings::Finding,
    model::{Comm, PerKind, TwCount, TwEnd, Verdict},
    render::{findings, ports, push_endpoint, text::push_ms},
};

/// Rows per "who closes first" table.
const TABLE_ROWS: usize = 10;

/// Everything a summary shows.
pub struct Report<'a> {
    /// What is wrong, worst first.
    pub findings: &'a [Finding],
    pub elapsed: Duration,
    pub transitions: u64,
    /// Records the kernel side lost (rings full), by kind.
    pub lost: PerKind,
    /// Records received, by kind.
    pub received: PerKind,
    pub stats: &'a Stats,
    pub open: Vec<OpenState>,
    /// `None` when TIME_WAIT is not tracked.
    pub timewait: Option<TimewaitReport>,
    /// Destinations this host connects to, most used first.
    pub ports: &'a [DestReport],
    /// Failed binds (EADDRINUSE), most first.
    pub binds: &'a [BindRow],
    pub namespaces: &'a [NetnsReport],
}

/// TIME_WAIT now, per network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimewaitReport {
    /// Live timewait sockets.
    pub live: Vec<(u32, TwCount)>,
    /// Connections closed without a timewait socket since start
    /// (`TcpExtTCPTimeWaitOverflow`), where there were any.
    pub overflows: Vec<(u32, u64)>,
}

fn process_name(key: &Option<(u32, Comm)>) -> String {
    match key {
        Some((pid, comm)) => format!("{}[{pid}]", comm.as_str()),
        None => "-".into(),
    }
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

pub fn write_text<W: io::Write>(out: &mut W, r: &Report<'_>) -> io::Result<()> {
    writeln!(
        out,
        "\n--- summary after {:.1} s: {} transitions, {} lost ---",
        r.elapsed.as_secs_f64(),
        r.transitions,
        r.lost.total()
    )?;
    if r.lost.total() > 0 {
        let kinds: Vec<String> = r
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
            r.stats.missed
        )?;
    }
    findings::write_text(out, r.findings)?;
    writeln!(
        out,
        "{:<14} {:>8} {:>12} {:>12} {:>12} {:>12}  (ms)",
        "TIME IN STATE", "COUNT", "P50", "P90", "P99", "MAX"
    )?;
    // Each distribution walks its whole histogram: compute it once.
    let distributions: Vec<_> = HISTOGRAM_STATES
        .iter()
        .filter_map(|&(state, about)| Some((state, about, r.stats.distribution(state)?)))
        .collect();
    for (state, about, d) in &distributions {
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
    for (state, about, d) in distributions.iter().filter(|(_, _, d)| d.count > 0) {
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
        counts_line("all connections", &r.stats.verdicts())
    )?;
    writeln!(out, "by process")?;
    for (key, counts) in sorted_rows(&r.stats.by_process, TABLE_ROWS) {
        writeln!(out, "{}", counts_line(&process_name(&key), &counts))?;
    }
    writeln!(out, "by remote endpoint (connections this host opened)")?;
    for (key, counts) in sorted_rows(&r.stats.by_remote, TABLE_ROWS) {
        let label = key.map_or_else(
            || "(others)".into(),
            |a| {
                let mut s = String::new();
                push_endpoint(&mut s, &a);
                s
            },
        );
        writeln!(out, "{}", counts_line(&label, &counts))?;
    }
    writeln!(
        out,
        "by local listening port (connections this host accepted)"
    )?;
    for (key, counts) in sorted_rows(&r.stats.by_listen_port, TABLE_ROWS) {
        let label = key.map_or_else(|| "(others)".into(), |p| format!(":{p}"));
        writeln!(out, "{}", counts_line(&label, &counts))?;
    }

    writeln!(out, "\nOPEN CONNECTIONS (by current state)")?;
    if r.open.is_empty() {
        writeln!(out, "  none seen")?;
    }
    for s in &r.open {
        match &s.oldest {
            Some((age, c)) => {
                let (mut local, mut remote) = (String::new(), String::new());
                push_endpoint(&mut local, &c.local);
                push_endpoint(&mut remote, &c.remote);
                writeln!(
                    out,
                    "  {:<12} {:>8}   oldest: {} s in {}, {} {} <-> {}",
                    s.state.name(),
                    s.count,
                    ms(*age / 1000).trim_end_matches('0').trim_end_matches('.'),
                    s.state.name(),
                    process_name(&c.owner),
                    local,
                    remote
                )?;
            }
            None => writeln!(out, "  {:<12} {:>8}", s.state.name(), s.count)?,
        }
    }
    if let Some(tw) = &r.timewait {
        write_timewait(out, r.stats, tw, ports::names(r.namespaces))?;
    }
    ports::write_text(out, r.ports, ports::names(r.namespaces))?;
    write_binds(out, r.binds, ports::names(r.namespaces))?;
    ports::write_namespaces(out, r.namespaces)?;
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
        let mut addr = String::new();
        push_endpoint(&mut addr, &r.local);
        writeln!(
            out,
            "  netns {:<22} {:<24} {addr:<24} {:>6} times; {} timewait sockets hold port {} now",
            ports::netns_label(r.netns, name(r.netns).as_deref()),
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
    stats: &Stats,
    tw: &TimewaitReport,
    name: impl Fn(u32) -> Option<String>,
) -> io::Result<()> {
    writeln!(out, "\nTIME_WAIT")?;
    let d = stats.tw_expired();
    let timer = stats.tw_timer_ns.map_or_else(
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
        ends.push_str(&format!(
            " {} {}",
            reason.name(),
            stats.tw_ends[reason.index()]
        ));
    }
    writeln!(
        out,
        "  ended:             {ends}; timers re-armed {}",
        stats.tw_rearms
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

fn timewait_json(
    stats: &Stats,
    tw: &TimewaitReport,
    name: impl Fn(u32) -> Option<String>,
) -> Value {
    let ends: Map<String, Value> = TwEnd::ALL
        .iter()
        .map(|r| (r.name().to_owned(), json!(stats.tw_ends[r.index()])))
        .collect();
    json!({
        "timer_ns": stats.tw_timer_ns,
        "expired": stats.tw_expired(),
        "ended": ends,
        "rearms": stats.tw_rearms,
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
struct StateJson {
    state: &'static str,
    #[serde(flatten)]
    distribution: Distribution,
}

pub fn to_json(r: &Report<'_>, time: &str) -> Value {
    let states: Vec<StateJson> = HISTOGRAM_STATES
        .iter()
        .filter_map(|(s, _)| {
            r.stats.distribution(*s).map(|distribution| StateJson {
                state: s.name(),
                distribution,
            })
        })
        .collect();
    let by_process: Vec<Value> = sorted_rows(&r.stats.by_process, usize::MAX)
        .iter()
        .map(|(k, c)| {
            json!({"pid": k.map(|k| k.0), "comm": k.map(|k| k.1.as_str().into_owned()), "verdicts": verdict_map(c)})
        })
        .collect();
    let by_remote: Vec<Value> = sorted_rows(&r.stats.by_remote, usize::MAX)
        .iter()
        .map(|(k, c)| json!({"raddr": k.map(|a| a.ip()), "rport": k.map(|a| a.port()), "verdicts": verdict_map(c)}))
        .collect();
    let by_listen_port: Vec<Value> = sorted_rows(&r.stats.by_listen_port, usize::MAX)
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
        "elapsed_ns": r.elapsed.as_nanos() as u64,
        "transitions": r.transitions,
        "lost": r.lost.total(),
        "lost_by_kind": per_kind(&r.lost),
        "received_by_kind": per_kind(&r.received),
        "missed_records": r.stats.missed,
        "states": states,
        "verdicts": verdict_map(&r.stats.verdicts()),
        "by_process": by_process,
        "by_remote": by_remote,
        "by_listen_port": by_listen_port,
        "open": open,
        "findings": findings::to_json(r.findings),
        "timewait": r.timewait.as_ref().map(|tw| timewait_json(r.stats, tw, ports::names(r.namespaces))),
        "ports": ports::ports_json(r.ports, ports::names(r.namespaces)),
        "bind_failures": r.binds.iter().map(|b| json!({
            "netns": b.netns,
            "netns_name": ports::names(r.namespaces)(b.netns),
            "pid": b.process.map(|p| p.0),
            "comm": b.process.map(|p| p.1.as_str().into_owned()),
            "laddr": b.local.ip(),
            "lport": b.local.port(),
            "count": b.count,
            "timewait_on_port": b.timewait_on_port,
        })).collect::<Vec<_>>(),
        "namespaces": ports::namespaces_json(r.namespaces),
    })
}

/// Fixtures shared with the metrics' tests: every section filled in.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        aggregate::open::open_by_state,
        model::{
            Closed, Open, Role, TcpState, TimeInState, TwNote,
            fixtures::{Script, task},
        },
    };

    pub(crate) fn report_stats() -> Stats {
        let mut stats = Stats::new();
        let mut s = Script { ts: 0 };
        let mut t = s.t(
            1,
            "10.0.0.1:40000",
            "10.0.0.2:80",
            TcpState::SynSent,
            TcpState::Established,
            None,
        );
        t.in_old = TimeInState::Measured(250_000);
        stats.record_transition(&t);
        // A TIME_WAIT of 61.2 s that expired, its timer re-armed twice, and
        // one killed.
        let mut tw = s.t(
            2,
            "10.0.0.1:40001",
            "10.0.0.2:80",
            TcpState::FinWait2,
            TcpState::TimeWait,
            None,
        );
        tw.timewait = Some(TwNote::Begins {
            timer_ns: Some(60_000_000_000),
        });
        stats.record_timewait(&tw);
        tw.old = TcpState::TimeWait;
        tw.new = TcpState::Close;
        tw.in_old = TimeInState::Measured(61_200_000_000);
        tw.timewait = Some(TwNote::Ends {
            reason: TwEnd::Expired,
            rearms: 2,
            by: None,
            fin_unseen: false,
        });
        stats.record_transition(&tw);
        stats.record_timewait(&tw);
        tw.in_old = TimeInState::Measured(1_000);
        tw.timewait = Some(TwNote::Ends {
            reason: TwEnd::Killed,
            rearms: 0,
            by: None,
            fin_unseen: false,
        });
        stats.record_timewait(&tw);
        stats.record_closed(&Closed {
            ts_ns: 1,
            sock: 1,
            netns: 1,
            local: "10.0.0.1:40000".parse().unwrap(),
            remote: "10.0.0.2:80".parse().unwrap(),
            role: Role::Active,
            owner: Some(task(42, "curl")),
            verdict: Verdict::Local,
            lifetime_ns: Some(1),
            in_state: Default::default(),
            missed: false,
            timewait: None,
        });
        stats
    }

    /// A destination running out of ports, and its namespace.
    pub(crate) fn ports_and_namespaces() -> (Vec<DestReport>, Vec<NetnsReport>) {
        use crate::{
            aggregate::{
                netns::COUNTERS,
                ports::{Dest, Held, TimewaitHold},
            },
            host::{netns::NetnsName, sysctl::Sysctls},
        };
        let mut verdicts = VerdictCounts::default();
        verdicts[Verdict::Local.index()] = 990;
        verdicts[Verdict::NoPort.index()] = 3;
        let dest = DestReport {
            dest: Dest {
                netns: 7,
                local: "10.0.0.2".parse().unwrap(),
                remote: "10.0.0.1:80".parse().unwrap(),
            },
            owners: vec![(42, "proxy".into())],
            held: Held {
                open: 2,
                timewait: 998,
            },
            capacity: Some(1000),
            usage: Some(1.0),
            tw_reuse: Some(false),
            connects: 993,
            rate: 33.3,
            rate_since_start: 33.1,
            closed_locally: Some(1.0),
            lifetime_s: Some(0.002),
            timewait_s: Some(60.0),
            timewait_hold: Some(TimewaitHold::Timer),
            reused_after_s: None,
            hold_s: Some(60.002),
            sustainable: Some(16.67),
            time_left_s: Some(0.0),
            failed: 3,
            failing: true,
            verdicts,
        };
        let mut since_start = [0; COUNTERS.len()];
        since_start[0] = 993;
        let netns = NetnsReport {
            netns: 7,
            name: Some(NetnsName {
                name: Some("proxy".into()),
                process: Some((42, "proxy".into())),
                container: None,
            }),
            sysctls: Some(Sysctls {
                port_range: Some((40000, 40999)),
                tw_reuse: Some(2),
                timestamps: Some(1),
                fin_timeout_s: Some(60),
                ..Sysctls::default()
            }),
            now: since_start,
            since_start,
            since_last_summary: since_start,
        };
        (vec![dest], vec![netns])
    }

    /// A server that could not bind its port while timewait sockets held it.
    pub(crate) fn binds() -> Vec<BindRow> {
        vec![BindRow {
            netns: 7,
            process: Some((43, Comm::from_name("server"))),
            local: "0.0.0.0:8081".parse().unwrap(),
            count: 2,
            timewait_on_port: 5,
        }]
    }

    /// A report with every section filled in.
    pub(crate) fn full_report<'a>(
        stats: &'a Stats,
        ports: &'a [DestReport],
        binds: &'a [BindRow],
        namespaces: &'a [NetnsReport],
    ) -> Report<'a> {
        let owner = task(7, "app");
        let open = [Open {
            state: TcpState::CloseWait,
            since_ns: Some(1_000_000_000),
            local: "10.0.0.1:8080".parse().unwrap(),
            remote: "10.0.0.3:5555".parse().unwrap(),
            netns: 1,
            owner: Some(&owner),
            role: Role::Passive,
        }];
        Report {
            findings: &[],
            elapsed: Duration::from_secs(3),
            transitions: 9,
            lost: PerKind::default(),
            received: PerKind::default(),
            stats,
            open: open_by_state(open.into_iter(), 4_500_000_000),
            timewait: Some(TimewaitReport {
                live: vec![(
                    7,
                    TwCount {
                        time_wait: 3,
                        fin_wait2: 1,
                    },
                )],
                overflows: vec![(7, 12)],
            }),
            ports,
            binds,
            namespaces,
        }
    }

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
        let report = Report {
            findings: &[],
            elapsed: Duration::from_secs(1),
            transitions: 2,
            lost: PerKind::of(&[(crate::model::RecordKind::ResetReceived, 1)]),
            received: PerKind::default(),
            stats: &stats,
            open: vec![],
            timewait: Some(TimewaitReport::default()),
            ports: &[],
            binds: &[],
            namespaces: &[],
        };
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
